/**
 * Collector `netns` (opt-in): conntrack entries and statistics per network
 * namespace and the Kubernetes pod each namespace belongs to.
 *
 * Statistics (drop, early_drop, insert_failed, clash_resolve, invalid) come
 * from the same `<pid>/net/stat/nf_conntrack` read as the entries, are fed
 * per CPU like the host's (DeltaTotals: wrap- and reset-aware), and are kept
 * only for the namespaces of the latest scan. Which namespaces get series:
 * selectStatNamespaces (rising or non-zero first, capped by the same max).
 *
 * Every namespace is checked against the same global nf_conntrack_max, so the
 * host's own count cannot say which pod filled its table. Namespaces are found
 * through `<procfs>/<pid>/ns/net`, which needs the host's pid namespace
 * (hostPID) and root or CAP_SYS_PTRACE to see other users' processes; see
 * src/procfs/netns.ts for the scan and its cost.
 *
 * No netlink fallback where `<pid>/net/stat/nf_conntrack` is missing: counting
 * another namespace over netlink means entering it (setns needs
 * CAP_SYS_ADMIN) and running `conntrack -C` once per namespace, a process per
 * pod on every scrape. Those namespaces still get their info series.
 */
import { DeltaTotals, SnapshotCounter } from '../metrics/delta-counter.js';
import { SnapshotGauge } from '../metrics/snapshot-gauge.js';
import { STAT_HELP } from '../procfs/conntrack-stat.js';
import { portRangeSize } from '../procfs/port-range.js';
import {
  readNetnsInode,
  scanNetworkNamespaces,
  selectNamespaces,
  selectStatNamespaces,
  selectTimeWaitNamespaces,
  type NetnsStatCandidate,
} from '../procfs/netns.js';
import { NetnsSysctlReader } from '../procfs/netns-sysctl.js';
import { NoDataError, type CollectorDefinition } from './collector.js';

/** Statistics exported per namespace as conntrack_netns_stat_<name>_total (canonical names, see STAT_ALIASES). */
export const NETNS_STATS = ['drop', 'early_drop', 'insert_failed', 'clash_resolve', 'invalid'] as const;

export const netnsCollector: CollectorDefinition = {
  name: 'netns',
  help: 'Conntrack entries and statistics per network namespace and the pod owning each, from /proc/<pid>/ns/net, net/stat/nf_conntrack and cgroup (needs hostPID).',
  defaultEnabled: false,
  flags: [
    {
      name: 'collector.netns.min-entries',
      type: 'int',
      default: '1',
      min: 0,
      help: 'Export conntrack_netns_entries only for namespaces with at least this many entries.',
    },
    {
      name: 'collector.netns.max',
      type: 'int',
      default: '500',
      min: 0,
      help: 'Export conntrack_netns_entries for at most this many namespaces, largest first (the rest are summed into conntrack_netns_omitted_entries); likewise at most this many namespaces get the conntrack_netns_stat_* counters (those whose statistics rose first) and the TIME_WAIT and sysctl gauges (most TIME_WAIT first).',
    },
    {
      name: 'collector.netns.sysctls',
      type: 'bool',
      default: 'false',
      help: 'Also export each namespace\'s ip_local_port_range size and tcp_tw_reuse, read by running nsenter --net=<procfs>/<pid>/ns/net cat … in it (a process per namespace per refresh; needs CAP_SYS_ADMIN).',
    },
    {
      name: 'collector.netns.sysctls.refresh',
      type: 'duration',
      default: '1m',
      min: 1,
      help: 'Read a namespace\'s sysctls again after this long (a new namespace is read on the scrape that finds it).',
    },
    {
      name: 'collector.netns.nsenter.path',
      type: 'string',
      default: 'nsenter',
      help: 'The nsenter binary (util-linux) used by --collector.netns.sysctls.',
    },
  ],
  create(ctx) {
    const minEntries = ctx.flags.number('collector.netns.min-entries');
    const max = ctx.flags.number('collector.netns.max');
    const sysctls = ctx.flags.bool('collector.netns.sysctls')
      ? new NetnsSysctlReader(ctx.run, {
          nsenter: ctx.flags.string('collector.netns.nsenter.path'),
          refreshMs: ctx.flags.number('collector.netns.sysctls.refresh') * 1000,
          inodeOf: readNetnsInode,
        })
      : undefined;
    const registers = [ctx.registry];
    const entries = new SnapshotGauge<'netns'>({
      name: 'conntrack_netns_entries',
      help: 'Entries in the conntrack table of one network namespace, by namespace inode (entries column of /proc/<pid>/net/stat/nf_conntrack).',
      labelNames: ['netns'],
      registers,
    });
    const omitted = new SnapshotGauge({
      name: 'conntrack_netns_omitted_entries',
      help: 'Entries of the namespaces not exported in conntrack_netns_entries (below --collector.netns.min-entries or beyond --collector.netns.max), summed from /proc/<pid>/net/stat/nf_conntrack.',
      registers,
    });
    const info = new SnapshotGauge<'netns' | 'pod_uid' | 'container_id'>({
      name: 'conntrack_netns_info',
      help: 'Constant 1 per network namespace found, labelled with the Kubernetes pod UID and container ID of its first process ("" if none) from /proc/<pid>/cgroup.',
      labelNames: ['netns', 'pod_uid', 'container_id'],
      registers,
    });
    const namespaces = new SnapshotGauge({
      name: 'conntrack_netns_namespaces',
      help: 'Network namespaces found through the processes in /proc/<pid>/ns/net on the last scrape.',
      registers,
    });
    const statCounters = new Map(
      NETNS_STATS.map((name) => [
        name,
        new SnapshotCounter<'netns'>({
          name: `conntrack_netns_stat_${name}_total`,
          help: `${STAT_HELP[name] ?? name}, in one network namespace by inode, summed over CPUs (${name === 'clash_resolve' ? 'clashres' : name} column of /proc/<pid>/net/stat/nf_conntrack).`,
          labelNames: ['netns'],
          registers,
        }),
      ]),
    );
    // Running totals per `<inode> <stat>`, fed per CPU; only for the namespaces of the last scan.
    const totals = new DeltaTotals(32);
    const timeWait = new SnapshotGauge<'netns'>({
      name: 'conntrack_netns_sockets_time_wait',
      help: 'TCP sockets in TIME_WAIT (IPv4 and IPv6) in one network namespace, by inode (tw in the TCP line of /proc/<pid>/net/sockstat).',
      labelNames: ['netns'],
      registers,
    });
    const rangeSize = new SnapshotGauge<'netns'>({
      name: 'conntrack_netns_local_port_range_size',
      help: 'Ephemeral ports available to connect() in one network namespace, high - low + 1 of its /proc/sys/net/ipv4/ip_local_port_range (read in the namespace with nsenter; --collector.netns.sysctls).',
      labelNames: ['netns'],
      registers,
    });
    const twReuse = new SnapshotGauge<'netns'>({
      name: 'conntrack_netns_tcp_tw_reuse',
      help: 'tcp_tw_reuse of one network namespace (0 off, 1 on, 2 loopback only), its /proc/sys/net/ipv4/tcp_tw_reuse (read in the namespace with nsenter; --collector.netns.sysctls).',
      labelNames: ['netns'],
      registers,
    });
    const skipped = new SnapshotGauge<'reason'>({
      name: 'conntrack_netns_scan_skipped_pids',
      help: 'Processes skipped on the last scan of /proc/<pid>, because they exited during it (vanished) or their files could not be read (denied).',
      labelNames: ['reason'],
      registers,
    });

    return {
      async update() {
        const scan = await scanNetworkNamespaces(ctx.procfs);
        const selection = selectNamespaces(scan.namespaces, minEntries, max);
        entries.replace(selection.shown.map((n) => ({ labels: { netns: String(n.inode) }, value: n.entries ?? 0 })));
        info.replace(
          scan.namespaces.map((n) => ({
            labels: {
              netns: String(n.inode),
              pod_uid: n.identity.podUid ?? '',
              container_id: n.identity.containerId ?? '',
            },
            value: 1,
          })),
        );
        namespaces.setOnly(scan.namespaces.length);

        const candidates: NetnsStatCandidate[] = [];
        const present = new Map<number, Set<string>>();
        const live = new Set<string>();
        for (const n of scan.namespaces) {
          const names = new Set(NETNS_STATS.filter((name) => n.cpus[0]?.values.has(name)));
          if (names.size === 0) continue;
          present.set(n.inode, names);
          let rose = 0;
          let total = 0;
          for (const name of names) {
            const key = `${n.inode} ${name}`;
            live.add(key);
            const known = totals.total(key) !== undefined;
            for (const row of n.cpus) {
              const delta = totals.observe(key, String(row.cpu), row.values.get(name) ?? 0);
              if (known) rose += delta;
            }
            total += totals.total(key) ?? 0;
          }
          candidates.push({ inode: n.inode, entries: n.entries ?? 0, rose, total });
        }
        totals.retain((key) => live.has(key));
        const statShown = selectStatNamespaces(candidates, minEntries, max);
        for (const [name, counter] of statCounters) {
          counter.replace(
            statShown
              .filter((c) => present.get(c.inode)?.has(name))
              .map((c) => ({ labels: { netns: String(c.inode) }, value: totals.total(`${c.inode} ${name}`) ?? 0 })),
          );
        }
        skipped.replace([
          { labels: { reason: 'vanished' }, value: scan.vanished },
          { labels: { reason: 'denied' }, value: scan.denied },
        ]);
        const twShown = selectTimeWaitNamespaces(scan.namespaces, minEntries, max);
        timeWait.replace(twShown.map((n) => ({ labels: { netns: String(n.inode) }, value: n.timeWait })));
        let sysctlProblem: string | undefined;
        if (sysctls) {
          // The namespaces that get a TIME_WAIT series get their range too, so the two join on netns.
          await sysctls.refresh(twShown.map((n) => ({ inode: n.inode, pid: n.pid, nsPath: ctx.procfs.path(String(n.pid), 'ns', 'net') })));
          const read = twShown.flatMap((n) => {
            const v = sysctls.get(n.inode);
            return v ? [{ inode: n.inode, ...v }] : [];
          });
          rangeSize.replace(read.map((r) => ({ labels: { netns: String(r.inode) }, value: portRangeSize(r.portRange) })));
          twReuse.replace(read.map((r) => ({ labels: { netns: String(r.inode) }, value: r.twReuse })));
          sysctlProblem = sysctls.allFailed();
        }
        const counted = scan.namespaces.some((n) => n.entries !== undefined);
        omitted.setOnly(counted ? selection.omittedEntries : undefined);
        if (scan.namespaces.length === 0) {
          throw new NoDataError(
            `no network namespace readable under ${ctx.procfs.root} (${scan.denied} pids denied: run as root with hostPID)`,
          );
        }
        if (!counted) {
          throw new NoDataError(
            `no ${ctx.procfs.path('<pid>/net/stat/nf_conntrack')} in any namespace (nf_conntrack not loaded or CONFIG_NF_CONNTRACK_PROCFS=n)`,
          );
        }
        if (sysctlProblem !== undefined) {
          // Everything else is published; success 0 says the opted-in sysctls cannot be read (e.g. no CAP_SYS_ADMIN).
          throw new NoDataError(`--collector.netns.sysctls: no namespace's sysctls could be read: ${sysctlProblem}`);
        }
      },
    };
  },
};
