/**
 * Source `file`: follows a syslog file such as /var/log/kern.log through
 * rename rotation and copytruncate, counting every line exactly once.
 *
 * Why not the `tail` npm package (2.2.6), which we evaluated first: it reads
 * by file name rather than by descriptor, so after a rename rotation it waits
 * a second and then reopens the new file at the *old* file's offset
 * (skipping the new file's first lines), dropping its queue of unread blocks
 * on the way; on truncation it jumps to the new end, skipping what was
 * written since; with `useWatchFile` it ignores any poll where the size did
 * not grow. bench/rotation.bench.mjs measures it: with 10 rotations (rename
 * and copytruncate in turn) 1.5 s apart it delivered 661/1000 lines (fs.watch)
 * and 940/1000 (useWatchFile); this follower 1000/1000. So the follower below
 * does what log shippers do:
 *
 * - It reads through an open descriptor and remembers its inode. When the
 *   path names another inode (rename + create), it reads the old descriptor
 *   to its end, reads any newer rotated files it skipped (`<path>.1` … found
 *   by inode), then the new file from its start. The newest old descriptor is
 *   kept and drained for a grace period, for writers (rsyslog) that write to
 *   it until they reopen the file.
 * - Truncation in place (copytruncate) is detected by the size dropping below
 *   our offset, or by the first and last bytes before our offset no longer
 *   being what we read (truncated, then refilled past our offset). The bytes
 *   we had not yet read when logrotate truncated are in the copy, so the
 *   follower finds the copy (`<path>.1` …, whose bytes at our offset match
 *   what we read) and reads it from our offset before starting again at 0 in
 *   the truncated file. Without such a copy (other naming schemes,
 *   compression of the newest copy) the unread tail is gone, as for any
 *   follower.
 *
 * - Several rotations between two reads are followed through the rotated
 *   files (`<path>.1` … `<path>.5`), oldest first, stopping at a file already
 *   held open. The guarantee is exactly once when the follower sees each
 *   rotation before the next one (with hourly or daily logrotate it always
 *   does). Known limitation: when it falls two rotations behind with a
 *   copytruncate among them, lines can be lost or read twice (the rotation
 *   test, with its writer let two rotations ahead, lost or repeated 20-30 of
 *   2,007 lines in 5 of 18 runs with both cores busy). The first bytes of a
 *   file are remembered as soon as it is opened, so that a copytruncate just
 *   after a rename is noticed even before the new file's first read.
 *
 * Change notification comes from fs.watch on the directory (rotation creates
 * and renames files there), with a poll timer as a safety net for filesystems
 * without inotify.
 */
import { watch, type FSWatcher } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { NoDataError } from '../../collectors/collector.js';
import { classifyLogLine } from '../classify.js';
import { LineSplitter } from '../line-splitter.js';
import type { LineSink, LineSource } from '../source.js';

export interface FileSourceOptions {
  /** The file, already resolved under --path.rootfs. */
  readonly path: string;
  readonly fromStart: boolean;
  /** Poll interval as a safety net for missed fs.watch events (default 1000 ms). */
  readonly pollMs?: number;
  /** How many rotated siblings `<path>.1` … `<path>.N` to search (default 5). */
  readonly rotatedDepth?: number;
  /** How long a rotated file is still drained for late writes (default 2000 ms). */
  readonly graceMs?: number;
  /** Called with errors worth a log line (rotation that could not be followed). */
  readonly warn?: (message: string) => void;
}

/** Bytes remembered at the start and end of what was read, to recognise a file and its copy. */
const FINGERPRINT = 128;
const READ_CHUNK = 1024 * 1024;

interface OpenFile {
  readonly fh: FileHandle;
  readonly dev: number;
  readonly ino: number;
  pos: number;
  /** The file's first bytes (up to FINGERPRINT). */
  head: Buffer;
  /** The bytes just before `pos` (up to FINGERPRINT). */
  tail: Buffer;
  readonly splitter: LineSplitter;
}

export class FileSource implements LineSource {
  readonly name = 'file' as const;
  readonly description: string;
  private sink: LineSink | undefined;
  private current: OpenFile | undefined;
  private retired: { file: OpenFile; until: number }[] = [];
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private opened = false;
  private failure: Error | undefined;
  private readonly buf = Buffer.allocUnsafe(READ_CHUNK);

  constructor(private readonly opts: FileSourceOptions) {
    this.description = opts.path;
  }

  async start(sink: LineSink): Promise<void> {
    // A source may be started again after a failed start and stop().
    this.stopped = false;
    this.failure = undefined;
    this.sink = sink;
    try {
      this.watcher = watch(dirname(this.opts.path), { persistent: false }, (_event, name) => {
        if (name === null || String(name).startsWith(basename(this.opts.path))) this.pump();
      });
      this.watcher.on('error', () => {
        // The directory went away or cannot be watched; the poll timer carries on.
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch {
      // No inotify here (or no directory yet): polling only.
    }
    // Position on the file now, so that lines written once start() resolved are counted.
    this.opened = true;
    this.current = await this.openFile(this.opts.path, this.opts.fromStart ? 'start' : 'end');
    const poll = (): void => {
      if (this.stopped) return;
      this.pump();
      this.timer = setTimeout(poll, this.opts.pollMs ?? 1000);
      this.timer.unref();
    };
    poll();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.watcher?.close();
    this.watcher = undefined;
    await this.running;
    for (const r of this.retired) await r.file.fh.close().catch(() => undefined);
    this.retired = [];
    await this.current?.fh.close().catch(() => undefined);
    this.current = undefined;
  }

  problem(): Error | undefined {
    return this.failure;
  }

  /** Resolves when every change signalled so far has been read (tests and benchmarks). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** Runs a read cycle now, or once more after the one in progress. */
  pump(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          await this.cycle();
        } catch (err) {
          this.failure = new Error(`following ${this.opts.path}: ${(err as Error).message}`, { cause: err });
        }
      } while (this.again && !this.stopped);
      this.running = undefined;
    })();
  }

  private async cycle(): Promise<void> {
    const now = Date.now();
    for (const r of [...this.retired]) {
      await this.readToEnd(r.file);
      if (now >= r.until) {
        r.file.splitter.flush();
        await r.file.fh.close();
        this.retired.splice(this.retired.indexOf(r), 1);
      }
    }
    if (!this.current) {
      // The first open honours --kernel-log.from-start; a file that appears later is new and read whole.
      const at = this.opened || this.opts.fromStart ? 'start' : 'end';
      this.opened = true;
      this.current = await this.openFile(this.opts.path, at);
      if (!this.current) return;
    }
    const cur = this.current;
    const { size } = await cur.fh.stat();
    if (size < cur.pos || !(await matchesAt(cur.fh, cur, cur.pos))) await this.recoverTruncation(cur);
    while ((await this.readToEnd(cur)) === 'truncated') await this.recoverTruncation(cur);

    // Rename rotation? Open the path first: whatever it names now is the newest file, and every
    // file between it and ours is then among the rotated siblings, whatever happens meanwhile.
    let next: OpenFile | undefined;
    try {
      const named = await stat(this.opts.path);
      if (named.ino === cur.ino && named.dev === cur.dev) {
        this.failure = undefined;
        return;
      }
      next = await this.openFile(this.opts.path, 'start');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // Renamed away and not recreated yet, or deleted: the old descriptor is still read, but
      // nothing new will be written there once the writer reopens the path.
      this.failure = new NoDataError(`${this.opts.path} does not exist (rotated or deleted, not recreated yet)`, { cause: err });
    }
    if (!next) return;
    if (next.ino === cur.ino && next.dev === cur.dev) {
      await next.fh.close();
      return;
    }
    // Finish the old file, then any rotated files newer than it, then the new one.
    await this.readToEnd(cur);
    // Only the newest rotated file can still be written to by a writer that has not reopened yet.
    for (const r of this.retired.splice(0)) {
      await this.readToEnd(r.file);
      r.file.splitter.flush();
      await r.file.fh.close();
    }
    this.retired.push({ file: cur, until: now + (this.opts.graceMs ?? 2000) });
    this.current = next;
    const depth = await this.findRotated((st) => st.ino === cur.ino && st.dev === cur.dev);
    if (depth !== undefined) await this.readNewerThan(depth);
    await this.readToEnd(next);
    this.failure = undefined;
  }

  /** Opens `path`; undefined (and, for the followed path, the reason in problem()) when it cannot be. */
  private async openFile(path: string, at: 'start' | 'end'): Promise<OpenFile | undefined> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      if (path !== this.opts.path) return undefined;
      const code = (err as NodeJS.ErrnoException).code;
      this.failure =
        code === 'ENOENT'
          ? new NoDataError(`${path} does not exist (yet)`, { cause: err })
          : new Error(`cannot open ${path}: ${(err as Error).message}`, { cause: err });
      return undefined;
    }
    let st;
    try {
      st = await fh.stat();
    } catch (err) {
      await fh.close();
      throw err;
    }
    const file: OpenFile = {
      fh,
      dev: st.dev,
      ino: st.ino,
      pos: 0,
      head: Buffer.alloc(0),
      tail: Buffer.alloc(0),
      splitter: new LineSplitter((line) => this.sink?.line(line === undefined ? undefined : classifyLogLine(line))),
    };
    // The head is taken at once, so that a copytruncate before our first read is still noticed.
    if (st.size > 0) file.head = await readAt(fh, 0, Math.min(FINGERPRINT, st.size));
    if (at === 'end' && st.size > 0) {
      file.pos = st.size;
      file.tail = await readAt(fh, st.size - Math.min(FINGERPRINT, st.size), Math.min(FINGERPRINT, st.size));
    }
    if (path === this.opts.path) this.failure = undefined;
    return file;
  }

  /**
   * Reads `file` from its position to the current end, emitting lines. Each
   * chunk is accepted only if the file still holds what we read before it
   * (checked after the read, so a truncation racing the read is caught):
   * 'truncated' otherwise, with nothing consumed.
   */
  private async readToEnd(file: OpenFile, from: FileHandle = file.fh): Promise<'end' | 'truncated'> {
    const verify = from === file.fh;
    for (;;) {
      if (this.stopped) return 'end';
      const { bytesRead } = await from.read(this.buf, 0, this.buf.length, file.pos);
      if (bytesRead === 0) return 'end';
      if (verify && (file.pos > 0 || file.head.length > 0) && !(await matchesAt(from, file, file.pos))) return 'truncated';
      this.remember(file, this.buf, bytesRead);
      file.pos += bytesRead;
      file.splitter.push(this.buf.subarray(0, bytesRead));
    }
  }

  /** Updates the head and tail fingerprints after reading `n` bytes of `buf` at `file.pos`. */
  private remember(file: OpenFile, buf: Buffer, n: number): void {
    if (file.head.length < FINGERPRINT && file.pos < FINGERPRINT) {
      const take = Math.min(FINGERPRINT - file.pos, n);
      file.head = Buffer.concat([file.head.subarray(0, file.pos), buf.subarray(0, take)]);
    }
    const keep = Math.min(FINGERPRINT, n);
    const tail = Buffer.concat([file.tail, buf.subarray(n - keep, n)]);
    file.tail = Buffer.from(tail.subarray(Math.max(0, tail.length - FINGERPRINT)));
  }

  /**
   * After copytruncate: read what we had not read yet from the copy, then the
   * truncated file from 0.
   */
  private async recoverTruncation(file: OpenFile): Promise<void> {
    const found = await this.findCopy(file);
    file.splitter.flush();
    if (found === undefined) {
      this.opts.warn?.(`${this.opts.path} was truncated and no copy holding the unread part was found`);
    } else {
      await this.readNewerThan(found);
    }
    file.pos = 0;
    file.head = Buffer.alloc(0);
    file.tail = Buffer.alloc(0);
  }

  /** Finds the copy `<path>.k` holding what `file` held at its position and reads the rest of it; returns k. */
  private async findCopy(file: OpenFile): Promise<number | undefined> {
    // Scanned up to three times: a rotation shifting `.k` to `.k+1` may race the scan.
    for (let attempt = 0; attempt < 3; attempt++) {
      for (let k = 1; k <= (this.opts.rotatedDepth ?? 5); k++) {
        let fh: FileHandle;
        try {
          fh = await open(`${this.opts.path}.${k}`, 'r');
        } catch {
          continue;
        }
        try {
          if ((await fh.stat()).size >= file.pos && (await matchesAt(fh, file, file.pos))) {
            await this.readToEnd(file, fh);
            return k;
          }
        } finally {
          await fh.close();
        }
      }
    }
    return undefined;
  }

  /** The k of the first `<path>.k` (1…depth) whose stat satisfies `is`. */
  private async findRotated(is: (st: { ino: number; dev: number }) => boolean): Promise<number | undefined> {
    // Scanned up to three times: a rotation shifting `.k` to `.k+1` may race the scan.
    for (let attempt = 0; attempt < 3; attempt++) {
      for (let k = 1; k <= (this.opts.rotatedDepth ?? 5); k++) {
        try {
          if (is(await stat(`${this.opts.path}.${k}`))) return k;
        } catch {
          // Missing: keep looking.
        }
      }
    }
    this.opts.warn?.(`${this.opts.path} was rotated but the old file was not found as ${this.opts.path}.N`);
    return undefined;
  }

  /**
   * Reads the rotated files newer than `<path>.depth`, whole, oldest first,
   * stopping at a file we hold open: that one (and anything newer) is being
   * followed already (after copytruncate then rename, `<path>.1` is the file
   * we were following; after further rotations, the new file is too).
   */
  private async readNewerThan(depth: number): Promise<void> {
    for (let k = depth - 1; k >= 1; k--) {
      if ((await this.readWhole(`${this.opts.path}.${k}`)) === 'held') return;
    }
  }

  private async readWhole(path: string): Promise<'read' | 'held' | 'missing'> {
    const file = await this.openFile(path, 'start');
    if (!file) return 'missing';
    const held = [this.current, ...this.retired.map((r) => r.file)];
    try {
      if (held.some((f) => f && f.ino === file.ino && f.dev === file.dev)) return 'held';
      await this.readToEnd(file);
      file.splitter.flush();
      return 'read';
    } finally {
      await file.fh.close();
    }
  }
}

async function readAt(fh: FileHandle, pos: number, length: number): Promise<Buffer> {
  const b = Buffer.alloc(length);
  const { bytesRead } = await fh.read(b, 0, length, pos);
  return b.subarray(0, bytesRead);
}

/** Whether `fh` holds `ref`'s head at 0 and its tail just before `pos`. */
async function matchesAt(fh: FileHandle, ref: OpenFile, pos: number): Promise<boolean> {
  if (ref.head.length > 0 && !(await readAt(fh, 0, ref.head.length)).equals(ref.head)) return false;
  if (ref.tail.length > 0 && !(await readAt(fh, pos - ref.tail.length, ref.tail.length)).equals(ref.tail)) return false;
  return true;
}
