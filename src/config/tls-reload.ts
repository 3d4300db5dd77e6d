/**
 * Certificate reloading, as exporter-toolkit does it: exporter-toolkit reads the certificate and
 * key again for every TLS handshake, so a renewed certificate (cert-manager, a Kubernetes Secret
 * update, certbot) is served without a restart. Here, before each new TCP connection is handed to
 * TLS, the certificate, key and client CA files are stat()ed (three calls, microseconds); only
 * when one has changed (device, inode, size or mtime; stat follows the symlinks a Secret mount
 * swaps) are they read again, checked, and made the server's context for that connection and the
 * next ones. A change that does not load (a key that no longer matches its certificate while the
 * two are being replaced one after the other) keeps the previous context and is logged once; the
 * next change is tried again.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Server as TlsServer } from 'node:tls';
import type { Logger } from 'pino';
import { checkTlsConfig, secureContextOptions, type TlsConfig } from './web-config.js';

type Signature = string;

function signature(path: string): Signature {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch (err) {
    return `error:${(err as NodeJS.ErrnoException).code ?? String(err)}`;
  }
}

export class TlsReloader {
  private current: TlsConfig;
  private readonly files: { key: 'certFile' | 'keyFile' | 'caFile'; path: string }[];
  private seen: Signature[];
  /** Successful reloads (for tests and the log). */
  reloads = 0;

  constructor(
    tls: TlsConfig,
    private readonly apply: (tls: TlsConfig) => void,
    private readonly logger: Logger,
  ) {
    this.current = tls;
    this.files = (['certFile', 'keyFile', 'caFile'] as const)
      .filter((k) => tls[k] !== undefined)
      .map((k) => ({ key: k, path: tls[k] as string }));
    this.seen = this.files.map((f) => signature(f.path));
  }

  /** True when some PEM came from a file (inline PEM never changes). */
  get watching(): boolean {
    return this.files.length > 0;
  }

  /** Re-reads the files if any changed since the last check. Synchronous: runs before a handshake. */
  check(): void {
    const now = this.files.map((f) => signature(f.path));
    if (now.every((s, i) => s === this.seen[i])) return;
    this.seen = now;
    const next: TlsConfig = { ...this.current };
    try {
      for (const f of this.files) {
        const pem = readFileSync(f.path);
        if (f.key === 'certFile') next.cert = pem;
        else if (f.key === 'keyFile') next.key = pem;
        else next.ca = pem;
      }
      checkTlsConfig(next);
    } catch (err) {
      this.logger.warn(
        { err, files: this.files.map((f) => f.path) },
        `TLS files changed but do not load, still serving the previous certificate: ${(err as Error).message}`,
      );
      return;
    }
    this.apply(next);
    this.current = next;
    this.reloads++;
    this.logger.info({ files: this.files.map((f) => f.path) }, 'TLS certificate files changed: reloaded');
  }

  /** Checks before every new connection of `server` is handed to TLS. */
  attach(server: TlsServer): void {
    if (!this.watching) return;
    // Prepended: tls.Server's own connection listener, which creates the TLSSocket with the
    // server's current context, runs after this one.
    server.prependListener('connection', () => this.check());
  }
}

/** Makes `tls` the context of the server's next connections. */
export function applyTo(server: TlsServer): (tls: TlsConfig) => void {
  return (tls) => server.setSecureContext(secureContextOptions(tls));
}
