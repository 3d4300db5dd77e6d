/**
 * `/proc/net/sockstat` and `/proc/net/sockstat6`: per-protocol socket counts of
 * the reader's network namespace, one `PROTO: key value key value …` line per
 * protocol (`TCP: inuse 3 orphan 0 tw 12 alloc 5 mem 1`).
 *
 * TIME_WAIT sockets are only in sockstat's `TCP:` line (`tw`). That number is
 * the namespace's TIME_WAIT bucket count (tcp_death_row), which IPv6 TCP
 * shares, so it covers IPv4 and IPv6; sockstat6's `TCP6:` line has `inuse`
 * only (checked on 2.6.32 to 6.18 sources and a live 6.18 kernel).
 */
import { ParseError } from './fs.js';

/** Protocol → key → value. */
export type Sockstat = Map<string, Map<string, number>>;

/** Parses sockstat or sockstat6. Pure; throws ParseError naming the line. */
export function parseSockstat(text: string, source = 'net/sockstat'): Sockstat {
  const out: Sockstat = new Map();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (line === '') continue;
    const colon = line.indexOf(':');
    const tokens = colon < 0 ? [] : line.slice(colon + 1).trim().split(/\s+/);
    if (colon <= 0 || tokens.length % 2 !== 0) {
      throw new ParseError(`${source}: line ${i + 1} is not "PROTO: key value …": ${JSON.stringify(line.slice(0, 60))}`);
    }
    const values = new Map<string, number>();
    for (let t = 0; t < tokens.length; t += 2) {
      const v = tokens[t + 1] as string;
      // Digits only, and few enough for an exact number (a 1 MB digit run was Infinity: scripts/fuzz.mjs).
      if (!/^\d{1,15}$/.test(v)) throw new ParseError(`${source}: line ${i + 1}: ${tokens[t]} has non-numeric value "${v}"`);
      values.set(tokens[t] as string, Number(v));
    }
    out.set(line.slice(0, colon), values);
  }
  return out;
}

/** TIME_WAIT sockets (IPv4 and IPv6) from a parsed sockstat, or undefined if the TCP line has no `tw`. */
export function timeWaitSockets(sockstat: Sockstat): number | undefined {
  return sockstat.get('TCP')?.get('tw');
}
