/**
 * Where the bytes of a table scan come from. Each reader streams chunks into
 * a sink (the scanner) and resolves when the source is exhausted; none holds
 * more than a few chunks, whatever the table size. An AbortSignal stops a
 * reader early (the exporter is closing): it rejects with the signal's reason.
 *
 * - readFileInWorker: the proc file, read in a worker thread (big tables).
 * - readFileInProcess: the proc file, read here in short slices (small tables,
 *   where starting a worker costs more than the read).
 * - streamCommand: `conntrack -L -o extended`, parsed from its stdout as it
 *   arrives.
 */
import { spawn } from 'node:child_process';
import { constants, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { CommandError } from '../util/command.js';
import type { ReadWorkerData, ReadWorkerMessage } from './read-worker.js';

export type ChunkSink = (chunk: Buffer) => void;

export interface ReadOptions {
  readonly signal?: AbortSignal;
}

/** Bytes per chunk: 16 pages, a main-thread parse slice of ~0.3 ms (~10 ms before the parser is optimized). */
export const CHUNK_BYTES = 64 * 1024;
/** Chunks in flight between the worker and the main thread. */
const WORKER_BUFFERS = 8;
/** How long a reader parses before yielding to the event loop. */
const SLICE_MS = 1;
/** Bytes handed to the parser at a time from a worker chunk, between checks of the slice time. */
const PIECE_BYTES = 16 * 1024;

/** Thrown when the file to read does not exist. */
export class SourceAbsentError extends Error {
  override readonly name = 'SourceAbsentError';
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('table scan aborted');
}

/** Reads `path` in a worker thread, calling sink on the main thread for each chunk. */
export function readFileInWorker(path: string, sink: ChunkSink, opts: ReadOptions = {}): Promise<void> {
  const { signal } = opts;
  if (signal?.aborted) return Promise.reject(abortError(signal));
  return new Promise((resolve, reject) => {
    const data: ReadWorkerData = { path, chunkBytes: CHUNK_BYTES, buffers: WORKER_BUFFERS };
    const worker = new Worker(new URL('./read-worker.js', import.meta.url), {
      workerData: data,
      // The worker only copies bytes; keep its heap, and the exporter's RSS, small.
      resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1 },
      stdout: false,
      stderr: false,
    });
    let settled = false;
    const settle = (err?: Error): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      void worker.terminate();
      if (err) reject(err);
      else resolve();
    };
    const onAbort = (): void => settle(abortError(signal as AbortSignal));
    signal?.addEventListener('abort', onAbort, { once: true });
    // A port delivers every queued message in one go. Parsing them in pieces, yielding to the event
    // loop every SLICE_MS, lets a scrape in between wait for one piece, not for every queued chunk
    // (which matters most while the parser is still unoptimized, early in the first scan).
    const queue: ReadWorkerMessage[] = [];
    let draining = false;
    let offset = 0; // parsed bytes of the chunk at the head of the queue
    const drainOne = (): void => {
      const sliceEnd = performance.now() + SLICE_MS;
      let m = queue[0];
      while (m !== undefined && m.type === 'chunk' && !settled) {
        const piece = Math.min(m.length, offset + PIECE_BYTES);
        try {
          sink(Buffer.from(m.buffer, offset, piece - offset));
        } catch (err) {
          settle(err as Error);
          return;
        }
        offset = piece;
        if (offset === m.length) {
          queue.shift();
          offset = 0;
          worker.postMessage(m.buffer, [m.buffer]);
          m = queue[0];
        }
        if (performance.now() >= sliceEnd) break;
      }
      if (m === undefined || settled) {
        draining = false;
        return;
      }
      if (m.type === 'chunk') {
        setImmediate(drainOne);
        return;
      }
      queue.shift();
      if (m.type === 'end') {
        settle();
      } else if (m.code === 'ENOENT') {
        settle(new SourceAbsentError(`${path} does not exist`));
      } else {
        settle(new Error(`cannot read ${path}: ${m.message}`));
      }
      draining = false;
    };
    worker.on('message', (m: ReadWorkerMessage) => {
      queue.push(m);
      if (!draining) {
        draining = true;
        setImmediate(drainOne);
      }
    });
    worker.on('error', (err) => settle(new Error(`table reader thread failed: ${err.message}`, { cause: err })));
    worker.on('exit', (code) => {
      // The worker exits once it has posted its last message; those may still be queued here.
      if (queue.some((m) => m.type !== 'chunk')) return;
      settle(new Error(`table reader thread exited with ${code} before the end of ${path}`));
    });
  });
}

/**
 * Reads `path` on the main thread with synchronous reads, yielding to the
 * event loop every SLICE_MS so scrapes are served meanwhile.
 */
export async function readFileInProcess(path: string, sink: ChunkSink, opts: ReadOptions = {}): Promise<void> {
  const { signal } = opts;
  let handle;
  try {
    // O_NONBLOCK: a FIFO at the path must not block open() (or the reads after it) forever.
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new SourceAbsentError(`${path} does not exist`);
    throw new Error(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  const buf = Buffer.allocUnsafe(CHUNK_BYTES);
  try {
    if (!(await handle.stat()).isFile()) throw new Error(`cannot read ${path}: not a regular file`);
    for (;;) {
      if (signal?.aborted) throw abortError(signal);
      const sliceEnd = performance.now() + SLICE_MS;
      do {
        let length = 0;
        let n = 0;
        // A seq_file read() returns at most a page; fill the chunk before parsing it.
        do {
          n = readSync(handle.fd, buf, length, buf.length - length, null);
          length += n;
        } while (n > 0 && length < buf.length);
        if (length > 0) sink(buf.subarray(0, length));
        if (n === 0) return;
      } while (performance.now() < sliceEnd);
      await new Promise((r) => setImmediate(r));
    }
  } catch (err) {
    if (signal?.aborted) throw err;
    if (err instanceof SourceAbsentError || !(err as NodeJS.ErrnoException).code) throw err;
    throw new Error(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  } finally {
    await handle.close();
  }
}

/**
 * Runs `file args` and feeds its stdout to sink as it arrives. Rejects with a
 * CommandError (notFound for ENOENT) if it cannot run or exits non-zero.
 */
export function streamCommand(file: string, args: readonly string[], sink: ChunkSink, opts: ReadOptions = {}): Promise<void> {
  const { signal } = opts;
  if (signal?.aborted) return Promise.reject(abortError(signal));
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const what = `${file} ${args.join(' ')}`;
    let stderr = '';
    let failure: Error | undefined;
    const onAbort = (): void => {
      failure ??= abortError(signal as AbortSignal);
      child.kill('SIGKILL');
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    // Parse in pieces within SLICE_MS, pausing the pipe meanwhile, so a scrape never waits for
    // more than one slice (the tool writes faster than the parser reads at first, while cold).
    const queue: Buffer[] = [];
    const drain = (): void => {
      const sliceEnd = performance.now() + SLICE_MS;
      while (queue.length > 0 && !failure) {
        const chunk = queue[0] as Buffer;
        const piece = chunk.subarray(0, PIECE_BYTES);
        try {
          sink(piece);
        } catch (err) {
          failure = err as Error;
          child.kill('SIGKILL');
          return;
        }
        if (piece.length === chunk.length) queue.shift();
        else queue[0] = chunk.subarray(piece.length);
        if (performance.now() >= sliceEnd) break;
      }
      if (queue.length > 0 && !failure) setImmediate(drain);
      else child.stdout.resume();
    };
    child.stdout.on('data', (chunk: Buffer) => {
      if (failure) return;
      queue.push(chunk);
      if (queue.length === 1) {
        child.stdout.pause();
        setImmediate(drain);
      }
    });
    child.stderr.on('data', (b: Buffer) => {
      if (stderr.length < 4096) stderr += b.toString('utf8');
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      failure ??= new CommandError(`cannot run ${file}: ${e.message}`, e.code === 'ENOENT', { cause: e });
    });
    const finish = (code: number | null, sig: NodeJS.Signals | null): void => {
      // Output already received is parsed before the scan ends.
      if (queue.length > 0 && !failure) {
        setImmediate(() => finish(code, sig));
        return;
      }
      signal?.removeEventListener('abort', onAbort);
      if (failure) reject(failure);
      else if (code !== 0) reject(new CommandError(`${what} exited with ${code ?? sig}: ${stderr.trim().slice(0, 300)}`));
      else resolve();
    };
    child.on('close', finish);
  });
}
