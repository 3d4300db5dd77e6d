/**
 * The table reader thread (src/table/read-worker.ts) streams a file to the
 * main thread in transferred chunks, at a lowered priority.
 *
 * The worker is started from its compiled file (new URL('./read-worker.js')),
 * so this test loads the build in dist/, which `npm test` makes first.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/kernel.js';

type Sources = typeof import('../../src/table/sources.js');
const { readFileInWorker, SourceAbsentError } = (await import(join(REPO_ROOT, 'dist', 'table', 'sources.js'))) as Sources;

const dir = mkdtempSync(join(tmpdir(), 'cte-read-worker-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Nice value of each thread of this process (field 19 of /proc/self/task/TID/stat). */
function threadNices(): number[] {
  return readdirSync('/proc/self/task').flatMap((tid) => {
    let stat: string;
    try {
      stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    } catch {
      return []; // a thread that ended after the directory was listed
    }
    // Fields after the parenthesised command name, which may contain spaces.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return [Number(rest[16])]; // field 19 overall: state is field 3, rest[0]
  });
}

describe.runIf(process.platform === 'linux')('readFileInWorker', () => {
  it('delivers every byte of the file in order, from a thread 10 nicer than the process', async () => {
    // 3 MiB of numbered lines: several 64 KiB chunks, more than the 8 buffers in flight.
    const lines: string[] = [];
    for (let i = 0, size = 0; size < 3 * 1024 * 1024; i++) {
      const line = `line ${i} ${'x'.repeat(i % 200)}\n`;
      lines.push(line);
      size += line.length;
    }
    const text = lines.join('');
    const path = join(dir, 'table');
    writeFileSync(path, text);

    const received: Buffer[] = [];
    const nicesWhileReading: number[][] = [];
    await readFileInWorker(path, (chunk) => {
      if (received.length === 0) nicesWhileReading.push(threadNices());
      received.push(Buffer.from(chunk)); // the chunk is lent: copy it
    });
    expect(Buffer.concat(received).toString()).toBe(text);
    expect(received.length).toBeGreaterThan(3 * 1024 * 1024 / 65536);
    // The main thread stays at the process's priority; exactly one thread, the reader, is 10 nicer.
    const base = threadNices()[0] as number;
    const nices = nicesWhileReading[0] as number[];
    expect(nices[0]).toBe(base);
    if (base > 9) return; // already nice: the reader is capped at 19, like other threads may be
    expect(nices.filter((n) => n === base + 10)).toHaveLength(1);
  });

  it('rejects with SourceAbsentError for a missing file', async () => {
    await expect(readFileInWorker(join(dir, 'missing'), () => {})).rejects.toBeInstanceOf(SourceAbsentError);
  });
});
