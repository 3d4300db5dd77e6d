/**
 * The Grafana dashboard's queries, for the structural test and the real
 * Prometheus test: every panel target with its template variables substituted.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/kernel.js';

export const DASHBOARD_PATH = join(REPO_ROOT, 'deploy', 'grafana', 'conntrack.json');

export interface Target {
  refId: string;
  expr: string;
  instant?: boolean;
  datasource?: unknown;
  legendFormat?: string;
}

export interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: unknown;
  targets?: Target[];
  panels?: Panel[];
  fieldConfig?: { defaults?: { thresholds?: { steps: { value: number | null }[] } } };
}

export interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  id: number | null;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown; datasource?: unknown; allValue?: string }[] };
}

export function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as Dashboard;
}

/** Every panel, rows' nested panels included. */
export function allPanels(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

export interface PanelQuery {
  panel: string;
  refId: string;
  expr: string;
}

/**
 * Every target's expression with the template variables replaced:
 * `$job` by the job, `$instance` by a regex for all instances, and Grafana's
 * interval macros by a fixed range.
 */
export function dashboardQueries(d: Dashboard, vars: { job?: string; instance?: string; rateInterval?: string } = {}): PanelQuery[] {
  const out: PanelQuery[] = [];
  for (const p of allPanels(d)) {
    for (const t of p.targets ?? []) {
      out.push({ panel: p.title, refId: t.refId, expr: substitute(t.expr, vars) });
    }
  }
  return out;
}

export function substitute(expr: string, vars: { job?: string; instance?: string; rateInterval?: string } = {}): string {
  return expr
    .replaceAll('$__rate_interval', vars.rateInterval ?? '1m')
    .replaceAll('$__interval', vars.rateInterval ?? '1m')
    .replaceAll('$job', vars.job ?? 'conntrack-exporter')
    .replaceAll('$instance', vars.instance ?? '.+');
}
