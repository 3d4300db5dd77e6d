import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsRoot } from '../../src/procfs/fs.js';
import { NamespaceRanges } from '../../src/table/namespace-ranges.js';
import type { CommandRunner } from '../../src/util/command.js';

const POD = join(import.meta.dirname, '..', 'fixtures', 'netns-addresses', '6.18-pod');

/**
 * A procfs tree: `self` in namespace 1 (the exporter's, address 10.0.0.1), pid 100 in namespace 2
 * (the fixture pod: 10.244.1.17, 10.244.1.18, fd00:10:244:1::11, and loopback), pid 200 in namespace 3
 * (another pod, also holding 10.244.1.18).
 */
function tree(root: string): void {
  const proc = (dir: string, inode: number, trie: string | undefined, inet6?: string): void => {
    mkdirSync(join(root, dir, 'ns'), { recursive: true });
    mkdirSync(join(root, dir, 'net'), { recursive: true });
    symlinkSync(`net:[${inode}]`, join(root, dir, 'ns', 'net'));
    writeFileSync(join(root, dir, 'cgroup'), '0::/\n');
    if (trie) copyFileSync(trie, join(root, dir, 'net', 'fib_trie'));
    if (inet6) copyFileSync(inet6, join(root, dir, 'net', 'if_inet6'));
  };
  const own = join(root, 'own-trie');
  writeFileSync(
    own,
    'Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.0.0.0\n        /24 link UNICAST\n     |-- 10.0.0.1\n        /32 host LOCAL\nLocal:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.0.0.1\n        /32 host LOCAL\n',
  );
  const other = join(root, 'other-trie');
  writeFileSync(other, 'Local:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.244.1.18\n        /32 host LOCAL\n     |-- 10.244.2.5\n        /32 host LOCAL\n');
  proc('self', 1, own);
  proc('50', 1, own);
  proc('100', 2, join(POD, 'fib_trie'), join(POD, 'if_inet6'));
  proc('200', 3, other);
}

describe('port ranges of the namespaces holding source addresses', () => {
  let root: string;
  let calls: string[][];
  let ranges: Record<string, string>;
  const run: CommandRunner = async (file, args) => {
    calls.push([file, ...args]);
    const pid = /\/(\d+)\/ns\/net$/.exec(args[0] ?? '')?.[1] ?? '';
    const out = ranges[pid];
    return out ? { stdout: out, stderr: '', code: 0, signal: null } : { stdout: '', stderr: 'nsenter: Operation not permitted', code: 1, signal: null };
  };

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'table-nsranges-'));
    tree(root);
    calls = [];
    ranges = { '100': '42000\t42009\n2\n', '200': '30000\t30999\n0\n' };
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it("answers with the owning pod's range, and nothing for own, shared or unknown addresses", async () => {
    let now = 0;
    const lookup = new NamespaceRanges({ procfs: new FsRoot(root), run, nsenter: 'nsenter', refreshMs: 60_000, now: () => now });
    const wanted = ['10.244.1.17', 'fd00:10:244:1::11', '10.244.1.18', '10.0.0.1', '192.0.2.1', '10.244.2.5'];
    const r = await lookup.lookup(wanted);
    expect(r.problem).toBeUndefined();
    expect(wanted.map((a) => r.sizeOf(a))).toEqual([10, 10, undefined, undefined, undefined, 1000]);
    // nsenter ran once per owning namespace, in it.
    expect(calls.map((c) => c[1]).sort()).toEqual([`--net=${join(root, '100', 'ns', 'net')}`, `--net=${join(root, '200', 'ns', 'net')}`]);
    // Within the refresh interval nothing is read again; after it, it is.
    await lookup.lookup(wanted);
    expect(calls).toHaveLength(2);
    now = 61_000;
    await lookup.lookup(wanted);
    expect(calls).toHaveLength(4);
  });

  it('says why where nsenter cannot read the range, and reads nothing when nothing is wanted', async () => {
    delete ranges['100'];
    const lookup = new NamespaceRanges({ procfs: new FsRoot(root), run, nsenter: 'nsenter', refreshMs: 60_000 });
    const r = await lookup.lookup(['10.244.1.17']);
    expect(r.sizeOf('10.244.1.17')).toBeUndefined();
    expect(r.problem).toMatch(/Operation not permitted/);
    calls = [];
    expect((await lookup.lookup([])).sizeOf('10.244.1.17')).toBeUndefined();
    expect(calls).toEqual([]);
  });
});
