/**
 * Following a log file through rotation: every line counted exactly once.
 * Each line written is a kernel table-full message whose netns label carries
 * its sequence number, so the sink sees exactly which lines arrived.
 */
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Match } from '../../src/kernel-log/classify.js';
import type { LineSink } from '../../src/kernel-log/source.js';
import { FileSource } from '../../src/kernel-log/sources/file.js';

const line = (i: number): string =>
  `May 22 06:38:04 web1 kernel: [38775494.392631] nf_conntrack: nf_conntrack: table full in netns ${i}, dropping packet\n`;

class RecordingSink implements LineSink {
  /** Lines seen so far, readable from a worker thread. */
  readonly progress = new SharedArrayBuffer(4);
  lines = 0;
  other = 0;
  readonly seen: number[] = [];
  line(match: Match | undefined): void {
    this.lines++;
    Atomics.store(new Int32Array(this.progress), 0, this.lines);
    if (match?.kind === 'event' && match.netns !== '') this.seen.push(Number(match.netns));
    else this.other++;
  }
  lost(): void {
    throw new Error('a file source reports no lost records');
  }
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) return;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Appends numbered lines (0.2 ms apart) and rotates every `perRotation` lines, alternating
 * rename + create and copytruncate, shifting `.k` to `.k+1` first as logrotate does (rotate 5).
 * Posts the number of lines written.
 *
 * Before each rotation it waits (up to 2 s) until the follower has read all but the last few
 * lines: a rotation then still finds unread lines in the old file (or in the copy), but the
 * follower is never several rotations behind. That is the guarantee: exactly once as long as the
 * follower notices each rotation before the next one (logrotate runs hourly or daily). Letting it
 * fall two rotations behind (rename and copytruncate in turn) lost or repeated 20-30 lines in 5 of
 * 18 runs with both cores busy: a known limitation, see src/kernel-log/sources/file.ts.
 */
const WRITER = `
const { appendFileSync, copyFileSync, existsSync, renameSync, truncateSync, writeFileSync } = require('node:fs');
const { parentPort, workerData: { path, rotations, perRotation, progress } } = require('node:worker_threads');
const seen = new Int32Array(progress);
const line = ${line.toString()};
const pause = new Int32Array(new SharedArrayBuffer(4));
let written = 0;
for (let r = 0; r < rotations; r++) {
  for (let i = 0; i < perRotation; i++) {
    appendFileSync(path, line(written++));
    Atomics.wait(pause, 0, 0, 0.2);
  }
  const deadline = Date.now() + 2000;
  while (Atomics.load(seen, 0) < written - 5 && Date.now() < deadline) Atomics.wait(pause, 0, 0, 0.5);
  for (let k = 5; k >= 1; k--) if (existsSync(path + '.' + k)) renameSync(path + '.' + k, path + '.' + (k + 1));
  if (r % 2 === 0) {
    renameSync(path, path + '.1');
    writeFileSync(path, '');
  } else {
    copyFileSync(path, path + '.1');
    truncateSync(path, 0);
  }
}
for (let i = 0; i < 7; i++) appendFileSync(path, line(written++));
parentPort.postMessage(written);
`;

describe('FileSource', () => {
  let dir: string;
  let path: string;
  let source: FileSource | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kernel-log-file-'));
    path = join(dir, 'kern.log');
  });
  afterEach(async () => {
    await source?.stop();
    source = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('counts exactly the lines written during 100 rotations (50 rename + create, 50 copytruncate)', async () => {
    writeFileSync(path, line(-1)); // before start: not counted
    const sink = new RecordingSink();
    const warnings: string[] = [];
    source = new FileSource({ path, fromStart: false, pollMs: 20, warn: (m) => warnings.push(m) });
    await source.start(sink);
    await source.idle();

    // The writer runs in a worker thread, as a logging daemon and logrotate would run in other
    // processes: same-thread writes would starve the follower's event loop.
    const written = await new Promise<number>((resolve, reject) => {
      const worker = new Worker(WRITER, { eval: true, workerData: { path, rotations: 100, perRotation: 20, progress: sink.progress } });
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await until(() => sink.lines >= written);
    await new Promise((r) => setTimeout(r, 100)); // anything extra would show up now
    await source.idle();
    expect(warnings).toEqual([]);
    expect(sink.other).toBe(0);
    const counts = new Map<number, number>();
    for (const n of sink.seen) counts.set(n, (counts.get(n) ?? 0) + 1);
    const twice = [...counts].filter(([, c]) => c > 1).map(([n]) => n);
    const missing = Array.from({ length: written }, (_, i) => i).filter((i) => !counts.has(i));
    expect({ twice, missing }, `of ${written} lines, ${sink.seen.length} delivered`).toEqual({ twice: [], missing: [] });
    expect(sink.seen.length).toBe(written);
  });

  it('reads the backlog with from-start, then follows', async () => {
    writeFileSync(path, line(0) + line(1));
    const sink = new RecordingSink();
    source = new FileSource({ path, fromStart: true, pollMs: 20 });
    await source.start(sink);
    appendFileSync(path, line(2));
    await until(() => sink.lines >= 3);
    expect(sink.seen).toEqual([0, 1, 2]);
  });

  it('waits for a missing file, reports it, and reads it whole once it appears', async () => {
    const sink = new RecordingSink();
    source = new FileSource({ path, fromStart: false, pollMs: 20 });
    await source.start(sink);
    await source.idle();
    expect(source.problem()?.message).toMatch(/does not exist/);
    writeFileSync(path, line(0));
    await until(() => sink.lines >= 1);
    await source.idle();
    expect(sink.seen).toEqual([0]);
    expect(source.problem()).toBeUndefined();
  });

  it('reports the file missing after it is deleted, and follows it again once it is recreated', async () => {
    writeFileSync(path, line(0));
    const sink = new RecordingSink();
    source = new FileSource({ path, fromStart: true, pollMs: 20 });
    await source.start(sink);
    await until(() => sink.lines >= 1);
    rmSync(path);
    await until(() => source?.problem() !== undefined);
    expect(source.problem()?.message).toMatch(/does not exist/);
    writeFileSync(path, line(1));
    await until(() => sink.lines >= 2);
    await source.idle();
    expect(sink.seen).toEqual([0, 1]);
    expect(source.problem()).toBeUndefined();
  });

  it('counts a 1 MB line and garbage once each and keeps going', async () => {
    writeFileSync(path, '');
    const sink = new RecordingSink();
    source = new FileSource({ path, fromStart: false, pollMs: 20 });
    await source.start(sink);
    await source.idle();
    appendFileSync(path, Buffer.concat([Buffer.alloc(1024 * 1024, 0x78), Buffer.from('\n'), Buffer.from([0xff, 0xfe, 0x00, 0x0a])]));
    appendFileSync(path, line(5));
    await until(() => sink.lines >= 3);
    await source.idle();
    expect(sink.lines).toBe(3);
    expect(sink.seen).toEqual([5]);
  });

  it('reports a file it cannot open as a problem', async () => {
    writeFileSync(path, '');
    // A path through a regular file fails with ENOTDIR, as root too (EACCES cannot be provoked as root).
    source = new FileSource({ path: join(path, 'x'), fromStart: false, pollMs: 20 });
    await source.start(new RecordingSink());
    await source.idle();
    expect(source.problem()?.message).toMatch(/cannot open .*ENOTDIR/);
  });
});
