/**
 * The shipped rules and dashboard against a real Prometheus (Debian package)
 * that scrapes the exporter inside a network namespace with real flows:
 * - ConntrackTableFull reaches `firing` through the HTTP API once the
 *   namespace's table passes 90% (the global nf_conntrack_max is lowered
 *   briefly and restored), and conntrack_entries in Prometheus equals the
 *   kernel's count within one scrape;
 * - every query of deploy/grafana/conntrack.json returns at least one series.
 *
 * The rules are the shipped file with every duration (`for:`, range windows,
 * offsets) scaled by SCALE, the incident lab's transform (test/incidents/scale.ts):
 * Prometheus scrapes every 2 s instead of 15 s, so every alert needs the
 * same number of scrapes as in production (ConntrackTableFull's sustained 2m is 16 s). Prometheus and the exporter listen on
 * 127.0.0.1 inside the namespace on ports left untracked, so scrapes and API
 * queries never change the counts under test.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  IN_CI,
  Netns,
  REPO_ROOT,
  TRAFFIC,
  acquireKernelLock,
  describeKernel,
  releaseKernelLock,
  sh,
  startExporterInNetns,
  withConntrackMax,
  type RunningExporter,
} from '../helpers/kernel.js';
import { dashboardQueries, loadDashboard } from '../deploy/dashboard-queries.js';
import { scaleRules } from '../incidents/scale.js';

const EXPORTER_PORT = 19747;
const PROM_PORT = 19091;
const JOB = 'conntrack-exporter';
const INSTANCE = `127.0.0.1:${EXPORTER_PORT}`;
const RULES = join(REPO_ROOT, 'deploy', 'prometheus', 'conntrack-rules.yaml');
/** 2 s scrapes standing for 15 s ones. */
const SCALE = 2 / 15;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Fetches URLs from inside the namespace in one process; prints a JSON array of [status, body]. */
const FETCH_MANY =
  'Promise.all(JSON.parse(process.argv[1]).map(u=>fetch(u).then(async r=>[r.status,await r.text()],e=>[0,String(e)]))).then(x=>process.stdout.write(JSON.stringify(x)))';

/** Closes `count` loopback connections from the client side: the client's entries go to TIME_WAIT. */
const TIME_WAIT =
  "const net=require('net');const n=Number(process.argv[1]),p=Number(process.argv[2]);const s=net.createServer(c=>{c.resume();c.on('end',()=>c.end())});s.listen(p,'127.0.0.1',async()=>{for(let i=0;i<n;i++)await new Promise((res,rej)=>{const c=net.connect(p,'127.0.0.1',()=>c.end('x'));c.resume();c.on('close',res);c.on('error',rej)});s.close()})";

interface PromResult {
  metric: Record<string, string>;
  value: [number, string];
}

/** TCP entries inserted over netlink, assured so that early_drop cannot evict them. */
function insertTcp(ns: Netns, src: string, dst: string, dport: number, sports: number[], state = 'ESTABLISHED'): Promise<unknown> {
  return Promise.all(
    sports.map((sport) =>
      ns.exec('conntrack', [
        '-I', '-p', 'tcp', '-s', src, '-d', dst, '--sport', String(sport), '--dport', String(dport),
        '--state', state, '-t', '900', '-u', 'ASSURED,SEEN_REPLY',
      ]),
    ),
  );
}

describeKernel(
  'real Prometheus with the shipped rules and dashboard',
  () => {
    let ns: Netns;
    let exporter: RunningExporter;
    let prometheus: ChildProcess;
    let promLog = '';
    let dir: string;
    let help = '';

    async function getMany(paths: string[]): Promise<[number, string][]> {
      const urls = paths.map((p) => `http://127.0.0.1:${PROM_PORT}${p}`);
      return JSON.parse(await ns.exec(process.execPath, ['-e', FETCH_MANY, JSON.stringify(urls)])) as [number, string][];
    }

    async function queryMany(exprs: string[]): Promise<PromResult[][]> {
      const bodies = await getMany(exprs.map((e) => `/api/v1/query?query=${encodeURIComponent(e)}`));
      return bodies.map(([status, body], i) => {
        if (status !== 200) {
          const gone = prometheus?.exitCode !== null || prometheus?.signalCode ? ` (prometheus exited: ${prometheus?.exitCode ?? prometheus?.signalCode})` : '';
          throw new Error(`query ${exprs[i]} → HTTP ${status}: ${body}${gone}`);
        }
        return (JSON.parse(body) as { data: { result: PromResult[] } }).data.result;
      });
    }

    async function query(expr: string): Promise<PromResult[]> {
      return (await queryMany([expr]))[0]!;
    }

    async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const v = await fn();
        if (v !== undefined) return v;
        if (Date.now() > deadline) {
          const promState = prometheus?.exitCode !== null || prometheus?.signalCode ? `exited (${prometheus?.exitCode ?? prometheus?.signalCode})` : 'running';
          // What Prometheus saw of the target: failed scrapes (up 0) and slow ones explain most timeouts.
          const health = await queryMany([`up{job="${JOB}"}[30s]`, `scrape_duration_seconds{job="${JOB}"}[30s]`]).catch((e: Error) => e.message);
          // And what the table-full alert looks at: entries, limit, and the alerts Prometheus holds.
          const fill = await queryMany([`conntrack_entries{job="${JOB}"}[30s]`, `conntrack_entries_limit{job="${JOB}"}[30s]`, 'ALERTS']).catch(
            (e: Error) => e.message,
          );
          throw new Error(
            `timed out after ${timeoutMs} ms waiting for ${what}\nscrape health (up, scrape_duration_seconds, last 30 s): ${JSON.stringify(health).slice(0, 2000)}` +
              `\nentries, limit (last 30 s), ALERTS: ${JSON.stringify(fill).slice(0, 3000)}\nexporter:\n${exporter?.logs().slice(-2000)}\nprometheus (${promState}):\n${promLog.slice(-2000)}`,
          );
        }
        await sleep(300);
      }
    }

    async function alertState(alertname: string): Promise<string | undefined> {
      const [[status, body]] = (await getMany(['/api/v1/alerts'])) as [[number, string]];
      if (status !== 200) return undefined;
      const alerts = (JSON.parse(body) as { data: { alerts: { labels: Record<string, string>; state: string }[] } }).data.alerts;
      return alerts.find((a) => a.labels['alertname'] === alertname && a.labels['instance'] === INSTANCE)?.state;
    }

    beforeAll(async () => {
      await acquireKernelLock();
      ns = await Netns.create('prom');
      await ns.enableConntrack([EXPORTER_PORT, PROM_PORT]);
      // Nothing may expire while the test runs: the fill ratio must stay above 0.9 and the
      // TIME_WAIT and unreplied UDP series must stay for the dashboard queries. Under the whole
      // suite's load the default 30 s (UDP) and 10-120 s (closing TCP) timeouts ran out mid-test
      // (190 of 212 entries left). These sysctls are the namespace's own.
      const timeouts = ['udp_timeout', 'tcp_timeout_time_wait', 'tcp_timeout_close', 'tcp_timeout_close_wait', 'tcp_timeout_fin_wait', 'tcp_timeout_last_ack'];
      await ns.exec('sh', ['-c', timeouts.map((t) => `echo 900 > /proc/sys/net/netfilter/nf_conntrack_${t}`).join(' && ')]);

      // Opt into what this build has: the table scan on a short schedule, the per-namespace and events collectors.
      help = await sh(process.execPath, [join(REPO_ROOT, 'dist', 'main.js'), '--help']);
      const args: string[] = [];
      if (help.includes('--collector.table.interval')) args.push('--collector.table.interval=2s');
      if (help.includes('--[no-]collector.netns')) args.push('--collector.netns');
      // The events collector is opt-in (its cost grows with new connections): its dashboard panel needs it.
      if (help.includes('--[no-]collector.events')) args.push('--collector.events');
      exporter = await startExporterInNetns(ns, args, EXPORTER_PORT);

      // Real flows: established TCP, TIME_WAIT, unreplied UDP; and many source ports toward one
      // destination (a connection pool to Redis), inserted over netlink.
      await ns.holdTcp(10, 7000);
      await ns.exec(process.execPath, ['-e', TIME_WAIT, '10', '7100']);
      await ns.exec(process.execPath, [TRAFFIC, 'udp', '10', '8000']);
      await insertTcp(ns, '10.1.0.1', '10.1.0.5', 6379, Array.from({ length: 30 }, (_, i) => 40000 + i));
      await insertTcp(ns, '10.1.0.2', '10.1.0.6', 443, [41000, 41001], 'TIME_WAIT');

      // Prometheus with the shipped rules, every duration scaled to 2 s scrapes.
      dir = mkdtempSync(join(tmpdir(), 'cte-prometheus-'));
      const rules = scaleRules(readFileSync(RULES, 'utf8'), SCALE);
      expect(rules.unscaled).toEqual([]);
      writeFileSync(join(dir, 'rules.yaml'), rules.yaml);
      writeFileSync(
        join(dir, 'prometheus.yml'),
        stringify({
          // 2 s: with --collector.netns a scrape reads every process's namespace link, which under
          // the whole suite's load (other test files run meanwhile) took over 1 s at times.
          global: { scrape_interval: '2s', scrape_timeout: '2s', evaluation_interval: '1s' },
          rule_files: [join(dir, 'rules.yaml')],
          scrape_configs: [{ job_name: JOB, static_configs: [{ targets: [INSTANCE] }] }],
        }),
      );
      prometheus = ns.spawn('prometheus', [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${PROM_PORT}`,
        '--log.level=warn',
      ]);
      prometheus.stdout?.on('data', (b: Buffer) => (promLog += b.toString()));
      prometheus.stderr?.on('data', (b: Buffer) => (promLog += b.toString()));
      await waitFor('Prometheus ready and scraping', async () => {
        if (prometheus.exitCode !== null) throw new Error(`prometheus exited ${prometheus.exitCode}:\n${promLog}`);
        const [[status]] = (await getMany(['/-/ready'])) as [[number, string]];
        if (status !== 200) return undefined;
        const up = await query(`up{job="${JOB}"} == 1`);
        return up.length ? true : undefined;
      });
    }, 120_000);

    afterAll(async () => {
      prometheus?.kill('SIGTERM');
      await exporter?.stop();
      await ns?.destroy();
      if (dir) rmSync(dir, { recursive: true, force: true });
      releaseKernelLock();
    });

    it('fires ConntrackTableFull once the table passes 90%, and conntrack_entries equals the kernel count', async () => {
      expect(await alertState('ConntrackTableFull')).toBeUndefined();
      const base = await ns.conntrackCount();
      // 93% full: above the alert's 90%, below what makes the kernel's conntrack GC evict. Once any
      // namespace has failed to find room (the table-full tests before this one do that), the GC,
      // until it has walked the whole hash table, kills entries that may be dropped early
      // (unassured ones, TCP in closing states) in every namespace whose count is at least
      // nf_conntrack_max / 100 * 95, in integer arithmetic (net/netfilter/nf_conntrack_core.c,
      // gc_worker). For a limit of 231 that is 190, not 219: it took this namespace from 212 to 190
      // entries, below 90%, and the test failed now and then under the full suite. So the limit is
      // a multiple of 100, where 95% is exact, and the count 93% of it.
      const hundreds = Math.max(3, Math.ceil((base + 20) / 93));
      const limit = hundreds * 100;
      const fill = hundreds * 93 - base;
      await withConntrackMax(limit, async () => {
        await insertTcp(ns, '10.2.0.1', '10.2.0.9', 5432, Array.from({ length: fill }, (_, i) => 30000 + i));
        const states: string[] = [];
        await waitFor('ConntrackTableFull firing', async () => {
          const s = await alertState('ConntrackTableFull');
          if (s && states.at(-1) !== s) states.push(s);
          return s === 'firing' ? s : undefined;
        });
        expect(states).toContain('firing');

        // conntrack_entries in Prometheus equals the kernel count, taken from a scrape after the
        // count was read and before it was read again unchanged (the entries expire, the ports are
        // untracked, so it is quiet; retry if a TIME_WAIT entry expired in between).
        let checked = false;
        for (let attempt = 0; attempt < 8 && !checked; attempt++) {
          const k1 = await ns.conntrackCount();
          const t0 = Date.now() / 1000;
          await sleep(2300);
          const [value, stamp] = await queryMany([`conntrack_entries{job="${JOB}"}`, `timestamp(conntrack_entries{job="${JOB}"})`]);
          const k2 = await ns.conntrackCount();
          if (k1 !== k2 || Number(stamp![0]!.value[1]) < t0) continue;
          expect(Number(value![0]!.value[1])).toBe(k1);
          if (k1 <= 0.9 * limit) {
            // Entries vanished (seen a few times under the full suite's load): say which kinds are left.
            const kinds = new Map<string, number>();
            for (const l of (await ns.exec('conntrack', ['-L'])).split('\n')) {
              const f = l.trim().split(/\s+/);
              if (f.length < 4) continue;
              const key = `${f[0]} ${/^[A-Z_]+$/.test(f[3] ?? '') ? f[3] : ''} ${l.includes('[UNREPLIED]') ? 'unreplied' : ''}`;
              kinds.set(key, (kinds.get(key) ?? 0) + 1);
            }
            expect.fail(`${k1} entries of ${limit} (started from ${base} + ${fill}); left: ${JSON.stringify([...kinds])}`);
          }
          checked = true;
        }
        expect(checked, 'a quiet moment to compare Prometheus with conntrack -C').toBe(true);

        const [ratio] = await query('instance:conntrack_table_fill:ratio');
        expect(Number(ratio!.value[1])).toBeGreaterThan(0.9);
        expect(Number((await query(`conntrack_entries_limit{job="${JOB}"}`))[0]!.value[1])).toBe(limit);

        // Now overflow it: with the limit at the count, these datagrams find no free entry (beyond
        // what early drop frees), the kernel drops them and logs "table full, dropping packet".
        await withConntrackMax(await ns.conntrackCount(), () => ns.exec(process.execPath, [TRAFFIC, 'udp', '20', '9000']));
      });

      // The drops reach Prometheus (and the kernel log, when this build has the collector).
      await waitFor('conntrack_stat_drop_total to rise in Prometheus', async () => {
        const r = await query(`increase(conntrack_stat_drop_total{job="${JOB}"}[1m]) > 0`);
        return r.length ? true : undefined;
      });
      await waitFor('ConntrackPacketsDropped firing', async () =>
        (await alertState('ConntrackPacketsDropped')) === 'firing' ? true : undefined,
      );
      if (help.includes('--[no-]collector.kernel_log')) {
        await waitFor(
          'the kernel-logged table full in Prometheus and ConntrackKernelTableFullLogged firing',
          async () => ((await alertState('ConntrackKernelTableFullLogged')) === 'firing' ? true : undefined),
          30_000,
        );
      }
    }, 120_000);

    it('returns at least one series for every query of the Grafana dashboard', async () => {
      if (help.includes('--collector.table.interval')) {
        await waitFor('a table scan in Prometheus', async () => {
          const r = await query(`conntrack_table_destination_source_ports{job="${JOB}"}`);
          return r.length ? true : undefined;
        });
      }
      let queries = dashboardQueries(loadDashboard(), { job: JOB, instance: '.+', rateInterval: '30s' });
      // Off CI, a build without the table collector (issue 3, still landing) cannot fill the
      // table panels: say so instead of failing. Under CI=true every query must return data.
      if (!IN_CI && !help.includes('--[no-]collector.table')) {
        const skipped = queries.filter((q) => q.expr.includes('conntrack_table_'));
        // eslint-disable-next-line no-console
        console.warn(`dashboard queries not checked (no table collector in this build):\n${skipped.map((q) => `  ${q.panel} [${q.refId}]`).join('\n')}`);
        queries = queries.filter((q) => !skipped.includes(q));
      }
      const results = await queryMany(queries.map((q) => q.expr));
      const empty = queries.filter((_, i) => results[i]!.length === 0).map((q) => `${q.panel} [${q.refId}]: ${q.expr}`);
      expect(empty, `dashboard queries without data:\n${empty.join('\n')}`).toEqual([]);
      expect(queries.length).toBeGreaterThanOrEqual(IN_CI ? 30 : 20);
    }, 120_000);
  },
  ['ip', 'conntrack', 'nft', 'prometheus'],
);
