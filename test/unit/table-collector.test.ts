import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { tableCollector } from '../../src/collectors/table.js';
import { buildTestApp, samples } from '../helpers/app.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'table');
// Its nf_conntrack_count is small, so the table is read in process (vitest cannot start the .ts reader thread).
const PROC_6_18 = join(FIXTURES, 'proc-6.18');

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function metrics(a: FastifyInstance): Promise<Map<string, number>> {
  return samples((await a.inject({ url: '/metrics' })).body);
}

/** Scrapes until the first table scan has been published (it runs in the background). */
async function afterFirstScan(a: FastifyInstance): Promise<Map<string, number>> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const m = await metrics(a);
    if (m.has('conntrack_table_scanned_entries')) return m;
    if (Date.now() > deadline) throw new Error('no table scan within 5 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('collector table', () => {
  it('publishes the last scan of the fixture table', async () => {
    app = await buildTestApp({
      collectors: [tableCollector],
      args: [`--path.procfs=${PROC_6_18}`, '--collector.table.top-destinations=3'],
    });
    const m = await afterFirstScan(app);
    expect(m.get('conntrack_scrape_collector_success{collector="table"}')).toBe(1);
    expect(m.get('conntrack_table_scanned_entries')).toBe(29);
    expect(m.get('conntrack_table_parse_errors_total')).toBe(0);
    expect(m.get('conntrack_table_entries{family="ipv4",protocol="tcp",state="TIME_WAIT"}')).toBe(4);
    expect(m.get('conntrack_table_entries{family="ipv4",protocol="tcp",state="none"}')).toBe(2);
    expect(m.get('conntrack_table_entries{family="ipv6",protocol="tcp",state="ESTABLISHED"}')).toBe(2);
    expect(m.get('conntrack_table_entries{family="ipv4",protocol="50",state="none"}')).toBe(1);
    expect(m.get('conntrack_table_flag_entries{family="ipv4",protocol="udp",flag="unreplied"}')).toBe(2);
    expect(m.get('conntrack_table_flag_entries{family="ipv4",protocol="udp",flag="hw_offload"}')).toBe(0);
    const top = [...m].filter(
      ([k]) => k.startsWith('conntrack_table_destination_entries') || k.startsWith('conntrack_table_destination_source_ports'),
    );
    expect(top).toEqual([
      ['conntrack_table_destination_entries{protocol="tcp",destination="10.0.0.9",port="6379"}', 4],
      ['conntrack_table_destination_entries{protocol="tcp",destination="10.0.0.9",port="8080"}', 4],
      ['conntrack_table_destination_entries{protocol="udp",destination="10.0.0.1",port="53"}', 4],
      ['conntrack_table_destination_source_ports{protocol="tcp",destination="10.0.0.9",port="6379"}', 4],
      ['conntrack_table_destination_source_ports{protocol="tcp",destination="10.0.0.9",port="8080"}', 4],
      ['conntrack_table_destination_source_ports{protocol="udp",destination="10.0.0.1",port="53"}', 3],
    ]);
    // Each top destination by state, adding up to its entries.
    expect([...m].filter(([k]) => k.startsWith('conntrack_table_destination_state_entries'))).toEqual([
      ['conntrack_table_destination_state_entries{protocol="tcp",destination="10.0.0.9",port="6379",state="TIME_WAIT"}', 4],
      ['conntrack_table_destination_state_entries{protocol="tcp",destination="10.0.0.9",port="8080",state="CLOSE"}', 1],
      ['conntrack_table_destination_state_entries{protocol="tcp",destination="10.0.0.9",port="8080",state="CLOSE_WAIT"}', 1],
      ['conntrack_table_destination_state_entries{protocol="tcp",destination="10.0.0.9",port="8080",state="FIN_WAIT"}', 1],
      ['conntrack_table_destination_state_entries{protocol="tcp",destination="10.0.0.9",port="8080",state="LAST_ACK"}', 1],
      ['conntrack_table_destination_state_entries{protocol="udp",destination="10.0.0.1",port="53",state="none"}', 4],
    ]);
    // Ports: the default top 10, both families together (tcp/22 has one IPv4 and two IPv6 entries).
    const ports = [...m].filter(([k]) => k.startsWith('conntrack_table_destination_port_entries'));
    expect(ports.slice(0, 4)).toEqual([
      ['conntrack_table_destination_port_entries{protocol="tcp",port="6379"}', 4],
      ['conntrack_table_destination_port_entries{protocol="tcp",port="8080"}', 4],
      ['conntrack_table_destination_port_entries{protocol="udp",port="53"}', 4],
      ['conntrack_table_destination_port_entries{protocol="tcp",port="22"}', 3],
    ]);
    expect(ports).toHaveLength(10);
    expect(m.get('conntrack_table_scan_duration_seconds')).toBeGreaterThan(0);
    expect(Math.abs(m.get('conntrack_table_scan_timestamp_seconds')! - Date.now() / 1000)).toBeLessThan(10);
  });

  it('reports no destinations with --collector.table.top-destinations=0', async () => {
    app = await buildTestApp({
      collectors: [tableCollector],
      args: [`--path.procfs=${PROC_6_18}`, '--collector.table.top-destinations=0'],
    });
    const m = await afterFirstScan(app);
    expect([...m.keys()].filter((k) => k.includes('destination='))).toEqual([]);
    expect([...m.keys()].filter((k) => k.startsWith('conntrack_table_destination_port_entries'))).toHaveLength(10);
    expect(m.get('conntrack_table_entries{family="ipv4",protocol="udp",state="none"}')).toBe(5);
  });

  it('fails, with no table series, where neither the proc file nor conntrack exists', async () => {
    app = await buildTestApp({
      collectors: [tableCollector],
      args: [`--path.procfs=${join(FIXTURES, 'absent-procfs')}`, `--conntrack.path=${join(FIXTURES, 'no-such-tool')}`],
    });
    // The failed scan is recorded within milliseconds; scrape until the collector reports it.
    let m = await metrics(app);
    for (let i = 0; i < 100 && m.get('conntrack_scrape_collector_success{collector="table"}') !== 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      m = await metrics(app);
    }
    expect(m.get('conntrack_scrape_collector_success{collector="table"}')).toBe(0);
    expect([...m.keys()].filter((k) => k.startsWith('conntrack_table_') && !k.startsWith('conntrack_table_parse_errors'))).toEqual([]);
  });

  it('counts malformed lines in conntrack_table_parse_errors_total and keeps the good ones', async () => {
    const procfs = mkdtempSync(join(tmpdir(), 'table-procfs-'));
    try {
      mkdirSync(join(procfs, 'net'));
      mkdirSync(join(procfs, 'sys', 'net', 'netfilter'), { recursive: true });
      copyFileSync(join(FIXTURES, 'malformed.txt'), join(procfs, 'net', 'nf_conntrack'));
      writeFileSync(join(procfs, 'sys', 'net', 'netfilter', 'nf_conntrack_count'), '2\n');
      app = await buildTestApp({ collectors: [tableCollector], args: [`--path.procfs=${procfs}`, '--collector.table.source=procfs'] });
      const m = await afterFirstScan(app);
      expect(m.get('conntrack_table_parse_errors_total')).toBe(9);
      expect(m.get('conntrack_table_scanned_entries')).toBe(11);
      expect(m.get('conntrack_table_entries{family="ipv4",protocol="udp",state="none"}')).toBe(2);
      expect(m.get('conntrack_scrape_collector_success{collector="table"}')).toBe(1);
    } finally {
      await app?.close();
      app = undefined;
      rmSync(procfs, { recursive: true, force: true });
    }
  });

  it('rejects bad flag values', async () => {
    await expect(buildTestApp({ collectors: [tableCollector], args: ['--collector.table.interval=0s'] })).rejects.toThrow(
      /collector.table.interval/,
    );
    await expect(buildTestApp({ collectors: [tableCollector], args: ['--collector.table.source=ebpf'] })).rejects.toThrow(
      /collector.table.source/,
    );
    await expect(buildTestApp({ collectors: [tableCollector], args: ['--collector.table.top-ports=1001'] })).rejects.toThrow(
      /collector.table.top-ports.*at most 1000/,
    );
  });
});
