/**
 * Which network namespace on this host a source address belongs to, and that
 * namespace's ip_local_port_range: for a pod whose connections are not
 * source-NATed, the range its source ports actually run out of.
 *
 * Opt-in (--collector.table.namespace-ranges), after a scan and only for the
 * top destinations' busiest sources that are not source-NATed:
 * - namespaces are found through processes (src/procfs/netns.ts: one
 *   readlink per process, hostPID and ptrace rights, i.e. root);
 * - each namespace's addresses come from `<pid>/net/fib_trie` and
 *   `<pid>/net/if_inet6` (src/procfs/local-addresses.ts), kept for the
 *   refresh interval (a pod keeps its addresses for its life); an address held
 *   by several namespaces (loopback) tells nothing and is left out;
 * - the owning namespace's range is read inside it with nsenter
 *   (src/procfs/netns-sysctl.ts: CAP_SYS_ADMIN, one process per namespace per
 *   refresh), only for the namespaces that own a wanted address.
 * A source owned by the exporter's own namespace, by no namespace, or whose
 * range cannot be read gets no answer here (the caller uses the local range).
 */
import type { FsRoot } from '../procfs/fs.js';
import { addressOwners, readLocalAddresses, type NamespaceAddresses } from '../procfs/local-addresses.js';
import { NetnsSysctlReader } from '../procfs/netns-sysctl.js';
import { readNetnsInode, scanNetworkNamespaces } from '../procfs/netns.js';
import { portRangeSize } from '../procfs/port-range.js';
import type { CommandRunner } from '../util/command.js';

export interface NamespaceRangeOptions {
  readonly procfs: FsRoot;
  readonly run: CommandRunner;
  readonly nsenter: string;
  /** How long a namespace's addresses and range are kept (ms). */
  readonly refreshMs: number;
  readonly now?: () => number;
}

export interface NamespaceRangeLookup {
  /** Range size for an address owned by another namespace, if known. */
  readonly sizeOf: (address: string) => number | undefined;
  /** Why nothing could be read (no namespaces found, nsenter failing), for a log line. */
  readonly problem: string | undefined;
}

export class NamespaceRanges {
  private readonly addresses = new Map<number, { at: number; pid: number; addresses: string[] }>();
  private readonly sysctls: NetnsSysctlReader;

  constructor(private readonly opts: NamespaceRangeOptions) {
    this.sysctls = new NetnsSysctlReader(opts.run, {
      nsenter: opts.nsenter,
      refreshMs: opts.refreshMs,
      inodeOf: readNetnsInode,
      now: opts.now,
      // Off the request path (the table scan): wait for every read, at most 16 × 2 s / 4 at a time.
      deadlineMs: 30_000,
    });
  }

  /** Looks up the namespaces owning `wanted` addresses and reads their ranges. */
  async lookup(wanted: readonly string[]): Promise<NamespaceRangeLookup> {
    if (wanted.length === 0) return { sizeOf: () => undefined, problem: undefined };
    const now = (this.opts.now ?? Date.now)();
    const { procfs } = this.opts;
    const own = await readNetnsInode(procfs.path('self', 'ns', 'net'));
    const scan = await scanNetworkNamespaces(procfs);
    const live = new Set(scan.namespaces.map((n) => n.inode));
    for (const inode of this.addresses.keys()) if (!live.has(inode)) this.addresses.delete(inode);
    for (const n of scan.namespaces) {
      const cached = this.addresses.get(n.inode);
      if (cached && now - cached.at < this.opts.refreshMs) continue;
      const read = await readLocalAddresses(procfs, n.pid);
      // A pid that exited mid-read gives no addresses: keep what was known rather than nothing.
      if (read.ipv4.length + read.ipv6.length > 0 || !cached) {
        this.addresses.set(n.inode, { at: now, pid: n.pid, addresses: [...read.ipv4, ...read.ipv6] });
      }
    }
    const list: NamespaceAddresses[] = [...this.addresses].map(([inode, a]) => ({ inode, addresses: a.addresses }));
    const owners = addressOwners(list);
    const targets = new Map<number, number>();
    for (const address of wanted) {
      const inode = owners.get(address);
      if (inode === undefined || inode === own) continue;
      const pid = scan.namespaces.find((n) => n.inode === inode)?.pid;
      if (pid !== undefined) targets.set(inode, pid);
    }
    await this.sysctls.refresh([...targets].map(([inode, pid]) => ({ inode, pid, nsPath: procfs.path(String(pid), 'ns', 'net') })));
    const problem =
      scan.namespaces.length === 0
        ? `no network namespaces readable under ${procfs.root} (needs hostPID and root)`
        : targets.size > 0
          ? this.sysctls.allFailed()
          : undefined;
    return {
      sizeOf: (address) => {
        const inode = owners.get(address);
        if (inode === undefined || inode === own) return undefined;
        const range = this.sysctls.get(inode)?.portRange;
        return range === undefined ? undefined : portRangeSize(range);
      },
      problem,
    };
  }
}
