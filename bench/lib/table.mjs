// Shared by bench/table.bench.mjs and bench/fleet.bench.mjs: a network namespace with a connection
// table of a chosen size, the floors a scan is compared with (`cat`, `conntrack -L`), the exporter
// probed at 50 scrapes a second through a number of scans, and the latency floor (a bare Node.js
// server under the same kernel work). Needs root; the caller holds the kernel lock
// (scripts/kernel-lock.mjs) whenever it builds a table larger than nf_conntrack_max allows.
import { spawn, spawnSync } from 'node:child_process';
import { openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readConntrackMax, setConntrackMax } from '../../scripts/kernel-lock.mjs';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MAIN = join(ROOT, 'dist', 'main.js');

export function run(file, args, opts = {}) {
  const r = spawnSync(file, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...opts });
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.status ?? r.signal}: ${(r.stderr ?? '').trim()}`);
  return r.stdout;
}

export const inNs = (ns, file, args, opts) => run('ip', ['netns', 'exec', ns, file, ...args], opts);

export function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

export const median = (values) => quantile([...values].sort((a, b) => a - b), 0.5);

/** Wall time of `fn` in seconds. */
export function timed(fn) {
  const t = performance.now();
  fn();
  return (performance.now() - t) / 1000;
}

/** CPU time (user + system, all threads, live and exited) of `pid` in seconds, from /proc/PID/stat. */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at field 3; utime and stime are 14 and 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** Memory of `pid` in MB: resident now, peak resident (VmHWM), anonymous and file-backed now. */
export function memoryMB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kB = (field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1]) / 1024;
  return { rss: kB('VmRSS'), hwm: kB('VmHWM'), anon: kB('RssAnon'), file: kB('RssFile') };
}

/**
 * Creates namespace `ns` with lo up (10.0.0.1/8) and an nftables rule that makes the kernel track
 * its connections, except TCP on `ports` (the servers the bench scrapes stay out of the table).
 */
export function createNamespace(ns, ports) {
  run('ip', ['netns', 'add', ns]);
  inNs(ns, 'ip', ['link', 'set', 'lo', 'up']);
  inNs(ns, 'ip', ['addr', 'add', '10.0.0.1/8', 'dev', 'lo']);
  const set = `{ ${ports.join(', ')} }`;
  const ruleset = `table inet bench {
  chain raw_pre { type filter hook prerouting priority raw; policy accept; tcp dport ${set} notrack; tcp sport ${set} notrack; }
  chain raw_out { type filter hook output priority raw; policy accept; tcp dport ${set} notrack; tcp sport ${set} notrack; }
  chain track { type filter hook output priority filter; policy accept; ct state new counter accept; }
}
`;
  inNs(ns, 'nft', ['-f', '-'], { input: ruleset });
  // /proc/sys/net is the namespace's own; a per-namespace UDP timeout keeps the flood's entries.
  inNs(ns, 'sh', ['-c', 'echo 3600 > /proc/sys/net/netfilter/nf_conntrack_udp_timeout']);
}

export const deleteNamespace = (ns) => spawnSync('ip', ['netns', 'del', ns]);

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

/**
 * Fills namespace `ns` (from createNamespace) with `entries` UDP entries, raising the global
 * nf_conntrack_max meanwhile if it is too low (the caller then holds the kernel lock). Returns the
 * entry count and the build time in seconds.
 */
export function buildTable(ns, entries) {
  const needed = entries + 100_000;
  const restoreMax = readConntrackMax() < needed ? setConntrackMax(needed) : () => {};
  let seconds;
  try {
    seconds = timed(() => inNs(ns, process.execPath, ['-e', FLOOD_SCRIPT, String(entries)], { timeout: 600_000 }));
  } finally {
    restoreMax();
  }
  return { count: Number(inNs(ns, 'conntrack', ['-C']).trim()), seconds };
}

/** Wall times (s) of `runs` runs of the shell command `cmd` in `ns`, less the cost of `ip netns exec` itself. */
export function floorTimes(ns, cmd, runs) {
  const overhead = median([1, 2, 3].map(() => timed(() => inNs(ns, 'true', []))));
  return Array.from({ length: runs }, () => timed(() => inNs(ns, 'sh', ['-c', cmd])) - overhead);
}

export const CAT_FLOOR = 'cat /proc/net/nf_conntrack > /dev/null';
export const CONNTRACK_FLOOR = 'conntrack -L -o extended > /dev/null 2>&1';

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
    // The exporter's event-loop lag: how long a callback it queued at the previous scrape waited.
    const lag = /^nodejs_eventloop_lag_seconds (\\S+)$/m.exec(body);
    requests.push([start, end - start, lag ? Number(lag[1]) * 1000 : NaN]);
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

/** Starts `file args` in `ns` (through `ip netns exec`, which execs it: the child's pid is the server's; '' for this namespace) and waits until it prints `ready`. */
export async function startInNs(ns, file, args, ready, opts = {}) {
  const argv = ns ? ['ip', ['netns', 'exec', ns, file, ...args]] : [file, args];
  const child = spawn(...argv, {
    stdio: ['ignore', opts.stdout !== undefined ? openSync(opts.stdout, 'a') : 'pipe', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (b) => (log += b.toString()));
  child.stdout?.on('data', (b) => (log += b.toString()));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${file} did not start:\n${log}`)), 20_000);
    const check = () => ready.test(log) && (clearTimeout(timer), resolve());
    child.stderr.on('data', check);
    child.stdout?.on('data', check);
    child.once('exit', (code) => (clearTimeout(timer), reject(new Error(`${file} exited ${code}:\n${log}`))));
  });
  child.stdout?.resume();
  child.stderr.resume();
  return child;
}

export async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

/** Runs the exporter in `ns` on `port` with `args` through `scans` completed scans (1 s interval); returns its figures. */
export async function measureExporter(ns, port, args, scans) {
  const nodeFlags = process.env.BENCH_NODE_FLAGS ? process.env.BENCH_NODE_FLAGS.split(' ') : [];
  const child = await startInNs(ns, process.execPath, [...nodeFlags, MAIN, `--web.listen-address=127.0.0.1:${port}`, '--collector.table.interval=1s', ...args], /listening on/, {
    stdout: process.env.BENCH_STDOUT,
  });
  try {
    // The first scan starts with the exporter; the next one 10× its duration after it.
    const probe = JSON.parse(inNs(ns, process.execPath, ['-e', PROBE_SCRIPT, `http://127.0.0.1:${port}/metrics`, String(scans), '400000']));
    const mem = memoryMB(child.pid);
    const found = probe.scans.map(([end, duration, lines]) => ({ start: end - duration, end, duration, lines }));
    const during = [];
    const between = [];
    const lagDuring = [];
    const perScan = found.map(() => []);
    for (const [start, latency, lag] of probe.requests) {
      const s = start / 1000;
      const e = s + latency / 1000;
      const scanIndex = found.findIndex((scan) => s < scan.end && e > scan.start);
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
    // The first scan also pays for JIT warm-up: like a floor (the fastest run), the scan compared is the
    // fastest of the later ones, the least disturbed by whatever else the machine runs.
    const steady = found.length > 1 ? found.slice(1) : found;
    return {
      scans: found,
      bestScan: Math.min(...steady.map((s) => s.duration)),
      hwmMB: mem.hwm,
      rssNow: { anon: mem.anon, file: mem.file },
      during,
      between,
      lagDuring,
      perScan,
      slowest: [slowest + 1, probe.requests[slowest]?.[1]],
      heap: probe.heap,
      body: probe.lastBody,
    };
  } finally {
    await stop(child);
  }
}

/**
 * A bare Node.js HTTP server in `ns` on `port` that sends `body` (the exporter's own last /metrics
 * body, compressed in advance as the exporter compresses it for a client that accepts gzip), probed
 * like the exporter for `seconds` while the shell command `load` (a table read) runs in a loop: the
 * latency this machine gives a Node.js server that does nothing per request, under the kernel work of a scan.
 */
export async function measureLatencyFloor(ns, port, body, seconds, load = CAT_FLOOR) {
  const file = join(tmpdir(), `cte-bench-body-${process.pid}.txt`);
  writeFileSync(file, body);
  const serve = `const z=require('node:zlib'),b=require('node:fs').readFileSync(${JSON.stringify(file)}),g=z.gzipSync(b);
require('node:http').createServer((q,s)=>{s.setHeader('content-type','text/plain; version=0.0.4; charset=utf-8');
if(/gzip/.test(q.headers['accept-encoding']??'')){s.setHeader('content-encoding','gzip');s.end(g)}else s.end(b)})
.listen(${port},'127.0.0.1',()=>console.log('up'))`;
  const server = await startInNs(ns, process.execPath, ['-e', serve], /up/);
  const reader = spawn('ip', ['netns', 'exec', ns, 'sh', '-c', `while :; do ${load}; done`], { stdio: 'ignore', detached: true });
  try {
    const probe = JSON.parse(inNs(ns, process.execPath, ['-e', PROBE_SCRIPT, `http://127.0.0.1:${port}/`, '0', String(seconds * 1000)]));
    return { latencies: probe.requests.map(([, latency]) => latency).sort((a, b) => a - b), bytes: Buffer.byteLength(body) };
  } finally {
    process.kill(-reader.pid, 'SIGKILL');
    await stop(server);
    rmSync(file, { force: true });
  }
}
