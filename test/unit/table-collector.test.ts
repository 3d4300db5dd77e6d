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
    // Their sources draw from the namespace's ip_local_port_range (32768-60999): none is source-NATed.
    expect([...m].filter(([k]) => k.startsWith('conntrack_table_destination_source_port_range_size'))).toEqual([
      ['conntrack_table_destination_source_port_range_size{protocol="tcp",destination="10.0.0.9",port="6379"}', 28232],
      ['conntrack_table_destination_source_port_range_size{protocol="tcp",destination="10.0.0.9",port="8080"}', 28232],
      ['conntrack_table_destination_source_port_range_size{protocol="udp",destination="10.0.0.1",port="53"}', 28232],
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

  it('gives source-NATed sources the SNAT range, and local ones the local range, leaving out old TIME_WAIT', async () => {
    const procfs = mkdtempSync(join(tmpdir(), 'table-procfs-'));
    const line = (src: string, sport: number, dst: string, replyDst: string, state = 'ESTABLISHED', timeout = 431999): string =>
      `ipv4     2 tcp      6 ${timeout} ${state} src=${src} dst=${dst} sport=${sport} dport=443 src=${dst} dst=${replyDst} sport=443 dport=${sport} [ASSURED] mark=0 zone=0 use=2\n`;
    try {
      mkdirSync(join(procfs, 'net'));
      mkdirSync(join(procfs, 'sys', 'net', 'netfilter'), { recursive: true });
      mkdirSync(join(procfs, 'sys', 'net', 'ipv4'), { recursive: true });
      const lines = [
        // Three pods masqueraded to the node's 10.0.0.1 toward 10.9.0.1:443.
        ...[1, 2, 3].map((i) => line(`172.16.0.${i}`, 40000, '10.9.0.1', '10.0.0.1')),
        // A local client toward 10.9.0.2:443: two live entries, one young and two old TIME_WAIT.
        line('10.0.0.1', 50000, '10.9.0.2', '10.0.0.1'),
        line('10.0.0.1', 50001, '10.9.0.2', '10.0.0.1'),
        line('10.0.0.1', 50002, '10.9.0.2', '10.0.0.1', 'TIME_WAIT', 100),
        line('10.0.0.1', 50003, '10.9.0.2', '10.0.0.1', 'TIME_WAIT', 20),
        line('10.0.0.1', 50004, '10.9.0.2', '10.0.0.1', 'TIME_WAIT', 59),
      ];
      writeFileSync(join(procfs, 'net', 'nf_conntrack'), lines.join(''));
      writeFileSync(join(procfs, 'sys', 'net', 'netfilter', 'nf_conntrack_count'), `${lines.length}\n`);
      writeFileSync(join(procfs, 'sys', 'net', 'netfilter', 'nf_conntrack_tcp_timeout_time_wait'), '120\n');
      writeFileSync(join(procfs, 'sys', 'net', 'ipv4', 'ip_local_port_range'), '41000\t41019\n');
      const run = async (extra: string[]): Promise<Map<string, number>> => {
        app = await buildTestApp({ collectors: [tableCollector], args: [`--path.procfs=${procfs}`, '--collector.table.source=procfs', ...extra] });
        const m = await afterFirstScan(app);
        await app.close();
        app = undefined;
        return m;
      };
      const nat = '{protocol="tcp",destination="10.9.0.1",port="443"}';
      const local = '{protocol="tcp",destination="10.9.0.2",port="443"}';
      let m = await run([]);
      expect(m.get(`conntrack_table_destination_source_ports${nat}`)).toBe(3);
      expect(m.get(`conntrack_table_destination_source_port_range_size${nat}`)).toBe(64512);
      expect(m.get(`conntrack_table_destination_source_ports${local}`)).toBe(3);
      expect(m.get(`conntrack_table_destination_source_port_range_size${local}`)).toBe(20);
      expect(m.get(`conntrack_table_destination_state_entries{protocol="tcp",destination="10.9.0.2",port="443",state="TIME_WAIT"}`)).toBe(3);
      m = await run(['--collector.table.snat-port-range=20000-20999']);
      expect(m.get(`conntrack_table_destination_source_port_range_size${nat}`)).toBe(1000);
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
    for (const bad of ['1024', '0-100', '2000-1000', '1024-65536', 'a-b']) {
      await expect(
        buildTestApp({ collectors: [tableCollector], args: [`--collector.table.snat-port-range=${bad}`] }),
      ).rejects.toThrow(/collector.table.snat-port-range/);
    }
  });
});
