/**
 * The incident lab: the built exporter, a real Prometheus (Debian
 * `prometheus`) loading deploy/prometheus/conntrack-rules.yaml and a real
 * Alertmanager (Debian `prometheus-alertmanager`) whose webhook receiver is the
 * test's. The page is what the webhook receives.
 *
 * Layout. Prometheus, Alertmanager and the webhook run in a monitoring network
 * namespace of their own, which never tracks connections. Each exporter runs
 * where the story's exporter runs (a namespace the scenario built: the node,
 * or a pod) and is scraped over a veth pair from the monitoring namespace; its
 * port is NOTRACKed in its own namespace, so scrapes neither add entries nor
 * fail when the table is full.
 *
 * Time. By default the lab runs SCALED: the shipped rules with every duration
 * multiplied by FACTOR (scale.ts), 15 s scrapes and evaluations become 2 s,
 * and Alertmanager's timers, Prometheus' resend delay and lookback, and the
 * exporter's table-scan interval are scaled the same way, so every alert needs
 * the same number of scrapes as in production. INCIDENTS_REAL_TIME=1 runs
 * everything unscaled at 15 s scrapes.
 *
 * The routing under test (Alertmanager): group_by alertname, instance, netns;
 * group_wait 10s, group_interval 1m, repeat_interval 4h, resolved
 * notifications on: a typical paging route. A page's budget is therefore the
 * rule's (counted in scrapes) plus group_wait plus one evaluation interval
 * (a rule sees a scrape on its next evaluation).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { spawn, type ChildProcess } from 'node:child_process';
import { stringify } from 'yaml';
import { Netns, REPO_ROOT, startExporterInNetns, withKernelLock, type RunningExporter } from '../helpers/kernel.js';
import { formatDuration, scaleRules } from './scale.js';

export const REAL_TIME = process.env['INCIDENTS_REAL_TIME'] === '1';
/** Every duration of the rules, Prometheus, Alertmanager and the exporter's scan interval is multiplied by this. */
export const FACTOR = REAL_TIME ? 1 : 2 / 15;
/** A production duration (milliseconds) as the lab runs it. */
export const scaled = (realMs: number): number => realMs * FACTOR;
export const SCRAPE_MS = scaled(15_000);
export const EVAL_MS = SCRAPE_MS;
export const GROUP_WAIT_MS = scaled(10_000);
export const GROUP_INTERVAL_MS = scaled(60_000);
/** The exporter's default --collector.table.interval (30s), scaled. */
export const TABLE_INTERVAL_MS = scaled(30_000);
export const JOB = 'conntrack-exporter';
export const RULES = join(REPO_ROOT, 'deploy', 'prometheus', 'conntrack-rules.yaml');
export const RUNBOOK = join(REPO_ROOT, 'docs', 'runbook.md');
export const LIB = join(REPO_ROOT, 'test', 'incidents', 'lib');
/** beforeAll's timeout: the kernel lock (other kernel tests, benchmarks) may be held up to 15 minutes, then setup. */
export const LOCK_WAIT_MS = 17 * 60_000;
/** A scenario's vitest timeout: real time takes 7.5 times as long. */
export const TEST_TIMEOUT_MS = REAL_TIME ? 3_600_000 : 600_000;
/** The time a paging alert may take after its rule is true: group_wait plus one evaluation interval. */
export const ROUTING_MS = GROUP_WAIT_MS + EVAL_MS;

const PROM_PORT = 19190;
const AM_PORT = 19193;
const WEBHOOK_PORT = 19195;
const EXPORTER_PORT = 19746;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Alert {
  status: 'firing' | 'resolved';
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
}

export interface Page {
  /** When the webhook received it (ms since epoch, same clock as the test). */
  at: number;
  status: string;
  alerts: Alert[];
}

/** What the SRE reads: labels, summary, description and runbook link of one alert. */
export function pageText(a: Alert): string {
  const labels = Object.entries(a.labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return `[${a.status}] ${labels}\n${a.annotations['summary'] ?? ''}\n${a.annotations['description'] ?? ''}\n${a.annotations['runbook_url'] ?? ''}`;
}

/** The runbook section an alert's runbook_url points at (its heading through the next heading of the same level or higher). */
export function runbookSection(url: string): string {
  const anchor = url.split('#')[1] ?? '';
  const lines = readFileSync(RUNBOOK, 'utf8').split('\n');
  const slug = (h: string): string =>
    h
      .replace(/^#+\s*/, '')
      .trim()
      .toLowerCase()
      .replace(/[^\w\- ]/g, '')
      .replace(/ /g, '-');
  const start = lines.findIndex((l) => /^#{2,4} /.test(l) && slug(l) === anchor);
  if (start < 0) throw new Error(`runbook has no section #${anchor}`);
  const level = /^#+/.exec(lines[start]!)![0].length;
  let end = lines.findIndex((l, i) => i > start && /^#+ /.test(l) && /^#+/.exec(l)![0].length <= level);
  if (end < 0) end = lines.length;
  return lines.slice(start, end).join('\n');
}

/** Prints one timing line for docs/incidents.md and returns the figures. */
export function recordTiming(scenario: string, what: string, onset: number, at: number): { ms: number; scrapes: number } {
  const ms = at - onset;
  const scrapes = Math.round((ms / SCRAPE_MS) * 10) / 10;
  // eslint-disable-next-line no-console
  console.log(
    `[incident-timing] ${JSON.stringify({ scenario, what, ms, scrapes, scrapeMs: SCRAPE_MS, realTime: REAL_TIME, realSeconds: Math.round(ms / FACTOR / 100) / 10 })}`,
  );
  return { ms, scrapes };
}

/** conntrack statistics of one namespace, sampled every 100 ms (lib/stat-watch.mjs): the clock of "the first drop". */
export class StatWatch {
  readonly samples: { t: number; drop: number; early_drop: number; insert_failed: number; clash_resolve: number; entries: number }[] = [];
  private constructor(private readonly child: ChildProcess) {}

  static async start(ns: Netns): Promise<StatWatch> {
    const child = ns.spawn(process.execPath, [join(LIB, 'stat-watch.mjs'), '100']);
    const w = new StatWatch(child);
    const rl = createInterface({ input: child.stdout! });
    await new Promise<void>((resolve, reject) => {
      rl.on('line', (l) => {
        w.samples.push(JSON.parse(l));
        resolve();
      });
      child.once('exit', (c) => reject(new Error(`stat-watch exited ${c}`)));
    });
    return w;
  }

  last(): StatWatch['samples'][number] {
    return this.samples.at(-1)!;
  }

  /** First time after `since` at which any of `keys` exceeded its value at `since`; waits up to timeoutMs. */
  async firstRise(keys: readonly ('drop' | 'early_drop' | 'insert_failed' | 'clash_resolve')[], since: number, timeoutMs = 60_000): Promise<number> {
    const base = [...this.samples].reverse().find((s) => s.t <= since) ?? this.samples[0]!;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.samples.find((s) => s.t > base.t && keys.some((k) => s[k] > base[k]));
      if (hit) return hit.t;
      if (Date.now() > deadline) throw new Error(`no rise of ${keys.join('/')} within ${timeoutMs} ms (last ${JSON.stringify(this.last())})`);
      await sleep(100);
    }
  }

  stop(): void {
    this.child.kill('SIGTERM');
  }
}

export interface ExporterSpec {
  /** The namespace it runs in (the story's node, or a pod). */
  ns: Netns;
  /** The `node` label Prometheus gives its series (the rules print it). */
  node: string;
  args?: readonly string[];
}

interface Target {
  spec: ExporterSpec;
  address: string;
  exporter?: RunningExporter;
}

/** Adds a NOTRACK table for the exporter's port in `ns` (no effect where nothing is tracked). */
async function untrackPort(ns: Netns, port: number): Promise<void> {
  await ns.exec('nft', ['-f', '-'], {
    input: `table inet incidents_lab {
  chain pre { type filter hook prerouting priority raw; policy accept; tcp dport ${port} notrack; tcp sport ${port} notrack; }
  chain out { type filter hook output priority raw; policy accept; tcp dport ${port} notrack; tcp sport ${port} notrack; }
}
`,
  });
}

export class Lab {
  readonly pages: Page[] = [];
  private readonly targets: Target[] = [];
  private agent?: ChildProcess;
  private prometheus?: ChildProcess;
  private alertmanager?: ChildProcess;
  private promLog = '';
  private amLog = '';
  private nextId = 0;
  private readonly pending = new Map<number, (r: { status: number; body: string }) => void>();

  private constructor(
    readonly mon: Netns,
    readonly dir: string,
  ) {}

  /** Builds the monitoring namespace, starts the exporters, Prometheus, Alertmanager and the webhook. */
  static async start(label: string, exporters: readonly ExporterSpec[]): Promise<Lab> {
    const mon = await Netns.create(`incidents-${label}-mon`);
    const lab = new Lab(mon, mkdtempSync(join(tmpdir(), `cte-incidents-${label}-`)));
    try {
      await lab.startAgent();
      for (const [i, spec] of exporters.entries()) await lab.addTarget(i, spec);
      await lab.startAlertmanager();
      await lab.startPrometheus();
    } catch (err) {
      await lab.stop();
      throw err;
    }
    return lab;
  }

  private async startAgent(): Promise<void> {
    // Not Netns.spawn: the agent reads requests on stdin (and exits when the test process's end closes it).
    const agent = spawn('ip', ['netns', 'exec', this.mon.name, process.execPath, join(LIB, 'agent.mjs'), String(WEBHOOK_PORT)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.agent = agent;
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: agent.stdout! }).on('line', (line) => {
        const msg = JSON.parse(line) as { ready?: boolean; page?: { at: number; body: { status: string; alerts: Alert[] } }; id?: number; status?: number; body?: string };
        if (msg.ready) resolve();
        else if (msg.page) this.pages.push({ at: msg.page.at, status: msg.page.body.status, alerts: msg.page.body.alerts });
        else if (msg.id !== undefined) {
          this.pending.get(msg.id)?.({ status: msg.status!, body: msg.body! });
          this.pending.delete(msg.id);
        }
      });
      agent.once('exit', (c) => reject(new Error(`lab agent exited ${c}`)));
    });
  }

  private async addTarget(i: number, spec: ExporterSpec): Promise<void> {
    const monIf = `lab${i}`;
    const peer = `lab${i}x`;
    const [monIp, expIp] = [`10.250.${i}.1`, `10.250.${i}.2`];
    await this.mon.exec('ip', ['link', 'add', monIf, 'type', 'veth', 'peer', 'name', peer, 'netns', spec.ns.name]);
    await this.mon.exec('ip', ['addr', 'add', `${monIp}/30`, 'dev', monIf]);
    await this.mon.exec('ip', ['link', 'set', monIf, 'up']);
    await spec.ns.exec('ip', ['addr', 'add', `${expIp}/30`, 'dev', peer]);
    await spec.ns.exec('ip', ['link', 'set', peer, 'up']);
    await untrackPort(spec.ns, EXPORTER_PORT);
    const exporter = await startExporterInNetns(
      spec.ns,
      [`--collector.table.interval=${formatDuration(TABLE_INTERVAL_MS)}`, ...(spec.args ?? [])],
      EXPORTER_PORT,
      expIp,
    );
    this.targets.push({ spec, address: `${expIp}:${EXPORTER_PORT}`, exporter });
  }

  private async startAlertmanager(): Promise<void> {
    const config = {
      global: { resolve_timeout: formatDuration(scaled(300_000)) },
      route: {
        receiver: 'pager',
        group_by: ['alertname', 'instance', 'netns'],
        group_wait: formatDuration(GROUP_WAIT_MS),
        group_interval: formatDuration(GROUP_INTERVAL_MS),
        repeat_interval: '4h',
      },
      receivers: [{ name: 'pager', webhook_configs: [{ url: `http://127.0.0.1:${WEBHOOK_PORT}/page`, send_resolved: true }] }],
    };
    writeFileSync(join(this.dir, 'alertmanager.yml'), stringify(config));
    const am = this.mon.spawn('prometheus-alertmanager', [
      `--config.file=${join(this.dir, 'alertmanager.yml')}`,
      `--storage.path=${join(this.dir, 'am')}`,
      `--web.listen-address=127.0.0.1:${AM_PORT}`,
      '--cluster.listen-address=',
      '--log.level=warn',
    ]);
    this.alertmanager = am;
    am.stdout?.on('data', (b: Buffer) => (this.amLog += b.toString()));
    am.stderr?.on('data', (b: Buffer) => (this.amLog += b.toString()));
    await this.waitFor('Alertmanager ready', async () => {
      if (am.exitCode !== null) throw new Error(`alertmanager exited ${am.exitCode}:\n${this.amLog}`);
      return (await this.get(`http://127.0.0.1:${AM_PORT}/-/ready`)).status === 200 || undefined;
    });
  }

  private async startPrometheus(): Promise<void> {
    const rules = scaleRules(readFileSync(RULES, 'utf8'), FACTOR);
    if (rules.unscaled.length) throw new Error(`rules with seconds the lab cannot scale: ${rules.unscaled.join(', ')}`);
    writeFileSync(join(this.dir, 'rules.yaml'), rules.yaml);
    writeFileSync(
      join(this.dir, 'prometheus.yml'),
      stringify({
        global: {
          scrape_interval: formatDuration(SCRAPE_MS),
          // As long as the interval: a scrape of the netns collector (every process's namespace
          // link) took over 1 s under the whole suite's load.
          scrape_timeout: formatDuration(SCRAPE_MS),
          evaluation_interval: formatDuration(EVAL_MS),
        },
        rule_files: [join(this.dir, 'rules.yaml')],
        alerting: { alertmanagers: [{ static_configs: [{ targets: [`127.0.0.1:${AM_PORT}`] }] }] },
        scrape_configs: [
          {
            job_name: JOB,
            static_configs: this.targets.map((t) => ({ targets: [t.address], labels: { node: t.spec.node } })),
          },
        ],
      }),
    );
    const prom = this.mon.spawn('prometheus', [
      `--config.file=${join(this.dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(this.dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${PROM_PORT}`,
      `--rules.alert.resend-delay=${formatDuration(scaled(60_000))}`,
      `--query.lookback-delta=${formatDuration(scaled(300_000))}`,
      '--log.level=warn',
    ]);
    this.prometheus = prom;
    prom.stdout?.on('data', (b: Buffer) => (this.promLog += b.toString()));
    prom.stderr?.on('data', (b: Buffer) => (this.promLog += b.toString()));
    await this.waitFor(
      'Prometheus ready and every target up',
      async () => {
        if (prom.exitCode !== null) throw new Error(`prometheus exited ${prom.exitCode}:\n${this.promLog}`);
        if ((await this.get(`http://127.0.0.1:${PROM_PORT}/-/ready`)).status !== 200) return undefined;
        const up = await this.query(`up{job="${JOB}"} == 1`);
        return up.length === this.targets.length || undefined;
      },
      60_000,
    );
  }

  /** GET (or POST) through the agent in the monitoring namespace. */
  get(url: string, init: { method?: string; body?: string } = {}): Promise<{ status: number; body: string }> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.agent!.stdin!.write(`${JSON.stringify({ id, url, ...init })}\n`);
    });
  }

  async query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
    const r = await this.get(`http://127.0.0.1:${PROM_PORT}/api/v1/query?query=${encodeURIComponent(expr)}`);
    if (r.status !== 200) throw new Error(`query ${expr} → HTTP ${r.status}: ${r.body}`);
    return (JSON.parse(r.body) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } }).data.result;
  }

  /** Alerts Prometheus holds (pending or firing). */
  async alerts(): Promise<{ labels: Record<string, string>; annotations: Record<string, string>; state: string; activeAt: string }[]> {
    const r = await this.get(`http://127.0.0.1:${PROM_PORT}/api/v1/alerts`);
    return (JSON.parse(r.body) as { data: { alerts: [] } }).data.alerts;
  }

  exporter(i = 0): RunningExporter {
    return this.targets[i]!.exporter!;
  }

  /** Firing alerts received by the webhook since `since` (ms), in order of arrival. */
  firingSince(since: number): (Alert & { at: number })[] {
    return this.pages.filter((p) => p.at >= since).flatMap((p) => p.alerts.filter((a) => a.status === 'firing').map((a) => ({ ...a, at: p.at })));
  }

  /** Waits for the first page (since `since`) with a firing alert that `match` accepts. */
  async waitForPage(what: string, match: (a: Alert) => boolean, since: number, timeoutMs: number): Promise<Alert & { at: number }> {
    return this.waitFor(`page: ${what}`, async () => this.firingSince(since).find(match), timeoutMs);
  }

  /** Waits for a resolved notification (since `since`) for an alert that `match` accepts. */
  async waitForResolved(what: string, match: (a: Alert) => boolean, since: number, timeoutMs: number): Promise<Alert & { at: number }> {
    return this.waitFor(
      `resolved: ${what}`,
      async () =>
        this.pages
          .filter((p) => p.at >= since)
          .flatMap((p) => p.alerts.filter((a) => a.status === 'resolved' && match(a)).map((a) => ({ ...a, at: p.at })))[0],
      timeoutMs,
    );
  }

  async waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await fn();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${await this.diagnostics()}`);
      await sleep(200);
    }
  }

  /** What Prometheus, Alertmanager and the exporters said: for a failure's message. */
  async diagnostics(): Promise<string> {
    const alerts = this.prometheus ? await this.alerts().catch((e: Error) => e.message) : 'not started';
    const health = this.prometheus
      ? await this.query(`up{job="${JOB}"} or scrape_duration_seconds{job="${JOB}"}`).catch((e: Error) => e.message)
      : '';
    return [
      `Prometheus alerts: ${JSON.stringify(alerts).slice(0, 4000)}`,
      `targets: ${JSON.stringify(health).slice(0, 1000)}`,
      `pages received: ${JSON.stringify(this.pages.map((p) => ({ at: p.at, alerts: p.alerts.map((a) => `${a.status} ${a.labels['alertname']}`) })))}`,
      ...this.targets.map((t) => `exporter ${t.spec.node} log:\n${t.exporter?.logs().slice(-1500)}`),
      `prometheus log:\n${this.promLog.slice(-1500)}`,
      `alertmanager log:\n${this.amLog.slice(-1500)}`,
    ].join('\n');
  }

  async stop(): Promise<void> {
    this.prometheus?.kill('SIGTERM');
    this.alertmanager?.kill('SIGTERM');
    await Promise.all(this.targets.map((t) => t.exporter?.stop()));
    this.agent?.stdin?.end();
    this.agent?.kill('SIGTERM');
    await this.mon.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// Building blocks for the scenarios' own namespaces and processes.

/** A veth pair between two namespaces, addressed and up (`cidr` like 10.22.0.1/16). */
export async function veth(a: Netns, aIf: string, aCidr: string, b: Netns, bIf: string, bCidr: string): Promise<void> {
  await a.exec('ip', ['link', 'add', aIf, 'type', 'veth', 'peer', 'name', bIf, 'netns', b.name]);
  await a.exec('ip', ['addr', 'add', aCidr, 'dev', aIf]);
  await a.exec('ip', ['link', 'set', aIf, 'up']);
  await b.exec('ip', ['addr', 'add', bCidr, 'dev', bIf]);
  await b.exec('ip', ['link', 'set', bIf, 'up']);
}

/** Many `ip` commands in one process (`ip -batch -`). */
export async function ipBatch(ns: Netns, commands: readonly string[]): Promise<void> {
  await ns.exec('ip', ['-batch', '-'], { input: `${commands.join('\n')}\n` });
}

/** Writes sysctls of the namespace (`net.ipv4.tcp_tw_reuse` → /proc/sys/net/ipv4/tcp_tw_reuse). */
export async function sysctl(ns: Netns, values: Record<string, string | number>): Promise<void> {
  const cmds = Object.entries(values).map(([k, v]) => `echo '${v}' > /proc/sys/${k.replace(/\./g, '/')}`);
  await ns.exec('sh', ['-c', cmds.join(' && ')]);
}

/** A process in a namespace whose stdout is JSON lines (or "ready"), collected as they come. */
export class JsonProcess<T = Record<string, unknown>> {
  readonly lines: T[] = [];
  private text = '';
  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (l) => {
      this.text += `${l}\n`;
      if (l.startsWith('{')) this.lines.push(JSON.parse(l) as T);
    });
    child.stderr?.on('data', (b: Buffer) => (this.text += b.toString()));
  }

  static spawn<T = Record<string, unknown>>(ns: Netns, script: string, args: readonly (string | number)[]): JsonProcess<T> {
    // python3 -B: no __pycache__ written into the repository.
    const [file, pre] = script.endsWith('.py') ? ['python3', ['-B']] : [process.execPath, []];
    return new JsonProcess<T>(ns.spawn(file, [...pre, join(LIB, script), ...args.map(String)]));
  }

  last(): T | undefined {
    return this.lines.at(-1);
  }

  /** Waits for an output line that `match` accepts ("ready" is {ready: true}). */
  async waitFor(what: string, match: (l: T) => boolean, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find(match);
      if (hit) return hit;
      if (this.text.split('\n').includes('ready') && match({ ready: true } as T)) return { ready: true } as T;
      if (this.child.exitCode !== null && !this.lines.find(match)) throw new Error(`${what}: process exited ${this.child.exitCode}:\n${this.text.slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${this.text.slice(-2000)}`);
      await sleep(100);
    }
  }

  output(): string {
    return this.text;
  }

  stop(): void {
    this.child.kill('SIGTERM');
  }
}

const HASHSIZE = '/sys/module/nf_conntrack/parameters/hashsize';

/**
 * Resizes the global conntrack hash table (nf_conntrack_buckets) for the duration of fn, under
 * the kernel lock, and restores it in finally. A lab table of a few hundred entries in this
 * machine's 262,144 buckets is far sparser than a production table at its limit (this kernel's
 * default is one bucket per entry of nf_conntrack_max), and the kernel's early drop only looks at
 * 8 buckets next to the new entry's: with the production ratio it finds entries to evict.
 */
export async function withConntrackBuckets<T>(buckets: number, fn: () => Promise<T>): Promise<T> {
  return withKernelLock(async () => {
    const previous = readFileSync(HASHSIZE, 'utf8').trim();
    const restore = (): void => writeFileSync(HASHSIZE, previous);
    process.once('exit', restore);
    writeFileSync(HASHSIZE, String(buckets));
    try {
      return await fn();
    } finally {
      restore();
      process.removeListener('exit', restore);
    }
  });
}
