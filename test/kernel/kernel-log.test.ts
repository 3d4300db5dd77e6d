/**
 * The kernel_log collector against the real kernel: a conntrack table filled
 * in a namespace we create must show up as
 * conntrack_kernel_log_events_total{event="table_full",netns="<inode>"} from
 * /dev/kmsg within five seconds (6.17+ kernels name the namespace).
 */
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { COLLECTORS } from '../../src/collectors/index.js';
import { buildTestApp, samples } from '../helpers/app.js';
import { acquireKernelLock, describeKernel, Netns, releaseKernelLock, withConntrackMax } from '../helpers/kernel.js';

/** Entries that fill the namespace's table; ASSURED so that early_drop cannot evict them. */
const FILL = 64;

/** Sends one UDP datagram to each of `count` ports on 127.0.0.1: `count` new flows. */
const SENDER = `
const s = require('node:dgram').createSocket('udp4');
const [base, count] = process.argv.slice(1).map(Number);
let left = count;
for (let i = 0; i < count; i++) s.send('x', base + i, '127.0.0.1', () => { if (--left === 0) s.close(); });
`;

function kernelVersion(): [number, number] {
  const [major, minor] = release().split('.').map(Number);
  return [major ?? 0, minor ?? 0];
}

describeKernel('kernel_log: table full from /dev/kmsg on a real kernel', () => {
  let ns: Netns | undefined;
  let dir = '';

  beforeAll(async () => {
    await acquireKernelLock();
    ns = await Netns.create('klog');
    await ns.enableConntrack();
    dir = mkdtempSync(join(tmpdir(), 'kernel-log-kernel-'));
    const commands = Array.from(
      { length: FILL },
      (_, i) => `-I -p udp -s 10.77.0.1 -d 10.77.0.2 --sport ${10000 + i} --dport 53 -t 600 -u ASSURED,SEEN_REPLY`,
    );
    writeFileSync(join(dir, 'fill.ct'), commands.join('\n') + '\n');
    await ns.exec('conntrack', ['-R', join(dir, 'fill.ct')]);
  });

  afterAll(async () => {
    await ns?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
    releaseKernelLock();
  });

  it('counts table_full with the namespace inode within five seconds', async () => {
    const netns = ns as Netns;
    expect(await netns.conntrackCount()).toBe(FILL);
    const app = await buildTestApp({
      collectors: COLLECTORS.filter((c) => c.name === 'kernel_log'),
      args: ['--kernel-log.source=kmsg'],
    });
    try {
      const [major, minor] = kernelVersion();
      const label = major > 6 || (major === 6 && minor >= 17) ? String(netns.inode()) : '';
      const series = `conntrack_kernel_log_events_total{event="table_full",netns="${label}"}`;
      const read = async (): Promise<Map<string, number>> => samples((await app.inject({ method: 'GET', url: '/metrics' })).body);
      const before = (await read()).get(series) ?? 0;
      expect((await read()).get('conntrack_scrape_collector_success{collector="kernel_log"}')).toBe(1);

      // A limit below the namespace's count makes every new flow there fail to allocate.
      const started = Date.now();
      const seen = await withConntrackMax(FILL - 8, async () => {
        const deadline = started + 5000;
        let port = 20000;
        for (;;) {
          // net_ratelimit allows 10 messages per 5 s machine-wide: keep offering new flows.
          await netns.exec(process.execPath, ['-e', SENDER, String(port), '20']);
          port += 20;
          const value = (await read()).get(series) ?? 0;
          if (value > before || Date.now() > deadline) return value;
          await new Promise((r) => setTimeout(r, 200));
        }
      });
      expect(seen).toBeGreaterThan(before);
      expect(Date.now() - started).toBeLessThan(6000);
      const after = await read();
      expect(after.get('conntrack_kernel_log_lines_total{source="kmsg"}')).toBeGreaterThan(0);
      expect(after.get('conntrack_scrape_collector_success{collector="kernel_log"}')).toBe(1);
    } finally {
      await app.close();
    }
  });
});
