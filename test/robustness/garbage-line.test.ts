/**
 * Issue 15's defect: a connection table with one garbage line (line 856 of
 * 1,284 is 135 `x`) was reported to spin the exporter at 99% CPU, with
 * /healthz silent and SIGTERM ignored. The tree is a committed fixture
 * (test/fixtures/robustness/issue-15-garbage-line); here the built exporter
 * runs on it through each way the table is read: the proc file on the main
 * thread (nf_conntrack_count < 20,000), the proc file through the reader
 * thread (count ≥ 20,000), and `conntrack -L -o extended` (a fake tool that
 * prints the same lines).
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/kernel.js';
import { startExporter, stopWithin, type ExporterProcess } from '../helpers/process.js';
import { samples } from '../helpers/app.js';

const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'robustness');
const TREE = join(FIXTURES, 'issue-15-garbage-line');
const FAKE_TOOL = join(FIXTURES, 'fake-conntrack-garbage');
/** Valid lines in the fixture's table (1,284 minus the garbage line). */
const VALID = 1283;

const tmp = mkdtempSync(join(tmpdir(), 'cte-robust-garbage-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function getWithin(url: string, ms: number): Promise<{ status: number; body: string; ms: number }> {
  const t0 = performance.now();
  const r = await fetch(url, { signal: AbortSignal.timeout(ms) });
  return { status: r.status, body: await r.text(), ms: performance.now() - t0 };
}

/** Polls /metrics until the first table scan is in (parse errors exported), within `ms`. */
async function waitForScan(exp: ExporterProcess, ms = 10_000): Promise<Map<string, number>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await getWithin(`${exp.url}/metrics`, 2000);
    const s = samples(r.body);
    if (tableEntries(s) > 0 || Date.now() > deadline) return s;
    await new Promise((res) => setTimeout(res, 100));
  }
}

function tableEntries(s: Map<string, number>): number {
  let n = 0;
  for (const [k, v] of s) if (k.startsWith('conntrack_table_entries{')) n += v;
  return n;
}

async function checkExporter(args: readonly string[], env: NodeJS.ProcessEnv = {}, expected = { errors: 1, entries: VALID }): Promise<void> {
  const exp = await startExporter(['--kernel-log.source=none', ...args], env);
  try {
    const health = await getWithin(`${exp.url}/healthz`, 2000);
    expect(health.status).toBe(200);
    const s = await waitForScan(exp);
    expect(s.get('conntrack_table_parse_errors_total'), exp.logs()).toBe(expected.errors);
    expect(tableEntries(s)).toBe(expected.entries);
    expect(s.get('conntrack_scrape_collector_success{collector="table"}')).toBe(1);
    // Still answering after the scan, and quickly.
    expect((await getWithin(`${exp.url}/healthz`, 2000)).status).toBe(200);
    if (expected.errors > 0) expect(exp.logs()).toContain(`skipped ${expected.errors} malformed table lines`);
  } finally {
    const stopped = await stopWithin(exp, 5000);
    expect(stopped.code).toBe(0);
    expect(stopped.ms).toBeLessThan(5000);
  }
}

describe('issue 15: one garbage line in the table', () => {
  it('proc file read on the main thread (nf_conntrack_count < 20,000)', async () => {
    await checkExporter([`--path.procfs=${TREE}`, '--conntrack.path=/nonexistent']);
  });

  it('proc file read through the reader thread (nf_conntrack_count ≥ 20,000)', async () => {
    const tree = join(tmp, 'worker');
    cpSync(TREE, tree, { recursive: true });
    writeFileSync(join(tree, 'sys', 'net', 'netfilter', 'nf_conntrack_count'), '25000\n');
    await checkExporter([`--path.procfs=${tree}`, '--conntrack.path=/nonexistent']);
  });

  it('conntrack -L -o extended (netlink source)', async () => {
    await checkExporter([`--path.procfs=${TREE}`, `--conntrack.path=${FAKE_TOOL}`, '--collector.table.source=netlink']);
  });

  it('conntrack -L chosen by auto on a kernel before 6.16', async () => {
    const tree = join(tmp, 'old-kernel');
    cpSync(TREE, tree, { recursive: true });
    writeFileSync(join(tree, 'sys', 'kernel', 'osrelease'), '5.15.0-91-generic\n');
    await checkExporter([`--path.procfs=${tree}`, `--conntrack.path=${FAKE_TOOL}`]);
  });
});

describe('a line cut short across a 64 KiB read boundary (hung the scanner before the fix in line.ts)', () => {
  // test/fixtures/robustness/cut-line-hang (generate-cut-line.mjs): a line with counters straddles the
  // first read boundary, "... dport=443 " (a line cut after its original tuple) the second. Before the
  // fix the parser read the stale carry-buffer byte after the cut line ('p' of "packets=") as a token
  // and never moved past it: the event loop blocked at 100% CPU, the port never answered.
  const CUT_TREE = join(FIXTURES, 'cut-line-hang');
  // 1,040 full lines plus the cut line, which has a complete original tuple and so is an entry.
  const expected = { errors: 0, entries: 1041 };

  it('proc file read on the main thread', async () => {
    await checkExporter([`--path.procfs=${CUT_TREE}`, '--conntrack.path=/nonexistent'], {}, expected);
  });

  it('proc file read through the reader thread', async () => {
    const tree = join(tmp, 'cut-worker');
    cpSync(CUT_TREE, tree, { recursive: true });
    writeFileSync(join(tree, 'sys', 'net', 'netfilter', 'nf_conntrack_count'), '25000\n');
    await checkExporter([`--path.procfs=${tree}`, '--conntrack.path=/nonexistent'], {}, expected);
  });

  it('conntrack -L -o extended printing the same lines', async () => {
    await checkExporter(
      [`--path.procfs=${CUT_TREE}`, `--conntrack.path=${FAKE_TOOL}`, '--collector.table.source=netlink'],
      { FAKE_CONNTRACK_TABLE: join(CUT_TREE, 'net', 'nf_conntrack') },
      expected,
    );
  });
});
