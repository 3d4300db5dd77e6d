/**
 * Runs the built exporter (dist/main.js) as a child process on a free
 * loopback port, the way an operator would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './kernel.js';

export const MAIN = join(REPO_ROOT, 'dist', 'main.js');

export function requireBuild(): void {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npm run build (npm test does it first)`);
}

export interface ExporterProcess {
  readonly child: ChildProcess;
  /** Base URL such as http://127.0.0.1:PORT (https when TLS is configured). */
  readonly url: string;
  logs(): string;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Runs dist/main.js to completion (for flag errors, --help, --version). */
export function runExporter(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  requireBuild();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`exporter did not exit within 10 s: ${stderr}`));
    }, 10_000);
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Starts dist/main.js on 127.0.0.1 with an OS-chosen port and waits until it listens. */
export async function startExporter(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<ExporterProcess> {
  requireBuild();
  const child = spawn(process.execPath, [MAIN, '--web.listen-address=127.0.0.1:0', '--log.format=json', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout?.on('data', (b: Buffer) => (log += b.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`exporter did not start within 15 s:\n${log}`));
    }, 15_000);
    child.stderr?.on('data', (b: Buffer) => {
      log += b.toString();
      const m = /"msg":"listening on (https?:\/\/[^"]+)"/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exporter exited with ${code} before listening:\n${log}`));
    });
  });
  return {
    child,
    url,
    logs: () => log,
    stop(signal = 'SIGTERM') {
      return new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) {
          resolve(child.exitCode);
          return;
        }
        child.once('exit', (code) => resolve(code));
        child.kill(signal);
      });
    },
  };
}

/** SIGTERM, SIGKILL after `ms`: the exit code and how long the exit took. */
export async function stopWithin(exp: ExporterProcess, ms: number): Promise<{ code: number | null; ms: number }> {
  const t0 = performance.now();
  const timer = setTimeout(() => exp.child.kill('SIGKILL'), ms);
  const code = await exp.stop('SIGTERM');
  clearTimeout(timer);
  return { code, ms: performance.now() - t0 };
}
