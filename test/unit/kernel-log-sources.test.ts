/**
 * The kmsg and journal sources, the collector over a fake source, and the
 * collector inside the app: metrics, health, and nothing left behind on close.
 */
import { appendFileSync, chmodSync, closeSync, constants, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { COLLECTORS } from '../../src/collectors/index.js';
import { createKernelLogCollector, kernelLogCollector } from '../../src/collectors/kernel-log.js';
import { parseOptions } from '../../src/config/options.js';
import type { Match } from '../../src/kernel-log/classify.js';
import type { LineSink, LineSource } from '../../src/kernel-log/source.js';
import { JournalSource } from '../../src/kernel-log/sources/journal.js';
import { KMSG_POLL_MS, KmsgSource, type RecordDevice, type RecordRead } from '../../src/kernel-log/sources/kmsg.js';
import { FsRoot } from '../../src/procfs/fs.js';
import { runCommand } from '../../src/util/command.js';
import { buildTestApp, noTools, samples } from '../helpers/app.js';

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

class CountingSink implements LineSink {
  readonly matches: (Match | undefined)[] = [];
  lostCount = 0;
  line(match: Match | undefined): void {
    this.matches.push(match);
  }
  lost(count: number): void {
    this.lostCount += count;
  }
  get events(): string[] {
    return this.matches.flatMap((m) => (m?.kind === 'event' ? [`${m.event}/${m.netns}`] : m ? [`suppressed/${m.count}`] : []));
  }
}

/** A /dev/kmsg stand-in: one record per read, EAGAIN when empty, EPIPE where 'overrun' is queued. */
class FakeDevice implements RecordDevice {
  readonly queue: (string | 'overrun' | Error)[] = [];
  closed = false;
  push(...records: (string | 'overrun' | Error)[]): void {
    this.queue.push(...records);
  }
  read(buf: Buffer): RecordRead {
    if (this.closed) throw new Error('read after close');
    const next = this.queue.shift();
    if (next === undefined) return 'again';
    if (next === 'overrun') return 'overrun';
    if (next instanceof Error) throw next;
    return buf.write(next, 'latin1');
  }
  close(): void {
    this.closed = true;
  }
}

const rec = (seq: number, text: string, prio = 4): string => `${prio},${seq},${seq * 1000},-;${text}\n`;
const FULL = 'nf_conntrack: nf_conntrack: table full, dropping packet';

describe('KmsgSource', () => {
  it('starts at the end: records already in the buffer are not counted', async () => {
    const dev = new FakeDevice();
    dev.push(rec(1, FULL), rec(2, FULL), rec(3, 'eth0: link up'));
    const sink = new CountingSink();
    const source = new KmsgSource({ path: '/dev/kmsg', fromStart: false, pollMs: 5, open: () => dev });
    await source.start(sink);
    expect(sink.matches).toEqual([]);
    dev.push(rec(4, FULL), rec(5, 'nf_conntrack: nf_conntrack: table full in netns 4026532177, dropping packet'));
    await until(() => sink.matches.length >= 2);
    expect(sink.events).toEqual(['table_full/', 'table_full/4026532177']);
    expect(sink.lostCount).toBe(0);
    await source.stop();
    expect(dev.closed).toBe(true);
  });

  it('counts the backlog with from-start, and lost records across an overrun from the sequence gap', async () => {
    const dev = new FakeDevice();
    dev.push(rec(10, FULL), 'overrun', rec(15, 'net_ratelimit: 42 callbacks suppressed'), rec(16, FULL, 12));
    const sink = new CountingSink();
    const source = new KmsgSource({ path: '/dev/kmsg', fromStart: true, pollMs: 5, open: () => dev });
    await source.start(sink);
    await until(() => sink.matches.length >= 3);
    // seq 16 is from user space (facility 1): a line, not an event.
    expect(sink.events).toEqual(['table_full/', 'suppressed/42']);
    expect(sink.matches.length).toBe(3);
    expect(sink.lostCount).toBe(4);
    await source.stop();
  });

  it('reports a failing device, then reopens it and carries on after the last record read', async () => {
    const first = new FakeDevice();
    const second = new FakeDevice();
    const devices = [first, second];
    const sink = new CountingSink();
    const source = new KmsgSource({ path: '/dev/kmsg', fromStart: true, pollMs: 5, reopenMs: 200, open: () => devices.shift() as FakeDevice });
    await source.start(sink);
    first.push(rec(1, FULL), rec(2, FULL), Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' }));
    await until(() => source.problem() !== undefined);
    expect(source.problem()?.message).toMatch(/EIO/);
    expect(first.closed).toBe(true);
    // Opened again, reading starts at the oldest record: 1 and 2 were counted already.
    second.push(rec(1, FULL), rec(2, FULL), rec(3, FULL));
    await until(() => source.problem() === undefined && sink.matches.length >= 3);
    expect(sink.matches.length).toBe(3);
    expect(sink.lostCount).toBe(0);
    await source.stop();
    expect(second.closed).toBe(true);
  });

  it('fails to start on a device it cannot open, naming it', async () => {
    const source = new KmsgSource({ path: '/nonexistent/kmsg', fromStart: false });
    await expect(source.start(new CountingSink())).rejects.toThrow(/cannot open \/nonexistent\/kmsg/);
  });
});

describe('JournalSource', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kernel-log-journal-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** A journalctl that prints 3 entries and dies, then (given --after-cursor) the rest and stays. */
  function fakeJournalctl(): string {
    const entries = [
      { __CURSOR: 'c1', SYSLOG_FACILITY: '0', MESSAGE: FULL },
      { __CURSOR: 'c2', SYSLOG_FACILITY: '0', MESSAGE: 'eth0: link up' },
      { __CURSOR: 'c3', SYSLOG_FACILITY: '0', MESSAGE: 'net_ratelimit: 7 callbacks suppressed' },
      { __CURSOR: 'c4', SYSLOG_FACILITY: '0', MESSAGE: [...Buffer.from('nf_conntrack: nf_conntrack: table full in netns 99, dropping packet')] },
      { __CURSOR: 'c5', SYSLOG_FACILITY: '0', MESSAGE: 'nf_conntrack: expectation table full' },
    ];
    const script = join(dir, 'journalctl');
    writeFileSync(
      script,
      `#!${process.execPath}
const fs = require('node:fs');
const args = process.argv.slice(2);
fs.appendFileSync(${JSON.stringify(join(dir, 'calls'))}, JSON.stringify({ pid: process.pid, args }) + '\\n');
const entries = ${JSON.stringify(entries)};
const after = args.find((a) => a.startsWith('--after-cursor='));
const from = after ? entries.findIndex((e) => e.__CURSOR === after.slice(15)) + 1 : 0;
for (const e of entries.slice(from, after ? undefined : 3)) process.stdout.write(JSON.stringify(e) + '\\n');
if (!after) { process.stderr.write('Journal file corrupted\\n'); process.exit(1); }
setInterval(() => {}, 1000);
`,
    );
    chmodSync(script, 0o755);
    return script;
  }

  const calls = (): { pid: number; args: string[] }[] =>
    readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { pid: number; args: string[] });

  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  it('restarts journalctl with backoff after the last cursor, counting each entry once, and kills it on stop', async () => {
    const sink = new CountingSink();
    const warnings: string[] = [];
    const source = new JournalSource({ journalctl: fakeJournalctl(), fromStart: false, minBackoffMs: 300, warn: (m) => warnings.push(m) });
    await source.start(sink);
    await until(() => warnings.length > 0);
    expect(source.problem()?.message).toMatch(/exited with 1: Journal file corrupted; restarting in/);
    await until(() => sink.matches.length >= 5);
    expect(sink.events).toEqual(['table_full/', 'suppressed/7', 'table_full/99', 'expect_table_full/']);
    expect(sink.matches.length).toBe(5);
    expect(source.problem()).toBeUndefined();
    const [first, second] = calls();
    expect(first?.args).toEqual(['-k', '-f', '-o', 'json', '--no-pager', '--lines=0']);
    expect(second?.args).toEqual(['-k', '-f', '-o', 'json', '--no-pager', '--after-cursor=c3', '--no-tail']);
    expect(alive(second?.pid ?? 0)).toBe(true);
    await source.stop();
    expect(alive(second?.pid ?? 0)).toBe(false);
    expect(source.starts).toBe(2);
  });

  it('reports a journalctl that cannot be run, and stops retrying on stop', async () => {
    const source = new JournalSource({ journalctl: join(dir, 'missing'), fromStart: false, minBackoffMs: 20, maxBackoffMs: 40 });
    await source.start(new CountingSink());
    await until(() => source.starts >= 3);
    expect(source.problem()?.message).toMatch(/cannot run .*missing.*ENOENT/);
    await source.stop();
    const starts = source.starts;
    await new Promise((r) => setTimeout(r, 100));
    expect(source.starts).toBe(starts);
  });
});

/** A source driven by the test. */
class FakeSource implements LineSource {
  readonly name = 'kmsg' as const;
  readonly description = 'fake';
  sink: LineSink | undefined;
  failure: Error | undefined;
  stopped = false;
  async start(sink: LineSink): Promise<void> {
    this.sink = sink;
  }
  async stop(): Promise<void> {
    this.stopped = true;
  }
  problem(): Error | undefined {
    return this.failure;
  }
}

describe('kernel_log collector over a fake source', () => {
  it('counts events by netns, suppressed lines, lines and lost records, and reports the source health', async () => {
    const registry = new Registry();
    const { flags } = parseOptions([kernelLogCollector], [], {});
    const fake = new FakeSource();
    const collector = createKernelLogCollector(
      { flags, logger: pino({ level: 'silent' }), registry, procfs: new FsRoot('/proc'), sysfs: new FsRoot('/sys'), rootfs: new FsRoot('/'), run: noTools },
      async () => ({ source: fake, reasons: [] }),
    );
    await collector.start?.();
    const sink = fake.sink as LineSink;
    sink.line({ kind: 'event', event: 'table_full', netns: '' });
    sink.line({ kind: 'event', event: 'table_full', netns: '4026532177' });
    sink.line({ kind: 'event', event: 'table_full', netns: '4026532177' });
    sink.line({ kind: 'suppressed', count: 2758 });
    sink.line({ kind: 'suppressed', count: 12 });
    sink.line(undefined);
    sink.lost(3);
    await collector.update();
    const s = samples(await registry.metrics());
    expect(s.get('conntrack_kernel_log_events_total{event="table_full",netns=""}')).toBe(1);
    expect(s.get('conntrack_kernel_log_events_total{event="table_full",netns="4026532177"}')).toBe(2);
    expect(s.get('conntrack_kernel_log_events_total{event="syn_flood",netns=""}')).toBe(0);
    expect(s.get('conntrack_kernel_log_suppressed_total')).toBe(2770);
    expect(s.get('conntrack_kernel_log_lines_total{source="kmsg"}')).toBe(6);
    expect(s.get('conntrack_kernel_log_lost_total{source="kmsg"}')).toBe(3);
    fake.failure = new Error('journalctl exited with 1');
    await expect(collector.update()).rejects.toThrow('journalctl exited with 1');
    await collector.close?.();
    expect(fake.stopped).toBe(true);
  });
});

describe('kernel_log collector in the app', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kernel-log-app-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const only = COLLECTORS.filter((c) => c.name === 'kernel_log');

  async function scrape(app: Awaited<ReturnType<typeof buildTestApp>>): Promise<Map<string, number>> {
    return samples((await app.inject({ method: 'GET', url: '/metrics' })).body);
  }

  it('follows a file under --path.rootfs and counts new lines only', async () => {
    writeFileSync(join(dir, 'kern.log'), 'Mar 14 03:12:18 h kernel: nf_conntrack: table full, dropping packet\n');
    const app = await buildTestApp({
      collectors: only,
      args: ['--kernel-log.source=file', `--path.rootfs=${dir}`, '--kernel-log.path=/kern.log'],
    });
    try {
      appendFileSync(join(dir, 'kern.log'), 'Mar 14 03:12:19 h kernel: nf_conntrack: table full in netns 7, dropping packet\nMar 14 03:12:20 h kernel: net_ratelimit: 5 callbacks suppressed\n');
      let s = await scrape(app);
      for (let i = 0; i < 200 && s.get('conntrack_kernel_log_lines_total{source="file"}') !== 2; i++) {
        await new Promise((r) => setTimeout(r, 10));
        s = await scrape(app);
      }
      expect(s.get('conntrack_scrape_collector_success{collector="kernel_log"}')).toBe(1);
      expect(s.get('conntrack_kernel_log_lines_total{source="file"}')).toBe(2);
      expect(s.get('conntrack_kernel_log_events_total{event="table_full",netns="7"}')).toBe(1);
      expect(s.get('conntrack_kernel_log_events_total{event="table_full",netns=""}')).toBe(0);
      expect(s.get('conntrack_kernel_log_suppressed_total')).toBe(5);
    } finally {
      await app.close();
    }
  });

  it('source none: no source series, success 1', async () => {
    const app = await buildTestApp({ collectors: only, args: ['--kernel-log.source=none'] });
    const s = await scrape(app);
    await app.close();
    expect(s.get('conntrack_scrape_collector_success{collector="kernel_log"}')).toBe(1);
    expect([...s.keys()].filter((k) => k.startsWith('conntrack_kernel_log_lines_total'))).toEqual([]);
    expect(s.get('conntrack_kernel_log_suppressed_total')).toBe(0);
  });

  it('auto with nothing readable, an unreadable kmsg, and a missing file each report success 0', async () => {
    for (const args of [
      ['--kernel-log.source=auto', `--path.rootfs=${dir}`, '--kernel-log.kmsg-path=/nonexistent/kmsg', '--kernel-log.journalctl-path=/nonexistent/journalctl'],
      ['--kernel-log.source=kmsg', '--kernel-log.kmsg-path=/nonexistent/kmsg'],
      ['--kernel-log.source=file', `--path.rootfs=${dir}`],
    ]) {
      const app = await buildTestApp({ collectors: only, args });
      const s = await scrape(app);
      await app.close();
      expect(s.get('conntrack_scrape_collector_success{collector="kernel_log"}'), args.join(' ')).toBe(0);
    }
  });

  it('retries a kmsg device that could not be opened on the next scrape', async () => {
    const device = join(dir, 'kmsg');
    const app = await buildTestApp({ collectors: only, args: ['--kernel-log.source=kmsg', `--kernel-log.kmsg-path=${device}`] });
    try {
      expect((await scrape(app)).get('conntrack_scrape_collector_success{collector="kernel_log"}')).toBe(0);
      writeFileSync(device, `4,1,1,-;${'nf_conntrack: nf_conntrack: table full, dropping packet'}\n`);
      const s = await scrape(app);
      expect(s.get('conntrack_scrape_collector_success{collector="kernel_log"}')).toBe(1);
      expect(s.get('conntrack_kernel_log_lines_total{source="kmsg"}')).toBe(0); // the backlog is skipped
      // Reading goes on after the failed start (a regular file yields what was appended as one record).
      appendFileSync(device, `4,2,2,-;${'nf_conntrack: nf_conntrack: table full, dropping packet'}\n`);
      await until(() => false, KMSG_POLL_MS + 400);
      const t = await scrape(app);
      expect(t.get('conntrack_kernel_log_lines_total{source="kmsg"}')).toBe(1);
      expect(t.get('conntrack_kernel_log_events_total{event="table_full",netns=""}')).toBe(1);
    } finally {
      await app.close();
    }
  });

  it('auto picks the log file when /dev/kmsg cannot be opened', async () => {
    writeFileSync(join(dir, 'messages'), '');
    const app = await buildTestApp({
      collectors: only,
      args: [`--path.rootfs=${dir}`, '--kernel-log.path=/messages', '--kernel-log.kmsg-path=/nonexistent/kmsg'],
    });
    const s = await scrape(app);
    await app.close();
    expect(s.get('conntrack_kernel_log_lines_total{source="file"}')).toBe(0);
    expect(s.get('conntrack_scrape_collector_success{collector="kernel_log"}')).toBe(1);
  });

  it('auto falls back to journald when neither /dev/kmsg nor a log file can be read', async () => {
    const script = join(dir, 'journalctl');
    writeFileSync(script, `#!${process.execPath}\nif (process.argv[2] === '--version') process.exit(0);\nsetInterval(() => {}, 1000);\n`);
    chmodSync(script, 0o755);
    const app = await buildTestApp({
      collectors: only,
      run: runCommand,
      args: [`--path.rootfs=${dir}`, '--kernel-log.kmsg-path=/nonexistent/kmsg', `--kernel-log.journalctl-path=${script}`],
    });
    let s = await scrape(app);
    for (let i = 0; i < 100 && s.get('conntrack_scrape_collector_success{collector="kernel_log"}') !== 1; i++) {
      await new Promise((r) => setTimeout(r, 10));
      s = await scrape(app);
    }
    await app.close();
    expect(s.get('conntrack_kernel_log_lines_total{source="journal"}')).toBe(0);
    expect(s.get('conntrack_scrape_collector_success{collector="kernel_log"}')).toBe(1);
  });

  it('leaves no watcher, timer, fd or child process behind after close', async () => {
    writeFileSync(join(dir, 'kern.log'), '');
    const script = join(dir, 'journalctl');
    writeFileSync(script, `#!${process.execPath}\nsetInterval(() => {}, 1000);\n`);
    chmodSync(script, 0o755);
    const fds = (): number => readdirSync('/proc/self/fd').length;
    const resources = (): Map<string, number> => {
      const m = new Map<string, number>();
      for (const r of process.getActiveResourcesInfo()) m.set(r, (m.get(r) ?? 0) + 1);
      return m;
    };
    /** Kinds of handle (watcher, timer, child, pipe, file) of which there are more than before. */
    const leaked = (was: Map<string, number>): string[] =>
      [...resources()].filter(([kind, n]) => n > (was.get(kind) ?? 0)).map(([kind]) => kind);
    // Warm up module loading and lazy handles once, then measure.
    await (await buildTestApp({ collectors: only, args: ['--kernel-log.source=none'] })).close();
    await new Promise((r) => setTimeout(r, 20));
    const before = { fds: fds(), resources: resources() };
    for (const args of [
      ['--kernel-log.source=file', `--path.rootfs=${dir}`, '--kernel-log.path=/kern.log'],
      ['--kernel-log.source=journal', `--kernel-log.journalctl-path=${script}`],
      ...(readable('/dev/kmsg') ? [['--kernel-log.source=kmsg']] : []),
    ]) {
      const app = await buildTestApp({ collectors: only, args });
      await scrape(app);
      expect(fds(), `${args[0]} opened something`).toBeGreaterThan(before.fds);
      await app.close();
      // Closing may leave callbacks already queued (an Immediate from the logger or a stream) that
      // run within a few loop turns; a real leak stays. Under CI load 20 ms was once not enough.
      for (const until = Date.now() + 2000; Date.now() < until; ) {
        await new Promise((r) => setTimeout(r, 20));
        if (fds() === before.fds && leaked(before.resources).length === 0) break;
      }
      expect(fds(), args.join(' ')).toBe(before.fds);
      expect(leaked(before.resources), args.join(' ')).toEqual([]);
    }
  });
});

function readable(path: string): boolean {
  try {
    closeSync(openSync(path, constants.O_RDONLY | constants.O_NONBLOCK));
    return true;
  } catch {
    return false;
  }
}
