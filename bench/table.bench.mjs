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
// alone, which isolates what the scan itself costs. The helpers are shared with
// bench/fleet.bench.mjs (bench/lib/table.mjs).
//
// Needs root. Holds the kernel-test lock (scripts/kernel-lock.mjs) for the
// whole run, raises the global nf_conntrack_max while the table is built and
// restores it, and deletes the namespace at the end.
//
// TABLE_BENCH_ENTRIES=200000 npm run bench table  — a smaller table; TABLE_BENCH_SCANS=2 — fewer scans.
// BENCH_NODE_FLAGS='--trace-gc' BENCH_STDOUT=/tmp/gc.log  — node flags for the exporter, and a
// file for its stdout (V8's traces go there), to see where time and memory go.
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { acquireLock, MAX_PATH, releaseLock } from '../scripts/kernel-lock.mjs';
import {
  buildTable,
  CAT_FLOOR,
  createNamespace,
  deleteNamespace,
  floorTimes,
  MAIN,
  measureExporter,
  measureLatencyFloor,
  quantile,
  ROOT,
} from './lib/table.mjs';

const ENTRIES = Number(process.env.TABLE_BENCH_ENTRIES ?? 1_000_000);
const PORT = 19790;
const TARGETS = { scanRatio: 1.2, rssMB: 100, p99Ms: 10 };
/** Completed scans per exporter run: the first pays for JIT warm-up, the fastest of the rest is compared with the floor. */
const SCANS = Number(process.env.TABLE_BENCH_SCANS ?? 4);
const FLOOR_PORT = PORT + 1;

function report(name, floor, r, latencyFloor) {
  const scanSeconds = r.bestScan;
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
  console.log(`event-loop lag:        during scans, of a callback queued at each scrape (nodejs_eventloop_lag_seconds): p50 ${fmt(quantile(r.lagDuring, 0.5))} ms, p99 ${fmt(quantile(r.lagDuring, 0.99))} ms, max ${fmt(r.lagDuring.at(-1))} ms`);
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
    created = true;
    createNamespace(ns, [PORT, FLOOR_PORT]);
    const { count, seconds } = buildTable(ns, ENTRIES);
    console.log(`table:                 ${count} entries in ${ns}, built in ${seconds.toFixed(1)} s (${Math.round(count / seconds)}/s)`);

    // The fastest of five runs: on a shared machine, the least disturbed one is the floor.
    const floors = floorTimes(ns, CAT_FLOOR, 5);
    const floor = Math.min(...floors);
    console.log(`floor (cat):           ${floor.toFixed(2)} s  (fastest of runs: ${floors.map((f) => f.toFixed(2)).join(', ')})`);

    const defaults = await measureExporter(ns, PORT, [], SCANS);
    const alone = await measureExporter(ns, PORT, tableOnly, SCANS);
    // Measured after the exporter runs, so the body size is the exporter's own.
    const latencyFloor = await measureLatencyFloor(ns, FLOOR_PORT, defaults.body, 15);
    report('default collectors', floor, defaults, latencyFloor);
    report(`table collector alone (${tableOnly.join(' ')})`, floor, alone, latencyFloor);
    const after = floorTimes(ns, CAT_FLOOR, 3);
    console.log(`\nfloor again (cat):     ${after.map((f) => f.toFixed(2)).join(', ')} s  (load drift check; scan ratios use ${floor.toFixed(2)} s)`);
  } finally {
    if (created) deleteNamespace(ns);
    releaseLock();
  }
}

main().catch((err) => {
  console.error(err.stack ?? String(err));
  process.exit(1);
});
