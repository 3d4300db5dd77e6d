/**
 * Log lines in the Prometheus ecosystem's shape: the level as a word, the time as RFC 3339 (UTC,
 * milliseconds), no pid or hostname, in JSON and in logfmt.
 */
import { describe, expect, it } from 'vitest';
import { createLogger, jsonLineToLogfmt } from '../../src/logger.js';

const RFC3339_MS_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function capture(format: 'json' | 'logfmt', level = 'debug'): { lines: string[]; logger: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, logger: createLogger({ level, format, destination: { write: (s: string) => lines.push(s) } }) };
}

describe('JSON logs', () => {
  it('carry level as a word and time as RFC 3339, and no pid or hostname', () => {
    const { lines, logger } = capture('json');
    const before = Date.now();
    logger.warn({ collector: 'stat' }, 'collector failed');
    logger.debug('d');
    logger.error({ err: new Error('boom') }, 'e');
    const after = Date.now();
    expect(lines).toHaveLength(3);
    const recs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(recs.map((r) => r.level)).toEqual(['warn', 'debug', 'error']);
    for (const r of recs) {
      expect(r.time).toMatch(RFC3339_MS_UTC);
      const t = Date.parse(r.time as string);
      expect(t).toBeGreaterThanOrEqual(before);
      expect(t).toBeLessThanOrEqual(after);
      expect(r).not.toHaveProperty('pid');
      expect(r).not.toHaveProperty('hostname');
    }
    expect(recs[0]).toMatchObject({ msg: 'collector failed', collector: 'stat' });
    expect((recs[2]!.err as { message: string }).message).toBe('boom');
  });

  it('honour --log.level', () => {
    const { lines, logger } = capture('json', 'warn');
    logger.info('hidden');
    logger.warn('shown');
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['shown']);
  });
});

describe('logfmt logs', () => {
  it('start with time and level, then msg and the keys', () => {
    const { lines, logger } = capture('logfmt');
    logger.info({ address: 'http://[::]:9746', tls: false }, 'listening on http://[::]:9746');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^time=\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z level=info msg="listening on http:\/\/\[::\]:9746" address=http:\/\/\[::\]:9746 tls=false\n$/);
  });

  it('still convert a line with pino-style numeric level and epoch time', () => {
    expect(jsonLineToLogfmt(JSON.stringify({ level: 50, time: 1000, msg: 'x' }))).toBe('time=1970-01-01T00:00:01.000Z level=error msg=x\n');
  });
});
