/**
 * Another namespace's `ip_local_port_range` and `tcp_tw_reuse`.
 *
 * Sysctls under /proc/sys answer for the network namespace of the process
 * that opens them, whatever path reaches them: `/proc/<pid>/root/proc/sys/…`
 * still shows the reader's values (checked on 6.18), and nothing under
 * `/proc/<pid>/net/` carries them. The only read-only way is a process in
 * that namespace: `nsenter --net=<procfs>/<pid>/ns/net cat …` (setns(2) needs
 * CAP_SYS_ADMIN, opening the ns link needs ptrace access as for the scan). So
 * it is opt-in, costs one short-lived process per namespace (~8 ms wall on a
 * 2-vCPU VM), and results are kept for a refresh interval.
 *
 * A pid can exit and be reused between the scan and nsenter; the namespace
 * link is read again after the child has run and the result is kept only if
 * it still names the same namespace.
 */
import { ParseError } from './fs.js';
import { parsePortRange, type PortRange } from './port-range.js';
import type { CommandRunner } from '../util/command.js';

export const SYSCTL_FILES = ['/proc/sys/net/ipv4/ip_local_port_range', '/proc/sys/net/ipv4/tcp_tw_reuse'] as const;

export interface NetnsSysctls {
  readonly portRange: PortRange;
  /** 0 off, 1 on, 2 loopback only. */
  readonly twReuse: number;
}

/** The arguments of `nsenter` reading the sysctls in the namespace at `nsPath`. */
export function nsenterArgs(nsPath: string): string[] {
  return [`--net=${nsPath}`, '--', 'cat', ...SYSCTL_FILES];
}

/** Parses `cat ip_local_port_range tcp_tw_reuse` ("40000\t40019\n2\n"). Pure; throws ParseError. */
export function parseSysctlOutput(text: string, source = 'nsenter cat'): NetnsSysctls {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (lines.length !== 2) throw new ParseError(`${source}: expected 2 lines (port range, tcp_tw_reuse), got ${lines.length}`);
  const portRange = parsePortRange(lines[0] as string, `${source}: ip_local_port_range`);
  const reuse = (lines[1] as string).trim();
  if (!/^\d+$/.test(reuse)) throw new ParseError(`${source}: tcp_tw_reuse is not a number: ${JSON.stringify(reuse.slice(0, 20))}`);
  return { portRange, twReuse: Number(reuse) };
}

interface CacheEntry {
  readonly at: number;
  readonly value?: NetnsSysctls;
  readonly error?: string;
}

export interface SysctlTarget {
  readonly inode: number;
  readonly pid: number;
  /** `<procfs>/<pid>/ns/net` */
  readonly nsPath: string;
}

/**
 * Reads the sysctls of namespaces through `nsenter`, at most once per
 * `refreshMs` per namespace (failures too, so a missing privilege costs one
 * process per namespace per interval, not per scrape), `concurrency` at a time
 * and at most `perRefresh` per call. A refresh waits at most `deadlineMs` for
 * its reads, so a slow nsenter cannot hold up the scrape: reads still running
 * then fill the cache for a later scrape, and no new refresh starts meanwhile.
 */
export class NetnsSysctlReader {
  private readonly cache = new Map<number, CacheEntry>();
  private inFlight: Promise<void> | undefined;

  constructor(
    private readonly run: CommandRunner,
    private readonly opts: {
      readonly nsenter: string;
      readonly refreshMs: number;
      readonly concurrency?: number;
      /** Namespaces read per refresh() at most (default 16). */
      readonly perRefresh?: number;
      readonly timeoutMs?: number;
      /** How long refresh() waits for its reads at most (default 1000 ms). */
      readonly deadlineMs?: number;
      /** Current inode of `<pid>/ns/net`, to detect a reused pid; undefined if it cannot be read. */
      readonly inodeOf: (nsPath: string) => Promise<number | undefined>;
      readonly now?: () => number;
    },
  ) {}

  /** Refreshes stale entries of `targets` and forgets namespaces not among them, waiting at most `deadlineMs`. */
  async refresh(targets: readonly SysctlTarget[]): Promise<void> {
    this.inFlight ??= this.refreshNow(targets).finally(() => {
      this.inFlight = undefined;
    });
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.opts.deadlineMs ?? 1000);
    });
    await Promise.race([this.inFlight, deadline]);
    clearTimeout(timer);
  }

  private async refreshNow(targets: readonly SysctlTarget[]): Promise<void> {
    const now = (this.opts.now ?? Date.now)();
    const wanted = new Set(targets.map((t) => t.inode));
    for (const inode of this.cache.keys()) if (!wanted.has(inode)) this.cache.delete(inode);
    // Never-read namespaces first, then the oldest; at most `perRefresh`, so a node's worth of new pods is spread over
    // several scrapes instead of delaying one.
    const age = (t: SysctlTarget): number => {
      const e = this.cache.get(t.inode);
      return e === undefined ? Infinity : now - e.at;
    };
    const stale = targets
      .filter((t) => age(t) >= this.opts.refreshMs)
      .sort((a, b) => age(b) - age(a) || a.inode - b.inode)
      .slice(0, this.opts.perRefresh ?? 16);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < stale.length) {
        const t = stale[next++] as SysctlTarget;
        this.cache.set(t.inode, { at: now, ...(await this.readOne(t)) });
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.opts.concurrency ?? 4, stale.length) }, worker));
  }

  private async readOne(t: SysctlTarget): Promise<{ value?: NetnsSysctls; error?: string }> {
    try {
      const r = await this.run(this.opts.nsenter, nsenterArgs(t.nsPath), { timeoutMs: this.opts.timeoutMs ?? 2000, maxBytes: 4096 });
      if (r.code !== 0) return { error: `${this.opts.nsenter} exited with ${r.code ?? r.signal}: ${r.stderr.trim().slice(0, 200)}` };
      const value = parseSysctlOutput(r.stdout, `${this.opts.nsenter} --net=${t.nsPath} cat`);
      if ((await this.opts.inodeOf(t.nsPath)) !== t.inode) return { error: `pid ${t.pid} left namespace ${t.inode} during the read` };
      return { value };
    } catch (err) {
      return { error: (err as Error).message };
    }
  }

  get(inode: number): NetnsSysctls | undefined {
    return this.cache.get(inode)?.value;
  }

  /** The error of the last read of every namespace, if none has a value (e.g. no CAP_SYS_ADMIN); else undefined. */
  allFailed(): string | undefined {
    let error: string | undefined;
    for (const e of this.cache.values()) {
      if (e.value) return undefined;
      error ??= e.error;
    }
    return error;
  }

  get size(): number {
    return this.cache.size;
  }
}
