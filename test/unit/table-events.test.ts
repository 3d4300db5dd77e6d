import type { FastifyInstance } from 'fastify';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { countOverruns, eventsArgs, eventsCollector } from '../../src/collectors/events.js';
import { EVENT_TYPES, EventCounter } from '../../src/table/events.js';
import { buildTestApp, samples } from '../helpers/app.js';

const FAKE = join(import.meta.dirname, '..', 'fixtures', 'table', 'fake-conntrack-events');

const LINES = [
  '    [NEW] udp      17 30 src=10.0.0.1 dst=10.0.0.2 sport=5000 dport=53 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=53 dport=5000',
  '    [NEW] tcp      6 120 SYN_SENT src=10.0.0.1 dst=10.0.0.3 sport=40000 dport=443 [UNREPLIED] src=10.0.0.3 dst=10.0.0.1 sport=443 dport=40000',
  ' [DESTROY] tcp      6 src=10.0.0.1 dst=10.0.0.3 sport=40000 dport=443 src=10.0.0.3 dst=10.0.0.1 sport=443 dport=40000 [ASSURED]',
  '  [UPDATE] tcp      6 60 SYN_RECV src=10.0.0.1 dst=10.0.0.3 sport=40000 dport=443 src=10.0.0.3 dst=10.0.0.1 sport=443 dport=40000',
  '[1764680000.123456]\t    [NEW] sctp     132 10 CLOSED src=10.0.0.1 dst=10.0.0.3 sport=1 dport=2 [UNREPLIED] src=10.0.0.3 dst=10.0.0.1 sport=2 dport=1',
  '    [NEW] unknown  50 600 src=10.0.0.1 dst=10.0.0.2 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1',
];
const BAD = ['garbage', '    [NEW]', '    [NEW] udp      999 30 src=1', '    [OLD] udp      17 30 src=1', '    [NEW] udp      17x 30', ''];

function count(chunks: Uint8Array[]): EventCounter {
  const c = new EventCounter();
  for (const chunk of chunks) c.push(chunk);
  return c;
}

const byKey = (c: EventCounter): Record<string, number> => {
  const out: Record<string, number> = {};
  EVENT_TYPES.forEach((type, t) => {
    for (let p = 0; p < 256; p++) if (c.counts[t * 256 + p]) out[`${type}/${p}`] = c.counts[t * 256 + p] as number;
  });
  return out;
};

describe('counting conntrack -E lines', () => {
  const text = [...LINES, ...BAD].join('\n') + '\n';
  const expected = { 'new/17': 1, 'new/6': 1, 'destroy/6': 1, 'update/6': 1, 'new/132': 1, 'new/50': 1 };

  it('reads the type (after an optional timestamp) and the protocol number, and counts the rest as malformed', () => {
    const c = count([Buffer.from(text, 'latin1')]);
    expect(byKey(c)).toEqual(expected);
    expect(c.total('new')).toBe(4);
    expect(c.lines).toBe(LINES.length + BAD.length - 1);
    expect(c.malformed).toBe(BAD.length - 1);
  });

  it('gives the same counts however the stream is cut', () => {
    const bytes = Buffer.from(text, 'latin1');
    for (const size of [1, 2, 3, 17, 64, 200]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
      const c = count(chunks);
      expect(byKey(c), `chunks of ${size}`).toEqual(expected);
      expect(c.malformed, `chunks of ${size}`).toBe(BAD.length - 1);
    }
  });

  it('counts an overlong line once as malformed and finds the next line', () => {
    const long = `    [NEW] udp      17 30 ${'x'.repeat(10_000)}`;
    for (const size of [100, 5000, 20_000]) {
      const bytes = Buffer.from(`${long}\n${LINES[0]}\n`, 'latin1');
      const chunks: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
      const c = count(chunks);
      expect(c.malformed, `chunks of ${size}`).toBe(1);
      expect(byKey(c), `chunks of ${size}`).toEqual({ 'new/17': 1 });
    }
  });

  it('builds the command line and counts ENOBUFS warnings', () => {
    expect(eventsArgs(8388608)).toEqual(['-E', '-e', 'NEW,DESTROY', '-b', '8388608']);
    expect(eventsArgs(0)).toEqual(['-E', '-e', 'NEW,DESTROY']);
    expect(countOverruns('WARNING: We have hit ENOBUFS! We are losing events.\nThis message means…\nWARNING: We have hit ENOBUFS!')).toBe(2);
    expect(countOverruns('conntrack v1.4.7 (conntrack-tools): 5 flow events have been shown.')).toBe(0);
  });
});

describe('collector events', () => {
  let app: FastifyInstance | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  async function until(a: FastifyInstance, done: (m: Map<string, number>) => boolean): Promise<Map<string, number>> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const m = samples((await a.inject({ url: '/metrics' })).body);
      if (done(m)) return m;
      if (Date.now() > deadline) throw new Error(`not reached within 5 s:\n${[...m].filter(([k]) => k.includes('events')).join('\n')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('is off by default', async () => {
    app = await buildTestApp({ args: [`--conntrack.path=${FAKE}`] });
    const m = samples((await app.inject({ url: '/metrics' })).body);
    expect([...m.keys()].filter((k) => k.startsWith('conntrack_events_'))).toEqual([]);
  });

  it('counts the events conntrack -E prints, by type and protocol, and its ENOBUFS warnings', async () => {
    app = await buildTestApp({ collectors: [eventsCollector], args: ['--collector.events', `--conntrack.path=${FAKE}`, '--collector.events.buffer-size=0'] });
    const m = await until(app, (x) => x.get('conntrack_events_overruns_total') === 1 && x.get('conntrack_events_parse_errors_total') === 1);
    expect(m.get('conntrack_scrape_collector_success{collector="events"}')).toBe(1);
    expect([...m].filter(([k]) => k.startsWith('conntrack_events_total'))).toEqual([
      ['conntrack_events_total{type="new",protocol="tcp"}', 2],
      ['conntrack_events_total{type="new",protocol="udp"}', 2],
      ['conntrack_events_total{type="destroy",protocol="tcp"}', 0],
      ['conntrack_events_total{type="destroy",protocol="udp"}', 1],
      ['conntrack_events_total{type="new",protocol="icmp"}', 1],
      ['conntrack_events_total{type="new",protocol="50"}', 1],
    ]);
  });

  it('fails, keeping its counters, while conntrack -E cannot run, naming why', async () => {
    for (const tool of [join(FAKE, 'missing'), join(FAKE, '..', 'no-such-tool')]) {
      app = await buildTestApp({ collectors: [eventsCollector], args: ['--collector.events', `--conntrack.path=${tool}`] });
      const m = await until(app, (x) => x.get('conntrack_scrape_collector_success{collector="events"}') === 0);
      expect(m.get('conntrack_events_total{type="new",protocol="udp"}')).toBe(0);
      expect((await app.inject({ url: '/metrics' })).statusCode).toBe(200);
      await app.close();
      app = undefined;
    }
  });
});
