/**
 * The exporter-toolkit web configuration file (`--web.config.file`): TLS and
 * basic authentication, in the same YAML shape as node_exporter's, so one file
 * serves every exporter on a host. Every key exporter-toolkit knows is accepted:
 *
 *   tls_server_config:
 *     cert_file: server.crt          # or cert: inline PEM
 *     key_file: server.key           # or key: inline PEM
 *     client_auth_type: RequireAndVerifyClientCert   # optional
 *     client_ca_file: ca.crt         # or client_ca: inline PEM
 *     client_allowed_sans: [prometheus.example]      # optional
 *     min_version: TLS12             # optional, also max_version
 *     cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]  # Go names, TLS 1.2 and below
 *     curve_preferences: [X25519, CurveP256]         # Go names
 *     prefer_server_cipher_suites: true
 *   http_server_config:
 *     headers: { X-Frame-Options: deny }
 *     http2: true                    # accepted; HTTP/1.1 is served (warning)
 *   basic_auth_users:
 *     alice: $2y$10$...              # bcrypt hash
 *   rate_limit: { interval: 1s, burst: 10 }          # optional
 *
 * Keys that are not exporter-toolkit's are errors (as in exporter-toolkit), so typos fail at start.
 * Certificate, key and CA files are re-read when they change (src/config/tls-reload.ts).
 */
import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { dirname, isAbsolute, resolve } from 'node:path';
import bcrypt from 'bcryptjs';
import { parse as parseYaml } from 'yaml';
import { parseDuration } from './flags.js';

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
  /** Absolute paths of the files the PEM came from (absent when given inline): re-read on change. */
  certFile?: string;
  keyFile?: string;
  caFile?: string;
  clientAuthType: ClientAuthType;
  minVersion?: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
  maxVersion?: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
  /** OpenSSL cipher list for TLS 1.2 and below, from cipher_suites. */
  ciphers?: string;
  /** OpenSSL group list, from curve_preferences. */
  ecdhCurve?: string;
  /** prefer_server_cipher_suites */
  honorCipherOrder?: boolean;
  /** client_allowed_sans: a client certificate must carry one of these SANs. */
  clientAllowedSans?: string[];
}

export interface RateLimit {
  /** One request token is added every intervalMs milliseconds... */
  intervalMs: number;
  /** ...up to this many. */
  burst: number;
}

export interface WebConfig {
  tls?: TlsConfig;
  /** user → bcrypt hash */
  basicAuthUsers: Map<string, string>;
  headers: Record<string, string>;
  rateLimit?: RateLimit;
  /** Valid keys that have no effect here, to log at start. */
  warnings: string[];
}

const TLS_VERSIONS: Record<string, TlsConfig['minVersion']> = {
  TLS10: 'TLSv1',
  TLS11: 'TLSv1.1',
  TLS12: 'TLSv1.2',
  TLS13: 'TLSv1.3',
};

/**
 * Go's crypto/tls cipher suite names (the ones exporter-toolkit accepts) → OpenSSL names. Go
 * applies cipher_suites to TLS 1.2 and below only; the TLS 1.3 names are accepted and, as in Go,
 * change nothing.
 */
export const GO_CIPHER_SUITES: Readonly<Record<string, string | null>> = {
  TLS_RSA_WITH_RC4_128_SHA: 'RC4-SHA',
  TLS_RSA_WITH_3DES_EDE_CBC_SHA: 'DES-CBC3-SHA',
  TLS_RSA_WITH_AES_128_CBC_SHA: 'AES128-SHA',
  TLS_RSA_WITH_AES_256_CBC_SHA: 'AES256-SHA',
  TLS_RSA_WITH_AES_128_CBC_SHA256: 'AES128-SHA256',
  TLS_RSA_WITH_AES_128_GCM_SHA256: 'AES128-GCM-SHA256',
  TLS_RSA_WITH_AES_256_GCM_SHA384: 'AES256-GCM-SHA384',
  TLS_ECDHE_ECDSA_WITH_RC4_128_SHA: 'ECDHE-ECDSA-RC4-SHA',
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: 'ECDHE-ECDSA-AES128-SHA',
  TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: 'ECDHE-ECDSA-AES256-SHA',
  TLS_ECDHE_RSA_WITH_RC4_128_SHA: 'ECDHE-RSA-RC4-SHA',
  TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA: 'ECDHE-RSA-DES-CBC3-SHA',
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: 'ECDHE-RSA-AES128-SHA',
  TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: 'ECDHE-RSA-AES256-SHA',
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: 'ECDHE-ECDSA-AES128-SHA256',
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256: 'ECDHE-RSA-AES128-SHA256',
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: 'ECDHE-RSA-AES128-GCM-SHA256',
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: 'ECDHE-RSA-AES256-GCM-SHA384',
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-RSA-CHACHA20-POLY1305',
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-ECDSA-CHACHA20-POLY1305',
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305: 'ECDHE-RSA-CHACHA20-POLY1305',
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305: 'ECDHE-ECDSA-CHACHA20-POLY1305',
  TLS_AES_128_GCM_SHA256: null,
  TLS_AES_256_GCM_SHA384: null,
  TLS_CHACHA20_POLY1305_SHA256: null,
};

/** Go's tls.CurveID names (exporter-toolkit's curve_preferences) → OpenSSL group names. */
export const GO_CURVES: Readonly<Record<string, string>> = {
  CurveP256: 'P-256',
  CurveP384: 'P-384',
  CurveP521: 'P-521',
  X25519: 'X25519',
  X25519MLKEM768: 'X25519MLKEM768',
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
  const config: WebConfig = { basicAuthUsers: new Map(), headers: {}, warnings: [] };
  if (doc === null || doc === undefined) return config;
  if (!isRecord(doc)) throw new WebConfigError(`${file}: expected a YAML mapping at the top level`);
  checkKeys(doc, ['tls_server_config', 'http_server_config', 'basic_auth_users', 'rate_limit'], 'the top level', file);
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
  // As in exporter-toolkit, a tls_server_config without certificate, key and client settings
  // serves plain HTTP.
  const tlsKeys = ['cert_file', 'key_file', 'cert', 'key', 'client_auth_type', 'client_ca_file', 'client_ca'];
  if (tls !== undefined && tls !== null && !isRecord(tls)) throw new WebConfigError(`${file}: tls_server_config must be a mapping`);
  const given = (v: unknown): boolean => v !== undefined && v !== null && v !== '';
  if (isRecord(tls)) {
    checkKeys(
      tls,
      [
        'cert_file', 'key_file', 'cert', 'key', 'client_auth_type', 'client_ca_file', 'client_ca', 'client_allowed_sans',
        'cipher_suites', 'curve_preferences', 'min_version', 'max_version', 'prefer_server_cipher_suites',
      ],
      'tls_server_config',
      file,
    );
  }
  if (isRecord(tls) && !tlsKeys.some((k) => given(tls[k]))) {
    if (Object.keys(tls).length > 0) config.warnings.push('tls_server_config has no certificate, key or client settings: serving plain HTTP');
  } else if (isRecord(tls)) {
    /** A PEM from `<name>_file` (read, path kept for reloads) or inline `<name>`, not both. */
    const pem = async (fileKey: string, inlineKey: string): Promise<{ pem: Buffer; path?: string } | undefined> => {
      const f = tls[fileKey];
      const inline = tls[inlineKey];
      if (given(f) && given(inline)) {
        throw new WebConfigError(`${file}: tls_server_config: give ${fileKey} or ${inlineKey}, not both`);
      }
      if (given(f)) {
        const path = rel(str(f, `tls_server_config.${fileKey}`, file));
        return { pem: await load(path, fileKey), path };
      }
      if (given(inline)) return { pem: Buffer.from(str(inline, `tls_server_config.${inlineKey}`, file)) };
      return undefined;
    };
    const cert = await pem('cert_file', 'cert');
    const key = await pem('key_file', 'key');
    if (!cert || !key) {
      throw new WebConfigError(`${file}: tls_server_config needs both cert_file (or cert) and key_file (or key)`);
    }
    const clientAuthType = (tls['client_auth_type'] ?? 'NoClientCert') as ClientAuthType;
    if (!CLIENT_AUTH_TYPES.includes(clientAuthType)) {
      throw new WebConfigError(`${file}: invalid client_auth_type "${String(clientAuthType)}" (one of ${CLIENT_AUTH_TYPES.join(', ')})`);
    }
    const version = (key: 'min_version' | 'max_version'): TlsConfig['minVersion'] | undefined => {
      const v = tls[key];
      if (v === undefined || v === null || v === '') return undefined;
      const mapped = TLS_VERSIONS[String(v)];
      if (!mapped) throw new WebConfigError(`${file}: invalid ${key} "${String(v)}" (one of ${Object.keys(TLS_VERSIONS).join(', ')})`);
      return mapped;
    };
    const list = (key: string): string[] | undefined => {
      const v = tls[key];
      if (v === undefined || v === null) return undefined;
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && x !== '')) {
        throw new WebConfigError(`${file}: tls_server_config.${key} must be a list of strings`);
      }
      return v as string[];
    };
    const t: TlsConfig = { cert: cert.pem, key: key.pem, clientAuthType };
    if (cert.path) t.certFile = cert.path;
    if (key.path) t.keyFile = key.path;
    const ca = await pem('client_ca_file', 'client_ca');
    if (ca) {
      t.ca = ca.pem;
      if (ca.path) t.caFile = ca.path;
    } else if (clientAuthType === 'RequireAndVerifyClientCert' || clientAuthType === 'VerifyClientCertIfGiven') {
      throw new WebConfigError(`${file}: client_auth_type ${clientAuthType} needs client_ca_file (or client_ca)`);
    }
    const minVersion = version('min_version');
    const maxVersion = version('max_version');
    if (minVersion) t.minVersion = minVersion;
    if (maxVersion) t.maxVersion = maxVersion;
    const suites = list('cipher_suites');
    if (suites && suites.length > 0) {
      const openssl: string[] = [];
      for (const name of suites) {
        if (!(name in GO_CIPHER_SUITES)) throw new WebConfigError(`${file}: tls_server_config.cipher_suites: unknown cipher suite "${name}"`);
        const o = GO_CIPHER_SUITES[name];
        if (o) openssl.push(o);
      }
      // TLS 1.3's suites stay OpenSSL's defaults, as Go's do.
      if (openssl.length > 0) t.ciphers = [...new Set(openssl)].join(':');
    }
    const curves = list('curve_preferences');
    if (curves && curves.length > 0) {
      t.ecdhCurve = curves
        .map((name) => {
          const o = GO_CURVES[name];
          if (!o) throw new WebConfigError(`${file}: tls_server_config.curve_preferences: unknown curve "${name}" (one of ${Object.keys(GO_CURVES).join(', ')})`);
          return o;
        })
        .join(':');
    }
    const prefer = tls['prefer_server_cipher_suites'];
    if (prefer !== undefined && prefer !== null) {
      if (typeof prefer !== 'boolean') throw new WebConfigError(`${file}: tls_server_config.prefer_server_cipher_suites must be true or false`);
      t.honorCipherOrder = prefer;
    }
    const sans = list('client_allowed_sans');
    if (sans && sans.length > 0) {
      if (clientAuthType !== 'RequireAndVerifyClientCert' && clientAuthType !== 'VerifyClientCertIfGiven') {
        config.warnings.push(
          `tls_server_config.client_allowed_sans with client_auth_type ${clientAuthType}: the SANs are checked on client certificates that are not verified against a CA`,
        );
      }
      t.clientAllowedSans = sans;
    }
    // Parse the PEM now, so a bad certificate, key or CA (or a key that does not match the
    // certificate), cipher list or curve stops the exporter at start naming them.
    try {
      checkTlsConfig(t);
    } catch (err) {
      const from = (path: string | undefined, fileKey: string, inlineKey: string): string => (path ? `${fileKey} ${path}` : `inline ${inlineKey}`);
      const files = [from(t.certFile, 'cert_file', 'cert'), from(t.keyFile, 'key_file', 'key')];
      if (t.ca) files.push(from(t.caFile, 'client_ca_file', 'client_ca'));
      throw new WebConfigError(`${file}: tls_server_config: ${(err as Error).message} (${files.join(', ')})`, { cause: err });
    }
    config.tls = t;
  }

  const http = doc['http_server_config'];
  if (http !== undefined && http !== null) {
    if (!isRecord(http)) throw new WebConfigError(`${file}: http_server_config must be a mapping`);
    checkKeys(http, ['headers', 'http2'], 'http_server_config', file);
    const http2 = http['http2'];
    if (http2 !== undefined && http2 !== null && typeof http2 !== 'boolean') {
      throw new WebConfigError(`${file}: http_server_config.http2 must be true or false`);
    }
    if (http2 === true) config.warnings.push('http_server_config.http2: true has no effect: the exporter serves HTTP/1.1 (Prometheus scrapes with HTTP/1.1 too)');
    const headers = http['headers'];
    if (headers !== undefined) {
      if (!isRecord(headers)) throw new WebConfigError(`${file}: http_server_config.headers must be a mapping`);
      for (const [k, v] of Object.entries(headers)) config.headers[k] = str(v, `http_server_config.headers.${k}`, file);
    }
  }

  const limit = doc['rate_limit'];
  if (limit !== undefined && limit !== null) {
    if (!isRecord(limit)) throw new WebConfigError(`${file}: rate_limit must be a mapping`);
    checkKeys(limit, ['interval', 'burst'], 'rate_limit', file);
    const interval = limit['interval'] === undefined ? 0 : parseDuration(String(limit['interval']));
    if (interval === undefined) throw new WebConfigError(`${file}: rate_limit.interval must be a duration such as 1s or 100ms`);
    const burst = limit['burst'] ?? 0;
    if (typeof burst !== 'number' || !Number.isInteger(burst) || burst < 0) throw new WebConfigError(`${file}: rate_limit.burst must be a whole number`);
    // exporter-toolkit limits only when both are set.
    if (interval > 0 && burst > 0) config.rateLimit = { intervalMs: interval * 1000, burst };
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

/** Node.js TLS context options of a TLS config (the server's and every reload's). */
export function secureContextOptions(t: TlsConfig): SecureContextOptions {
  const o: SecureContextOptions = { cert: t.cert, key: t.key };
  if (t.ca) o.ca = t.ca;
  if (t.minVersion) o.minVersion = t.minVersion;
  if (t.maxVersion) o.maxVersion = t.maxVersion;
  if (t.ciphers) o.ciphers = t.ciphers;
  if (t.ecdhCurve) o.ecdhCurve = t.ecdhCurve;
  if (t.honorCipherOrder !== undefined) o.honorCipherOrder = t.honorCipherOrder;
  return o;
}

/** Throws what OpenSSL says of a config's certificate, key, CA, ciphers or curves. */
export function checkTlsConfig(t: TlsConfig): void {
  createSecureContext(secureContextOptions(t));
  // OpenSSL skips what it cannot parse in a CA bundle; a bundle must hold a certificate first.
  if (t.ca) new X509Certificate(t.ca);
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
 * for a bounded number of distinct users. bcryptjs runs on the main thread, so
 * credentials that are not remembered are checked one at a time and at most
 * `maxPending` wait: a flood of wrong passwords is refused without hashing
 * instead of starving the event loop (and the scrapes of a remembered user).
 */
export class BasicAuthChecker {
  private readonly verified = new Map<string, Buffer>();
  /** Checks running or waiting for the one bcrypt slot. */
  private pending = 0;
  private slot: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly users: ReadonlyMap<string, string>,
    private readonly cacheSize = 64,
    private readonly maxPending = 4,
    private readonly compare: (password: string, hash: string) => Promise<boolean> = bcrypt.compare,
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
      await this.serialized(() => this.compare(password, '$2a$10$7EqJtq98hPqEX7fNZaFWoOhi5BWX4Z5j7ZXXwvsVJ2LwHfWPHrbAe'));
      return false;
    }
    const digest = createHash('sha256').update(hash).update('\0').update(password).digest();
    const known = this.verified.get(user);
    if (known && timingSafeEqual(known, digest)) return true;
    const ok = await this.serialized(() => this.compare(password, hash));
    if (ok) {
      if (this.verified.size >= this.cacheSize) this.verified.delete(this.verified.keys().next().value as string);
      this.verified.set(user, digest);
    }
    return ok;
  }

  /** Runs `fn` in the one bcrypt slot, or answers false at once when `maxPending` checks already hold or wait for it. */
  private async serialized(fn: () => Promise<boolean>): Promise<boolean> {
    if (this.pending >= this.maxPending) return false;
    this.pending++;
    const run = this.slot.then(fn, fn);
    this.slot = run.catch(() => undefined);
    try {
      return await run;
    } finally {
      this.pending--;
    }
  }
}
