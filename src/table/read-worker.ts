/**
 * Worker thread that reads the proc table file and hands the bytes to the
 * main thread, which parses them.
 *
 * The kernel formats the table inside read() (that is most of the cost of a
 * scan) and a seq_file read() returns at most one page, so a million entries
 * take ~40,000 read() calls. Done here, on another core, they overlap with
 * the parsing on the main thread instead of adding to it, and the event loop
 * serving /metrics never blocks in a read.
 *
 * Protocol: workerData is a ReadWorkerData. The worker owns `buffers`
 * ArrayBuffers and transfers each, filled, in a `chunk` message; the main
 * thread transfers it back when parsed. So memory is fixed at
 * buffers × chunkBytes, and a slow parser throttles the reads.
 */
import { closeSync, openSync, readlinkSync, readSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';

export interface ReadWorkerData {
  readonly path: string;
  readonly chunkBytes: number;
  readonly buffers: number;
}

export type ReadWorkerMessage =
  | { readonly type: 'chunk'; readonly buffer: ArrayBuffer; readonly length: number }
  | { readonly type: 'end' }
  | { readonly type: 'error'; readonly message: string; readonly code: string | undefined };

const port = parentPort;
if (!port) throw new Error('read-worker.js must run as a worker thread');
const { path, chunkBytes, buffers } = workerData as ReadWorkerData;

/** How much nicer than the process this thread runs (0 → 10). */
const BACKGROUND_NICE = 10;

/**
 * The table walk is background work: this thread lowers its own priority
 * (by BACKGROUND_NICE, at most to 19) so that, when cores are scarce, the kernel runs the thread serving
 * /metrics first. On Linux a nice value is per thread, and this thread's id is
 * the last part of /proc/thread-self. Best effort: without /proc mounted as
 * usual the read simply runs at the process's priority.
 */
function lowerOwnPriority(): void {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(tid) && tid > 0) setPriority(tid, Math.min(19, getPriority(tid) + BACKGROUND_NICE));
  } catch {
    // Not Linux, or no /proc: stay at the process's priority.
  }
}

const free: ArrayBuffer[] = [];
for (let i = 0; i < buffers; i++) free.push(new ArrayBuffer(chunkBytes));
let fd = -1;
let done = false;

function finish(message: ReadWorkerMessage): void {
  done = true;
  if (fd >= 0) closeSync(fd);
  fd = -1;
  port!.postMessage(message);
  port!.close();
}

function pump(): void {
  try {
    if (fd < 0) fd = openSync(path, 'r');
    while (!done && free.length > 0) {
      const buffer = free.pop() as ArrayBuffer;
      const view = new Uint8Array(buffer);
      let length = 0;
      let eof = false;
      while (length < view.length) {
        const n = readSync(fd, view, length, view.length - length, null);
        if (n === 0) {
          eof = true;
          break;
        }
        length += n;
      }
      if (length > 0) port!.postMessage({ type: 'chunk', buffer, length } satisfies ReadWorkerMessage, [buffer]);
      if (eof) finish({ type: 'end' });
    }
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    finish({ type: 'error', message: e.message, code: e.code });
  }
}

lowerOwnPriority();
port.on('message', (buffer: ArrayBuffer) => {
  free.push(buffer);
  if (!done) pump();
});
pump();
