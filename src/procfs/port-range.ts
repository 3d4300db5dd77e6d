/**
 * `/proc/sys/net/ipv4/ip_local_port_range`: the ephemeral source ports
 * connect() picks from, `low<TAB>high`, per network namespace. Every
 * connection to one destination ip:port needs its own source port, and
 * TIME_WAIT sockets keep theirs for 60 s.
 */
import { ParseError, type FsRoot } from './fs.js';

export interface PortRange {
  readonly low: number;
  readonly high: number;
}

/** Parses the two-number sysctl. Pure; throws ParseError. */
export function parsePortRange(text: string, source = 'ip_local_port_range'): PortRange {
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(text);
  if (!m) throw new ParseError(`${source}: expected "low high", got ${JSON.stringify(text.trim().slice(0, 40))}`);
  const low = Number(m[1]);
  const high = Number(m[2]);
  if (high < low || high > 65535) throw new ParseError(`${source}: invalid range ${low}-${high}`);
  return { low, high };
}

/** Ports in the range, both ends included. */
export function portRangeSize(range: PortRange): number {
  return range.high - range.low + 1;
}

/** `<procfs>/sys/net/ipv4/ip_local_port_range` of the reader's namespace; undefined if absent. Throws ParseError. */
export async function readLocalPortRange(procfs: FsRoot): Promise<PortRange | undefined> {
  const text = await procfs.readText('sys', 'net', 'ipv4', 'ip_local_port_range');
  return text === undefined ? undefined : parsePortRange(text, procfs.path('sys', 'net', 'ipv4', 'ip_local_port_range'));
}
