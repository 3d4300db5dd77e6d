/**
 * Collector `events` on the real kernel: new and destroyed entries of a fresh
 * namespace, with `conntrack -L` (what was created) and `conntrack -F` in
 * that namespace (what is destroyed) as the oracle. The insert statistic is
 * read too: on modern kernels it stays 0 for these flows, which is why this
 * collector exists.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Netns, acquireKernelLock, describeKernel, releaseKernelLock, startExporterInNetns, type RunningExporter } from '../helpers/kernel.js';

const PORT = 19764;

/** UDP datagrams from one socket to `n` ports (no listener: each is a new, unreplied flow), then TCP connections. */
const FLOWS = `
const dgram = require('node:dgram'), net = require('node:net');
const [udp, tcp] = process.argv.slice(1).map(Number);
(async () => {
  const s = dgram.createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  for (let i = 0; i < udp; i++) await new Promise((r) => s.send('x', 9000 + i, '127.0.0.1', r));
  s.close();
  const server = net.createServer((c) => c.end());
  await new Promise((r) => server.listen(7400, '127.0.0.1', r));
  for (let i = 0; i < tcp; i++) {
    await new Promise((r) => { const c = net.connect(7400, '127.0.0.1', () => { c.on('close', r); c.end(); c.resume(); }); });
  }
  server.close();
})();
`;

/** The insert statistic summed over CPUs (`conntrack -S`). */
async function inserts(ns: Netns): Promise<number> {
  return [...(await ns.exec('conntrack', ['-S'])).matchAll(/\binsert=(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
}

/** Entries of one protocol in `conntrack -L`. */
function countProtocol(listing: string, protocol: string): number {
  return listing.split('\n').filter((l) => l.trim().split(/\s+/)[0] === protocol).length;
}

describeKernel('collector events on the real kernel', () => {
  let ns: Netns;
  let exporter: RunningExporter | undefined;

  beforeAll(async () => {
    await acquireKernelLock();
    ns = await Netns.create('table-events');
    await ns.enableConntrack([PORT]);
  });

  afterAll(async () => {
    await exporter?.stop();
    await ns?.destroy();
    releaseKernelLock();
  });

  async function until(done: (m: Map<string, number>) => boolean, what: string): Promise<Map<string, number>> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const m = await exporter!.scrape();
      if (done(m)) return m;
      if (Date.now() > deadline) {
        const seen = [...m].filter(([k]) => k.startsWith('conntrack_events_')).map(([k, v]) => `${k} ${v}`);
        throw new Error(`${what} not reached within 20 s:\n${seen.join('\n')}\n${exporter!.logs()}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  it('counts every entry created and destroyed in the namespace, where insert counts none', async () => {
    exporter = await startExporterInNetns(ns, ['--collector.events', '--no-collector.table'], PORT);
    await until((m) => m.get('conntrack_scrape_collector_success{collector="events"}') === 1, 'conntrack -E running');
    // conntrack -E subscribes right after it starts; give it a moment before the first flow.
    await new Promise((r) => setTimeout(r, 500));
    const insertBefore = await inserts(ns);

    const udp = 100;
    const tcp = 10;
    await ns.exec(process.execPath, ['-e', FLOWS, String(udp), String(tcp)]);
    const listing = await ns.exec('conntrack', ['-L']);
    expect(countProtocol(listing, 'udp')).toBe(udp);
    expect(countProtocol(listing, 'tcp')).toBe(tcp);

    const key = (type: string, protocol: string): string => `conntrack_events_total{type="${type}",protocol="${protocol}"}`;
    let m = await until((x) => x.get(key('new', 'udp')) === udp && x.get(key('new', 'tcp')) === tcp, 'all new events');
    expect(m.get(key('destroy', 'udp'))).toBe(0);
    expect(m.get('conntrack_events_overruns_total')).toBe(0);
    expect(m.get('conntrack_events_parse_errors_total')).toBe(0);
    expect((await inserts(ns)) - insertBefore, 'the insert statistic does not count new flows on this kernel').toBe(0);

    // Flushing our own namespace's table destroys each entry once.
    await ns.exec('conntrack', ['-F']);
    m = await until((x) => x.get(key('destroy', 'udp')) === udp && x.get(key('destroy', 'tcp')) === tcp, 'all destroy events');
    expect(m.get(key('new', 'udp'))).toBe(udp);
    expect(m.get('conntrack_scrape_collector_success{collector="events"}')).toBe(1);
  });
});
