/**
 * The built exporter over a fixture procfs tree: the whole /metrics body,
 * minus non-deterministic families, must equal the checked-in golden file
 * (update with `npx vitest run test/e2e -u` and review the diff), and the live
 * body must pass `promtool check metrics`.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/kernel.js';
import { expectPromtoolAccepts } from '../deploy/promtool.js';
import { startExporter, type ExporterProcess } from '../helpers/process.js';

const FIXTURES = join(REPO_ROOT, 'test', 'fixtures');

/** Families whose values change from run to run or machine to machine. */
const VOLATILE = [
  /^process_/,
  /^nodejs_/,
  /^conntrack_exporter_build_info/,
  /^conntrack_scrape_collector_duration_seconds/,
  /_scan_duration_seconds/,
  /_scan_timestamp_seconds/,
];

export function stable(body: string): string {
  const out: string[] = [];
  for (const line of body.split('\n')) {
    if (line === '') continue;
    const name = line.startsWith('# ') ? (line.split(' ')[2] ?? '') : line;
    if (VOLATILE.some((re) => re.test(name))) continue;
    out.push(line);
  }
  return out.join('\n');
}

/** The exporter's flags for the golden run: every input from fixtures, nothing from this host. */
export const GOLDEN_ARGS = [
  `--path.procfs=${join(FIXTURES, 'proc', '6.18')}`,
  `--path.sysfs=${join(FIXTURES, 'sys', '6.18')}`,
  `--path.rootfs=${join(FIXTURES, 'rootfs')}`,
  '--conntrack.path=/nonexistent/conntrack',
  // The kernel log from the fixture rootfs (var/log/kern.log), not this host's /dev/kmsg.
  '--kernel-log.source=file',
  '--kernel-log.from-start',
];

describe('golden /metrics over a 6.18 fixture tree', () => {
  let exporter: ExporterProcess;
  let body = '';

  beforeAll(async () => {
    exporter = await startExporter(GOLDEN_ARGS);
    // Background collectors publish after their first pass; wait until the body is stable.
    let previous = '';
    for (let i = 0; i < 50; i++) {
      body = await (await fetch(`${exporter.url}/metrics`)).text();
      if (stable(body) === previous) break;
      previous = stable(body);
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  afterAll(async () => {
    await exporter?.stop();
  });

  it('matches test/fixtures/e2e/metrics-6.18.txt', async () => {
    await expect(stable(body)).toMatchFileSnapshot(join(FIXTURES, 'e2e', 'metrics-6.18.txt'));
  });

  it('passes promtool check metrics', () => {
    expectPromtoolAccepts(body);
  });
});
