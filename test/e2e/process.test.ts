/**
 * The built exporter as a process: flag errors at start, --help/--version,
 * graceful shutdown, TLS and basic auth over a real socket.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/kernel.js';
import { runExporter, startExporter } from '../helpers/process.js';

const PROC = join(REPO_ROOT, 'test', 'fixtures', 'proc', '6.18');
const QUIET = [`--path.procfs=${PROC}`, '--conntrack.path=/nonexistent/conntrack'];

describe('start-up errors name the problem and exit 2', () => {
  it.each([
    [['--web.listen-address=nonsense'], '--web.listen-address'],
    [['--log.level=loud'], '--log.level'],
    [['--no-such-flag'], 'unknown flag --no-such-flag'],
    [['--collector.stat.per-cpu=perhaps'], '--collector.stat.per-cpu'],
    [['--web.config.file=/nonexistent/web.yml'], '--web.config.file'],
    [['--web.telemetry-path=/healthz'], '--web.telemetry-path'],
  ])('%j', async (args, message) => {
    const r = await runExporter(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
  });

  it('names the environment variable', async () => {
    const r = await runExporter([], { CONNTRACK_EXPORTER_WEB_TELEMETRY_PATH: 'metrics' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('CONNTRACK_EXPORTER_WEB_TELEMETRY_PATH');
  });

  it('rejects a web config with an unknown key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cte-webcfg-'));
    try {
      writeFileSync(join(dir, 'web.yml'), 'basic_auth_user:\n  prom: x\n');
      const r = await runExporter([`--web.config.file=${join(dir, 'web.yml')}`]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('unknown key "basic_auth_user"');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails with a clear message when the port is taken', async () => {
    const first = await startExporter(QUIET);
    try {
      const r = await runExporter([...QUIET, `--web.listen-address=${new URL(first.url).host}`]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('cannot listen on --web.listen-address');
    } finally {
      await first.stop();
    }
  });
});

describe('--help and --version', () => {
  it('lists every flag with its environment twin', async () => {
    const r = await runExporter(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--web.listen-address=STRING');
    expect(r.stdout).toContain('CONNTRACK_EXPORTER_WEB_LISTEN_ADDRESS');
    expect(r.stdout).toContain('--[no-]collector.stat');
  });
  it('prints the version', async () => {
    const r = await runExporter(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^conntrack-exporter, version \d+\.\d+\.\d+/);
  });
});

describe('graceful shutdown', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('exits 0 on %s', async (signal) => {
    const e = await startExporter(QUIET);
    expect((await fetch(`${e.url}/metrics`)).status).toBe(200);
    expect(await e.stop(signal)).toBe(0);
    expect(e.logs()).toContain('"msg":"stopped"');
  });

  it('finishes an in-flight scrape before exiting', async () => {
    // A conntrack tool that takes a second makes the scrape observably in flight.
    const dir = mkdtempSync(join(tmpdir(), 'cte-slow-'));
    const tool = join(dir, 'conntrack');
    const stats = join(REPO_ROOT, 'test', 'fixtures', 'conntrack-tool', 'stats-6.18.txt');
    writeFileSync(tool, `#!/bin/sh\nsleep 1\n[ "$2" = expect ] || cat '${stats}'\n`, { mode: 0o755 });
    try {
      const e = await startExporter([`--path.procfs=${join(REPO_ROOT, 'test', 'fixtures', 'proc', '6.18-noprocfs')}`, `--conntrack.path=${tool}`]);
      const started = Date.now();
      const pending = fetch(`${e.url}/metrics`).then((r) => r.text());
      await new Promise((r) => setTimeout(r, 300));
      const exit = e.stop('SIGTERM');
      const body = await pending;
      expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
      expect(body).toContain('conntrack_stat_drop_total 9');
      expect(await exit).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('TLS and basic auth', () => {
  let dir: string;
  let url: string;
  let stop: () => Promise<number | null>;
  let ca: Buffer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cte-tls-'));
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', join(dir, 'server.key'), '-out', join(dir, 'server.crt'),
    ], { stdio: 'ignore' });
    ca = execFileSync('cat', [join(dir, 'server.crt')]);
    writeFileSync(
      join(dir, 'web.yml'),
      `tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: ${bcrypt.hashSync('hunter2', 6)}\n`,
    );
    const e = await startExporter([...QUIET, `--web.config.file=${join(dir, 'web.yml')}`]);
    url = e.url;
    stop = () => e.stop();
  });

  afterAll(async () => {
    await stop?.();
    rmSync(dir, { recursive: true, force: true });
  });

  function get(path: string, auth?: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request(`${url}${path}`, { ca, headers: auth ? { authorization: `Basic ${Buffer.from(auth).toString('base64')}` } : {} }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('listens with https', () => {
    expect(url.startsWith('https://')).toBe(true);
  });
  it('401 without credentials', async () => {
    expect((await get('/metrics')).status).toBe(401);
  });
  it('401 with a wrong password', async () => {
    expect((await get('/metrics', 'prometheus:wrong')).status).toBe(401);
  });
  it('200 with the right credentials over HTTPS', async () => {
    const r = await get('/metrics', 'prometheus:hunter2');
    expect(r.status).toBe(200);
    expect(r.body).toContain('conntrack_entries 14');
  });
  it('refuses plain HTTP on the TLS port', async () => {
    await expect(fetch(url.replace('https://', 'http://') + '/metrics').then((r) => r.status)).rejects.toThrow();
  });
});
