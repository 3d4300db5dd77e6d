/**
 * Turns a stream of byte chunks into parsed lines and feeds them to a tally.
 *
 * Chunks come from read() on the proc file or from conntrack's stdout and
 * split lines anywhere. Complete lines are parsed in place in the chunk; only
 * a line cut by a chunk boundary is copied, into a carry buffer of at most
 * MAX_LINE_BYTES, so memory does not grow with the table.
 */
import { lineEnd, MAX_LINE_BYTES, ParsedLine, parseLine, type StateNames } from './line.js';
import type { TableTally } from './tally.js';

const NL = 0x0a;

export class TableScanner {
  /** Non-empty lines seen. */
  lines = 0;
  /** Lines that did not parse (skipped). */
  errors = 0;
  /** The first malformed line, for the log (truncated). */
  firstError: string | undefined;
  private readonly parsed = new ParsedLine();
  private readonly carry = Buffer.alloc(MAX_LINE_BYTES);
  private carryLength = 0;
  /** Inside a line longer than MAX_LINE_BYTES, skipping to its end. */
  private overlong = false;

  constructor(
    private readonly tally: TableTally,
    private readonly states: StateNames,
  ) {}

  /** Consumes a chunk; the scanner does not keep a reference to it. */
  push(chunk: Buffer): void {
    let p = 0;
    if (this.carryLength > 0 || this.overlong) {
      const nl = chunk.indexOf(NL);
      if (nl < 0) {
        this.appendCarry(chunk, 0, chunk.length);
        return;
      }
      this.appendCarry(chunk, 0, nl);
      this.finishCarry();
      p = nl + 1;
    }
    const last = chunk.lastIndexOf(NL);
    // Complete lines end at or before `last`; the parser finds each newline as it goes.
    while (p <= last) {
      if (chunk[p] === NL) {
        p++;
        continue;
      }
      this.lines++;
      if (parseLine(chunk, p, last + 1, this.parsed, this.states)) {
        this.tally.add(this.parsed);
        p = lineEnd + 1;
      } else {
        const nl = chunk.indexOf(NL, p);
        this.malformed(chunk, p, nl);
        p = nl + 1;
      }
    }
    if (p < chunk.length) this.appendCarry(chunk, p, chunk.length);
  }

  /** Ends the stream: a last line without a newline still counts. */
  end(): void {
    if (this.carryLength > 0 || this.overlong) this.finishCarry();
  }

  private appendCarry(chunk: Buffer, start: number, end: number): void {
    if (this.overlong) return;
    if (this.carryLength + (end - start) > MAX_LINE_BYTES) {
      this.overlong = true;
      this.carryLength = 0;
      return;
    }
    chunk.copy(this.carry, this.carryLength, start, end);
    this.carryLength += end - start;
  }

  private finishCarry(): void {
    if (this.overlong) {
      this.lines++;
      this.malformed(Buffer.from('(line longer than the limit)'), 0, 28);
      this.overlong = false;
    } else {
      this.line(this.carry, 0, this.carryLength);
    }
    this.carryLength = 0;
  }

  private line(buf: Buffer, start: number, end: number): void {
    if (end === start) return;
    this.lines++;
    if (parseLine(buf, start, end, this.parsed, this.states)) this.tally.add(this.parsed);
    else this.malformed(buf, start, end);
  }

  private malformed(buf: Buffer, start: number, end: number): void {
    this.errors++;
    this.firstError ??= buf.toString('latin1', start, Math.min(end, start + 200));
  }
}
