import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Counter, Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { statCollector } from '../../src/collectors/stat.js';
import { DeltaCounter, DeltaTotals, SnapshotCounter, counterDelta } from '../../src/metrics/delta-counter.js';
import { buildTestApp, samples } from '../helpers/app.js';

describe('counterDelta', () => {
  it('is the plain difference when the counter grew', () => {
    expect(counterDelta(10, 25)).toBe(15);
    expect(counterDelta(7, 7)).toBe(0);
  });
  it('treats a decrease as a u32 wrap', () => {
    expect(counterDelta(0xfffffff0, 0x10)).toBe(0x20);
    expect(counterDelta(0xffffffff, 0)).toBe(1);
  });
  it('supports other widths', () => {
    expect(counterDelta(250, 4, 8)).toBe(10);
    expect(counterDelta(100, 4, 8)).toBe(4);
  });
  it('counts a wrap only from the top half of the range to a small value', () => {
    expect(counterDelta(0x80000001, 0)).toBe(0x7fffffff);
    expect(counterDelta(0xc0000000, 0x3fffffff)).toBe(0x7fffffff);
  });
  it('treats a decrease that cannot be a wrap as a reset, counting from the current value', () => {
    // Module reload: the values go back to (near) zero from a low previous value.
    expect(counterDelta(1000, 0)).toBe(0);
    expect(counterDelta(1000, 5)).toBe(5);
    expect(counterDelta(0x7fffffff, 3)).toBe(3);
    // Previous in the top half, but the wrapped change would be half the range or more.
    expect(counterDelta(0x80000000, 0)).toBe(0);
    expect(counterDelta(0x90000000, 0x70000000)).toBe(0x70000000);
    // Values outside the width are not a counter of that width.
    expect(counterDelta(2 ** 33, 7)).toBe(7);
  });
});

describe('DeltaCounter', () => {
  it('starts at the first reading, then adds per-source changes across a wrap', async () => {
    const registry = new Registry();
    const c = new Counter({ name: 'x_total', help: 'x', registers: [registry] });
    const d = new DeltaCounter(c);
    // Two CPUs feed one summed series; CPU 1 wraps between readings.
    d.observe('0', {}, 100);
    d.observe('1', {}, 0xfffffff0);
    expect((await c.get()).values[0]?.value).toBe(100 + 0xfffffff0);
    d.observe('0', {}, 150);
    d.observe('1', {}, 0x0f);
    expect((await c.get()).values[0]?.value).toBe(100 + 0xfffffff0 + 50 + 0x1f);
  });

  it('does not add ~4.29e9 when the module is reloaded (every CPU back to 0)', async () => {
    const c = new Counter({ name: 'r_total', help: 'r', registers: [] });
    const d = new DeltaCounter(c);
    d.observe('0', {}, 1000);
    d.observe('1', {}, 2000);
    d.observe('0', {}, 3);
    d.observe('1', {}, 0);
    expect((await c.get()).values[0]?.value).toBe(3003);
    d.observe('0', {}, 10);
    d.observe('1', {}, 4);
    expect((await c.get()).values[0]?.value).toBe(3003 + 7 + 4);
  });

  it('forgets pruned sources, which then start again from their reading', async () => {
    const c = new Counter({ name: 'p_total', help: 'p', labelNames: ['k'], registers: [] });
    const d = new DeltaCounter(c);
    d.observe('a', { k: 'a' }, 5);
    d.observe('b', { k: 'b' }, 6);
    d.prune((key) => key === 'a');
    expect(d.size).toBe(1);
  });

  it('creates a labelled series at zero on first reading of zero', async () => {
    const c = new Counter({ name: 'y_total', help: 'y', labelNames: ['cpu'], registers: [] });
    new DeltaCounter(c).observe('3', { cpu: '3' }, 0);
    expect((await c.get()).values).toEqual([{ value: 0, labels: { cpu: '3' } }]);
  });
});

describe('DeltaTotals and SnapshotCounter', () => {
  it('sums per-source changes per series, wrap- and reset-aware, and forgets series', () => {
    const t = new DeltaTotals();
    expect(t.observe('ns1 drop', '0', 10)).toBe(10);
    expect(t.observe('ns1 drop', '1', 0xfffffff0)).toBe(0xfffffff0);
    expect(t.observe('ns2 drop', '0', 3)).toBe(3);
    expect(t.observe('ns1 drop', '1', 0x10)).toBe(0x20);
    expect(t.observe('ns1 drop', '0', 2)).toBe(2); // reset, not a wrap
    expect(t.total('ns1 drop')).toBe(10 + 0xfffffff0 + 0x20 + 2);
    t.retain((k) => k !== 'ns1 drop');
    expect(t.size).toBe(1);
    expect(t.total('ns1 drop')).toBeUndefined();
    expect(t.observe('ns1 drop', '0', 4)).toBe(4);
    t.forget('ns2 drop');
    expect(t.total('ns2 drop')).toBeUndefined();
  });

  it('exports exactly the last samples as a counter', async () => {
    const registry = new Registry();
    const c = new SnapshotCounter<'netns'>({ name: 'z_total', help: 'z', labelNames: ['netns'], registers: [registry] });
    c.replace([{ labels: { netns: '1' }, value: 5 }]);
    expect(await registry.metrics()).toBe('# HELP z_total z\n# TYPE z_total counter\nz_total{netns="1"} 5\n');
    c.replace([]);
    expect(await registry.metrics()).toBe('# HELP z_total z\n# TYPE z_total counter\n');
    expect(() => new SnapshotCounter({ name: 'z', help: 'z', labelNames: [], registers: [] })).toThrow(/_total/);
  });
});

describe('stat collector across a module reload and a wrap', () => {
  const HEADER = 'entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart';
  /** A 6.18 stat file of two CPUs with the given drop values (other columns 0). */
  const file = (drop0: number, drop1: number): string => {
    const row = (drop: number): string =>
      ['00000001 ', ...Array(9).fill('00000000'), drop.toString(16).padStart(8, '0'), '00000000', '00000000 ', '00000000', '00000000', '00000000', '00000000'].join(' ');
    return `${HEADER}\n${row(drop0)}\n${row(drop1)}\n`;
  };
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'cte-reset-'));
    mkdirSync(join(root, 'net', 'stat'), { recursive: true });
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('counts a per-CPU wrap and does not add 2^32 when the values go back to 0', async () => {
    const write = (a: number, b: number): void => writeFileSync(join(root, 'net', 'stat', 'nf_conntrack'), file(a, b));
    write(500, 0xfffffff0);
    const app = await buildTestApp({ args: [`--path.procfs=${root}`], collectors: [statCollector] });
    try {
      const drop = async (): Promise<number | undefined> => samples((await app.inject({ url: '/metrics' })).body).get('conntrack_stat_drop_total');
      expect(await drop()).toBe(500 + 0xfffffff0);
      write(510, 0x20); // CPU 1 wrapped: +0x30
      expect(await drop()).toBe(500 + 0xfffffff0 + 10 + 0x30);
      write(2, 0); // module reloaded
      expect(await drop()).toBe(500 + 0xfffffff0 + 10 + 0x30 + 2);
    } finally {
      await app.close();
    }
  });
});
