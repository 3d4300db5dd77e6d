/**
 * TableTally beyond the per-state totals: entries per destination port, a
 * top destination's entries by state (exact, or within the reported error
 * after purges), and which entries hold a source port.
 */
import { describe, expect, it } from 'vitest';
import { StateNames } from '../../src/table/line.js';
import { TableScanner } from '../../src/table/scanner.js';
import { MAX_TOP_PORTS, OTHER_STATE, TableTally, type TableSummary, type TallyOptions } from '../../src/table/tally.js';
import { rng } from '../helpers/rng.js';

function scan(lines: string[], options: TallyOptions): TableSummary {
  const states = new StateNames();
  const tally = new TableTally(states, options);
  const scanner = new TableScanner(tally, states);
  scanner.push(Buffer.from(lines.join(''), 'latin1'));
  scanner.end();
  expect(scanner.errors).toBe(0);
  return tally.summary();
}

const tcp = (src: string, sport: number, dst: string, dport: number, state = 'ESTABLISHED', timeout = 431999, replyDst = src): string =>
  `ipv4     2 tcp      6 ${timeout} ${state} src=${src} dst=${dst} sport=${sport} dport=${dport} ` +
  `src=${dst} dst=${replyDst} sport=${dport} dport=${sport} [ASSURED] mark=0 zone=0 use=2\n`;
const udp = (src: string, sport: number, dst: string, dport: number): string =>
  `ipv4     2 udp      17 29 src=${src} dst=${dst} sport=${sport} dport=${dport} [UNREPLIED] src=${dst} dst=${src} sport=${dport} dport=${sport} mark=0 zone=0 use=2\n`;
const tcp6 = (src: string, sport: number, dst: string, dport: number): string =>
  `ipv6     10 tcp      6 299 ESTABLISHED src=${src} dst=${dst} sport=${sport} dport=${dport} src=${dst} dst=${src} sport=${dport} dport=${sport} [ASSURED] mark=0 zone=0 use=2\n`;

describe('entries per destination port', () => {
  it('shows a fan-out to one port over many hosts as one port, ahead of any single ip:port', () => {
    const lines: string[] = [];
    // Incident 1: :22 on 500 hosts, one entry each; a busy ip:port elsewhere with 40.
    for (let h = 0; h < 500; h++) lines.push(tcp('10.0.0.1', 30000 + h, `10.20.${h >> 8}.${h & 255}`, 22, 'SYN_SENT', 100));
    for (let i = 0; i < 40; i++) lines.push(tcp('10.0.0.1', 40000 + i, '10.9.9.9', 6379));
    for (let i = 0; i < 7; i++) lines.push(udp('10.0.0.1', 50000 + i, `10.8.0.${i}`, 53));
    lines.push(tcp6('2001:db8::5', 1000, '2001:db8::1', 22));
    const summary = scan(lines, { topDestinations: 3, topPorts: 10 });
    expect(summary.ports).toEqual([
      { protocol: 'tcp', port: '22', entries: 501 },
      { protocol: 'tcp', port: '6379', entries: 40 },
      { protocol: 'udp', port: '53', entries: 7 },
    ]);
    // The top-3 destinations see none of the :22 hosts.
    expect(summary.destinations[0]).toMatchObject({ destination: '10.9.9.9', port: '6379', entries: 40 });
    expect(summary.destinations.filter((d) => d.port === '22').every((d) => d.entries <= 2)).toBe(true);
  });

  it('keeps the k busiest ports, ties to the lower protocol and port, and nothing for protocols without ports', () => {
    const lines: string[] = [];
    const counts: [number, number][] = [[80, 5], [443, 5], [8080, 3], [9000, 9], [1, 1]];
    for (const [port, n] of counts) for (let i = 0; i < n; i++) lines.push(tcp('10.0.0.1', 1000 + port + i * 7, '10.0.0.2', port));
    for (let i = 0; i < 5; i++) lines.push(udp('10.0.0.1', 2000 + i, '10.0.0.3', 443));
    lines.push('ipv4     2 icmp     1 29 src=10.0.0.5 dst=8.8.8.8 type=8 code=0 id=4242 src=8.8.8.8 dst=10.0.0.5 type=0 code=0 id=4242 mark=0 zone=0 use=2\n');
    const summary = scan(lines, { topDestinations: 0, topPorts: 4 });
    expect(summary.ports).toEqual([
      { protocol: 'tcp', port: '9000', entries: 9 },
      { protocol: 'tcp', port: '80', entries: 5 },
      { protocol: 'tcp', port: '443', entries: 5 },
      { protocol: 'udp', port: '443', entries: 5 },
    ]);
    expect(scan(lines, { topDestinations: 0 }).ports).toEqual([]);
    const capped = new TableTally(new StateNames(), { topDestinations: 0, topPorts: 1_000_000 });
    expect(capped.topPorts).toBe(MAX_TOP_PORTS);
  });

  it('forgets the ports on reset', () => {
    const states = new StateNames();
    const tally = new TableTally(states, { topDestinations: 1, topPorts: 5 });
    const scanner = new TableScanner(tally, states);
    scanner.push(Buffer.from(tcp('10.0.0.1', 1, '10.0.0.2', 80)));
    scanner.end();
    expect(tally.summary().ports).toEqual([{ protocol: 'tcp', port: '80', entries: 1 }]);
    tally.reset();
    expect(tally.summary().ports).toEqual([]);
  });
});

describe('a top destination by state', () => {
  it('counts every state of each top destination exactly, adding up to its entries', () => {
    const lines: string[] = [];
    // Incident 2: 6379 holds most of the table and 90% of it is TIME_WAIT.
    for (let i = 0; i < 90; i++) lines.push(tcp('10.0.0.5', 40000 + i, '10.0.0.9', 6379, 'TIME_WAIT', 100));
    for (let i = 0; i < 10; i++) lines.push(tcp('10.0.0.5', 41000 + i, '10.0.0.9', 6379));
    for (let i = 0; i < 20; i++) lines.push(tcp('10.0.0.5', 42000 + i, '10.0.0.10', 443, i % 2 ? 'FIN_WAIT' : 'CLOSE_WAIT', 50));
    lines.push(udp('10.0.0.5', 5000, '10.0.0.1', 53));
    const summary = scan(lines, { topDestinations: 3 });
    expect(summary.destinationsError).toBe(0);
    expect(summary.destinations.map((d) => [d.destination, d.port, d.entries, d.states])).toEqual([
      ['10.0.0.9', '6379', 100, [{ state: 'TIME_WAIT', entries: 90 }, { state: 'ESTABLISHED', entries: 10 }]],
      ['10.0.0.10', '443', 20, [{ state: 'CLOSE_WAIT', entries: 10 }, { state: 'FIN_WAIT', entries: 10 }]],
      ['10.0.0.1', '53', 1, [{ state: 'none', entries: 1 }]],
    ]);
  });

  it('after purges, undercounts each state by at most destinationsError and never overcounts', () => {
    const states = ['ESTABLISHED', 'TIME_WAIT', 'SYN_SENT', 'CLOSE_WAIT', 'FIN_WAIT'];
    for (const seed of [1, 2, 3]) {
      const random = rng(seed);
      const lines: string[] = [];
      const truth = new Map<string, Map<string, number>>();
      // Five heavy destinations (each with its own state mix) in a stream of 20,000 one-entry destinations.
      // And a sixth with a few entries at the start (evicted by the purges) that is busy at the end.
      for (let i = 0; i < 30_000; i++) {
        let dst: string;
        let state: string;
        if ((i < 100 && i % 10 === 0) || (i > 25_000 && i % 4 === 0)) {
          dst = '10.9.9.5';
          state = i < 100 ? 'ESTABLISHED' : 'TIME_WAIT';
        } else if (random() < 1 / 3) {
          const h = Math.floor(random() * 5);
          dst = `10.9.9.${h}`;
          state = states[Math.floor(random() * random() * (h + 1))] as string;
        } else {
          dst = `10.8.${(i >> 8) & 255}.${i & 255}`;
          state = states[i % 5] as string;
        }
        lines.push(tcp('10.0.0.1', 1024 + (i % 60000), dst, 443, state, 100));
        const byState = truth.get(dst) ?? new Map<string, number>();
        byState.set(state, (byState.get(state) ?? 0) + 1);
        truth.set(dst, byState);
      }
      const summary = scan(lines, { topDestinations: 6, keyCapacity: 256 });
      const error = summary.destinationsError;
      expect(error, `seed ${seed}`).toBeGreaterThan(0);
      expect(error).toBeLessThanOrEqual((2 * 30_000) / 256);
      expect(summary.destinations.map((d) => d.destination).sort()).toEqual(['10.9.9.0', '10.9.9.1', '10.9.9.2', '10.9.9.3', '10.9.9.4', '10.9.9.5']);
      for (const d of summary.destinations) {
        const exact = truth.get(d.destination)!;
        const total = [...exact.values()].reduce((a, b) => a + b, 0);
        expect(d.entries).toBe(d.states.reduce((a, s) => a + s.entries, 0));
        expect(d.entries).toBeLessThanOrEqual(total);
        expect(d.entries).toBeGreaterThanOrEqual(total - error);
        for (const [state, n] of exact) {
          const got = d.states.find((s) => s.state === state)?.entries ?? 0;
          expect(got, `seed ${seed} ${d.destination} ${state}`).toBeLessThanOrEqual(n);
          expect(got, `seed ${seed} ${d.destination} ${state}`).toBeGreaterThanOrEqual(n - error);
        }
        // The per-state counts lose, together, no more than the destination did.
        const lost = [...exact].reduce((a, [state, n]) => a + n - (d.states.find((s) => s.state === state)?.entries ?? 0), 0);
        expect(lost).toBeLessThanOrEqual(error);
        // The late one lost its early entries (all ESTABLISHED) and nothing since it came back.
        if (d.destination === '10.9.9.5') {
          expect(d.states).toEqual([{ state: 'TIME_WAIT', entries: exact.get('TIME_WAIT') }]);
          expect(lost).toBe(10);
        }
      }
    }
  });

  it('counts a 12th and later state name of one protocol as other', () => {
    const lines: string[] = [];
    for (let i = 0; i < 14; i++) lines.push(tcp('10.0.0.1', 1000 + i, '10.0.0.2', 80, `S${i}`));
    const [d] = scan(lines, { topDestinations: 1 }).destinations;
    expect(d!.entries).toBe(14);
    expect(d!.states).toHaveLength(12);
    expect(d!.states[0]).toEqual({ state: OTHER_STATE, entries: 3 });
  });
});

describe('source ports: which entries hold one', () => {
  const lines = [
    // 10.0.0.5 → 10.0.0.9:6379: 3 live, 2 TIME_WAIT younger than the socket's 60 s, 4 older.
    ...[0, 1, 2].map((i) => tcp('10.0.0.5', 40000 + i, '10.0.0.9', 6379)),
    ...[100, 61].map((t, i) => tcp('10.0.0.5', 41000 + i, '10.0.0.9', 6379, 'TIME_WAIT', t)),
    ...[60, 30, 1, 0].map((t, i) => tcp('10.0.0.5', 42000 + i, '10.0.0.9', 6379, 'TIME_WAIT', t)),
    // Behind SNAT to 203.0.113.1, old TIME_WAIT entries keep their NAT tuple: all 6 count.
    ...[0, 1, 2, 3, 4, 5].map((i) => tcp(`192.168.1.${i}`, 5000, '10.0.0.10', 443, 'TIME_WAIT', 10, '203.0.113.1')),
  ];

  it('leaves out TIME_WAIT entries older than the socket TIME_WAIT, unless source-NATed', () => {
    const summary = scan(lines, { topDestinations: 2, conntrackTimeWaitSeconds: 120 });
    expect(summary.destinations.map((d) => [d.destination, d.entries, d.sourcePorts, d.busiestSource, d.busiestSourceTranslated])).toEqual([
      ['10.0.0.9', 9, 5, '10.0.0.5', false],
      ['10.0.0.10', 6, 6, '203.0.113.1', true],
    ]);
    // The state counts still have every entry.
    expect(summary.destinations[0]!.states).toEqual([{ state: 'TIME_WAIT', entries: 6 }, { state: 'ESTABLISHED', entries: 3 }]);
  });

  it('counts every entry when the conntrack TIME_WAIT timeout is unknown, and follows a changed one', () => {
    expect(scan(lines, { topDestinations: 1 }).destinations[0]).toMatchObject({ sourcePorts: 9 });
    // With 90 s, entries at ≤ 30 s left are older than 60 s: three of the six TIME_WAIT.
    expect(scan(lines, { topDestinations: 1, conntrackTimeWaitSeconds: 90 }).destinations[0]).toMatchObject({ sourcePorts: 6 });
    // Below 60 s no TIME_WAIT entry outlives the socket's.
    expect(scan(lines, { topDestinations: 1, conntrackTimeWaitSeconds: 30 }).destinations[0]).toMatchObject({ sourcePorts: 9 });
  });

  it('reports 0 source ports and no source for a destination whose only entries no longer hold one', () => {
    const old = [tcp('10.0.0.5', 1, '10.0.0.9', 80, 'TIME_WAIT', 5), tcp('10.0.0.5', 2, '10.0.0.9', 80, 'TIME_WAIT', 5)];
    expect(scan(old, { topDestinations: 1, conntrackTimeWaitSeconds: 120 }).destinations[0]).toMatchObject({
      entries: 2,
      sourcePorts: 0,
      busiestSource: undefined,
    });
    expect(scan(old.slice(0, 1), { topDestinations: 1, conntrackTimeWaitSeconds: 120 }).destinations[0]).toMatchObject({
      entries: 1,
      sourcePorts: 0,
      busiestSource: undefined,
    });
    expect(scan(old.slice(0, 1), { topDestinations: 1 }).destinations[0]).toMatchObject({ sourcePorts: 1, busiestSource: '10.0.0.5' });
  });

  it('names the busiest source, the lower address among equals, and marks it translated if any of its entries is', () => {
    const mixed = [
      tcp('10.0.0.7', 1, '10.0.0.9', 80),
      tcp('10.0.0.7', 2, '10.0.0.9', 80),
      tcp('10.0.0.6', 3, '10.0.0.9', 80),
      // A pod's connection masqueraded to the node's own address 10.0.0.6: the same ports.
      tcp('172.16.0.2', 4, '10.0.0.9', 80, 'ESTABLISHED', 100, '10.0.0.6'),
    ];
    expect(scan(mixed, { topDestinations: 1 }).destinations[0]).toMatchObject({
      sourcePorts: 2,
      busiestSource: '10.0.0.6',
      busiestSourceTranslated: true,
    });
    expect(scan(mixed.slice(0, 3), { topDestinations: 1 }).destinations[0]).toMatchObject({
      sourcePorts: 2,
      busiestSource: '10.0.0.7',
      busiestSourceTranslated: false,
    });
  });
});
