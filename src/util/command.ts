/**
 * Running external tools (conntrack-tools, journalctl) with a deadline and a
 * bound on captured output. The exporter never passes a shell.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface CommandResult {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface CommandOptions {
  /** Kill the child after this many milliseconds (default 10 s). */
  timeoutMs?: number;
  /** Fail if stdout grows beyond this many bytes (default 64 MiB). */
  maxBytes?: number;
}

export type CommandRunner = (file: string, args: readonly string[], options?: CommandOptions) => Promise<CommandResult>;

export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(
    message: string,
    readonly notFound = false,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Runs a command to completion. Rejects with CommandError (notFound=true for ENOENT) on spawn failure or timeout. */
export const runCommand: CommandRunner = (file, args, options = {}) => {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    let failed: CommandError | undefined;
    const timer = setTimeout(() => {
      failed = new CommandError(`${file} ${args.join(' ')}: timed out after ${timeoutMs} ms`);
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (b: Buffer) => {
      size += b.length;
      if (size > maxBytes) {
        failed ??= new CommandError(`${file} ${args.join(' ')}: output larger than ${maxBytes} bytes`);
        child.kill('SIGKILL');
        return;
      }
      out.push(b);
    });
    child.stderr.on('data', (b: Buffer) => {
      if (err.length < 64) err.push(b);
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new CommandError(`cannot run ${file}: ${e.message}`, e.code === 'ENOENT', { cause: e }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (failed) {
        reject(failed);
        return;
      }
      resolve({ stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), code, signal });
    });
  });
};

/**
 * Ends a long-running child: SIGTERM, SIGKILL if it is still there after
 * `graceMs`; resolves when `exited` (its 'exit' or 'error') does.
 */
export async function stopChild(child: ChildProcess | undefined, exited: Promise<void> | undefined, graceMs = 2000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
  child.kill('SIGTERM');
  await exited;
  clearTimeout(kill);
}
