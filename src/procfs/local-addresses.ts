/**
 * The local IP addresses of a network namespace, from files readable through
 * any of its processes: `<procfs>/<pid>/net/fib_trie` (IPv4: every leaf whose
 * route list has a `/32 host LOCAL` entry is an address assigned in that
 * namespace; the `/8 host LOCAL` of 127.0.0.0 is the loopback net, not an
 * address) and `<procfs>/<pid>/net/if_inet6` (IPv6: one line per address,
 * `<32 hex> <ifindex> <prefixlen> <scope> <flags> <device>`).
 *
 * With them a conntrack entry's original source address names the namespace
 * that opened the connection (a pod's IP is in its namespace only), so its
 * source ports can be compared with that namespace's own ip_local_port_range.
 * Addresses found in several namespaces (127.0.0.1, ::1, link-local ones that
 * collide) name none: addressOwners() leaves them out.
 *
 * fib_trie lists the Main and Local tables (the same leaves twice since 4.x
 * merged them); the host namespace of a router can hold a large table, pods
 * a few lines. Lines that fit neither format are counted and skipped.
 */
import { formatIPv6 } from '../table/address.js';
import type { FsRoot } from './fs.js';

export interface ParsedAddresses {
  /** Unique addresses, sorted (IPv4 numerically, IPv6 as text). */
  readonly addresses: string[];
  /** Lines that did not fit the format. */
  readonly skipped: number;
}

const IPV4 = /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;

function ipv4Value(a: string): number {
  return a.split('.').reduce((v, o) => v * 256 + Number(o), 0);
}

/** IPv4 addresses with a `/32 host LOCAL` route in `/proc/<pid>/net/fib_trie`. Pure. */
export function parseFibTrieLocal(text: string): ParsedAddresses {
  const found = new Set<string>();
  let leaf: string | undefined;
  let skipped = 0;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (/^(Main|Local|Id \d+):?$/.test(line) || /^[A-Za-z][\w ]*:$/.test(line)) {
      leaf = undefined;
      continue;
    }
    let m = /^\|-- (\S+)$/.exec(line);
    if (m) {
      leaf = IPV4.test(m[1] as string) && (m[1] as string).split('.').every((o) => Number(o) <= 255) ? (m[1] as string) : undefined;
      if (leaf === undefined) skipped++;
      continue;
    }
    if (/^\+-- \S+\/\d+( \d+)*$/.test(line)) {
      leaf = undefined;
      continue;
    }
    m = /^\/(\d+) (\S+) (\S+)/.exec(line);
    if (m) {
      if (m[1] === '32' && m[2] === 'host' && m[3] === 'LOCAL' && leaf !== undefined) found.add(leaf);
      continue;
    }
    skipped++;
  }
  return { addresses: [...found].sort((a, b) => ipv4Value(a) - ipv4Value(b)), skipped };
}

export interface Inet6Address {
  /** RFC 5952 text, as conntrack -L and the table scan print it. */
  readonly address: string;
  readonly ifindex: number;
  readonly prefixLength: number;
  /** 0x00 global, 0x10 host (::1), 0x20 link, 0x40 site. */
  readonly scope: number;
  readonly flags: number;
  readonly device: string;
}

/** The lines of `/proc/<pid>/net/if_inet6`. Pure. */
export function parseIfInet6(text: string): { entries: Inet6Address[]; skipped: number } {
  const entries: Inet6Address[] = [];
  let skipped = 0;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const m = /^([0-9a-f]{32}) ([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+) +(\S+)$/i.exec(line);
    if (!m) {
      skipped++;
      continue;
    }
    const hex = (m[1] as string).toLowerCase();
    const words = [0, 1, 2, 3].map((i) => parseInt(hex.slice(8 * i, 8 * i + 8), 16));
    entries.push({
      address: formatIPv6(words),
      ifindex: parseInt(m[2] as string, 16),
      prefixLength: parseInt(m[3] as string, 16),
      scope: parseInt(m[4] as string, 16),
      flags: parseInt(m[5] as string, 16),
      device: m[6] as string,
    });
  }
  return { entries, skipped };
}

export interface NamespaceAddresses {
  readonly inode: number;
  /** IPv4 and IPv6 addresses, as parsed above. */
  readonly addresses: readonly string[];
}

/**
 * Address → the one namespace holding it. Addresses held by more than one
 * namespace (loopback, colliding link-local ones) are left out: they say
 * nothing about which namespace a connection came from. Pure.
 */
export function addressOwners(namespaces: readonly NamespaceAddresses[]): Map<string, number> {
  const owners = new Map<string, number | null>();
  for (const n of namespaces) {
    for (const a of new Set(n.addresses)) {
      const seen = owners.get(a);
      owners.set(a, seen === undefined || seen === n.inode ? n.inode : null);
    }
  }
  const out = new Map<string, number>();
  for (const [a, inode] of owners) if (inode !== null) out.set(a, inode);
  return out;
}

export interface LocalAddresses {
  readonly ipv4: string[];
  readonly ipv6: string[];
  /** Lines of either file that did not fit the format. */
  readonly skipped: number;
}

/**
 * Reads the local addresses of the namespace of `pid`. Missing files (no
 * IPv6, pid gone) read as no addresses; a pid that exited mid-read may give
 * nothing, so check its ns link afterwards where that matters.
 */
export async function readLocalAddresses(procfs: FsRoot, pid: number): Promise<LocalAddresses> {
  const [trie, inet6] = await Promise.all([
    procfs.readText(String(pid), 'net', 'fib_trie'),
    procfs.readText(String(pid), 'net', 'if_inet6'),
  ]);
  const v4 = parseFibTrieLocal(trie ?? '');
  const v6 = parseIfInet6(inet6 ?? '');
  return {
    ipv4: v4.addresses,
    ipv6: [...new Set(v6.entries.map((e) => e.address))].sort(),
    skipped: v4.skipped + v6.skipped,
  };
}
