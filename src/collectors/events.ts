/**
 * Collector `events` (opt-in): new and destroyed connection-table entries,
 * counted as they happen from `conntrack -E -e NEW,DESTROY`.
 *
 * Why: on modern kernels the `insert` statistic no longer counts new entries
 * (100 new UDP flows leave it at 0; only `conntrack -I` raises it), and the
 * table offers no creation counter or monotonic entry id (ids are hashes of
 * pointers), so the difference of two scans misses every entry that came and
 * went between them. The kernel's event multicast (ctnetlink, the
 * NFNLGRP_CONNTRACK_NEW/DESTROY groups) reports each one; conntrack-tools
 * subscribes to it read-only (it needs CAP_NET_ADMIN, as `conntrack -L` does)
 * and prints one line per event, of which only the type and protocol number
 * are read (src/table/events.ts).
 *
 * Cost and limits (README "Events"): conntrack -E formats every event, so its
 * CPU grows with the rate of new connections. It runs at a lower priority
 * (nice 10), so under CPU pressure it falls behind instead of taking CPU from
 * the workload; the kernel then drops events on the full netlink socket
 * (`-b`, --collector.events.buffer-size, sets its size) and conntrack warns
 * with ENOBUFS. Those warnings are counted: while
 * conntrack_events_overruns_total rises, the event counts are lower bounds.
 *
 * When conntrack exits it is started again after a backoff that doubles from
 * 1 s to 60 s (reset after a minute of running); events in between are not
 * seen, and the collector reports failure until it runs again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { setPriority } from 'node:os';
import { Counter } from 'prom-client';
import { EventCounter, EVENT_TYPES } from '../table/events.js';
import { protocolName } from '../table/tally.js';
import type { CollectorContext, CollectorDefinition } from './collector.js';
import { stopChild } from '../util/command.js';

/** Niceness of the conntrack -E child. */
const CHILD_NICE = 10;
const MIN_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 60_000;
const STABLE_MS = 60_000;

/** The arguments of the conntrack -E child. Pure. */
export function eventsArgs(bufferSize: number): string[] {
  const args = ['-E', '-e', 'NEW,DESTROY'];
  if (bufferSize > 0) args.push('-b', String(bufferSize));
  return args;
}

/** ENOBUFS warnings in a piece of conntrack's stderr (one per overflow it noticed). Pure. */
export function countOverruns(stderr: string): number {
  return stderr.match(/ENOBUFS/g)?.length ?? 0;
}

class EventsCollector {
  private readonly events: Counter<'type' | 'protocol'>;
  private readonly overruns: Counter;
  private readonly parseErrors: Counter;
  private readonly counter = new EventCounter();
  /** counter.counts as last published. */
  private readonly published = new Float64Array(EVENT_TYPES.length * 256);
  private publishedMalformed = 0;
  private pendingOverruns = 0;
  private readonly tool: string;
  private readonly args: string[];
  private child: ChildProcess | undefined;
  private running = false;
  private exited: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private failure: Error | undefined;
  private closed = false;
  private stderrTail = '';

  constructor(private readonly ctx: CollectorContext) {
    const registers = [ctx.registry];
    this.tool = ctx.flags.string('conntrack.path');
    this.args = eventsArgs(ctx.flags.number('collector.events.buffer-size'));
    this.events = new Counter({
      name: 'conntrack_events_total',
      help: 'Connection-table entries created (type new) and destroyed (type destroy) by protocol, one per event of conntrack -E -e NEW,DESTROY (the kernel ctnetlink event multicast) since the exporter started; a lower bound while conntrack_events_overruns_total rises.',
      labelNames: ['type', 'protocol'],
      registers,
    });
    // Both types exist for TCP and UDP from the start, so rate() has a series before the first event.
    for (const type of ['new', 'destroy']) for (const protocol of ['tcp', 'udp']) this.events.inc({ type, protocol }, 0);
    this.overruns = new Counter({
      name: 'conntrack_events_overruns_total',
      help: 'ENOBUFS warnings of conntrack -E: its netlink socket was full and the kernel dropped events (at least one each), so conntrack_events_total missed some.',
      registers,
    });
    this.parseErrors = new Counter({
      name: 'conntrack_events_parse_errors_total',
      help: 'Lines of conntrack -E output that were not an event and were skipped.',
      registers,
    });
  }

  async start(): Promise<void> {
    this.spawnChild();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await stopChild(this.child, this.exited);
    this.child = undefined;
  }

  async update(): Promise<void> {
    const counts = this.counter.counts;
    for (let t = 0; t < EVENT_TYPES.length; t++) {
      const type = EVENT_TYPES[t] as string;
      for (let p = 0; p < 256; p++) {
        const i = t * 256 + p;
        const delta = (counts[i] as number) - (this.published[i] as number);
        if (delta > 0) {
          this.events.inc({ type, protocol: protocolName(p) }, delta);
          this.published[i] = counts[i] as number;
        }
      }
    }
    this.parseErrors.inc(this.counter.malformed - this.publishedMalformed);
    this.publishedMalformed = this.counter.malformed;
    this.overruns.inc(this.pendingOverruns);
    this.pendingOverruns = 0;
    if (!this.running) throw this.failure ?? new Error(`${this.tool} ${this.args.join(' ')} is not running yet`);
  }

  private spawnChild(): void {
    if (this.closed) return;
    const started = Date.now();
    let child: ChildProcess;
    try {
      child = spawn(this.tool, this.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      // Some spawn failures (ENOTDIR, EACCES on a path component) throw instead of emitting 'error'.
      this.restartLater(`cannot run ${this.tool}: ${(err as Error).message}`, started, err as Error);
      return;
    }
    this.child = child;
    child.once('spawn', () => {
      this.running = true;
      if (child.pid !== undefined) {
        try {
          setPriority(child.pid, CHILD_NICE);
        } catch {
          // Not permitted: it keeps the exporter's priority.
        }
      }
      this.ctx.logger.info({ command: `${this.tool} ${this.args.join(' ')}` }, 'following connection-table events');
    });
    child.stdout?.on('data', (b: Buffer) => this.counter.push(b));
    child.stderr?.on('data', (b: Buffer) => {
      const text = b.toString('latin1');
      const n = countOverruns(text);
      if (n > 0) {
        this.pendingOverruns += n;
        this.ctx.logger.debug({ overruns: n }, 'conntrack -E lost events (ENOBUFS)');
      }
      this.stderrTail = (this.stderrTail + text).slice(-1000);
    });
    let spawnError: Error | undefined;
    child.on('error', (err) => {
      spawnError = err;
    });
    this.exited = new Promise((resolve) => {
      child.on('close', (code, signal) => {
        this.child = undefined;
        this.running = false;
        resolve();
        if (this.closed) return;
        const last = this.stderrTail
          .split('\n')
          .filter((l) => l.trim() !== '' && !l.includes('ENOBUFS') && !l.includes('--buffer-size') && !l.includes('buffer size is too small'))
          .pop();
        this.stderrTail = '';
        const why = spawnError
          ? `cannot run ${this.tool}: ${spawnError.message}`
          : `${this.tool} -E exited with ${code ?? signal}${last ? `: ${last.trim().slice(0, 300)}` : ''}`;
        this.restartLater(why, started, spawnError);
      });
    });
  }

  private restartLater(why: string, started: number, cause: Error | undefined): void {
    if (Date.now() - started >= STABLE_MS) this.failures = 0;
    this.failures++;
    const delay = Math.min(MIN_BACKOFF_MS * 2 ** (this.failures - 1), MAX_BACKOFF_MS);
    this.failure = new Error(`${why}; restarting in ${Math.round(delay / 1000)} s`, cause ? { cause } : undefined);
    this.ctx.logger.warn(this.failure.message);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.spawnChild();
    }, delay);
    this.timer.unref();
  }
}

export const eventsCollector: CollectorDefinition = {
  name: 'events',
  help: 'New and destroyed connection-table entries as they happen, from conntrack -E (opt-in: its CPU grows with the rate of new connections).',
  defaultEnabled: false,
  flags: [
    {
      name: 'collector.events.buffer-size',
      type: 'int',
      default: '8388608',
      min: 0,
      help: 'Receive buffer of the conntrack -E netlink socket in bytes (conntrack -b; 0: the system default). Bigger absorbs longer bursts before events are lost.',
    },
  ],
  create(ctx) {
    return new EventsCollector(ctx);
  },
};
