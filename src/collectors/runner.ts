/**
 * Runs the enabled collectors on each scrape and reports their health.
 *
 * Collectors run concurrently; each one's failure is caught, logged and
 * reported as `conntrack_scrape_collector_success{collector} 0`. A failure
 * other than NoDataError also empties the collector's gauges, so a source that
 * breaks stops serving the values of its last good reading (a collector that
 * throws NoDataError has already published what it could read). Concurrent
 * scrapes are serialised so that one scrape's readings are never mixed with
 * another's, and counter deltas are taken once per reading.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import type { Flags } from '../config/flags.js';
import { SnapshotGauge } from '../metrics/snapshot-gauge.js';
import { NoDataError, type Collector, type CollectorContext, type CollectorDefinition } from './collector.js';

interface Running {
  readonly name: string;
  readonly collector: Collector;
  readonly logger: Logger;
  /** The gauges the collector registered, emptied when it fails. */
  readonly gauges: readonly SnapshotGauge<string>[];
  /** Last failure message, to log a repeated failure once rather than on every scrape. */
  lastError?: string;
}

export class CollectorRunner {
  private readonly running: Running[] = [];
  private readonly success: Gauge<'collector'>;
  private readonly duration: Gauge<'collector'>;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    definitions: readonly CollectorDefinition[],
    base: Omit<CollectorContext, 'logger'> & { logger: Logger },
  ) {
    this.success = new Gauge({
      name: 'conntrack_scrape_collector_success',
      help: 'Whether the collector succeeded on the last scrape (1) or failed (0).',
      labelNames: ['collector'],
      registers: [base.registry],
    });
    this.duration = new Gauge({
      name: 'conntrack_scrape_collector_duration_seconds',
      help: 'Time the collector took on the last scrape.',
      labelNames: ['collector'],
      registers: [base.registry],
    });
    for (const def of definitions) {
      if (!isEnabled(base.flags, def)) continue;
      const logger = base.logger.child({ collector: def.name });
      const before = new Set<unknown>(base.registry.getMetricsAsArray());
      const collector = def.create({ ...base, logger });
      const gauges = (base.registry.getMetricsAsArray() as unknown[]).filter(
        (m): m is SnapshotGauge<string> => m instanceof SnapshotGauge && !before.has(m),
      );
      this.running.push({ name: def.name, collector, logger, gauges });
    }
  }

  get names(): string[] {
    return this.running.map((r) => r.name);
  }

  async start(): Promise<void> {
    for (const r of this.running) await r.collector.start?.();
  }

  /** Names of the enabled collectors that are not ready yet (see Collector.ready). */
  notReady(): string[] {
    return this.running.filter((r) => r.collector.ready?.() === false).map((r) => r.name);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.running.map((r) => r.collector.close?.()));
  }

  /** Runs every collector's update, then `render()`, with no other scrape in between. */
  scrape<T>(render: () => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => {
      const results = await Promise.all(this.running.map((r) => this.updateOne(r)));
      // Set in the collectors' order, not as they finish, so the series order of /metrics is stable.
      this.running.forEach((r, i) => {
        const { ok, seconds } = results[i] as { ok: number; seconds: number };
        this.success.set({ collector: r.name }, ok);
        this.duration.set({ collector: r.name }, seconds);
      });
      return render();
    });
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private async updateOne(r: Running): Promise<{ ok: number; seconds: number }> {
    const start = performance.now();
    let ok = 1;
    try {
      await r.collector.update();
      if (r.lastError !== undefined) r.logger.info('collector recovered');
      r.lastError = undefined;
    } catch (err) {
      ok = 0;
      if (!(err instanceof NoDataError)) for (const g of r.gauges) g.clear();
      const message = err instanceof Error ? err.message : String(err);
      if (message !== r.lastError) {
        // Log each distinct failure once; "absent on this host" is information, not a warning.
        const level = err instanceof NoDataError ? 'info' : 'warn';
        r.logger[level]({ err }, `collector failed: ${message}`);
      }
      r.lastError = message;
    }
    return { ok, seconds: (performance.now() - start) / 1000 };
  }
}

/**
 * `--collector.<name>` when given (flag or environment), else its default, which
 * `--collector.disable-defaults` turns to false for every collector (as node_exporter does).
 */
export function isEnabled(flags: Flags, def: CollectorDefinition): boolean {
  const name = `collector.${def.name}`;
  if (flags.explicit.has(name)) return flags.bool(name);
  if (flags.has('collector.disable-defaults') && flags.bool('collector.disable-defaults')) return false;
  return flags.bool(name);
}
