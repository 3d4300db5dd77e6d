/**
 * Path building and reading for kernel files under one configurable root.
 *
 * Readers return `undefined` when a file does not exist (module not loaded,
 * kernel built without the option, pid gone): that is "absent", not an error.
 * Every other failure (permission denied, I/O error) is thrown with the path.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';

export class KernelFileError extends Error {
  override readonly name = 'KernelFileError';
}

/** A parse failure in a kernel file, with the file and line where it happened. */
export class ParseError extends Error {
  override readonly name = 'ParseError';
}

/** One filesystem root (`--path.procfs`, `--path.sysfs`, `--path.rootfs`). */
export class FsRoot {
  constructor(readonly root: string) {}

  path(...parts: string[]): string {
    return join(this.root, ...parts);
  }

  /** The whole file as text, or undefined if it does not exist. */
  async readText(...parts: string[]): Promise<string | undefined> {
    return readTextOrAbsent(this.path(...parts));
  }

  /** A file holding one integer (sysctls, module parameters), or undefined if absent. */
  async readInt(...parts: string[]): Promise<number | undefined> {
    const p = this.path(...parts);
    const text = await readTextOrAbsent(p);
    if (text === undefined) return undefined;
    return parseIntFile(text, p);
  }

  /** The first of several candidate files that exists. */
  async readFirstInt(candidates: readonly (readonly string[])[]): Promise<{ value: number; path: string } | undefined> {
    for (const parts of candidates) {
      const value = await this.readInt(...parts);
      if (value !== undefined) return { value, path: this.path(...parts) };
    }
    return undefined;
  }
}

export function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ESRCH';
}

/**
 * Reads a small kernel file (a sysctl, a stat table: at most a few KiB).
 *
 * Synchronously on purpose: procfs and sysfs produce these in microseconds,
 * while an asynchronous read makes four thread-pool round trips (open, fstat,
 * read, close). A scrape reads ~40 such files, and on a busy 2-core machine the
 * round trips cost 5-8 ms per scrape against well under 1 ms read inline
 * (bench: /metrics p50). /proc files report size 0, so the read never trusts
 * stat; Node reads them until EOF.
 */
export async function readTextOrAbsent(path: string): Promise<string | undefined> {
  try {
    return readSmallFileSync(path).toString('utf8');
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw new KernelFileError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Largest kernel file read whole (a stat table of 4,096 CPUs is ~2 MiB); a larger one is an error. */
export const MAX_SMALL_FILE_BYTES = 8 * 1024 * 1024;

/**
 * readFileSync for small kernel files, safe against what a hostile or broken
 * root can put at the path: opened with O_NONBLOCK so a FIFO does not block
 * the event loop in open() (issue 15: a FIFO at net/stat/nf_conntrack hung
 * /healthz and SIGTERM), refused unless it is a regular file (procfs and
 * sysfs files are), and read up to MAX_SMALL_FILE_BYTES only, so a huge file
 * cannot grow the heap. Throws like readFileSync (ENOENT …) or with EFBIG/EINVAL codes.
 */
export function readSmallFileSync(path: string, maxBytes = MAX_SMALL_FILE_BYTES): Buffer {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    if (!fstatSync(fd).isFile()) throw Object.assign(new Error(`${path} is not a regular file`), { code: 'EINVAL' });
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.min(64 * 1024, maxBytes + 1 - total));
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      chunks.push(n === buf.length ? buf : buf.subarray(0, n));
      total += n;
      if (total > maxBytes) throw Object.assign(new Error(`${path} is larger than ${maxBytes} bytes`), { code: 'EFBIG' });
    }
    return Buffer.concat(chunks, total);
  } finally {
    closeSync(fd);
  }
}

/** Parses a single non-negative decimal integer file such as a sysctl. Pure. */
export function parseIntFile(text: string, path = 'input'): number {
  const t = text.trim();
  if (!/^\d+$/.test(t)) {
    throw new ParseError(`${path}: expected one non-negative integer, got ${JSON.stringify(t.slice(0, 40))}`);
  }
  return Number(t);
}
