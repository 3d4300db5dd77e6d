/**
 * The exporter-toolkit web configuration file (`--web.config.file`): TLS and
 * basic authentication, in the same YAML shape as node_exporter's, so one file
 * serves every exporter on a host.
 *
 *   tls_server_config:
 *     cert_file: server.crt
 *     key_file: server.key
 *     client_auth_type: RequireAndVerifyClientCert   # optional
 *     client_ca_file: ca.crt                         # optional
 *     min_version: TLS12                             # optional
 *   http_server_config:
 *     headers: { X-Frame-Options: deny }             # optional
 *   basic_auth_users:
 *     alice: $2y$10$...                              # bcrypt hash
 *
 * Unknown keys are errors (as in exporter-toolkit), so typos fail at start.
 */
import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { dirname, isAbsolute, resolve } from 'node:path';
import bcrypt from 'bcryptjs';
import { parse as parseYaml } from 'yaml';

export class WebConfigError extends Error {
  override readonly name = 'WebConfigError';
}

export type ClientAuthType =
  | 'NoClientCert'
  | 'RequestClientCert'
  | 'RequireAnyClientCert'
  | 'VerifyClientCertIfGiven'
  | 'RequireAndVerifyClientCert';

export interface TlsConfig {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  clientAuthType: ClientAuthType;
  minVersion?: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
  maxVersion?: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
}

export interface WebConfig {
  tls?: TlsConfig;
  /** user → bcrypt hash */
  basicAuthUsers: Map<string, string>;
  headers: Record<string, string>;
}

const TLS_VERSIONS: Record<string, TlsConfig['minVersion']> = {
  TLS10: 'TLSv1',
  TLS11: 'TLSv1.1',
  TLS12: 'TLSv1.2',
  TLS13: 'TLSv1.3',
};

const CLIENT_AUTH_TYPES: readonly ClientAuthType[] = [
  'NoClientCert',
  'RequestClientCert',
  'RequireAnyClientCert',
  'VerifyClientCertIfGiven',
  'RequireAndVerifyClientCert',
];

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkKeys(obj: Record<string, unknown>, allowed: readonly string[], where: string, file: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) {
      throw new WebConfigError(`${file}: unknown key "${k}" in ${where} (allowed: ${allowed.join(', ')})`);
    }
  }
}

function str(v: unknown, where: string, file: string): string {
  if (typeof v !== 'string' || v === '') throw new WebConfigError(`${file}: ${where} must be a non-empty string`);
  return v;
}

/** Validates the parsed YAML document. Pure apart from the `readFileFn` used for certificate files. */
export async function buildWebConfig(
  doc: unknown,
  file: string,
  readFileFn: (path: string) => Promise<Buffer> = (p) => readFile(p),
): Promise<WebConfig> {
  const config: WebConfig = { basicAuthUsers: new Map(), headers: {} };
  if (doc === null || doc === undefined) return config;
  if (!isRecord(doc)) throw new WebConfigError(`${file}: expected a YAML mapping at the top level`);
  checkKeys(doc, ['tls_server_config', 'http_server_config', 'basic_auth_users'], 'the top level', file);
  const base = dirname(file);
  const rel = (p: string): string => (isAbsolute(p) ? p : resolve(base, p));
  const load = async (p: string, key: string): Promise<Buffer> => {
    try {
      return await readFileFn(rel(p));
    } catch (err) {
      throw new WebConfigError(`${file}: cannot read ${key} ${rel(p)}: ${(err as Error).message}`, { cause: err });
    }
  };

  const tls = doc['tls_server_config'];
  if (tls !== undefined && tls !== null) {
    if (!isRecord(tls)) throw new WebConfigError(`${file}: tls_server_config must be a mapping`);
    checkKeys(
      tls,
      ['cert_file', 'key_file', 'client_auth_type', 'client_ca_file', 'min_version', 'max_version'],
      'tls_server_config',
      file,
    );
    if (tls['cert_file'] === undefined || tls['key_file'] === undefined) {
      throw new WebConfigError(`${file}: tls_server_config needs both cert_file and key_file`);
    }
    const clientAuthType = (tls['client_auth_type'] ?? 'NoClientCert') as ClientAuthType;
    if (!CLIENT_AUTH_TYPES.includes(clientAuthType)) {
      throw new WebConfigError(`${file}: invalid client_auth_type "${String(clientAuthType)}" (one of ${CLIENT_AUTH_TYPES.join(', ')})`);
    }
    const version = (key: 'min_version' | 'max_version'): TlsConfig['minVersion'] | undefined => {
      const v = tls[key];
      if (v === undefined) return undefined;
      const mapped = TLS_VERSIONS[String(v)];
      if (!mapped) throw new WebConfigError(`${file}: invalid ${key} "${String(v)}" (one of ${Object.keys(TLS_VERSIONS).join(', ')})`);
      return mapped;
    };
    const t: TlsConfig = {
      cert: await load(str(tls['cert_file'], 'tls_server_config.cert_file', file), 'cert_file'),
      key: await load(str(tls['key_file'], 'tls_server_config.key_file', file), 'key_file'),
      clientAuthType,
    };
    if (tls['client_ca_file'] !== undefined) {
      t.ca = await load(str(tls['client_ca_file'], 'tls_server_config.client_ca_file', file), 'client_ca_file');
    } else if (clientAuthType === 'RequireAndVerifyClientCert' || clientAuthType === 'VerifyClientCertIfGiven') {
      throw new WebConfigError(`${file}: client_auth_type ${clientAuthType} needs client_ca_file`);
    }
    const minVersion = version('min_version');
    const maxVersion = version('max_version');
    if (minVersion) t.minVersion = minVersion;
    if (maxVersion) t.maxVersion = maxVersion;
    // Parse the PEM files now, so a bad certificate, key or CA (or a key that does not match the
    // certificate) stops the exporter at start naming the files, not when the server is created.
    try {
      createSecureContext({ cert: t.cert, key: t.key, ...(t.ca ? { ca: t.ca } : {}) });
      // OpenSSL skips what it cannot parse in a CA bundle; a bundle must hold a certificate first.
      if (t.ca) new X509Certificate(t.ca);
    } catch (err) {
      const files = [`cert_file ${rel(String(tls['cert_file']))}`, `key_file ${rel(String(tls['key_file']))}`];
      if (t.ca) files.push(`client_ca_file ${rel(String(tls['client_ca_file']))}`);
      throw new WebConfigError(`${file}: tls_server_config: ${(err as Error).message} (${files.join(', ')})`, { cause: err });
    }
    config.tls = t;
  }

  const http = doc['http_server_config'];
  if (http !== undefined && http !== null) {
    if (!isRecord(http)) throw new WebConfigError(`${file}: http_server_config must be a mapping`);
    checkKeys(http, ['headers'], 'http_server_config', file);
    const headers = http['headers'];
    if (headers !== undefined) {
      if (!isRecord(headers)) throw new WebConfigError(`${file}: http_server_config.headers must be a mapping`);
      for (const [k, v] of Object.entries(headers)) config.headers[k] = str(v, `http_server_config.headers.${k}`, file);
    }
  }

  const users = doc['basic_auth_users'];
  if (users !== undefined && users !== null) {
    if (!isRecord(users)) throw new WebConfigError(`${file}: basic_auth_users must be a mapping of user to bcrypt hash`);
    for (const [user, hash] of Object.entries(users)) {
      const h = str(hash, `basic_auth_users.${user}`, file);
      if (!/^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/.test(h)) {
        // $2x$ (the crypt_blowfish bug-compatible variant) and the old $2$ cannot be checked by bcryptjs.
        throw new WebConfigError(`${file}: basic_auth_users.${user} is not a bcrypt hash ($2a$, $2b$ or $2y$)`);
      }
      config.basicAuthUsers.set(user, h);
    }
  }
  return config;
}

export async function loadWebConfig(file: string): Promise<WebConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new WebConfigError(`cannot read web config file ${file}: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new WebConfigError(`${file}: invalid YAML: ${(err as Error).message}`, { cause: err });
  }
  return buildWebConfig(doc, file);
}

/**
 * Checks HTTP basic credentials against bcrypt hashes. bcrypt is slow by
 * design, so verified credentials are remembered (by a digest, never in clear)
 * for a bounded number of distinct users.
 */
export class BasicAuthChecker {
  private readonly verified = new Map<string, Buffer>();

  constructor(
    private readonly users: ReadonlyMap<string, string>,
    private readonly cacheSize = 64,
  ) {}

  get enabled(): boolean {
    return this.users.size > 0;
  }

  /** True when the Authorization header carries a known user and the right password. */
  async check(authorization: string | undefined): Promise<boolean> {
    if (!authorization) return false;
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization);
    if (!m) return false;
    const decoded = Buffer.from(m[1] as string, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return false;
    const user = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    const hash = this.users.get(user);
    if (hash === undefined) {
      // Spend comparable time on unknown users so they cannot be told apart by timing.
      await bcrypt.compare(password, '$2a$10$7EqJtq98hPqEX7fNZaFWoOhi5BWX4Z5j7ZXXwvsVJ2LwHfWPHrbAe');
      return false;
    }
    const digest = createHash('sha256').update(hash).update('\0').update(password).digest();
    const known = this.verified.get(user);
    if (known && timingSafeEqual(known, digest)) return true;
    const ok = await bcrypt.compare(password, hash);
    if (ok) {
      if (this.verified.size >= this.cacheSize) this.verified.delete(this.verified.keys().next().value as string);
      this.verified.set(user, digest);
    }
    return ok;
  }
}
