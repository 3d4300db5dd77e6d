import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
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
  type NetnsReading,
  type NetnsScanIo,
} from '../../src/procfs/netns.js';
import { buildTestApp, samples } from '../helpers/app.js';
import { REPO_ROOT } from '../helpers/kernel.js';

const cgroupFixture = (name: string): string => readFileSync(join(REPO_ROOT, 'test', 'fixtures', 'cgroup', name), 'utf8');

const HEADER =
  'entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart';

/** A 6.18 stat file for 2 CPUs whose namespace holds `entries`. */
function statFile(entries: number): string {
  const e = entries.toString(16).padStart(8, '0');
  const row = `${e}  ${Array(12).fill('00000000').join(' ')}  ${Array(4).fill('00000000').join(' ')}`;
  return `${HEADER}\n${row}\n${row}\n`;
}

const POD_A = { uid: 'd4c3b2a1-0f9e-4d8c-b7a6-958473625140', id: '5f6e7d8c9b0a1f2e3d4c5b6a79887766554433221100ffeeddccbbaa99887766' };
const POD_B = { uid: '8a7b6c5d-4e3f-4a1b-9c8d-7e6f5a4b3c2d', id: 'e1d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a49382716051f2e3d4c5b6a79' };

interface FakePid {
  inode?: number;
  cgroup?: string;
  entries?: number;
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
      writeFileSync(join(dir, 'net', 'stat', 'nf_conntrack'), statFile(p.entries));
    }
  }
}

/** A node: host (32 entries, two processes), pod A (pause exits mid-scan; 500 entries), an empty pod, pod B (3), a vanished pid and a denied one. */
const NODE: Record<number, FakePid> = {
  1: { inode: 4026531840, cgroup: cgroupFixture('v2-host-6.18'), entries: 32 },
  2: { inode: 4026531840, cgroup: cgroupFixture('v2-host-6.18'), entries: 32 },
  100: { inode: 4026532200, cgroup: cgroupFixture('v2-systemd-containerd-6.1'), entries: 500 },
  101: { inode: 4026532200, cgroup: cgroupFixture('v2-systemd-containerd-6.1'), entries: 500 },
  200: { inode: 4026532300, cgroup: cgroupFixture('v2-systemd-containerd-cgroupns-6.8'), entries: 0 },
  300: {},
  400: { inode: 4026532999, cgroup: cgroupFixture('v2-host-6.18'), entries: 9 },
  500: { inode: 4026532400, cgroup: cgroupFixture('v2-systemd-crio-6.6'), entries: 3 },
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
    expect(scan.namespaces).toEqual([
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
      ['/1', '/100', '/200', '/400', '/500'].flatMap((p) => [`${p}/cgroup`, `${p}/net/stat/nf_conntrack`]).sort(),
    );
  });

  it('keeps namespaces without a stat file (CONFIG_NF_CONNTRACK_PROCFS=n) with entries undefined', async () => {
    rmSync(join(root, '500', 'net'), { recursive: true });
    const scan = await scanNetworkNamespaces(new FsRoot(root));
    expect(scan.namespaces.find((n) => n.inode === 4026532400)).toEqual({
      inode: 4026532400,
      processes: 1,
      entries: undefined,
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
  const ns = (inode: number, entries: number | undefined): NetnsReading => ({ inode, processes: 1, entries, identity: {} });
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
      ['conntrack_netns_scan_skipped_pids{reason="vanished"}', 1],
      ['conntrack_netns_scan_skipped_pids{reason="denied"}', 0],
    ]);
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
