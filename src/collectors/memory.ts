/**
 * Collector `memory`: what the conntrack table costs in kernel memory, and
 * what limit the classic sizing rule would give this machine.
 *
 * Sources: `<procfs>/slabinfo` (root only, mode 0400), the bucket count
 * (`nf_conntrack_buckets`, else the `hashsize` module parameter under
 * `<sysfs>/module/nf_conntrack/parameters`, mode 0600), `<procfs>/meminfo`, and
 * the page size from `<procfs>/self/auxv`. A source that is absent or denied
 * only removes its own metrics, with the reason logged once; the collector
 * fails only when none of them can be read.
 */
import { arch, endianness } from 'node:os';
import { SnapshotGauge } from '../metrics/snapshot-gauge.js';
import { parseAuxvPageSize } from '../procfs/auxv.js';
import { isNotFound, parseIntFile, readSmallFileSync } from '../procfs/fs.js';
import { parseMeminfo } from '../procfs/meminfo.js';
import { conntrackSlab, isConntrackEntryCache, parseSlabinfo, type ConntrackSlab } from '../procfs/slabinfo.js';
import { readTableSize } from './conntrack.js';
import { NoDataError, type CollectorDefinition } from './collector.js';

/** Word size of the machine: the exporter runs natively, so Node's architecture is the kernel's. */
export const WORD_BITS: 32 | 64 = ['x64', 'arm64', 'ppc64', 's390x', 'riscv64', 'loong64'].includes(arch()) ? 64 : 32;

/**
 * The classic nf_conntrack sizing rule (kernel defaults before 5.15, and the
 * advice in countless tuning guides): nf_conntrack_max = RAM / 16384 / (word bits / 32),
 * with nf_conntrack_buckets = max / 8. Pure.
 */
export function recommendedEntriesLimit(memTotalBytes: number, wordBits: number): number {
  return Math.floor(memTotalBytes / 16384 / (wordBits / 32));
}

/** The hash table: one bucket head (a pointer, struct hlist_nulls_head) per bucket. Pure. */
export function hashTableBytes(buckets: number, wordBits: number): number {
  return buckets * (wordBits / 8);
}

/** Memory held by the caches' slabs. Pure. */
export function slabBytes(slab: ConntrackSlab, pageSize: number): number {
  return slab.pages * pageSize;
}

/** Reads a root-only file: its text, or why it is not there (absent, denied). */
async function readPrivileged(path: string): Promise<{ text: string } | { reason: string }> {
  try {
    return { text: readSmallFileSync(path).toString('utf8') }; // small: read inline, see readTextOrAbsent
  } catch (err) {
    if (isNotFound(err)) return { reason: `${path} does not exist` };
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') return { reason: `${path} is not readable (needs root)` };
    throw new Error(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

export const memoryCollector: CollectorDefinition = {
  name: 'memory',
  help: 'Slab and hash-table memory of the conntrack table and the classic sizing advice, from /proc/slabinfo (root), nf_conntrack_buckets and /proc/meminfo.',
  defaultEnabled: true,
  create(ctx) {
    const registers = [ctx.registry];
    const slabTotal = new SnapshotGauge({
      name: 'conntrack_slab_bytes',
      help: 'Memory held by the conntrack entry slab caches: num_slabs × pagesperslab × page size, summed over the nf_conntrack caches of /proc/slabinfo (used and free objects alike).',
      registers,
    });
    const slabObject = new SnapshotGauge({
      name: 'conntrack_slab_object_bytes',
      help: 'Size of one conntrack entry (struct nf_conn) in its slab cache, the objsize column of /proc/slabinfo; extensions such as NAT and accounting are allocated separately.',
      registers,
    });
    const slabActive = new SnapshotGauge({
      name: 'conntrack_slab_active_objects',
      help: 'Allocated conntrack entry objects, the active_objs column of the nf_conntrack caches in /proc/slabinfo (all namespaces, including entries awaiting RCU free).',
      registers,
    });
    const hashBytes = new SnapshotGauge({
      name: 'conntrack_hash_bytes',
      help: 'Memory of the conntrack hash table: buckets (/proc/sys/net/netfilter/nf_conntrack_buckets) × the size of a bucket head (8 bytes on 64-bit).',
      registers,
    });
    const hashsize = new SnapshotGauge({
      name: 'conntrack_hashsize',
      help: 'The nf_conntrack hashsize module parameter (/sys/module/nf_conntrack/parameters/hashsize, root only), the configured bucket count.',
      registers,
    });
    const recommended = new SnapshotGauge({
      name: 'conntrack_entries_limit_recommended',
      help: 'Advice, not a kernel value: the classic sizing rule MemTotal / 16384 / (word bits / 32) from /proc/meminfo, with buckets at a limit / 8.',
      registers,
    });

    const reported = new Map<string, string>();
    const note = (what: string, reason: string | undefined): void => {
      if (reason === undefined) {
        if (reported.delete(what)) ctx.logger.info(`${what} is readable again`);
        return;
      }
      if (reported.get(what) === reason) return;
      reported.set(what, reason);
      ctx.logger.info({ metric: what }, `${what} not exported: ${reason}`);
    };

    let pageSize: number | undefined;
    const readPageSize = async (): Promise<number | undefined> => {
      if (pageSize !== undefined) return pageSize;
      const path = ctx.procfs.path('self', 'auxv');
      try {
        const data = readSmallFileSync(path);
        pageSize = parseAuxvPageSize(data, WORD_BITS === 64 ? 8 : 4, endianness() === 'LE', path);
        return pageSize;
      } catch (err) {
        // A key of its own: the slabinfo note is cleared on every good read and must not re-log this one.
        note('conntrack_slab_bytes (page size)', `page size unknown: ${(err as Error).message}`);
        return undefined;
      }
    };

    return {
      async update() {
        const slabPath = ctx.procfs.path('slabinfo');
        const hashsizePath = ctx.sysfs.path('module', 'nf_conntrack', 'parameters', 'hashsize');
        const [slabRead, hashsizeRead, size, meminfoText] = await Promise.all([
          readPrivileged(slabPath),
          readPrivileged(hashsizePath),
          readTableSize(ctx.procfs),
          ctx.procfs.readText('meminfo'),
        ]);

        let slab: ConntrackSlab | undefined;
        if ('text' in slabRead) {
          slab = conntrackSlab(parseSlabinfo(slabRead.text, slabPath, isConntrackEntryCache));
          note('conntrack_slab_bytes', slab ? undefined : `no nf_conntrack cache in ${slabPath} (module not loaded)`);
        } else {
          note('conntrack_slab_bytes', slabRead.reason);
        }
        const page = slab ? await readPageSize() : undefined;
        slabTotal.setOnly(slab && page !== undefined ? slabBytes(slab, page) : undefined);
        slabObject.setOnly(slab?.objsize);
        slabActive.setOnly(slab?.activeObjs);

        const hs = 'text' in hashsizeRead ? parseIntFile(hashsizeRead.text, hashsizePath) : undefined;
        note('conntrack_hashsize', 'reason' in hashsizeRead ? hashsizeRead.reason : undefined);
        hashsize.setOnly(hs);
        const buckets = size.buckets ?? hs;
        hashBytes.setOnly(buckets === undefined ? undefined : hashTableBytes(buckets, WORD_BITS));

        const memTotal = meminfoText === undefined ? undefined : parseMeminfo(meminfoText, ctx.procfs.path('meminfo')).get('MemTotal');
        recommended.setOnly(memTotal === undefined ? undefined : recommendedEntriesLimit(memTotal, WORD_BITS));

        if (slab === undefined && buckets === undefined && memTotal === undefined) {
          throw new NoDataError(`none of ${slabPath}, nf_conntrack_buckets, ${hashsizePath} or ${ctx.procfs.path('meminfo')} is readable`);
        }
      },
    };
  },
};
