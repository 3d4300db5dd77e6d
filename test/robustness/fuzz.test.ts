/**
 * Every pure parser fuzzed with 10^4 inputs mutated from the real fixtures
 * (fixed seed; scripts/fuzz.mjs runs the same targets with 10^5, figures in
 * docs/robustness.md): no throw other than the parser's own ParseError, no
 * input slower than 100 ms, no NaN, infinite or negative number in a result.
 * Uses the build (dist/), which `npm test` makes first.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/kernel.js';

interface Target {
  readonly name: string;
}
interface FuzzResult {
  readonly inputs: number;
  readonly maxMs: number;
  readonly slow: number;
  readonly typedErrors: number;
  readonly failures: readonly unknown[];
}
const fuzz = (await import(join(REPO_ROOT, 'scripts', 'fuzz.mjs'))) as {
  targets(): Promise<Target[]>;
  fuzzTarget(t: Target, n: number, seed: number): FuzzResult;
};

const INPUTS = 10_000;
const SEED = 20261202;
const targets = await fuzz.targets();

describe('fuzzing the pure parsers (10^4 mutated inputs each, seed 20261202)', () => {
  it.each(targets.map((t) => [t.name, t] as const))('%s', (_name, t) => {
    const r = fuzz.fuzzTarget(t, INPUTS, SEED);
    expect(r.failures).toEqual([]);
    expect(r.inputs).toBe(INPUTS);
  });
});

describe('what the fuzzer found, as regressions', () => {
  it('slabinfo: a negative or non-decimal slab count is a ParseError, not a count of -1', async () => {
    const { parseSlabinfo } = await import('../../src/procfs/slabinfo.js');
    const head = 'slabinfo - version: 2.1\n';
    const line = (slabs: string): string => `nf_conntrack 100 120 320 25 2 : tunables 0 0 0 : slabdata ${slabs} 0\n`;
    expect(parseSlabinfo(head + line('4 5'))[0]?.numSlabs).toBe(5);
    for (const bad of ['-1 5', '4 -1', '1e3 5', '0x10 5']) expect(() => parseSlabinfo(head + line(bad))).toThrow(/bad slabdata/);
  });

  it('meminfo: a value too long for a double is a ParseError, not Infinity', async () => {
    const { parseMeminfo } = await import('../../src/procfs/meminfo.js');
    expect(() => parseMeminfo(`MemTotal: ${'9'.repeat(400)} kB\n`)).toThrow(/out of range/);
    expect(parseMeminfo('MemTotal:       24683656 kB\n').get('MemTotal')).toBe(24683656 * 1024);
  });
});
