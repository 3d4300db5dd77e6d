/**
 * Source `journal`: `journalctl -k -f -o json` as a child process.
 *
 * New entries only (`--lines=0`) unless `--kernel-log.from-start`
 * (`--no-tail`: the whole current boot). When journalctl dies it is started
 * again after a backoff that doubles from 1 s to 60 s (reset once a child has
 * lived for a minute), resuming after the last entry read (`--after-cursor`)
 * so nothing is counted twice. Needs membership of the systemd-journal or adm
 * group (or root), and in a container the host's /var/log/journal (or
 * /run/log/journal) and machine-id mounted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { classifyJournalLine, journalCursor } from '../classify.js';
import { LineSplitter } from '../line-splitter.js';
import type { LineSink, LineSource } from '../source.js';
import { stopChild } from '../../util/command.js';

export interface JournalSourceOptions {
  /** The journalctl binary (--kernel-log.journalctl-path). */
  readonly journalctl: string;
  readonly fromStart: boolean;
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** A child that lived this long resets the backoff (default 60 s). */
  readonly stableMs?: number;
  readonly warn?: (message: string) => void;
}

/** journalctl's arguments: follow kernel messages as JSON, from a cursor, the start or now. */
export function journalArgs(fromStart: boolean, cursor: string | undefined): string[] {
  const args = ['-k', '-f', '-o', 'json', '--no-pager'];
  if (cursor !== undefined) args.push(`--after-cursor=${cursor}`, '--no-tail');
  else if (fromStart) args.push('--no-tail');
  else args.push('--lines=0');
  return args;
}

export class JournalSource implements LineSource {
  readonly name = 'journal' as const;
  readonly description: string;
  private sink: LineSink | undefined;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private cursor: string | undefined;
  private failures = 0;
  private failure: Error | undefined;
  /** The current child was started (its 'spawn' event): journalctl exists and runs. */
  private spawned = false;
  private stopped = false;
  /** Number of times journalctl was started (tests). */
  starts = 0;

  constructor(private readonly opts: JournalSourceOptions) {
    this.description = `${opts.journalctl} -k -f -o json`;
  }

  async start(sink: LineSink): Promise<void> {
    // A source may be started again after a failed start and stop().
    this.stopped = false;
    this.failure = undefined;
    this.sink = sink;
    this.spawnChild();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await stopChild(this.child, this.exited);
    this.child = undefined;
  }

  problem(): Error | undefined {
    return this.child && this.spawned ? undefined : this.failure;
  }

  private spawnChild(): void {
    if (this.stopped) return;
    const args = journalArgs(this.opts.fromStart, this.cursor);
    const started = Date.now();
    this.starts++;
    const child = spawn(this.opts.journalctl, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.spawned = false;
    child.once('spawn', () => {
      this.spawned = true;
    });
    let stderr = '';
    const splitter = new LineSplitter((line) => {
      if (line === undefined) {
        this.sink?.line(undefined);
        return;
      }
      this.cursor = journalCursor(line) ?? this.cursor;
      this.sink?.line(classifyJournalLine(line));
    }, 256 * 1024);
    child.stdout?.on('data', (b: Buffer) => splitter.push(b));
    child.stderr?.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString('utf8')).slice(-1000);
    });
    let spawnError: Error | undefined;
    child.on('error', (err) => {
      spawnError = err;
    });
    this.exited = new Promise((resolve) => {
      child.on('close', (code, signal) => {
        this.child = undefined;
        resolve();
        if (this.stopped) return;
        const why = spawnError
          ? `cannot run ${this.opts.journalctl}: ${spawnError.message}`
          : `${this.opts.journalctl} exited with ${code ?? signal}${stderr.trim() ? `: ${stderr.trim().slice(-300)}` : ''}`;
        if (Date.now() - started >= (this.opts.stableMs ?? 60_000)) this.failures = 0;
        this.failures++;
        const delay = Math.min(
          (this.opts.minBackoffMs ?? 1000) * 2 ** (this.failures - 1),
          this.opts.maxBackoffMs ?? 60_000,
        );
        this.failure = new Error(`${why}; restarting in ${Math.round(delay / 1000)} s`, spawnError ? { cause: spawnError } : undefined);
        this.opts.warn?.(this.failure.message);
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.spawnChild();
        }, delay);
        this.timer.unref();
      });
    });
  }
}
