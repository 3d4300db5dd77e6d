/**
 * A kernel log source: something that follows one sink (/dev/kmsg, a log
 * file, journald) in the background and reports every line it reads.
 *
 * Sources classify lines themselves, because each knows its sink's shape; the
 * collector only counts what they report. `start()` begins following and
 * `stop()` releases every fd, watcher, timer and child process.
 */
import type { Match } from './classify.js';

export const SOURCE_NAMES = ['kmsg', 'file', 'journal'] as const;
export type SourceName = (typeof SOURCE_NAMES)[number];

export interface LineSink {
  /** One line or record was read; `match` is what it announced, if anything. */
  line(match: Match | undefined): void;
  /** Records the source knows it missed (kmsg ring buffer overrun, unreadable data). */
  lost(count: number): void;
}

export interface LineSource {
  readonly name: SourceName;
  /** Human-readable description for logs, e.g. `/dev/kmsg` or the file path. */
  readonly description: string;
  /** Starts following; rejects if the source cannot be started at all. */
  start(sink: LineSink): Promise<void>;
  /** Stops following and releases everything; safe to call twice. */
  stop(): Promise<void>;
  /** Why the source is not currently following (undefined when healthy). */
  problem(): Error | undefined;
}
