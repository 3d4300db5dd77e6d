/**
 * The core collectors against the real kernel, with conntrack-tools (netlink)
 * as the independent oracle. Everything happens in network namespaces made
 * here; the exporter runs inside them, as it would on a node.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  Netns,
  TRAFFIC,
  acquireKernelLock,
  describeKernel,
  releaseKernelLock,
  startExporterInNetns,
  withConntrackMax,
  type RunningExporter,
} from '../helpers/kernel.js';

const PORT = 19746;

describeKernel('core collectors on the real kernel', () => {
  let ns: Netns;
  let exporter: RunningExporter;

  beforeAll(async () => {
    await acquireKernelLock();
    ns = await Netns.create('core');
    await ns.enableConntrack([PORT]);
    exporter = await startExporterInNetns(ns, [], PORT);
  });

  afterAll(async () => {
    await exporter?.stop();
    await ns?.destroy();
    releaseKernelLock();
  });

  it('conntrack_entries equals conntrack -C with real TCP and UDP flows', async () => {
    await ns.holdTcp(25, 7000);
    await ns.exec(process.execPath, [TRAFFIC, 'udp', '40', '8000']);
    const before = await ns.conntrackCount();
    const metrics = await exporter.scrape();
    const after = await ns.conntrackCount();
    expect(before).toBeGreaterThanOrEqual(25 + 40);
    expect(after).toBe(before); // the flows are quiet: nothing appears or expires in between
    expect(metrics.get('conntrack_entries')).toBe(before);
    expect(metrics.get('conntrack_scrape_collector_success{collector="conntrack"}')).toBe(1);
    expect(metrics.get('conntrack_entries_limit')).toBeGreaterThan(0);
    expect(metrics.get('conntrack_buckets')).toBeGreaterThan(0);
  });

  it('summed stat counters equal the sums of conntrack -S', async () => {
    // Entries inserted over netlink bump the kernel's insert counter (packet-path inserts no longer do).
    for (let i = 0; i < 3; i++) {
      await ns.exec('conntrack', ['-I', '-p', 'udp', '-s', '10.8.0.1', '-d', '10.8.1.1', '--sport', String(3000 + i), '--dport', '53', '-t', '600']);
    }
    const oracle = await ns.statSums();
    const metrics = await exporter.scrape();
    expect(metrics.get('conntrack_scrape_collector_success{collector="stat"}')).toBe(1);
    let compared = 0;
    for (const [name, value] of oracle) {
      expect(metrics.get(`conntrack_stat_${name}_total`), `conntrack_stat_${name}_total`).toBe(value);
      compared++;
    }
    expect(compared).toBeGreaterThanOrEqual(8);
    // Not a comparison of zeros only.
    expect(metrics.get('conntrack_stat_insert_total')).toBeGreaterThanOrEqual(3);
  });

  it('conntrack_stat_drop_total rises by exactly what conntrack -S says when the table is full', async () => {
    // A namespace of its own holding only assured, long-lived entries: early_drop finds nothing to evict
    // and nothing expires, so every new flow is refused.
    const full = await Netns.create('full');
    try {
      await full.enableConntrack([PORT]);
      const fullExporter = await startExporterInNetns(full, [], PORT);
      await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          full.exec('conntrack', [
            '-I', '-p', 'tcp', '-s', '10.9.0.1', '-d', '10.9.1.1', '--sport', String(20000 + i), '--dport', '443',
            '--state', 'ESTABLISHED', '-t', '600', '-u', 'ASSURED,SEEN_REPLY',
          ]),
        ),
      );
      const dropBefore = (await full.statSums()).get('drop') ?? 0;
      const metricBefore = (await fullExporter.scrape()).get('conntrack_stat_drop_total') ?? 0;
      expect(metricBefore).toBe(dropBefore);

      const count = await full.conntrackCount();
      expect(count).toBe(30);
      await withConntrackMax(count, async () => {
        // Each datagram needs a new entry; none can be allocated.
        await full.exec(process.execPath, [TRAFFIC, 'udp', '20', '9000']);
      });

      const dropAfter = (await full.statSums()).get('drop') ?? 0;
      const metrics = await fullExporter.scrape();
      expect(dropAfter - dropBefore).toBe(20);
      expect((metrics.get('conntrack_stat_drop_total') ?? 0) - metricBefore).toBe(dropAfter - dropBefore);
      expect(metrics.get('conntrack_entries')).toBe(count);
      await fullExporter.stop();
    } finally {
      await full.destroy();
    }
  });
});
