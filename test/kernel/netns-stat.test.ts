/**
 * Per-namespace conntrack statistics on the real kernel: two namespaces, each
 * with a process in it, drops forced in one only by lowering the global
 * nf_conntrack_max to its entry count (6.18 checks each namespace's own count
 * against the global limit). `conntrack -S` inside each namespace is the
 * oracle; the exporter runs in-process on the host's /proc, as with hostPID.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { netnsCollector } from '../../src/collectors/netns.js';
import { runCommand } from '../../src/util/command.js';
import { buildTestApp, samples } from '../helpers/app.js';
import { Netns, TRAFFIC, acquireKernelLock, describeKernel, releaseKernelLock, withConntrackMax } from '../helpers/kernel.js';

/** `count` assured TCP entries (no early drop can evict them, so a full table drops). */
async function insertAssured(ns: Netns, count: number, base: number): Promise<void> {
  await Promise.all(
    Array.from({ length: count }, (_, i) =>
      ns.exec('conntrack', [
        '-I', '-p', 'tcp', '-s', '10.9.0.1', '-d', '10.9.1.1', '--sport', String(base + i), '--dport', '443',
        '--state', 'ESTABLISHED', '-t', '600', '-u', 'ASSURED,SEEN_REPLY',
      ]),
    ),
  );
}

const STATS = ['drop', 'early_drop', 'insert_failed', 'clash_resolve', 'invalid'] as const;

describeKernel('per-namespace conntrack statistics on the real kernel', () => {
  let full: Netns;
  let quiet: Netns;
  let app: FastifyInstance | undefined;
  let small: FastifyInstance | undefined;

  beforeAll(async () => {
    await acquireKernelLock();
    full = await Netns.create('netns-full');
    quiet = await Netns.create('netns-quiet');
    for (const ns of [full, quiet]) {
      await ns.enableConntrack();
      await ns.processIn();
    }
    await insertAssured(full, 30, 20000);
    await insertAssured(quiet, 5, 30000);
  });

  afterAll(async () => {
    await app?.close();
    await small?.close();
    await Promise.all([full?.destroy(), quiet?.destroy()]);
    releaseKernelLock();
  });

  const build = (args: string[] = []): Promise<FastifyInstance> =>
    buildTestApp({ args: ['--collector.netns', '--path.procfs=/proc', ...args], run: runCommand, collectors: [netnsCollector] });
  const scrape = async (a: FastifyInstance): Promise<Map<string, number>> => {
    const s = samples((await a.inject({ url: '/metrics' })).body);
    expect(s.get('conntrack_scrape_collector_success{collector="netns"}')).toBe(1);
    return s;
  };
  const series = (name: string, ns: Netns): string => `conntrack_netns_stat_${name}_total{netns="${ns.inode()}"}`;

  it('counts the drops of the namespace at the limit as its conntrack -S does, and none in the other', async () => {
    app = await build();
    // Only namespaces with 1000+ entries, or whose statistics are not zero, get series here.
    small = await build(['--collector.netns.min-entries=1000']);
    const before = await scrape(app);
    const smallBefore = await scrape(small);
    const oracleBefore = { full: await full.statSums(), quiet: await quiet.statSums() };
    for (const name of STATS) {
      for (const [label, ns] of [['full', full], ['quiet', quiet]] as const) {
        expect(before.get(series(name, ns)), `${name} ${label} before`).toBe(oracleBefore[label].get(name) ?? 0);
      }
    }
    expect(smallBefore.get(series('drop', full))).toBeUndefined();

    const count = await full.conntrackCount();
    expect(count).toBe(30);
    await withConntrackMax(count, async () => {
      // Each datagram needs a new entry in a namespace already at the limit.
      await full.exec(process.execPath, [TRAFFIC, 'udp', '20', '9000']);
    });

    const after = await scrape(app);
    const smallAfter = await scrape(small);
    const oracleAfter = { full: await full.statSums(), quiet: await quiet.statSums() };
    const rose = (name: string): number => (oracleAfter.full.get(name) ?? 0) - (oracleBefore.full.get(name) ?? 0);
    console.info(`netns ${full.inode()} at the limit: ${STATS.map((n) => `${n} +${rose(n)}`).join(', ')}`);
    // The kernel drops (assured entries cannot be early-dropped) or early-drops; whichever it did, it did it 20 times.
    expect(rose('drop') + rose('early_drop')).toBe(20);
    for (const name of STATS) {
      expect((after.get(series(name, full)) ?? 0) - (before.get(series(name, full)) ?? 0), `${name} full`).toBe(rose(name));
      expect(after.get(series(name, quiet)), `${name} quiet`).toBe(oracleAfter.quiet.get(name) ?? 0);
    }
    expect(oracleAfter.quiet.get('drop')).toBe(0);
    expect(oracleAfter.quiet.get('early_drop')).toBe(0);
    // The namespace that dropped gets its series even below --collector.netns.min-entries, labelled like its info series.
    expect(smallAfter.get(series('drop', full))).toBe(oracleAfter.full.get('drop'));
    expect(smallAfter.get(series('drop', quiet))).toBeUndefined();
    expect([...after.keys()].some((k) => k.startsWith(`conntrack_netns_info{netns="${full.inode()}"`))).toBe(true);
  });

  it('matches conntrack -S when the full table holds unassured UDP flows (early drop possible)', async () => {
    const udp = await Netns.create('netns-udp');
    try {
      await udp.enableConntrack();
      await udp.processIn();
      // 30 one-way UDP flows: unassured, so the kernel may evict one instead of dropping.
      await udp.exec(process.execPath, [TRAFFIC, 'udp', '30', '9100']);
      app ??= await build();
      const before = await scrape(app);
      const oracleBefore = await udp.statSums();
      const count = await udp.conntrackCount();
      expect(count).toBe(30);
      await withConntrackMax(count, async () => {
        await udp.exec(process.execPath, [TRAFFIC, 'udp', '20', '9200']);
      });
      const after = await scrape(app);
      const oracleAfter = await udp.statSums();
      const rose = (name: string): number => (oracleAfter.get(name) ?? 0) - (oracleBefore.get(name) ?? 0);
      console.info(`netns ${udp.inode()} full of unassured flows: ${STATS.map((n) => `${n} +${rose(n)}`).join(', ')}`);
      expect(rose('drop') + rose('early_drop')).toBeGreaterThan(0);
      for (const name of STATS) {
        expect((after.get(series(name, udp)) ?? 0) - (before.get(series(name, udp)) ?? 0), name).toBe(rose(name));
      }
    } finally {
      await udp.destroy();
    }
  });

  it('drops the series and state of a namespace that is gone', async () => {
    app ??= await build();
    const inode = quiet.inode();
    expect((await scrape(app)).get(`conntrack_netns_stat_drop_total{netns="${inode}"}`)).toBe(0);
    await quiet.destroy();
    const s = await scrape(app);
    expect([...s.keys()].filter((k) => k.includes(`"${inode}"`))).toEqual([]);
  });
}, ['ip', 'conntrack', 'nft']);
