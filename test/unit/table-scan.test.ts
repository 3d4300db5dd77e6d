import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsRoot } from '../../src/procfs/fs.js';
import { StateNames } from '../../src/table/line.js';
import { hasLinearProcReads, parseKernelRelease, scanTable, type ScanOptions } from '../../src/table/scan.js';
import { TableScanner } from '../../src/table/scanner.js';
import { nextScanDelayMs } from '../../src/table/schedule.js';
import { readFileInProcess, SourceAbsentError, streamCommand } from '../../src/table/sources.js';
import { TableTally, type DestinationCount, type TableSummary } from '../../src/table/tally.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'table');
const PROC_6_18 = join(FIXTURES, 'proc-6.18');
const FAKE_TOOL = join(FIXTURES, 'fake-conntrack');

function scanChunks(chunks: Buffer[], topDestinations = 10): { summary: TableSummary; scanner: TableScanner } {
  const states = new StateNames();
  const tally = new TableTally(states, { topDestinations });
  const scanner = new TableScanner(tally, states);
  for (const c of chunks) scanner.push(c);
  scanner.end();
  return { summary: tally.summary(), scanner };
}

function scanText(text: string, topDestinations = 10): { summary: TableSummary; scanner: TableScanner } {
  return scanChunks([Buffer.from(text, 'latin1')], topDestinations);
}

/** `family/protocol/state` → count, for compact exact comparisons. */
function entryMap(s: TableSummary): Record<string, number> {
  return Object.fromEntries(s.entries.map((e) => [`${e.family}/${e.protocol}/${e.state}`, e.count]));
}

/** The destination fields every scan had before per-state counts and the busiest source. */
function basic(d: DestinationCount): Pick<DestinationCount, 'protocol' | 'destination' | 'port' | 'entries' | 'sourcePorts'> {
  return { protocol: d.protocol, destination: d.destination, port: d.port, entries: d.entries, sourcePorts: d.sourcePorts };
}

/** Non-zero flags only: `family/protocol/flag` → count. */
function flagMap(s: TableSummary): Record<string, number> {
  return Object.fromEntries(s.flags.filter((f) => f.count > 0).map((f) => [`${f.family}/${f.protocol}/${f.flag}`, f.count]));
}

const PROC_6_18_ENTRIES = {
  'ipv4/tcp/ESTABLISHED': 3,
  'ipv4/tcp/TIME_WAIT': 4,
  'ipv4/tcp/SYN_SENT': 1,
  'ipv4/tcp/SYN_RECV': 1,
  'ipv4/tcp/FIN_WAIT': 1,
  'ipv4/tcp/CLOSE_WAIT': 1,
  'ipv4/tcp/LAST_ACK': 1,
  'ipv4/tcp/CLOSE': 1,
  'ipv4/tcp/none': 2,
  'ipv6/tcp/ESTABLISHED': 2,
  'ipv4/udp/none': 5,
  'ipv4/icmp/none': 1,
  'ipv6/icmpv6/none': 1,
  'ipv4/sctp/ESTABLISHED': 1,
  'ipv4/dccp/OPEN': 1,
  'ipv4/gre/none': 1,
  'ipv4/udplite/none': 1,
  'ipv4/50/none': 1,
};

describe('table scan of a 6.18 /proc/net/nf_conntrack', () => {
  const text = readFileSync(join(PROC_6_18, 'net', 'nf_conntrack'), 'latin1');

  it('tallies every line format exactly', () => {
    const { summary, scanner } = scanText(text);
    expect(scanner.lines).toBe(29);
    expect(scanner.errors).toBe(0);
    expect(entryMap(summary)).toEqual(PROC_6_18_ENTRIES);
    expect(flagMap(summary)).toEqual({
      'ipv4/tcp/assured': 10,
      'ipv4/tcp/unreplied': 1,
      'ipv4/tcp/offload': 1,
      'ipv4/tcp/hw_offload': 1,
      'ipv6/tcp/assured': 2,
      'ipv4/udp/unreplied': 2,
      'ipv4/udp/assured': 1,
      'ipv4/sctp/assured': 1,
      'ipv4/dccp/assured': 1,
      'ipv4/gre/assured': 1,
      'ipv4/udplite/unreplied': 1,
    });
    // Every flag is reported, zero included, for each of the 10 family/protocol pairs present.
    expect(summary.flags).toHaveLength(10 * 4);
  });

  it('ranks the top destinations, with the most source ports one source holds toward each', () => {
    const { summary } = scanText(text, 6);
    expect(summary.destinationsError).toBe(0);
    expect(summary.sourcePortsError).toBe(0);
    expect(summary.destinations.map(basic)).toEqual([
      { protocol: 'tcp', destination: '10.0.0.9', port: '6379', entries: 4, sourcePorts: 4 },
      { protocol: 'tcp', destination: '10.0.0.9', port: '8080', entries: 4, sourcePorts: 4 },
      { protocol: 'udp', destination: '10.0.0.1', port: '53', entries: 4, sourcePorts: 3 },
      { protocol: 'tcp', destination: '93.184.216.34', port: '443', entries: 3, sourcePorts: 2 },
      { protocol: 'tcp', destination: '1.1.1.16', port: '5001', entries: 2, sourcePorts: 2 },
      { protocol: 'tcp', destination: '2001:db8::1', port: '22', entries: 2, sourcePorts: 2 },
    ]);
  });

  it('labels protocols without ports with an empty port and no source-ports value', () => {
    const { summary } = scanText(text, 100);
    expect(summary.destinations).toHaveLength(16);
    expect(summary.destinations.filter((d) => d.port === '').map(basic)).toEqual([
      { protocol: 'icmp', destination: '8.8.8.8', port: '', entries: 1, sourcePorts: undefined },
      { protocol: 'gre', destination: '10.0.0.9', port: '', entries: 1, sourcePorts: undefined },
      { protocol: '50', destination: '10.0.0.9', port: '', entries: 1, sourcePorts: undefined },
      { protocol: 'icmpv6', destination: '2001:db8::1', port: '', entries: 1, sourcePorts: undefined },
    ]);
  });

  it('gives the same result however the stream is cut into chunks', () => {
    const whole = scanText(text).summary;
    const bytes = Buffer.from(text, 'latin1');
    for (const size of [1, 7, 64, 150, 4093]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
      expect(scanChunks(chunks).summary, `chunks of ${size} bytes`).toEqual(whole);
    }
  });

  it('skips destination counting when top-destinations is 0', () => {
    const { summary } = scanText(text, 0);
    expect(summary.destinations).toEqual([]);
    expect(entryMap(summary)).toEqual(PROC_6_18_ENTRIES);
  });
});

describe('source ports per destination', () => {
  const udp = (src: string, sport: number, dst: string): string =>
    `ipv4     2 udp      17 29 src=${src} dst=${dst} sport=${sport} dport=53 src=${dst} dst=${src} sport=53 dport=${sport} mark=0 use=2\n`;

  it('counts the first entry of a destination once its second arrives, whoever sent it', () => {
    const text = udp('10.0.0.1', 1, '10.9.9.9') + udp('10.0.0.2', 2, '10.9.9.9') + udp('10.0.0.2', 3, '10.9.9.9') + udp('10.0.0.1', 4, '10.9.9.8');
    const { summary } = scanText(text);
    expect(summary.destinations.map((d) => [d.destination, d.entries, d.sourcePorts])).toEqual([
      ['10.9.9.9', 3, 2],
      ['10.9.9.8', 1, 1],
    ]);
    const again = scanText(udp('10.0.0.1', 1, '10.9.9.9') + udp('10.0.0.1', 2, '10.9.9.9') + udp('10.0.0.2', 3, '10.9.9.9')).summary;
    expect(again.destinations[0]).toMatchObject({ entries: 3, sourcePorts: 2 });
  });

  it('counts source-NATed entries by the translated address, whose ports they hold', () => {
    // Three clients behind a masquerading gateway (203.0.113.1) toward one HTTPS server: on the wire
    // they share the gateway's ports. The reply tuple says so (dst=203.0.113.1, dport = its port).
    const snat = (client: string, sport: number, natPort: number): string =>
      `ipv4     2 tcp      6 86390 ESTABLISHED src=${client} dst=93.184.216.34 sport=${sport} dport=443 packets=3 bytes=180 ` +
      `src=93.184.216.34 dst=203.0.113.1 sport=443 dport=${natPort} packets=2 bytes=120 [ASSURED] mark=0 zone=0 use=2\n`;
    const text = snat('192.168.1.10', 40000, 61001) + snat('192.168.1.11', 40000, 61002) + snat('192.168.1.12', 40000, 61003) + snat('192.168.1.10', 40001, 61004);
    expect(scanText(text).summary.destinations).toEqual([
      {
        protocol: 'tcp',
        destination: '93.184.216.34',
        port: '443',
        entries: 4,
        sourcePorts: 4,
        busiestSource: '203.0.113.1',
        busiestSourceTranslated: true,
        states: [{ state: 'ESTABLISHED', entries: 4 }],
      },
    ]);
    // IPv6 reply tuples too; and a line whose reply destination is of another family is malformed.
    const v6 = (client: string, natPort: number): string =>
      `ipv6     10 udp      17 29 src=${client} dst=2001:db8::53 sport=5353 dport=53 src=2001:db8::53 dst=2001:db8:ffff::1 sport=53 dport=${natPort} mark=0 use=2\n`;
    expect(scanText(v6('fd00::1', 1) + v6('fd00::2', 2)).summary.destinations[0]).toMatchObject({ entries: 2, sourcePorts: 2 });
    const mixed = scanText(udp('10.0.0.1', 1, '10.9.9.9').replace('dst=10.0.0.1 sport=53', 'dst=fd00::1 sport=53'));
    expect(mixed.scanner.errors).toBe(1);
  });

  it('stays within the reported error bound when distinct destinations overflow the tables', () => {
    const lines: string[] = [];
    // 300 entries from one source toward one destination, among 3,000 single-entry destinations.
    for (let i = 0; i < 3300; i++) {
      lines.push(i % 11 === 0 ? udp('10.0.0.1', 10_000 + i, '10.9.9.9') : udp('10.0.0.2', i, `10.8.${i >> 8}.${i & 255}`));
    }
    const states = new StateNames();
    const tally = new TableTally(states, { topDestinations: 1, keyCapacity: 64 });
    const scanner = new TableScanner(tally, states);
    scanner.push(Buffer.from(lines.join('')));
    const summary = tally.summary();
    const top = summary.destinations[0]!;
    expect(summary.destinationsError).toBeGreaterThan(0);
    expect(summary.destinationsError).toBeLessThanOrEqual((2 * 3300) / 64);
    expect(top.destination).toBe('10.9.9.9');
    expect(top.entries).toBeLessThanOrEqual(300);
    expect(top.entries).toBeGreaterThanOrEqual(300 - summary.destinationsError);
    expect(top.sourcePorts).toBeLessThanOrEqual(300);
    expect(top.sourcePorts).toBeGreaterThanOrEqual(300 - summary.sourcePortsError);
  });
});

describe('other layouts', () => {
  it('the old /proc/net/ip_conntrack layout', () => {
    const { summary, scanner } = scanText(readFileSync(join(FIXTURES, 'ip_conntrack-2.6.txt'), 'latin1'));
    expect(scanner.errors).toBe(0);
    expect(entryMap(summary)).toEqual({
      'ipv4/tcp/ESTABLISHED': 1,
      'ipv4/tcp/SYN_SENT': 1,
      'ipv4/tcp/LISTEN': 1,
      'ipv4/udp/none': 1,
      'ipv4/icmp/none': 1,
      'ipv4/sctp/none': 1,
    });
    expect(flagMap(summary)).toEqual({ 'ipv4/tcp/assured': 1, 'ipv4/tcp/unreplied': 1, 'ipv4/udp/unreplied': 1 });
  });

  it('conntrack -L -o extended (compressed IPv6)', () => {
    const { summary, scanner } = scanText(readFileSync(join(FIXTURES, 'conntrack-L-extended.txt'), 'latin1'));
    expect(scanner.errors).toBe(0);
    expect(entryMap(summary)).toEqual({
      'ipv4/tcp/ESTABLISHED': 1,
      'ipv4/tcp/TIME_WAIT': 1,
      'ipv6/tcp/ESTABLISHED': 1,
      'ipv4/udp/none': 1,
      'ipv6/udp/none': 1,
      'ipv6/icmpv6/none': 1,
    });
    expect(basic(summary.destinations[0]!)).toEqual({ protocol: 'tcp', destination: '10.0.0.9', port: '443', entries: 2, sourcePorts: 2 });
    expect(summary.destinations.map((d) => d.destination)).toContain('::ffff:10.0.0.9');
  });

  it('counts and skips malformed lines, keeping the good ones', () => {
    const { summary, scanner } = scanText(readFileSync(join(FIXTURES, 'malformed.txt'), 'latin1'));
    expect(scanner.lines).toBe(11);
    expect(scanner.errors).toBe(9);
    expect(scanner.firstError).toBe('ipv4     2 udp      17 29 src=10.0.0.5 dst=10.0.0.1 sport=1');
    expect(entryMap(summary)).toEqual({ 'ipv4/udp/none': 2 });
  });

  it('counts a line longer than the limit once, across chunks, without buffering it', () => {
    const long = `ipv4     2 udp      17 29 src=10.0.0.5 dst=10.0.0.1 sport=1 dport=53 ${'x'.repeat(10_000)} use=2\n`;
    const good = 'ipv4     2 udp      17 29 src=10.0.0.5 dst=10.0.0.1 sport=1 dport=53 use=2\n';
    const bytes = Buffer.from(good + long + good);
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += 1000) chunks.push(bytes.subarray(i, i + 1000));
    const { summary, scanner } = scanChunks(chunks);
    expect([scanner.lines, scanner.errors]).toEqual([3, 1]);
    expect(entryMap(summary)).toEqual({ 'ipv4/udp/none': 2 });
  });

  it('parses a last line without a newline', () => {
    const { scanner } = scanText('ipv4     2 udp      17 29 src=10.0.0.5 dst=10.0.0.1 sport=1 dport=53 use=2');
    expect([scanner.lines, scanner.errors]).toEqual([1, 0]);
  });
});

describe('sources', () => {
  it('readFileInProcess streams a file; a missing one is SourceAbsentError', async () => {
    const chunks: Buffer[] = [];
    await readFileInProcess(join(PROC_6_18, 'net', 'nf_conntrack'), (c) => chunks.push(Buffer.from(c)));
    expect(Buffer.concat(chunks).toString('latin1')).toBe(readFileSync(join(PROC_6_18, 'net', 'nf_conntrack'), 'latin1'));
    await expect(readFileInProcess(join(FIXTURES, 'absent'), () => undefined)).rejects.toBeInstanceOf(SourceAbsentError);
  });

  it('streamCommand feeds stdout and rejects on a non-zero exit or a missing tool', async () => {
    let bytes = 0;
    await streamCommand(FAKE_TOOL, ['-L', '-o', 'extended'], (c) => (bytes += c.length));
    expect(bytes).toBe(readFileSync(join(FIXTURES, 'conntrack-L-extended.txt')).length);
    await expect(streamCommand(FAKE_TOOL, ['-S'], () => undefined)).rejects.toThrow(/exited with 1: .*Operation not permitted/);
    await expect(streamCommand(join(FIXTURES, 'no-such-tool'), [], () => undefined)).rejects.toMatchObject({ notFound: true });
  });

  it('an aborted read rejects and stops the child', async () => {
    const ac = new AbortController();
    const started = Date.now();
    const run = streamCommand('sleep', ['10'], () => undefined, { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('closing')), 50);
    await expect(run).rejects.toThrow('closing');
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe('scanTable source choice', () => {
  const base = (procfs: string, mode: ScanOptions['mode'], tool = FAKE_TOOL): ScanOptions => ({
    procfs: new FsRoot(procfs),
    tool,
    mode,
    topDestinations: 10,
    memory: { toolMissing: false },
  });

  it('auto reads the proc file on 6.16+', async () => {
    const r = await scanTable(base(PROC_6_18, 'auto'));
    expect(r.source).toBe(join(PROC_6_18, 'net', 'nf_conntrack'));
    expect([r.lines, r.errors, r.quadratic]).toEqual([29, 0, false]);
    expect(entryMap(r.summary)).toEqual(PROC_6_18_ENTRIES);
  });

  it('netlink runs conntrack -L -o extended', async () => {
    const r = await scanTable(base(PROC_6_18, 'netlink'));
    expect(r.source).toBe(`${FAKE_TOOL} -L -o extended`);
    expect(r.lines).toBe(6);
  });

  it('auto uses the tool where there is no proc file, and fails with SourceAbsentError when neither exists', async () => {
    const empty = join(FIXTURES, 'absent-procfs');
    const r = await scanTable(base(empty, 'auto'));
    expect(r.lines).toBe(6);
    const opts = base(empty, 'auto', join(FIXTURES, 'no-such-tool'));
    await expect(scanTable(opts)).rejects.toBeInstanceOf(SourceAbsentError);
    expect(opts.memory.toolMissing).toBe(true);
  });

  it('auto before 6.16 falls back to the proc file when conntrack -L is not permitted, and says why', async () => {
    const root = mkdtempSync(join(tmpdir(), 'cte-scan-'));
    try {
      mkdirSync(join(root, 'sys', 'kernel'), { recursive: true });
      mkdirSync(join(root, 'net'));
      writeFileSync(join(root, 'sys', 'kernel', 'osrelease'), '5.15.0-91-generic\n');
      // A small count keeps the read in this thread (the reader thread runs from dist/ only).
      mkdirSync(join(root, 'sys', 'net', 'netfilter'), { recursive: true });
      writeFileSync(join(root, 'sys', 'net', 'netfilter', 'nf_conntrack_count'), '29\n');
      copyFileSync(join(PROC_6_18, 'net', 'nf_conntrack'), join(root, 'net', 'nf_conntrack'));
      const denied = join(root, 'conntrack');
      writeFileSync(denied, '#!/bin/sh\necho "conntrack v1.4.7 (conntrack-tools): Operation not permitted" >&2\nexit 1\n', { mode: 0o755 });
      const r = await scanTable(base(root, 'auto', denied));
      expect(r.source).toBe(join(root, 'net', 'nf_conntrack'));
      expect(r.quadratic).toBe(true);
      expect(r.toolError).toMatch(/Operation not permitted/);
      expect(entryMap(r.summary)).toEqual(PROC_6_18_ENTRIES);
      const ok = await scanTable(base(root, 'auto'));
      expect([ok.source, ok.quadratic, ok.toolError]).toEqual([`${FAKE_TOOL} -L -o extended`, false, undefined]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('parses kernel releases and knows where proc reads became linear', () => {
    expect(parseKernelRelease('6.18.44-fc-v769\n')).toEqual([6, 18]);
    expect(parseKernelRelease('4.19.0-21-amd64')).toEqual([4, 19]);
    expect(parseKernelRelease('garbage')).toBeUndefined();
    expect([[6, 16], [6, 18], [7, 0], [6, 15], [5, 15]].map((r) => hasLinearProcReads(r as [number, number]))).toEqual([
      true,
      true,
      true,
      false,
      false,
    ]);
    expect(hasLinearProcReads(undefined)).toBe(false);
  });
});

describe('nextScanDelayMs', () => {
  it('waits the interval, but keeps scans at least 10× their duration apart', () => {
    expect(nextScanDelayMs(30_000, 500)).toBe(29_500);
    expect(nextScanDelayMs(30_000, 3_000)).toBe(27_000);
    expect(nextScanDelayMs(30_000, 5_000)).toBe(45_000);
    expect(nextScanDelayMs(1_000, 0)).toBe(1_000);
  });
});
