import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { netnsCollector } from '../../src/collectors/netns.js';
import { FsRoot } from '../../src/procfs/fs.js';
import {
  classifyPidError,
  parseNetnsLink,
  realNetnsIo,
  scanNetworkNamespaces,
  selectNamespaces,
  selectStatNamespaces,
  type NetnsReading,
  type NetnsStatCandidate,
  type NetnsScanIo,
} from '../../src/procfs/netns.js';
import type { CommandRunner } from '../../src/util/command.js';
import { buildTestApp, samples } from '../helpers/app.js';
import { REPO_ROOT } from '../helpers/kernel.js';
import { expectPromtoolAccepts } from '../deploy/promtool.js';

const cgroupFixture = (name: string): string => readFileSync(join(REPO_ROOT, 'test', 'fixtures', 'cgroup', name), 'utf8');

const HEADER =
  'entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart';

/** Per-CPU values of stat columns (by the file's own names, e.g. clashres), two CPUs. */
type StatValues = Partial<Record<string, [number, number]>>;

/** A 6.18 stat file for 2 CPUs whose namespace holds `entries`, the given columns set and the others 0. */
function statFile(entries: number, values: StatValues = {}): string {
  const names = HEADER.trim().split(/\s+/);
  const row = (cpu: 0 | 1): string =>
    names.map((name) => (name === 'entries' ? entries : (values[name]?.[cpu] ?? 0)).toString(16).padStart(8, '0')).join(' ');
  return `${HEADER}\n${row(0)}\n${row(1)}\n`;
}

const POD_A = { uid: 'd4c3b2a1-0f9e-4d8c-b7a6-958473625140', id: '5f6e7d8c9b0a1f2e3d4c5b6a79887766554433221100ffeeddccbbaa99887766' };
const POD_B = { uid: '8a7b6c5d-4e3f-4a1b-9c8d-7e6f5a4b3c2d', id: 'e1d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a49382716051f2e3d4c5b6a79' };

interface FakePid {
  inode?: number;
  cgroup?: string;
  entries?: number;
  stats?: StatValues;
  /** TIME_WAIT sockets in net/sockstat (no sockstat file when undefined). */
  tw?: number;
}

/** Writes a procfs tree: `<pid>/ns/net` as a symlink to net:[inode] (as the kernel shows it), cgroup, net/stat/nf_conntrack. */
function writeTree(root: string, pids: Record<number, FakePid>): void {
  mkdirSync(join(root, 'net'), { recursive: true });
  symlinkSync('1', join(root, 'self'));
  for (const [pid, p] of Object.entries(pids)) {
    const dir = join(root, pid);
    mkdirSync(join(dir, 'ns'), { recursive: true });
    if (p.inode !== undefined) symlinkSync(`net:[${p.inode}]`, join(dir, 'ns', 'net'));
    if (p.cgroup !== undefined) writeFileSync(join(dir, 'cgroup'), p.cgroup);
    if (p.entries !== undefined) {
      mkdirSync(join(dir, 'net', 'stat'), { recursive: true });
      writeFileSync(join(dir, 'net', 'stat', 'nf_conntrack'), statFile(p.entries, p.stats));
    }
    if (p.tw !== undefined) {
      writeFileSync(join(dir, 'net', 'sockstat'), `sockets: used 12\nTCP: inuse 3 orphan 0 tw ${p.tw} alloc 5 mem 1\nUDP: inuse 1 mem 0\n`);
    }
  }
}

/** A node: host (32 entries, two processes), pod A (pause exits mid-scan; 500 entries), an empty pod, pod B (3), a vanished pid and a denied one. */
const NODE: Record<number, FakePid> = {
  1: { inode: 4026531840, cgroup: cgroupFixture('v2-host-6.18'), entries: 32, tw: 4 },
  2: { inode: 4026531840, cgroup: cgroupFixture('v2-host-6.18'), entries: 32, tw: 4 },
  100: { inode: 4026532200, cgroup: cgroupFixture('v2-systemd-containerd-6.1'), entries: 500, tw: 0 },
  101: { inode: 4026532200, cgroup: cgroupFixture('v2-systemd-containerd-6.1'), entries: 500, tw: 0 },
  200: { inode: 4026532300, cgroup: cgroupFixture('v2-systemd-containerd-cgroupns-6.8'), entries: 0 },
  300: {},
  400: { inode: 4026532999, cgroup: cgroupFixture('v2-host-6.18'), entries: 9 },
  500: { inode: 4026532400, cgroup: cgroupFixture('v2-systemd-crio-6.6'), entries: 3, tw: 17, stats: { drop: [7, 0x10], clashres: [1, 0], invalid: [2, 3] } },
};

describe('parseNetnsLink', () => {
  it('reads the inode of net:[N]', () => {
    expect(parseNetnsLink('net:[4026531840]')).toBe(4026531840);
    expect(() => parseNetnsLink('mnt:[4026531840]')).toThrow(/expected net:\[inode\]/);
  });

  it('classifies racing and foreign-pid errors, and nothing else', () => {
    const err = (code: string): Error => Object.assign(new Error(code), { code });
    expect(classifyPidError(err('ENOENT'))).toBe('vanished');
    expect(classifyPidError(err('ESRCH'))).toBe('vanished');
    expect(classifyPidError(new Error('wrapped', { cause: err('EACCES') }))).toBe('denied');
    expect(classifyPidError(err('EIO'))).toBeUndefined();
  });
});

describe('scanNetworkNamespaces over a fake procfs', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'cte-netns-'));
    writeTree(root, NODE);
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  /** Real file access, except that pid 100 exits just before its stat file is read and pid 400 refuses readlink. */
  const racingIo = (): NetnsScanIo => ({
    ...realNetnsIo,
    async readlink(path) {
      if (path === join(root, '400', 'ns', 'net')) throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
      return realNetnsIo.readlink(path);
    },
    async readText(path) {
      if (path === join(root, '100', 'net', 'stat', 'nf_conntrack')) rmSync(join(root, '100'), { recursive: true, force: true });
      return realNetnsIo.readText(path);
    },
  });

  it('dedupes by inode, skips and counts vanished and denied pids, and reads the next pid of a namespace whose first one exited', async () => {
    const scan = await scanNetworkNamespaces(new FsRoot(root), racingIo());
    expect(scan.vanished).toBe(2); // pid 300 (no ns link) and pid 100 (exited mid-scan)
    expect(scan.denied).toBe(1); // pid 400
    expect(scan.namespaces.map(({ cpus: _c, pid: _p, timeWait: _t, ...rest }) => rest)).toEqual([
      { inode: 4026531840, processes: 2, entries: 32, identity: {} },
      { inode: 4026532200, processes: 2, entries: 500, identity: { podUid: POD_A.uid, containerId: POD_A.id } },
      {
        inode: 4026532300,
        processes: 1,
        entries: 0,
        identity: { podUid: '1e2d3c4b-5a69-4788-96a5-b4c3d2e1f0a9', containerId: 'c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00' },
      },
      { inode: 4026532400, processes: 1, entries: 3, identity: { podUid: POD_B.uid, containerId: POD_B.id } },
    ]);
    // Each namespace's own per-CPU statistics, from the same file.
    const podB = scan.namespaces.find((n) => n.inode === 4026532400);
    expect(scan.namespaces.map((n) => [n.pid, n.timeWait])).toEqual([[1, 4], [101, 0], [200, undefined], [500, 17]]);
    expect(podB?.cpus.map((c) => [c.cpu, c.values.get('drop'), c.values.get('clash_resolve')])).toEqual([
      [0, 7, 1],
      [1, 0x10, 0],
    ]);
  });

  it('reads one ns link per pid and the per-namespace files only for the first pid of each namespace', async () => {
    const reads: string[] = [];
    const links: string[] = [];
    const io: NetnsScanIo = {
      ...realNetnsIo,
      async readlink(path) {
        links.push(path);
        return realNetnsIo.readlink(path);
      },
      async readText(path) {
        reads.push(path.slice(root.length));
        return realNetnsIo.readText(path);
      },
    };
    await scanNetworkNamespaces(new FsRoot(root), io);
    expect(links).toHaveLength(8);
    expect(reads.sort()).toEqual(
      ['/1', '/100', '/200', '/400', '/500'].flatMap((p) => [`${p}/cgroup`, `${p}/net/stat/nf_conntrack`, `${p}/net/sockstat`]).sort(),
    );
  });

  it('keeps namespaces without a stat file (CONFIG_NF_CONNTRACK_PROCFS=n) with entries undefined', async () => {
    rmSync(join(root, '500', 'net'), { recursive: true });
    const scan = await scanNetworkNamespaces(new FsRoot(root));
    expect(scan.namespaces.find((n) => n.inode === 4026532400)).toEqual({
      inode: 4026532400,
      processes: 1,
      entries: undefined,
      cpus: [],
      pid: 500,
      timeWait: undefined,
      identity: { podUid: POD_B.uid, containerId: POD_B.id },
    });
    expect(scan.vanished).toBe(1);
  });

  it('fails on errors that are not a race or a permission', async () => {
    const io: NetnsScanIo = {
      ...realNetnsIo,
      async readlink() {
        throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
      },
    };
    await expect(scanNetworkNamespaces(new FsRoot(root), io)).rejects.toThrow(/EIO/);
  });
});

describe('selectNamespaces', () => {
  const ns = (inode: number, entries: number | undefined): NetnsReading => ({ inode, pid: 1, processes: 1, entries, cpus: [], timeWait: undefined, identity: {} });
  const all = [ns(10, 5), ns(11, 0), ns(12, 900), ns(13, undefined), ns(14, 40), ns(15, 40)];

  it('keeps namespaces at or above the minimum, largest first, ties by inode', () => {
    const s = selectNamespaces(all, 1, 500);
    expect(s.shown.map((n) => n.inode)).toEqual([12, 14, 15, 10]);
    expect(s.omittedEntries).toBe(0);
    expect(s.omittedNamespaces).toBe(1);
  });

  it('sums what is cut by the maximum or the minimum into the omitted entries', () => {
    const s = selectNamespaces(all, 10, 2);
    expect(s.shown.map((n) => n.inode)).toEqual([12, 14]);
    expect(s.omittedEntries).toBe(40 + 5 + 0);
    expect(s.omittedNamespaces).toBe(3);
  });

  it('exports empty namespaces with a minimum of 0 and none with a maximum of 0', () => {
    expect(selectNamespaces(all, 0, 500).shown.map((n) => n.inode)).toEqual([12, 14, 15, 10, 11]);
    expect(selectNamespaces(all, 0, 0)).toEqual({ shown: [], omittedEntries: 985, omittedNamespaces: 5 });
  });
});

describe('selectStatNamespaces', () => {
  const c = (inode: number, entries: number, rose: number, total: number): NetnsStatCandidate => ({ inode, entries, rose, total });

  it('keeps rising or non-zero namespaces whatever their size, and the others only from the minimum entries', () => {
    const all = [c(1, 0, 0, 0), c(2, 0, 0, 3), c(3, 0, 2, 2), c(4, 5, 0, 0), c(5, 0, 0, 0)];
    expect(selectStatNamespaces(all, 1, 10).map((n) => n.inode)).toEqual([3, 2, 4]);
    expect(selectStatNamespaces(all, 0, 10).map((n) => n.inode)).toEqual([3, 2, 4, 1, 5]);
  });

  it('ranks by rise, then totals, then entries, then inode under the cap', () => {
    const all = [c(9, 100, 0, 0), c(8, 1, 0, 50), c(7, 1, 1, 1), c(6, 1, 9, 9), c(5, 100, 0, 0)];
    expect(selectStatNamespaces(all, 1, 3).map((n) => n.inode)).toEqual([6, 7, 8]);
    expect(selectStatNamespaces(all, 1, 5).map((n) => n.inode)).toEqual([6, 7, 8, 5, 9]);
    expect(selectStatNamespaces(all, 1, 0)).toEqual([]);
  });
});

describe('netns collector over a fake procfs', () => {
  let root: string;
  let app: FastifyInstance | undefined;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'cte-netns-'));
  });
  afterEach(async () => {
    await app?.close();
    app = undefined;
    rmSync(root, { recursive: true, force: true });
  });

  it('exports entries, omitted entries, info and skipped pids', async () => {
    writeTree(root, NODE);
    app = await buildTestApp({ args: [`--path.procfs=${root}`, '--collector.netns', '--collector.netns.max=2'], collectors: [netnsCollector] });
    const s = samples((await app.inject({ url: '/metrics' })).body);
    expect(s.get('conntrack_scrape_collector_success{collector="netns"}')).toBe(1);
    expect([...s].filter(([k]) => k.startsWith('conntrack_netns_'))).toEqual([
      ['conntrack_netns_entries{netns="4026532200"}', 500],
      ['conntrack_netns_entries{netns="4026531840"}', 32],
      ['conntrack_netns_omitted_entries', 9 + 3 + 0],
      ['conntrack_netns_info{netns="4026531840",pod_uid="",container_id=""}', 1],
      [`conntrack_netns_info{netns="4026532200",pod_uid="${POD_A.uid}",container_id="${POD_A.id}"}`, 1],
      [
        'conntrack_netns_info{netns="4026532300",pod_uid="1e2d3c4b-5a69-4788-96a5-b4c3d2e1f0a9",container_id="c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"}',
        1,
      ],
      ['conntrack_netns_info{netns="4026532999",pod_uid="",container_id=""}', 1],
      ['conntrack_netns_info{netns="4026532400",pod_uid="8a7b6c5d-4e3f-4a1b-9c8d-7e6f5a4b3c2d",container_id="e1d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a49382716051f2e3d4c5b6a79"}', 1],
      ['conntrack_netns_namespaces', 5],
      // Statistics for --collector.netns.max=2 namespaces: pod B, small but dropping, before the larger quiet ones.
      ['conntrack_netns_stat_drop_total{netns="4026532400"}', 7 + 0x10],
      ['conntrack_netns_stat_drop_total{netns="4026532200"}', 0],
      ['conntrack_netns_stat_early_drop_total{netns="4026532400"}', 0],
      ['conntrack_netns_stat_early_drop_total{netns="4026532200"}', 0],
      ['conntrack_netns_stat_insert_failed_total{netns="4026532400"}', 0],
      ['conntrack_netns_stat_insert_failed_total{netns="4026532200"}', 0],
      ['conntrack_netns_stat_clash_resolve_total{netns="4026532400"}', 1],
      ['conntrack_netns_stat_clash_resolve_total{netns="4026532200"}', 0],
      ['conntrack_netns_stat_invalid_total{netns="4026532400"}', 5],
      ['conntrack_netns_stat_invalid_total{netns="4026532200"}', 0],
      // TIME_WAIT for 2 namespaces, most first (pod A has none; 4026532300 has no sockstat file).
      ['conntrack_netns_sockets_time_wait{netns="4026532400"}', 17],
      ['conntrack_netns_sockets_time_wait{netns="4026531840"}', 4],
      ['conntrack_netns_scan_skipped_pids{reason="vanished"}', 1],
      ['conntrack_netns_scan_skipped_pids{reason="denied"}', 0],
    ]);
  });

  it('keeps a namespace\'s entries when its net/sockstat is malformed (only its TIME_WAIT series is missing)', async () => {
    writeTree(root, { 1: { inode: 4026531840, cgroup: '0::/\n', entries: 12, tw: 3 }, 10: { inode: 4026532010, cgroup: '0::/\n', entries: 7, tw: 2 } });
    writeFileSync(join(root, '10', 'net', 'sockstat'), 'garbage\n');
    app = await buildTestApp({ args: [`--path.procfs=${root}`, '--collector.netns'], collectors: [netnsCollector] });
    const s = samples((await app.inject({ url: '/metrics' })).body);
    expect(s.get('conntrack_scrape_collector_success{collector="netns"}')).toBe(1);
    expect(s.get('conntrack_netns_entries{netns="4026532010"}')).toBe(7);
    expect(s.get('conntrack_netns_sockets_time_wait{netns="4026531840"}')).toBe(3);
    expect(s.has('conntrack_netns_sockets_time_wait{netns="4026532010"}')).toBe(false);
  });

  it('feeds the statistics per namespace and CPU across a wrap and a reset, ranks rising namespaces first, and forgets namespaces that are gone', async () => {
    const stat = (pid: number, entries: number, stats: StatValues): void =>
      writeFileSync(join(root, String(pid), 'net', 'stat', 'nf_conntrack'), statFile(entries, stats));
    writeTree(root, {
      1: { inode: 4026531840, cgroup: '0::/\n', entries: 900, stats: { drop: [1, 2] } },
      10: { inode: 4026532010, cgroup: '0::/\n', entries: 0, stats: { early_drop: [0, 0xfffffff0] } },
      20: { inode: 4026532020, cgroup: '0::/\n', entries: 50, stats: {} },
      30: { inode: 4026532030, cgroup: '0::/\n', entries: 0, stats: {} },
    });
    app = await buildTestApp({ args: [`--path.procfs=${root}`, '--collector.netns', '--collector.netns.max=2'], collectors: [netnsCollector] });
    const scrape = async (): Promise<Map<string, number>> => {
      const s = samples((await app?.inject({ url: '/metrics' }))?.body ?? '');
      expect(s.get('conntrack_scrape_collector_success{collector="netns"}')).toBe(1);
      return new Map([...s].filter(([k]) => k.startsWith('conntrack_netns_stat_') && /_(drop|early_drop)_total/.test(k)));
    };
    // First scrape: nothing rose yet; the two with non-zero totals win the cap of 2 (the empty 4026532010 among them).
    expect(await scrape()).toEqual(
      new Map([
        ['conntrack_netns_stat_drop_total{netns="4026532010"}', 0],
        ['conntrack_netns_stat_drop_total{netns="4026531840"}', 3],
        ['conntrack_netns_stat_early_drop_total{netns="4026532010"}', 0xfffffff0],
        ['conntrack_netns_stat_early_drop_total{netns="4026531840"}', 0],
      ]),
    );
    // 4026532010's CPU 1 wraps (+0x20); 4026532030, empty, starts dropping (+4) and outranks the host's totals.
    stat(10, 0, { early_drop: [0, 0x10] });
    stat(30, 0, { drop: [4, 0] });
    expect(await scrape()).toEqual(
      new Map([
        ['conntrack_netns_stat_drop_total{netns="4026532010"}', 0],
        ['conntrack_netns_stat_drop_total{netns="4026532030"}', 4],
        ['conntrack_netns_stat_early_drop_total{netns="4026532010"}', 0xfffffff0 + 0x20],
        ['conntrack_netns_stat_early_drop_total{netns="4026532030"}', 0],
      ]),
    );
    // 4026532010 disappears (its state with it), 4026532030's counters go back to small values (a reset, not +2^32).
    rmSync(join(root, '10'), { recursive: true });
    stat(30, 0, { drop: [1, 0] });
    const third = await scrape();
    expect(third.get('conntrack_netns_stat_drop_total{netns="4026532030"}')).toBe(4 + 1);
    expect([...third.keys()].filter((k) => k.includes('4026532010'))).toEqual([]);
    // A namespace with the same inode comes back: counted from its own values, not continued from the old state.
    writeTree(join(root, 'again'), { 10: { inode: 4026532010, cgroup: '0::/\n', entries: 0, stats: { early_drop: [5, 0] } } });
    rmSync(join(root, 'again', 'self'));
    rmSync(join(root, 'again', 'net'), { recursive: true });
    execFileSync('mv', [join(root, 'again', '10'), join(root, '10')]);
    const fourth = await scrape();
    expect(fourth.get('conntrack_netns_stat_early_drop_total{netns="4026532010"}')).toBe(5);
  });

  /** A fake nsenter: the sysctls of each namespace by the inode its ns link names; `calls` records each run. */
  const fakeNsenter = (values: Record<number, string>, calls: string[] = []): CommandRunner => async (file, args) => {
    calls.push(`${file} ${args.join(' ')}`);
    const nsPath = (args[0] as string).replace(/^--net=/, '');
    const inode = parseNetnsLink(readlinkSync(nsPath));
    const out = values[inode];
    return out === undefined
      ? { stdout: '', stderr: 'nsenter: reassociate to namespace \'ns/net\' failed: Operation not permitted', code: 1, signal: null }
      : { stdout: out, stderr: '', code: 0, signal: null };
  };

  it('exports each namespace\'s port range and tcp_tw_reuse through nsenter with --collector.netns.sysctls, read once per refresh', async () => {
    writeTree(root, NODE);
    const calls: string[] = [];
    const run = fakeNsenter({ 4026531840: '32768\t60999\n0\n', 4026532400: '40000\t40019\n1\n', 4026532200: '1024\t65535\n2\n' }, calls);
    app = await buildTestApp({ args: [`--path.procfs=${root}`, '--collector.netns', '--collector.netns.sysctls', '--collector.netns.max=2'], collectors: [netnsCollector], run });
    const s = samples((await app.inject({ url: '/metrics' })).body);
    expect(s.get('conntrack_scrape_collector_success{collector="netns"}')).toBe(1);
    expect([...s].filter(([k]) => /^conntrack_netns_(local_port|tcp_tw)/.test(k))).toEqual([
      ['conntrack_netns_local_port_range_size{netns="4026532400"}', 20],
      ['conntrack_netns_local_port_range_size{netns="4026531840"}', 28232],
      ['conntrack_netns_tcp_tw_reuse{netns="4026532400"}', 1],
      ['conntrack_netns_tcp_tw_reuse{netns="4026531840"}', 0],
    ]);
    expect(calls.sort()).toEqual([
      `nsenter --net=${join(root, '1', 'ns', 'net')} -- cat /proc/sys/net/ipv4/ip_local_port_range /proc/sys/net/ipv4/tcp_tw_reuse`,
      `nsenter --net=${join(root, '500', 'ns', 'net')} -- cat /proc/sys/net/ipv4/ip_local_port_range /proc/sys/net/ipv4/tcp_tw_reuse`,
    ]);
    // Within the refresh interval (1m) the next scrape runs no process.
    await app.inject({ url: '/metrics' });
    expect(calls).toHaveLength(2);
  });

  it('reports success 0 but keeps the other series when no namespace\'s sysctls can be read (no CAP_SYS_ADMIN)', async () => {
    writeTree(root, NODE);
    app = await buildTestApp({ args: [`--path.procfs=${root}`, '--collector.netns', '--collector.netns.sysctls'], collectors: [netnsCollector], run: fakeNsenter({}) });
    const s = samples((await app.inject({ url: '/metrics' })).body);
    expect(s.get('conntrack_scrape_collector_success{collector="netns"}')).toBe(0);
    expect(s.get('conntrack_netns_entries{netns="4026532200"}')).toBe(500);
    expect(s.get('conntrack_netns_sockets_time_wait{netns="4026532400"}')).toBe(17);
    expect([...s.keys()].filter((k) => k.startsWith('conntrack_netns_local_port_range_size'))).toEqual([]);
  });

  it('passes promtool check metrics', async () => {
    writeTree(root, NODE);
    const run = fakeNsenter({ 4026531840: '32768\t60999\n0\n', 4026532400: '40000\t40019\n1\n', 4026532200: '1024\t65535\n2\n' });
    app = await buildTestApp({ args: [`--path.procfs=${root}`, '--collector.netns', '--collector.netns.sysctls'], collectors: [netnsCollector], run });
    const body = (await app.inject({ url: '/metrics' })).body;
    expect(body).toMatch(/^# TYPE conntrack_netns_stat_drop_total counter$/m);
    expect(body).toMatch(/^conntrack_netns_local_port_range_size\{netns="4026532400"\} 20$/m);
    expect(body).toMatch(/^conntrack_netns_sockets_time_wait\{netns="4026532400"\} 17$/m);
    expectPromtoolAccepts(body);
  });

  it('drops a namespace whose processes all exit between scrapes', async () => {
    writeTree(root, NODE);
    app = await buildTestApp({ args: [`--path.procfs=${root}`, '--collector.netns'], collectors: [netnsCollector] });
    expect(samples((await app.inject({ url: '/metrics' })).body).get('conntrack_netns_entries{netns="4026532400"}')).toBe(3);
    rmSync(join(root, '500'), { recursive: true });
    const s = samples((await app.inject({ url: '/metrics' })).body);
    expect(s.get('conntrack_scrape_collector_success{collector="netns"}')).toBe(1);
    expect([...s.keys()].filter((k) => k.includes('4026532400'))).toEqual([]);
  });

  it('reports success 0 (no data) but keeps the info series where no namespace has a stat file', async () => {
    writeTree(root, { 1: { inode: 4026531840, cgroup: '0::/\n' }, 7: { inode: 4026532200, cgroup: cgroupFixture('v2-systemd-crio-6.6') } });
    app = await buildTestApp({ args: [`--path.procfs=${root}`, '--collector.netns'], collectors: [netnsCollector] });
    const body = (await app.inject({ url: '/metrics' })).body;
    const s = samples(body);
    expect(s.get('conntrack_scrape_collector_success{collector="netns"}')).toBe(0);
    expect(body).not.toMatch(/^conntrack_netns_(entries|omitted_entries)/m);
    expect(s.get(`conntrack_netns_info{netns="4026532200",pod_uid="${POD_B.uid}",container_id="${POD_B.id}"}`)).toBe(1);
  });

  it('reports success 0 on a tree without processes (the fixture trees)', async () => {
    app = await buildTestApp({ args: [`--path.procfs=${join(REPO_ROOT, 'test', 'fixtures', 'proc', '6.18')}`, '--collector.netns'], collectors: [netnsCollector] });
    const body = (await app.inject({ url: '/metrics' })).body;
    expect(samples(body).get('conntrack_scrape_collector_success{collector="netns"}')).toBe(0);
    expect(body).not.toMatch(/^conntrack_netns_(entries|info)/m);
  });
});
