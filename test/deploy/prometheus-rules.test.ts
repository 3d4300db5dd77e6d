/**
 * The shipped alerting and recording rules: promtool check/test, and the
 * conventions every rule follows (selectors on both sides, annotations,
 * runbook anchors that exist, a firing and a not-firing test per alert).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { IN_CI, REPO_ROOT } from '../helpers/kernel.js';
import { PROMTOOL, promtool } from './promtool.js';

const RULES_DIR = join(REPO_ROOT, 'deploy', 'prometheus');
const RULES_FILE = join(RULES_DIR, 'conntrack-rules.yaml');
const TESTS_DIR = join(RULES_DIR, 'tests');
const RUNBOOK = join(REPO_ROOT, 'docs', 'runbook.md');
const RUNBOOK_BASE = 'https://github.com/conntrack-exporter/conntrack-exporter/blob/main/docs/runbook.md';
const SELECTOR = 'job="conntrack-exporter"';

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  groups: { name: string; rules: Rule[] }[];
}
interface TestFile {
  rule_files: string[];
  tests: {
    name?: string;
    input_series: { series: string; values: string }[];
    alert_rule_test?: { alertname: string; eval_time: string; exp_alerts?: { exp_labels: Record<string, string> }[] }[];
    promql_expr_test?: { expr: string }[];
  }[];
}

const rules = (parse(readFileSync(RULES_FILE, 'utf8')) as RuleFile).groups.flatMap((g) => g.rules);
const alerts = rules.filter((r) => r.alert);
const records = rules.filter((r) => r.record);
const testFiles = readdirSync(TESTS_DIR)
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => join(TESTS_DIR, f));
const tests = testFiles.flatMap((f) => (parse(readFileSync(f, 'utf8')) as TestFile).tests);

/** GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes. */
export function githubAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

const runPromtool = it.skipIf(!PROMTOOL && !IN_CI);

describe('deploy/prometheus/conntrack-rules.yaml', () => {
  runPromtool('passes promtool check rules', () => {
    const r = promtool(['check', 'rules', RULES_FILE]);
    expect(r.stderr + r.stdout).toContain('SUCCESS');
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stderr).not.toMatch(/warn/i);
  });

  runPromtool('passes promtool test rules (tests/*.yaml)', () => {
    const r = promtool(['test', 'rules', ...testFiles.map((f) => f.slice(RULES_DIR.length + 1))], RULES_DIR);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect((r.stdout.match(/SUCCESS/g) ?? []).length).toBe(testFiles.length);
  });

  it('has the alerts the project promises', () => {
    expect(alerts.map((a) => a.alert)).toEqual(
      expect.arrayContaining([
        'ConntrackTableNearlyFull',
        'ConntrackTableFull',
        'ConntrackPacketsDropped',
        'ConntrackInsertFailures',
        'ConntrackKernelTableFullLogged',
        'ConntrackExporterCollectorFailing',
        'ConntrackTableScanStale',
        'ConntrackSourcePortsNearExhaustion',
        'ConntrackTableFillingUp',
        'ConntrackNamespaceInsertFailures',
      ]),
    );
    expect(new Set(alerts.map((a) => a.alert)).size).toBe(alerts.length);
  });

  it('selects job="conntrack-exporter" in every metric selector of every rule (both sides of every ratio)', () => {
    for (const r of rules) {
      const selectors = [...r.expr.matchAll(/\b((?:conntrack_|process_|up\b)[a-z_]*)\s*(\{[^}]*\})?/g)];
      expect(selectors.length, `${r.alert ?? r.record}`).toBeGreaterThan(0);
      for (const m of selectors) {
        expect(m[2] ?? '', `${r.alert ?? r.record}: ${m[0]}`).toContain(SELECTOR);
      }
    }
  });

  it('gives every alert a severity, summary, templated description and runbook_url', () => {
    for (const a of alerts) {
      expect(a.alert).toMatch(/^Conntrack[A-Z][A-Za-z]+$/);
      expect(['critical', 'warning', 'info']).toContain(a.labels?.severity);
      expect(a.annotations?.summary, a.alert).toMatch(/^[A-Zc].*\.$/);
      expect(a.annotations?.summary, a.alert).not.toContain('{{');
      expect(a.annotations?.description, a.alert).toContain('{{ $labels.instance }}');
      expect(a.annotations?.runbook_url).toBe(`${RUNBOOK_BASE}#${a.alert!.toLowerCase()}`);
    }
  });

  it('points every runbook_url at a heading that exists in docs/runbook.md', () => {
    const anchors = new Set(
      readFileSync(RUNBOOK, 'utf8')
        .split('\n')
        .filter((l) => /^#{1,6} /.test(l))
        .map((l) => githubAnchor(l.replace(/^#+ /, ''))),
    );
    for (const a of alerts) {
      const anchor = a.annotations!.runbook_url!.split('#')[1]!;
      expect(anchors, `${a.alert}: #${anchor}`).toContain(anchor);
    }
  });

  it('has a runbook whose internal links all resolve, with a section per alert', () => {
    const text = readFileSync(RUNBOOK, 'utf8');
    const headings = text.split('\n').filter((l) => /^#{1,6} /.test(l));
    const anchors = new Set(headings.map((l) => githubAnchor(l.replace(/^#+ /, ''))));
    for (const m of text.matchAll(/\]\(#([^)]+)\)/g)) expect(anchors, `link #${m[1]}`).toContain(m[1]);
    for (const a of alerts) expect(headings, a.alert).toContain(`### ${a.alert}`);
  });

  it('has a firing case, a not-firing case and another-job series in the unit tests of every alert', () => {
    for (const a of alerts) {
      const cases = tests.flatMap((t) => (t.alert_rule_test ?? []).filter((c) => c.alertname === a.alert).map((c) => ({ t, c })));
      expect(cases.some(({ c }) => (c.exp_alerts ?? []).length > 0), `${a.alert} fires`).toBe(true);
      expect(cases.some(({ c }) => (c.exp_alerts ?? []).length === 0), `${a.alert} does not fire`).toBe(true);
      const otherJob = cases.some(({ t }) => t.input_series.some((s) => /job="(?!conntrack-exporter")/.test(s.series)));
      expect(otherJob, `${a.alert} has series from another job`).toBe(true);
      // No expected alert ever comes from another job.
      for (const { c } of cases) for (const e of c.exp_alerts ?? []) expect(e.exp_labels.job).toBe('conntrack-exporter');
    }
  });

  it('tests every recording rule', () => {
    const tested = new Set(tests.flatMap((t) => (t.promql_expr_test ?? []).map((p) => p.expr.trim())));
    for (const r of records) {
      expect(r.record).toMatch(/^[a-z_]+:[a-z_]+:[a-z0-9_]+$/);
      expect(tested, r.record).toContain(r.record);
    }
  });
});
