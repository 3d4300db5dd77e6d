/**
 * Collector `stat`: the kernel's per-CPU conntrack statistics as counters.
 *
 * Source: `<procfs>/net/stat/nf_conntrack`, or `conntrack -S` (ctnetlink,
 * needs CAP_NET_ADMIN) where the kernel has no such file
 * (CONFIG_NF_CONNTRACK_PROCFS=n). Values are u32 per CPU and wrap; each
 * counter grows by the change since the previous reading, per CPU, and a
 * decrease that cannot be a wrap (module reload) is a reset, not +2^32
 * (counterDelta in src/metrics/delta-counter.ts).
 */
import { Counter } from 'prom-client';
import { DeltaCounter } from '../metrics/delta-counter.js';
import {
  STAT_HELP,
  parseConntrackStatFile,
  parseConntrackToolStats,
  type ConntrackStats,
} from '../procfs/conntrack-stat.js';
import { CommandError, type CommandRunner } from '../util/command.js';
import type { FsRoot } from '../procfs/fs.js';
import { NoDataError, type CollectorDefinition } from './collector.js';

export interface StatReading {
  readonly stats: ConntrackStats;
  readonly source: 'procfs' | 'netlink';
}

/** Runs `conntrack -S` and `conntrack -S expect` and parses both. */
export async function readToolStats(run: CommandRunner, tool: string): Promise<ConntrackStats> {
  const main = await run(tool, ['-S']);
  if (main.code !== 0) {
    throw new CommandError(`${tool} -S exited with ${main.code ?? main.signal}: ${main.stderr.trim().slice(0, 200)}`);
  }
  const stats = parseConntrackToolStats(main.stdout, `${tool} -S`);
  // Expectation counters come from a separate request; older tools and kernels may refuse it.
  const expect = await run(tool, ['-S', 'expect']).catch(() => undefined);
  if (!expect || expect.code !== 0 || expect.stdout.trim() === '') return stats;
  const extra = parseConntrackToolStats(expect.stdout, `${tool} -S expect`);
  const cpus = stats.cpus.map((row) => {
    const more = extra.cpus.find((r) => r.cpu === row.cpu);
    return more ? { cpu: row.cpu, values: new Map([...row.values, ...more.values]) } : row;
  });
  return { ...stats, names: [...stats.names, ...extra.names.filter((n) => !stats.names.includes(n))], cpus };
}

/** The proc file if it exists, else `conntrack -S`; NoDataError when neither is available. */
export async function readStats(procfs: FsRoot, run: CommandRunner, tool: string): Promise<StatReading> {
  const path = procfs.path('net', 'stat', 'nf_conntrack');
  const text = await procfs.readText('net', 'stat', 'nf_conntrack');
  if (text !== undefined) return { stats: parseConntrackStatFile(text, path), source: 'procfs' };
  try {
    return { stats: await readToolStats(run, tool), source: 'netlink' };
  } catch (err) {
    if (err instanceof CommandError && err.notFound) {
      throw new NoDataError(`neither ${path} exists nor can ${tool} be run (conntrack-tools not installed)`);
    }
    throw new Error(`${path} does not exist and ${tool} -S failed: ${(err as Error).message}`, { cause: err });
  }
}

export const statCollector: CollectorDefinition = {
  name: 'stat',
  help: 'Per-CPU conntrack statistics (drop, insert_failed, early_drop, …) from /proc/net/stat/nf_conntrack or conntrack -S.',
  defaultEnabled: true,
  flags: [
    {
      name: 'collector.stat.per-cpu',
      type: 'bool',
      default: 'false',
      help: 'Keep one series per CPU (label cpu) instead of summing the statistics over CPUs.',
    },
  ],
  create(ctx) {
    const perCpu = ctx.flags.bool('collector.stat.per-cpu');
    const tool = ctx.flags.string('conntrack.path');
    const counters = new Map<string, DeltaCounter<'cpu'>>();
    let lastSource: StatReading['source'] | undefined;

    const counterFor = (name: string): DeltaCounter<'cpu'> => {
      let c = counters.get(name);
      if (!c) {
        const what = STAT_HELP[name] ?? `Kernel conntrack statistic "${name}"`;
        const counter = new Counter<'cpu'>({
          name: `conntrack_stat_${name}_total`,
          // The same text whatever the flags: label cpu says whether the series are per CPU.
          help: `${what} (/proc/net/stat/nf_conntrack, or conntrack -S; summed over CPUs, or per CPU in label cpu with --collector.stat.per-cpu).`,
          labelNames: perCpu ? ['cpu'] : [],
          registers: [ctx.registry],
        });
        c = new DeltaCounter(counter, 32);
        counters.set(name, c);
      }
      return c;
    };

    return {
      async update() {
        const reading = await readStats(ctx.procfs, ctx.run, tool);
        if (reading.source !== lastSource) {
          ctx.logger.info({ source: reading.source }, `reading conntrack statistics from ${reading.source}`);
          lastSource = reading.source;
        }
        for (const row of reading.stats.cpus) {
          for (const [name, value] of row.values) {
            counterFor(name).observe(String(row.cpu), perCpu ? { cpu: String(row.cpu) } : {}, value);
          }
        }
      },
    };
  },
};
