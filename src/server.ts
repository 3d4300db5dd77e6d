/**
 * Builds the Fastify server around the exporter plugin: TLS from the web
 * config, timeouts, the logger. Still no listen and no signals: that is main.ts.
 */
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { conntrackExporter, type AppOptions } from './app.js';
import { applyTo, TlsReloader } from './config/tls-reload.js';
import { secureContextOptions, type TlsConfig } from './config/web-config.js';

function httpsOptions(tls: TlsConfig): Record<string, unknown> {
  const o: Record<string, unknown> = { ...secureContextOptions(tls) };
  if (tls.clientAuthType !== 'NoClientCert') {
    o['requestCert'] = true;
    o['rejectUnauthorized'] = tls.clientAuthType === 'RequireAndVerifyClientCert';
  }
  return o;
}

/** Subject alternative names of a peer certificate, as `DNS:x`, `IP Address:1.2.3.4`, … → values. */
export function certificateSans(subjectaltname: string | undefined): string[] {
  if (!subjectaltname) return [];
  return subjectaltname
    .split(/,\s*/)
    .map((entry) => entry.slice(entry.indexOf(':') + 1).trim())
    .filter((v) => v !== '');
}

export async function buildServer(options: AppOptions & { logger: Logger }): Promise<FastifyInstance> {
  const tls = options.webConfig?.tls;
  const app = Fastify({
    // Per-request logs are noise for a scrape target: only warnings and errors from the HTTP layer.
    loggerInstance: options.logger.child({ component: 'http' }, { level: 'warn' }),
    // Scrapes are short; keep slow or idle clients from holding sockets forever.
    connectionTimeout: 60_000,
    requestTimeout: 60_000,
    keepAliveTimeout: 5_000,
    forceCloseConnections: 'idle',
    ...(tls ? { https: httpsOptions(tls) } : {}),
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;

  if (tls) {
    const reloader = new TlsReloader(tls, applyTo(app.server as unknown as TlsServer), options.logger);
    reloader.attach(app.server as unknown as TlsServer);
  }

  if (tls && (tls.clientAuthType === 'RequireAnyClientCert' || tls.clientAuthType === 'VerifyClientCertIfGiven' || tls.clientAllowedSans)) {
    const mode = tls.clientAuthType;
    const allowed = tls.clientAllowedSans ? new Set(tls.clientAllowedSans) : undefined;
    app.addHook('onRequest', async (req, reply) => {
      const socket = req.raw.socket as TLSSocket;
      const cert = socket.getPeerCertificate?.();
      const given = cert !== undefined && Object.keys(cert).length > 0;
      if (mode === 'RequireAnyClientCert' && !given) return reply.code(403).send('Client certificate required\n');
      if (mode === 'VerifyClientCertIfGiven' && given && !socket.authorized) {
        return reply.code(403).send('Client certificate not trusted\n');
      }
      // client_allowed_sans: as exporter-toolkit, a client certificate must name one of them.
      if (allowed && !certificateSans(given ? cert.subjectaltname : undefined).some((san) => allowed.has(san))) {
        return reply.code(403).send('Client certificate SAN not allowed\n');
      }
    });
  }

  await app.register(conntrackExporter, options);
  return app;
}
