import { describe, expect, it } from 'vitest';
import { NetnsSysctlReader, nsenterArgs, parseSysctlOutput } from '../../src/procfs/netns-sysctl.js';
import type { CommandRunner } from '../../src/util/command.js';

describe('parseSysctlOutput', () => {
  it('reads the range and tcp_tw_reuse as cat prints them', () => {
    expect(parseSysctlOutput('40000\t40019\n2\n')).toEqual({ portRange: { low: 40000, high: 40019 }, twReuse: 2 });
    expect(parseSysctlOutput('32768 60999\n0')).toEqual({ portRange: { low: 32768, high: 60999 }, twReuse: 0 });
  });

  it('rejects partial or foreign output', () => {
    expect(() => parseSysctlOutput('40000\t40019\n')).toThrow(/expected 2 lines/);
    expect(() => parseSysctlOutput('40019\t40000\n1\n')).toThrow(/invalid range/);
    expect(() => parseSysctlOutput('40000\t40019\non\n')).toThrow(/tcp_tw_reuse is not a number/);
  });

  it('runs cat on both sysctls in the namespace, without a shell', () => {
    expect(nsenterArgs('/host/proc/42/ns/net')).toEqual([
      '--net=/host/proc/42/ns/net', '--', 'cat', '/proc/sys/net/ipv4/ip_local_port_range', '/proc/sys/net/ipv4/tcp_tw_reuse',
    ]);
  });
});

describe('NetnsSysctlReader', () => {
  const setup = (outputs: Record<string, string | undefined>, inodes: Record<string, number>) => {
    let clock = 0;
    const calls: string[] = [];
    const run: CommandRunner = async (_file, args) => {
      const nsPath = (args[0] as string).slice('--net='.length);
      calls.push(nsPath);
      const out = outputs[nsPath];
      return out === undefined ? { stdout: '', stderr: 'Operation not permitted', code: 1, signal: null } : { stdout: out, stderr: '', code: 0, signal: null };
    };
    const reader = new NetnsSysctlReader(run, { nsenter: 'nsenter', refreshMs: 60_000, inodeOf: async (p) => inodes[p], now: () => clock });
    return { reader, calls, advance: (ms: number) => (clock += ms) };
  };
  const t = (inode: number, pid: number) => ({ inode, pid, nsPath: `/p/${pid}/ns/net` });

  it('reads each namespace once per refresh interval and forgets namespaces that are gone', async () => {
    const { reader, calls, advance } = setup({ '/p/1/ns/net': '1\t2\n0\n', '/p/2/ns/net': '40000\t40019\n1\n' }, { '/p/1/ns/net': 10, '/p/2/ns/net': 20 });
    await reader.refresh([t(10, 1), t(20, 2)]);
    expect(reader.get(20)).toEqual({ portRange: { low: 40000, high: 40019 }, twReuse: 1 });
    await reader.refresh([t(10, 1), t(20, 2)]);
    expect(calls).toHaveLength(2);
    advance(60_000);
    await reader.refresh([t(20, 2)]);
    expect(calls).toHaveLength(3);
    expect(reader.size).toBe(1);
    expect(reader.get(10)).toBeUndefined();
  });

  it('waits at most deadlineMs for a slow nsenter; the read lands in the cache later, and no second refresh overlaps it', async () => {
    let release: () => void = () => undefined;
    let calls = 0;
    const run: CommandRunner = async () => {
      calls++;
      await new Promise<void>((r) => (release = r));
      return { stdout: '40000\t40019\n1\n', stderr: '', code: 0, signal: null };
    };
    const reader = new NetnsSysctlReader(run, { nsenter: 'nsenter', refreshMs: 60_000, deadlineMs: 50, inodeOf: async () => 10 });
    const t0 = performance.now();
    await reader.refresh([t(10, 1)]);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(reader.get(10)).toBeUndefined();
    await reader.refresh([t(10, 1)]);
    expect(calls).toBe(1);
    release();
    await new Promise((r) => setTimeout(r, 10));
    expect(reader.get(10)).toEqual({ portRange: { low: 40000, high: 40019 }, twReuse: 1 });
  });

  it('reads at most perRefresh namespaces per call, never-read ones first', async () => {
    const outputs: Record<string, string> = {};
    const inodes: Record<string, number> = {};
    for (let pid = 1; pid <= 5; pid++) {
      outputs[`/p/${pid}/ns/net`] = '1\t2\n0\n';
      inodes[`/p/${pid}/ns/net`] = pid * 10;
    }
    const calls: string[] = [];
    const run: CommandRunner = async (_f, args) => {
      calls.push(args[0] as string);
      return { stdout: outputs[(args[0] as string).slice(6)] ?? '', stderr: '', code: 0, signal: null };
    };
    let clock = 0;
    const reader = new NetnsSysctlReader(run, { nsenter: 'nsenter', refreshMs: 100, perRefresh: 2, inodeOf: async (p) => inodes[p], now: () => clock });
    const targets = [1, 2, 3, 4, 5].map((pid) => t(pid * 10, pid));
    await reader.refresh(targets);
    expect(calls).toEqual(['--net=/p/1/ns/net', '--net=/p/2/ns/net']);
    clock = 150;
    await reader.refresh(targets);
    expect(calls.slice(2)).toEqual(['--net=/p/3/ns/net', '--net=/p/4/ns/net']);
    await reader.refresh(targets);
    expect(calls.slice(4)).toEqual(['--net=/p/5/ns/net', '--net=/p/1/ns/net']);
  });

  it('discards a read whose pid now names another namespace (pid reused), and reports when every read failed', async () => {
    const { reader } = setup({ '/p/1/ns/net': '1\t2\n0\n' }, { '/p/1/ns/net': 99 });
    await reader.refresh([t(10, 1), t(20, 2)]);
    expect(reader.get(10)).toBeUndefined();
    expect(reader.allFailed()).toMatch(/pid 1 left namespace 10|Operation not permitted/);
  });

  it('does not report a failure while any namespace has values', async () => {
    const { reader } = setup({ '/p/1/ns/net': '1\t2\n0\n' }, { '/p/1/ns/net': 10 });
    await reader.refresh([t(10, 1), t(20, 2)]);
    expect(reader.get(10)?.twReuse).toBe(0);
    expect(reader.allFailed()).toBeUndefined();
  });
});
