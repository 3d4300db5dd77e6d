/**
 * Incident 2 (seed 001): a connection leak to one destination.
 *
 * App workers (namespace `app`, tracked: the app's host, where the exporter
 * runs) call a Redis-like server on 10.63.0.1:6379 (namespace `redis`,
 * untracked) without a shared pool: every command opens a connection and the
 * client closes it, so every command leaves a conntrack entry in TIME_WAIT
 * for nf_conntrack_tcp_timeout_time_wait. At the normal rate that holds about half
 * of the table (no page); a 4× spike fills it. On kernels ≥ 4.7 the kernel
 * early-drops TIME_WAIT entries to make room (early_drop rises, drop may not):
 * the page must still come, naming 10.63.0.1:6379 and the TIME_WAIT share.
 * Switching the client to a pool of 8 connections resolves the alert.
 *
 * Without a pool, every command also resolves the server's name (a UDP query
 * to 10.63.0.1:53): those entries are never assured, and they are what the
 * kernel's early drop evicts (it never evicts an assured entry such as
 * TIME_WAIT on the allocation path). The hash table is sized 1:1 with the
 * lowered limit for the test (this kernel's default ratio), as early drop
 * looks only at 8 buckets.
 *
 * Scaled with the rest of the lab: the app namespace's TIME_WAIT (120 s) and
 * UDP (30 s) conntrack timeouts are multiplied by FACTOR too (per-namespace
 * sysctls), so the table holds the same number of scrapes' worth of
 * connections as in production; the rate keeps the steady state at 60%.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Netns, acquireKernelLock, describeKernel, releaseKernelLock, withConntrackMax } from '../helpers/kernel.js';
import {
  GROUP_INTERVAL_MS,
  JOB,
  JsonProcess,
  Lab,
  ROUTING_MS,
  SCRAPE_MS,
  StatWatch,
  pageText,
  recordTiming,
  scaled,
  sleep,
  sysctl,
  veth,
  withConntrackBuckets,
  LOCK_WAIT_MS,
  TEST_TIMEOUT_MS,
} from './harness.js';

const LIMIT = 400;
const REDIS = '10.63.0.1';
const TIME_WAIT_S = Math.round(scaled(120_000) / 1000);
const UDP_S = Math.round(scaled(30_000) / 1000);
/**
 * Commands a second that keep half the table busy (a TIME_WAIT and a DNS entry each). The count
 * also holds expired entries until the kernel's GC worker reaps them, which under load put a
 * planned 60% at 82% once: hence 50%, and a healthy band up to 75%.
 */
const RATE = Math.round((0.5 * LIMIT) / (TIME_WAIT_S + UDP_S));
const BUDGET_MS = 2 * SCRAPE_MS + ROUTING_MS + 1000;
const RESOLVE_MS = TIME_WAIT_S * 1000 + scaled(300_000) + GROUP_INTERVAL_MS + ROUTING_MS + 30_000;

describeKernel(
  'incident 2: connection leak to one destination, TIME_WAIT and early drops (seed 001)',
  () => {
    let app: Netns;
    let redis: Netns;
    let lab: Lab | undefined;
    let watch: StatWatch;

    beforeAll(async () => {
      await acquireKernelLock();
      app = await Netns.create('incidents-redis-app');
      redis = await Netns.create('incidents-redis');
      await app.enableConntrack();
      await sysctl(app, { 'net.netfilter.nf_conntrack_tcp_timeout_time_wait': TIME_WAIT_S, 'net.netfilter.nf_conntrack_udp_timeout': UDP_S });
      await veth(app, 'eth0', '10.63.0.2/24', redis, 'eth0', `${REDIS}/24`);
      const server = JsonProcess.spawn(redis, 'redis.mjs', ['server', REDIS, 6379]);
      await server.waitFor('redis listening', (l) => 'ready' in l);
      watch = await StatWatch.start(app);
    }, LOCK_WAIT_MS);

    afterAll(async () => {
      watch?.stop();
      await lab?.stop();
      await app?.destroy();
      await redis?.destroy();
      releaseKernelLock();
    });

    it('pages naming ip:6379 and its TIME_WAIT share when a 4x spike fills the table; a pool of 8 resolves it', async () => {
      // The production ratio of buckets to the limit (1:1 on this kernel), so early drop finds entries.
      await withConntrackBuckets(LIMIT, () => withConntrackMax(LIMIT, async () => {
        const client = JsonProcess.spawn<{ mode: string; ok: number; errors: number }>(app, 'redis.mjs', ['client', REDIS, 6379, RATE]);
        try {
          // The steady state (60% in TIME_WAIT) before monitoring starts.
          await sleep(TIME_WAIT_S * 1000 + 2000);
          lab = await Lab.start('redis', [{ ns: app, node: 'app-host' }]);
          const quietFrom = Date.now();
          await sleep(8 * SCRAPE_MS + ROUTING_MS);
          const [fill] = await lab.query(`conntrack_entries{job="${JOB}"} / conntrack_entries_limit{job="${JOB}"}`);
          expect(Number(fill!.value[1])).toBeGreaterThan(0.35);
          expect(Number(fill!.value[1])).toBeLessThan(0.75);
          expect(lab.firingSince(quietFrom).map((a) => a.labels['alertname']), 'no page at a steady, healthy fill').toEqual([]);

          // The spike: 4x the commands, each a new connection.
          const onsetFrom = Date.now();
          client.child.kill('SIGUSR1');
          const firstDrop = await watch.firstRise(['drop', 'early_drop'], onsetFrom, 120_000);
          const page = await lab.waitForPage('critical: table full of TIME_WAIT to :6379', (a) => a.labels['severity'] === 'critical', onsetFrom, 120_000);
          const timing = recordTiming('2 redis :6379 TIME_WAIT leak', page.labels['alertname']!, firstDrop, page.at);
          const text = pageText(page);
          // eslint-disable-next-line no-console
          console.log(`incident 2 page:\n${text}\nstats at page: ${JSON.stringify(watch.last())}`);
          expect(timing.ms, `page ${timing.ms} ms after the first drop or early drop (budget ${BUDGET_MS} ms):\n${text}`).toBeLessThanOrEqual(BUDGET_MS);
          expect(watch.last().early_drop, 'the kernel early-dropped (≥ 4.7)').toBeGreaterThan(0);
          expect(text).toContain(`${REDIS}:6379`);
          expect(text).toMatch(/TIME_WAIT/);
          expect(text).toMatch(/\d+(\.\d+)?\s?%/);

          // The fix: a pool of 8 connections. No new entries; TIME_WAIT expires; the alert resolves.
          const fixedAt = Date.now();
          client.child.kill('SIGUSR2');
          await client.waitFor('the pool', (l) => l.mode === 'pool', 30_000);
          const resolved = await lab.waitForResolved(
            page.labels['alertname']!,
            (a) => a.labels['alertname'] === page.labels['alertname'],
            fixedAt,
            RESOLVE_MS,
          );
          recordTiming('2 redis :6379 resolved after a pool of 8', page.labels['alertname']!, fixedAt, resolved.at);
          const errorsBefore = client.last()!.errors;
          await sleep(2 * SCRAPE_MS);
          expect(client.last()!.errors, 'the pooled client works').toBe(errorsBefore);
        } finally {
          client.stop();
        }
      }));
    }, TEST_TIMEOUT_MS);
  },
  ['ip', 'conntrack', 'nft', 'prometheus', 'prometheus-alertmanager'],
);
