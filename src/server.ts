/**
 * Builds the Fastify server around the exporter plugin: TLS from the web
 * config, timeouts, the logger. Still no listen and no signals: that is main.ts.
 */
import type { TLSSocket } from 'node:tls';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { conntrackExporter, type AppOptions } from './app.js';
import type { TlsConfig } from './config/web-config.js';

function httpsOptions(tls: TlsConfig): Record<string, unknown> {
  const o: Record<string, unknown> = { cert: tls.cert, key: tls.key };
  if (tls.ca) o['ca'] = tls.ca;
  if (tls.minVersion) o['minVersion'] = tls.minVersion;
  if (tls.maxVersion) o['maxVersion'] = tls.maxVersion;
  if (tls.clientAuthType !== 'NoClientCert') {
    o['requestCert'] = true;
    o['rejectUnauthorized'] = tls.clientAuthType === 'RequireAndVerifyClientCert';
  }
  return o;
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

  if (tls && tls.clientAuthType !== 'NoClientCert' && tls.clientAuthType !== 'RequestClientCert') {
    const mode = tls.clientAuthType;
    app.addHook('onRequest', async (req, reply) => {
      const socket = req.raw.socket as TLSSocket;
      const cert = socket.getPeerCertificate?.();
      const given = cert !== undefined && Object.keys(cert).length > 0;
      if (mode === 'RequireAnyClientCert' && !given) return reply.code(403).send('Client certificate required\n');
      if (mode === 'VerifyClientCertIfGiven' && given && !socket.authorized) {
        return reply.code(403).send('Client certificate not trusted\n');
      }
    });
  }

  await app.register(conntrackExporter, options);
  return app;
}
