/**
 * The chart's privilege claims, checked on the real kernel: each scenario's container is mimicked
 * with setpriv (uid 0, the bounding set = exactly the capabilities the rendered chart adds, no new
 * privileges) inside a network namespace we create, and the feature works with the chart's
 * capabilities and fails with one fewer.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Netns, REPO_ROOT, describeKernel, parseExposition } from '../helpers/kernel.js';
import { get, render } from './helm.js';

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

interface Container {
  caps: string[];
  args: string[];
  uid: number;
  gid: number;
  groups: number[];
}

async function container(scenario: string): Promise<Container> {
  const ds = get<IDaemonSet>(await render({ scenario }), 'DaemonSet');
  const pod = ds.spec!.template.spec!;
  const c = pod.containers[0]!;
  const sc = pod.securityContext ?? {};
  return {
    caps: c.securityContext?.capabilities?.add ?? [],
    args: c.args ?? [],
    uid: sc.runAsUser ?? 0,
    gid: sc.runAsGroup ?? 0,
    groups: sc.supplementalGroups ?? [],
  };
}

/** setpriv arguments for the rendered container: its uid, gid and groups, only `caps`, as the runtime makes it. */
function privileges(c: Container): string[] {
  const set = ['-all', ...c.caps.map((cap) => `+${cap.toLowerCase()}`)].join(',');
  const groups = c.groups.length > 0 ? `--groups=${c.groups.join(',')}` : '--clear-groups';
  return [`--reuid=${c.uid}`, `--regid=${c.gid}`, groups, `--bounding-set=${set}`, '--inh-caps=-all', '--no-new-privs'];
}

describeKernel(
  'chart privileges on the real kernel',
  () => {
    let ns: Netns;
    const scenarios: Record<string, Container> = {};

    const run = (file: string, args: readonly string[]): Promise<Result> =>
      new Promise((resolve) => {
        execFile('ip', ['netns', 'exec', ns.name, file, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
          const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
          resolve({ code, stdout, stderr });
        });
      });
    const asContainer = (scenario: string, cmd: readonly string[]) =>
      run('setpriv', [...privileges(scenarios[scenario]!), '--', ...cmd]);

    beforeAll(async () => {
      for (const s of ['no-kernel-log', 'default', 'table', 'netlink', 'netns', 'kmsg-unprivileged']) scenarios[s] = await container(s);
      ns = await Netns.create('chartpriv');
      await ns.enableConntrack();
    });

    afterAll(async () => {
      await ns?.destroy();
    });

    test('the scenarios add the uid and capabilities the README lists', () => {
      expect(scenarios.default).toMatchObject({ uid: 65534, gid: 65534, groups: [4], caps: [] });
      expect(scenarios['no-kernel-log']).toMatchObject({ uid: 65534, caps: [] });
      expect(scenarios.table).toMatchObject({ uid: 0, caps: [] });
      expect(scenarios.netlink).toMatchObject({ uid: 0, caps: ['NET_ADMIN'] });
      expect(scenarios.netns).toMatchObject({ uid: 0, caps: ['SYS_PTRACE'] });
      expect(scenarios['kmsg-unprivileged']).toMatchObject({ uid: 0, caps: ['SYSLOG'] });
    });

    test('the default (uid 65534, no capability) reads the table size and the statistics, not the 0440 table file', async () => {
      for (const f of ['/proc/sys/net/netfilter/nf_conntrack_count', '/proc/sys/net/netfilter/nf_conntrack_max', '/proc/net/stat/nf_conntrack', '/proc/net/sockstat']) {
        const r = await asContainer('default', ['cat', f]);
        expect(r.stderr, f).toBe('');
        expect(r.code, f).toBe(0);
      }
      if (existsSync('/proc/net/nf_conntrack')) {
        const r = await asContainer('default', ['cat', '/proc/net/nf_conntrack']);
        expect(r.code).not.toBe(0);
        expect(r.stderr).toMatch(/Permission denied/);
      }
    });

    test('tableScan (uid 0, no capability) reads the 0440 table file', async () => {
      expect(existsSync('/proc/net/nf_conntrack'), '/proc/net/nf_conntrack (CONFIG_NF_CONNTRACK_PROCFS)').toBe(true);
      expect((statSync('/proc/net/nf_conntrack').mode & 0o777).toString(8)).toBe('440');
      const r = await asContainer('table', ['cat', '/proc/net/nf_conntrack']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    });

    test('the netlink fallback needs CAP_NET_ADMIN, which conntrackNetlink adds', async () => {
      const without = await asContainer('table', ['conntrack', '-C']);
      expect(without.code).not.toBe(0);
      expect(without.stderr).toMatch(/CAP_NET_ADMIN|not permitted/);
      const withCap = await asContainer('netlink', ['conntrack', '-S']);
      expect(withCap.stderr).toBe('');
      expect(withCap.stdout).toMatch(/^cpu=0\s/m);
    });

    test('netns: readlink of another uid\'s /proc/PID/ns/net needs CAP_SYS_PTRACE, which netns adds', async () => {
      const sleeper = ns.spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sleep', '60']);
      const pid = sleeper.pid!;
      // ip netns exec and setpriv exec in place: wait until the pid runs as 65534.
      for (let i = 0; i < 100 && !/^Uid:\s+65534/m.test(readStatus(pid)); i++) await new Promise((r) => setTimeout(r, 20));
      const link = `/proc/${pid}/ns/net`;
      const denied = await asContainer('table', ['readlink', link]);
      expect(denied.code).not.toBe(0);
      const allowed = await asContainer('netns', ['readlink', link]);
      expect(allowed.stdout.trim()).toBe(`net:[${ns.inode()}]`);
      // The per-namespace count itself needs nothing more.
      const stat = await asContainer('table', ['cat', `/proc/${pid}/net/stat/nf_conntrack`]);
      expect(stat.code).toBe(0);
      sleeper.kill('SIGKILL');
    });

    test('kmsg: CAP_SYSLOG opens /dev/kmsg (needed while kernel.dmesg_restrict=1)', async () => {
      const read = ['dd', 'if=/dev/kmsg', 'of=/dev/null', 'bs=16384', 'count=1', 'iflag=nonblock', 'status=none'];
      const withCap = await asContainer('kmsg-unprivileged', read);
      expect(withCap.stderr).toBe('');
      expect(withCap.code).toBe(0);
      if (readFileSync('/proc/sys/kernel/dmesg_restrict', 'utf8').trim() === '1') {
        const without = await asContainer('table', read);
        expect(without.stderr).toMatch(/not permitted/);
      }
    });

    test.each([
      ['default', ['conntrack', 'stat', 'memory', 'ports', 'timeouts']],
      ['table', ['conntrack', 'stat', 'table']],
      ['netns', ['conntrack', 'stat', 'netns']],
    ])('the exporter, with the %s scenario\'s arguments and privileges, reports every collector healthy', async (scenario, expected) => {
      const port = 20000 + Math.floor(Math.random() * 20000);
      const args = scenarios[scenario]!.args
        .map((a) => a.replace('=/host/proc', '=/proc').replace('=/host/sys', '=/sys').replace('=/host/root', '=/'))
        .filter((a) => !a.startsWith('--web.listen-address=') && !a.startsWith('--kernel-log.source='));
      const exporter = ns.spawn('setpriv', [
        ...privileges(scenarios[scenario]!),
        '--',
        process.execPath,
        join(REPO_ROOT, 'dist', 'main.js'),
        `--web.listen-address=127.0.0.1:${port}`,
        // The host's log is not this test's business; the kmsg test above covers the privilege.
        '--kernel-log.source=none',
        ...args,
      ]);
      let log = '';
      exporter.stdout?.on('data', (b: Buffer) => (log += b.toString()));
      exporter.stderr?.on('data', (b: Buffer) => (log += b.toString()));
      const fetchScript =
        "fetch(process.argv[1]).then(async r=>{process.stdout.write(await r.text());process.exit(r.ok?0:3)}).catch(()=>process.exit(4))";
      let body = '';
      for (let i = 0; i < 150 && body === ''; i++) {
        await new Promise((r) => setTimeout(r, 100));
        if (exporter.exitCode !== null) throw new Error(`exporter exited ${exporter.exitCode}:\n${log}`);
        const r = await run(process.execPath, ['-e', fetchScript, `http://127.0.0.1:${port}/metrics`]);
        if (r.code === 0) body = r.stdout;
      }
      // A second scrape: the first one's own connection is now in the table.
      const r = await run(process.execPath, ['-e', fetchScript, `http://127.0.0.1:${port}/metrics`]);
      exporter.kill('SIGTERM');
      expect(r.code, log).toBe(0);
      const samples = parseExposition(r.stdout);
      const failing = [...samples].filter(([k, v]) => k.startsWith('conntrack_scrape_collector_success{') && v !== 1);
      expect(failing, log).toEqual([]);
      for (const collector of expected) {
        expect(samples.get(`conntrack_scrape_collector_success{collector="${collector}"}`), collector).toBe(1);
      }
      if (scenario === 'netns') {
        const infos = [...samples.keys()].filter((k) => k.startsWith('conntrack_netns_info{'));
        expect(infos.some((k) => k.includes(`netns="${ns.inode()}"`)), infos.join('\n')).toBe(true);
      }
      if (scenario === 'default') expect(samples.has('conntrack_scrape_collector_success{collector="table"}')).toBe(false);
    });
  },
  ['ip', 'conntrack', 'nft', 'setpriv', 'dd'],
);

function readStatus(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return '';
  }
}
