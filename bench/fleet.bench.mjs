#!/usr/bin/env node
// Fleet-cost benchmark (issue 14): what one node pays for this exporter, each figure measured in the
// same run as its peer or floor, interleaved and repeated, and printed as one table of ratios with
// MET / MISSED per goal:
//   scrape   CPU per scrape (wrk, 1 connection, gzip): the conntrack + stat collectors against
//            prometheus-node-exporter --collector.disable-defaults --collector.conntrack (same
//            files), the default collectors against 2× that; throughput at 8 connections.
//   idle     CPU per second at one scrape every 15 s with the default 30 s scan interval, on an empty
//            table and on a 10,000-entry table, against node_exporter with all its default
//            collectors; idle RSS against a minimal Fastify + prom-client + pino app (bench/lib/minimal-app.mjs).
//   proc     a 1,000,000-entry table scanned from /proc with the default collectors at 50 scrapes/s,
//            against `cat /proc/net/nf_conntrack > /dev/null`; peak RSS.
//   netlink  the same table through `conntrack -L -o extended` (--collector.table.source=netlink),
//            against `conntrack -L -o extended > /dev/null`; peak RSS; /metrics p99 while it runs
//            against a bare Node.js server's p99 under the same `conntrack -L` load.
// CPU is user + system time of the process from /proc/PID/stat (all threads), not wall time: the
// machine may be shared. Each side is the median of BENCH_ROUNDS rounds, interleaved.
//
// Needs root (network namespaces), prometheus-node-exporter (Debian/Ubuntu: apt-get install
// prometheus-node-exporter; or a node_exporter release binary via NODE_EXPORTER=/path), wrk and
// conntrack. The 1M parts hold the kernel lock (scripts/kernel-lock.mjs) and raise nf_conntrack_max
// while they build the table.
//
//   npm run bench fleet                      every part (the 1M ones take several minutes)
//   npm run bench fleet scrape idle          only these parts (argument names as above)
//   BENCH_QUICK=1 npm run bench fleet        scrape and idle only, with a 60 s idle observation
//   BENCH_IDLE_SECONDS=150 BENCH_ROUNDS=3 BENCH_JSON=/tmp/fleet.json   window, rounds, raw figures
//   BENCH_BASELINE=/other/checkout/dist/main.js   also measure another build's CPU per scrape, same rounds
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { acquireLock, MAX_PATH, releaseLock } from '../scripts/kernel-lock.mjs';
import {
  buildTable,
  CAT_FLOOR,
  CONNTRACK_FLOOR,
  cpuSeconds,
  createNamespace,
  deleteNamespace,
  floorTimes,
  inNs,
  MAIN,
  measureExporter,
  measureLatencyFloor,
  median,
  memoryMB,
  quantile,
  ROOT,
  startInNs,
  stop,
} from './lib/table.mjs';

const ALL_PARTS = ['scrape', 'idle', 'proc', 'netlink'];
const QUICK = process.env.BENCH_QUICK === '1';
const argParts = process.argv.slice(2).filter((a) => ALL_PARTS.includes(a));
const PARTS = new Set(argParts.length ? argParts : QUICK ? ['scrape', 'idle'] : ALL_PARTS);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? (QUICK ? 60 : 150));
const SCRAPE_SECONDS = Number(process.env.BENCH_SCRAPE_SECONDS ?? 4);
const SCRAPE_INTERVAL_S = 15;
const IDLE_TABLE = 10_000;
const BIG_TABLE = Number(process.env.FLEET_BENCH_ENTRIES ?? 1_000_000);
const NODE_EXPORTER = process.env.NODE_EXPORTER ?? '/usr/bin/prometheus-node-exporter';
const BASE_PORT = 19800;
const GOALS = { scrape: 1.0, defaults: 2.0, idle: 2.0, rss: 1.1, proc: 1.2, netlink: 1.1, rssMB: 100, p99: 1.5 };

const fmt = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rows = [];
const raw = {};
/** One line of the final table. `ok` undefined: informative, no goal. */
function row(figure, subject, peer, ratio, goal, ok) {
  rows.push({ figure, subject, peer, ratio, goal, verdict: ok === undefined ? '' : ok ? 'MET' : 'MISSED' });
}

// --- Subjects.
let COLLECTOR_NAMES;
const exporter = (ns, port, args = [], main = MAIN) =>
  startInNs(ns, process.execPath, [main, `--web.listen-address=127.0.0.1:${port}`, ...args], /listening on/);
/** Another build's dist/main.js (say, main's before a change), measured in the same rounds as this one. */
const BASELINE = process.env.BENCH_BASELINE;
const nodeExporter = (ns, port, args = []) =>
  startInNs(ns, NODE_EXPORTER, [`--web.listen-address=127.0.0.1:${port}`, ...args], /Listening on/);
const minimalApp = (ns, port) => startInNs(ns, process.execPath, [join(ROOT, 'bench', 'lib', 'minimal-app.mjs'), String(port)], /listening on/);
const only = (...names) => COLLECTOR_NAMES.filter((n) => !names.includes(n)).map((n) => `--no-collector.${n}`);

/** wrk against `port` in `ns`: completed requests and their rate. */
function wrk(ns, port, seconds, connections) {
  const out = inNs(ns, 'wrk', ['-t', String(Math.min(2, connections)), '-c', String(connections), '-d', `${seconds}s`, '-H', 'Accept-Encoding: gzip', `http://127.0.0.1:${port}/metrics`]);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  if (/Non-2xx/.test(out) || !(requests > 0)) throw new Error(`wrk against :${port} failed:\n${out}`);
  return { requests, perSecond: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]) };
}

/** CPU milliseconds per request of `child` under wrk with one connection. */
function cpuPerScrape(ns, port, child) {
  const before = cpuSeconds(child.pid);
  const { requests } = wrk(ns, port, SCRAPE_SECONDS, 1);
  return ((cpuSeconds(child.pid) - before) * 1000) / requests;
}

async function scrapePart(ns, port0) {
  const subjects = [
    { key: 'cs', start: () => exporter(ns, port0, only('conntrack', 'stat')) },
    { key: 'ne', start: () => nodeExporter(ns, port0 + 1, ['--collector.disable-defaults', '--collector.conntrack']) },
    { key: 'def', start: () => exporter(ns, port0 + 2) },
    ...(BASELINE
      ? [
          { key: 'cs0', start: () => exporter(ns, port0 + 3, only('conntrack', 'stat'), BASELINE) },
          { key: 'def0', start: () => exporter(ns, port0 + 4, [], BASELINE) },
        ]
      : []),
  ];
  const children = [];
  try {
    for (const [i, s] of subjects.entries()) {
      s.port = port0 + i;
      s.child = await s.start();
      children.push(s.child);
    }
    await sleep(2000); // the default collectors' first table scan and kernel-log catch-up
    for (const s of subjects) wrk(ns, s.port, 2, 1); // warm-up: JIT, heap sizing
    const cpu = { cs: [], ne: [], def: [], cs0: [], def0: [] };
    const rps = { cs: [], ne: [] };
    for (let r = 0; r < ROUNDS; r++) {
      for (const s of subjects) cpu[s.key].push(cpuPerScrape(ns, s.port, s.child));
      for (const s of subjects.slice(0, 2)) rps[s.key].push(wrk(ns, s.port, 3, 8).perSecond);
    }
    raw.scrape = { cpu, rps };
    const cs = median(cpu.cs);
    const ne = median(cpu.ne);
    const def = median(cpu.def);
    const rounds = (k) => cpu[k].map((v) => fmt(v)).join('/');
    console.log(`CPU per scrape (ms), rounds: conntrack+stat ${rounds('cs')}, node_exporter conntrack ${rounds('ne')}, defaults ${rounds('def')}`);
    console.log(`req/s at 8 connections, rounds: conntrack+stat ${rps.cs.map((v) => fmt(v, 0)).join('/')}, node_exporter ${rps.ne.map((v) => fmt(v, 0)).join('/')}`);
    row('CPU per scrape, conntrack + stat collectors vs node_exporter `--collector.disable-defaults --collector.conntrack` (wrk, 1 connection, gzip)', `${fmt(cs)} ms`, `${fmt(ne)} ms`, cs / ne, `≤ ${GOALS.scrape}×`, cs / ne <= GOALS.scrape);
    row('CPU per scrape, default collectors vs the same node_exporter', `${fmt(def)} ms`, `${fmt(ne)} ms`, def / ne, `≤ ${GOALS.defaults}×`, def / ne <= GOALS.defaults);
    if (BASELINE) {
      console.log(`baseline ${BASELINE}: conntrack+stat ${rounds('cs0')}, defaults ${rounds('def0')} ms per scrape`);
      for (const [k, what] of [['cs', 'conntrack + stat collectors'], ['def', 'default collectors']]) {
        const before = median(cpu[`${k}0`]);
        row(`CPU per scrape, ${what}: this build vs BENCH_BASELINE`, `${fmt(median(cpu[k]))} ms`, `${fmt(before)} ms`, median(cpu[k]) / before, '', undefined);
      }
    }
    const a = median(rps.cs);
    const b = median(rps.ne);
    row('throughput, 8 connections, conntrack + stat vs node_exporter conntrack', `${fmt(a, 0)} req/s`, `${fmt(b, 0)} req/s`, a / b, '', undefined);
  } finally {
    await Promise.all(children.map(stop));
  }
}

// Scrapes each URL once every 15 s, as Prometheus does, until killed.
const SCRAPER = `
const urls = process.argv.slice(1);
const once = () => { for (const u of urls) fetch(u, { headers: { 'accept-encoding': 'gzip' } }).then((r) => r.arrayBuffer()).catch((e) => console.error(u, e.message)); };
once();
setInterval(once, ${SCRAPE_INTERVAL_S * 1000});
`;

async function idlePart(nsEmpty, nsTable, port0) {
  const subjects = [
    { key: 'empty', ns: nsEmpty, start: (p) => exporter(nsEmpty, p) },
    { key: 'table', ns: nsTable, start: (p) => exporter(nsTable, p) },
    { key: 'neEmpty', ns: nsEmpty, start: (p) => nodeExporter(nsEmpty, p) },
    { key: 'neTable', ns: nsTable, start: (p) => nodeExporter(nsTable, p) },
    { key: 'minimal', ns: nsEmpty, start: (p) => minimalApp(nsEmpty, p) },
  ];
  const children = [];
  const scrapers = [];
  try {
    for (const [i, s] of subjects.entries()) {
      s.port = port0 + i;
      s.child = await s.start(s.port);
      children.push(s.child);
    }
    for (const ns of [nsEmpty, nsTable]) {
      const urls = subjects.filter((s) => s.ns === ns).map((s) => `http://127.0.0.1:${s.port}/metrics`);
      scrapers.push(spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', SCRAPER, ...urls], { stdio: ['ignore', 'ignore', 'inherit'] }));
    }
    // Start-up (module loading, JIT of the first scrapes, the first scan) is not idle cost.
    await sleep(20_000);
    const before = subjects.map((s) => cpuSeconds(s.child.pid));
    const t0 = performance.now();
    await sleep(IDLE_SECONDS * 1000);
    const seconds = (performance.now() - t0) / 1000;
    for (const [i, s] of subjects.entries()) {
      s.cpuPercent = ((cpuSeconds(s.child.pid) - before[i]) / seconds) * 100;
      s.mem = memoryMB(s.child.pid);
    }
    const by = Object.fromEntries(subjects.map((s) => [s.key, s]));
    raw.idle = Object.fromEntries(subjects.map((s) => [s.key, { cpuPercent: s.cpuPercent, mem: s.mem }]));
    console.log(`idle over ${fmt(seconds, 0)} s: ${subjects.map((s) => `${s.key} ${fmt(s.cpuPercent, 3)} % CPU, RSS ${fmt(s.mem.rss, 1)} MB (peak ${fmt(s.mem.hwm, 1)})`).join('; ')}`);
    const idleRow = (what, subj, peer) =>
      row(`idle CPU, 15 s scrapes, ${what}, default collectors vs node_exporter with all its defaults (${fmt(seconds, 0)} s)`, `${fmt(subj.cpuPercent, 3)} % of a core`, `${fmt(peer.cpuPercent, 3)} %`, subj.cpuPercent / peer.cpuPercent, `≤ ${GOALS.idle}×`, subj.cpuPercent / peer.cpuPercent <= GOALS.idle);
    idleRow('empty table', by.empty, by.neEmpty);
    idleRow(`${IDLE_TABLE / 1000}k-entry table`, by.table, by.neTable);
    const r = by.empty.mem.rss / by.minimal.mem.rss;
    row(`idle RSS after ${fmt(seconds + 20, 0)} s, default collectors vs minimal Fastify + prom-client + pino app, same Node`, `${fmt(by.empty.mem.rss, 1)} MB (peak ${fmt(by.empty.mem.hwm, 1)})`, `${fmt(by.minimal.mem.rss, 1)} MB`, r, `≤ ${GOALS.rss}×`, r <= GOALS.rss);
  } finally {
    for (const s of scrapers) s.kill('SIGTERM');
    await Promise.all(children.map(stop));
  }
}

async function bigTablePart(ns, port0) {
  const { count, seconds } = buildTable(ns, BIG_TABLE);
  console.log(`table: ${count} entries in ${ns}, built in ${fmt(seconds, 1)} s`);
  const label = `${fmt(count / 1e6, 2)}M`;
  if (PARTS.has('proc')) {
    const floors = floorTimes(ns, CAT_FLOOR, 3);
    const r = await measureExporter(ns, port0, [], 4);
    floors.push(...floorTimes(ns, CAT_FLOOR, 3));
    const floor = Math.min(...floors);
    const latency = await measureLatencyFloor(ns, port0 + 1, r.body, 15, CAT_FLOOR);
    raw.proc = { floors, scans: r.scans, hwmMB: r.hwmMB, during: summary(r.during), latencyFloor: summary(latency.latencies) };
    console.log(`proc: cat ${floors.map((f) => fmt(f)).join(', ')} s; scans ${r.scans.map((s) => fmt(s.duration)).join(', ')} s; peak RSS ${fmt(r.hwmMB, 1)} MB; /metrics p99 ${fmt(quantile(r.during, 0.99))} ms (floor ${fmt(quantile(latency.latencies, 0.99))} ms)`);
    row(`${label}-entry scan from /proc, default collectors, 50 scrapes/s (fastest scan after the first vs fastest cat)`, `${fmt(r.bestScan)} s`, `\`cat /proc/net/nf_conntrack\` ${fmt(floor)} s`, r.bestScan / floor, `≤ ${GOALS.proc}×`, r.bestScan / floor <= GOALS.proc);
    row('peak RSS during /proc scans', `${fmt(r.hwmMB, 1)} MB`, '—', r.hwmMB / GOALS.rssMB, `≤ ${GOALS.rssMB} MB`, r.hwmMB <= GOALS.rssMB);
    latencyRow('/proc scans', r, latency, undefined);
  }
  if (PARTS.has('netlink')) {
    const floors = floorTimes(ns, CONNTRACK_FLOOR, 2);
    const r = await measureExporter(ns, port0, ['--collector.table.source=netlink'], 3);
    floors.push(...floorTimes(ns, CONNTRACK_FLOOR, 2));
    const floor = Math.min(...floors);
    const latency = await measureLatencyFloor(ns, port0 + 1, r.body, 20, CONNTRACK_FLOOR);
    raw.netlink = { floors, scans: r.scans, hwmMB: r.hwmMB, during: summary(r.during), latencyFloor: summary(latency.latencies) };
    console.log(`netlink: conntrack -L ${floors.map((f) => fmt(f)).join(', ')} s; scans ${r.scans.map((s) => fmt(s.duration)).join(', ')} s; peak RSS ${fmt(r.hwmMB, 1)} MB`);
    row(`${label}-entry scan through \`conntrack -L\` (\`--collector.table.source=netlink\`), default collectors, 50 scrapes/s`, `${fmt(r.bestScan)} s`, `\`conntrack -L -o extended > /dev/null\` ${fmt(floor)} s`, r.bestScan / floor, `≤ ${GOALS.netlink}×`, r.bestScan / floor <= GOALS.netlink);
    row('peak RSS during `conntrack -L` scans', `${fmt(r.hwmMB, 1)} MB`, '—', r.hwmMB / GOALS.rssMB, `≤ ${GOALS.rssMB} MB`, r.hwmMB <= GOALS.rssMB);
    latencyRow('`conntrack -L` scans', r, latency, GOALS.p99);
  }
}

const summary = (sorted) => ({ n: sorted.length, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted.at(-1) });

function latencyRow(what, r, latency, goal) {
  const p99 = quantile(r.during, 0.99);
  const fp99 = quantile(latency.latencies, 0.99);
  row(`/metrics p99 during ${what} vs a bare Node.js server sending the same body under the same table reads`, `${fmt(p99, 1)} ms (p50 ${fmt(quantile(r.during, 0.5), 1)}, ${r.during.length} requests)`, `${fmt(fp99, 1)} ms`, p99 / fp99, goal ? `≤ ${goal}×` : '', goal ? p99 / fp99 <= goal : undefined);
}

function printTable() {
  console.log('\n| figure | this project | peer / floor | ratio | goal | |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.figure} | ${r.subject} | ${r.peer} | ${Number.isFinite(r.ratio) ? `${fmt(r.ratio)}×` : '—'} | ${r.goal} | ${r.verdict} |`);
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('the fleet benchmark needs root (network namespaces)');
  if (!existsSync(MAX_PATH)) throw new Error(`${MAX_PATH} missing: load nf_conntrack`);
  if (!existsSync(MAIN)) throw new Error('dist/main.js missing: npm run build');
  for (const tool of [NODE_EXPORTER, 'wrk', 'conntrack']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
      throw new Error(`${tool} not found (prometheus-node-exporter: apt-get install prometheus-node-exporter, or NODE_EXPORTER=/path/to/node_exporter; wrk: apt-get install wrk)`);
    }
  }
  const { COLLECTORS } = await import(join(ROOT, 'dist', 'collectors', 'index.js'));
  COLLECTOR_NAMES = COLLECTORS.map((c) => c.name);
  const ne = spawnSync(NODE_EXPORTER, ['--version'], { encoding: 'utf8' });
  console.log(`parts: ${[...PARTS].join(', ')}; ${ROUNDS} rounds; node ${process.version}; ${(ne.stdout || ne.stderr).split('\n')[0]}`);

  const id = randomBytes(3).toString('hex');
  const names = [];
  const ns = (what) => {
    const n = `cte-bench-fleet-${what}-${id}`;
    names.push(n);
    return n;
  };
  const ports = Array.from({ length: 10 }, (_, i) => BASE_PORT + i);
  try {
    if (PARTS.has('scrape') || PARTS.has('idle')) {
      const empty = ns('empty');
      createNamespace(empty, ports);
      if (PARTS.has('scrape')) await scrapePart(empty, BASE_PORT);
      if (PARTS.has('idle')) {
        const table = ns('10k');
        createNamespace(table, ports);
        // 10k entries fit under the usual nf_conntrack_max; the lock keeps others from lowering it meanwhile.
        await acquireLock();
        try {
          const { count } = buildTable(table, IDLE_TABLE);
          console.log(`idle table: ${count} entries`);
        } finally {
          releaseLock();
        }
        await idlePart(empty, table, BASE_PORT);
      }
    }
    if (PARTS.has('proc') || PARTS.has('netlink')) {
      const big = ns('1m');
      createNamespace(big, ports);
      await acquireLock();
      try {
        await bigTablePart(big, BASE_PORT);
      } finally {
        releaseLock();
      }
    }
  } finally {
    for (const n of names) deleteNamespace(n);
    printTable();
    if (process.env.BENCH_JSON) writeFileSync(process.env.BENCH_JSON, JSON.stringify({ rows, raw }, null, 2));
  }
}

main().catch((err) => {
  console.error(err.stack ?? String(err));
  process.exit(1);
});
