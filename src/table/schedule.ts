/**
 * When the next table scan starts.
 *
 * Scans start every `--collector.table.interval`, but never more often than
 * every 10× the last scan's duration, so the exporter spends at most a tenth
 * of its time (and of the kernel's) walking the table, however big it grows.
 */

/** Minimum time between scan starts, as a multiple of the last scan's duration. */
export const DURATION_FACTOR = 10;

/**
 * Milliseconds from the end of a scan that took `lastDurationMs` to the start
 * of the next one. Pure.
 */
export function nextScanDelayMs(intervalMs: number, lastDurationMs: number): number {
  const period = Math.max(intervalMs, DURATION_FACTOR * lastDurationMs);
  return Math.max(0, period - lastDurationMs);
}
