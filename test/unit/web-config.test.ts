import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import bcrypt from 'bcryptjs';
import { BasicAuthChecker, WebConfigError, buildWebConfig } from '../../src/config/web-config.js';

/** A self-signed certificate and its key, made with openssl (PEM text). */
function selfSigned(): { cert: Buffer; key: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'cte-web-config-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-keyout', join(dir, 'k'), '-out', join(dir, 'c')], { stdio: 'ignore' });
    return { cert: readFileSync(join(dir, 'c')), key: readFileSync(join(dir, 'k')) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const server = selfSigned();
const other = selfSigned();
const files = new Map([
  ['/etc/cte/server.crt', server.cert],
  ['/etc/cte/server.key', server.key],
  ['/etc/cte/other.key', other.key],
  ['/etc/cte/ca.crt', other.cert],
  ['/etc/cte/garbage.crt', Buffer.from('CERT')],
]);
const read = async (p: string): Promise<Buffer> => {
  const b = files.get(p);
  if (!b) throw new Error(`ENOENT: ${p}`);
  return b;
};
const FILE = '/etc/cte/web.yml';

describe('buildWebConfig', () => {
  it('accepts an empty file', async () => {
    const c = await buildWebConfig(null, FILE, read);
    expect(c.tls).toBeUndefined();
    expect(c.basicAuthUsers.size).toBe(0);
  });

  it('resolves certificate paths relative to the config file', async () => {
    const c = await buildWebConfig(
      { tls_server_config: { cert_file: 'server.crt', key_file: '/etc/cte/server.key', min_version: 'TLS13' } },
      FILE,
      read,
    );
    expect(c.tls?.cert).toEqual(server.cert);
    expect(c.tls?.key).toEqual(server.key);
    expect(c.tls?.minVersion).toBe('TLSv1.3');
    expect(c.tls?.clientAuthType).toBe('NoClientCert');
  });

  it.each([
    [{ tls_server_config: { cert_file: 'server.crt' } }, 'needs both cert_file (or cert) and key_file (or key)'],
    [{ tls_server_config: { cert_file: 'missing.crt', key_file: 'server.key' } }, 'cannot read cert_file /etc/cte/missing.crt'],
    [{ tls_server_config: { cert_file: 'server.crt', key_file: 'server.key', min_version: 'SSL3' } }, 'invalid min_version "SSL3"'],
    [{ tls_server_config: { cert_file: 'server.crt', key_file: 'server.key', client_auth_type: 'RequireAndVerifyClientCert' } }, 'needs client_ca_file'],
    [{ tls_server_config: { cert_file: 'server.crt', key_file: 'server.key', client_auth_type: 'Sometimes' } }, 'invalid client_auth_type'],
    [{ tls_server_config: { cert_file: 'server.crt', key_file: 'server.key', cipher: 'x' } }, 'unknown key "cipher" in tls_server_config'],
    [{ tls_server_config: { cert_file: 'garbage.crt', key_file: 'server.key' } }, 'cert_file /etc/cte/garbage.crt, key_file /etc/cte/server.key'],
    [{ tls_server_config: { cert_file: 'server.crt', key_file: 'other.key' } }, 'key values mismatch'],
    [{ tls_server_config: { cert_file: 'server.crt', key_file: 'server.key', client_auth_type: 'RequireAndVerifyClientCert', client_ca_file: 'garbage.crt' } }, 'client_ca_file /etc/cte/garbage.crt'],
    [{ basic_auth_users: { alice: 'plaintext' } }, 'basic_auth_users.alice is not a bcrypt hash'],
    [{ basic_auth_users: { alice: `$2x$${bcrypt.hashSync('pw', 4).slice(4)}` } }, 'basic_auth_users.alice is not a bcrypt hash ($2a$, $2b$ or $2y$)'],
    [{ basic_auth_users: ['alice'] }, 'basic_auth_users must be a mapping'],
    [{ http_server_config: { http_2: true } }, 'unknown key "http_2" in http_server_config'],
    [{ something: 1 }, 'unknown key "something" in the top level'],
    ['just a string', 'expected a YAML mapping'],
  ])('rejects %j', async (doc, message) => {
    await expect(buildWebConfig(doc, FILE, read)).rejects.toThrow(WebConfigError);
    await expect(buildWebConfig(doc, FILE, read)).rejects.toThrow(message);
  });
});

describe('BasicAuthChecker', () => {
  const hash = bcrypt.hashSync('pw', 4);
  const header = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

  it('accepts the right password, also for passwords containing colons', async () => {
    const colon = bcrypt.hashSync('a:b', 4);
    const auth = new BasicAuthChecker(new Map([['u', hash], ['v', colon]]));
    expect(await auth.check(header('u', 'pw'))).toBe(true);
    expect(await auth.check(header('u', 'pw'))).toBe(true); // cached path
    expect(await auth.check(header('v', 'a:b'))).toBe(true);
  });

  it.each([
    [undefined],
    ['Bearer abc'],
    ['Basic !!!'],
    [`Basic ${Buffer.from('nocolon').toString('base64')}`],
  ])('rejects malformed header %j', async (h) => {
    expect(await new BasicAuthChecker(new Map([['u', hash]])).check(h)).toBe(false);
  });

  it('checks unremembered credentials one at a time and refuses a flood beyond maxPending without hashing', async () => {
    let running = 0;
    let most = 0;
    let calls = 0;
    const slowCompare = async (password: string, h: string): Promise<boolean> => {
      calls++;
      running++;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, 5));
      running--;
      return bcrypt.compare(password, h);
    };
    const auth = new BasicAuthChecker(new Map([['u', hash]]), 64, 4, slowCompare);
    expect(await auth.check(header('u', 'pw'))).toBe(true);
    calls = 0;
    const flood = Array.from({ length: 50 }, (_, i) => auth.check(header(i % 2 ? 'u' : 'nobody', `wrong${i}`)));
    // The remembered user still gets in during the flood, without a bcrypt call.
    expect(await auth.check(header('u', 'pw'))).toBe(true);
    expect(await Promise.all(flood)).toEqual(Array(50).fill(false));
    expect(calls).toBe(4);
    expect(most).toBe(1);
    // Once the flood is over, a new credential is checked again (a failing compare frees its slot too).
    const failing = new BasicAuthChecker(new Map([['u', hash]]), 64, 4, () => Promise.reject(new Error('boom')));
    await expect(failing.check(header('u', 'x'))).rejects.toThrow('boom');
    expect(await auth.check(header('u', 'pW'))).toBe(false);
    expect(calls).toBe(5);
  });

  it('rejects a wrong password even after a right one was cached', async () => {
    const auth = new BasicAuthChecker(new Map([['u', hash]]));
    expect(await auth.check(header('u', 'pw'))).toBe(true);
    expect(await auth.check(header('u', 'pW'))).toBe(false);
    expect(await auth.check(header('x', 'pw'))).toBe(false);
  });
});
