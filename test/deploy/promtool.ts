/**
 * promtool (Debian package `prometheus`) for the deploy tests: present, or a
 * skip with a message on a laptop, or a failure under CI=true.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { expect } from 'vitest';
import { IN_CI } from '../helpers/kernel.js';

export function findTool(name: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(':').concat(['/usr/bin', '/usr/local/bin', '/usr/sbin'])) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

export const PROMTOOL = findTool('promtool');

/** Why promtool tests cannot run; under CI=true the caller turns this into a failure. */
export const PROMTOOL_PROBLEM = PROMTOOL ? undefined : 'promtool not found (apt-get install prometheus)';
if (PROMTOOL_PROBLEM && !IN_CI) {
  // eslint-disable-next-line no-console
  console.warn(`SKIPPED promtool tests: ${PROMTOOL_PROBLEM}`);
}

export interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function promtool(args: readonly string[], cwd?: string): Result {
  if (!PROMTOOL) throw new Error(PROMTOOL_PROBLEM);
  const r = spawnSync(PROMTOOL, args as string[], { cwd, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Asserts that `promtool check metrics` accepts an exposition body with no lint warning. */
export function expectPromtoolAccepts(body: string): void {
  if (!PROMTOOL) {
    if (IN_CI) throw new Error(`${PROMTOOL_PROBLEM}: required under CI=true`);
    return;
  }
  const r = spawnSync(PROMTOOL, ['check', 'metrics'], { input: body, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  expect(r.stdout + r.stderr).toBe('');
  expect(r.status).toBe(0);
}
