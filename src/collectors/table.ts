/**
 * Collector `table`: what the connection table holds, from a periodic scan.
 *
 * Walking a million entries takes seconds, so it never happens on the
 * request path: scans run on their own schedule (src/table/schedule.ts),
 * stream the table through a fixed-memory scanner (src/table/), and
 * update() publishes the last completed scan. The collector succeeds when a
 * scan has completed and the latest one succeeded; a failed scan removes the
 * table series until the next one succeeds.
 */
import { Counter } from 'prom-client';
import { SnapshotGauge } from '../metrics/snapshot-gauge.js';
import { scanTable, type ScanResult, type SourceMode } from '../table/scan.js';
import { nextScanDelayMs } from '../table/schedule.js';
import { SourceAbsentError } from '../table/sources.js';
import { MAX_TOP_PORTS } from '../table/tally.js';
import { portRangeSize, readLocalPortRange, type PortRange } from '../procfs/port-range.js';
import { parsePortRangeFlag, sourceRange } from '../table/source-range.js';
import { NamespaceRanges } from '../table/namespace-ranges.js';
import { NoDataError, type CollectorContext, type CollectorDefinition } from './collector.js';

/** How long a namespace's addresses and port range are kept before they are read again. */
const NAMESPACE_REFRESH_MS = 60_000;

/** How long start() waits for the first scan (a small table takes milliseconds). */
const FIRST_SCAN_WAIT_MS = 1000;

const SOURCE_HELP = 'last completed scan of /proc/net/nf_conntrack or conntrack -L, every --collector.table.interval';

class TableCollector {
  private readonly entries: SnapshotGauge<'family' | 'protocol' | 'state'>;
  private readonly flagEntries: SnapshotGauge<'family' | 'protocol' | 'flag'>;
  private readonly destinations: SnapshotGauge<'protocol' | 'destination' | 'port'>;
  private readonly sourcePorts: SnapshotGauge<'protocol' | 'destination' | 'port'>;
  private readonly rangeSize: SnapshotGauge<'protocol' | 'destination' | 'port'>;
  private readonly destinationStates: SnapshotGauge<'protocol' | 'destination' | 'port' | 'state'>;
  private readonly ports: SnapshotGauge<'protocol' | 'port'>;
  private readonly duration: SnapshotGauge;
  private readonly timestamp: SnapshotGauge;
  private readonly scanned: SnapshotGauge;
  private readonly parseErrors: Counter;

  private readonly intervalMs: number;
  private readonly topDestinations: number;
  private readonly topPorts: number;
  private readonly snatSize: number;
  private readonly mode: SourceMode;
  private readonly tool: string;
  private readonly memory = { toolMissing: false };

  /** A completed scan not yet published, with the port range sizes read after it. */
  private pending:
    | { result: ScanResult; completedAt: number; localRange: number | undefined; namespaceSize: ((address: string) => number | undefined) | undefined }
    | undefined;
  private readonly namespaceRanges: NamespaceRanges | undefined;
  private warnedNamespaces = false;
  /** Malformed lines of scans completed since the last publish (a scan may replace an unpublished one). */
  private unpublishedErrors = 0;
  private published = false;
  private lastError: Error | undefined;
  private lastSource: string | undefined;
  private warnedQuadratic = false;
  private warnedMalformed = false;

  private timer: NodeJS.Timeout | undefined;
  private firstScanDone!: () => void;
  private firstScanEnded = false;
  private readonly firstScan = new Promise<void>((resolve) => {
    this.firstScanDone = () => {
      this.firstScanEnded = true;
      resolve();
    };
  });
  private running: Promise<void> | undefined;
  private readonly abort = new AbortController();
  private closed = false;

  constructor(private readonly ctx: CollectorContext) {
    const { flags, registry } = ctx;
    this.intervalMs = flags.number('collector.table.interval') * 1000;
    this.topDestinations = flags.number('collector.table.top-destinations');
    this.topPorts = flags.number('collector.table.top-ports');
    this.snatSize = portRangeSize(parsePortRangeFlag(flags.string('collector.table.snat-port-range')) as PortRange);
    this.namespaceRanges =
      this.topDestinations > 0 && flags.bool('collector.table.namespace-ranges')
        ? new NamespaceRanges({
            procfs: ctx.procfs,
            run: ctx.run,
            nsenter: flags.string('collector.table.nsenter.path'),
            refreshMs: NAMESPACE_REFRESH_MS,
          })
        : undefined;
    this.mode = flags.string('collector.table.source') as SourceMode;
    this.tool = flags.string('conntrack.path');
    const registers = [registry];
    this.entries = new SnapshotGauge({
      name: 'conntrack_table_entries',
      help: `Entries in the connection table by family, protocol and protocol state (none for stateless protocols) (${SOURCE_HELP}).`,
      labelNames: ['family', 'protocol', 'state'],
      registers,
    });
    this.flagEntries = new SnapshotGauge({
      name: 'conntrack_table_flag_entries',
      help: `Entries in the connection table carrying the flag unreplied, assured, offload or hw_offload (${SOURCE_HELP}).`,
      labelNames: ['family', 'protocol', 'flag'],
      registers,
    });
    this.destinations = new SnapshotGauge({
      name: 'conntrack_table_destination_entries',
      help: `Entries toward each of the --collector.table.top-destinations busiest original-direction destinations (port empty for protocols without ports) (${SOURCE_HELP}).`,
      labelNames: ['protocol', 'destination', 'port'],
      registers,
    });
    this.sourcePorts = new SnapshotGauge({
      name: 'conntrack_table_destination_source_ports',
      help: `Most source ports any one source address holds toward each top destination; for source-NATed entries the translated address, from the reply tuple; TIME_WAIT entries that are not source-NATed and older than the socket's 60 s TIME_WAIT (timeout column at most nf_conntrack_tcp_timeout_time_wait - 60) hold no port and are not counted (${SOURCE_HELP}).`,
      labelNames: ['protocol', 'destination', 'port'],
      registers,
    });
    this.rangeSize = new SnapshotGauge({
      name: 'conntrack_table_destination_source_port_range_size',
      help: `Size of the port range the source counted in conntrack_table_destination_source_ports draws from: --collector.table.snat-port-range if any of its entries is source-NATed; else, with --collector.table.namespace-ranges, /proc/sys/net/ipv4/ip_local_port_range of the other network namespace on this host that holds the source address (a pod, read in it with nsenter); else that of the exporter's namespace (${SOURCE_HELP}).`,
      labelNames: ['protocol', 'destination', 'port'],
      registers,
    });
    this.destinationStates = new SnapshotGauge({
      name: 'conntrack_table_destination_state_entries',
      help: `Entries toward each top destination (the conntrack_table_destination_entries set) by protocol state, none for stateless protocols; they add up to its conntrack_table_destination_entries (${SOURCE_HELP}).`,
      labelNames: ['protocol', 'destination', 'port', 'state'],
      registers,
    });
    this.ports = new SnapshotGauge({
      name: 'conntrack_table_destination_port_entries',
      help: `Entries toward each of the --collector.table.top-ports busiest original-direction destination ports, whatever the destination address, IPv4 and IPv6 together (${SOURCE_HELP}).`,
      labelNames: ['protocol', 'port'],
      registers,
    });
    this.duration = new SnapshotGauge({
      name: 'conntrack_table_scan_duration_seconds',
      help: 'Wall time of the last completed scan of the connection table.',
      registers,
    });
    this.timestamp = new SnapshotGauge({
      name: 'conntrack_table_scan_timestamp_seconds',
      help: 'Unix time at which the last completed scan of the connection table ended.',
      registers,
    });
    this.scanned = new SnapshotGauge({
      name: 'conntrack_table_scanned_entries',
      help: 'Lines of the connection table read by the last completed scan (/proc/net/nf_conntrack or conntrack -L).',
      registers,
    });
    this.parseErrors = new Counter({
      name: 'conntrack_table_parse_errors_total',
      help: 'Malformed lines of /proc/net/nf_conntrack or conntrack -L skipped by table scans.',
      registers,
    });
  }

  async start(): Promise<void> {
    this.schedule(0);
    // Wait a little for the first scan, so a small table is there at the first scrape; listening
    // must not wait for a big one.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.firstScan,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, FIRST_SCAN_WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Ready once the first scan has ended (with a result or an error): /-/ready. */
  ready(): boolean {
    return this.firstScanEnded;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.abort.abort(new Error('exporter closing'));
    await this.running;
  }

  async update(): Promise<void> {
    if (this.lastError) {
      this.clear();
      throw this.lastError;
    }
    const pending = this.pending;
    if (pending) {
      this.pending = undefined;
      this.publish(pending.result, pending.completedAt, pending.localRange, pending.namespaceSize);
    }
    if (!this.published) throw new NoDataError('the first scan of the connection table has not completed yet');
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.scan().finally(() => {
        this.running = undefined;
      });
    }, delayMs);
    this.timer.unref();
  }

  private async scan(): Promise<void> {
    const started = performance.now();
    try {
      const result = await scanTable({
        procfs: this.ctx.procfs,
        tool: this.tool,
        mode: this.mode,
        topDestinations: this.topDestinations,
        topPorts: this.topPorts,
        signal: this.abort.signal,
        memory: this.memory,
      });
      const localRange = await this.localRangeSize();
      const namespaceSize = await this.namespaceSizes(result);
      this.lastError = undefined;
      this.pending = { result, completedAt: Date.now() / 1000, localRange, namespaceSize };
      this.unpublishedErrors += result.errors;
      this.logScan(result);
    } catch (err) {
      if (this.closed) {
        this.firstScanDone();
        return;
      }
      const e = err as Error;
      this.lastError =
        err instanceof SourceAbsentError
          ? new NoDataError(`no connection table to scan: ${e.message}`, { cause: err })
          : new Error(`table scan failed: ${e.message}`, { cause: err });
      this.pending = undefined;
    }
    this.firstScanDone();
    this.schedule(nextScanDelayMs(this.intervalMs, performance.now() - started));
  }

  /** ip_local_port_range size of the exporter's namespace; undefined (no range series) if unreadable. */
  private async localRangeSize(): Promise<number | undefined> {
    const range = await readLocalPortRange(this.ctx.procfs).catch(() => undefined);
    return range === undefined ? undefined : portRangeSize(range);
  }

  /** With --collector.table.namespace-ranges: the range of the namespace holding each non-NATed busiest source. */
  private async namespaceSizes(result: ScanResult): Promise<((address: string) => number | undefined) | undefined> {
    if (!this.namespaceRanges) return undefined;
    const wanted = result.summary.destinations.flatMap((d) =>
      d.sourcePorts !== undefined && !d.busiestSourceTranslated && d.busiestSource !== undefined ? [d.busiestSource] : [],
    );
    try {
      const lookup = await this.namespaceRanges.lookup([...new Set(wanted)]);
      if (lookup.problem) {
        const level = this.warnedNamespaces ? 'debug' : 'warn';
        this.warnedNamespaces = true;
        this.ctx.logger[level](`cannot read pod namespaces' port ranges, using the local range: ${lookup.problem}`);
      }
      return lookup.sizeOf;
    } catch (err) {
      const level = this.warnedNamespaces ? 'debug' : 'warn';
      this.warnedNamespaces = true;
      this.ctx.logger[level](`cannot look up pod namespaces, using the local port range: ${(err as Error).message}`);
      return undefined;
    }
  }

  private logScan(result: ScanResult): void {
    const { logger } = this.ctx;
    if (result.source !== this.lastSource) {
      logger.info({ source: result.source }, `scanning the connection table from ${result.source}`);
      this.lastSource = result.source;
    }
    if (result.quadratic && !this.warnedQuadratic && result.lines >= 100_000) {
      this.warnedQuadratic = true;
      const fix = result.toolError === undefined ? 'install conntrack-tools' : `conntrack -L failed (${result.toolError}): give the exporter CAP_NET_ADMIN`;
      logger.warn(
        { source: result.source, entries: result.lines, toolError: result.toolError },
        `reading a large table from /proc is quadratic before kernel 6.16; ${fix} so scans use netlink`,
      );
    }
    if (result.errors > 0) {
      const level = this.warnedMalformed ? 'debug' : 'warn';
      this.warnedMalformed = true;
      logger[level]({ errors: result.errors, line: result.firstError }, `skipped ${result.errors} malformed table lines`);
    }
    logger.debug(
      { seconds: result.durationSeconds, lines: result.lines, destinationsError: result.summary.destinationsError },
      'table scan completed',
    );
  }

  private publish(
    result: ScanResult,
    completedAt: number,
    localRange: number | undefined,
    namespaceSize: ((address: string) => number | undefined) | undefined,
  ): void {
    const { summary } = result;
    this.entries.replace(
      summary.entries.map((e) => ({ labels: { family: e.family, protocol: e.protocol, state: e.state }, value: e.count })),
    );
    this.flagEntries.replace(
      summary.flags.map((f) => ({ labels: { family: f.family, protocol: f.protocol, flag: f.flag }, value: f.count })),
    );
    this.destinations.replace(
      summary.destinations.map((d) => ({
        labels: { protocol: d.protocol, destination: d.destination, port: d.port },
        value: d.entries,
      })),
    );
    this.sourcePorts.replace(
      summary.destinations.flatMap((d) =>
        d.sourcePorts === undefined
          ? []
          : [{ labels: { protocol: d.protocol, destination: d.destination, port: d.port }, value: d.sourcePorts }],
      ),
    );
    const rangeContext = { snatSize: this.snatSize, localSize: localRange, namespaceSize };
    this.rangeSize.replace(
      summary.destinations.flatMap((d) => {
        const range = sourceRange(d, rangeContext);
        return range === undefined ? [] : [{ labels: { protocol: d.protocol, destination: d.destination, port: d.port }, value: range.size }];
      }),
    );
    this.destinationStates.replace(
      summary.destinations.flatMap((d) =>
        d.states.map((st) => ({
          labels: { protocol: d.protocol, destination: d.destination, port: d.port, state: st.state },
          value: st.entries,
        })),
      ),
    );
    this.ports.replace(summary.ports.map((p) => ({ labels: { protocol: p.protocol, port: p.port }, value: p.entries })));
    this.duration.setOnly(result.durationSeconds);
    this.timestamp.setOnly(completedAt);
    this.scanned.setOnly(result.lines);
    this.parseErrors.inc(this.unpublishedErrors);
    this.unpublishedErrors = 0;
    this.published = true;
  }

  private clear(): void {
    for (const g of [
      this.entries,
      this.flagEntries,
      this.destinations,
      this.sourcePorts,
      this.rangeSize,
      this.destinationStates,
      this.ports,
      this.duration,
      this.timestamp,
      this.scanned,
    ]) {
      g.clear();
    }
    this.published = false;
  }
}

export const tableCollector: CollectorDefinition = {
  name: 'table',
  help: 'Breakdown of the connection table by state, protocol, flag, top destination port and top destination, from a periodic scan of /proc/net/nf_conntrack or conntrack -L.',
  defaultEnabled: true,
  flags: [
    {
      name: 'collector.table.interval',
      type: 'duration',
      default: '30s',
      min: 1,
      help: 'Time between scans of the connection table; never less than 10 times the last scan took.',
    },
    {
      name: 'collector.table.top-destinations',
      type: 'int',
      default: '10',
      min: 0,
      help: 'How many of the busiest destinations to report in conntrack_table_destination_entries (0 disables).',
    },
    {
      name: 'collector.table.top-ports',
      type: 'int',
      default: '10',
      min: 0,
      validate: (v) => ((v as number) > MAX_TOP_PORTS ? `must be at most ${MAX_TOP_PORTS}` : undefined),
      help: `How many of the busiest destination ports to report in conntrack_table_destination_port_entries (0 disables, at most ${MAX_TOP_PORTS}).`,
    },
    {
      name: 'collector.table.snat-port-range',
      type: 'string',
      default: '1024-65535',
      validate: (v) => {
        const r = parsePortRangeFlag(v as string);
        return typeof r === 'string' ? r : undefined;
      },
      help: 'Source port range of the SNAT/masquerade rules, low-high: the range size conntrack_table_destination_source_port_range_size gives source-NATed sources (the kernel uses 1024-65535 unless the rule names ports).',
    },
    {
      name: 'collector.table.namespace-ranges',
      type: 'bool',
      default: 'false',
      help: "Give a top destination's busiest source that is not source-NATed and belongs to another network namespace on this host (a pod) that namespace's ip_local_port_range in conntrack_table_destination_source_port_range_size: finds namespaces through /proc/<pid>/ns/net and their addresses in /proc/<pid>/net/{fib_trie,if_inet6} (hostPID, root) and reads the range with nsenter (CAP_SYS_ADMIN), at most once a minute per namespace.",
    },
    {
      name: 'collector.table.nsenter.path',
      type: 'string',
      default: 'nsenter',
      help: 'The nsenter binary (util-linux) used by --collector.table.namespace-ranges.',
    },
    {
      name: 'collector.table.source',
      type: 'enum',
      default: 'auto',
      choices: ['auto', 'procfs', 'netlink'],
      help: 'Where to read the table: procfs (/proc/net/nf_conntrack), netlink (conntrack -L), or auto (procfs on kernels from 6.16, else netlink if conntrack-tools is installed).',
    },
  ],
  create(ctx) {
    return new TableCollector(ctx);
  },
};
