// The floor for the exporter's idle memory: a minimal Fastify + prom-client + pino app on the same
// Node.js, serving prom-client's default metrics on /metrics (gzipped when asked, as the exporter
// does) and nothing else. Usage: node bench/lib/minimal-app.mjs <port>; prints "listening on" to stderr.
import { gzipSync } from 'node:zlib';
import Fastify from 'fastify';
import { pino } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';

const port = Number(process.argv[2]);
const logger = pino({ level: 'info' }, pino.destination(2));
const app = Fastify({ loggerInstance: logger.child({ component: 'http' }, { level: 'warn' }) });
const registry = new Registry();
collectDefaultMetrics({ register: registry });
app.get('/metrics', async (req, reply) => {
  const body = await registry.metrics();
  reply.type(registry.contentType);
  if (/gzip/.test(req.headers['accept-encoding'] ?? '')) return reply.header('Content-Encoding', 'gzip').send(gzipSync(body));
  return reply.send(body);
});
await app.listen({ host: '127.0.0.1', port });
logger.info(`listening on 127.0.0.1:${port}`);
