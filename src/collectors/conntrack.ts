/**
 * Collector `conntrack`: the table's size and limits, from sysctl files.
 * Constant cost; read on every scrape.
 */
import { SnapshotGauge } from '../metrics/snapshot-gauge.js';
import type { FsRoot } from '../procfs/fs.js';
import { NoDataError, type CollectorDefinition } from './collector.js';

/** Candidate files, newest layout first; the old ip_conntrack names are from kernels before 4.9. */
export const SYSCTL_PATHS = {
  count: [
    ['sys', 'net', 'netfilter', 'nf_conntrack_count'],
    ['sys', 'net', 'ipv4', 'netfilter', 'ip_conntrack_count'],
  ],
  max: [
    ['sys', 'net', 'netfilter', 'nf_conntrack_max'],
    ['sys', 'net', 'nf_conntrack_max'],
    ['sys', 'net', 'ipv4', 'netfilter', 'ip_conntrack_max'],
  ],
  buckets: [
    ['sys', 'net', 'netfilter', 'nf_conntrack_buckets'],
    ['sys', 'net', 'ipv4', 'netfilter', 'ip_conntrack_buckets'],
  ],
  expectMax: [['sys', 'net', 'netfilter', 'nf_conntrack_expect_max']],
} as const;

/** Reads the size sysctls; each is undefined when its file is absent. */
export async function readTableSize(procfs: FsRoot): Promise<{
  count?: number;
  max?: number;
  buckets?: number;
  expectMax?: number;
}> {
  const [count, max, buckets, expectMax] = await Promise.all([
    procfs.readFirstInt(SYSCTL_PATHS.count),
    procfs.readFirstInt(SYSCTL_PATHS.max),
    procfs.readFirstInt(SYSCTL_PATHS.buckets),
    procfs.readFirstInt(SYSCTL_PATHS.expectMax),
  ]);
  return { count: count?.value, max: max?.value, buckets: buckets?.value, expectMax: expectMax?.value };
}

export const conntrackCollector: CollectorDefinition = {
  name: 'conntrack',
  help: 'Entry count, limit, hash buckets and expectation limit from /proc/sys/net/netfilter.',
  defaultEnabled: true,
  create(ctx) {
    const registers = [ctx.registry];
    const entries = new SnapshotGauge({
      name: 'conntrack_entries',
      help: "Entries in the connection tracking table of the exporter's network namespace (/proc/sys/net/netfilter/nf_conntrack_count).",
      registers,
    });
    const limit = new SnapshotGauge({
      name: 'conntrack_entries_limit',
      help: 'Maximum entries each network namespace may hold (/proc/sys/net/netfilter/nf_conntrack_max).',
      registers,
    });
    const buckets = new SnapshotGauge({
      name: 'conntrack_buckets',
      help: 'Hash table buckets, shared by all network namespaces (/proc/sys/net/netfilter/nf_conntrack_buckets).',
      registers,
    });
    const expectLimit = new SnapshotGauge({
      name: 'conntrack_expect_entries_limit',
      help: 'Maximum expectation entries (/proc/sys/net/netfilter/nf_conntrack_expect_max).',
      registers,
    });
    return {
      async update() {
        const size = await readTableSize(ctx.procfs);
        entries.setOnly(size.count);
        limit.setOnly(size.max);
        buckets.setOnly(size.buckets);
        expectLimit.setOnly(size.expectMax);
        if (size.count === undefined && size.max === undefined) {
          throw new NoDataError(
            `nf_conntrack is not loaded or not visible: no ${ctx.procfs.path('sys/net/netfilter/nf_conntrack_count')}`,
          );
        }
      },
    };
  },
};
