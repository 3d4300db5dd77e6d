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
 * not grow. Appending 2,000 lines with 10 rotations we measured 398/2000
 * lines (rename, fs.watch), 1989/2000 (copytruncate), 1819/2000 (either,
 * useWatchFile). So the follower below does what log shippers do:
 *
 * - It reads through an open descriptor and remembers its inode. When the
 *   path names another inode (rename + create), it reads the old descriptor
 *   to its end, reads any newer rotated files it skipped (`<path>.1` … found
 *   by inode), then the new file from its start. The old descriptor is kept
 *   and drained for a grace period, for writers (rsyslog) that write to it
 *   until they reopen the file.
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
const FINGERPRINT = 64;
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
      this.current = await this.openFile(this.opts.path, this.opened || this.opts.fromStart ? 'start' : 'end');
      if (!this.current) return;
      this.opened = true;
    }
    const cur = this.current;
    const { size } = await cur.fh.stat();
    if (await this.wasTruncated(cur, size)) await this.recoverTruncation(cur);
    await this.readToEnd(cur);

    let named;
    try {
      named = await stat(this.opts.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // renamed away, not yet recreated
      throw err;
    }
    if (named.ino === cur.ino && named.dev === cur.dev) {
      this.failure = undefined;
      return;
    }
    // Rename rotation: finish the old file, then any rotated files newer than it, then the new one.
    await this.readToEnd(cur);
    const depth = await this.findRotated((st) => st.ino === cur.ino && st.dev === cur.dev);
    this.retired.push({ file: cur, until: now + (this.opts.graceMs ?? 2000) });
    this.current = undefined;
    if (depth !== undefined) {
      for (let k = depth - 1; k >= 1; k--) await this.readWhole(`${this.opts.path}.${k}`);
    }
    this.current = await this.openFile(this.opts.path, 'start');
    if (this.current) await this.readToEnd(this.current);
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
    const st = await fh.stat();
    const file: OpenFile = {
      fh,
      dev: st.dev,
      ino: st.ino,
      pos: 0,
      head: Buffer.alloc(0),
      tail: Buffer.alloc(0),
      splitter: new LineSplitter((line) => this.sink?.line(line === undefined ? undefined : classifyLogLine(line))),
    };
    if (at === 'end' && st.size > 0) {
      file.pos = st.size;
      file.head = await readAt(fh, 0, Math.min(FINGERPRINT, st.size));
      file.tail = await readAt(fh, st.size - Math.min(FINGERPRINT, st.size), Math.min(FINGERPRINT, st.size));
    }
    if (path === this.opts.path) this.failure = undefined;
    return file;
  }

  /** Reads `file` from its position to the current end, emitting lines. */
  private async readToEnd(file: OpenFile, fh: FileHandle = file.fh): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      const { bytesRead } = await fh.read(this.buf, 0, this.buf.length, file.pos);
      if (bytesRead === 0) return;
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

  private async wasTruncated(file: OpenFile, size: number): Promise<boolean> {
    if (size < file.pos) return true;
    if (file.pos === 0) return false;
    return !(await matchesAt(file.fh, file, file.pos));
  }

  /**
   * After copytruncate: read what we had not read yet from the copy, then the
   * truncated file from 0.
   */
  private async recoverTruncation(file: OpenFile): Promise<void> {
    const pos = file.pos;
    let found: number | undefined;
    for (let k = 1; k <= (this.opts.rotatedDepth ?? 5) && found === undefined; k++) {
      let fh: FileHandle;
      try {
        fh = await open(`${this.opts.path}.${k}`, 'r');
      } catch {
        continue;
      }
      try {
        if ((await fh.stat()).size >= pos && (await matchesAt(fh, file, pos))) {
          found = k;
          await this.readToEnd(file, fh);
        }
      } finally {
        await fh.close();
      }
    }
    file.splitter.flush();
    if (found === undefined) {
      this.opts.warn?.(`${this.opts.path} was truncated and no copy holding the unread part was found`);
    } else {
      for (let k = found - 1; k >= 1; k--) await this.readWhole(`${this.opts.path}.${k}`);
    }
    file.pos = 0;
    file.head = Buffer.alloc(0);
    file.tail = Buffer.alloc(0);
  }

  /** The k of the first `<path>.k` (1…depth) whose stat satisfies `is`. */
  private async findRotated(is: (st: { ino: number; dev: number }) => boolean): Promise<number | undefined> {
    for (let k = 1; k <= (this.opts.rotatedDepth ?? 5); k++) {
      try {
        if (is(await stat(`${this.opts.path}.${k}`))) return k;
      } catch {
        // Missing: keep looking.
      }
    }
    this.opts.warn?.(`${this.opts.path} was rotated but the old file was not found as ${this.opts.path}.N`);
    return undefined;
  }

  private async readWhole(path: string): Promise<void> {
    const file = await this.openFile(path, 'start');
    if (!file) return;
    try {
      await this.readToEnd(file);
      file.splitter.flush();
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
