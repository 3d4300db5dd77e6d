/**
 * node_exporter's own web config files load: every exporter-toolkit key is accepted, applied where it
 * means something here, warned about where it does not, and wrong values still name the key.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterAll, describe, expect, it } from 'vitest';
import { TokenBucket } from '../../src/app.js';
import { buildWebConfig, GO_CIPHER_SUITES, loadWebConfig, WebConfigError } from '../../src/config/web-config.js';
import { certificateSans } from '../../src/server.js';

const dir = mkdtempSync(join(tmpdir(), 'cte-web-toolkit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost',
  '-keyout', join(dir, 'server.key'), '-out', join(dir, 'server.crt')], { stdio: 'ignore' });
const CERT = readFileSync(join(dir, 'server.crt'), 'utf8');
const KEY = readFileSync(join(dir, 'server.key'), 'utf8');
const HASH = bcrypt.hashSync('pw', 4);

describe('a web config using every exporter-toolkit key', () => {
  it('loads from YAML, applying each key', async () => {
    // The shape of exporter-toolkit's docs/web-configuration.md, every key set.
    writeFileSync(
      join(dir, 'web.yml'),
      `tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: server.crt
  client_allowed_sans:
    - prometheus.example
    - 10.0.0.1
  cipher_suites:
    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    - TLS_AES_128_GCM_SHA256
  curve_preferences: [X25519, CurveP256]
  min_version: TLS12
  max_version: TLS13
  prefer_server_cipher_suites: true
http_server_config:
  http2: true
  headers:
    Strict-Transport-Security: max-age=31536000
    X-Content-Type-Options: nosniff
basic_auth_users:
  prometheus: ${HASH}
rate_limit:
  interval: 100ms
  burst: 20
`,
    );
    const c = await loadWebConfig(join(dir, 'web.yml'));
    expect(c.tls).toMatchObject({
      certFile: join(dir, 'server.crt'),
      keyFile: join(dir, 'server.key'),
      caFile: join(dir, 'server.crt'),
      clientAuthType: 'RequireAndVerifyClientCert',
      clientAllowedSans: ['prometheus.example', '10.0.0.1'],
      ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256',
      ecdhCurve: 'X25519:P-256',
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.3',
      honorCipherOrder: true,
    });
    expect(c.headers['Strict-Transport-Security']).toBe('max-age=31536000');
    expect(c.basicAuthUsers.get('prometheus')).toBe(HASH);
    expect(c.rateLimit).toEqual({ intervalMs: 100, burst: 20 });
    expect(c.warnings).toEqual([expect.stringContaining('http2')]);
  });

  it('takes certificate, key and CA inline', async () => {
    const c = await buildWebConfig({ tls_server_config: { cert: CERT, key: KEY, client_ca: CERT, client_auth_type: 'VerifyClientCertIfGiven' } }, join(dir, 'w.yml'));
    expect(c.tls?.cert.toString()).toBe(CERT);
    expect(c.tls?.certFile).toBeUndefined();
    expect(c.tls?.caFile).toBeUndefined();
  });

  it('serves plain HTTP for a tls_server_config without certificate or client settings, as exporter-toolkit', async () => {
    const c = await buildWebConfig({ tls_server_config: { min_version: 'TLS12' } }, join(dir, 'w.yml'));
    expect(c.tls).toBeUndefined();
    expect(c.warnings).toEqual([expect.stringContaining('plain HTTP')]);
    expect((await buildWebConfig({ tls_server_config: {}, http_server_config: { http2: false } }, join(dir, 'w.yml'))).warnings).toEqual([]);
  });

  it('knows every Go cipher suite name it maps to a cipher OpenSSL has', async () => {
    for (const [name, openssl] of Object.entries(GO_CIPHER_SUITES)) {
      if (openssl === null || /RC4|3DES|DES-CBC3/.test(openssl)) continue; // not built into OpenSSL 3 by default
      const c = await buildWebConfig({ tls_server_config: { cert: CERT, key: KEY, cipher_suites: [name] } }, join(dir, 'w.yml'));
      expect(c.tls?.ciphers, name).toBe(openssl);
    }
  });

  it('a rate limit needs both interval and burst', async () => {
    expect((await buildWebConfig({ rate_limit: { interval: '1s' } }, join(dir, 'w.yml'))).rateLimit).toBeUndefined();
    expect((await buildWebConfig({ rate_limit: { burst: 3 } }, join(dir, 'w.yml'))).rateLimit).toBeUndefined();
  });

  it.each([
    [{ tls_server_config: { cert: CERT, cert_file: 'server.crt', key_file: 'server.key' } }, 'give cert_file or cert, not both'],
    [{ tls_server_config: { cert: CERT, key: KEY, cipher_suites: ['TLS_FANCY'] } }, 'unknown cipher suite "TLS_FANCY"'],
    [{ tls_server_config: { cert: CERT, key: KEY, cipher_suites: 'TLS_AES_128_GCM_SHA256' } }, 'cipher_suites must be a list of strings'],
    [{ tls_server_config: { cert: CERT, key: KEY, curve_preferences: ['P256'] } }, 'unknown curve "P256"'],
    [{ tls_server_config: { cert: CERT, key: KEY, prefer_server_cipher_suites: 'yes' } }, 'prefer_server_cipher_suites must be true or false'],
    [{ tls_server_config: { cert: 'not a pem', key: KEY } }, 'inline cert, key_file'.replace(', key_file', ', inline key')],
    [{ tls_server_config: { cert: CERT, key: KEY, client_auth_type: 'RequireAndVerifyClientCert' } }, 'needs client_ca_file (or client_ca)'],
    [{ http_server_config: { http2: 'yes' } }, 'http2 must be true or false'],
    [{ rate_limit: { interval: 'soon', burst: 1 } }, 'rate_limit.interval must be a duration'],
    [{ rate_limit: { interval: '1s', burst: -1 } }, 'rate_limit.burst must be a whole number'],
    [{ rate_limit: { every: '1s' } }, 'unknown key "every" in rate_limit'],
  ])('rejects %j', async (doc, message) => {
    const p = buildWebConfig(doc, join(dir, 'w.yml'));
    await expect(p).rejects.toThrow(WebConfigError);
    await expect(buildWebConfig(doc, join(dir, 'w.yml'))).rejects.toThrow(message);
  });
});

describe('certificateSans', () => {
  it('takes the values of Node.js subjectaltname entries', () => {
    expect(certificateSans('DNS:prometheus.example, IP Address:10.0.0.1, email:a@b.c, URI:spiffe://cluster/ns/monitoring')).toEqual([
      'prometheus.example',
      '10.0.0.1',
      'a@b.c',
      'spiffe://cluster/ns/monitoring',
    ]);
    expect(certificateSans(undefined)).toEqual([]);
  });
});

describe('TokenBucket', () => {
  it('allows the burst, then one request per interval', () => {
    let t = 0;
    const b = new TokenBucket(100, 3, () => t);
    expect([b.take(), b.take(), b.take(), b.take()]).toEqual([true, true, true, false]);
    t = 99;
    expect(b.take()).toBe(false);
    t = 200;
    expect([b.take(), b.take(), b.take()]).toEqual([true, true, false]); // 2 tokens after 200 ms
    t = 10_000;
    expect([b.take(), b.take(), b.take(), b.take()]).toEqual([true, true, true, false]);
  });
});
