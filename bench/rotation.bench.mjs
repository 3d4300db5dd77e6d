#!/usr/bin/env node
// Log rotation benchmark: why the kernel_log file source has its own follower instead of the
// `tail` npm package (a devDependency, only for this comparison).
//
// A writer thread appends numbered lines to a file and rotates it every 100-200 lines (every
// ~50 ms, then every ~1.5 s) as logrotate does (shift .N to .N+1, then rename + create, or copy + truncate, in
// turn), without waiting for anyone. Each follower starts at the file's end; afterwards each
// gets 3 s to catch up. Each line is a table-full message whose netns number is its sequence
// number, so the lines that arrived are known exactly (for our follower, through the netns label
// it reports). It prints, per follower, the lines delivered out of those written, and how many
// were missing or delivered twice. The target is all of them, exactly once.
import { Worker } from 'node:worker_threads';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import TailPackage from 'tail';
import { FileSource } from '../dist/kernel-log/sources/file.js';

const ROTATIONS = 10;
/** Two paces: a rotation every ~50 ms (as the exactness test does), and every ~1.5 s. */
const PACES = [
  { perRotation: 200, spacingMs: 0.2 },
  { perRotation: 100, spacingMs: 15 },
];

const WRITER = `
const { appendFileSync, copyFileSync, existsSync, renameSync, truncateSync, writeFileSync } = require('node:fs');
const { parentPort, workerData: { path, rotations, perRotation, spacingMs } } = require('node:worker_threads');
const pause = new Int32Array(new SharedArrayBuffer(4));
let written = 0;
for (let r = 0; r < rotations; r++) {
  for (let i = 0; i < perRotation; i++) {
    appendFileSync(path, 'May 22 06:38:04 web1 kernel: [38775494.392631] nf_conntrack: nf_conntrack: table full in netns ' + written++ + ', dropping packet\\n');
    Atomics.wait(pause, 0, 0, spacingMs);
  }
  for (let k = 5; k >= 1; k--) if (existsSync(path + '.' + k)) renameSync(path + '.' + k, path + '.' + (k + 1));
  if (r % 2 === 0) { renameSync(path, path + '.1'); writeFileSync(path, ''); }
  else { copyFileSync(path, path + '.1'); truncateSync(path, 0); }
}
parentPort.postMessage(written);
`;

function write(path, pace) {
  return new Promise((resolve, reject) => {
    const w = new Worker(WRITER, { eval: true, workerData: { path, rotations: ROTATIONS, ...pace } });
    w.once('message', resolve);
    w.once('error', reject);
  });
}

/** Starts a follower on a fresh file, runs the writer, waits, returns the line numbers delivered. */
async function run(name, follow, pace) {
  const dir = mkdtempSync(join(tmpdir(), 'cte-rotation-'));
  const path = join(dir, 'kern.log');
  writeFileSync(path, 'May 22 06:38:03 web1 kernel: [38775494.0] eth0: link up (before start, not counted)\n');
  const numbers = [];
  const stop = await follow(path, (n) => numbers.push(n));
  await new Promise((r) => setTimeout(r, 300));
  const written = await write(path, pace);
  await new Promise((r) => setTimeout(r, 3000));
  await stop();
  rmSync(dir, { recursive: true, force: true });
  const seen = new Map();
  for (const n of numbers) seen.set(n, (seen.get(n) ?? 0) + 1);
  let missing = 0;
  for (let i = 0; i < written; i++) if (!seen.has(i)) missing++;
  const twice = [...seen.values()].filter((c) => c > 1).length;
  const ok = missing === 0 && twice === 0 && numbers.length === written;
  console.log(
    `${name.padEnd(34)} ${String(numbers.length).padStart(5)} of ${written} lines delivered, ${missing} missing, ${twice} twice  ${ok ? 'EXACT' : 'LOST OR DUPLICATED'}`,
  );
}

const tailFollower = (options) => async (path, onNumber) => {
  const t = new TailPackage.Tail(path, { follow: true, ...options });
  t.on('line', (text) => {
    const m = /netns (\d+),/.exec(text);
    if (m) onNumber(Number(m[1]));
  });
  t.on('error', () => {});
  return async () => t.unwatch();
};

const ours = async (path, onNumber) => {
  const source = new FileSource({ path, fromStart: false });
  await source.start({ line: (match) => match?.netns && onNumber(Number(match.netns)), lost: () => {} });
  await source.idle();
  return () => source.stop();
};

for (const pace of PACES) {
  console.log(`${ROTATIONS} rotations (rename + create and copytruncate in turn), ${pace.perRotation} lines each, ${pace.spacingMs} ms apart`);
  await run('tail 2.2.6 (fs.watch)', tailFollower({}), pace);
  await run('tail 2.2.6 (useWatchFile, 100 ms)', tailFollower({ useWatchFile: true, fsWatchOptions: { interval: 100 } }), pace);
  await run('conntrack-exporter FileSource', ours, pace);
}
