/**
 * What Prometheus tooling expects of an exporter, as node_exporter and Prometheus do it:
 * Vary on /metrics, /-/healthy and /-/ready, --web.disable-exporter-metrics,
 * --collector.disable-defaults, and HELP texts that do not change with flags.
 */
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import type { CollectorDefinition } from '../../src/collectors/collector.js';
import { conntrackCollector } from '../../src/collectors/conntrack.js';
import { statCollector } from '../../src/collectors/stat.js';
import { buildWebConfig } from '../../src/config/web-config.js';
import { buildTestApp, samples } from '../helpers/app.js';

const PROC = join(new URL('../fixtures/', import.meta.url).pathname, 'proc', '6.18');
const CORE = { collectors: [conntrackCollector, statCollector] };

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

function successes(body: string): string[] {
  return [...samples(body).keys()]
    .filter((k) => k.startsWith('conntrack_scrape_collector_success{'))
    .map((k) => /collector="([^"]+)"/.exec(k)![1]!)
    .sort();
}

function helpTexts(body: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of body.split('\n')) {
    const m = /^# HELP (\S+) (.*)$/.exec(line);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

describe('/metrics headers', () => {
  it('says that the body varies with Accept and Accept-Encoding, gzipped or not', async () => {
    app = await buildTestApp({ args: [`--path.procfs=${PROC}`], ...CORE });
    for (const headers of [{}, { 'accept-encoding': 'gzip' }, { accept: 'application/openmetrics-text; version=1.0.0' }]) {
      const res = await app.inject({ url: '/metrics', headers });
      expect(res.statusCode).toBe(200);
      expect(String(res.headers.vary).split(/,\s*/)).toEqual(expect.arrayContaining(['Accept', 'Accept-Encoding']));
    }
  });
});

describe('/-/healthy and /-/ready', () => {
  it('answer 200 once started, without credentials when basic auth is on', async () => {
    const webConfig = await buildWebConfig({ basic_auth_users: { prom: bcrypt.hashSync('pw', 4) } }, '/etc/web.yml');
    app = await buildTestApp({ args: [`--path.procfs=${PROC}`], webConfig, ...CORE });
    expect((await app.inject({ url: '/metrics' })).statusCode).toBe(401);
    const healthy = await app.inject({ url: '/-/healthy' });
    expect([healthy.statusCode, healthy.body]).toEqual([200, 'conntrack-exporter is Healthy.\n']);
    const ready = await app.inject({ url: '/-/ready' });
    expect([ready.statusCode, ready.body]).toEqual([200, 'conntrack-exporter is Ready.\n']);
    // Only the exact probe paths are open.
    expect((await app.inject({ url: '/-/ready/../metrics' })).statusCode).not.toBe(200);
  });

  it('/-/ready is 503 naming the collector whose first background result is not in yet', async () => {
    let ready = false;
    const slow: CollectorDefinition = {
      name: 'slow',
      help: 'test collector with background work',
      defaultEnabled: true,
      create: () => ({ update: async () => undefined, ready: () => ready }),
    };
    app = await buildTestApp({ args: [`--path.procfs=${PROC}`], collectors: [conntrackCollector, slow] });
    const before = await app.inject({ url: '/-/ready' });
    expect([before.statusCode, before.body]).toEqual([503, 'conntrack-exporter is not ready: waiting for slow.\n']);
    expect((await app.inject({ url: '/-/healthy' })).statusCode).toBe(200);
    ready = true;
    expect((await app.inject({ url: '/-/ready' })).statusCode).toBe(200);
  });

  it('/-/ready waits for the table collector\'s first scan', async () => {
    app = await buildTestApp({ args: [`--path.procfs=${PROC}`, '--collector.disable-defaults', '--collector.table', '--conntrack.path=/nonexistent/conntrack'] });
    // start() waits up to 1 s for the first scan; the fixture's small table is scanned by then.
    const res = await app.inject({ url: '/-/ready' });
    expect([res.statusCode, res.body]).toEqual([200, 'conntrack-exporter is Ready.\n']);
  });

  it('the telemetry path cannot take a probe path', async () => {
    await expect(buildTestApp({ args: ['--web.telemetry-path=/-/ready'] })).rejects.toThrow(/--web.telemetry-path/);
  });
});

describe('--web.disable-exporter-metrics', () => {
  it('drops process_* and nodejs_*, keeps build info and the conntrack series', async () => {
    app = await buildTestApp({ args: [`--path.procfs=${PROC}`], ...CORE, defaultMetrics: undefined });
    const withDefaults = (await app.inject({ url: '/metrics' })).body;
    await app.close();
    expect(withDefaults).toMatch(/^process_cpu_seconds_total /m);
    expect(withDefaults).toMatch(/^nodejs_heap_size_used_bytes /m);

    app = await buildTestApp({ args: [`--path.procfs=${PROC}`, '--web.disable-exporter-metrics'], ...CORE, defaultMetrics: undefined });
    const without = (await app.inject({ url: '/metrics' })).body;
    expect(without).not.toMatch(/^(process|nodejs)_/m);
    expect(without).toMatch(/^conntrack_exporter_build_info\{/m);
    expect(samples(without).get('conntrack_entries')).toBe(14);
  });
});

describe('--collector.disable-defaults', () => {
  it('runs only the collectors enabled explicitly, by flag or environment', async () => {
    app = await buildTestApp({ args: [`--path.procfs=${PROC}`, '--conntrack.path=/nonexistent/conntrack', '--kernel-log.source=none'] });
    const all = successes((await app.inject({ url: '/metrics' })).body);
    await app.close();
    expect(all).toEqual(expect.arrayContaining(['conntrack', 'stat', 'memory', 'ports', 'timeouts']));

    app = await buildTestApp({ args: [`--path.procfs=${PROC}`, '--collector.disable-defaults', '--collector.stat'] });
    expect(successes((await app.inject({ url: '/metrics' })).body)).toEqual(['stat']);
    await app.close();

    app = await buildTestApp({
      args: [`--path.procfs=${PROC}`],
      env: { CONNTRACK_EXPORTER_COLLECTOR_DISABLE_DEFAULTS: 'true', CONNTRACK_EXPORTER_COLLECTOR_CONNTRACK: 'true' },
    });
    expect(successes((await app.inject({ url: '/metrics' })).body)).toEqual(['conntrack']);
    await app.close();

    // Without it, --no-collector.X still disables one.
    app = await buildTestApp({ args: [`--path.procfs=${PROC}`, '--no-collector.stat', '--conntrack.path=/nonexistent/conntrack', '--kernel-log.source=none'] });
    const less = successes((await app.inject({ url: '/metrics' })).body);
    expect(less).not.toContain('stat');
    expect(less.length).toBe(all.length - 1);
  });
});

describe('HELP texts', () => {
  it('do not change with flags', async () => {
    const base = [`--path.procfs=${PROC}`, '--conntrack.path=/nonexistent/conntrack', '--kernel-log.source=none', '--collector.table'];
    app = await buildTestApp({ args: base });
    const a = helpTexts((await app.inject({ url: '/metrics' })).body);
    await app.close();
    app = await buildTestApp({ args: [...base, '--collector.stat.per-cpu', '--collector.table.top-destinations=3'] });
    const b = helpTexts((await app.inject({ url: '/metrics' })).body);
    expect(a.size).toBeGreaterThan(20);
    for (const [name, help] of a) if (b.has(name)) expect(b.get(name), name).toBe(help);
    expect([...a.keys()].filter((n) => n.startsWith('conntrack_stat_')).every((n) => b.has(n))).toBe(true);
  });
});
