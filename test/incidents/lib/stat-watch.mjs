#!/usr/bin/env node
// Watches this network namespace's conntrack statistics, run inside it:
//   stat-watch.mjs [INTERVAL_MS]
// Reads /proc/net/stat/nf_conntrack every INTERVAL_MS (default 100), sums each
// column over CPUs and prints {"t": <ms since epoch>, "drop": …, "early_drop": …,
// "insert_failed": …, "clash_resolve": …, "invalid": …, "entries": …} whenever one of
// these changed: the lab's clock for "the first drop" (the onset of a page budget).
import { readFileSync } from 'node:fs';

const interval = Number(process.argv[2] ?? 100);
const KEYS = ['drop', 'early_drop', 'insert_failed', 'clash_resolve', 'invalid'];
let last = '';

function read() {
  const [head, ...rows] = readFileSync('/proc/net/stat/nf_conntrack', 'utf8').trim().split('\n');
  const names = head.trim().split(/\s+/);
  const sum = Object.fromEntries(KEYS.map((k) => [k, 0]));
  let entries = 0;
  for (const row of rows) {
    const v = row.trim().split(/\s+/).map((x) => parseInt(x, 16));
    names.forEach((n, i) => {
      const k = n === 'clashres' ? 'clash_resolve' : n;
      if (k in sum) sum[k] += v[i];
    });
    entries = v[names.indexOf('entries')];
  }
  return { ...sum, entries };
}

setInterval(() => {
  const s = read();
  const key = KEYS.map((k) => s[k]).join(',');
  if (key !== last) {
    last = key;
    process.stdout.write(`${JSON.stringify({ t: Date.now(), ...s })}\n`);
  }
}, interval);
const first = read();
last = KEYS.map((k) => first[k]).join(',');
process.stdout.write(`${JSON.stringify({ t: Date.now(), ...first })}\n`);
