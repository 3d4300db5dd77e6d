/**
 * One line of the connection table, parsed in place from bytes.
 *
 * Grammar (kernel-interfaces.md §1; `ct_seq_show()` and conntrack-tools'
 * `-o extended` print the same shape):
 *
 *   [l3name l3num] l4name l4num [timeout] [state | gre "timeout=…, stream_timeout=…"]
 *   src=A dst=B [sport=… dport=… | type=… code=… id=… | srckey=… dstkey=…] [zone-orig=…]
 *   [packets=… bytes=…] [[UNREPLIED]] <reply tuple> … [[ASSURED]|[OFFLOAD]|[HW_OFFLOAD]]
 *   [mark=…] [secctx=…] [zone=…] [delta-time=…] use=…
 *
 * Without the l3 columns it is the old `/proc/net/ip_conntrack` layout (or
 * plain `conntrack -L`), and the family follows from the address. Offloaded
 * entries print no timeout and TCP prints no state for them.
 *
 * The parser allocates nothing per line: it fills a reusable `ParsedLine`
 * and interns state names. Only what the table metrics need is kept: family,
 * protocol, state, flags, the timeout, the original direction's addresses and
 * destination port, and the reply direction's destination.
 */
import { parseIPv6, scanIPv4 } from './address.js';

export const FLAG_UNREPLIED = 1;
export const FLAG_ASSURED = 2;
export const FLAG_OFFLOAD = 4;
export const FLAG_HW_OFFLOAD = 8;

/** Flag label values, in bit order. */
export const FLAG_NAMES = ['unreplied', 'assured', 'offload', 'hw_offload'] as const;

/** The state label of entries that print none (stateless protocols, offloaded TCP). */
export const NO_STATE = 'none';

/** Longest line accepted; longer ones are malformed (bounds the carry-over buffer). */
export const MAX_LINE_BYTES = 4096;

export class ParsedLine {
  /** 4 or 6. */
  family = 0;
  /** IP protocol number (6 tcp, 17 udp, …). */
  protocol = 0;
  /** Interned state id; 0 is `none`. */
  state = 0;
  /** FLAG_* bits. */
  flags = 0;
  /** Whether the original tuple has ports (sport/dport). */
  hasPorts = false;
  /** Original-direction destination port (when hasPorts). */
  dport = 0;
  /** Seconds until the entry expires (the timeout column), or -1 where none is printed (offloaded). */
  timeout = -1;
  /** Original-direction source and destination as four words (IPv4 in word 3). */
  readonly src = new Uint32Array(4);
  readonly dst = new Uint32Array(4);
  /**
   * The address the reply direction goes to: the original source, or, where
   * the entry is source-NATed (masquerade on a gateway, a pod's traffic leaving
   * a node), the translated address, whose ports the connection actually holds.
   * `src` when the line has no reply tuple.
   */
  readonly replyDst = new Uint32Array(4);
}

/** Longest state name and most distinct names accepted, so garbage cannot grow the table. */
const MAX_STATE_BYTES = 32;
export const MAX_STATES = 64;

/**
 * Interns protocol state names (TIME_WAIT, ESTABLISHED, …) by their bytes,
 * so the hot path compares a few bytes instead of building a string.
 */
export class StateNames {
  private readonly names: string[] = [NO_STATE];
  private readonly bytes: Uint8Array[] = [new Uint8Array(0)];
  /** FNV-1a hash → ids with that hash. */
  private readonly byHash = new Map<number, number[]>();

  name(id: number): string {
    const n = this.names[id];
    if (n === undefined) throw new Error(`unknown state id ${id}`);
    return n;
  }

  /** The id of the state spelled by buf[start, end), or -1 if it is not a plausible state name. */
  intern(buf: Uint8Array, start: number, end: number): number {
    const len = end - start;
    if (len === 0 || len > MAX_STATE_BYTES) return -1;
    let h = 0x811c9dc5;
    for (let p = start; p < end; p++) {
      const c = buf[p] as number;
      // Kernel state names are upper-case letters, digits and underscores.
      if (!((c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f)) return -1;
      h = Math.imul(h ^ c, 0x01000193);
    }
    const ids = this.byHash.get(h);
    if (ids !== undefined) {
      for (const id of ids) {
        const b = this.bytes[id] as Uint8Array;
        if (b.length !== len) continue;
        let same = true;
        for (let i = 0; i < len; i++) {
          if (b[i] !== buf[start + i]) {
            same = false;
            break;
          }
        }
        if (same) return id;
      }
    }
    if (this.names.length >= MAX_STATES) return -1;
    const id = this.names.length;
    const copy = Uint8Array.from(buf.subarray(start, end));
    this.names.push(String.fromCharCode(...copy));
    this.bytes.push(copy);
    if (ids) ids.push(id);
    else this.byHash.set(h, [id]);
    return id;
  }
}

const SP = 0x20;
const NL = 0x0a;

/** Where the line parsed by the last parseLine() call ends (its newline, or the limit). */
export let lineEnd = 0;

function skipSpaces(buf: Uint8Array, p: number, end: number): number {
  while (p < end && buf[p] === SP) p++;
  return p;
}

/** End of the token at p: the next space or newline. */
function tokenEnd(buf: Uint8Array, p: number, end: number): number {
  while (p < end && buf[p] !== SP && buf[p] !== NL) p++;
  return p;
}

/** Whether buf[p…] starts with the ASCII bytes of `lit` (given as char codes). */
function startsWith(buf: Uint8Array, p: number, end: number, lit: readonly number[]): boolean {
  if (end - p < lit.length) return false;
  for (let i = 0; i < lit.length; i++) if (buf[p + i] !== lit[i]) return false;
  return true;
}

const codes = (s: string): number[] => [...s].map((c) => c.charCodeAt(0));
const SRC = codes('src=');
const DST = codes('dst=');
const SPORT = codes('sport=');
const DPORT = codes('dport=');
const UNREPLIED = codes('[UNREPLIED]');
const ASSURED = codes('[ASSURED]');
const OFFLOAD = codes('[OFFLOAD]');
const HW_OFFLOAD = codes('[HW_OFFLOAD]');

/** The FLAG_* bit of the bracketed token at p, or 0 for an unknown one. */
function parseFlag(buf: Uint8Array, p: number, end: number): number {
  // The second letter tells the four apart; then check the whole token.
  switch (buf[p + 1]) {
    case 0x55: // U
      return startsWith(buf, p, end, UNREPLIED) ? FLAG_UNREPLIED : 0;
    case 0x41: // A
      return startsWith(buf, p, end, ASSURED) ? FLAG_ASSURED : 0;
    case 0x4f: // O
      return startsWith(buf, p, end, OFFLOAD) ? FLAG_OFFLOAD : 0;
    case 0x48: // H
      return startsWith(buf, p, end, HW_OFFLOAD) ? FLAG_HW_OFFLOAD : 0;
    default:
      return 0;
  }
}

/** Decimal digits in [p, end) up to a space; returns the value or -1. `digitsEnd` receives the end. */
let digitsEnd = 0;
function parseDecimal(buf: Uint8Array, p: number, end: number, max: number): number {
  let v = 0;
  const start = p;
  while (p < end) {
    const c = buf[p] as number;
    if (c === SP || c === NL) break;
    if (c < 0x30 || c > 0x39) return -1;
    v = v * 10 + (c - 0x30);
    if (v > max) return -1;
    p++;
  }
  digitsEnd = p;
  return p === start ? -1 : v;
}

function isDigits(buf: Uint8Array, p: number, end: number): boolean {
  for (let i = p; i < end; i++) {
    const c = buf[i] as number;
    if (c < 0x30 || c > 0x39) return false;
  }
  return end > p;
}

function hasEquals(buf: Uint8Array, p: number, end: number): boolean {
  for (let i = p; i < end; i++) if (buf[i] === 0x3d) return true;
  return false;
}

/** Copies four address words (TypedArray#set costs more than this for four elements). */
function copyAddress(from: Uint32Array, to: Uint32Array): void {
  to[0] = from[0] as number;
  to[1] = from[1] as number;
  to[2] = from[2] as number;
  to[3] = from[3] as number;
}

/** Whether the `length` bytes at a and b are equal. */
function sameBytes(buf: Uint8Array, a: number, b: number, length: number): boolean {
  for (let i = 0; i < length; i++) if (buf[a + i] !== buf[b + i]) return false;
  return true;
}

/** Where the last parseAddress() stopped. */
let addressEnd = 0;

/** Parses the address token at p (up to a space) into `out`; returns its family (4 or 6) or 0 if malformed. */
function parseAddress(buf: Uint8Array, p: number, end: number, out: Uint32Array): number {
  const q = scanIPv4(buf, p, end, out);
  if (q >= 0) {
    addressEnd = q;
    return 4;
  }
  addressEnd = tokenEnd(buf, p, end);
  return parseIPv6(buf, p, addressEnd, out) ? 6 : 0;
}

/**
 * Parses the line that starts at `start` and ends at the first newline
 * before `end` (or at `end`) into `out`; on success `lineEnd` tells where it
 * ended. Finding the newline while parsing saves a second pass over the bytes.
 * Returns false, leaving `out` in an unspecified state, if the line is
 * malformed; the caller then finds its end.
 */
export function parseLine(buf: Uint8Array, start: number, end: number, out: ParsedLine, states: StateNames): boolean {
  let p = skipSpaces(buf, start, end);
  let q = tokenEnd(buf, p, end);

  // Layer 3 columns ("ipv4     2 ") are absent in the old ip_conntrack layout.
  let family = 0;
  if (q - p === 4 && buf[p] === 0x69 && buf[p + 1] === 0x70 && buf[p + 2] === 0x76) {
    const v = buf[p + 3];
    const l3num = parseDecimal(buf, skipSpaces(buf, q, end), end, 255);
    if (v === 0x34 && l3num === 2) family = 4;
    else if (v === 0x36 && l3num === 10) family = 6;
    else return false;
    p = skipSpaces(buf, digitsEnd, end);
    q = tokenEnd(buf, p, end);
  }

  // Layer 4 name ("tcp", "unknown", …) and number; the number names the protocol.
  const first = buf[p] as number;
  if (q === p || first < 0x61 || first > 0x7a || hasEquals(buf, p, q)) return false;
  p = skipSpaces(buf, q, end);
  const protocol = parseDecimal(buf, p, end, 255);
  if (protocol < 0) return false;
  p = digitsEnd;

  // Timeout (absent when offloaded), then the protocol's private part up to the original tuple.
  let stateStart = -1;
  let stateEnd = -1;
  let timeout = -1;
  for (;;) {
    p = skipSpaces(buf, p, end);
    if (p >= end || buf[p] === NL) return false;
    if (startsWith(buf, p, end, SRC)) break;
    q = tokenEnd(buf, p, end);
    if (isDigits(buf, p, q)) {
      if (timeout >= 0 || stateStart >= 0) return false;
      // Kernel timeouts are u32 seconds; a longer digit run is read as the largest.
      timeout = parseDecimal(buf, p, q, 0xffffffff);
      if (timeout < 0) timeout = 0xffffffff;
    } else if (!hasEquals(buf, p, q)) {
      // GRE prints "timeout=…, stream_timeout=…"; anything else without "=" is the state.
      if (stateStart >= 0) return false;
      stateStart = p;
      stateEnd = q;
    }
    p = q;
  }
  let state = 0;
  if (stateStart >= 0) {
    state = states.intern(buf, stateStart, stateEnd);
    if (state < 0) return false;
  }

  // Original tuple: src=, dst=, then ports where the protocol has them.
  const srcStart = p + 4;
  const srcFamily = parseAddress(buf, srcStart, end, out.src);
  if (srcFamily === 0) return false;
  const srcEnd = addressEnd;
  p = skipSpaces(buf, addressEnd, end);
  if (!startsWith(buf, p, end, DST)) return false;
  const dstFamily = parseAddress(buf, p + 4, end, out.dst);
  if (dstFamily !== srcFamily || (family !== 0 && family !== srcFamily)) return false;
  p = skipSpaces(buf, addressEnd, end);
  let hasPorts = false;
  let dport = 0;
  if (startsWith(buf, p, end, SPORT)) {
    if (parseDecimal(buf, p + 6, end, 65535) < 0) return false;
    p = skipSpaces(buf, digitsEnd, end);
    if (!startsWith(buf, p, end, DPORT)) return false;
    dport = parseDecimal(buf, p + 6, end, 65535);
    if (dport < 0) return false;
    p = digitsEnd;
    hasPorts = true;
  }

  // Between the tuples the kernel prints zone-orig=, the original counters (packets=, bytes=) and
  // [UNREPLIED]; then the reply tuple, whose dst= is the address the entry's ports belong to. It is
  // the original source unless the entry is source-NATed, so the bytes are compared before parsing.
  let flags = 0;
  let replyDstFound = false;
  for (;;) {
    p = skipSpaces(buf, p, end);
    // A line that ends here (cut short) is done. Without this check the byte at `end`, which is not
    // the line's (a stale byte of the scanner's carry buffer, say), could be read as a token start
    // that tokenEnd() cannot move past: an endless loop (issue 15).
    if (p >= end) break;
    const c = buf[p];
    if (c === 0x5b) {
      flags |= parseFlag(buf, p, end);
    } else if (c === 0x70 || c === 0x62 || c === 0x7a) {
      // packets=, bytes=, zone-orig=
    } else {
      if (!startsWith(buf, p, end, SRC)) break;
      p = skipSpaces(buf, tokenEnd(buf, p, end), end);
      if (!startsWith(buf, p, end, DST)) break;
      const a = p + 4;
      p = tokenEnd(buf, a, end);
      if (p - a === srcEnd - srcStart && sameBytes(buf, a, srcStart, p - a)) {
        copyAddress(out.src, out.replyDst);
      } else if (parseAddress(buf, a, end, out.replyDst) !== srcFamily) {
        return false;
      }
      replyDstFound = true;
      break;
    }
    p = tokenEnd(buf, p, end);
  }

  // The rest (zones, counters, mark, secctx, delta-time, use) only matters for its flags.
  // Flags are the only bracketed tokens. A plain loop beats Buffer#indexOf here: the line's rest is
  // short and each indexOf call costs more in argument checks than it saves.
  for (; p < end; p++) {
    const c = buf[p];
    if (c === NL) break;
    if (c === 0x5b) flags |= parseFlag(buf, p, end);
  }
  if (!replyDstFound) copyAddress(out.src, out.replyDst);
  if (p - start > MAX_LINE_BYTES) return false;
  lineEnd = p;

  out.family = srcFamily;
  out.protocol = protocol;
  out.state = state;
  out.flags = flags;
  out.hasPorts = hasPorts;
  out.dport = dport;
  out.timeout = timeout;
  return true;
}
