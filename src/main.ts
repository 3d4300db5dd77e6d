#!/usr/bin/env node
/**
 * Process entry point: the only place with side effects. Parses flags (a bad
 * one exits 2 naming it), loads the web config, listens, and on SIGTERM or
 * SIGINT closes gracefully: in-flight scrapes finish, collectors stop, exit 0.
 */
import { buildInfo } from './build-info.js';
import { COLLECTORS } from './collectors/index.js';
import { FlagError, formatHelp } from './config/flags.js';
import { allFlags, parseListenAddress, parseOptions } from './config/options.js';
import { loadWebConfig, WebConfigError, type WebConfig } from './config/web-config.js';
import { createLogger, type LogFormat } from './logger.js';
import { buildServer } from './server.js';

const USAGE = 'usage: conntrack-exporter [<flags>]\n\nPrometheus exporter for Linux netfilter connection tracking (nf_conntrack).';
const GRACE_MS = 10_000;

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseOptions(COLLECTORS, process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof FlagError) {
      process.stderr.write(`conntrack-exporter: error: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (parsed.action === 'help') {
    process.stdout.write(formatHelp(allFlags(COLLECTORS), USAGE));
    return 0;
  }
  const info = buildInfo();
  if (parsed.action === 'version') {
    process.stdout.write(`conntrack-exporter, version ${info.version} (revision: ${info.revision})\n  node: ${process.version}\n`);
    return 0;
  }
  const { flags } = parsed;

  let webConfig: WebConfig | undefined;
  const webConfigFile = flags.string('web.config.file');
  if (webConfigFile !== '') {
    try {
      webConfig = await loadWebConfig(webConfigFile);
    } catch (err) {
      if (err instanceof WebConfigError) {
        process.stderr.write(`conntrack-exporter: error: --web.config.file: ${err.message}\n`);
        return 2;
      }
      throw err;
    }
  }

  const logger = createLogger({ level: flags.string('log.level'), format: flags.string('log.format') as LogFormat });
  logger.info({ version: info.version, revision: info.revision, node: process.version }, 'starting conntrack-exporter');
  for (const warning of webConfig?.warnings ?? []) logger.warn({ file: webConfigFile }, `--web.config.file: ${warning}`);

  const app = await buildServer({ flags, logger, ...(webConfig ? { webConfig } : {}) });
  const listen = parseListenAddress(flags.string('web.listen-address'));
  if (!listen) throw new Error('unreachable: listen address validated by flag parsing');

  let closing = false;
  const shutdown = (signal: string): void => {
    if (closing) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    closing = true;
    logger.info({ signal }, 'shutting down: finishing in-flight scrapes');
    const force = setTimeout(() => {
      logger.error(`graceful shutdown took longer than ${GRACE_MS} ms: exiting`);
      process.exit(1);
    }, GRACE_MS);
    force.unref();
    app.close().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'error while shutting down');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  try {
    // No host: every interface, IPv6 and IPv4 where the host has IPv6, else IPv4 only.
    const address = await app
      .listen({ host: listen.host ?? '::', port: listen.port })
      .catch(async (err: NodeJS.ErrnoException) => {
        if (listen.host === undefined && err.code === 'EAFNOSUPPORT') return app.listen({ host: '0.0.0.0', port: listen.port });
        throw err;
      });
    logger.info({ address, tls: Boolean(webConfig?.tls), auth: Boolean(webConfig?.basicAuthUsers.size) }, `listening on ${address}`);
  } catch (err) {
    logger.error({ err }, `cannot listen on --web.listen-address=${flags.string('web.listen-address')}: ${(err as Error).message}`);
    await app.close().catch(() => undefined);
    return 1;
  }
  return -1; // keep running
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`conntrack-exporter: fatal: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
