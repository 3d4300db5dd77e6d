import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { memoryCollector, hashTableBytes, recommendedEntriesLimit, slabBytes, WORD_BITS } from '../../src/collectors/memory.js';
import { parseAuxvPageSize } from '../../src/procfs/auxv.js';
import { ParseError } from '../../src/procfs/fs.js';
import { parseMeminfo } from '../../src/procfs/meminfo.js';
import { buildTestApp, samples } from '../helpers/app.js';
import { REPO_ROOT } from '../helpers/kernel.js';

const FIXTURES = join(REPO_ROOT, 'test', 'fixtures');

/** An auxv image of (type, value) pairs in the given word size and byte order. */
function auxv(pairs: [number, number][], wordBytes: 4 | 8, littleEndian: boolean): Uint8Array {
  const buf = new DataView(new ArrayBuffer(pairs.length * 2 * wordBytes));
  pairs.flat().forEach((v, i) => {
    if (wordBytes === 8) buf.setBigUint64(i * 8, BigInt(v), littleEndian);
    else buf.setUint32(i * 4, v, littleEndian);
  });
  return new Uint8Array(buf.buffer);
}

describe('sizing arithmetic', () => {
  it('recommends RAM / 16384 / (word bits / 32) entries', () => {
    // 24683656 kB, the 6.18 test VM: 25276063744 / 16384 / 2.
    expect(recommendedEntriesLimit(24683656 * 1024, 64)).toBe(771364);
    // Incident 1's rule on a 32-bit 1 GiB box: 65536 entries.
    expect(recommendedEntriesLimit(1024 ** 3, 32)).toBe(65536);
    expect(recommendedEntriesLimit(1024 ** 3, 64)).toBe(32768);
  });

  it('costs a pointer per bucket and pages per slab', () => {
    expect(hashTableBytes(262144, 64)).toBe(2097152);
    expect(hashTableBytes(16384, 32)).toBe(65536);
    expect(slabBytes({ caches: ['nf_conntrack'], activeObjs: 1221, objsize: 320, pages: 102 }, 4096)).toBe(417792);
  });
});

describe('parseAuxvPageSize', () => {
  it('finds AT_PAGESZ in 64-bit little-endian and 32-bit big-endian vectors', () => {
    const pairs: [number, number][] = [
      [33, 0x7ffd1000],
      [16, 0x178bfbff],
      [6, 4096],
      [17, 100],
      [0, 0],
    ];
    expect(parseAuxvPageSize(auxv(pairs, 8, true), 8, true)).toBe(4096);
    expect(parseAuxvPageSize(auxv([[16, 1], [6, 65536], [0, 0]], 4, false), 4, false)).toBe(65536);
  });

  it('stops at AT_NULL and rejects a vector without a page size', () => {
    expect(() => parseAuxvPageSize(auxv([[16, 1], [0, 0], [6, 4096]], 8, true), 8, true)).toThrow(/no AT_PAGESZ/);
    expect(() => parseAuxvPageSize(auxv([[6, 1000]], 8, true), 8, true)).toThrow(ParseError);
  });

  it('reads this machine\'s page size from /proc/self/auxv, as getconf reports it', () => {
    const expected = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim());
    expect(parseAuxvPageSize(readFileSync('/proc/self/auxv'), WORD_BITS === 64 ? 8 : 4, true)).toBe(expected);
  });
});

describe('parseMeminfo', () => {
  it('converts kB to bytes and keeps plain counts', () => {
    const m = parseMeminfo('MemTotal:       24683656 kB\nHugePages_Total:       0\nActive(anon):      1024 kB\n');
    expect(m.get('MemTotal')).toBe(24683656 * 1024);
    expect(m.get('HugePages_Total')).toBe(0);
    expect(m.get('Active(anon)')).toBe(1024 * 1024);
  });

  it('rejects malformed lines', () => {
    expect(() => parseMeminfo('MemTotal: lots\n')).toThrow(/line 1 is malformed/);
  });
});

describe('memory collector over fixture trees', () => {
  let app: FastifyInstance | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  /** A 4.19-like procfs and sysfs: SLUB slabinfo, 16384 buckets, 2 GB of RAM, 4 KiB pages. */
  function tree(opts: { slabinfo?: boolean; hashsize?: boolean } = {}): { proc: string; sys: string } {
    dir = mkdtempSync(join(tmpdir(), 'cte-memory-'));
    const proc = join(dir, 'proc');
    const sys = join(dir, 'sys');
    mkdirSync(join(proc, 'sys', 'net', 'netfilter'), { recursive: true });
    mkdirSync(join(proc, 'self'), { recursive: true });
    mkdirSync(join(sys, 'module', 'nf_conntrack', 'parameters'), { recursive: true });
    if (opts.slabinfo ?? true) cpSync(join(FIXTURES, 'slabinfo', '4.19'), join(proc, 'slabinfo'));
    if (opts.hashsize ?? true) writeFileSync(join(sys, 'module', 'nf_conntrack', 'parameters', 'hashsize'), '16384\n');
    writeFileSync(join(proc, 'sys', 'net', 'netfilter', 'nf_conntrack_buckets'), '16384\n');
    writeFileSync(join(proc, 'meminfo'), 'MemTotal:        2000000 kB\nMemFree:          100000 kB\n');
    writeFileSync(join(proc, 'self', 'auxv'), auxv([[6, 4096], [0, 0]], WORD_BITS === 64 ? 8 : 4, true));
    return { proc, sys };
  }

  it('exports slab, hash and recommended sizes', async () => {
    const { proc, sys } = tree();
    app = await buildTestApp({ args: [`--path.procfs=${proc}`, `--path.sysfs=${sys}`], collectors: [memoryCollector] });
    const s = samples((await app.inject({ url: '/metrics' })).body);
    expect(s.get('conntrack_scrape_collector_success{collector="memory"}')).toBe(1);
    expect(s.get('conntrack_slab_bytes')).toBe(51 * 2 * 4096);
    expect(s.get('conntrack_slab_object_bytes')).toBe(320);
    expect(s.get('conntrack_slab_active_objects')).toBe(1221);
    expect(s.get('conntrack_hashsize')).toBe(16384);
    expect(s.get('conntrack_hash_bytes')).toBe(16384 * (WORD_BITS / 8));
    expect(s.get('conntrack_entries_limit_recommended')).toBe(Math.floor((2000000 * 1024) / 16384 / (WORD_BITS / 32)));
  });

  it('leaves out only the slab and hashsize metrics when those root-only files are absent', async () => {
    const { proc, sys } = tree({ slabinfo: false, hashsize: false });
    app = await buildTestApp({ args: [`--path.procfs=${proc}`, `--path.sysfs=${sys}`], collectors: [memoryCollector] });
    const body = (await app.inject({ url: '/metrics' })).body;
    const s = samples(body);
    expect(s.get('conntrack_scrape_collector_success{collector="memory"}')).toBe(1);
    expect(body).not.toMatch(/^conntrack_slab_/m);
    expect(body).not.toMatch(/^conntrack_hashsize /m);
    expect(s.get('conntrack_hash_bytes')).toBe(16384 * (WORD_BITS / 8));
  });

  it('fails with success 0 on an empty tree', async () => {
    dir = mkdtempSync(join(tmpdir(), 'cte-memory-'));
    app = await buildTestApp({ args: [`--path.procfs=${dir}`, `--path.sysfs=${dir}`], collectors: [memoryCollector] });
    const s = samples((await app.inject({ url: '/metrics' })).body);
    expect(s.get('conntrack_scrape_collector_success{collector="memory"}')).toBe(0);
    expect([...s.keys()].filter((k) => /^conntrack_(slab|hash|entries_limit)/.test(k))).toEqual([]);
  });
});

describe('memory collector logging', () => {
  it('logs a missing page size once, not on every scrape', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cte-memory-'));
    try {
      cpSync(join(FIXTURES, 'slabinfo', '4.19'), join(dir, 'slabinfo'));
      const lines: string[] = [];
      const { pino } = await import('pino');
      const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
      const app = await buildTestApp({ args: [`--path.procfs=${dir}`, `--path.sysfs=${dir}`], collectors: [memoryCollector], logger });
      for (let i = 0; i < 3; i++) {
        const s = samples((await app.inject({ url: '/metrics' })).body);
        expect(s.get('conntrack_slab_object_bytes')).toBe(320);
        expect(s.get('conntrack_slab_bytes')).toBeUndefined();
      }
      await app.close();
      expect(lines.filter((l) => l.includes('page size unknown'))).toHaveLength(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
