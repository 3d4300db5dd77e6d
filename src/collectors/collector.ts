/**
 * The collector contract.
 *
 * A collector owns the metrics of one kernel source. On every scrape the
 * runner calls `update()`; a collector reads its source, parses it with pure
 * functions and sets its metrics, or throws. The runner records
 * `conntrack_scrape_collector_success{collector}` and
 * `conntrack_scrape_collector_duration_seconds{collector}` for each one, so a
 * broken source shows up as success 0 and never fails the whole scrape.
 *
 * Collectors with background work (table scans, log following) start it in
 * `start()` and release every timer, watcher and child process in `close()`.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { FlagSpec, Flags } from '../config/flags.js';
import type { FsRoot } from '../procfs/fs.js';
import type { CommandRunner } from '../util/command.js';

export interface CollectorContext {
  readonly flags: Flags;
  /** Child logger bound to `{ collector: name }`. */
  readonly logger: Logger;
  /** Register every metric here (`registers: [ctx.registry]`). */
  readonly registry: Registry;
  /** `--path.procfs` */
  readonly procfs: FsRoot;
  /** `--path.sysfs` */
  readonly sysfs: FsRoot;
  /** `--path.rootfs` */
  readonly rootfs: FsRoot;
  /** Runs external tools (conntrack-tools, journalctl); replaced by fakes in tests. */
  readonly run: CommandRunner;
}

export interface Collector {
  /**
   * Refreshes this collector's metrics. Throwing marks the collector failed for this scrape; unless
   * the error is a NoDataError, the runner also empties every SnapshotGauge the collector registered.
   */
  update(): Promise<void>;
  /** Starts background work, once, after construction. */
  start?(): Promise<void>;
  /** Stops background work; must leave no timers, watchers or children behind. */
  close?(): Promise<void>;
  /**
   * False while background work that the first complete scrape needs has not finished once (the
   * table's first scan). Collectors without background work are always ready. Drives /-/ready.
   */
  ready?(): boolean;
}

export interface CollectorDefinition {
  /** Name in `--collector.<name>` and in the `collector` label. */
  readonly name: string;
  readonly help: string;
  readonly defaultEnabled: boolean;
  /** Extra flags this collector reads, conventionally `collector.<name>.<option>`. */
  readonly flags?: readonly FlagSpec[];
  create(ctx: CollectorContext): Collector;
}

/**
 * Thrown by a collector whose source does not exist on this host (module not loaded, file absent),
 * after it has published what it could read: its gauges are left as they are.
 */
export class NoDataError extends Error {
  override readonly name = 'NoDataError';
}
