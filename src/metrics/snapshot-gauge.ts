/**
 * A gauge whose series are exactly those of the latest reading.
 *
 * prom-client's Gauge always emits a label-less gauge (as 0 before the first
 * set) and keeps label sets until reset. For values relayed from the kernel
 * that is wrong twice over: a missing file must make the series disappear,
 * not read 0 (a `conntrack_entries_limit 0` would page someone), and a label
 * set that is gone from the source (a CPU, a state, a destination) must go.
 * A SnapshotGauge is registered like any prom-client metric (the registry
 * only calls `get()`), and each update replaces the whole set of samples.
 */
import type { MetricObjectWithValues, MetricValue, Registry } from 'prom-client';

export type LabelValues<L extends string> = Record<L, string | number>;

export interface Sample<L extends string> {
  readonly labels: LabelValues<L>;
  readonly value: number;
}

export interface SnapshotGaugeOptions<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly L[];
  readonly registers: readonly Registry[];
}

export class SnapshotGauge<L extends string = never> {
  readonly name: string;
  readonly help: string;
  readonly type = 'gauge';
  readonly aggregator = 'sum';
  readonly labelNames: readonly L[];
  private samples: Sample<L>[] = [];

  constructor(opts: SnapshotGaugeOptions<L>) {
    this.name = opts.name;
    this.help = opts.help;
    this.labelNames = opts.labelNames ?? [];
    for (const r of opts.registers) {
      // The registry's contract is structural: name, help, type and get().
      r.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
    }
  }

  /** Replaces every series with these samples. */
  replace(samples: Iterable<Sample<L>>): void {
    const next: Sample<L>[] = [];
    for (const s of samples) {
      for (const l of this.labelNames) {
        if (s.labels[l] === undefined) throw new Error(`${this.name}: sample without label ${l}`);
      }
      next.push(s);
    }
    this.samples = next;
  }

  /** Replaces every series with one unlabelled value, or with none when the value is undefined. */
  setOnly(value: number | undefined): void {
    this.samples = value === undefined ? [] : [{ labels: {} as LabelValues<L>, value }];
  }

  clear(): void {
    this.samples = [];
  }

  get(): Promise<MetricObjectWithValues<MetricValue<L>>> {
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: 'gauge',
      aggregator: 'sum',
      values: this.samples.map((s) => ({ value: s.value, labels: { ...s.labels } })),
    } as unknown as MetricObjectWithValues<MetricValue<L>>);
  }

  reset(): void {
    this.samples = [];
  }
}
