/**
 * TIME_WAIT and ephemeral ports on the real kernel: in a namespace with a
 * ten-port ip_local_port_range and tcp_tw_reuse=0, one client fills the range
 * toward one ip:port, closes first (so its sockets go to TIME_WAIT), and the
 * exporter running inside that namespace (sockstat is per namespace) counts
 * them, IPv6 included, as `ss` does.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  Netns,
  acquireKernelLock,
  describeKernel,
  releaseKernelLock,
  startExporterInNetns,
  type RunningExporter,
} from '../helpers/kernel.js';
import { parseSockstat } from '../../src/procfs/sockstat.js';

const PORT = 19761;
const RANGE = { low: 40000, high: 40009 };

/**
 * Inside the namespace: servers on 127.0.0.1:7100 and [::1]:7101; `v4` connections
 * held open to the first, one more attempted (the range is full), all closed by
 * the client, one more attempted (TIME_WAIT still holds every port), then `v6`
 * connections opened and closed to the IPv6 one (another destination, so the
 * same ports serve again).
 */
const WORKLOAD = `
const net = require('node:net');
const [v4, v6] = process.argv.slice(1).map(Number);
const server = (host, port) => new Promise((resolve) => {
  const s = net.createServer((c) => { c.on('end', () => c.end()); c.on('error', () => {}); c.resume(); });
  s.listen(port, host, () => resolve(s));
});
const connect = (host, port) => new Promise((resolve, reject) => {
  const c = net.connect({ host, port });
  c.once('connect', () => resolve(c));
  c.once('error', reject);
});
const closeAll = (socks) => Promise.all(socks.map((c) => new Promise((r) => { c.once('close', r); c.resume(); c.end(); })));
const attempt = async (host, port) => {
  try { await closeAll([await connect(host, port)]); return 'connected'; } catch (e) { return e.code; }
};
(async () => {
  const s4 = await server('127.0.0.1', 7100);
  const s6 = await server('::1', 7101);
  const held = [];
  for (let i = 0; i < v4; i++) held.push(await connect('127.0.0.1', 7100));
  const ports = held.map((c) => c.localPort);
  const whileOpen = await attempt('127.0.0.1', 7100);
  await closeAll(held);
  const afterClose = await attempt('127.0.0.1', 7100);
  const held6 = [];
  for (let i = 0; i < v6; i++) held6.push(await connect('::1', 7101));
  const ports6 = held6.map((c) => c.localPort);
  await closeAll(held6);
  s4.close();
  s6.close();
  console.log(JSON.stringify({ ports, ports6, whileOpen, afterClose }));
})().catch((e) => { console.error(e); process.exit(1); });
`;

describeKernel('TIME_WAIT sockets and the local port range on the real kernel', () => {
  let ns: Netns;
  let exporter: RunningExporter | undefined;

  beforeAll(async () => {
    await acquireKernelLock();
    ns = await Netns.create('ports');
    await ns.exec('sysctl', ['-q', '-w', `net.ipv4.ip_local_port_range=${RANGE.low} ${RANGE.high}`, 'net.ipv4.tcp_tw_reuse=0']);
  });

  afterAll(async () => {
    await exporter?.stop();
    await ns?.destroy();
    releaseKernelLock();
  });

  it('counts the TIME_WAIT sockets of a client that used up the port range toward one ip:port', async () => {
    const result = JSON.parse(await ns.exec(process.execPath, ['-e', WORKLOAD, '10', '3'], { timeoutMs: 30_000 })) as {
      ports: number[];
      ports6: number[];
      whileOpen: string;
      afterClose: string;
    };
    // Ten connections took every port of the range; the eleventh had none, open or in TIME_WAIT.
    expect([...result.ports].sort()).toEqual(Array.from({ length: 10 }, (_, i) => RANGE.low + i));
    expect(result.whileOpen).toBe('EADDRNOTAVAIL');
    expect(result.afterClose).toBe('EADDRNOTAVAIL');
    expect(result.ports6.every((p) => p >= RANGE.low && p <= RANGE.high)).toBe(true);

    // The oracle: ss lists each TIME_WAIT socket (IPv4 and IPv6) of this namespace.
    const ss = (await ns.exec('ss', ['-H', '-tan', 'state', 'time-wait'])).split('\n').filter((l) => l.trim() !== '');
    expect(ss).toHaveLength(13);

    exporter = await startExporterInNetns(ns, [], PORT);
    const metrics = await exporter.scrape();
    expect(metrics.get('conntrack_scrape_collector_success{collector="ports"}')).toBe(1);
    expect(metrics.get('conntrack_sockets_time_wait')).toBe(13);
    expect(metrics.get('conntrack_local_port_range_size')).toBe(10);
    expect(metrics.get('conntrack_tcp_tw_reuse')).toBe(0);
    expect(metrics.get('conntrack_tcp_max_tw_buckets')).toBe(Number((await ns.exec('cat', ['/proc/sys/net/ipv4/tcp_max_tw_buckets'])).trim()));
  });

  it('sockstat6 has no TIME_WAIT column: the 3 IPv6 ones are in sockstat\'s tw', async () => {
    const s6 = parseSockstat(await ns.exec('cat', ['/proc/net/sockstat6']));
    expect([...(s6.get('TCP6')?.keys() ?? [])]).toEqual(['inuse']);
    const s4 = parseSockstat(await ns.exec('cat', ['/proc/net/sockstat']));
    // 13 from the workload, plus at most the previous scrape's own connection.
    expect(s4.get('TCP')?.get('tw')).toBeGreaterThanOrEqual(13);
    expect(s4.get('TCP')?.get('tw')).toBeLessThanOrEqual(14);
  });
});
