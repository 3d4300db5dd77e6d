import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  parseConntrackStatFile,
  parseConntrackToolStats,
  type ConntrackStats,
} from '../../src/procfs/conntrack-stat.js';
import { ParseError } from '../../src/procfs/fs.js';

const fixture = (p: string): string => readFileSync(new URL(`../fixtures/${p}`, import.meta.url), 'utf8');

/** Each parsed stat summed over CPUs (the exporter sums per-CPU deltas instead; see DeltaCounter). */
function sumOverCpus(stats: ConntrackStats): Map<string, number> {
  const sums = new Map<string, number>();
  for (const name of stats.names) sums.set(name, 0);
  for (const row of stats.cpus) {
    for (const [name, v] of row.values) sums.set(name, (sums.get(name) ?? 0) + v);
  }
  return sums;
}

/** Independent oracle: column sums computed from the raw text by position, hex by hand. */
function columnSums(text: string): Map<string, number> {
  const [header, ...rows] = text.trim().split('\n');
  const names = (header as string).trim().split(/\s+/);
  const sums = new Map<string, number>();
  for (const row of rows) {
    row.trim().split(/\s+/).forEach((v, i) => {
      sums.set(names[i] as string, (sums.get(names[i] as string) ?? 0) + Number(`0x${v}`));
    });
  }
  return sums;
}

describe('parseConntrackStatFile', () => {
  it('parses the 16-column 2.6.x layout (trailing space, no search_restart)', () => {
    const text = fixture('proc/2.6.32/net/stat/nf_conntrack');
    const s = parseConntrackStatFile(text);
    expect(s.names).toEqual([
      'searched', 'found', 'new', 'invalid', 'ignore', 'delete', 'delete_list', 'insert',
      'insert_failed', 'drop', 'early_drop', 'icmp_error', 'expect_new', 'expect_create', 'expect_delete',
    ]);
    expect(s.cpus).toHaveLength(2);
    expect(s.entries).toBe(1234);
    const oracle = columnSums(text);
    const sums = sumOverCpus(s);
    for (const n of s.names) expect(sums.get(n)).toBe(oracle.get(n));
  });

  it('parses the 17-column layout with searched and delete_list (4.x)', () => {
    const text = fixture('proc/4.19/net/stat/nf_conntrack');
    const s = parseConntrackStatFile(text);
    expect(s.names).toEqual([
      'searched', 'found', 'new', 'invalid', 'ignore', 'delete', 'delete_list', 'insert',
      'insert_failed', 'drop', 'early_drop', 'icmp_error', 'expect_new', 'expect_create', 'expect_delete',
      'search_restart',
    ]);
    expect(s.cpus).toHaveLength(4);
    expect(s.entries).toBe(0x4e20);
    // Literal sums of the four rows (hex by hand), and the positional oracle agrees.
    expect(Object.fromEntries(sumOverCpus(s))).toEqual({ searched: 0, found: 4311, new: 0, invalid: 5945, ignore: 6083, delete: 0, delete_list: 0, insert: 6785, insert_failed: 7782, drop: 12925, early_drop: 8855, icmp_error: 4366, expect_new: 0, expect_create: 2443, expect_delete: 1030, search_restart: 9113 });
    const oracle = columnSums(text);
    for (const n of s.names) expect(sumOverCpus(s).get(n)).toBe(oracle.get(n));
  });

  it('maps 5.10 clashres to clash_resolve and keeps delete_list', () => {
    const s = parseConntrackStatFile(fixture('proc/5.10/net/stat/nf_conntrack'));
    expect(s.names).toEqual([
      'clash_resolve', 'found', 'new', 'invalid', 'ignore', 'delete', 'delete_list', 'insert',
      'insert_failed', 'drop', 'early_drop', 'icmp_error', 'expect_new', 'expect_create', 'expect_delete',
      'search_restart',
    ]);
    expect(s.cpus).toHaveLength(1);
    expect(s.entries).toBe(7);
    expect(s.cpus[0]?.values.get('drop')).toBe(0x7ee);
    expect(s.cpus[0]?.values.get('icmp_error')).toBe(0x11b9);
    expect(s.cpus[0]?.values.get('insert_failed')).toBe(0x108f);
  });

  it('maps 5.15+ clashres and chainlength by name, not by position', () => {
    const text = fixture('proc/6.18/net/stat/nf_conntrack');
    const s = parseConntrackStatFile(text);
    expect(s.names).toEqual([
      'clash_resolve', 'found', 'new', 'invalid', 'ignore', 'delete', 'chain_too_long', 'insert',
      'insert_failed', 'drop', 'early_drop', 'icmp_error', 'expect_new', 'expect_create', 'expect_delete',
      'search_restart',
    ]);
    const oracle = columnSums(text);
    const sums = sumOverCpus(s);
    expect(sums.get('clash_resolve')).toBe(oracle.get('clashres'));
    expect(sums.get('chain_too_long')).toBe(oracle.get('chainlength'));
    expect(sums.get('drop')).toBe(oracle.get('drop'));
    // entries is the namespace's count, repeated per row: never summed.
    expect(s.entries).toBe(14);
    expect(sums.has('entries')).toBe(false);
  });

  it('reads 64 CPU rows', () => {
    const text = fixture('proc/6.18-64cpu/net/stat/nf_conntrack');
    const s = parseConntrackStatFile(text);
    expect(s.cpus).toHaveLength(64);
    expect(s.cpus.map((c) => c.cpu)).toEqual([...Array(64).keys()]);
    const oracle = columnSums(text);
    for (const [kernel, canonical] of [['early_drop', 'early_drop'], ['icmp_error', 'icmp_error'], ['search_restart', 'search_restart']]) {
      expect(sumOverCpus(s).get(canonical as string)).toBe(oracle.get(kernel as string));
    }
  });

  it.each([
    ['empty file', '', 'empty file'],
    ['header only', 'entries  clashres found\n', 'header but no CPU rows'],
    ['truncated row', 'entries  clashres found\n00000001  00000002\n', 'line 2 has 2 fields, header has 3'],
    ['non-hex value', 'entries  clashres found\n00000001  0000zz02 00000003\n', 'is not a hex u32'],
    ['value wider than u32', 'entries  found\n00000001  100000000\n', 'is not a hex u32'],
    ['garbage header', '\x00\x01binary junk\n00000001\n', 'not a header of column names'],
    ['duplicate columns', 'entries found found\n1 2 3\n', 'duplicate column names'],
  ])('rejects %s with a clear ParseError', (_name, text, message) => {
    expect(() => parseConntrackStatFile(text, 'stat')).toThrow(ParseError);
    expect(() => parseConntrackStatFile(text, 'stat')).toThrow(message);
  });
});

describe('parseConntrackToolStats (conntrack -S)', () => {
  it('parses a 6.x kernel with conntrack 1.4.7 (error → icmp_error, chaintoolong → chain_too_long)', () => {
    const s = parseConntrackToolStats(fixture('conntrack-tool/stats-6.18.txt'));
    expect(s.cpus).toHaveLength(2);
    expect(s.names).toEqual([
      'found', 'invalid', 'insert', 'insert_failed', 'drop', 'early_drop', 'icmp_error', 'search_restart',
      'clash_resolve', 'chain_too_long',
    ]);
    const sums = sumOverCpus(s);
    expect(sums.get('drop')).toBe(9);
    expect(sums.get('icmp_error')).toBe(2);
    expect(sums.get('clash_resolve')).toBe(10);
    expect(sums.get('chain_too_long')).toBe(1);
    expect(s.entries).toBeUndefined();
  });

  it('parses a 5.4 kernel (ignore present, no clash_resolve)', () => {
    const s = parseConntrackToolStats(fixture('conntrack-tool/stats-5.4.txt'));
    expect(s.cpus.map((c) => c.cpu)).toEqual([0, 1, 2, 3]);
    expect(sumOverCpus(s).get('ignore')).toBe(4011 + 3120 + 2900 + 2871);
    expect(sumOverCpus(s).get('insert_failed')).toBe(3);
    expect(s.names).not.toContain('clash_resolve');
  });

  it('parses the expectation statistics', () => {
    const s = parseConntrackToolStats(fixture('conntrack-tool/stats-expect-6.18.txt'));
    expect(s.names).toEqual(['expect_new', 'expect_create', 'expect_delete']);
    expect(sumOverCpus(s).get('expect_create')).toBe(3);
  });

  it('understands the tool falling back to the proc file header names', () => {
    const s = parseConntrackToolStats(fixture('conntrack-tool/stats-procfs-fallback.txt'));
    expect(s.entries).toBe(12);
    expect(s.names).toContain('clash_resolve');
    expect(s.names).toContain('chain_too_long');
    expect(s.names).not.toContain('entries');
  });

  it('drops unknownN placeholders of newer attributes', () => {
    const s = parseConntrackToolStats('cpu=0   \tfound=1 unknown1=5 drop=2 \n');
    expect(s.names).toEqual(['found', 'drop']);
  });

  it.each([
    ['no cpu lines', '', 'no cpu= lines'],
    ['a line without cpu=', 'found=1 drop=2\n', 'does not start with cpu=N'],
    ['a malformed field', 'cpu=0 \tfound=x\n', 'malformed field'],
    ['binary garbage', 'cpu=0 \t\x00\x01\x02\n', 'malformed field'],
  ])('rejects %s', (_name, text, message) => {
    expect(() => parseConntrackToolStats(text)).toThrow(message);
  });
});
