/**
 * Source `kmsg`: records read from /dev/kmsg (`--kernel-log.kmsg-path`).
 *
 * Every read() of /dev/kmsg returns exactly one record. The device is opened
 * O_NONBLOCK and drained on a short timer until EAGAIN: a blocking read would
 * park a libuv thread-pool thread that close() cannot wake, so stop() could
 * never release it.
 *
 * Starting at the end: the kernel would do this with lseek(fd, 0, SEEK_END),
 * which Node cannot call. Draining the backlog until the first EAGAIN and
 * discarding it is equivalent: it leaves the file position exactly where
 * SEEK_END would have put it at the moment of the EAGAIN (after the newest
 * record), and records printed while draining belong to the same instant for
 * every practical purpose. `--kernel-log.from-start` counts the backlog instead.
 *
 * Lost records: a read fails with EPIPE when the ring buffer overwrote the
 * records at our position; the kernel then moves the position to the oldest
 * remaining record. Every record carries a sequence number, so the exact
 * number lost is the gap between consecutive sequence numbers.
 *
 * Needs read access to /dev/kmsg: root or CAP_SYSLOG when
 * kernel.dmesg_restrict=1, and in a container the device itself.
 */
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { classifyKmsgRecord, parseKmsgRecord } from '../classify.js';
import type { LineSink, LineSource } from '../source.js';

/** One read(): the record's length, 'again' when there is none yet, 'overrun' on EPIPE. */
export type RecordRead = number | 'again' | 'overrun';

/** The device, as an interface so that tests can feed records without /dev/kmsg. */
export interface RecordDevice {
  read(buf: Buffer): RecordRead;
  close(): void;
}

export class KmsgDeviceError extends Error {
  override readonly name = 'KmsgDeviceError';
}

/** Opens a /dev/kmsg-like device non-blocking. Throws KmsgDeviceError with the cause. */
export function openKmsgDevice(path: string): RecordDevice {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw new KmsgDeviceError(`cannot open ${path}: ${(err as Error).message}`, { cause: err });
  }
  let open = true;
  return {
    read(buf) {
      try {
        // /dev/kmsg never returns 0; a regular file given as the device does at its end.
        const n = readSync(fd, buf, 0, buf.length, null);
        return n === 0 ? 'again' : n;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return 'again';
        if (code === 'EPIPE') return 'overrun';
        throw new KmsgDeviceError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
      }
    },
    close() {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

/**
 * How often the device is drained. Each wake-up costs a timer and a failed read (EAGAIN, an
 * exception in Node): at 250 ms that was ~0.05% of a core on an idle exporter, as much as
 * node_exporter's whole idle cost. Once a second still counts a record seconds before the next
 * 15 s scrape, and the ring buffer (128 KiB or more) holds far more than a second of messages.
 */
export const KMSG_POLL_MS = 1000;

export interface KmsgSourceOptions {
  readonly path: string;
  readonly fromStart: boolean;
  /** How often to drain the device (default KMSG_POLL_MS). */
  readonly pollMs?: number;
  /** How often to try opening the device again after a read failure (default 5000 ms). */
  readonly reopenMs?: number;
  /** Replaces opening `path` (tests). */
  readonly open?: (path: string) => RecordDevice;
}

/** Records read per timer tick before yielding to the event loop. */
const BATCH = 4096;
/** A record is at most CONSOLE_EXT_LOG_MAX (8 KiB); a shorter buffer makes read() fail with EINVAL. */
const RECORD_BUFFER = 16 * 1024;

export class KmsgSource implements LineSource {
  readonly name = 'kmsg' as const;
  readonly description: string;
  private device: RecordDevice | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly buf = Buffer.allocUnsafe(RECORD_BUFFER);
  private lastSeq: number | undefined;
  private failure: Error | undefined;
  private stopped = false;

  constructor(private readonly opts: KmsgSourceOptions) {
    this.description = opts.path;
  }

  async start(sink: LineSink): Promise<void> {
    // A source may be started again after a failed start and stop().
    this.stopped = false;
    this.failure = undefined;
    this.device = (this.opts.open ?? openKmsgDevice)(this.opts.path);
    if (!this.opts.fromStart) this.skipBacklog();
    const tick = (): void => {
      this.timer = undefined;
      if (this.stopped) return;
      if (!this.device) this.reopen();
      const more = this.drain(sink);
      if (this.stopped) return;
      // After a failure, the device is opened again every few seconds.
      const delay = more ? 0 : this.device ? (this.opts.pollMs ?? KMSG_POLL_MS) : (this.opts.reopenMs ?? 5000);
      this.timer = setTimeout(tick, delay);
      this.timer.unref();
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.device?.close();
    this.device = undefined;
  }

  problem(): Error | undefined {
    return this.failure;
  }

  /**
   * Opens the device again after a read failure. Reading starts over at the
   * oldest record, and drain() skips those already read by sequence number.
   */
  private reopen(): void {
    try {
      this.device = (this.opts.open ?? openKmsgDevice)(this.opts.path);
      this.failure = undefined;
    } catch (err) {
      this.failure = err instanceof Error ? err : new Error(String(err));
    }
  }

  /** Reads and discards every record present now, remembering the last sequence number. */
  private skipBacklog(): void {
    const device = this.device as RecordDevice;
    // Bounded in case records arrive faster than they are read.
    for (let i = 0; i < 1_000_000; i++) {
      const r = device.read(this.buf);
      if (r === 'again') return;
      if (r === 'overrun') continue;
      const rec = parseKmsgRecord(this.buf.toString('latin1', 0, r));
      if (rec) this.lastSeq = rec.seq;
    }
  }

  /** Reads up to BATCH records; true when there may be more right away. */
  private drain(sink: LineSink): boolean {
    const device = this.device;
    if (!device) return false;
    try {
      for (let i = 0; i < BATCH; i++) {
        const r = device.read(this.buf);
        if (r === 'again') return false;
        // The position moved to the oldest record; the sequence gap counts what was lost.
        if (r === 'overrun') continue;
        const record = this.buf.toString('latin1', 0, r);
        const seq = parseKmsgRecord(record)?.seq;
        if (seq !== undefined) {
          if (this.lastSeq !== undefined && seq <= this.lastSeq) continue; // read before a reopen
          if (this.lastSeq !== undefined && seq > this.lastSeq + 1) sink.lost(seq - this.lastSeq - 1);
          this.lastSeq = seq;
        }
        sink.line(classifyKmsgRecord(record));
      }
      return true;
    } catch (err) {
      this.failure = err instanceof Error ? err : new Error(String(err));
      device.close();
      this.device = undefined;
      return false;
    }
  }
}
