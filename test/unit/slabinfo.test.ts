import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ParseError } from '../../src/procfs/fs.js';
import { conntrackSlab, isConntrackEntryCache, parseSlabinfo } from '../../src/procfs/slabinfo.js';
import { REPO_ROOT } from '../helpers/kernel.js';

const fixture = (name: string): string => readFileSync(join(REPO_ROOT, 'test', 'fixtures', 'slabinfo', name), 'utf8');

describe('conntrackSlab over /proc/slabinfo of each kernel generation', () => {
  it('2.6.32 (SLAB): sums the per-namespace nf_conntrack_<addr> caches, not nf_conntrack_expect', () => {
    expect(conntrackSlab(parseSlabinfo(fixture('2.6.32')))).toEqual({
      caches: ['nf_conntrack_ffff8802269d0000', 'nf_conntrack_ffffffff81b2a920'],
      activeObjs: 37 + 34543,
      objsize: 312,
      pages: 4 * 1 + 2880 * 1,
    });
  });

  it('2.6.32 with CONFIG_DEBUG_SLAB ("2.1 (statistics)"): slabdata found among the extra sections', () => {
    expect(conntrackSlab(parseSlabinfo(fixture('2.6.32-statistics')))).toEqual({
      caches: ['nf_conntrack_ffffffff81b2a920'],
      activeObjs: 300,
      objsize: 312,
      pages: 26,
    });
  });

  it('4.19 (SLUB): one nf_conntrack cache of 320-byte objects on two-page slabs', () => {
    expect(conntrackSlab(parseSlabinfo(fixture('4.19')))).toEqual({
      caches: ['nf_conntrack'],
      activeObjs: 1221,
      objsize: 320,
      pages: 51 * 2,
    });
  });

  it('6.18 (live capture): one nf_conntrack cache of 256-byte objects', () => {
    const caches = parseSlabinfo(fixture('6.18'));
    expect(caches).toHaveLength(235);
    expect(conntrackSlab(caches)).toEqual({ caches: ['nf_conntrack'], activeObjs: 999826, objsize: 256, pages: 62507 });
  });

  it('is undefined without a conntrack cache (module not loaded)', () => {
    const text = fixture('4.19')
      .split('\n')
      .filter((l) => !l.startsWith('nf_conntrack '))
      .join('\n');
    expect(conntrackSlab(parseSlabinfo(text))).toBeUndefined();
  });
});

describe('parseSlabinfo', () => {
  it('parses every column of a cache line', () => {
    const [cache] = parseSlabinfo(fixture('4.19'));
    expect(cache).toEqual({
      name: 'nf_conntrack_expect',
      activeObjs: 0,
      numObjs: 0,
      objsize: 216,
      objPerSlab: 18,
      pagesPerSlab: 1,
      activeSlabs: 0,
      numSlabs: 0,
    });
  });

  it('with a name filter, parses only the accepted caches, the same as parsing them all', () => {
    for (const name of ['2.6.32', '2.6.32-statistics', '4.19', '6.18']) {
      const all = parseSlabinfo(fixture(name));
      const some = parseSlabinfo(fixture(name), name, isConntrackEntryCache);
      expect(some.length).toBeGreaterThan(0);
      expect(some).toEqual(all.filter((c) => isConntrackEntryCache(c.name)));
      expect(conntrackSlab(some)).toEqual(conntrackSlab(all));
    }
  });

  it('with a name filter, a malformed line of another cache is not an error, one of an accepted cache is', () => {
    const text = 'slabinfo - version: 2.1\nkmalloc-8 garbage\nnf_conntrack 10 20 256 16 1 : tunables 0 0 0 : slabdata 2 2 0\n';
    expect(() => parseSlabinfo(text)).toThrow(/line 2 is not a cache line/);
    expect(conntrackSlab(parseSlabinfo(text, 'slabinfo', isConntrackEntryCache))).toEqual({ caches: ['nf_conntrack'], activeObjs: 10, objsize: 256, pages: 2 });
    expect(() => parseSlabinfo('slabinfo - version: 2.1\nnf_conntrack 10 20\n', 'slabinfo', isConntrackEntryCache)).toThrow(/line 2 is not a cache line/);
  });

  it('rejects another format version, a missing header and truncated lines', () => {
    expect(() => parseSlabinfo('slabinfo - version: 1.1\n')).toThrow(/unsupported slabinfo version 1.1/);
    expect(() => parseSlabinfo('nf_conntrack 1 2 3 4 5 : tunables 0 0 0 : slabdata 1 1 0\n')).toThrow(ParseError);
    expect(() => parseSlabinfo('slabinfo - version: 2.1\nnf_conntrack 1221 1275 320 25\n')).toThrow(/line 2 is not a cache line/);
    expect(() => parseSlabinfo('slabinfo - version: 2.1\nnf_conntrack 1221 1275 320 25 2 : tunables 0 0 0\n')).toThrow(
      /line 2 is not a cache line/,
    );
  });

  it('tells entry caches from the expectation cache and lookalikes', () => {
    expect(isConntrackEntryCache('nf_conntrack')).toBe(true);
    expect(isConntrackEntryCache('nf_conntrack_ffffffff81b2a920')).toBe(true);
    expect(isConntrackEntryCache('ip_conntrack')).toBe(true);
    expect(isConntrackEntryCache('nf_conntrack_expect')).toBe(false);
    expect(isConntrackEntryCache('nf_conncount_rb')).toBe(false);
  });
});
