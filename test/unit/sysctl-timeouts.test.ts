import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { readConntrackTimeouts, TIMEOUTS_MAX_AGE_MS, timeoutsCollector } from '../../src/collectors/timeouts.js';
import { parseTimeoutSysctlName } from '../../src/procfs/conntrack-timeouts.js';
import { FsRoot } from '../../src/procfs/fs.js';
import { buildTestApp, samples } from '../helpers/app.js';
import { REPO_ROOT } from '../helpers/kernel.js';

const PROC_618 = join(REPO_ROOT, 'test', 'fixtures', 'proc', '6.18');

describe('parseTimeoutSysctlName', () => {
  it.each([
    ['nf_conntrack_tcp_timeout_established', 'tcp', 'established'],
    ['nf_conntrack_tcp_timeout_time_wait', 'tcp', 'time_wait'],
    ['nf_conntrack_tcp_timeout_max_retrans', 'tcp', 'max_retrans'],
    ['nf_conntrack_udp_timeout', 'udp', 'unreplied'],
    ['nf_conntrack_udp_timeout_stream', 'udp', 'replied'],
    ['nf_conntrack_udplite_timeout_stream', 'udplite', 'replied'],
    ['nf_conntrack_gre_timeout', 'gre', 'unreplied'],
    ['nf_conntrack_gre_timeout_stream', 'gre', 'replied'],
    ['nf_conntrack_icmp_timeout', 'icmp', ''],
    ['nf_conntrack_icmpv6_timeout', 'icmpv6', ''],
    ['nf_conntrack_generic_timeout', 'generic', ''],
    ['nf_conntrack_sctp_timeout_heartbeat_acked', 'sctp', 'heartbeat_acked'],
    ['nf_conntrack_dccp_timeout_timewait', 'dccp', 'timewait'],
    ['ip_conntrack_tcp_timeout_close_wait', 'tcp', 'close_wait'],
  ])('%s → %s/%s', (file, protocol, state) => {
    expect(parseTimeoutSysctlName(file)).toEqual({ protocol, state });
  });

  it.each(['nf_conntrack_frag6_timeout', 'nf_conntrack_tcp_max_retrans', 'nf_flowtable_tcp_timeout', 'nf_conntrack_max', 'nf_conntrack_tcp_loose'])(
    '%s is not an entry timeout',
    (file) => {
      expect(parseTimeoutSysctlName(file)).toBeUndefined();
    },
  );
});

describe('readConntrackTimeouts', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('reads the 6.18 defaults (live capture), 25 timeouts (10 tcp, 8 sctp, 2 udp, 2 gre, icmp, icmpv6, generic), frag6 left out', async () => {
    const samples = await readConntrackTimeouts(new FsRoot(PROC_618));
    const byKey = new Map(samples.map((s) => [`${s.labels.protocol}/${s.labels.state}`, s.value]));
    expect(samples).toHaveLength(25);
    expect(byKey.get('tcp/established')).toBe(432000);
    expect(byKey.get('tcp/time_wait')).toBe(120);
    expect(byKey.get('tcp/unacknowledged')).toBe(300);
    expect(byKey.get('udp/unreplied')).toBe(30);
    expect(byKey.get('udp/replied')).toBe(120);
    expect(byKey.get('gre/replied')).toBe(180);
    expect(byKey.get('generic/')).toBe(600);
    expect(byKey.get('icmpv6/')).toBe(30);
    expect(byKey.get('sctp/established')).toBe(210);
    expect([...byKey.keys()].some((k) => k.startsWith('frag6'))).toBe(false);
  });

  it('falls back to the pre-4.9 ip_conntrack copies when nf_conntrack has none', async () => {
    dir = mkdtempSync(join(tmpdir(), 'cte-timeouts-'));
    const d = join(dir, 'sys', 'net', 'ipv4', 'netfilter');
    mkdirSync(d, { recursive: true });
    mkdirSync(join(dir, 'sys', 'net', 'netfilter'), { recursive: true });
    writeFileSync(join(dir, 'sys', 'net', 'netfilter', 'nf_conntrack_max'), '65536\n');
    writeFileSync(join(d, 'ip_conntrack_tcp_timeout_established'), '432000\n');
    writeFileSync(join(d, 'ip_conntrack_udp_timeout_stream'), '180\n');
    writeFileSync(join(d, 'ip_conntrack_max'), '65536\n');
    expect(await readConntrackTimeouts(new FsRoot(dir))).toEqual([
      { labels: { protocol: 'tcp', state: 'established' }, value: 432000 },
      { labels: { protocol: 'udp', state: 'replied' }, value: 180 },
    ]);
  });
});

describe('timeouts collector', () => {
  let app: FastifyInstance | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('exports conntrack_timeout_seconds{protocol,state}', async () => {
    app = await buildTestApp({ args: [`--path.procfs=${PROC_618}`], collectors: [timeoutsCollector] });
    const s = samples((await app.inject({ url: '/metrics' })).body);
    expect(s.get('conntrack_scrape_collector_success{collector="timeouts"}')).toBe(1);
    expect(s.get('conntrack_timeout_seconds{protocol="tcp",state="time_wait"}')).toBe(120);
    expect(s.get('conntrack_timeout_seconds{protocol="icmp",state=""}')).toBe(30);
  });

  it('reuses a reading for TIMEOUTS_MAX_AGE_MS (they change only by sysctl), then reads the files again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cte-timeouts-'));
    const d = join(dir, 'sys', 'net', 'netfilter');
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'nf_conntrack_udp_timeout'), '30\n');
    let now = 1_000_000;
    const spy = vi.spyOn(Date, 'now').mockImplementation(() => now);
    try {
      app = await buildTestApp({ args: [`--path.procfs=${dir}`], collectors: [timeoutsCollector] });
      const udp = async (): Promise<number | undefined> =>
        samples((await app!.inject({ url: '/metrics' })).body).get('conntrack_timeout_seconds{protocol="udp",state="unreplied"}');
      expect(await udp()).toBe(30);
      writeFileSync(join(d, 'nf_conntrack_udp_timeout'), '600\n');
      now += TIMEOUTS_MAX_AGE_MS - 1;
      expect(await udp()).toBe(30);
      now += 1;
      expect(await udp()).toBe(600);
    } finally {
      spy.mockRestore();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says in its HELP text how old a value may be', async () => {
    app = await buildTestApp({ args: [`--path.procfs=${PROC_618}`], collectors: [timeoutsCollector] });
    expect((await app.inject({ url: '/metrics' })).body).toContain(`re-read at most every ${TIMEOUTS_MAX_AGE_MS / 1000} s`);
  });

  it('reports success 0 without the sysctls (module not loaded)', async () => {
    app = await buildTestApp({ args: [`--path.procfs=${join(REPO_ROOT, 'test', 'fixtures', 'proc', '5.10')}`], collectors: [timeoutsCollector] });
    const body = (await app.inject({ url: '/metrics' })).body;
    expect(samples(body).get('conntrack_scrape_collector_success{collector="timeouts"}')).toBe(0);
    expect(body).not.toMatch(/^conntrack_timeout_seconds/m);
  });
});
