/**
 * One scan of the connection table: pick the source, stream it through the
 * scanner, and return the summary.
 *
 * Source choice (`auto`), see the README's "Table scan" section:
 * - `<procfs>/net/nf_conntrack` on kernels ≥ 6.16, where reading it is
 *   linear and cheaper than a netlink dump (no netlink encoding, no
 *   conntrack-tools formatting, no walk over other namespaces' entries).
 * - `conntrack -L -o extended` on older kernels, where every read() of the
 *   proc file walks the table from its first bucket again (a full read is
 *   quadratic), and wherever the proc file does not exist.
 * - The proc file anyway (`ip_conntrack` on very old kernels) if the tool
 *   cannot be run.
 */
import { access } from 'node:fs/promises';
import type { FsRoot } from '../procfs/fs.js';
import { CommandError } from '../util/command.js';
import { StateNames } from './line.js';
import { TableScanner } from './scanner.js';
import { readFileInProcess, readFileInWorker, SourceAbsentError, streamCommand, type ChunkSink } from './sources.js';
import { TableTally, type TableSummary } from './tally.js';

export type SourceMode = 'auto' | 'procfs' | 'netlink';

/** Below this many entries the proc file is read on the main thread (a worker costs more to start). */
export const WORKER_MIN_ENTRIES = 20_000;

/** First kernel whose proc table reads are linear (kernel-interfaces.md §6). */
const LINEAR_PROC_KERNEL: readonly [number, number] = [6, 16];

export interface ScanOptions {
  readonly procfs: FsRoot;
  /** conntrack-tools binary. */
  readonly tool: string;
  readonly mode: SourceMode;
  readonly topDestinations: number;
  /** How many top destination ports to count (0: none). */
  readonly topPorts?: number;
  readonly signal?: AbortSignal;
  /** Kept by the caller across scans: auto mode stops trying a tool that is not installed. */
  readonly memory: { toolMissing: boolean };
}

export interface ScanResult {
  readonly summary: TableSummary;
  /** Lines read (entries plus malformed lines). */
  readonly lines: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  /** What was read: a file path or the command line. */
  readonly source: string;
  /** True when the proc file was read on a kernel where that is quadratic. */
  readonly quadratic: boolean;
  /** Why conntrack -L was not used where it was tried first (missing, not permitted), if it failed. */
  readonly toolError: string | undefined;
  readonly durationSeconds: number;
}

/** [major, minor] of a kernel release string such as `6.18.44-fc-v769`; undefined if unparsable. Pure. */
export function parseKernelRelease(text: string): [number, number] | undefined {
  const m = /^(\d{1,6})\.(\d{1,6})(?!\d)/.exec(text.trim());
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** Whether reading the proc table is linear on this kernel release. Unknown releases count as old. Pure. */
export function hasLinearProcReads(release: [number, number] | undefined): boolean {
  if (!release) return false;
  const [major, minor] = release;
  return major > LINEAR_PROC_KERNEL[0] || (major === LINEAR_PROC_KERNEL[0] && minor >= LINEAR_PROC_KERNEL[1]);
}

async function fileExists(procfs: FsRoot, ...parts: string[]): Promise<boolean> {
  try {
    await access(procfs.path(...parts));
    return true;
  } catch {
    return false;
  }
}

async function readProcFile(procfs: FsRoot, path: string, sink: ChunkSink, signal: AbortSignal | undefined): Promise<void> {
  // nf_conntrack_count is O(1) and tells whether the table is big enough for a reader thread.
  const count = await procfs.readInt('sys', 'net', 'netfilter', 'nf_conntrack_count').catch(() => undefined);
  const read = count !== undefined && count < WORKER_MIN_ENTRIES ? readFileInProcess : readFileInWorker;
  await read(path, sink, { signal });
}

/** Scans the table once. Throws SourceAbsentError when no source exists. */
export async function scanTable(opts: ScanOptions): Promise<ScanResult> {
  const started = performance.now();
  const states = new StateNames();
  // conntrack's TIME_WAIT timeout decides which TIME_WAIT entries are older than the socket's (tally.ts).
  const conntrackTimeWaitSeconds = await opts.procfs
    .readInt('sys', 'net', 'netfilter', 'nf_conntrack_tcp_timeout_time_wait')
    .catch(() => undefined);
  const tally = new TableTally(states, { topDestinations: opts.topDestinations, topPorts: opts.topPorts ?? 0, conntrackTimeWaitSeconds });
  const scanner = new TableScanner(tally, states);
  const sink: ChunkSink = (chunk) => scanner.push(chunk);

  const procPath = opts.procfs.path('net', 'nf_conntrack');
  const oldPath = opts.procfs.path('net', 'ip_conntrack');
  const release = parseKernelRelease((await opts.procfs.readText('sys', 'kernel', 'osrelease')) ?? '');
  const linear = hasLinearProcReads(release);
  const hasProc = await fileExists(opts.procfs, 'net', 'nf_conntrack');

  let source: string;
  let quadratic = false;
  const tryTool = opts.mode === 'netlink' || (opts.mode === 'auto' && !(hasProc && linear) && !opts.memory.toolMissing);
  let toolError: Error | undefined;
  if (tryTool) {
    const args = ['-L', '-o', 'extended'];
    source = `${opts.tool} ${args.join(' ')}`;
    try {
      await streamCommand(opts.tool, args, sink, { signal: opts.signal });
      scanner.end();
      return finish();
    } catch (err) {
      if (opts.mode === 'netlink' || opts.signal?.aborted) throw err;
      if (err instanceof CommandError && err.notFound) opts.memory.toolMissing = true;
      // A tool that ran and failed may have produced part of a table: start over from the file.
      if (scanner.lines > 0) throw err;
      toolError = err as Error;
    }
  }

  const path = hasProc ? procPath : (await fileExists(opts.procfs, 'net', 'ip_conntrack')) ? oldPath : undefined;
  if (path === undefined) {
    const why = toolError ? ` and ${toolError.message}` : '';
    throw new SourceAbsentError(`neither ${procPath} nor ${oldPath} exists${why}`);
  }
  source = path;
  quadratic = !linear;
  await readProcFile(opts.procfs, path, sink, opts.signal);
  scanner.end();
  return finish();

  function finish(): ScanResult {
    return {
      summary: tally.summary(),
      lines: scanner.lines,
      errors: scanner.errors,
      firstError: scanner.firstError,
      source,
      quadratic,
      toolError: toolError?.message,
      durationSeconds: (performance.now() - started) / 1000,
    };
  }
}
