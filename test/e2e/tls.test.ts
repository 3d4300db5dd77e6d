/**
 * The web config's TLS keys over real TLS handshakes on 127.0.0.1: cipher suites, curves, versions,
 * client certificates with allowed SANs, inline PEM, the rate limit, and certificates re-read when
 * their files change (written in place, and swapped by symlink as a Kubernetes Secret mount does).
 * The server is the one main.ts runs (buildServer), in this process.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { conntrackCollector } from '../../src/collectors/conntrack.js';
import { parseOptions } from '../../src/config/options.js';
import { loadWebConfig } from '../../src/config/web-config.js';
import { buildServer } from '../../src/server.js';
import { REPO_ROOT } from '../helpers/kernel.js';
import { startExporter } from '../helpers/process.js';

const PROC = join(REPO_ROOT, 'test', 'fixtures', 'proc', '6.18');
let dir: string;

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A CA and, signed by it, a certificate with the given SAN and key type. */
function issue(name: string, san: string, key: 'ec' | 'rsa' = 'ec'): { cert: string; key: string } {
  const k = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const crt = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `subjectAltName=${san}\n`);
  openssl(['req', '-new', '-newkey', key === 'ec' ? 'ec' : 'rsa:2048', ...(key === 'ec' ? ['-pkeyopt', 'ec_paramgen_curve:prime256v1'] : []),
    '-nodes', '-subj', `/CN=${name}`, '-keyout', k, '-out', csr]);
  openssl(['x509', '-req', '-in', csr, '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', crt]);
  return { cert: crt, key: k };
}

interface Answer {
  status: number;
  body: string;
  cipher: string;
  version: string;
  fingerprint: string;
  group: string | undefined;
}

let app: FastifyInstance | undefined;
let logs: string[] = [];
afterEach(async () => {
  await app?.close();
  app = undefined;
  logs = [];
});

async function serve(webYaml: string): Promise<string> {
  const file = join(dir, `web-${Math.random().toString(36).slice(2)}.yml`);
  writeFileSync(file, webYaml);
  const webConfig = await loadWebConfig(file);
  const { flags } = parseOptions([conntrackCollector], [`--path.procfs=${PROC}`], {});
  const logger = pino({ level: 'info' }, { write: (l: string) => void logs.push(l) });
  app = await buildServer({ flags, logger, webConfig, collectors: [conntrackCollector], defaultMetrics: false });
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  return address.replace('http://', 'https://');
}

/** One request on a fresh connection (agent: false), with what the handshake chose. */
function get(url: string, path: string, opts: Record<string, unknown> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { ca: readFileSync(join(dir, 'ca.crt')), agent: false, ...opts }, (res) => {
      const socket = res.socket as TLSSocket;
      const answer = {
        status: res.statusCode ?? 0,
        cipher: socket.getCipher().name,
        version: String(socket.getProtocol()),
        fingerprint: socket.getPeerCertificate().fingerprint256,
        group: (socket.getEphemeralKeyInfo() as { name?: string } | null)?.name,
      };
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ ...answer, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function fingerprintOf(certFile: string): string {
  return execFileSync('openssl', ['x509', '-in', certFile, '-noout', '-fingerprint', '-sha256']).toString().trim().split('=')[1]!;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cte-tls-e2e-'));
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=test CA',
    '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.crt')]);
  issue('server', 'IP:127.0.0.1');
  issue('server2', 'IP:127.0.0.1');
  issue('server-rsa', 'IP:127.0.0.1', 'rsa');
  issue('prometheus', 'DNS:prometheus.example');
  issue('intruder', 'DNS:intruder.example');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('TLS keys of the web config over real handshakes', () => {
  it('cipher_suites and max_version: TLS 1.2 with exactly the listed suite', async () => {
    const url = await serve(`tls_server_config:
  cert_file: server.crt
  key_file: server.key
  max_version: TLS12
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]
  prefer_server_cipher_suites: true
`);
    const a = await get(url, '/metrics');
    expect([a.status, a.version, a.cipher]).toEqual([200, 'TLSv1.2', 'ECDHE-ECDSA-AES256-GCM-SHA384']);
    expect(a.body).toContain('conntrack_entries 14');
    // A client that offers only another suite gets no handshake.
    await expect(get(url, '/metrics', { ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256', maxVersion: 'TLSv1.2' })).rejects.toThrow(/handshake|cipher|alert/i);
  });

  it('an RSA certificate with an RSA suite', async () => {
    const url = await serve(`tls_server_config:
  cert_file: server-rsa.crt
  key_file: server-rsa.key
  max_version: TLS12
  cipher_suites: [TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305]
`);
    const a = await get(url, '/metrics');
    expect([a.status, a.cipher]).toEqual([200, 'ECDHE-RSA-CHACHA20-POLY1305']);
  });

  it('curve_preferences: the key exchange uses a listed curve, a client without one fails', async () => {
    const url = await serve(`tls_server_config:
  cert_file: server.crt
  key_file: server.key
  curve_preferences: [CurveP384]
`);
    const a = await get(url, '/metrics');
    expect(a.status).toBe(200);
    expect(a.group).toMatch(/384/);
    await expect(get(url, '/metrics', { ecdhCurve: 'X25519' })).rejects.toThrow();
  });

  it('min_version TLS13 refuses a TLS 1.2 client', async () => {
    const url = await serve(`tls_server_config:
  cert_file: server.crt
  key_file: server.key
  min_version: TLS13
`);
    expect((await get(url, '/metrics')).version).toBe('TLSv1.3');
    await expect(get(url, '/metrics', { maxVersion: 'TLSv1.2' })).rejects.toThrow();
  });

  it('client certificates: verified against client_ca_file, and only the allowed SANs', async () => {
    const url = await serve(`tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  client_allowed_sans: [prometheus.example]
`);
    const as = (name: string): Record<string, unknown> => ({ cert: readFileSync(join(dir, `${name}.crt`)), key: readFileSync(join(dir, `${name}.key`)) });
    const ok = await get(url, '/metrics', as('prometheus'));
    expect(ok.status).toBe(200);
    const other = await get(url, '/metrics', as('intruder'));
    expect([other.status, other.body]).toEqual([403, 'Client certificate SAN not allowed\n']);
    // No certificate: the handshake itself fails (RequireAndVerifyClientCert).
    await expect(get(url, '/metrics')).rejects.toThrow();
  });

  it('inline cert and key', async () => {
    const indent = (f: string): string => readFileSync(join(dir, f), 'utf8').trim().split('\n').map((l) => `    ${l}`).join('\n');
    const url = await serve(`tls_server_config:
  cert: |
${indent('server.crt')}
  key: |
${indent('server.key')}
`);
    const a = await get(url, '/metrics');
    expect([a.status, a.fingerprint]).toEqual([200, fingerprintOf(join(dir, 'server.crt'))]);
  });

  it('rate_limit: 429 past the burst, the probes are exempt', async () => {
    const url = await serve(`tls_server_config:
  cert_file: server.crt
  key_file: server.key
rate_limit:
  interval: 1h
  burst: 2
`);
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await get(url, '/metrics')).status);
    expect(statuses).toEqual([200, 200, 429]);
    expect((await get(url, '/-/healthy')).status).toBe(200);
  });
});

describe('certificate reload', () => {
  it('serves a certificate rewritten in place from the next connection, and keeps the old one while a change does not load', async () => {
    const live = join(dir, 'live');
    mkdirSync(live, { recursive: true });
    const put = (name: string): void => {
      writeFileSync(join(live, 'tls.crt'), readFileSync(join(dir, `${name}.crt`)));
      writeFileSync(join(live, 'tls.key'), readFileSync(join(dir, `${name}.key`)));
    };
    put('server');
    const url = await serve(`tls_server_config:\n  cert_file: live/tls.crt\n  key_file: live/tls.key\n`);
    expect((await get(url, '/metrics')).fingerprint).toBe(fingerprintOf(join(dir, 'server.crt')));

    put('server2');
    const after = await get(url, '/metrics');
    expect([after.status, after.fingerprint]).toEqual([200, fingerprintOf(join(dir, 'server2.crt'))]);
    expect(logs.join('')).toContain('TLS certificate files changed: reloaded');

    // Half a rotation: a new certificate whose key has not been written yet.
    writeFileSync(join(live, 'tls.crt'), readFileSync(join(dir, 'server.crt')));
    const half = await get(url, '/metrics');
    expect([half.status, half.fingerprint]).toEqual([200, fingerprintOf(join(dir, 'server2.crt'))]);
    expect(logs.join('')).toContain('still serving the previous certificate');
    // The key follows: the next connection gets the new pair.
    writeFileSync(join(live, 'tls.key'), readFileSync(join(dir, 'server.key')));
    expect((await get(url, '/metrics')).fingerprint).toBe(fingerprintOf(join(dir, 'server.crt')));
  });

  it('follows a Kubernetes Secret mount, whose ..data symlink is swapped to a new directory', async () => {
    const mount = join(dir, 'secret');
    const version = (n: number, name: string): void => {
      const d = join(mount, `..v${n}`);
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, 'tls.crt'), readFileSync(join(dir, `${name}.crt`)));
      writeFileSync(join(d, 'tls.key'), readFileSync(join(dir, `${name}.key`)));
      symlinkSync(`..v${n}`, join(mount, '..data_tmp'));
      renameSync(join(mount, '..data_tmp'), join(mount, '..data')); // atomic, as kubelet does
    };
    version(1, 'server');
    symlinkSync('..data/tls.crt', join(mount, 'tls.crt'));
    symlinkSync('..data/tls.key', join(mount, 'tls.key'));
    const url = await serve(`tls_server_config:\n  cert_file: secret/tls.crt\n  key_file: secret/tls.key\n`);
    expect((await get(url, '/metrics')).fingerprint).toBe(fingerprintOf(join(dir, 'server.crt')));
    version(2, 'server2');
    expect((await get(url, '/metrics')).fingerprint).toBe(fingerprintOf(join(dir, 'server2.crt')));
  });
});

describe('the built exporter with a node_exporter web config', () => {
  it('starts (no exit 2), warns about the keys without effect, and serves TLS', async () => {
    const file = join(dir, 'node-exporter-web.yml');
    writeFileSync(file, `tls_server_config:
  cert_file: server.crt
  key_file: server.key
  min_version: TLS12
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
  curve_preferences: [CurveP256]
  prefer_server_cipher_suites: true
http_server_config:
  http2: true
  headers:
    X-Frame-Options: deny
`);
    const e = await startExporter([`--path.procfs=${PROC}`, '--conntrack.path=/nonexistent/conntrack', '--kernel-log.source=none', `--web.config.file=${file}`]);
    try {
      expect(e.url.startsWith('https://')).toBe(true);
      expect(e.logs()).toMatch(/"level":"warn".*http_server_config\.http2/);
      const a = await get(e.url, '/-/healthy');
      expect(a.status).toBe(200);
    } finally {
      expect(await e.stop()).toBe(0);
    }
  });
});
