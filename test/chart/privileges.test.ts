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
}

async function container(scenario: string): Promise<Container> {
  const ds = get<IDaemonSet>(await render({ scenario }), 'DaemonSet');
  const c = ds.spec!.template.spec!.containers[0]!;
  return { caps: c.securityContext?.capabilities?.add ?? [], args: c.args ?? [] };
}

/** setpriv arguments for a container that is uid 0 with only `caps`, as the runtime makes it. */
function privileges(caps: readonly string[]): string[] {
  const set = ['-all', ...caps.map((c) => `+${c.toLowerCase()}`)].join(',');
  return ['--reuid=0', '--regid=0', '--groups=4', `--bounding-set=${set}`, '--inh-caps=-all', '--no-new-privs'];
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
      run('setpriv', [...privileges(scenarios[scenario]!.caps), '--', ...cmd]);

    beforeAll(async () => {
      for (const s of ['no-kernel-log', 'default', 'netns', 'kmsg-unprivileged']) scenarios[s] = await container(s);
      ns = await Netns.create('chartpriv');
      await ns.enableConntrack();
    });

    afterAll(async () => {
      await ns?.destroy();
    });

    test('the scenarios add the capabilities the README lists', () => {
      expect(scenarios['no-kernel-log']!.caps).toEqual([]);
      expect(scenarios.default!.caps).toEqual(['NET_ADMIN']);
      expect(scenarios.netns!.caps).toEqual(['NET_ADMIN', 'SYS_PTRACE']);
      expect(scenarios['kmsg-unprivileged']!.caps).toEqual(['NET_ADMIN', 'SYSLOG']);
    });

    test('uid 0 with no capability reads the table size, the statistics and the 0440 table file', async () => {
      const files = ['/proc/sys/net/netfilter/nf_conntrack_count', '/proc/net/stat/nf_conntrack'];
      if (existsSync('/proc/net/nf_conntrack')) {
        expect((statSync('/proc/net/nf_conntrack').mode & 0o777).toString(8)).toBe('440');
        files.push('/proc/net/nf_conntrack');
      }
      for (const f of files) {
        const r = await asContainer('no-kernel-log', ['cat', f]);
        expect(r.stderr, f).toBe('');
        expect(r.code, f).toBe(0);
      }
    });

    test('the netlink fallback needs CAP_NET_ADMIN, which the default adds', async () => {
      const without = await asContainer('no-kernel-log', ['conntrack', '-C']);
      expect(without.code).not.toBe(0);
      expect(without.stderr).toMatch(/CAP_NET_ADMIN|not permitted/);
      const withCap = await asContainer('default', ['conntrack', '-S']);
      expect(withCap.stderr).toBe('');
      expect(withCap.stdout).toMatch(/^cpu=0\s/m);
    });

    test('netns: readlink of another uid\'s /proc/PID/ns/net needs CAP_SYS_PTRACE, which netns adds', async () => {
      const sleeper = ns.spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sleep', '60']);
      const pid = sleeper.pid!;
      // ip netns exec and setpriv exec in place: wait until the pid runs as 65534.
      for (let i = 0; i < 100 && !/^Uid:\s+65534/m.test(readStatus(pid)); i++) await new Promise((r) => setTimeout(r, 20));
      const link = `/proc/${pid}/ns/net`;
      const denied = await asContainer('default', ['readlink', link]);
      expect(denied.code).not.toBe(0);
      const allowed = await asContainer('netns', ['readlink', link]);
      expect(allowed.stdout.trim()).toBe(`net:[${ns.inode()}]`);
      // The per-namespace count itself needs nothing more.
      const stat = await asContainer('default', ['cat', `/proc/${pid}/net/stat/nf_conntrack`]);
      expect(stat.code).toBe(0);
      sleeper.kill('SIGKILL');
    });

    test('kmsg: CAP_SYSLOG opens /dev/kmsg (needed while kernel.dmesg_restrict=1)', async () => {
      const read = ['dd', 'if=/dev/kmsg', 'of=/dev/null', 'bs=16384', 'count=1', 'iflag=nonblock', 'status=none'];
      const withCap = await asContainer('kmsg-unprivileged', read);
      expect(withCap.stderr).toBe('');
      expect(withCap.code).toBe(0);
      if (readFileSync('/proc/sys/kernel/dmesg_restrict', 'utf8').trim() === '1') {
        const without = await asContainer('default', read);
        expect(without.stderr).toMatch(/not permitted/);
      }
    });

    test('the exporter, with the netns scenario\'s arguments and privileges, reports every collector healthy', async () => {
      const port = 20000 + Math.floor(Math.random() * 20000);
      const args = scenarios.netns!.args
        .map((a) => a.replace('=/host/proc', '=/proc').replace('=/host/sys', '=/sys').replace('=/host/root', '=/'))
        .filter((a) => !a.startsWith('--web.listen-address=') && !a.startsWith('--kernel-log.source='));
      const exporter = ns.spawn('setpriv', [
        ...privileges(scenarios.netns!.caps),
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
      for (const collector of ['conntrack', 'stat', 'netns']) {
        expect(samples.get(`conntrack_scrape_collector_success{collector="${collector}"}`), collector).toBe(1);
      }
      const infos = [...samples.keys()].filter((k) => k.startsWith('conntrack_netns_info{'));
      expect(infos.some((k) => k.includes(`netns="${ns.inode()}"`)), infos.join('\n')).toBe(true);
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
