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
import type { Counter } from 'prom-client';

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
