/**
 * Feeds prom-client counters from kernel counters that are read, not observed.
 *
 * The kernel exposes running totals (often u32, which wrap). A prom-client
 * Counter has no set(), so each reading increases the counter by the change
 * since the previous reading of the same source. A decrease is treated as a
 * wrap of a `bits`-wide counter.
 */
import type { Counter } from 'prom-client';

/** Change from `previous` to `current` of a counter that wraps at 2^bits. Pure. */
export function counterDelta(previous: number, current: number, bits = 32): number {
  if (current >= previous) return current - previous;
  const modulus = 2 ** bits;
  if (previous >= modulus || current >= modulus) {
    // Not a wrap of a counter of that width: the source was reset; count from zero.
    return current;
  }
  return modulus - previous + current;
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
}
