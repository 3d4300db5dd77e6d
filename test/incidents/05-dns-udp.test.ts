/**
 * Incident 5 (seed 004): a DNS server with many tiny UDP flows.
 *
 * A UDP responder on 10.53.0.1:53 (namespace `dns`, tracked: it is the node,
 * and the exporter runs there) answers clients (namespace `clients`,
 * untracked) that send 25 queries a second, each from a new source port, and
 * retry after 1 s without an answer. Every query is a conntrack entry for the
 * UDP timeout (30 s), so the server needs ~750 entries; its table holds 300.
 * The table fills, queries are dropped, clients retry (amplifying), and the
 * page must name `udp 10.53.0.1:53`, the slab memory in use and the limit that
 * would have been needed. Raising the limit 4× ends it (the alert resolves and
 * the table settles at ~60%, which does not page); so does NOTRACK on udp/53.
 *
 * Not reproduced by the kernel: the seed's 2.6-era log lines
 * (`ip_conntrack: table full, dropping packet.`, `printk: N messages
 * suppressed.`). 6.18 writes `nf_conntrack: nf_conntrack: table full in netns
 * N, dropping packet` and `net_ratelimit: N callbacks suppressed`. So this
 * exporter reads the seed's wording from a syslog file (--kernel-log.source=
 * file) that the test appends to while the real drops happen: one table-full
 * line per 5 s with drops, preceded by `printk: N messages suppressed.` for the
 * other drops of those 5 s, as 2.6's printk rate limit wrote them. The drops,
 * the table and the slab are the real kernel's.
 */
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
  runbookSection,
  scaled,
  sleep,
  veth,
  type Alert,
  LOCK_WAIT_MS,
  TEST_TIMEOUT_MS,
} from './harness.js';

const LIMIT = 300;
const QPS = 25;
const DNS = '10.53.0.1';
const BUDGET_MS = 2 * SCRAPE_MS + ROUTING_MS + 1000;
/** Resolution: the rule's longest window (5 minutes) plus one group_interval, plus routing. */
const RESOLVE_MS = scaled(300_000) + GROUP_INTERVAL_MS + ROUTING_MS + 30_000;

const critical = (a: Alert): boolean => a.labels['severity'] === 'critical';

/** Appends the seed's 2.6-era kernel lines while drops rise (2.6's printk rate limit: one line per 5 s). */
function oldKernelLog(file: string, watch: StatWatch): { stop: () => void } {
  let last = watch.last().drop + watch.last().early_drop;
  let logged = 0;
  const stamp = (): string => {
    const d = new Date();
    const mon = d.toLocaleString('en-US', { month: 'short', timeZone: 'UTC' });
    return `${mon} ${String(d.getUTCDate()).padStart(2, ' ')} ${d.toISOString().slice(11, 19)} dns1 kernel:`;
  };
  const tick = (): void => {
    const now = watch.last().drop + watch.last().early_drop;
    if (now > last) {
      const suppressed = now - last - 1;
      if (suppressed > 0) appendFileSync(file, `${stamp()} printk: ${suppressed} messages suppressed.\n`);
      appendFileSync(file, `${stamp()} ip_conntrack: table full, dropping packet.\n`);
      logged++;
      last = now;
    }
  };
  const first = setInterval(() => {
    // The first drop is logged at once, later ones at most every 5 s.
    if (logged === 0) tick();
  }, 100);
  const every = setInterval(tick, 5000);
  return {
    stop: () => {
      clearInterval(first);
      clearInterval(every);
    },
  };
}

describeKernel(
  'incident 5: DNS server with many tiny UDP flows (seed 004)',
  () => {
    let dns: Netns;
    let clients: Netns;
    let lab: Lab | undefined;
    let watch: StatWatch;
    let dir: string;
    let log: string;

    beforeAll(async () => {
      await acquireKernelLock();
      dns = await Netns.create('incidents-dns');
      clients = await Netns.create('incidents-dns-clients');
      await dns.enableConntrack();
      await veth(dns, 'eth0', `${DNS}/24`, clients, 'eth0', '10.53.0.2/24');
      const server = JsonProcess.spawn(dns, 'dns.mjs', ['server', DNS, 53]);
      await server.waitFor('DNS server listening', (l) => 'ready' in l);
      watch = await StatWatch.start(dns);
      dir = mkdtempSync(join(tmpdir(), 'cte-incidents-dns-log-'));
      log = join(dir, 'messages');
      writeFileSync(log, '');
      lab = await Lab.start('dns', [{ ns: dns, node: 'dns1', args: ['--kernel-log.source=file', `--kernel-log.path=${log}`] }]);
    }, LOCK_WAIT_MS);

    afterAll(async () => {
      watch?.stop();
      await lab?.stop();
      await dns?.destroy();
      await clients?.destroy();
      if (dir) rmSync(dir, { recursive: true, force: true });
      releaseKernelLock();
    });

    it('pages naming udp :53, the slab and the limit needed; raising the limit 4x resolves it and ~60% does not page', async () => {
      await withConntrackMax(LIMIT, async () => {
        const onsetFrom = Date.now();
        const load = JsonProcess.spawn<{ sent: number; answered: number; retries: number }>(clients, 'dns.mjs', ['client', DNS, 53, QPS]);
        const oldLog = oldKernelLog(log, watch);
        try {
          const firstDrop = await watch.firstRise(['drop', 'early_drop'], onsetFrom, 60_000);
          const page = await lab!.waitForPage('critical: table full of udp :53', critical, onsetFrom, BUDGET_MS + 60_000);
          const timing = recordTiming('5 DNS udp :53 table full', page.labels['alertname']!, firstDrop, page.at);
          const text = pageText(page);
          // eslint-disable-next-line no-console
          console.log(`incident 5 page:\n${text}`);
          expect(timing.ms, `page ${timing.ms} ms after the first drop (budget ${BUDGET_MS} ms):\n${text}`).toBeLessThanOrEqual(BUDGET_MS);
          // Clients retry the dropped queries.
          expect(load.last()?.retries ?? 0).toBeGreaterThan(0);

          // What the page says: the destination, the slab memory, the limit that was needed.
          expect(text).toMatch(/udp/i);
          expect(text).toContain(`${DNS}:53`);
          expect(text).toMatch(/slab/i);
          expect(text).toMatch(/\d+(\.\d+)?\s*[kMG]i?B/);
          expect(text).toMatch(/nf_conntrack_max|limit/i);
          const section = runbookSection(page.annotations['runbook_url'] ?? '');
          expect(section).toMatch(/nf_conntrack_max/);
          // The seed's log lines were counted. The first "messages suppressed" line is written with the
          // next table-full line, 5 s (the printk rate limit, not scaled) after the first: the page can
          // come before it, so wait for it up to 5 s and three scrapes more.
          const countedQuery = `sum(conntrack_kernel_log_events_total{job="${JOB}", event="table_full"}) > 0 and on () sum(conntrack_kernel_log_suppressed_total{job="${JOB}"}) > 0`;
          let counted = await lab!.query(countedQuery);
          for (const until = Date.now() + 5_000 + 3 * SCRAPE_MS; counted.length === 0 && Date.now() < until; ) {
            await sleep(SCRAPE_MS / 4);
            counted = await lab!.query(countedQuery);
          }
          expect(counted.length, 'the 2.6-era table-full and suppressed lines counted').toBe(1);

          // The fix the seed's author applied: 4x the limit. Drops stop, the alert resolves.
          const fixedAt = Date.now();
          await withConntrackMax(4 * LIMIT, async () => {
            const resolved = await lab!.waitForResolved(
              page.labels['alertname']!,
              (a) => a.labels['alertname'] === page.labels['alertname'],
              fixedAt,
              RESOLVE_MS,
            );
            recordTiming('5 DNS udp :53 resolved after raising the limit 4x', page.labels['alertname']!, fixedAt, resolved.at);
            // The table settles near 750 of 1200 (~60%): no new page for two minutes of production time.
            const quietFrom = Date.now();
            await sleep(8 * SCRAPE_MS + ROUTING_MS);
            const [fill] = await lab!.query(`conntrack_entries{job="${JOB}"} / conntrack_entries_limit{job="${JOB}"}`);
            expect(Number(fill!.value[1])).toBeLessThan(0.75);
            expect(lab!.firingSince(quietFrom).filter(critical).map((a) => a.labels['alertname'])).toEqual([]);
          });
        } finally {
          oldLog.stop();
          load.stop();
        }
      });
    }, TEST_TIMEOUT_MS);

    it('NOTRACK on udp/53 ends it as well', async () => {
      // From a quiet state (also when the test before failed half-way): nothing critical firing.
      await lab!.waitFor(
        'no critical alert firing before the NOTRACK run',
        async () => ((await lab!.alerts()).some((a) => a.labels['severity'] === 'critical') ? undefined : true),
        RESOLVE_MS + 30_000,
      );
      await withConntrackMax(LIMIT, async () => {
        const onsetFrom = Date.now();
        const load = JsonProcess.spawn(clients, 'dns.mjs', ['client', DNS, 53, QPS]);
        try {
          await watch.firstRise(['drop', 'early_drop'], onsetFrom, 60_000);
          // A new page of the same alert comes at the next group_interval at the latest.
          const page = await lab!.waitForPage('critical again', critical, onsetFrom, BUDGET_MS + GROUP_INTERVAL_MS + 60_000);
          const fixedAt = Date.now();
          await dns.exec('nft', ['-f', '-'], {
            input: `table inet incidents_dns_notrack {
  chain pre { type filter hook prerouting priority raw - 1; policy accept; udp dport 53 notrack; }
  chain out { type filter hook output priority raw - 1; policy accept; udp sport 53 notrack; }
}
`,
          });
          // No new entries for :53; the old ones expire (udp timeout 30 s, not scaled: it is the kernel's).
          const resolved = await lab!.waitForResolved(
            page.labels['alertname']!,
            (a) => a.labels['alertname'] === page.labels['alertname'],
            fixedAt,
            RESOLVE_MS + 30_000,
          );
          recordTiming('5 DNS udp :53 resolved after NOTRACK', page.labels['alertname']!, fixedAt, resolved.at);
          const before = watch.last().drop + watch.last().early_drop;
          await sleep(2 * SCRAPE_MS);
          expect(watch.last().drop + watch.last().early_drop, 'no drops once udp/53 is untracked').toBe(before);
        } finally {
          load.stop();
        }
      });
    }, TEST_TIMEOUT_MS);
  },
  ['ip', 'conntrack', 'nft', 'prometheus', 'prometheus-alertmanager'],
);
