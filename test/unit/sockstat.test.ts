import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { portsCollector } from '../../src/collectors/ports.js';
import { parsePortRange, portRangeSize } from '../../src/procfs/port-range.js';
import { parseSockstat, timeWaitSockets } from '../../src/procfs/sockstat.js';
import { buildTestApp, samples } from '../helpers/app.js';
import { REPO_ROOT } from '../helpers/kernel.js';

const PROC_618 = join(REPO_ROOT, 'test', 'fixtures', 'proc', '6.18');

describe('parseSockstat', () => {
  it('6.18 sockstat: TIME_WAIT from the TCP line', () => {
    const s = parseSockstat(readFileSync(join(PROC_618, 'net', 'sockstat'), 'utf8'));
    expect(timeWaitSockets(s)).toBe(41);
    expect(s.get('TCP')).toEqual(new Map([['inuse', 9], ['orphan', 0], ['tw', 41], ['alloc', 14], ['mem', 6]]));
    expect(s.get('FRAG')?.get('memory')).toBe(0);
  });

  it('6.18 sockstat6 (live capture) has no tw column: IPv6 TIME_WAIT is in sockstat', () => {
    const s6 = parseSockstat(readFileSync(join(PROC_618, 'net', 'sockstat6'), 'utf8'));
    expect([...(s6.get('TCP6')?.keys() ?? [])]).toEqual(['inuse']);
    expect(timeWaitSockets(s6)).toBeUndefined();
  });

  it('2.6.32 sockstat has the same TCP line', () => {
    const text = 'sockets: used 294\nTCP: inuse 12 orphan 1 tw 3 alloc 15 mem 2\nUDP: inuse 5 mem 4\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n';
    expect(timeWaitSockets(parseSockstat(text))).toBe(3);
  });

  it('rejects odd key/value lists and non-numbers', () => {
    expect(() => parseSockstat('TCP: inuse 1 tw\n')).toThrow(/line 1 is not/);
    expect(() => parseSockstat('TCP: inuse x\n')).toThrow(/non-numeric/);
  });
});

describe('parsePortRange', () => {
  it('counts both ends', () => {
    expect(portRangeSize(parsePortRange('32768\t60999\n'))).toBe(28232);
    expect(portRangeSize(parsePortRange('40000 40000'))).toBe(1);
  });

  it('rejects garbage and inverted ranges', () => {
    expect(() => parsePortRange('32768\n')).toThrow(/expected "low high"/);
    expect(() => parsePortRange('5000 4000')).toThrow(/invalid range/);
  });
});

describe('ports collector over the 6.18 fixture tree', () => {
  let app: FastifyInstance | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('exports TIME_WAIT, the port range and the tw sysctls', async () => {
    app = await buildTestApp({ args: [`--path.procfs=${PROC_618}`], collectors: [portsCollector] });
    const s = samples((await app.inject({ url: '/metrics' })).body);
    expect(s.get('conntrack_scrape_collector_success{collector="ports"}')).toBe(1);
    expect(s.get('conntrack_sockets_time_wait')).toBe(41);
    expect(s.get('conntrack_local_port_range_size')).toBe(28232);
    expect(s.get('conntrack_tcp_tw_reuse')).toBe(2);
    expect(s.get('conntrack_tcp_max_tw_buckets')).toBe(131072);
  });

  it('reports success 0 and no series on a tree without these files', async () => {
    app = await buildTestApp({ args: [`--path.procfs=${join(REPO_ROOT, 'test', 'fixtures', 'proc', '5.10')}`], collectors: [portsCollector] });
    const body = (await app.inject({ url: '/metrics' })).body;
    expect(samples(body).get('conntrack_scrape_collector_success{collector="ports"}')).toBe(0);
    expect(body).not.toMatch(/^conntrack_(sockets|local|tcp)_/m);
  });
});
