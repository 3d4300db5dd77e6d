/**
 * SIGTERM while a table scan is running through `conntrack -L` (a fake tool
 * that prints part of a table and then never finishes): exit 0 within 5 s and
 * no child process left behind.
 */
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/kernel.js';
import { startExporter, stopWithin } from '../helpers/process.js';

const TREE = join(REPO_ROOT, 'test', 'fixtures', 'robustness', 'issue-15-garbage-line');
const tmp = mkdtempSync(join(tmpdir(), 'cte-robust-shutdown-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function children(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return []; // pgrep exits 1 when there are none
  }
}

describe('SIGTERM during a scan', () => {
  it('with a conntrack -L child that never finishes: exit 0 within 5 s, the child gone', async () => {
    const tool = join(tmp, 'slow-conntrack');
    writeFileSync(tool, `#!/bin/sh\nhead -n 300 '${join(TREE, 'net', 'nf_conntrack')}'\nexec sleep 600\n`);
    chmodSync(tool, 0o755);
    const exp = await startExporter([`--path.procfs=${TREE}`, '--kernel-log.source=none', `--conntrack.path=${tool}`, '--collector.table.source=netlink']);
    const pid = exp.child.pid as number;
    let kids: number[] = [];
    for (let i = 0; i < 50 && kids.length === 0; i++) {
      kids = children(pid);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(kids.length, 'the fake conntrack should be running').toBeGreaterThan(0);
    expect((await fetch(`${exp.url}/healthz`, { signal: AbortSignal.timeout(2000) })).status).toBe(200);
    const stopped = await stopWithin(exp, 5000);
    expect(stopped.code).toBe(0);
    expect(stopped.ms).toBeLessThan(5000);
    await new Promise((r) => setTimeout(r, 200));
    for (const k of kids) expect(existsSync(`/proc/${k}`) && !execFileSync('cat', [`/proc/${k}/stat`], { encoding: 'utf8' }).includes(') Z '), `child ${k} left running`).toBe(false);
  });
});
