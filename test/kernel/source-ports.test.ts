/**
 * conntrack_table_destination_source_ports on the real kernel (issue 6):
 *
 * - one client fills a narrow ip_local_port_range toward one ip:port: the
 *   metric equals the connections open, and equals the range, which is what
 *   ConntrackSourcePortsNearExhaustion divides by;
 * - clients behind source NAT: their entries count against the translated
 *   address whose ports they share on the wire, as `conntrack -L` shows it in
 *   the reply tuple, not against each client.
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

const PORT = 19763;
const RANGE = { low: 41000, high: 41019 };
const SERVER = { host: '127.0.0.1', port: 7200 };

/** Holds `n` TCP connections to host:port open, tries one more, prints the outcome and waits. */
const FILL_RANGE = `
const net = require('node:net');
const [host, port, n] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const connect = () => new Promise((resolve, reject) => {
  const c = net.connect({ host, port });
  c.once('connect', () => resolve(c));
  c.once('error', reject);
});
(async () => {
  const server = net.createServer((c) => c.resume());
  await new Promise((r) => server.listen(port, host, r));
  const held = [];
  for (let i = 0; i < n; i++) held.push(await connect());
  let extra = 'connected';
  try { await connect(); } catch (e) { extra = e.code; }
  console.log(JSON.stringify({ ports: held.map((c) => c.localPort), extra }));
  setInterval(() => {}, 1 << 30);
})().catch((e) => { console.error(e); process.exit(1); });
`;

/** Listens on host:port and holds every connection. */
const SERVE = `
const net = require('node:net');
const held = [];
const server = net.createServer((c) => { held.push(c); c.resume(); });
server.listen(Number(process.argv[2]), process.argv[1], () => console.log('listening'));
`;

/** Connects until connect() fails (the port range is full), prints the ports held and the error, and holds on. */
const FILL_UNTIL_FULL = `
const net = require('node:net');
const [host, port] = [process.argv[1], Number(process.argv[2])];
const connect = () => new Promise((resolve, reject) => {
  const c = net.connect({ host, port });
  c.once('connect', () => resolve(c));
  c.once('error', reject);
});
(async () => {
  const held = [];
  let error;
  while (held.length < 1000) {
    try { held.push(await connect()); } catch (e) { error = e.code; break; }
  }
  console.log(JSON.stringify({ ports: held.map((c) => c.localPort), error }));
  setInterval(() => {}, 1 << 30);
})();
`;

/** The first line a child prints. */
function firstLine(child: { stdout?: NodeJS.ReadableStream | null; on(e: 'exit', f: (code: number | null) => void): unknown }): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0] as string);
    });
    child.on('exit', (code) => reject(new Error(`child exited ${code}`)));
  });
}

/** UDP datagrams from each client address and source port to dst:53. */
const SEND_UDP = `
const dgram = require('node:dgram');
const [dst, clients, ports] = [process.argv[1], process.argv[2].split(','), process.argv[3].split(',').map(Number)];
(async () => {
  for (const address of clients) {
    for (const port of ports) {
      const s = dgram.createSocket('udp4');
      await new Promise((r) => s.bind(port, address, r));
      await new Promise((r) => s.send(Buffer.from('x'), 53, dst, r));
      s.close();
    }
  }
})().catch((e) => { console.error(e); process.exit(1); });
`;

/** `dst:dport` of the original tuple → reply-tuple destination → entries, from `conntrack -L`. */
function byReplyDestination(listing: string, protocol: string): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>();
  for (const line of listing.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[2] !== protocol) continue;
    const values = (k: string): string[] => f.filter((x) => x.startsWith(`${k}=`)).map((x) => x.slice(k.length + 1));
    const [dst, replyDst] = values('dst');
    const key = `${dst}:${values('dport')[0]}`;
    const inner = out.get(key) ?? new Map<string, number>();
    inner.set(replyDst as string, (inner.get(replyDst as string) ?? 0) + 1);
    out.set(key, inner);
  }
  return out;
}

describeKernel('source ports per destination on the real kernel', () => {
  let ns: Netns;
  let exporter: RunningExporter | undefined;

  beforeAll(async () => {
    await acquireKernelLock();
    ns = await Netns.create('srcports');
    await ns.enableConntrack([PORT]);
    await ns.exec('sysctl', ['-q', '-w', `net.ipv4.ip_local_port_range=${RANGE.low} ${RANGE.high}`]);
  });

  afterAll(async () => {
    await exporter?.stop();
    await ns?.destroy();
    releaseKernelLock();
  });

  it('equals the connections one client holds open toward one ip:port, and the port range when it is full', async () => {
    const size = RANGE.high - RANGE.low + 1;
    const client = ns.spawn(process.execPath, ['-e', FILL_RANGE, SERVER.host, String(SERVER.port), String(size)]);
    const result = await new Promise<{ ports: number[]; extra: string }>((resolve, reject) => {
      let out = '';
      client.stdout?.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('\n')) resolve(JSON.parse(out));
      });
      client.on('exit', (code) => reject(new Error(`client exited ${code}`)));
    });
    expect(new Set(result.ports).size).toBe(size);
    expect(result.extra).toBe('EADDRNOTAVAIL');

    const oracle = byReplyDestination(await ns.exec('conntrack', ['-L', '-p', 'tcp', '-o', 'extended']), 'tcp');
    expect(oracle.get(`${SERVER.host}:${SERVER.port}`)?.get(SERVER.host)).toBe(size);

    exporter = await startExporterInNetns(ns, ['--collector.table.interval=1s'], PORT);
    const m = await exporter.scrape();
    expect(m.get('conntrack_scrape_collector_success{collector="table"}')).toBe(1);
    const labels = `{protocol="tcp",destination="${SERVER.host}",port="${SERVER.port}"}`;
    expect(m.get(`conntrack_table_destination_entries${labels}`)).toBe(size);
    expect(m.get(`conntrack_table_destination_source_ports${labels}`)).toBe(size);
    expect(m.get('conntrack_local_port_range_size')).toBe(size);
    // A local client draws from the namespace's range: the ratio the rule takes is exactly 1.
    expect(m.get(`conntrack_table_destination_source_port_range_size${labels}`)).toBe(size);
    await exporter.stop();
    exporter = undefined;
  });

  it('counts clients behind source NAT against the translated address, as the reply tuple shows', async () => {
    // Three client addresses on lo, a veth link toward 10.2.0.0/24 (its peer left without an
    // address, so nothing answers) and SNAT to 10.2.0.254 on it: locally sent datagrams are
    // translated and their entries confirmed in postrouting, before neighbour resolution drops them.
    const clients = ['192.168.1.10', '192.168.1.11', '192.168.1.12'];
    for (const a of clients) await ns.exec('ip', ['addr', 'add', `${a}/32`, 'dev', 'lo']);
    await ns.exec('ip', ['link', 'add', 'cte0', 'type', 'veth', 'peer', 'name', 'cte1']);
    await ns.exec('ip', ['link', 'set', 'cte1', 'up']);
    await ns.exec('ip', ['addr', 'add', '10.2.0.254/24', 'dev', 'cte0']);
    await ns.exec('ip', ['link', 'set', 'cte0', 'up']);
    await ns.exec('nft', ['-f', '-'], {
      input: 'table ip cte_nat {\n  chain post {\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname "cte0" snat to 10.2.0.254\n  }\n}\n',
    });
    const ports = [5000, 5001, 5002, 5003, 5004];
    await ns.exec(process.execPath, ['-e', SEND_UDP, '10.2.0.1', clients.join(','), ports.join(',')]);

    // The oracle: every entry toward 10.2.0.1:53 replies to the NAT address.
    const oracle = byReplyDestination(await ns.exec('conntrack', ['-L', '-p', 'udp', '-o', 'extended']), 'udp');
    const replies = oracle.get('10.2.0.1:53');
    expect(replies).toEqual(new Map([['10.2.0.254', clients.length * ports.length]]));

    exporter = await startExporterInNetns(ns, ['--collector.table.interval=1s'], PORT);
    const m = await exporter.scrape();
    const labels = '{protocol="udp",destination="10.2.0.1",port="53"}';
    expect(m.get(`conntrack_table_destination_entries${labels}`)).toBe(clients.length * ports.length);
    // 15 ports of 10.2.0.254, not the 5 each client holds of its own address.
    expect(m.get(`conntrack_table_destination_source_ports${labels}`)).toBe(clients.length * ports.length);
    // Drawn from the SNAT range (the rule names no ports: 1024-65535), not the 20-port local range.
    expect(m.get(`conntrack_table_destination_source_port_range_size${labels}`)).toBe(64512);
    await exporter.stop();
    exporter = await startExporterInNetns(ns, ['--collector.table.interval=1s', '--collector.table.snat-port-range=30000-30999'], PORT);
    expect((await exporter.scrape()).get(`conntrack_table_destination_source_port_range_size${labels}`)).toBe(1000);
    await exporter.stop();
    exporter = undefined;
  });

  it('leaves out TIME_WAIT entries older than the socket TIME_WAIT, as their timeout in conntrack -L shows', async () => {
    // conntrack -I sets the timeout column: 100 s and 61 s left are younger than 60 s in TIME_WAIT
    // (of 120 s), 60 s and 20 s left are older; established entries always hold their port.
    const timeouts = [100, 100, 61, 60, 20, 20, 20];
    const inserts = [
      ...timeouts.map((t, i) => ['--sport', String(45000 + i), '--state', 'TIME_WAIT', '-t', String(t)]),
      ...[0, 1, 2].map((i) => ['--sport', String(46000 + i), '--state', 'ESTABLISHED', '-t', '600']),
    ];
    for (const args of inserts) {
      await ns.exec('conntrack', ['-I', '-p', 'tcp', '-s', '10.5.0.1', '-d', '10.6.0.1', '--dport', '8443', '-u', 'ASSURED,SEEN_REPLY', ...args]);
    }
    expect((await ns.exec('sh', ['-c', 'cat /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait'])).trim()).toBe('120');
    exporter = await startExporterInNetns(ns, ['--collector.table.interval=1s'], PORT);
    const m = await exporter.scrape();
    // The oracle: conntrack -L's timeout column (5th field) of the TIME_WAIT entries.
    const listing = (await ns.exec('conntrack', ['-L', '-p', 'tcp', '-d', '10.6.0.1', '-o', 'extended'])).trim().split('\n');
    const holding = listing.filter((l) => {
      const f = l.trim().split(/\s+/);
      return f[5] !== 'TIME_WAIT' || Number(f[4]) > 120 - 60;
    });
    expect(listing).toHaveLength(10);
    // Seconds passed between inserting and scanning can only move entries toward "older".
    expect(holding.length).toBeLessThanOrEqual(6);
    expect(holding.length).toBeGreaterThanOrEqual(5);
    const labels = '{protocol="tcp",destination="10.6.0.1",port="8443"}';
    expect(m.get(`conntrack_table_destination_entries${labels}`)).toBe(10);
    expect(m.get(`conntrack_table_destination_state_entries{protocol="tcp",destination="10.6.0.1",port="8443",state="TIME_WAIT"}`)).toBe(7);
    const counted = m.get(`conntrack_table_destination_source_ports${labels}`) as number;
    expect(counted).toBeLessThanOrEqual(6);
    expect(counted).toBeGreaterThanOrEqual(holding.length);
    await exporter.stop();
    exporter = undefined;
  });

  it("gives a pod behind a veth its own namespace's range: the ratio is 1 when the pod's 10 ports are taken", async () => {
    // The pod: its own namespace, a veth to this one, and a 10-port range (this namespace has 20).
    const pod = await Netns.create('table-pod');
    const server = { host: '10.213.47.1', port: 7300 };
    try {
      await ns.exec('ip', ['link', 'add', 'ctp0', 'type', 'veth', 'peer', 'name', 'ctp1', 'netns', pod.name]);
      await ns.exec('ip', ['addr', 'add', `${server.host}/30`, 'dev', 'ctp0']);
      await ns.exec('ip', ['link', 'set', 'ctp0', 'up']);
      await pod.exec('ip', ['addr', 'add', '10.213.47.2/30', 'dev', 'ctp1']);
      await pod.exec('ip', ['link', 'set', 'ctp1', 'up']);
      await pod.exec('sh', ['-c', 'echo "42000 42009" > /proc/sys/net/ipv4/ip_local_port_range']);
      expect(await firstLine(ns.spawn(process.execPath, ['-e', SERVE, server.host, String(server.port)]))).toBe('listening');
      const filled = JSON.parse(await firstLine(pod.spawn(process.execPath, ['-e', FILL_UNTIL_FULL, server.host, String(server.port)]))) as {
        ports: number[];
        error: string;
      };
      expect(filled.error).toBe('EADDRNOTAVAIL');
      expect(filled.ports).toHaveLength(10);

      // The oracle: this namespace's table holds the pod's 10 connections, replying to the pod's own address.
      const oracle = byReplyDestination(await ns.exec('conntrack', ['-L', '-p', 'tcp', '-o', 'extended']), 'tcp');
      expect(oracle.get(`${server.host}:${server.port}`)).toEqual(new Map([['10.213.47.2', 10]]));
      const podRange = (await pod.exec('cat', ['/proc/sys/net/ipv4/ip_local_port_range'])).trim().split(/\s+/).map(Number);
      expect(podRange[1]! - podRange[0]! + 1).toBe(10);

      const labels = `{protocol="tcp",destination="${server.host}",port="${server.port}"}`;
      exporter = await startExporterInNetns(ns, ['--collector.table.interval=1s', '--collector.table.namespace-ranges'], PORT);
      let m = await exporter.scrape();
      expect(m.get(`conntrack_table_destination_source_ports${labels}`)).toBe(10);
      expect(m.get(`conntrack_table_destination_source_port_range_size${labels}`), exporter.logs()).toBe(10);
      await exporter.stop();
      // Without the lookup, the exporter namespace's 20 ports: the pod looks half full.
      exporter = await startExporterInNetns(ns, ['--collector.table.interval=1s'], PORT);
      m = await exporter.scrape();
      expect(m.get(`conntrack_table_destination_source_port_range_size${labels}`)).toBe(20);
      await exporter.stop();
      exporter = undefined;
    } finally {
      await pod.destroy();
    }
  });
});
