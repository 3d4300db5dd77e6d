/**
 * pino logging, as JSON or as logfmt, written to stderr, in the shape of the Prometheus ecosystem's
 * logs (prometheus/common promslog, as node_exporter and Prometheus write them): the level as a
 * lower-case word, the time as RFC 3339 in UTC with milliseconds, then the message and its keys.
 *
 *   json:   {"level":"info","time":"2026-12-02T13:40:54.123Z","msg":"listening on http://[::]:9746","address":"…"}
 *   logfmt: time=2026-12-02T13:40:54.123Z level=info msg="listening on http://[::]:9746" address=…
 */
import { pino, type DestinationStream, type Logger } from 'pino';

export type LogFormat = 'json' | 'logfmt';

export interface LoggerOptions {
  level: string;
  format: LogFormat;
  /** Defaults to stderr. */
  destination?: { write(chunk: string): unknown };
}

const LEVEL_NAMES: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

function logfmtValue(v: unknown): string {
  let s: string;
  if (typeof v === 'string') s = v;
  else if (v instanceof Object) s = JSON.stringify(v);
  else s = String(v);
  return s === '' || /[\s"=\\]/.test(s) || /[^\x20-\x7e]/.test(s) ? JSON.stringify(s) : s;
}

/** Turns one pino JSON line into one logfmt line. Pure. */
export function jsonLineToLogfmt(line: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : line + '\n';
  }
  const parts: string[] = [];
  const { time, level, msg, err, ...rest } = rec;
  if (time !== undefined) parts.push(`time=${typeof time === 'string' ? time : new Date(Number(time)).toISOString()}`);
  if (level !== undefined) parts.push(`level=${typeof level === 'string' ? level : (LEVEL_NAMES[Number(level)] ?? String(level))}`);
  if (msg !== undefined) parts.push(`msg=${logfmtValue(msg)}`);
  for (const [k, v] of Object.entries(rest)) {
    if (k === 'pid' || k === 'hostname') continue;
    parts.push(`${k}=${logfmtValue(v)}`);
  }
  if (err && typeof err === 'object') parts.push(`err=${logfmtValue((err as { message?: unknown }).message ?? err)}`);
  return parts.join(' ') + '\n';
}

export function createLogger(options: LoggerOptions): Logger {
  const out = options.destination ?? process.stderr;
  const destination: DestinationStream =
    options.format === 'json'
      ? { write: (s: string) => out.write(s) }
      : { write: (s: string) => out.write(jsonLineToLogfmt(s)) };
  return pino(
    {
      level: options.level,
      base: null, // no pid or hostname: Prometheus components log neither
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
