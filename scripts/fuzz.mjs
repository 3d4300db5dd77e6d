#!/usr/bin/env node
/**
 * Fuzzes every pure parser of the exporter with inputs mutated from the real
 * fixtures: byte flips, truncation, NUL bytes, invalid UTF-8, huge numbers,
 * line deletion/duplication and, now and then, a 1 MB line. For each input it
 * checks: no throw (a parser whose contract is to throw ParseError may throw
 * that, nothing else), no input taking more than 100 ms, and no NaN, infinite
 * or negative number anywhere in the result.
 *
 *   node scripts/fuzz.mjs [inputs-per-parser=100000] [seed=1]   (after npm run build)
 *
 * test/robustness/fuzz.test.ts runs the same targets with 10^4 inputs each.
 * Loads the build (dist/), so run `npm run build` first.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { rng } from './rng.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const FIX = join(ROOT, 'test', 'fixtures');
const dist = async (p) => import(pathToFileURL(join(ROOT, 'dist', p)).href);


function files(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p));
    else out.push(p);
  }
  return out;
}
const read = (...p) => readFileSync(join(FIX, ...p));

const HUGE = ['99999999999999999999999999999', '18446744073709551616', '4294967296', 'ffffffffffffffffffff', '-1', '1e308', 'NaN', 'Infinity', '0x10'];
const BAD_UTF8 = [[0xff], [0xfe, 0xff], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80]];
const MB_LINE_EVERY = 500;

/** One mutated copy of `seed` (a Buffer). */
export function mutate(seed, r, n) {
  let b = Buffer.from(seed);
  const pick = (k) => Math.floor(r() * k);
  const at = () => pick(b.length + 1);
  const insert = (bytes) => {
    const p = at();
    b = Buffer.concat([b.subarray(0, p), Buffer.from(bytes), b.subarray(p)]);
  };
  if (n % MB_LINE_EVERY === MB_LINE_EVERY - 1) {
    const fill = [0x39, 0x78, 0x20, 0x3d, 0x00][pick(5)];
    insert(Buffer.alloc(1 << 20, fill));
    return b;
  }
  const ops = 1 + pick(4);
  for (let i = 0; i < ops; i++) {
    switch (pick(9)) {
      case 0: // byte flips
        for (let k = 1 + pick(8); k > 0 && b.length; k--) b[pick(b.length)] ^= 1 << pick(8);
        break;
      case 1: // random bytes
        for (let k = 1 + pick(8); k > 0 && b.length; k--) b[pick(b.length)] = pick(256);
        break;
      case 2: // truncation
        b = b.subarray(0, at());
        break;
      case 3: // NUL bytes
        insert(Buffer.alloc(1 + pick(16)));
        break;
      case 4: // invalid UTF-8
        insert(BAD_UTF8[pick(BAD_UTF8.length)]);
        break;
      case 5: {
        // a huge (or odd) number in place of a digit run
        const s = b.toString('latin1');
        const runs = [...s.matchAll(/[0-9a-f]+/g)];
        if (runs.length) {
          const m = runs[pick(runs.length)];
          b = Buffer.from(s.slice(0, m.index) + HUGE[pick(HUGE.length)] + s.slice(m.index + m[0].length), 'latin1');
        }
        break;
      }
      case 6: {
        // delete or duplicate a line
        const lines = b.toString('latin1').split('\n');
        const k = pick(lines.length);
        if (r() < 0.5) lines.splice(k, 1);
        else lines.splice(k, 0, lines[k]);
        b = Buffer.from(lines.join('\n'), 'latin1');
        break;
      }
      case 7: // CR, tabs, spaces
        insert([[0x0d], [0x09], [0x20, 0x20], [0x0a], [0x0d, 0x0a]][pick(5)]);
        break;
      default: // empty now and then
        if (r() < 0.1) b = Buffer.alloc(0);
    }
  }
  return b;
}

/** A NaN, infinite or negative number anywhere in `v`, as a path; undefined if none. */
export function badNumber(v, path = '', depth = 0) {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? undefined : `${path || 'result'} = ${v}`;
  if (typeof v === 'bigint') return v >= 0n ? undefined : `${path} = ${v}`;
  if (v === null || typeof v !== 'object' || depth > 6) return undefined;
  if (v instanceof Map) {
    for (const [k, x] of v) {
      const bad = badNumber(x, `${path}[${String(k).slice(0, 20)}]`, depth + 1);
      if (bad) return bad;
    }
    return undefined;
  }
  if (ArrayBuffer.isView(v)) return undefined;
  for (const [k, x] of Object.entries(v)) {
    const bad = badNumber(x, `${path}.${k}`, depth + 1);
    if (bad) return bad;
  }
  return undefined;
}

/**
 * The targets: name, seeds (Buffers), run(buf, r) → result to check, and
 * whether ParseError is part of the contract.
 */
export async function targets() {
  const { parseConntrackStatFile, parseConntrackToolStats } = await dist('procfs/conntrack-stat.js');
  const { parseSlabinfo, conntrackSlab } = await dist('procfs/slabinfo.js');
  const { parseSockstat, timeWaitSockets } = await dist('procfs/sockstat.js');
  const { parseMeminfo } = await dist('procfs/meminfo.js');
  const { parseCgroupFile } = await dist('procfs/cgroup.js');
  const { parsePortRange, portRangeSize } = await dist('procfs/port-range.js');
  const { parseTimeoutSysctlName } = await dist('procfs/conntrack-timeouts.js');
  const { parseIntFile } = await dist('procfs/fs.js');
  const { ParsedLine, StateNames, parseLine } = await dist('table/line.js');
  const { TableScanner } = await dist('table/scanner.js');
  const { parseKernelRelease } = await dist('table/scan.js');
  const classify = await dist('kernel-log/classify.js');
  const { LineSplitter } = await dist('kernel-log/line-splitter.js');

  const proc = join(FIX, 'proc', '6.18');
  const tableSeeds = [read('table', 'proc-6.18', 'net', 'nf_conntrack'), read('table', 'conntrack-L-extended.txt'), read('table', 'ip_conntrack-2.6.txt'), read('table', 'malformed.txt')];
  const tableLines = tableSeeds.flatMap((b) => b.toString('latin1').split('\n').filter(Boolean).map((l) => Buffer.from(l, 'latin1')));
  const logSeeds = files(join(FIX, 'kernel-log'));
  const logLines = logSeeds.flatMap((p) => readFileSync(p, 'latin1').split('\n').filter(Boolean).map((l) => Buffer.from(l, 'latin1')));
  const timeoutNames = readdirSync(join(proc, 'sys', 'net', 'netfilter')).map((n) => Buffer.from(n));
  const text = (b) => b.toString('utf8');

  const states = new StateNames();
  const parsed = new ParsedLine();
  return [
    { name: 'stat (net/stat/nf_conntrack)', typed: true, seeds: [read('proc', '6.18', 'net', 'stat', 'nf_conntrack'), read('proc', '6.18-64cpu', 'net', 'stat', 'nf_conntrack')], run: (b) => parseConntrackStatFile(text(b)) },
    { name: 'stat (conntrack -S)', typed: true, seeds: files(join(FIX, 'conntrack-tool')).map((p) => readFileSync(p)), run: (b) => parseConntrackToolStats(text(b)) },
    { name: 'slabinfo', typed: true, seeds: files(join(FIX, 'slabinfo')).map((p) => readFileSync(p)), run: (b) => { const c = parseSlabinfo(text(b)); return { c, s: conntrackSlab(c) }; } },
    { name: 'sockstat', typed: true, seeds: [read('proc', '6.18', 'net', 'sockstat'), read('proc', '6.18', 'net', 'sockstat6')], run: (b) => { const s = parseSockstat(text(b)); return { s, tw: timeWaitSockets(s) }; } },
    { name: 'meminfo', typed: true, seeds: [read('proc', '6.18', 'meminfo')], run: (b) => parseMeminfo(text(b)) },
    { name: 'cgroup', typed: false, seeds: files(join(FIX, 'cgroup')).map((p) => readFileSync(p)), run: (b) => parseCgroupFile(text(b)) },
    { name: 'port range', typed: true, seeds: [read('proc', '6.18', 'sys', 'net', 'ipv4', 'ip_local_port_range')], run: (b) => { const r = parsePortRange(text(b)); return { r, size: portRangeSize(r) }; } },
    { name: 'timeouts (sysctl names and values)', typed: true, seeds: timeoutNames, run: (b) => ({ key: parseTimeoutSysctlName(text(b)), value: (() => { try { return parseIntFile(text(b)); } catch (e) { if (e.name === 'ParseError') return undefined; throw e; } })() }) },
    { name: 'kernel release', typed: false, seeds: [Buffer.from('6.18.44-fc-v769\n'), Buffer.from('2.6.32-754.el6.x86_64')], run: (b) => parseKernelRelease(text(b)) },
    {
      name: 'table line (parseLine)', typed: false, seeds: tableLines, run: (b) => {
        const ok = parseLine(b, 0, b.length, parsed, states);
        if (!ok) return { ok };
        const bad = parsed.dport > 65535 || parsed.protocol > 255 || (parsed.family !== 4 && parsed.family !== 6);
        if (bad) throw new Error(`implausible parse: family ${parsed.family} protocol ${parsed.protocol} dport ${parsed.dport}`);
        return { ok, dport: parsed.dport, protocol: parsed.protocol, family: parsed.family, flags: parsed.flags };
      },
    },
    {
      name: 'table chunk scanner (TableScanner, random chunk cuts)', typed: false, seeds: tableSeeds, run: (b, r) => {
        let entries = 0;
        const sc = new TableScanner({ add: () => void entries++ }, new StateNames());
        let p = 0;
        while (p < b.length) {
          const n = 1 + Math.floor(r() * (r() < 0.5 ? 64 : 70_000));
          sc.push(b.subarray(p, p + n));
          p += n;
        }
        sc.end();
        if (entries + sc.errors !== sc.lines) throw new Error(`lines ${sc.lines} != entries ${entries} + errors ${sc.errors}`);
        return { lines: sc.lines, errors: sc.errors, entries };
      },
    },
    {
      name: 'kernel-log classifiers', typed: false, seeds: logLines, run: (b) => {
        const s = b.toString('latin1');
        return {
          c: classify.hasCandidate(s), m: classify.classifyMessage(s), k: classify.classifyKmsgRecord(s), kr: classify.parseKmsgRecord(s),
          l: classify.classifyLogLine(s), pl: classify.parseLogLine(s), j: classify.classifyJournalLine(s), jc: classify.journalCursor(s),
        };
      },
    },
    {
      name: 'kernel-log line splitter (random chunk cuts)', typed: false, seeds: logSeeds.map((p) => readFileSync(p)), run: (b, r) => {
        let lines = 0;
        let overlong = 0;
        let bytes = 0;
        const sp = new LineSplitter((l) => (l === undefined ? overlong++ : ((lines++), (bytes += l.length))), 4096);
        let p = 0;
        while (p < b.length) {
          const n = 1 + Math.floor(r() * (r() < 0.5 ? 64 : 70_000));
          sp.push(b.subarray(p, p + n));
          p += n;
        }
        if (bytes > b.length) throw new Error(`emitted ${bytes} bytes from ${b.length}`);
        return { lines, overlong };
      },
    },
  ];
}

const PARSE_ERROR = Symbol('ParseError');

/** Runs `n` mutated inputs through one target. */
export function fuzzTarget(t, n, seed) {
  const r = rng(seed);
  const failures = [];
  let maxMs = 0;
  let slow = 0;
  let typedErrors = 0;
  for (let i = 0; i < n; i++) {
    const input = mutate(t.seeds[i % t.seeds.length], r, i);
    // The run's own randomness (chunk cuts) comes from the input's number, so a slow input can be timed again.
    const once = () => {
      const t0 = performance.now();
      let result;
      let failure;
      try {
        result = t.run(input, rng(seed * 1_000_003 + i));
      } catch (err) {
        if (t.typed && err?.name === 'ParseError') result = PARSE_ERROR;
        else failure = `threw ${err?.name}: ${String(err?.message).slice(0, 200)}`;
      }
      return { result, failure, ms: performance.now() - t0 };
    };
    let { result, failure, ms } = once();
    // On 2 shared cores a GC pause or a neighbour can stall one run: slow only if it is slow twice.
    if (ms > 100) ms = Math.min(ms, once().ms);
    if (result === PARSE_ERROR) {
      typedErrors++;
      result = undefined;
    }
    maxMs = Math.max(maxMs, ms);
    if (ms > 100) {
      slow++;
      failure ??= `took ${ms.toFixed(0)} ms`;
    }
    failure ??= badNumber(result);
    if (failure && failures.length < 10) failures.push({ input: i, length: input.length, failure, sample: input.subarray(0, 120).toString('latin1') });
    else if (failure) failures.push({ input: i, failure });
  }
  return { name: t.name, inputs: n, maxMs, slow, typedErrors, failures };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const n = Number(process.argv[2] ?? 100_000);
  const seed = Number(process.argv[3] ?? 1);
  const started = performance.now();
  let failed = 0;
  console.log(`| parser | inputs | max ms per input | > 100 ms | ParseError (typed) | failures |`);
  console.log(`|---|---:|---:|---:|---:|---:|`);
  for (const t of await targets()) {
    const r = fuzzTarget(t, n, seed);
    failed += r.failures.length;
    console.log(`| ${r.name} | ${r.inputs} | ${r.maxMs.toFixed(1)} | ${r.slow} | ${r.typedErrors} | ${r.failures.length} |`);
    for (const f of r.failures.slice(0, 3)) console.error(`  ${r.name}: ${JSON.stringify(f)}`);
  }
  console.log(`\nseed ${seed}, ${((performance.now() - started) / 1000).toFixed(0)} s`);
  process.exit(failed ? 1 : 0);
}
