/**
 * The exporter's own process_* and nodejs_* metrics: prom-client's default
 * metrics, except two things that cost more than they tell on a node agent.
 *
 * - The event-loop delay histogram (nodejs_eventloop_lag_{min,max,mean,stddev,p50,p90,p99}_seconds).
 *   prom-client samples it with a 10 ms timer, 100 wake-ups a second for the
 *   process's whole life: measured 0.9% of a core on an idle exporter on the
 *   2-vCPU bench VM, where node_exporter idles at about 0.1%. And on every
 *   scrape its mean and standard deviation walk the whole histogram: 0.42 ms
 *   of CPU per scrape (of 0.78 ms for all default metrics). Kept:
 *   nodejs_eventloop_lag_seconds, the delay of a callback queued at scrape
 *   time, which costs nothing between scrapes.
 * - The three gauges named like counters (nodejs_active_{handles,requests,resources}_total),
 *   which promtool check metrics rejects.
 *
 * prom-client has no switch for single default metrics, so its own modules
 * are loaded one by one from the names it exports (collectDefaultMetrics.metricsList).
 */
import { createRequire } from 'node:module';
import { collectDefaultMetrics, Gauge, type Registry } from 'prom-client';

const require = createRequire(import.meta.url);

/** prom-client default-metric modules not loaded (see above). */
const SKIPPED_MODULES = new Set(['eventLoopLag']);

const MISNAMED = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

type MetricModule = (registry: Registry, config: Record<string, unknown>) => void;

export function registerProcessMetrics(registry: Registry): void {
  for (const name of collectDefaultMetrics.metricsList) {
    if (SKIPPED_MODULES.has(name)) continue;
    (require(`prom-client/lib/metrics/${name}.js`) as MetricModule)(registry, {});
  }
  for (const name of MISNAMED) registry.removeSingleMetric(name);
  const lag = new Gauge({
    name: 'nodejs_eventloop_lag_seconds',
    help: 'Lag of event loop in seconds: how long a callback queued at the previous scrape waited to run.',
    registers: [registry],
    collect() {
      const start = process.hrtime.bigint();
      setImmediate(() => lag.set(Number(process.hrtime.bigint() - start) / 1e9));
    },
  });
}
