/**
 * Feeds prom-client counters from kernel counters that are read, not observed.
 *
 * The kernel exposes running totals (often u32, which wrap). A prom-client
 * Counter has no set(), so each reading increases the counter by the change
 * since the previous reading of the same source. A decrease is a wrap of a
 * `bits`-wide counter only when a wrap is plausible; otherwise the source was
 * reset (module reload, namespace recreated, CPU hot-plugged back) and must
 * not add ~2^32 to the counter.
 */
import type { Counter, MetricObjectWithValues, MetricValue, Registry } from 'prom-client';

/**
 * Change from `previous` to `current` of a counter that wraps at 2^bits. Pure.
 *
 * A decrease counts as a wrap only if `previous` was in the top half of the
 * range and the wrapped change is below half the range (a counter that moves
 * more than 2^(bits-1) between two readings cannot be told from a reset
 * anyway). Anything else is a reset.
 */
export function counterDelta(previous: number, current: number, bits = 32): number {
  if (current >= previous) return current - previous;
  const modulus = 2 ** bits;
  const half = modulus / 2;
  if (previous < modulus && current < modulus && previous >= half) {
    const wrapped = modulus - previous + current;
    if (wrapped < half) return wrapped;
  }
  // Reset: count from the current value, since a reset kernel counter restarts at 0 and what it shows now are the
  // events since the reset (Prometheus' own reset handling assumes the same).
  return current;
}

type Labels<T extends string> = Partial<Record<T, string | number>>;

export class DeltaCounter<T extends string = string> {
  private readonly last = new Map<string, number>();

  constructor(
    private readonly counter: Counter<T>,
    private readonly bits = 32,
  ) {}

  /**
   * Records a reading. `key` identifies the kernel source (e.g. cpu and column),
   * `labels` the series the change is added to; several keys may feed one series.
   */
  observe(key: string, labels: Labels<T>, value: number): void {
    const previous = this.last.get(key);
    this.last.set(key, value);
    // The first reading starts the counter at the kernel's total; inc(0) still creates the series.
    this.counter.inc(labels, previous === undefined ? value : counterDelta(previous, value, this.bits));
  }

  /** Forgets the state of every key for which `keep` is false (a source that disappeared). */
  prune(keep: (key: string) => boolean): void {
    for (const key of this.last.keys()) if (!keep(key)) this.last.delete(key);
  }

  /** Number of sources remembered (for leak tests). */
  get size(): number {
    return this.last.size;
  }
}

/**
 * Running totals of kernel counters for series that come and go (one per
 * network namespace, say). Each series sums the changes of its own sources
 * (e.g. CPUs), wrap- and reset-aware like DeltaCounter; the first reading of a
 * source counts its whole value, so a total equals the kernel's sum over its
 * sources (plus 2^bits per wrap). State exists only for the series observed,
 * and forget() drops a series with its sources.
 */
export class DeltaTotals {
  private readonly series = new Map<string, { total: number; last: Map<string, number> }>();

  constructor(private readonly bits = 32) {}

  /** Adds the change of `source` within `series`; returns that change. */
  observe(series: string, source: string, value: number): number {
    let s = this.series.get(series);
    if (!s) {
      s = { total: 0, last: new Map() };
      this.series.set(series, s);
    }
    const previous = s.last.get(source);
    s.last.set(source, value);
    const delta = previous === undefined ? value : counterDelta(previous, value, this.bits);
    s.total += delta;
    return delta;
  }

  total(series: string): number | undefined {
    return this.series.get(series)?.total;
  }

  forget(series: string): void {
    this.series.delete(series);
  }

  /** Drops every series for which `keep` is false. */
  retain(keep: (series: string) => boolean): void {
    for (const key of this.series.keys()) if (!keep(key)) this.series.delete(key);
  }

  /** Series remembered (for leak tests). */
  get size(): number {
    return this.series.size;
  }
}

export interface CounterSample<L extends string> {
  readonly labels: Record<L, string | number>;
  readonly value: number;
}

/**
 * A counter whose exported series are exactly those of the latest replace():
 * the values are running totals kept elsewhere (DeltaTotals), so a series can
 * leave the exposition (cardinality cap, namespace gone) and come back with
 * its total intact. Registered like a prom-client metric (the registry only
 * reads name, help, type and get()).
 */
export class SnapshotCounter<L extends string = never> {
  readonly type = 'counter';
  readonly aggregator = 'sum';
  private samples: CounterSample<L>[] = [];

  constructor(
    readonly opts: { readonly name: string; readonly help: string; readonly labelNames: readonly L[]; readonly registers: readonly Registry[] },
  ) {
    if (!opts.name.endsWith('_total')) throw new Error(`${opts.name}: a counter's name ends in _total`);
    for (const r of opts.registers) r.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  get name(): string {
    return this.opts.name;
  }

  get help(): string {
    return this.opts.help;
  }

  get labelNames(): readonly L[] {
    return this.opts.labelNames;
  }

  replace(samples: Iterable<CounterSample<L>>): void {
    const next: CounterSample<L>[] = [];
    for (const s of samples) {
      for (const l of this.opts.labelNames) {
        if (s.labels[l] === undefined) throw new Error(`${this.opts.name}: sample without label ${l}`);
      }
      next.push(s);
    }
    this.samples = next;
  }

  get(): Promise<MetricObjectWithValues<MetricValue<L>>> {
    return Promise.resolve({
      name: this.opts.name,
      help: this.opts.help,
      type: 'counter',
      aggregator: 'sum',
      values: this.samples.map((s) => ({ value: s.value, labels: { ...s.labels } })),
    } as unknown as MetricObjectWithValues<MetricValue<L>>);
  }

  reset(): void {
    this.samples = [];
  }
}
