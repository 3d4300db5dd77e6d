import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { registerProcessMetrics } from '../../src/metrics/process-metrics.js';
import { samples } from '../helpers/app.js';

describe('the exporter process metrics', () => {
  it("keep prom-client's defaults but the event-loop histogram and the gauges named like counters", async () => {
    const registry = new Registry();
    registerProcessMetrics(registry);
    const names = new Set(registry.getMetricsAsArray().map((m) => m.name));
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_open_fds', 'process_start_time_seconds', 'nodejs_heap_space_size_total_bytes', 'nodejs_version_info', 'nodejs_gc_duration_seconds', 'nodejs_eventloop_lag_seconds']) {
      expect(names, name).toContain(name);
    }
    for (const name of names) expect(name).not.toMatch(/^nodejs_eventloop_lag_(min|max|mean|stddev|p50|p90|p99)_seconds$|^nodejs_active_\w+_total$/);
  });

  it('report the event-loop lag of a callback queued at the previous scrape', async () => {
    const registry = new Registry();
    registerProcessMetrics(registry);
    await registry.metrics();
    await new Promise((r) => setImmediate(r));
    const lag = samples(await registry.metrics()).get('nodejs_eventloop_lag_seconds');
    expect(lag).toBeGreaterThan(0);
    expect(lag).toBeLessThan(10);
  });
});
