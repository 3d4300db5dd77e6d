/**
 * Hunting for a table input that makes the scanner loop, throw or lose
 * count (issue 15's hang). Each kind of garbage is put between valid lines
 * and the stream is cut at every byte offset of that line, in two pieces (a chunk
 * boundary of the 64 KiB reads or the 16 KiB parse pieces falling at that
 * offset of the line: the scanner only sees where a chunk ends) and in
 * fixed-size pieces (1, 7, 64 bytes, 4 KiB).
 * Whatever the cut, a scan must end, count every line as an entry or a parse
 * error, and give the same result as the uncut stream. A few placements also
 * go through the real readers (main-thread reads, the reader thread, a
 * command's stdout) so the chunking is theirs, not ours.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_LINE_BYTES, StateNames } from '../../src/table/line.js';
import { TableScanner } from '../../src/table/scanner.js';
import { REPO_ROOT } from '../helpers/kernel.js';

// The reader thread runs dist/table/read-worker.js, so the readers come from the build (npm test builds first).
type Sources = typeof import('../../src/table/sources.js');
const { CHUNK_BYTES, readFileInProcess, readFileInWorker, streamCommand } = (await import(join(REPO_ROOT, 'dist', 'table', 'sources.js'))) as Sources;
import { TableTally } from '../../src/table/tally.js';

const V = 'ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.0.5 dst=93.184.216.34 sport=51234 dport=443 src=93.184.216.34 dst=10.0.0.5 sport=443 dport=51234 [ASSURED] mark=0 zone=0 use=2';
const U = 'ipv4     2 udp      17 29 src=10.0.0.5 dst=10.0.0.1 sport=1 dport=53 src=10.0.0.1 dst=10.0.0.5 sport=53 dport=1 mark=0 zone=0 use=2';
const V6 = 'ipv6     10 tcp      6 300 ESTABLISHED src=2001:0db8:0000:0000:0000:0000:0000:0001 dst=2001:0db8:0000:0000:0000:0000:0000:0002 sport=1 dport=443 src=2001:0db8:0000:0000:0000:0000:0000:0002 dst=2001:0db8:0000:0000:0000:0000:0000:0001 sport=443 dport=1 [ASSURED] mark=0 zone=0 use=2';
const BEFORE = `${V}\n${U}\n${V6}\n`;
const AFTER = `${U}\n${V}\n`;
/** Valid lines in BEFORE + AFTER. */
const VALID = 5;

/** A valid line padded with `zone=0` tokens to exactly `length` bytes. */
function padded(length: number): string {
  let s = V;
  while (s.length + 7 <= length) s += ' zone=0';
  return s + ' '.repeat(length - s.length);
}

/** Garbage that is one malformed line whatever is around it. */
const MALFORMED: Record<string, string> = {
  'issue 15: 135 x': 'x'.repeat(135),
  'one x': 'x',
  'src= only': 'src=',
  'src= and dst= only': 'src= dst=',
  'l3/l4 columns then src=': 'ipv4     2 tcp      6 src=',
  'l3 columns only': 'ipv4     2',
  'no l3 number': 'ipv4',
  'truncated address': 'ipv4     2 tcp      6 10 SYN_SENT src=10.0.0.5 dst=10.0.',
  'sport without dport': 'ipv4     2 udp      17 29 src=10.0.0.5 dst=10.0.0.1 sport=1',
  'NUL bytes': '\0'.repeat(100),
  'NUL inside a line': V.slice(0, 60) + '\0' + V.slice(61),
  'a lone [': '[',
  'bytes 0x80-0xff': Array.from({ length: 128 }, (_, i) => String.fromCharCode(128 + i)).join(''),
  'tab-separated': V.replaceAll(' ', '\t'),
  'spaces only': ' '.repeat(300),
  'CR only': '\r',
  '5,000 x (longer than the line limit)': 'x'.repeat(5000),
  '5,000-byte valid-looking line': padded(5000),
  [`${MAX_LINE_BYTES + 1}-byte valid-looking line`]: padded(MAX_LINE_BYTES + 1),
};

/** Garbage whose verdict (entry or error) is the parser's business; only consistency is checked. */
const EITHER: Record<string, string> = {
  'CR line ending': `${V}\r`,
  'CR in the middle': V.replace(' src=', '\rsrc='),
  [`${MAX_LINE_BYTES}-byte valid-looking line`]: padded(MAX_LINE_BYTES),
  [`${MAX_LINE_BYTES - 1}-byte valid-looking line`]: padded(MAX_LINE_BYTES - 1),
  'double space before src=': V.replace(' src=', '  src='),
};
// Every prefix of a valid line (a line cut short, as a partial read would leave it).
for (let k = 1; k < V.length; k += 1) EITHER[`prefix ${k}`] = V.slice(0, k);

interface Result {
  lines: number;
  errors: number;
  entries: number;
  /** Longest single push(), ms. */
  maxPushMs: number;
}

function scan(chunks: Iterable<Buffer>): Result {
  const states = new StateNames();
  // Only the count of parsed entries matters here; a full TableTally per cut costs more than the scan.
  let entries = 0;
  const counter = { add: (): void => void entries++ } as unknown as TableTally;
  const scanner = new TableScanner(counter, states);
  let maxPushMs = 0;
  for (const c of chunks) {
    const t0 = performance.now();
    scanner.push(c);
    maxPushMs = Math.max(maxPushMs, performance.now() - t0);
  }
  scanner.end();
  return { lines: scanner.lines, errors: scanner.errors, entries, maxPushMs };
}

function* pieces(buf: Buffer, size: number, first = size): Generator<Buffer> {
  let p = 0;
  let n = first;
  while (p < buf.length) {
    yield buf.subarray(p, p + n);
    p += n;
    n = size;
  }
}

function same(a: Result, b: Result, what: string): void {
  if (a.lines === b.lines && a.errors === b.errors && a.entries === b.entries) return;
  expect({ lines: a.lines, errors: a.errors, entries: a.entries }, what).toEqual({ lines: b.lines, errors: b.errors, entries: b.entries });
}

/** Cuts `stream` every way listed above and checks each result against the uncut one. */
function checkAllCuts(stream: Buffer, from: number, to: number): Result {
  const whole = scan([stream]);
  expect(whole.entries + whole.errors).toBe(whole.lines);
  let maxPushMs = whole.maxPushMs;
  const check = (r: Result, what: string): void => {
    same(r, whole, what);
    maxPushMs = Math.max(maxPushMs, r.maxPushMs);
  };
  // Two pieces, cut at every offset of the garbage line, its newline and the bytes either side.
  for (let s = Math.max(0, from - 1); s <= Math.min(stream.length, to + 2); s++) check(scan([stream.subarray(0, s), stream.subarray(s)]), `cut at ${s}`);
  // Fixed-size pieces.
  for (const size of [1, 7, 64, 4096]) check(scan(pieces(stream, size)), `pieces of ${size}`);
  return { ...whole, maxPushMs };
}

function streamWith(garbage: string, lastNewline = true): { stream: Buffer; start: number; end: number } {
  const text = BEFORE + garbage + '\n' + AFTER;
  const stream = Buffer.from(lastNewline ? text : text.slice(0, -1), 'latin1');
  return { stream, start: BEFORE.length, end: BEFORE.length + garbage.length };
}

describe('the table scanner ends and counts every line, however the stream is cut', () => {
  it.each(Object.entries(MALFORMED))('%s: one parse error, every valid line counted', (_name, garbage) => {
    const { stream, start, end } = streamWith(garbage);
    const r = checkAllCuts(stream, start, end);
    expect(r.entries).toBe(VALID);
    // Lines without a single non-space byte (blank lines) are not lines; everything else is one error.
    expect(r.errors).toBe(1);
    // A hang detector, not a benchmark: generous for 2 shared cores.
    expect(r.maxPushMs).toBeLessThan(1000);
  });

  it('every prefix of a valid line, the CR and line-limit variants: consistent under every cut', () => {
    let maxPushMs = 0;
    for (const [name, garbage] of Object.entries(EITHER)) {
      const { stream, start, end } = streamWith(garbage);
      const r = checkAllCuts(stream, start, end);
      expect(r.entries, name).toBeGreaterThanOrEqual(VALID);
      expect(r.lines, name).toBe(VALID + 1);
      maxPushMs = Math.max(maxPushMs, r.maxPushMs);
    }
    expect(maxPushMs).toBeLessThan(1000);
  });

  it.each([
    ['a valid last line', V, 0],
    ['a garbage last line', 'x'.repeat(135), 1],
    ['an overlong last line', 'x'.repeat(5000), 1],
  ])('the stream ends without a newline: %s still counts', (_name, last, errors) => {
    const stream = Buffer.from(BEFORE + last, 'latin1');
    const r = checkAllCuts(stream, BEFORE.length, stream.length);
    expect(r.lines).toBe(4);
    expect(r.errors).toBe(errors);
  });
});

const tmp = mkdtempSync(join(tmpdir(), 'cte-robust-hunt-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('through the real readers, garbage across their chunk boundaries', () => {
  const cases = [
    ['135 x', 'x'.repeat(135)],
    ['5,000 x', 'x'.repeat(5000)],
    ['NUL bytes', '\0'.repeat(300)],
  ] as const;
  // Valid lines before the garbage so that it starts a few bytes before the first 64 KiB boundary.
  function file(garbage: string, before: number): { path: string; valid: number } {
    const line = `${U}\n`;
    const lines = Math.floor((CHUNK_BYTES - before) / line.length);
    const blank = CHUNK_BYTES - before - lines * line.length;
    const text = line.repeat(lines) + '\n'.repeat(blank) + garbage + '\n' + line.repeat(600);
    const path = join(tmp, `t-${garbage.length}-${before}`);
    writeFileSync(path, text, 'latin1');
    return { path, valid: lines + 600 };
  }

  for (const [name, garbage] of cases) {
    for (const before of [1, 2, 64, garbage.length - 1, garbage.length, garbage.length + 1]) {
      it(`${name}, ${before} bytes before the boundary: in-process, reader thread and command stdout agree`, async () => {
        const { path, valid } = file(garbage, before);
        const runs: Result[] = [];
        for (const read of [readFileInProcess, readFileInWorker]) {
          const chunks: Buffer[] = [];
          // Copy: the readers reuse their buffers.
          await read(path, (c) => chunks.push(Buffer.from(c)));
          runs.push(scan(chunks));
        }
        const tool = join(tmp, 'cat-table');
        writeFileSync(tool, `#!/bin/sh\ncat '${path}'\n`);
        chmodSync(tool, 0o755);
        const chunks: Buffer[] = [];
        await streamCommand(tool, [], (c) => chunks.push(Buffer.from(c)));
        runs.push(scan(chunks));
        for (const r of runs) expect({ lines: r.lines, errors: r.errors, entries: r.entries }).toEqual({ lines: valid + 1, errors: 1, entries: valid });
      });
    }
  }
});
