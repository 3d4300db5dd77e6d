#!/usr/bin/env node
// Copies the shipped alert rules and Grafana dashboard into the Helm chart: Helm can only read
// files inside the chart (.Files.Get), so the chart carries copies, and test/chart checks that
// they are identical to the sources.
//
//   node scripts/sync-chart-assets.mjs          copy the sources into helm/conntrack-exporter/files/
//   node scripts/sync-chart-assets.mjs --check  exit 1 (and name the files) if a copy differs
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FILES = join(ROOT, 'helm', 'conntrack-exporter', 'files');

/** Source (repository path) → copy (chart path). */
export const CHART_ASSETS = [
  { source: join(ROOT, 'deploy', 'prometheus', 'conntrack-rules.yaml'), copy: join(FILES, 'conntrack-rules.yaml') },
  { source: join(ROOT, 'deploy', 'grafana', 'conntrack.json'), copy: join(FILES, 'conntrack.json') },
];

/** The assets whose chart copy is missing or differs from the source. */
export function staleAssets() {
  return CHART_ASSETS.filter(
    ({ source, copy }) => !existsSync(copy) || !readFileSync(source).equals(readFileSync(copy)),
  );
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const missing = CHART_ASSETS.filter(({ source }) => !existsSync(source));
  if (missing.length > 0) {
    for (const { source } of missing) console.error(`missing source: ${relative(ROOT, source)}`);
    process.exit(1);
  }
  const stale = staleAssets();
  if (process.argv.includes('--check')) {
    for (const { source, copy } of stale) {
      console.error(`${relative(ROOT, copy)} differs from ${relative(ROOT, source)}: run node scripts/sync-chart-assets.mjs`);
    }
    process.exit(stale.length > 0 ? 1 : 0);
  }
  mkdirSync(FILES, { recursive: true });
  for (const { source, copy } of stale) {
    copyFileSync(source, copy);
    console.log(`${relative(ROOT, source)} → ${relative(ROOT, copy)}`);
  }
  if (stale.length === 0) console.log('chart assets up to date');
}
