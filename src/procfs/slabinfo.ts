/**
 * `/proc/slabinfo` (format 2.1, SLAB and SLUB alike), and the slab caches that
 * hold conntrack entries.
 *
 * Each cache line is
 * `name active_objs num_objs objsize objperslab pagesperslab : tunables … : slabdata active_slabs num_slabs sharedavail`,
 * with more `: globalstat …` / `: cpustat …` sections under SLAB's
 * CONFIG_DEBUG_SLAB ("version: 2.1 (statistics)"). The file is mode 0400 (root only).
 *
 * The entries (`struct nf_conn`) live in one `nf_conntrack` cache since 4.7;
 * before that every network namespace had its own cache named
 * `nf_conntrack_<address of struct net>` (`nf_conntrack_ffffffff81b2a920`), and
 * kernels before 2.6.15's nf_conntrack used `ip_conntrack`. The expectation
 * cache `nf_conntrack_expect` is not an entry cache.
 */
import { ParseError } from './fs.js';

export interface SlabCache {
  readonly name: string;
  readonly activeObjs: number;
  readonly numObjs: number;
  readonly objsize: number;
  readonly objPerSlab: number;
  readonly pagesPerSlab: number;
  readonly activeSlabs: number;
  readonly numSlabs: number;
}

/** A count: digits, few enough for an exact number (a 1 MB digit run was Infinity: scripts/fuzz.mjs). */
const NUMBER = /^\d{1,15}$/;

/**
 * Parses the cache lines of `/proc/slabinfo`, every one or only those whose
 * name `only` accepts (the others are neither split nor checked: a scrape needs
 * two of ~240 lines, and splitting all of them was half of what a scrape
 * allocated). Pure; throws ParseError naming the line.
 */
export function parseSlabinfo(text: string, source = 'slabinfo', only?: (name: string) => boolean): SlabCache[] {
  const lines = text.split('\n');
  const version = /^slabinfo - version: (\d+)\.(\d+)/.exec(lines[0] ?? '');
  if (!version) throw new ParseError(`${source}: line 1 is not a "slabinfo - version:" header`);
  if (version[1] !== '2') throw new ParseError(`${source}: unsupported slabinfo version ${version[1]}.${version[2]}`);
  const caches: SlabCache[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line.trim() === '' || line.startsWith('#')) continue;
    if (only !== undefined) {
      const end = line.search(/\s/);
      if (!only(end < 0 ? line : line.slice(0, end))) continue;
    }
    const sections = line.split(':');
    const head = (sections[0] as string).trim().split(/\s+/);
    const slabdata = sections.map((s) => s.trim().split(/\s+/)).find((f) => f[0] === 'slabdata');
    const nums = head.slice(1);
    if (head.length !== 6 || !nums.every((n) => NUMBER.test(n)) || !slabdata || slabdata.length < 3) {
      throw new ParseError(`${source}: line ${i + 1} is not a cache line: ${JSON.stringify(line.slice(0, 80))}`);
    }
    const [activeSlabs, numSlabs] = slabdata.slice(1, 3).map(Number) as [number, number];
    // Counts are non-negative integers; "-1", "1e5", "0x10" are not slab counts (found by scripts/fuzz.mjs).
    if (!slabdata.slice(1, 3).every((n) => NUMBER.test(n)) || !Number.isFinite(activeSlabs) || !Number.isFinite(numSlabs)) {
      throw new ParseError(`${source}: line ${i + 1}: bad slabdata ${JSON.stringify(slabdata.join(' '))}`);
    }
    const [activeObjs, numObjs, objsize, objPerSlab, pagesPerSlab] = nums.map(Number) as [number, number, number, number, number];
    caches.push({ name: head[0] as string, activeObjs, numObjs, objsize, objPerSlab, pagesPerSlab, activeSlabs, numSlabs });
  }
  return caches;
}

/** True for caches that hold conntrack entries (not expectations). */
export function isConntrackEntryCache(name: string): boolean {
  return name === 'nf_conntrack' || name === 'ip_conntrack' || /^nf_conntrack_[0-9a-f]{8,16}$/.test(name);
}

export interface ConntrackSlab {
  /** Names of the caches summed (one since 4.7; one per network namespace before). */
  readonly caches: readonly string[];
  /** Objects in use: entries, including ones not yet confirmed or being freed after an RCU grace period. */
  readonly activeObjs: number;
  /** Size of one object in bytes (struct nf_conn, cache-line aligned); the largest if caches differ. */
  readonly objsize: number;
  /** Pages held by the caches' slabs (num_slabs × pagesperslab), used and free objects alike. */
  readonly pages: number;
}

/** Sums the conntrack entry caches, or undefined if there are none (module not loaded). Pure. */
export function conntrackSlab(caches: readonly SlabCache[]): ConntrackSlab | undefined {
  const mine = caches.filter((c) => isConntrackEntryCache(c.name));
  if (mine.length === 0) return undefined;
  return {
    caches: mine.map((c) => c.name),
    activeObjs: mine.reduce((s, c) => s + c.activeObjs, 0),
    objsize: Math.max(...mine.map((c) => c.objsize)),
    pages: mine.reduce((s, c) => s + c.numSlabs * c.pagesPerSlab, 0),
  };
}
