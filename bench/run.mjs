#!/usr/bin/env node
// `npm run bench`: runs every bench/*.bench.mjs in name order, each in its own
// process, so one benchmark's memory and kernel state do not skew the next.
// Each benchmark prints its own figures and ratios against a floor measured
// in the same run. Needs root (network namespaces, a large conntrack table).
import { readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const only = process.argv[2];
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.mjs') && (!only || f.includes(only)))
  .sort();
if (files.length === 0) {
  console.error(only ? `no benchmark matches "${only}"` : 'no benchmarks found');
  process.exit(1);
}
let failed = 0;
for (const f of files) {
  console.log(`\n=== ${f}`);
  const r = spawnSync(process.execPath, ['--expose-gc', join(here, f), ...process.argv.slice(3)], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    console.log(`${f}: exited with ${r.status ?? r.signal}`);
  }
}
process.exit(failed ? 1 : 0);
