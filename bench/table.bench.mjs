#!/usr/bin/env node
// Table-scan benchmark (issue 3): a 1,000,000-entry connection table in a
// network namespace, then, in one run:
//   - the floor: `cat /proc/net/nf_conntrack > /dev/null` inside the namespace;
//   - the exporter (dist/main.js, run inside the namespace): scan wall time
//     (its conntrack_table_scan_duration_seconds), peak RSS (VmHWM) and
//     /metrics latency p50/p99 while scans run, and for comparison between scans;
//   - a latency floor: the same probe against a bare Node.js HTTP server that
//     sends the exporter's own last body while `cat` reads the table in a loop
//     (the kernel work of a scan, without the exporter).
// Twice: with the default collectors (as shipped) and with the table collector
// alone, which isolates what the scan itself costs.
//
// Needs root. Holds the kernel-test lock (scripts/kernel-lock.mjs) for the
// whole run, raises the global nf_conntrack_max while the table is built and
// restores it, and deletes the namespace at the end.
//
// TABLE_BENCH_ENTRIES=200000 npm run bench table  — a smaller table; TABLE_BENCH_SCANS=2 — fewer scans.
// BENCH_NODE_FLAGS='--trace-gc' BENCH_STDOUT=/tmp/gc.log  — node flags for the exporter, and a
// file for its stdout (V8's traces go there), to see where time and memory go.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { acquireLock, MAX_PATH, readConntrackMax, releaseLock, setConntrackMax } from '../scripts/kernel-lock.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = join(ROOT, 'dist', 'main.js');
const ENTRIES = Number(process.env.TABLE_BENCH_ENTRIES ?? 1_000_000);
const PORT = 19790;
const TARGETS = { scanRatio: 1.2, rssMB: 100, p99Ms: 10 };
/** Completed scans per exporter run: the first pays for JIT warm-up, the fastest of the rest is compared with the floor. */
const SCANS = Number(process.env.TABLE_BENCH_SCANS ?? 4);
const FLOOR_PORT = PORT + 1;

// --- Helpers.
function run(file, args, opts = {}) {
  const r = spawnSync(file, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...opts });
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.status ?? r.signal}: ${(r.stderr ?? '').trim()}`);
  return r.stdout;
}

const inNs = (ns, file, args, opts) => run('ip', ['netns', 'exec', ns, file, ...args], opts);

function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const median = (values) => quantile([...values].sort((a, b) => a - b), 0.5);

/** Wall time of `fn` in seconds. */
function timed(fn) {
  const t = performance.now();
  fn();
  return (performance.now() - t) / 1000;
}

// Distinct UDP flows from 10.0.0.1 (on lo), one source port per 1000 flows, to 10.1.x.y: delivered to
// no socket, the entries stay (UDP timeout raised). Ten "hot" destinations 10.9.0.k:6379 get one flow
// from every k-th socket, so the top list has distinct counts above a million distinct destinations.
const FLOOD_SCRIPT = `
const dgram = require('node:dgram');
const n = Number(process.argv[1]);
(async () => {
  const payload = Buffer.alloc(1);
  const perSocket = 1000;
  for (let s = 0; s * perSocket < n; s++) {
    const sock = dgram.createSocket('udp4');
    await new Promise((r) => sock.bind(1024 + s, '10.0.0.1', r));
    for (let i = 0; i < perSocket && s * perSocket + i < n; i++) {
      const d = s * perSocket + i;
      const hot = i < 10 && s % (i + 1) === 0;
      const ip = hot ? '10.9.0.' + (i + 1) : '10.1.' + ((d >> 8) & 255) + '.' + (d & 255);
      const port = hot ? 6379 : 1024 + (d >> 16);
      await new Promise((r) => sock.send(payload, port, ip, r));
    }
    sock.close();
  }
})();
`;

// GETs /metrics every 20 ms (50 scrapes a second, a thousand times Prometheus' usual rate, yet not a
// load that keeps the event loop busy by itself) until it has seen `scans` completed scans (or the
// deadline; with 0 scans, until the deadline), recording each request's start, latency and the scan the body reports.
const PROBE_SCRIPT = `
const [url, scans, limitMs] = process.argv.slice(1);
(async () => {
  const requests = [], seen = new Map(), heap = {};
  let lastBody = '';
  const deadline = Date.now() + Number(limitMs);
  while ((Number(scans) === 0 || seen.size < Number(scans)) && Date.now() < deadline) {
    const start = performance.timeOrigin + performance.now();
    let body = '';
    try { body = await (await fetch(url)).text(); } catch { await new Promise((r) => setTimeout(r, 50)); continue; }
    const end = performance.timeOrigin + performance.now();
    // The exporter's own event-loop delay since the previous scrape (prom-client resets it per scrape).
    // prom-client's monitor samples every 10 ms and records the interval, so 10 ms means no delay.
    const lag = /^nodejs_eventloop_lag_max_seconds (\\S+)$/m.exec(body);
    requests.push([start, end - start, lag ? Math.max(0, Number(lag[1]) * 1000 - 10) : NaN]);
    const ts = /^conntrack_table_scan_timestamp_seconds (\\S+)$/m.exec(body);
    const dur = /^conntrack_table_scan_duration_seconds (\\S+)$/m.exec(body);
    const lines = /^conntrack_table_scanned_entries (\\S+)$/m.exec(body);
    if (ts && dur) seen.set(ts[1], [Number(ts[1]), Number(dur[1]), Number(lines?.[1])]);
    // The largest V8 heap spaces seen: where the exporter's memory goes.
    for (const m of body.matchAll(/^nodejs_heap_space_size_total_bytes\\{space="(\\w+)"\\} (\\S+)$/gm)) heap[m[1]] = Math.max(heap[m[1]] ?? 0, Number(m[2]));
    lastBody = body;
    await new Promise((r) => setTimeout(r, 20));
  }
  console.log(JSON.stringify({ requests, scans: [...seen.values()], heap, lastBody }));
})();
`;

/** Runs the exporter in `ns` with `args` through two completed scans; returns its figures. */
async function measureExporter(ns, args) {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, ...(process.env.BENCH_NODE_FLAGS ? process.env.BENCH_NODE_FLAGS.split(' ') : []), MAIN, `--web.listen-address=127.0.0.1:${PORT}`, '--collector.table.interval=1s', ...args], {
    stdio: ['ignore', process.env.BENCH_STDOUT ? (await import('node:fs')).openSync(process.env.BENCH_STDOUT, 'a') : 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (b) => (log += b.toString()));
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`exporter did not start:\n${log}`)), 20_000);
      child.stderr.on('data', () => log.includes('listening on') && (clearTimeout(timer), resolve()));
      child.on('exit', (code) => reject(new Error(`exporter exited ${code}:\n${log}`)));
    });
    // The first scan starts with the exporter; the next one 10× its duration after it.
    const probe = JSON.parse(inNs(ns, process.execPath, ['-e', PROBE_SCRIPT, `http://127.0.0.1:${PORT}/metrics`, String(SCANS), '300000']));
    // `ip netns exec` execs the exporter, so the child's pid is the exporter's.
    const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
    const hwmMB = Number(/VmHWM:\s+(\d+)/.exec(status)[1]) / 1024;
    const kB = (field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1]) / 1024;
    const rssNow = { anon: kB('RssAnon'), file: kB('RssFile') };
    const scans = probe.scans.map(([end, duration, lines]) => ({ start: end - duration, end, duration, lines }));
    const during = [];
    const between = [];
    const lagDuring = [];
    const perScan = scans.map(() => []);
    for (const [start, latency, lag] of probe.requests) {
      const s = start / 1000;
      const e = s + latency / 1000;
      const scanIndex = scans.findIndex((scan) => s < scan.end && e > scan.start);
      const inScan = scanIndex >= 0;
      (inScan ? during : between).push(latency);
      if (inScan) perScan[scanIndex].push(latency);
      if (inScan && Number.isFinite(lag)) lagDuring.push(lag);
    }
    during.sort((a, b) => a - b);
    between.sort((a, b) => a - b);
    lagDuring.sort((a, b) => a - b);
    for (const l of perScan) l.sort((a, b) => a - b);
    // Which request was the slowest: the first ones after start run code V8 has not compiled yet.
    let slowest = 0;
    probe.requests.forEach(([, latency], i) => latency > probe.requests[slowest][1] && (slowest = i));
    return { scans, hwmMB, during, between, lagDuring, perScan, slowest: [slowest + 1, probe.requests[slowest]?.[1]], heap: probe.heap, rssNow, body: probe.lastBody };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
  }
}

// A bare Node.js HTTP server in the namespace that sends `body` (the exporter's own last /metrics
// body, compressed in advance as the exporter compresses it for a client that accepts gzip), probed
// like the exporter for `seconds` while `cat` reads the table in a loop: the latency this machine
// gives a Node.js server that does nothing per request, under the kernel work of a scan.
async function measureLatencyFloor(ns, body, seconds) {
  const file = join(tmpdir(), `cte-bench-body-${process.pid}.txt`);
  writeFileSync(file, body);
  const serve = `const z=require('node:zlib'),b=require('node:fs').readFileSync(${JSON.stringify(file)}),g=z.gzipSync(b);
require('node:http').createServer((q,s)=>{s.setHeader('content-type','text/plain; version=0.0.4; charset=utf-8');
if(/gzip/.test(q.headers['accept-encoding']??'')){s.setHeader('content-encoding','gzip');s.end(g)}else s.end(b)})
.listen(${FLOOR_PORT},'127.0.0.1',()=>console.log('up'))`;
  const server = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', serve], { stdio: ['ignore', 'pipe', 'inherit'] });
  const reader = spawn('ip', ['netns', 'exec', ns, 'sh', '-c', 'while :; do cat /proc/net/nf_conntrack > /dev/null; done'], { stdio: 'ignore', detached: true });
  try {
    await new Promise((resolve, reject) => {
      server.stdout.once('data', resolve);
      server.once('exit', (code) => reject(new Error(`floor server exited ${code}`)));
    });
    const probe = JSON.parse(inNs(ns, process.execPath, ['-e', PROBE_SCRIPT, `http://127.0.0.1:${FLOOR_PORT}/`, '0', String(seconds * 1000)]));
    return { latencies: probe.requests.map(([, latency]) => latency).sort((a, b) => a - b), bytes: Buffer.byteLength(body) };
  } finally {
    process.kill(-reader.pid, 'SIGKILL');
    server.kill('SIGTERM');
    rmSync(file, { force: true });
  }
}

function report(name, floor, r, latencyFloor) {
  // The first scan also pays for JIT warm-up; like the floor (the fastest cat), the scan compared is
  // the fastest of the later ones, the least disturbed by whatever else the machine runs. All are printed.
  const steady = r.scans.length > 1 ? r.scans.slice(1) : r.scans;
  const scanSeconds = Math.min(...steady.map((s) => s.duration));
  const fmt = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
  const p50 = quantile(r.during, 0.5);
  const p99 = quantile(r.during, 0.99);
  console.log(`\n--- exporter, ${name}`);
  console.log(`scans measured:        ${r.scans.map((s) => `${fmt(s.duration)} s (${s.lines} lines)`).join(', ')}`);
  console.log(`scan wall time:        ${fmt(scanSeconds)} s (fastest after the first)  = ${fmt(scanSeconds / floor)}× the floor (target ≤ ${TARGETS.scanRatio}×)  ${scanSeconds / floor <= TARGETS.scanRatio ? 'MET' : 'MISSED'}`);
  console.log(`peak RSS (VmHWM):      ${fmt(r.hwmMB, 1)} MB  = ${fmt(r.hwmMB / TARGETS.rssMB)}× the target ${TARGETS.rssMB} MB  ${r.hwmMB <= TARGETS.rssMB ? 'MET' : 'MISSED'}`);
  console.log(`/metrics during scans: p50 ${fmt(p50)} ms, p99 ${fmt(p99)} ms over ${r.during.length} requests  = ${fmt(p99 / TARGETS.p99Ms)}× the target p99 ${TARGETS.p99Ms} ms  ${p99 <= TARGETS.p99Ms ? 'MET' : 'MISSED'}`);
  const fp50 = quantile(latencyFloor.latencies, 0.5);
  const fp99 = quantile(latencyFloor.latencies, 0.99);
  console.log(`  vs the latency floor: p50 ${fmt(p50 / fp50)}×, p99 ${fmt(p99 / fp99)}× a bare Node.js server sending the same ${latencyFloor.bytes}-byte body (p50 ${fmt(fp50)} ms, p99 ${fmt(fp99)} ms over ${latencyFloor.latencies.length} requests, cat reading the table meanwhile)`);
  const heap = Object.entries(r.heap).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${fmt(v / 1e6, 1)}`);
  console.log(`  per scan:            ${r.perScan.map((l, i) => `scan ${i + 1}: p50 ${fmt(quantile(l, 0.5))} ms, p99 ${fmt(quantile(l, 0.99))} ms, max ${fmt(l.at(-1))} ms (${l.length})`).join('; ')}`);
  console.log(`  slowest request:     ${fmt(r.slowest[1])} ms, request #${r.slowest[0]} after the exporter started listening`);
  console.log(`event-loop delay:      during scans, the longest stall between two requests (beyond prom-client's 10 ms sampling): p50 ${fmt(quantile(r.lagDuring, 0.5))} ms, p99 ${fmt(quantile(r.lagDuring, 0.99))} ms, max ${fmt(r.lagDuring.at(-1))} ms`);
  console.log(`RSS at the end:        anonymous ${fmt(r.rssNow.anon, 1)} MB, file-backed ${fmt(r.rssNow.file, 1)} MB (mostly the node binary)`);
  console.log(`V8 heap spaces, max:   ${heap.join(', ')} MB (the rest of the RSS: Node's binary, libraries, threads)`);
  console.log(`/metrics between:      p50 ${fmt(quantile(r.between, 0.5))} ms, p99 ${fmt(quantile(r.between, 0.99))} ms over ${r.between.length} requests`);
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('the table benchmark needs root (network namespaces, nf_conntrack_max)');
  if (!existsSync(MAX_PATH)) throw new Error(`${MAX_PATH} missing: load nf_conntrack`);
  if (!existsSync(MAIN)) throw new Error('dist/main.js missing: npm run build');
  const { COLLECTORS } = await import(join(ROOT, 'dist', 'collectors', 'index.js'));
  const tableOnly = COLLECTORS.filter((c) => c.name !== 'table').map((c) => `--no-collector.${c.name}`);

  const ns = `cte-bench-table-${randomBytes(3).toString('hex')}`;
  await acquireLock();
  let created = false;
  try {
    run('ip', ['netns', 'add', ns]);
    created = true;
    inNs(ns, 'ip', ['link', 'set', 'lo', 'up']);
    inNs(ns, 'ip', ['addr', 'add', '10.0.0.1/8', 'dev', 'lo']);
    // Any ct expression makes the kernel track this namespace; the exporter's port stays untracked.
    const ruleset = `table inet bench {
  chain raw_pre { type filter hook prerouting priority raw; policy accept; tcp dport ${PORT} notrack; tcp sport ${PORT} notrack; }
  chain raw_out { type filter hook output priority raw; policy accept; tcp dport ${PORT} notrack; tcp sport ${PORT} notrack; }
  chain track { type filter hook output priority filter; policy accept; ct state new counter accept; }
}
`;
    inNs(ns, 'nft', ['-f', '-'], { input: ruleset });
    // /proc/sys/net is the namespace's own; a per-namespace UDP timeout keeps the flood's entries.
    inNs(ns, 'sh', ['-c', 'echo 3600 > /proc/sys/net/netfilter/nf_conntrack_udp_timeout']);

    const restoreMax = setConntrackMax(Math.max(readConntrackMax(), ENTRIES + 100_000));
    let buildSeconds;
    try {
      buildSeconds = timed(() => inNs(ns, process.execPath, ['-e', FLOOD_SCRIPT, String(ENTRIES)], { timeout: 600_000 }));
    } finally {
      restoreMax();
    }
    const count = Number(inNs(ns, 'conntrack', ['-C']).trim());
    console.log(`table:                 ${count} entries in ${ns}, built in ${buildSeconds.toFixed(1)} s (${Math.round(count / buildSeconds)}/s)`);

    const overhead = median([1, 2, 3].map(() => timed(() => inNs(ns, 'true', []))));
    // The fastest of five runs: on a shared machine, the least disturbed one is the floor.
    const floors = [1, 2, 3, 4, 5].map(() => timed(() => inNs(ns, 'sh', ['-c', 'cat /proc/net/nf_conntrack > /dev/null'])) - overhead);
    const floor = Math.min(...floors);
    console.log(`floor (cat):           ${floor.toFixed(2)} s  (fastest of runs: ${floors.map((f) => f.toFixed(2)).join(', ')})`);

    const defaults = await measureExporter(ns, []);
    const alone = await measureExporter(ns, tableOnly);
    // Measured after the exporter runs, so the body size is the exporter's own.
    const latencyFloor = await measureLatencyFloor(ns, defaults.body, 15);
    report('default collectors', floor, defaults, latencyFloor);
    report(`table collector alone (${tableOnly.join(' ')})`, floor, alone, latencyFloor);
    const after = [1, 2, 3].map(() => timed(() => inNs(ns, 'sh', ['-c', 'cat /proc/net/nf_conntrack > /dev/null'])) - overhead);
    console.log(`\nfloor again (cat):     ${after.map((f) => f.toFixed(2)).join(', ')} s  (load drift check; scan ratios use ${floor.toFixed(2)} s)`);
  } finally {
    if (created) spawnSync('ip', ['netns', 'del', ns]);
    releaseLock();
  }
}

main().catch((err) => {
  console.error(err.stack ?? String(err));
  process.exit(1);
});
