#!/usr/bin/env node
// Series budget (issue 14): how many series one node exports, counted from real /metrics bodies, and
// what that costs a Prometheus at 1,000 and 10,000 nodes scraped every 15 s.
//   defaults  the default collectors in a namespace with mixed traffic: established TCP, TIME_WAIT,
//             closed connections, unreplied UDP to many destinations, ICMP.
//   netns     --collector.netns with 10, 100 and 500 namespaces ("pods"), each holding one process
//             and two entries; the exporter runs in the host namespace (as with hostPID). Series are
//             counted per feature: unlabelled by netns, and those whose netns label is one of ours
//             (other namespaces on the machine are left out).
// Needs root. NETNS_COUNTS=10,100 to change the sizes.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { createNamespace, deleteNamespace, inNs, MAIN, startInNs, stop } from './lib/table.mjs';

const PORT = 19830;
const COUNTS = (process.env.NETNS_COUNTS ?? '10,100,500').split(',').map(Number);
const SCRAPE_S = 15;
const id = randomBytes(3).toString('hex');

const TRAFFIC = `
const net = require('node:net'), dgram = require('node:dgram');
(async () => {
  const server = net.createServer((s) => s.on('error', () => {})).listen(7000, '10.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const held = [];
  for (let i = 0; i < 30; i++) held.push(await new Promise((r) => { const c = net.connect(7000, '10.0.0.1', () => r(c)); }));
  for (let i = 0; i < 30; i++) await new Promise((r) => { const c = net.connect(7000, '10.0.0.1', () => { c.end(); c.on('close', r); }); });
  const u = dgram.createSocket('udp4');
  await new Promise((r) => u.bind(0, '10.0.0.1', r));
  for (let i = 0; i < 500; i++) await new Promise((r) => u.send(Buffer.alloc(1), 1024 + i, '10.1.' + (i >> 8) + '.' + (i & 255), r));
  console.log('ready');
  setTimeout(() => process.exit(0), 600000);
})();
`;

/** name → series count of a text exposition, and the series themselves. */
function parse(body) {
  return body.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
}
const family = (line) => line.replace(/[{ ].*$/, '');

async function scrapeBody(ns, port) {
  const out = ns ? inNs(ns, 'curl', ['-s', `http://127.0.0.1:${port}/metrics`]) : spawnSync('curl', ['-s', `http://127.0.0.1:${port}/metrics`], { encoding: 'utf8' }).stdout;
  return out;
}

function groupByPrefix(lines) {
  const groups = new Map();
  for (const l of lines) {
    const f = family(l);
    const g = /^(process|nodejs)_/.test(f) ? 'process_*, nodejs_* (exporter itself)' : f.replace(/^(conntrack_[a-z]+)_.*$/, '$1_*');
    groups.set(g, (groups.get(g) ?? 0) + 1);
  }
  return groups;
}

async function defaults() {
  const ns = `cte-bench-series-${id}`;
  createNamespace(ns, [PORT]);
  const traffic = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', TRAFFIC], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise((r) => traffic.stdout.once('data', r));
    inNs(ns, 'conntrack', ['-I', '-p', 'icmp', '-s', '10.0.0.1', '-d', '10.0.0.9', '--icmp-type', '8', '--icmp-code', '0', '--icmp-id', '1', '-t', '30']);
    const child = await startInNs(ns, process.execPath, [MAIN, `--web.listen-address=127.0.0.1:${PORT}`], /listening on/);
    try {
      await new Promise((r) => setTimeout(r, 3000)); // the first table scan
      const lines = parse(await scrapeBody(ns, PORT));
      return { total: lines.length, groups: groupByPrefix(lines), entries: Number(inNs(ns, 'conntrack', ['-C']).trim()) };
    } finally {
      await stop(child);
    }
  } finally {
    traffic.kill();
    deleteNamespace(ns);
  }
}

async function withNamespaces(n) {
  const names = Array.from({ length: n }, (_, i) => `cte-bench-series-${id}-${i}`);
  const script = names
    .map((name) => `ip netns add ${name} && ip netns exec ${name} ip link set lo up && ip netns exec ${name} conntrack -I -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 1000 --dport 80 --state ESTABLISHED -t 600 -u SEEN_REPLY >/dev/null 2>&1 && ip netns exec ${name} conntrack -I -p udp -s 10.0.0.1 -d 10.0.0.3 --sport 1000 --dport 53 -t 600 >/dev/null 2>&1`)
    .join('\n');
  const holders = [];
  try {
    const lines = script.split('\n');
    for (let i = 0; i < lines.length; i += 50) {
      const r = spawnSync('sh', ['-e', '-c', lines.slice(i, i + 50).join('\n')], { encoding: 'utf8', timeout: 300_000 });
      if (r.status !== 0) throw new Error(`creating namespaces: ${r.status ?? r.signal} ${r.error?.message ?? ''} ${r.stderr}`);
    }
    for (const name of names) holders.push(spawn('ip', ['netns', 'exec', name, 'sleep', '600'], { stdio: 'ignore' }));
    await new Promise((r) => setTimeout(r, 1000));
    const inodes = new Set(names.map((name) => String(statSync(`/run/netns/${name}`).ino)));
    const child = await startInNs('', process.execPath, [MAIN, `--web.listen-address=127.0.0.1:${PORT}`, '--collector.netns'], /listening on/).catch(async () => {
      throw new Error('exporter did not start');
    });
    try {
      await new Promise((r) => setTimeout(r, 3000));
      const lines = parse(await scrapeBody(undefined, PORT));
      const mine = lines.filter((l) => { const m = /netns="(\d+)"/.exec(l); return m && inodes.has(m[1]); });
      const perFamily = new Map();
      for (const l of mine) perFamily.set(family(l), (perFamily.get(family(l)) ?? 0) + 1);
      // The collector's own series without a netns label (namespaces found, omitted entries, skipped pids).
      const collectorOwn = lines.filter((l) => /^conntrack_netns_/.test(l) && !/netns="/.test(l)).length;
      return { n, perNamespace: mine.length / n, perFamily, collectorOwn };
    } finally {
      await stop(child);
    }
  } finally {
    for (const h of holders) h.kill();
    spawnSync('sh', ['-c', names.map((name) => `ip netns del ${name} 2>/dev/null`).join('; ')]);
  }
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('the series benchmark needs root (network namespaces)');
  const d = await defaults();
  console.log(`defaults: ${d.total} series (namespace with ${d.entries} entries: TCP established, TIME_WAIT, UDP, ICMP)`);
  for (const [g, c] of [...d.groups].sort((a, b) => b[1] - a[1])) console.log(`  ${String(c).padStart(4)}  ${g}`);
  const rows = [['defaults', d.total]];
  for (const n of COUNTS) {
    const r = await withNamespaces(n);
    console.log(`netns on, ${n} namespaces: ${r.perNamespace} series per namespace (${[...r.perFamily].map(([f, c]) => `${f} ${c / n}`).join(', ')}); ${r.collectorOwn} more without a netns label`);
    rows.push([`defaults + \`--collector.netns\`, ${n} pods`, d.total + r.collectorOwn + r.perNamespace * n]);
  }
  console.log('\n| node | series | samples/s per node (15 s) | 1,000 nodes | 10,000 nodes |');
  console.log('|---|---|---|---|---|');
  for (const [what, s] of rows) {
    const perS = s / SCRAPE_S;
    console.log(`| ${what} | ${s} | ${perS.toFixed(1)} | ${Math.round(perS * 1000).toLocaleString('en')} | ${Math.round(perS * 10000).toLocaleString('en')} |`);
  }
}

main().catch((err) => {
  console.error(err.stack ?? String(err));
  process.exit(1);
});
