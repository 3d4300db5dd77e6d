import { Counter, Gauge, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { acceptsGzip, renderOpenMetrics, wantsOpenMetrics } from '../../src/metrics/exposition.js';
import { SnapshotGauge } from '../../src/metrics/snapshot-gauge.js';
import { jsonLineToLogfmt } from '../../src/logger.js';

describe('wantsOpenMetrics', () => {
  it.each([
    [undefined, false],
    ['text/plain', false],
    ['*/*', false],
    ['application/openmetrics-text; version=1.0.0', true],
    // What Prometheus 2.x sends:
    ['application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1', true],
    ['text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5', false],
    ['application/openmetrics-text;q=0', false],
  ])('%j → %s', (accept, expected) => {
    expect(wantsOpenMetrics(accept)).toBe(expected);
  });
});

describe('acceptsGzip', () => {
  it.each([
    [undefined, false],
    ['identity', false],
    ['gzip', true],
    ['GZIP, deflate', true],
    ['gzip, deflate, br', true],
    ['deflate, gzip;q=0', false],
    ['*', true],
    ['*;q=0', false],
    ['gzip;q=0, *', false],
    ['x-gzip', true],
    ['gzipped', false],
  ])('%j → %s', (header, expected) => {
    expect(acceptsGzip(header)).toBe(expected);
  });
});

describe('renderOpenMetrics', () => {
  it('renders counters as families without _total, escapes labels, ends with # EOF', async () => {
    const r = new Registry();
    new Counter({ name: 'a_total', help: 'A "quoted"\nhelp.', labelNames: ['l'], registers: [r] }).inc({ l: 'x"y\\z' }, 3);
    new Gauge({ name: 'b', help: 'B.', registers: [r] }).set(Number.POSITIVE_INFINITY);
    const text = await renderOpenMetrics(r);
    expect(text).toBe(
      '# TYPE a counter\n# HELP a A \\"quoted\\"\\nhelp.\na_total{l="x\\"y\\\\z"} 3\n# TYPE b gauge\n# HELP b B.\nb +Inf\n# EOF\n',
    );
    // The registry's own rendering is untouched.
    expect(await r.metrics()).toContain('# TYPE a_total counter');
  });
});

describe('SnapshotGauge', () => {
  it('emits nothing until set, and exactly the latest samples after', async () => {
    const r = new Registry();
    const g = new SnapshotGauge<'cpu'>({ name: 'g', help: 'G.', labelNames: ['cpu'], registers: [r] });
    expect(await r.metrics()).not.toMatch(/^g /m);
    g.replace([{ labels: { cpu: 0 }, value: 1 }, { labels: { cpu: 1 }, value: 2 }]);
    expect(await r.metrics()).toContain('g{cpu="1"} 2');
    g.replace([{ labels: { cpu: 0 }, value: 5 }]);
    const text = await r.metrics();
    expect(text).toContain('g{cpu="0"} 5');
    expect(text).not.toContain('cpu="1"');
  });

  it('refuses a sample without a declared label', () => {
    const g = new SnapshotGauge<'cpu'>({ name: 'h', help: 'H.', labelNames: ['cpu'], registers: [] });
    expect(() => g.replace([{ labels: {} as { cpu: string }, value: 1 }])).toThrow('sample without label cpu');
  });

  it('setOnly(undefined) removes the series', async () => {
    const r = new Registry();
    const g = new SnapshotGauge({ name: 'k', help: 'K.', registers: [r] });
    g.setOnly(3);
    expect(await r.metrics()).toContain('k 3');
    g.setOnly(undefined);
    expect(await r.metrics()).not.toContain('k 3');
  });
});

describe('logfmt output', () => {
  it('turns a pino line into logfmt with quoting', () => {
    const line = JSON.stringify({ level: 40, time: 0, pid: 1, hostname: 'h', msg: 'collector failed: x', collector: 'stat', n: 3 });
    expect(jsonLineToLogfmt(line)).toBe('time=1970-01-01T00:00:00.000Z level=warn msg="collector failed: x" collector=stat n=3\n');
  });
});
