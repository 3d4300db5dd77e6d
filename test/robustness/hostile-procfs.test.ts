/**
 * Hostile procfs trees: the file of one source replaced by a FIFO that never
 * ends, a directory, binary garbage, an empty file or a file larger than the
 * small-file cap. The built exporter must keep answering (/healthz, /metrics
 * 200 within a few seconds), set only that collector's
 * conntrack_scrape_collector_success to 0, and exit 0 on SIGTERM. Before the
 * fix in src/procfs/fs.ts a FIFO at net/stat/nf_conntrack blocked the event
 * loop in open(): no /healthz, SIGTERM ignored.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { samples } from '../helpers/app.js';
import { REPO_ROOT } from '../helpers/kernel.js';
import { startExporter, stopWithin } from '../helpers/process.js';

const BASE = join(REPO_ROOT, 'test', 'fixtures', 'robustness', 'issue-15-garbage-line');
const tmp = mkdtempSync(join(tmpdir(), 'cte-robust-hostile-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

type Make = (path: string) => void;
const HOSTILE: Record<string, Make> = {
  'a FIFO that never ends': (p) => execFileSync('mkfifo', [p]),
  'a directory': (p) => mkdirSync(p),
  'binary garbage': (p) => writeFileSync(p, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 131 + 7) & 255))),
  'an empty file': (p) => writeFileSync(p, ''),
  'a 20 MB file': (p) => writeFileSync(p, Buffer.alloc(20 << 20, 0x41)),
};

/**
 * Source file (under procfs) → the collectors that read it (the memory collector reads the entry count
 * too, for its sizing advice), and the hostile kinds it accepts (an empty sockstat has no TIME_WAIT line:
 * the ports collector exports what it has and succeeds).
 */
const SOURCES: [string[], string[], string[]][] = [
  [['net', 'stat', 'nf_conntrack'], ['stat'], []],
  [['sys', 'net', 'netfilter', 'nf_conntrack_count'], ['conntrack', 'memory'], []],
  [['net', 'sockstat'], ['ports'], ['an empty file']],
];

let n = 0;
describe('hostile procfs files: one collector fails, the exporter stays up', () => {
  for (const [parts, collectors, accepted] of SOURCES) {
    for (const [what, make] of Object.entries(HOSTILE)) {
      const failing = accepted.includes(what) ? [] : collectors;
      it(`${parts.join('/')} is ${what}: only ${failing.join(', ') || 'none'} fail`, async () => {
        const tree = join(tmp, `t${n++}`);
        cpSync(BASE, tree, { recursive: true });
        const file = join(tree, ...parts);
        rmSync(file);
        make(file);
        const exp = await startExporter([`--path.procfs=${tree}`, '--kernel-log.source=none', '--conntrack.path=/nonexistent', '--no-collector.table']);
        try {
          const health = await fetch(`${exp.url}/healthz`, { signal: AbortSignal.timeout(3000) });
          expect(health.status).toBe(200);
          const r = await fetch(`${exp.url}/metrics`, { signal: AbortSignal.timeout(5000) });
          expect(r.status).toBe(200);
          const s = samples(await r.text());
          for (const [k, v] of s) {
            const m = /^conntrack_scrape_collector_success\{collector="(\w+)"\}$/.exec(k);
            if (m) expect(v, `${m[1]} ${exp.logs().slice(-2000)}`).toBe(failing.includes(m[1] as string) ? 0 : 1);
          }
          for (const c of failing) expect(s.get(`conntrack_scrape_collector_success{collector="${c}"}`)).toBe(0);
        } finally {
          const stopped = await stopWithin(exp, 5000);
          expect(stopped.code).toBe(0);
          expect(stopped.ms).toBeLessThan(5000);
        }
      });
    }
  }
});
