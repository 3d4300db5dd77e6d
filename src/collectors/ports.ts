/**
 * Collector `ports`: TIME_WAIT sockets and the ephemeral port range of the
 * exporter's network namespace, and the sysctls that decide how fast
 * TIME_WAIT ports come back.
 *
 * Each connection to one destination ip:port needs its own local port; a
 * client that opens and closes connections quickly leaves them in TIME_WAIT
 * (60 s) and runs out of the range, and every one of them is also a conntrack
 * entry (TIME_WAIT, 120 s by default). All of these files are per network
 * namespace: run the exporter with hostNetwork to see the node's.
 */
import { SnapshotGauge } from '../metrics/snapshot-gauge.js';
import { portRangeSize, readLocalPortRange } from '../procfs/port-range.js';
import { parseSockstat, timeWaitSockets } from '../procfs/sockstat.js';
import { NoDataError, type CollectorDefinition } from './collector.js';

export const portsCollector: CollectorDefinition = {
  name: 'ports',
  help: 'TIME_WAIT sockets, the local port range and tcp_tw_reuse/tcp_max_tw_buckets from /proc/net/sockstat and /proc/sys/net/ipv4.',
  defaultEnabled: true,
  create(ctx) {
    const registers = [ctx.registry];
    const timeWait = new SnapshotGauge({
      name: 'conntrack_sockets_time_wait',
      help: 'TCP sockets in TIME_WAIT, IPv4 and IPv6 (tw in the TCP line of /proc/net/sockstat; /proc/net/sockstat6 has no such column).',
      registers,
    });
    const rangeSize = new SnapshotGauge({
      name: 'conntrack_local_port_range_size',
      help: 'Ephemeral ports available to connect(), high - low + 1 of /proc/sys/net/ipv4/ip_local_port_range.',
      registers,
    });
    const twReuse = new SnapshotGauge({
      name: 'conntrack_tcp_tw_reuse',
      help: 'Reuse of TIME_WAIT ports for new outgoing connections (0 off, 1 on, 2 loopback only), /proc/sys/net/ipv4/tcp_tw_reuse.',
      registers,
    });
    const maxTw = new SnapshotGauge({
      name: 'conntrack_tcp_max_tw_buckets',
      help: 'Maximum TIME_WAIT sockets before the kernel destroys new ones at once, /proc/sys/net/ipv4/tcp_max_tw_buckets.',
      registers,
    });
    return {
      async update() {
        const sockstatPath = ctx.procfs.path('net', 'sockstat');
        const rangePath = ctx.procfs.path('sys', 'net', 'ipv4', 'ip_local_port_range');
        const [sockstat, range, reuse, maxBuckets] = await Promise.all([
          ctx.procfs.readText('net', 'sockstat'),
          readLocalPortRange(ctx.procfs),
          ctx.procfs.readInt('sys', 'net', 'ipv4', 'tcp_tw_reuse'),
          ctx.procfs.readInt('sys', 'net', 'ipv4', 'tcp_max_tw_buckets'),
        ]);
        timeWait.setOnly(sockstat === undefined ? undefined : timeWaitSockets(parseSockstat(sockstat, sockstatPath)));
        rangeSize.setOnly(range === undefined ? undefined : portRangeSize(range));
        twReuse.setOnly(reuse);
        maxTw.setOnly(maxBuckets);
        if (sockstat === undefined && range === undefined && reuse === undefined && maxBuckets === undefined) {
          throw new NoDataError(`neither ${sockstatPath} nor ${rangePath} exists`);
        }
      },
    };
  },
};
