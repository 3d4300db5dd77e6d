/**
 * Collector `timeouts`: every conntrack timeout sysctl as
 * `conntrack_timeout_seconds{protocol,state}` (mapping in
 * src/procfs/conntrack-timeouts.ts). Timeouts are per network namespace; an
 * entry's lifetime after its last packet, e.g. 120 s for TCP TIME_WAIT, is
 * what keeps short connections in a full table.
 *
 * They change only when an admin (or a tool) writes the sysctl, yet reading
 * all ~26 files costs about 0.3 ms of CPU per scrape, a quarter of what a
 * scrape of the default collectors costs. So a good reading is reused for up
 * to TIMEOUTS_MAX_AGE_MS (said in the HELP text and the README); a failed or
 * empty one is retried on the next scrape.
 */
import { readdirSync } from 'node:fs';
import { SnapshotGauge, type Sample } from '../metrics/snapshot-gauge.js';
import { parseTimeoutSysctlName, type TimeoutKey } from '../procfs/conntrack-timeouts.js';
import { isNotFound, KernelFileError, type FsRoot } from '../procfs/fs.js';
import { NoDataError, type CollectorDefinition } from './collector.js';

/** Directories holding the timeout sysctls, newest first; the ip_conntrack copies are from kernels before 4.9. */
const TIMEOUT_DIRS = [
  ['sys', 'net', 'netfilter'],
  ['sys', 'net', 'ipv4', 'netfilter'],
] as const;

async function listDir(path: string): Promise<string[] | undefined> {
  try {
    return readdirSync(path); // ~40 names: inline, like the files (readTextOrAbsent)
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw new KernelFileError(`cannot list ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Reads every timeout sysctl of the first directory that has any. */
export async function readConntrackTimeouts(procfs: FsRoot): Promise<Sample<'protocol' | 'state'>[]> {
  for (const dir of TIMEOUT_DIRS) {
    const names = (await listDir(procfs.path(...dir))) ?? [];
    const keyed = names.flatMap((name) => {
      const key = parseTimeoutSysctlName(name);
      return key ? [{ name, key }] : [];
    });
    if (keyed.length === 0) continue;
    const values = await Promise.all(keyed.map(({ name }) => procfs.readInt(...dir, name)));
    const samples: (Sample<'protocol' | 'state'> & { labels: TimeoutKey })[] = [];
    keyed.forEach(({ key }, i) => {
      const v = values[i];
      if (v !== undefined) samples.push({ labels: { protocol: key.protocol, state: key.state }, value: v });
    });
    return samples.sort((a, b) => a.labels.protocol.localeCompare(b.labels.protocol) || a.labels.state.localeCompare(b.labels.state));
  }
  return [];
}

/** How long a reading of the timeout sysctls is reused. */
export const TIMEOUTS_MAX_AGE_MS = 60_000;

export const timeoutsCollector: CollectorDefinition = {
  name: 'timeouts',
  help: 'Conntrack timeouts per protocol and state from /proc/sys/net/netfilter/nf_conntrack_*_timeout*.',
  defaultEnabled: true,
  create(ctx) {
    const timeouts = new SnapshotGauge<'protocol' | 'state'>({
      name: 'conntrack_timeout_seconds',
      help: `How long an entry lives after its last packet, per protocol and state (/proc/sys/net/netfilter/nf_conntrack_<protocol>_timeout[_<state>]; configuration, re-read at most every ${TIMEOUTS_MAX_AGE_MS / 1000} s).`,
      labelNames: ['protocol', 'state'],
      registers: [ctx.registry],
    });
    let readAt: number | undefined;
    return {
      async update() {
        if (readAt !== undefined && Date.now() - readAt < TIMEOUTS_MAX_AGE_MS) return;
        readAt = undefined;
        const samples = await readConntrackTimeouts(ctx.procfs);
        timeouts.replace(samples);
        if (samples.length === 0) {
          throw new NoDataError(`no nf_conntrack_*_timeout* sysctls under ${ctx.procfs.path('sys/net/netfilter')} (nf_conntrack not loaded)`);
        }
        readAt = Date.now();
      },
    };
  },
};
