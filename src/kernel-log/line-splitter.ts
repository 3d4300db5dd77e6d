/**
 * Splits a byte stream into lines with bounded memory.
 *
 * Lines are decoded as latin1 (one char per byte: cheap, and never fails on
 * invalid UTF-8). A partial line is carried to the next chunk, but only up to
 * `maxLine` bytes: a longer line is reported once, when its newline arrives,
 * as `undefined` (counted, never classified), so a 1 GB line costs no more
 * memory than a short one.
 */

export const DEFAULT_MAX_LINE = 64 * 1024;

export class LineSplitter {
  private carry: Buffer[] = [];
  private carryLength = 0;
  private overlong = false;

  constructor(
    /** Called with each complete line (without `\n` or a trailing `\r`), or undefined for an overlong line. */
    private readonly onLine: (line: string | undefined) => void,
    private readonly maxLine = DEFAULT_MAX_LINE,
  ) {}

  /** Feeds bytes; complete lines are emitted synchronously. */
  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) break;
      if (this.carryLength === 0 && !this.overlong) {
        this.emit(chunk, start, nl);
      } else {
        this.append(chunk, start, nl);
        const whole = this.overlong ? undefined : Buffer.concat(this.carry, this.carryLength);
        this.carry = [];
        this.carryLength = 0;
        if (whole) this.emit(whole, 0, whole.length);
        else this.onLine(undefined);
        this.overlong = false;
      }
      start = nl + 1;
    }
    if (start < chunk.length) this.append(chunk, start, chunk.length);
  }

  /** Emits a pending partial line (end of a file that did not end with a newline). */
  flush(): void {
    if (this.carryLength === 0 && !this.overlong) return;
    const whole = this.overlong ? undefined : Buffer.concat(this.carry, this.carryLength);
    this.carry = [];
    this.carryLength = 0;
    this.overlong = false;
    if (whole) this.emit(whole, 0, whole.length);
    else this.onLine(undefined);
  }

  /** Drops a pending partial line without emitting it. */
  reset(): void {
    this.carry = [];
    this.carryLength = 0;
    this.overlong = false;
  }

  get pending(): number {
    return this.carryLength;
  }

  private append(chunk: Buffer, from: number, to: number): void {
    if (this.overlong) return;
    if (this.carryLength + (to - from) > this.maxLine) {
      this.overlong = true;
      this.carry = [];
      this.carryLength = 0;
      return;
    }
    // Copy: the caller may reuse its read buffer.
    this.carry.push(Buffer.from(chunk.subarray(from, to)));
    this.carryLength += to - from;
  }

  private emit(buf: Buffer, from: number, to: number): void {
    if (to > from && buf[to - 1] === 13) to--;
    if (to - from > this.maxLine) {
      this.onLine(undefined);
      return;
    }
    this.onLine(buf.toString('latin1', from, to));
  }
}
