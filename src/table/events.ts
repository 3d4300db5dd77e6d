/**
 * Counting the output of `conntrack -E -e NEW,DESTROY`: one line per event,
 *
 *     [NEW] udp      17 30 src=10.0.0.1 dst=10.0.0.2 sport=… [UNREPLIED] src=…
 *  [DESTROY] tcp      6 src=… dst=… …
 *
 * (`[UPDATE]` too if asked for; a `-o timestamp` prefix `[1701…]\t` is skipped).
 * Only the event type and the protocol number are read: the bytes up to the
 * second word after the bracket, so a line costs a few comparisons and the
 * search for its newline. Memory is fixed: per type, a count per protocol
 * number, and a carry-over of at most one line (longer lines are counted as
 * malformed and skipped up to their newline).
 */
import { MAX_LINE_BYTES } from './line.js';

export const EVENT_TYPES = ['new', 'update', 'destroy'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

const NL = 0x0a;
const SP = 0x20;
const TAB = 0x09;
const OPEN = 0x5b;
const CLOSE = 0x5d;

/** Event type of the bracketed word buf[start, end), or -1. */
function eventType(buf: Uint8Array, start: number, end: number): number {
  const len = end - start;
  const c = buf[start];
  if (len === 3 && c === 0x4e && buf[start + 1] === 0x45 && buf[start + 2] === 0x57) return 0; // NEW
  if (len === 6 && c === 0x55 && buf[start + 1] === 0x50 && buf[start + 5] === 0x45) return 1; // UPDATE
  if (len === 7 && c === 0x44 && buf[start + 1] === 0x45 && buf[start + 6] === 0x59) return 2; // DESTROY
  return -1;
}

export class EventCounter {
  /** (type × 256 + protocol number) → events. */
  readonly counts = new Float64Array(EVENT_TYPES.length * 256);
  lines = 0;
  malformed = 0;
  private readonly carry = new Uint8Array(MAX_LINE_BYTES);
  private carryLength = 0;
  /** Skipping the rest of an overlong line. */
  private skipping = false;

  /** Counts the complete lines of `chunk` (with what earlier chunks left unfinished). */
  push(chunk: Uint8Array): void {
    let p = 0;
    if (this.skipping || this.carryLength > 0) {
      const nl = chunk.indexOf(NL);
      const end = nl < 0 ? chunk.length : nl;
      if (!this.skipping) this.keep(chunk, 0, end);
      if (nl < 0) return;
      if (!this.skipping) this.line(this.carry, 0, this.carryLength);
      this.skipping = false;
      this.carryLength = 0;
      p = nl + 1;
    }
    for (;;) {
      const nl = chunk.indexOf(NL, p);
      if (nl < 0) break;
      this.line(chunk, p, nl);
      p = nl + 1;
    }
    if (p < chunk.length) this.keep(chunk, p, chunk.length);
  }

  /** Total events of one type over all protocols. */
  total(type: EventType): number {
    const base = EVENT_TYPES.indexOf(type) * 256;
    let sum = 0;
    for (let i = 0; i < 256; i++) sum += this.counts[base + i] as number;
    return sum;
  }

  /** Adds an unfinished line's bytes to the carry-over; a line longer than any event is counted malformed and skipped. */
  private keep(buf: Uint8Array, start: number, end: number): void {
    const len = end - start;
    if (this.carryLength + len > MAX_LINE_BYTES) {
      this.lines++;
      this.malformed++;
      this.carryLength = 0;
      this.skipping = true;
      return;
    }
    this.carry.set(buf.subarray(start, end), this.carryLength);
    this.carryLength += len;
  }

  /** One line, buf[start, end) without its newline. */
  private line(buf: Uint8Array, start: number, end: number): void {
    if (end === start) return;
    this.lines++;
    if (end - start > MAX_LINE_BYTES) {
      this.malformed++;
      return;
    }
    let p = start;
    while (p < end && (buf[p] === SP || buf[p] === TAB)) p++;
    // An optional `[timestamp]` (-o timestamp) precedes the type.
    let type = -1;
    for (let bracket = 0; bracket < 2 && type < 0; bracket++) {
      if (buf[p] !== OPEN) break;
      const close = buf.indexOf(CLOSE, p);
      if (close < 0 || close >= end) break;
      type = eventType(buf, p + 1, close);
      p = close + 1;
      while (p < end && (buf[p] === SP || buf[p] === TAB)) p++;
    }
    if (type < 0) {
      this.malformed++;
      return;
    }
    // Protocol name, then its number.
    while (p < end && buf[p] !== SP) p++;
    while (p < end && buf[p] === SP) p++;
    let protocol = 0;
    const digits = p;
    while (p < end && buf[p]! >= 0x30 && buf[p]! <= 0x39 && protocol <= 255) protocol = protocol * 10 + (buf[p++]! - 0x30);
    if (p === digits || protocol > 255 || (p < end && buf[p] !== SP)) {
      this.malformed++;
      return;
    }
    this.counts[type * 256 + protocol]!++;
  }
}
