/**
 * The README is the reference users read: its flag table, metric table and
 * statistics table must name exactly what the exporter has.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COLLECTORS } from '../../src/collectors/index.js';
import { allFlags } from '../../src/config/options.js';
import { STAT_HELP } from '../../src/procfs/conntrack-stat.js';
import { buildTestApp } from '../helpers/app.js';
import { REPO_ROOT } from '../helpers/kernel.js';

const README = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');

/** The body of the `## title` section (up to the next `## `). */
function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`);
  if (start < 0) throw new Error(`README has no "## ${title}" section`);
  const end = README.indexOf('\n## ', start + 1);
  return README.slice(start, end < 0 ? undefined : end);
}

/** First cells of the table rows of a section: the `code` names in them. */
function firstCells(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('| `'))
    .flatMap((l) => [...(l.split('|')[1] as string).matchAll(/`([^`]+)`/g)].map((m) => m[1] as string));
}

describe('README', () => {
  it('the flag table lists every flag, and only real ones', () => {
    const documented = new Set(firstCells(section('Flags')));
    const toggles = COLLECTORS.map((c) => `collector.${c.name}`);
    for (const spec of allFlags(COLLECTORS)) {
      if (['help', 'version'].includes(spec.name) || toggles.includes(spec.name)) continue;
      expect(documented, `--${spec.name}`).toContain(`--${spec.name}`);
    }
    const known = new Set(allFlags(COLLECTORS).map((s) => `--${s.name}`));
    for (const name of documented) if (name !== '--[no-]collector.<name>') expect(known, name).toContain(name);
  });

  it('the collector table lists every collector with its default', () => {
    const rows = section('Collectors')
      .split('\n')
      .filter((l) => l.startsWith('| `'));
    expect(rows.map((r) => /^\| `([^`]+)`/.exec(r)?.[1]).sort()).toEqual(COLLECTORS.map((c) => c.name).sort());
    for (const c of COLLECTORS) {
      const row = rows.find((r) => r.startsWith(`| \`${c.name}\``)) as string;
      expect(row.split('|')[2], c.name).toMatch(c.defaultEnabled ? /\bon\b/ : /\boff\b/);
    }
  });

  it('the metric table lists every metric the collectors register, and only those', async () => {
    const app = await buildTestApp({
      args: [
        '--collector.netns',
        `--path.procfs=${join(REPO_ROOT, 'test/fixtures/proc/6.18')}`,
        // Registers the events collector's families without following the real kernel.
        '--collector.events',
        `--conntrack.path=${join(REPO_ROOT, 'test/fixtures/table/fake-conntrack-events')}`,
      ],
    });
    try {
      const body = (await app.inject({ url: '/metrics' })).body;
      // Every registered family has a HELP line; the stat counters are made per kernel column and documented by name below.
      const names = [...body.matchAll(/^# HELP (\S+)/gm)].map((m) => m[1] as string).filter((n) => !n.startsWith('conntrack_stat_'));
      expect(names.length).toBeGreaterThan(30);
      const documented = new Set(firstCells(section('Metrics')).filter((n) => n.startsWith('conntrack_')));
      for (const name of names) expect(documented, name).toContain(name);
      for (const name of documented) {
        if (name === 'conntrack_stat_<name>_total') continue;
        expect(names, name).toContain(name);
      }
    } finally {
      await app.close();
    }
  });

  it('the kernel statistics table names every statistic', () => {
    const documented = new Set(firstCells(README.slice(README.indexOf('### Kernel statistics'))));
    for (const name of Object.keys(STAT_HELP)) expect(documented, name).toContain(name);
  });
});
