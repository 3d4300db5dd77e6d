/**
 * Network namespaces found through processes, with each one's conntrack entry
 * count and the pod it belongs to.
 *
 * A namespace has no name the kernel can list, but every process points at
 * its own: `readlink <procfs>/<pid>/ns/net` gives `net:[<inode>]`, the same
 * number the kernel log prints ("table full in netns 4026532177"). The scan
 * costs one readlink per process; the per-namespace files
 * (`<pid>/net/stat/nf_conntrack`, whose `entries` column is that namespace's
 * count and statistics, `<pid>/net/sockstat` and `<pid>/cgroup`) are read
 * only for the first process of each namespace, and for the next one only if
 * that process is gone.
 *
 * Processes come and go during a scan: a pid that vanishes (ENOENT, ESRCH) or
 * refuses access (EACCES, EPERM: reading another user's ns link needs ptrace
 * rights, i.e. root or CAP_SYS_PTRACE) is skipped and counted, never an error.
 * Namespaces held only by a bind mount (`ip netns add` with nothing running in
 * it) have no process and are not found.
 */
import { readdir, readlink } from 'node:fs/promises';
import { parseCgroupFile, type CgroupIdentity } from './cgroup.js';
import { parseConntrackStatFile, type CpuStats } from './conntrack-stat.js';
import { KernelFileError, ParseError, readTextOrAbsent, type FsRoot } from './fs.js';
import { parseSockstat, timeWaitSockets } from './sockstat.js';

/** Parses a `net:[4026531992]` link target into the inode. Pure; throws ParseError. */
export function parseNetnsLink(target: string, source = 'ns/net'): number {
  const m = /^net:\[(\d+)\]$/.exec(target.trim());
  if (!m) throw new ParseError(`${source}: expected net:[inode], got ${JSON.stringify(target.slice(0, 40))}`);
  return Number(m[1]);
}

/** File access used by the scan; tests replace it to simulate races and permissions. */
export interface NetnsScanIo {
  readdir(path: string): Promise<string[]>;
  readlink(path: string): Promise<string>;
  /** Whole file, undefined if absent; other failures throw (with the errno in `cause.code`). */
  readText(path: string): Promise<string | undefined>;
}

export const realNetnsIo: NetnsScanIo = {
  readdir: (path) => readdir(path),
  readlink: (path) => readlink(path),
  readText: readTextOrAbsent,
};

export interface NetnsReading {
  readonly inode: number;
  /** The process whose files were read (for reading more of the namespace later; it may have exited since). */
  readonly pid: number;
  /** Processes found in the namespace. */
  readonly processes: number;
  /** Entries in its conntrack table; undefined where `net/stat/nf_conntrack` does not exist. */
  readonly entries: number | undefined;
  /** The namespace's per-CPU statistics (raw u32 values) from the same file; empty where it does not exist. */
  readonly cpus: readonly CpuStats[];
  /** TIME_WAIT sockets (IPv4 and IPv6), `tw` of `<pid>/net/sockstat`; undefined where absent. */
  readonly timeWait: number | undefined;
  readonly identity: CgroupIdentity;
}

export interface NetnsScan {
  readonly namespaces: NetnsReading[];
  /** Pids skipped because they exited during the scan. */
  readonly vanished: number;
  /** Pids skipped because their files could not be read (permission). */
  readonly denied: number;
}

type Failure = 'vanished' | 'denied';

function errnoOf(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 3 && e; i++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string') return code;
    e = (e as Error).cause;
  }
  return undefined;
}

/** Vanished or denied for the errors a racing or foreign process causes; undefined for real failures. */
export function classifyPidError(err: unknown): Failure | undefined {
  const code = errnoOf(err);
  if (code === 'ENOENT' || code === 'ESRCH' || code === 'ENOTDIR') return 'vanished';
  if (code === 'EACCES' || code === 'EPERM') return 'denied';
  return undefined;
}

/** Runs fn over items with at most `limit` in flight, keeping order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Pids tried per namespace before giving up on it (each one having vanished or refused). */
const ATTEMPTS_PER_NAMESPACE = 4;

/** The inode `<path>` (a `…/ns/net` link) names; undefined if it cannot be read (the process is gone). */
export async function readNetnsInode(path: string): Promise<number | undefined> {
  try {
    return parseNetnsLink(await readlink(path), path);
  } catch {
    return undefined;
  }
}

/**
 * TIME_WAIT sockets of a namespace from `<pid>/net/sockstat`; undefined if the file is missing,
 * unreadable or malformed: an extra file must not cost the namespace its entry count.
 */
async function readTimeWait(io: NetnsScanIo, path: string): Promise<number | undefined> {
  try {
    const text = await io.readText(path);
    return text === undefined ? undefined : timeWaitSockets(parseSockstat(text, path));
  } catch {
    return undefined;
  }
}

/** Enumerates network namespaces under `procfs` with their entry counts and pod identity. */
export async function scanNetworkNamespaces(procfs: FsRoot, io: NetnsScanIo = realNetnsIo): Promise<NetnsScan> {
  let names: string[];
  try {
    names = await io.readdir(procfs.root);
  } catch (err) {
    throw new KernelFileError(`cannot list processes in ${procfs.root}: ${(err as Error).message}`, { cause: err });
  }
  const pids = names.filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b);
  let vanished = 0;
  let denied = 0;
  const skip = (err: unknown): void => {
    const kind = classifyPidError(err);
    if (kind === undefined) throw err;
    if (kind === 'vanished') vanished++;
    else denied++;
  };

  // One readlink per pid; pids in ascending order, so a pod's sandbox (pause) process usually comes first.
  const links = await mapLimit(pids, 64, async (pid) => {
    try {
      return parseNetnsLink(await io.readlink(procfs.path(String(pid), 'ns', 'net')), procfs.path(String(pid), 'ns/net'));
    } catch (err) {
      skip(err);
      return undefined;
    }
  });
  const byInode = new Map<number, number[]>();
  links.forEach((inode, i) => {
    if (inode === undefined) return;
    const list = byInode.get(inode);
    if (list) list.push(pids[i] as number);
    else byInode.set(inode, [pids[i] as number]);
  });

  const readings = await mapLimit([...byInode], 16, async ([inode, members]): Promise<NetnsReading | undefined> => {
    for (const pid of members.slice(0, ATTEMPTS_PER_NAMESPACE)) {
      const dir = String(pid);
      try {
        // The cgroup file exists for every live process; reading it first tells "gone" from "no stat file".
        const cgroup = await io.readText(procfs.path(dir, 'cgroup'));
        if (cgroup === undefined) {
          vanished++;
          continue;
        }
        const statPath = procfs.path(dir, 'net', 'stat', 'nf_conntrack');
        const stat = await io.readText(statPath);
        if (stat === undefined) {
          // Either the kernel has no such file (CONFIG_NF_CONNTRACK_PROCFS=n, module not loaded) or the pid just exited.
          await io.readlink(procfs.path(dir, 'ns', 'net'));
        }
        const parsed = stat === undefined ? undefined : parseConntrackStatFile(stat, statPath);
        const timeWait = await readTimeWait(io, procfs.path(dir, 'net', 'sockstat'));
        return {
          inode,
          pid,
          processes: members.length,
          entries: parsed?.entries,
          cpus: parsed?.cpus ?? [],
          timeWait,
          identity: parseCgroupFile(cgroup),
        };
      } catch (err) {
        skip(err);
      }
    }
    return undefined;
  });
  return {
    namespaces: readings.filter((r): r is NetnsReading => r !== undefined),
    vanished,
    denied,
  };
}

export interface NetnsSelection {
  /** Namespaces exported, largest first. */
  readonly shown: readonly NetnsReading[];
  /** Entries of the namespaces with a count that are not shown (below the minimum or beyond the maximum). */
  readonly omittedEntries: number;
  readonly omittedNamespaces: number;
}

/**
 * Picks the namespaces to export: at least `minEntries` entries, at most
 * `max` of them, largest first (ties by inode, for stable output). Pure.
 */
export function selectNamespaces(namespaces: readonly NetnsReading[], minEntries: number, max: number): NetnsSelection {
  const counted = namespaces.filter((n): n is NetnsReading & { entries: number } => n.entries !== undefined);
  const sorted = [...counted].sort((a, b) => b.entries - a.entries || a.inode - b.inode);
  const eligible = sorted.filter((n) => n.entries >= minEntries);
  const shown = eligible.slice(0, max);
  const shownSet = new Set(shown);
  const rest = sorted.filter((n) => !shownSet.has(n));
  return {
    shown,
    omittedEntries: rest.reduce((s, n) => s + n.entries, 0),
    omittedNamespaces: rest.length,
  };
}

/** What the collector knows of a namespace's statistics when choosing which get series. */
export interface NetnsStatCandidate {
  readonly inode: number;
  readonly entries: number;
  /** Sum of the exported statistics' changes since the previous scrape (0 on the first). */
  readonly rose: number;
  /** Sum of the exported statistics' running totals. */
  readonly total: number;
}

/**
 * Picks the namespaces that get per-namespace statistics series, at most `max`.
 * Eligible: a namespace whose statistics rose since the previous scrape or are
 * not zero (a namespace that drops is often one with few entries: the limit is
 * global, so the dropping namespace need not be the one that filled the table),
 * or one with at least `minEntries` entries, as for conntrack_netns_entries.
 * Ranked: the largest rise first (the namespace dropping now), then the
 * largest totals (one that dropped before), then the largest entry count,
 * ties by inode (stable output). Pure.
 */
export function selectStatNamespaces(candidates: readonly NetnsStatCandidate[], minEntries: number, max: number): NetnsStatCandidate[] {
  return candidates
    .filter((c) => c.rose > 0 || c.total > 0 || c.entries >= minEntries)
    .sort((a, b) => b.rose - a.rose || b.total - a.total || b.entries - a.entries || a.inode - b.inode)
    .slice(0, max);
}

/**
 * Picks the namespaces that get conntrack_netns_sockets_time_wait: those with
 * TIME_WAIT sockets or at least `minEntries` conntrack entries, at most `max`,
 * most TIME_WAIT first (then entries, then inode). Pure.
 */
export function selectTimeWaitNamespaces(namespaces: readonly NetnsReading[], minEntries: number, max: number): (NetnsReading & { timeWait: number })[] {
  return namespaces
    .filter((n): n is NetnsReading & { timeWait: number } => n.timeWait !== undefined)
    .filter((n) => n.timeWait > 0 || (n.entries ?? 0) >= minEntries)
    .sort((a, b) => b.timeWait - a.timeWait || (b.entries ?? 0) - (a.entries ?? 0) || a.inode - b.inode)
    .slice(0, max);
}
