/**
 * deploy/grafana/conntrack.json: structure Grafana accepts on import, no
 * hard-coded data source, consistent variables, and PromQL that parses
 * (checked by promtool). The queries are run against a real Prometheus in
 * test/kernel/prometheus-e2e.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { IN_CI } from '../helpers/kernel.js';
import { allPanels, dashboardQueries, loadDashboard } from './dashboard-queries.js';
import { PROMTOOL, promtool } from './promtool.js';

const dash = loadDashboard();
const panels = allPanels(dash);
const dataPanels = panels.filter((p) => p.type !== 'row');
const DS_REF = '${datasource}';

describe('deploy/grafana/conntrack.json', () => {
  it('is a dashboard Grafana imports: schemaVersion, uid, title, no numeric id', () => {
    expect(dash.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dash.schemaVersion).toBeLessThanOrEqual(41);
    expect(dash.uid).toMatch(/^[A-Za-z0-9_-]{1,40}$/);
    expect(dash.title).toBeTruthy();
    expect(dash.id).toBeNull();
  });

  it('has a Prometheus data source variable, and job, node and instance variables that use it', () => {
    const vars = new Map(dash.templating.list.map((v) => [v.name, v]));
    expect(vars.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const name of ['job', 'node', 'instance']) {
      const v = vars.get(name);
      expect(v, name).toMatchObject({ type: 'query', datasource: { type: 'prometheus', uid: DS_REF } });
    }
    expect(JSON.stringify(vars.get('node')!.query)).toContain('$job');
    // The node (from the chart's monitors; absent outside Kubernetes) narrows the instances:
    // its "All" must also match targets without a node label.
    expect(JSON.stringify(vars.get('instance')!.query)).toContain('node=~\\"$node\\"');
    expect(vars.get('node')!.allValue).toBe('.*');
    expect(dash.templating.list.map((v) => v.name)).toEqual(['datasource', 'job', 'node', 'instance']);
  });

  it('never hard-codes a data source uid', () => {
    const bad: string[] = [];
    const walk = (node: unknown, path: string): void => {
      if (Array.isArray(node)) return node.forEach((n, i) => walk(n, `${path}[${i}]`));
      if (node === null || typeof node !== 'object') return;
      for (const [k, v] of Object.entries(node)) {
        if (k === 'datasource') {
          const ok =
            (typeof v === 'object' && v !== null && ((v as { uid?: string }).uid === DS_REF || (v as { uid?: string }).uid === '-- Grafana --')) ||
            v === DS_REF;
          if (!ok) bad.push(`${path}.${k} = ${JSON.stringify(v)}`);
        }
        walk(v, `${path}.${k}`);
      }
    };
    walk(dash, '$');
    expect(bad).toEqual([]);
    for (const p of dataPanels) expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: DS_REF });
  });

  it('lays panels out on the 24-column grid without overlaps, with unique ids', () => {
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Map<string, string>();
    for (const p of panels) {
      const g = p.gridPos;
      expect(g.x + g.w, p.title).toBeLessThanOrEqual(24);
      expect(g.w * g.h, p.title).toBeGreaterThan(0);
      for (let x = g.x; x < g.x + g.w; x++)
        for (let y = g.y; y < g.y + g.h; y++) {
          const key = `${x},${y}`;
          expect(cells.get(key), `${p.title} overlaps ${cells.get(key)}`).toBeUndefined();
          cells.set(key, p.title);
        }
    }
  });

  it('gives every data panel targets with unique refIds and job and instance selectors on every metric', () => {
    for (const p of dataPanels) {
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      const refIds = p.targets!.map((t) => t.refId);
      expect(new Set(refIds).size, p.title).toBe(refIds.length);
      for (const t of p.targets!) {
        expect(t.datasource, p.title).toEqual({ type: 'prometheus', uid: DS_REF });
        const selectors = [...t.expr.matchAll(/\b(conntrack_[a-z_]+)\s*(\{[^}]*\})?/g)];
        expect(selectors.length, `${p.title}: ${t.expr}`).toBeGreaterThan(0);
        for (const m of selectors) {
          expect(m[2] ?? '', `${p.title}: ${m[0]}`).toContain('job=~"$job"');
          expect(m[2] ?? '', `${p.title}: ${m[0]}`).toContain('instance=~"$instance"');
        }
      }
    }
  });

  it('covers fill ratio, entries vs limit, kernel counters, table breakdown, top destinations, kernel log and collector health', () => {
    const exprs = dataPanels.flatMap((p) => p.targets!.map((t) => t.expr)).join('\n');
    for (const metric of [
      'conntrack_entries{',
      'conntrack_entries_limit{',
      'conntrack_stat_drop_total',
      'conntrack_stat_insert_failed_total',
      'conntrack_stat_early_drop_total',
      'conntrack_table_entries',
      'conntrack_table_destination_entries',
      'conntrack_table_destination_source_ports',
      'conntrack_kernel_log_events_total',
      'conntrack_kernel_log_suppressed_total',
      'conntrack_scrape_collector_success',
      'conntrack_netns_entries',
      // Issue 12's signals: top ports, TIME_WAIT per destination, per-namespace counters, the
      // destination's own port range, resolved clashes as information.
      'conntrack_table_destination_port_entries',
      'conntrack_table_destination_state_entries',
      'conntrack_table_destination_source_port_range_size',
      'conntrack_netns_stat_drop_total',
      'conntrack_netns_stat_early_drop_total',
      'conntrack_netns_stat_insert_failed_total',
      'conntrack_netns_stat_clash_resolve_total',
      'conntrack_netns_sockets_time_wait',
      'conntrack_stat_clash_resolve_total',
      // The correct rate of new entries (opt-in events collector; the e2e enables it).
      'conntrack_events_total',
    ]) {
      expect(exprs, metric).toContain(metric);
    }
    // The kernel's insert statistic no longer counts new entries on modern kernels: no panel
    // may pass it off as a rate of new connections.
    expect(exprs).not.toContain('conntrack_stat_insert_total');
  });

  it('marks the alert thresholds (0.75, 0.9) on the fill panels', () => {
    const fill = dataPanels.filter((p) => /fill/i.test(p.title));
    expect(fill.length).toBeGreaterThanOrEqual(2);
    for (const p of fill) {
      const steps = p.fieldConfig?.defaults?.thresholds?.steps.map((s) => s.value);
      expect(steps, p.title).toEqual([null, 0.75, 0.9]);
    }
  });

  it.skipIf(!PROMTOOL && !IN_CI)('has PromQL that parses (every query, variables substituted, through promtool check rules)', () => {
    const queries = dashboardQueries(dash);
    const dir = mkdtempSync(join(tmpdir(), 'cte-dash-'));
    try {
      const file = join(dir, 'queries.yaml');
      writeFileSync(
        file,
        stringify({
          groups: [{ name: 'dashboard', rules: queries.map((q, i) => ({ record: `dashboard:query_${i}:check`, expr: q.expr })) }],
        }),
      );
      const r = promtool(['check', 'rules', file]);
      expect(r.status, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toContain(`SUCCESS: ${queries.length} rules found`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
