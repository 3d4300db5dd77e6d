/**
 * Builds the exporter plugin on a bare Fastify instance for inject() tests.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { conntrackExporter, type AppOptions } from '../../src/app.js';
import { COLLECTORS } from '../../src/collectors/index.js';
import { parseOptions } from '../../src/config/options.js';
import type { CommandRunner } from '../../src/util/command.js';

export interface TestAppOptions extends Partial<Omit<AppOptions, 'flags'>> {
  /** Command-line flags, e.g. ['--path.procfs=test/fixtures/proc/6.18']. */
  args?: string[];
  env?: Record<string, string>;
}

/** A command runner that fails as if conntrack-tools were not installed. */
export const noTools: CommandRunner = async (file) => {
  const { CommandError } = await import('../../src/util/command.js');
  throw new CommandError(`cannot run ${file}: spawn ${file} ENOENT`, true);
};

export async function buildTestApp(opts: TestAppOptions = {}): Promise<FastifyInstance> {
  const { args = [], env = {}, ...rest } = opts;
  const { flags } = parseOptions(rest.collectors ?? COLLECTORS, args, env);
  const app = Fastify({ logger: false });
  await app.register(conntrackExporter, {
    flags,
    logger: pino({ level: 'silent' }),
    run: noTools,
    defaultMetrics: false,
    ...rest,
  });
  await app.ready();
  return app;
}

/** Samples of a text exposition: `name{labels}` → value. */
export function samples(body: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}
