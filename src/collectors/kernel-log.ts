/**
 * Collector `kernel_log`: conntrack capacity messages in the kernel log, as
 * counters of events the exporter itself observed.
 *
 * Source (--kernel-log.source): /dev/kmsg, a syslog file under --path.rootfs
 * or journald, followed in the background from start() to close(); see
 * src/kernel-log/. Only lines read while the exporter runs are counted
 * (unless --kernel-log.from-start). update() only reports the source's health.
 */
import { Counter } from 'prom-client';
import { EVENTS, type Match } from '../kernel-log/classify.js';
import { SOURCE_CHOICES, selectSource, type SourceChoice, type SourceSettings, type Selection } from '../kernel-log/select.js';
import type { LineSink, LineSource } from '../kernel-log/source.js';
import { NoDataError, type Collector, type CollectorContext, type CollectorDefinition } from './collector.js';

export interface KernelLogMetrics {
  readonly events: Counter<'event' | 'netns'>;
  readonly suppressed: Counter;
  readonly lines: Counter<'source'>;
  readonly lost: Counter<'source'>;
}

export function createKernelLogMetrics(ctx: Pick<CollectorContext, 'registry'>): KernelLogMetrics {
  const registers = [ctx.registry];
  const events = new Counter<'event' | 'netns'>({
    name: 'conntrack_kernel_log_events_total',
    help: 'Conntrack capacity messages read from the kernel log (/dev/kmsg, a syslog file or journald), by event and by the network namespace inode the message names (empty when it names none).',
    labelNames: ['event', 'netns'],
    registers,
  });
  // Present from the start, so that the first event is an increase rather than a new series.
  for (const event of EVENTS) events.inc({ event, netns: '' }, 0);
  return {
    events,
    suppressed: new Counter({
      name: 'conntrack_kernel_log_suppressed_total',
      help: 'Kernel log messages dropped by rate limiting, summed from the kernel log\'s "callbacks suppressed" and "messages suppressed" lines; an upper bound for conntrack, since the net_ratelimit state is shared by all net_* messages.',
      registers,
    }),
    lines: new Counter<'source'>({
      name: 'conntrack_kernel_log_lines_total',
      help: 'Lines or records read from the kernel log, by source (kmsg: /dev/kmsg, file: a syslog file, journal: journalctl -k).',
      labelNames: ['source'],
      registers,
    }),
    lost: new Counter<'source'>({
      name: 'conntrack_kernel_log_lost_total',
      help: 'Kernel log records lost before the exporter could read them, by source (kmsg: records overwritten in the /dev/kmsg ring buffer).',
      labelNames: ['source'],
      registers,
    }),
  };
}

/** A sink that counts what a source reports into the metrics. */
export function metricsSink(metrics: KernelLogMetrics, source: string): LineSink {
  const lines = metrics.lines.labels({ source });
  const lost = metrics.lost.labels({ source });
  lines.inc(0);
  lost.inc(0);
  return {
    line(match: Match | undefined) {
      lines.inc();
      if (!match) return;
      if (match.kind === 'suppressed') metrics.suppressed.inc(match.count);
      else metrics.events.inc({ event: match.event, netns: match.netns });
    },
    lost(count: number) {
      lost.inc(count);
    },
  };
}

export type SourceSelector = (settings: SourceSettings) => Promise<Selection>;

/** The collector, with the source selection replaceable for tests. */
export function createKernelLogCollector(ctx: CollectorContext, select: SourceSelector = selectSource): Collector {
  const choice = ctx.flags.string('kernel-log.source') as SourceChoice;
  const metrics = createKernelLogMetrics(ctx);
  const settings: SourceSettings = {
    choice,
    path: ctx.flags.string('kernel-log.path'),
    kmsgPath: ctx.flags.string('kernel-log.kmsg-path'),
    journalctl: ctx.flags.string('kernel-log.journalctl-path'),
    fromStart: ctx.flags.bool('kernel-log.from-start'),
    rootfs: ctx.rootfs,
    run: ctx.run,
    warn: (message) => ctx.logger.warn(message),
  };
  let source: LineSource | undefined;
  let started = false;
  let startError: Error | undefined;
  let none: Error | undefined;
  let closed = false;

  const startSource = async (): Promise<void> => {
    if (!source || started || closed) return;
    try {
      await source.start(metricsSink(metrics, source.name));
      started = true;
      startError = undefined;
      ctx.logger.info({ source: source.name, path: source.description }, `following the kernel log: ${source.description}`);
    } catch (err) {
      await source.stop().catch(() => undefined);
      startError = new Error(`cannot follow the kernel log (${source.name}): ${(err as Error).message}`, { cause: err });
    }
  };

  return {
    async start() {
      const selection = await select(settings);
      source = selection.source;
      if (!source && choice !== 'none') {
        none = new NoDataError(`no kernel log source is readable: ${selection.reasons.join('; ')}`);
        ctx.logger.warn(none.message);
      }
      await startSource();
    },

    async update() {
      if (none) throw none;
      if (!source) return; // --kernel-log.source=none
      // A source that could not start (e.g. /dev/kmsg not readable yet) is retried on each scrape.
      if (!started) await startSource();
      if (startError) throw startError;
      const problem = source.problem();
      if (problem) throw problem;
    },

    async close() {
      closed = true;
      await source?.stop();
    },
  };
}

export const kernelLogCollector: CollectorDefinition = {
  name: 'kernel_log',
  help: 'Conntrack table-full drops and related kernel messages, followed from /dev/kmsg, a syslog file or journald.',
  defaultEnabled: true,
  flags: [
    {
      name: 'kernel-log.source',
      type: 'enum',
      default: 'auto',
      choices: SOURCE_CHOICES,
      help: 'Where to read kernel messages: kmsg (/dev/kmsg), file (--kernel-log.path), journal (journalctl -k), none, or auto (the first of these that is readable).',
    },
    {
      name: 'kernel-log.path',
      type: 'string',
      default: '',
      help: 'Log file for --kernel-log.source=file, under --path.rootfs; empty: the first of /var/log/kern.log and /var/log/messages that exists.',
    },
    {
      name: 'kernel-log.kmsg-path',
      type: 'string',
      default: '/dev/kmsg',
      help: 'The kernel message device for --kernel-log.source=kmsg (not under --path.rootfs: mount the device itself into a container).',
    },
    {
      name: 'kernel-log.journalctl-path',
      type: 'string',
      default: 'journalctl',
      help: 'The journalctl binary for --kernel-log.source=journal.',
    },
    {
      name: 'kernel-log.from-start',
      type: 'bool',
      default: 'false',
      help: 'Also count the messages already in the kernel log when the exporter starts (the whole ring buffer, file or boot) instead of only new ones.',
    },
  ],
  create: (ctx) => createKernelLogCollector(ctx),
};
