/**
 * Per-namespace port pressure on the real kernel: a namespace whose
 * ip_local_port_range is narrowed and tcp_tw_reuse changed, with TIME_WAIT
 * sockets in it. Oracles: `ss -tan state time-wait` and `sysctl -n` inside the
 * namespace. The exporter runs in-process on the host's /proc (hostPID).
 */
import { readFileSync, readlinkSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { netnsCollector } from '../../src/collectors/netns.js';
import { FsRoot } from '../../src/procfs/fs.js';
import { readLocalAddresses } from '../../src/procfs/local-addresses.js';
import { runCommand, type CommandRunner } from '../../src/util/command.js';
import { buildTestApp, samples } from '../helpers/app.js';
import { Netns, describeKernel } from '../helpers/kernel.js';

/** `count` loopback TCP connections closed by the client first, so each client socket stays in TIME_WAIT (60 s). */
const TIME_WAIT_SCRIPT = `
const net = require('node:net');
const count = Number(process.argv[1]);
const server = net.createServer((s) => { s.on('end', () => s.end()); s.resume(); });
server.listen(7400, '127.0.0.1', async () => {
  for (let i = 0; i < count; i++) {
    await new Promise((resolve, reject) => {
      const c = net.connect(7400, '127.0.0.1', () => c.end());
      c.on('error', reject);
      c.on('close', resolve);
      c.resume();
    });
  }
  server.close();
});
`;

async function ssTimeWait(ns: Netns): Promise<number> {
  const out = await ns.exec('ss', ['-tan', 'state', 'time-wait']);
  return out.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('Recv-Q')).length;
}

describeKernel('per-namespace port pressure on the real kernel', () => {
  let ns: Netns;
  let pid: number;
  let app: FastifyInstance | undefined;

  beforeAll(async () => {
    ns = await Netns.create('netns-ports');
    await ns.exec('sysctl', ['-w', 'net.ipv4.ip_local_port_range=40000 40019']);
    await ns.exec('sysctl', ['-w', 'net.ipv4.tcp_tw_reuse=0']);
    await ns.exec('ip', ['addr', 'add', '10.77.0.2/32', 'dev', 'lo']);
    await ns.exec('ip', ['-6', 'addr', 'add', 'fd77::2/128', 'dev', 'lo', 'nodad']);
    pid = (await ns.processIn()).pid as number;
  });

  /** Leaves 6 more TIME_WAIT sockets in the namespace (each lives 60 s, so a test makes its own). */
  const makeTimeWait = (): Promise<string> => ns.exec(process.execPath, ['-e', TIME_WAIT_SCRIPT, '6'], { timeoutMs: 20_000 });

  /**
   * Scrapes between two `ss` counts (older sockets may expire meanwhile, so the value lies between
   * them), again while `ready` is false: a scrape waits at most 1 s for nsenter, slower reads land
   * in a later one.
   */
  async function scrapeWithTimeWait(ready: (s: Map<string, number>) => boolean): Promise<{ s: Map<string, number>; before: number; after: number }> {
    for (let i = 0; ; i++) {
      const before = await ssTimeWait(ns);
      const s = samples((await app!.inject({ url: '/metrics' })).body);
      const after = await ssTimeWait(ns);
      if (ready(s) || i === 10) return { s, before, after };
    }
  }

  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  afterAll(async () => {
    await ns?.destroy();
  });

  const build = (args: string[], run: CommandRunner = runCommand): Promise<FastifyInstance> =>
    buildTestApp({ args: ['--collector.netns', '--path.procfs=/proc', ...args], run, collectors: [netnsCollector] });

  it('exports the namespace\'s own TIME_WAIT count, port range and tcp_tw_reuse, as ss and sysctl show them inside it', async () => {
    app = await build(['--collector.netns.sysctls']);
    await makeTimeWait();
    const inode = ns.inode();
    const { s, before, after } = await scrapeWithTimeWait((m) => m.has(`conntrack_netns_local_port_range_size{netns="${inode}"}`));
    expect(s.get('conntrack_scrape_collector_success{collector="netns"}')).toBe(1);
    expect(before).toBeGreaterThanOrEqual(6);
    // No conntrack entries in it: it gets its series because it has TIME_WAIT sockets.
    const tw = s.get(`conntrack_netns_sockets_time_wait{netns="${inode}"}`) as number;
    expect(tw).toBeLessThanOrEqual(before);
    expect(tw).toBeGreaterThanOrEqual(after);
    expect(tw).toBeGreaterThanOrEqual(6);
    const [low, high] = (await ns.exec('sysctl', ['-n', 'net.ipv4.ip_local_port_range'])).trim().split(/\s+/).map(Number);
    expect(s.get(`conntrack_netns_local_port_range_size{netns="${inode}"}`)).toBe((high as number) - (low as number) + 1);
    expect(s.get(`conntrack_netns_local_port_range_size{netns="${inode}"}`)).toBe(20);
    expect(s.get(`conntrack_netns_tcp_tw_reuse{netns="${inode}"}`)).toBe(Number((await ns.exec('sysctl', ['-n', 'net.ipv4.tcp_tw_reuse'])).trim()));
    expect(s.get(`conntrack_netns_tcp_tw_reuse{netns="${inode}"}`)).toBe(0);
  });

  it('reads every namespace with --collector.netns.min-entries=0, each with its own values (cost logged)', async () => {
    app = await build(['--collector.netns.sysctls', '--collector.netns.min-entries=0']);
    const t0 = performance.now();
    let s = samples((await app.inject({ url: '/metrics' })).body);
    const first = performance.now() - t0;
    const rangeSeries = (m: Map<string, number>): number => [...m.keys()].filter((k) => k.startsWith('conntrack_netns_local_port_range_size')).length;
    // A refresh reads at most 16 namespaces (other tests' namespaces count too): scrape until all were read.
    for (let i = 0; i < 20 && rangeSeries(s) !== s.get('conntrack_netns_namespaces'); i++) {
      s = samples((await app.inject({ url: '/metrics' })).body);
    }
    const t1 = performance.now();
    await app.inject({ url: '/metrics' });
    const cached = performance.now() - t1;
    const read = rangeSeries(s);
    console.info(`netns sysctls: ${read} namespaces read through nsenter, first scrape ${first.toFixed(0)} ms, next (cached) ${cached.toFixed(0)} ms`);
    expect(read).toBe(s.get('conntrack_netns_namespaces'));
    const host = /\d+/.exec(readlinkSync('/proc/self/ns/net'))?.[0] as string;
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    expect(s.get(`conntrack_netns_local_port_range_size{netns="${host}"}`)).toBe((high as number) - (low as number) + 1);
    expect(s.get(`conntrack_netns_local_port_range_size{netns="${ns.inode()}"}`)).toBe(20);
  });

  it('maps the namespace to its local addresses through /proc/<pid>/net/fib_trie and if_inet6, as ip addr lists them', async () => {
    const got = await readLocalAddresses(new FsRoot('/proc'), pid);
    const oracle = (await ns.exec('ip', ['-o', 'addr', 'show'])).split('\n').flatMap((l) => {
      const m = /\binet6? (\S+)\//.exec(l);
      return m ? [m[1] as string] : [];
    });
    expect([...got.ipv4, ...got.ipv6].sort()).toEqual([...new Set(oracle)].sort());
    expect(got.ipv4).toEqual(['10.77.0.2', '127.0.0.1']);
    expect(got.ipv6).toContain('fd77::2');
    expect(got.skipped).toBe(0);
  });

  it('without CAP_SYS_ADMIN the sysctls are missing and the collector says so; the other series stay', async () => {
    // nsenter with CAP_SYS_ADMIN removed from its capability sets: setns(2) fails with EPERM.
    const noSysAdmin: CommandRunner = (file, args, opts) =>
      runCommand('setpriv', ['--inh-caps=-sys_admin', '--bounding-set=-sys_admin', file, ...args], opts);
    app = await build(['--collector.netns.sysctls'], noSysAdmin);
    await makeTimeWait();
    const { s, before, after } = await scrapeWithTimeWait((m) => m.get('conntrack_scrape_collector_success{collector="netns"}') === 0);
    expect(s.get('conntrack_scrape_collector_success{collector="netns"}')).toBe(0);
    expect([...s.keys()].filter((k) => k.startsWith('conntrack_netns_local_port_range_size'))).toEqual([]);
    const tw = s.get(`conntrack_netns_sockets_time_wait{netns="${ns.inode()}"}`) as number;
    expect(tw).toBeLessThanOrEqual(before);
    expect(tw).toBeGreaterThanOrEqual(Math.max(after, 6));
  });
}, ['ip', 'ss', 'sysctl', 'nsenter', 'setpriv']);
