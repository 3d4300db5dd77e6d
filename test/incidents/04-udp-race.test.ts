/**
 * Incident 4 (seed 003): the UDP insert race behind DNAT (Kubernetes DNS 5 s timeouts).
 *
 * A pod (namespace `pod`, tracked) looks names up through a DNATed service
 * address, 10.96.0.10:53, balanced by nftables over two backends (namespace
 * `backends`, 10.244.0.2 and 10.244.0.3), sending the A and AAAA queries from
 * one socket at the same time on two threads (lib/race.py, as the kernel's
 * conntrack_clash selftest does). The exporter runs on the node (namespace
 * `node`, --collector.netns) and sees the pod's statistics through the pod's
 * processes.
 *
 * On this kernel (6.18; since 5.6 for DNAT to different backends) the clash
 * is resolved: clash_resolve rises in the pod's namespace, no packet is lost,
 * and no page may fire. The variant whose clashes cannot be resolved, two
 * identical TCP SYNs at once, raises insert_failed and drop; it must page
 * within 2 scrape intervals, naming the namespace (its inode; the pod's uid
 * where the namespace belongs to a pod, which the lab's processes do not).
 *
 * Not reproduced: the pre-5.6 behaviour, where the DNAT race itself dropped
 * the AAAA query; the kernel here resolves it. The TCP variant stands in for
 * an unresolvable clash.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Netns, acquireKernelLock, describeKernel, releaseKernelLock } from '../helpers/kernel.js';
import { JOB, JsonProcess, Lab, ROUTING_MS, SCRAPE_MS, StatWatch, pageText, recordTiming, sleep, veth, LOCK_WAIT_MS, TEST_TIMEOUT_MS } from './harness.js';

const SERVICE = '10.96.0.10';
const BACKENDS = ['10.244.0.2', '10.244.0.3'];
const BUDGET_MS = 2 * SCRAPE_MS + ROUTING_MS + 1000;

describeKernel(
  'incident 4: UDP insert race behind DNAT (seed 003)',
  () => {
    let node: Netns;
    let pod: Netns;
    let backends: Netns;
    let lab: Lab | undefined;
    let watch: StatWatch;
    let inode: string;

    beforeAll(async () => {
      await acquireKernelLock();
      node = await Netns.create('incidents-race-node');
      pod = await Netns.create('incidents-race-pod');
      backends = await Netns.create('incidents-race-dns');
      inode = String(pod.inode());
      await veth(pod, 'eth0', '10.244.0.10/24', backends, 'eth0', `${BACKENDS[0]}/24`);
      await backends.exec('ip', ['addr', 'add', `${BACKENDS[1]}/24`, 'dev', 'eth0']);
      await pod.exec('ip', ['route', 'add', '10.96.0.0/16', 'dev', 'eth0']);
      // kube-proxy's nftables mode in miniature: the service address DNATed to the backends in turn.
      await pod.exec('nft', ['-f', '-'], {
        input: `table ip kube {
  chain out {
    type nat hook output priority -100; policy accept;
    ip daddr ${SERVICE} udp dport 53 dnat to numgen inc mod 2 map { 0 : ${BACKENDS[0]}, 1 : ${BACKENDS[1]} }
  }
  chain track { type filter hook output priority filter; policy accept; ct state new counter; }
}
`,
      });
      for (const b of BACKENDS) {
        const dns = JsonProcess.spawn(backends, 'dns.mjs', ['server', b, 53]);
        await dns.waitFor(`DNS backend ${b}`, (l) => 'ready' in l);
      }
      watch = await StatWatch.start(pod);
      lab = await Lab.start('race', [{ ns: node, node: 'node-1', args: ['--collector.netns'] }]);
    }, LOCK_WAIT_MS);

    afterAll(async () => {
      watch?.stop();
      await lab?.stop();
      for (const ns of [node, pod, backends]) await ns?.destroy();
      releaseKernelLock();
    });

    it('resolved clashes (A/AAAA through DNAT): clash_resolve rises in the pod, nothing pages', async () => {
      const from = Date.now();
      const race = JsonProcess.spawn<{ rounds: number; errors: number }>(pod, 'race.py', ['udp', SERVICE, 53]);
      try {
        await watch.firstRise(['clash_resolve'], from, 30_000);
        // Two minutes of production time with the race going on.
        await sleep(8 * SCRAPE_MS + ROUTING_MS);
        const s = watch.last();
        // eslint-disable-next-line no-console
        console.log(`incident 4, resolved clashes: ${JSON.stringify(s)} after ${JSON.stringify(race.last())}`);
        expect(s.clash_resolve).toBeGreaterThan(0);
        expect(s.insert_failed).toBe(0);
        expect(s.drop).toBe(0);
        // The per-namespace counter shows it, as information.
        const seen = await lab!.query(`conntrack_netns_stat_clash_resolve_total{job="${JOB}", netns="${inode}"} > 0`);
        expect(seen.length, 'conntrack_netns_stat_clash_resolve_total for the pod').toBe(1);
        // (Pages about other namespaces on this machine, which the node's exporter also sees, are not this story's.)
        const ours = lab!.firingSince(from).filter((a) => a.labels['netns'] === undefined || a.labels['netns'] === inode);
        expect(ours.map((a) => a.labels['alertname']), 'no page for resolved clashes').toEqual([]);
      } finally {
        race.stop();
      }
    }, TEST_TIMEOUT_MS);

    it('unresolved clashes (identical TCP SYNs): insert_failed and drop page within 2 scrapes, naming the namespace', async () => {
      const from = Date.now();
      const race = JsonProcess.spawn<{ rounds: number; errors: number }>(pod, 'race.py', ['tcp', '10.244.0.10', BACKENDS[0]!, 80]);
      try {
        const first = await watch.firstRise(['insert_failed'], from, 60_000);
        const page = await lab!.waitForPage(
          'insert failures with drops in the pod',
          (a) => pageText(a).includes(inode) && /insert|drop/i.test(pageText(a)),
          from,
          BUDGET_MS + 60_000,
        );
        const timing = recordTiming('4 unresolved clashes (TCP SYN race) in a pod', page.labels['alertname']!, first, page.at);
        const text = pageText(page);
        // eslint-disable-next-line no-console
        console.log(`incident 4 page:\n${text}\nstats: ${JSON.stringify(watch.last())}`);
        expect(timing.ms, `page ${timing.ms} ms after the first insert failure (budget ${BUDGET_MS} ms):\n${text}`).toBeLessThanOrEqual(BUDGET_MS);
        expect(watch.last().drop).toBeGreaterThan(0);
        expect(text).toMatch(/insert_failed|insert fail/i);
      } finally {
        race.stop();
      }
    }, TEST_TIMEOUT_MS);
  },
  ['ip', 'conntrack', 'nft', 'prometheus', 'prometheus-alertmanager', 'python3'],
);
