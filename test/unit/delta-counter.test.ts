import { Counter, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { DeltaCounter, counterDelta } from '../../src/metrics/delta-counter.js';

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

  it('creates a labelled series at zero on first reading of zero', async () => {
    const c = new Counter({ name: 'y_total', help: 'y', labelNames: ['cpu'], registers: [] });
    new DeltaCounter(c).observe('3', { cpu: '3' }, 0);
    expect((await c.get()).values).toEqual([{ value: 0, labels: { cpu: '3' } }]);
  });
});
