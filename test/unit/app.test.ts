import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildWebConfig } from '../../src/config/web-config.js';
import type { CollectorDefinition } from '../../src/collectors/collector.js';
import { conntrackCollector } from '../../src/collectors/conntrack.js';
import { statCollector } from '../../src/collectors/stat.js';
import type { CommandRunner } from '../../src/util/command.js';
import { buildTestApp, samples } from '../helpers/app.js';

const FIXTURES = new URL('../fixtures/', import.meta.url).pathname;
const proc = (gen: string): string => join(FIXTURES, 'proc', gen);

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function scrape(a: FastifyInstance, headers: Record<string, string> = {}): Promise<{ status: number; body: string; type: string }> {
  const res = await a.inject({ url: '/metrics', headers });
  return { status: res.statusCode, body: res.body, type: String(res.headers['content-type']) };
}

/** Only the conntrack and stat collectors: this file tests the core. */
function onlyCore(): { collectors: CollectorDefinition[] } {
  return { collectors: [conntrackCollector, statCollector] };
}

describe('core collectors over fixture trees', () => {
  it('serves size gauges and summed stat counters from a 6.18 tree', async () => {
    app = await buildTestApp({ args: [`--path.procfs=${proc('6.18')}`], ...onlyCore() });
    const { status, body, type } = await scrape(app);
    expect(status).toBe(200);
    expect(type).toContain('text/plain; version=0.0.4');
    const s = samples(body);
    expect(s.get('conntrack_entries')).toBe(14);
    expect(s.get('conntrack_entries_limit')).toBe(262144);
    expect(s.get('conntrack_buckets')).toBe(262144);
    expect(s.get('conntrack_expect_entries_limit')).toBe(4096);
    expect(s.get('conntrack_stat_clash_resolve_total')).toBe(0x79d + 0xfffffff0);
    expect(s.get('conntrack_stat_drop_total')).toBe(0xb56);
    expect(s.has('conntrack_stat_searched_total')).toBe(false);
    expect(s.has('conntrack_stat_entries_total')).toBe(false);
    expect(s.get('conntrack_scrape_collector_success{collector="conntrack"}')).toBe(1);
    expect(s.get('conntrack_scrape_collector_success{collector="stat"}')).toBe(1);
    expect(body).toMatch(/# TYPE conntrack_stat_drop_total counter/);
    expect(body).toMatch(/# HELP conntrack_entries .*nf_conntrack_count/);
  });

  it('reads the ip_conntrack sysctls of old kernels and the 16-column stat file', async () => {
    app = await buildTestApp({ args: [`--path.procfs=${proc('2.6.32')}`], ...onlyCore() });
    const s = samples((await scrape(app)).body);
    expect(s.get('conntrack_entries')).toBe(1234);
    expect(s.get('conntrack_entries_limit')).toBe(65536);
    expect(s.has('conntrack_expect_entries_limit')).toBe(false);
    expect(s.has('conntrack_stat_searched_total')).toBe(true);
    expect(s.has('conntrack_stat_search_restart_total')).toBe(false);
  });

  it('keeps a cpu label with --collector.stat.per-cpu', async () => {
    app = await buildTestApp({ args: [`--path.procfs=${proc('6.18-64cpu')}`, '--collector.stat.per-cpu'], ...onlyCore() });
    const s = samples((await scrape(app)).body);
    const drops = [...s.keys()].filter((k) => k.startsWith('conntrack_stat_drop_total{'));
    expect(drops).toHaveLength(64);
    expect(s.has('conntrack_stat_drop_total{cpu="63"}')).toBe(true);
  });

  it('falls back to conntrack -S when the proc file is absent', async () => {
    const calls: string[] = [];
    const run: CommandRunner = async (file, args) => {
      calls.push([file, ...args].join(' '));
      const name = args.includes('expect') ? 'stats-expect-6.18.txt' : 'stats-6.18.txt';
      return { stdout: readFileSync(join(FIXTURES, 'conntrack-tool', name), 'utf8'), stderr: '', code: 0, signal: null };
    };
    app = await buildTestApp({ args: [`--path.procfs=${proc('6.18-noprocfs')}`, '--conntrack.path=/opt/ct'], run, ...onlyCore() });
    const s = samples((await scrape(app)).body);
    expect(calls).toEqual(['/opt/ct -S', '/opt/ct -S expect']);
    expect(s.get('conntrack_stat_drop_total')).toBe(9);
    expect(s.get('conntrack_stat_icmp_error_total')).toBe(2);
    expect(s.get('conntrack_stat_expect_create_total')).toBe(3);
    expect(s.get('conntrack_entries')).toBe(9);
    expect(s.get('conntrack_scrape_collector_success{collector="stat"}')).toBe(1);
  });

  it('reports stat success 0, and still serves the rest, with neither the file nor conntrack-tools', async () => {
    app = await buildTestApp({ args: [`--path.procfs=${proc('6.18-noprocfs')}`], ...onlyCore() });
    const { status, body } = await scrape(app);
    expect(status).toBe(200);
    const s = samples(body);
    expect(s.get('conntrack_scrape_collector_success{collector="stat"}')).toBe(0);
    expect(s.get('conntrack_scrape_collector_success{collector="conntrack"}')).toBe(1);
    expect(s.get('conntrack_entries')).toBe(9);
  });

  it('makes series disappear (not read 0) when nf_conntrack is not loaded', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'cte-empty-'));
    try {
      app = await buildTestApp({ args: [`--path.procfs=${empty}`], ...onlyCore() });
      const { status, body } = await scrape(app);
      expect(status).toBe(200);
      const s = samples(body);
      expect(s.has('conntrack_entries_limit')).toBe(false);
      expect(s.has('conntrack_entries')).toBe(false);
      expect(s.get('conntrack_scrape_collector_success{collector="conntrack"}')).toBe(0);
      expect(s.get('conntrack_scrape_collector_success{collector="stat"}')).toBe(0);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('survives garbage and truncated stat files, then recovers', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cte-bad-'));
    try {
      cpSync(proc('6.18'), dir, { recursive: true });
      const stat = join(dir, 'net/stat/nf_conntrack');
      writeFileSync(stat, 'entries  clashres found\n0000000e  00000001\n');
      app = await buildTestApp({ args: [`--path.procfs=${dir}`], ...onlyCore() });
      let s = samples((await scrape(app)).body);
      expect(s.get('conntrack_scrape_collector_success{collector="stat"}')).toBe(0);
      expect(s.get('conntrack_entries')).toBe(14);
      writeFileSync(stat, '\x00\xff\xfe garbage \n\n');
      s = samples((await scrape(app)).body);
      expect(s.get('conntrack_scrape_collector_success{collector="stat"}')).toBe(0);
      writeFileSync(stat, 'entries  found drop\n0000000e  00000001 00000002\n');
      s = samples((await scrape(app)).body);
      expect(s.get('conntrack_scrape_collector_success{collector="stat"}')).toBe(1);
      expect(s.get('conntrack_stat_drop_total')).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('drops the gauges of a collector whose source breaks, instead of serving its last values', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cte-stale-'));
    try {
      cpSync(proc('6.18'), dir, { recursive: true });
      app = await buildTestApp({ args: [`--path.procfs=${dir}`], ...onlyCore() });
      expect(samples((await scrape(app)).body).get('conntrack_entries')).toBe(14);
      writeFileSync(join(dir, 'sys/net/netfilter/nf_conntrack_count'), 'garbage\n');
      let s = samples((await scrape(app)).body);
      expect(s.get('conntrack_scrape_collector_success{collector="conntrack"}')).toBe(0);
      expect(s.has('conntrack_entries')).toBe(false);
      expect(s.has('conntrack_entries_limit')).toBe(false);
      writeFileSync(join(dir, 'sys/net/netfilter/nf_conntrack_count'), '15\n');
      s = samples((await scrape(app)).body);
      expect(s.get('conntrack_scrape_collector_success{collector="conntrack"}')).toBe(1);
      expect(s.get('conntrack_entries')).toBe(15);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('feeds counters by the change between scrapes, across a u32 wrap of one CPU', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cte-wrap-'));
    try {
      cpSync(proc('6.18'), dir, { recursive: true });
      const stat = join(dir, 'net/stat/nf_conntrack');
      const write = (drop0: number, drop1: number): void =>
        writeFileSync(
          stat,
          'entries  found drop\n' +
            `0000000e  00000000 ${drop0.toString(16).padStart(8, '0')}\n` +
            `0000000e  00000000 ${drop1.toString(16).padStart(8, '0')}\n`,
        );
      write(10, 0xfffffffe);
      app = await buildTestApp({ args: [`--path.procfs=${dir}`], ...onlyCore() });
      expect(samples((await scrape(app)).body).get('conntrack_stat_drop_total')).toBe(10 + 0xfffffffe);
      write(15, 3); // CPU 0: +5, CPU 1 wrapped: +5
      expect(samples((await scrape(app)).body).get('conntrack_stat_drop_total')).toBe(10 + 0xfffffffe + 10);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('HTTP surface', () => {
  it('serves OpenMetrics when asked', async () => {
    app = await buildTestApp({ args: [`--path.procfs=${proc('6.18')}`], ...onlyCore() });
    const { body, type } = await scrape(app, { accept: 'application/openmetrics-text; version=1.0.0,text/plain;q=0.5' });
    expect(type).toContain('application/openmetrics-text');
    expect(body.endsWith('# EOF\n')).toBe(true);
    expect(body).toContain('# TYPE conntrack_stat_drop counter');
    expect(body).toContain('conntrack_stat_drop_total 2902');
    // The text format afterwards is unaffected.
    expect((await scrape(app)).body).toContain('# TYPE conntrack_stat_drop_total counter');
  });

  it('has a landing page, a health check and a configurable metrics path', async () => {
    app = await buildTestApp({ args: [`--path.procfs=${proc('6.18')}`, '--web.telemetry-path=/m'], ...onlyCore() });
    const landing = await app.inject({ url: '/' });
    expect(landing.statusCode).toBe(200);
    expect(landing.body).toContain('href="/m"');
    expect((await app.inject({ url: '/healthz' })).body).toBe('ok\n');
    expect((await app.inject({ url: '/m' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/metrics' })).statusCode).toBe(404);
  });

  it('gzips when the scraper accepts it', async () => {
    app = await buildTestApp({ args: [`--path.procfs=${proc('6.18')}`], ...onlyCore() });
    const res = await app.inject({ url: '/metrics', headers: { 'accept-encoding': 'gzip' } });
    expect(res.headers['content-encoding']).toBe('gzip');
    const { gunzipSync } = await import('node:zlib');
    expect(gunzipSync(res.rawPayload).toString()).toContain('conntrack_entries 14');
  });

  it('requires basic auth when configured, except for /healthz', async () => {
    const hash = bcrypt.hashSync('s3cret', 4);
    const webConfig = await buildWebConfig({ basic_auth_users: { prom: hash } }, '/etc/web.yml');
    app = await buildTestApp({ args: [`--path.procfs=${proc('6.18')}`], webConfig, ...onlyCore() });
    const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
    expect((await app.inject({ url: '/metrics' })).statusCode).toBe(401);
    expect((await app.inject({ url: '/metrics', headers: { authorization: basic('prom', 'wrong') } })).statusCode).toBe(401);
    expect((await app.inject({ url: '/metrics', headers: { authorization: basic('nobody', 's3cret') } })).statusCode).toBe(401);
    const ok = await app.inject({ url: '/metrics', headers: { authorization: basic('prom', 's3cret') } });
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toContain('conntrack_entries 14');
    // Cached verification still checks the password.
    expect((await app.inject({ url: '/metrics', headers: { authorization: basic('prom', 'wrong') } })).statusCode).toBe(401);
    expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/metrics' })).headers['www-authenticate']).toContain('Basic');
  });
});
