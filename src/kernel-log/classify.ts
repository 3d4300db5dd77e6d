/**
 * Recognising conntrack capacity messages in kernel log lines. Pure.
 *
 * The messages and their wording per kernel generation are in
 * shared/reference/kernel-interfaces.md §4. Each sink wraps the same kernel
 * text differently (dmesg stamps, /dev/kmsg record headers, syslog
 * `host kernel:` prefixes, journal JSON); the `classify*` functions here take
 * one line or record in a given shape, reject it unless it contains one of a
 * few anchor substrings (no regular expression runs on ordinary lines), strip
 * the sink's wrapping and match the kernel text from its start. Anchoring at
 * the start is what keeps user-space lines that quote a message
 * (`sshd[123]: … table full, dropping packet`) from counting.
 *
 * Lines are expected as latin1-decoded strings (one char per byte): every
 * message matched is ASCII, so invalid UTF-8 needs no special handling.
 */

export const EVENTS = [
  'table_full',
  'expect_table_full',
  'vmalloc_fallback',
  'helper_drop',
  'timewait_overflow',
  'syn_flood',
] as const;

export type KernelEvent = (typeof EVENTS)[number];

export type Match =
  | { readonly kind: 'event'; readonly event: KernelEvent; readonly netns: string }
  | { readonly kind: 'suppressed'; readonly count: number };

/**
 * Lines longer than this are never kernel messages (the kernel's own limit
 * is about 1 KiB of text; a syslog prefix adds well under 1 KiB).
 */
export const MAX_CLASSIFIED_LENGTH = 16 * 1024;

/**
 * Substrings of which every recognised message contains at least one. A line
 * containing none is rejected after these indexOf passes.
 */
const ANCHORS = ['table full', 'dropping packet', 'suppressed', 'SYN flooding', 'vmalloc', 'time wait bucket'] as const;

export function hasCandidate(line: string): boolean {
  for (const a of ANCHORS) if (line.indexOf(a) >= 0) return true;
  return false;
}

// Kernel text, anchored at the start. Optional prefixes cover the pr_fmt
// doubling (`nf_conntrack: nf_conntrack: …`, 4.x onward) and older forms.
const CT = '(?:ip_conntrack|nf_conntrack): (?:nf_conntrack: )?';
const RULES: readonly { readonly re: RegExp; readonly match: (m: RegExpExecArray) => Match }[] = [
  {
    // 2.4–6.x, with `in netns <inum>` for non-init namespaces since 6.17.
    re: new RegExp(`^${CT}table full(?: in netns (\\d+))?, dropping packet\\.?\\s*$`),
    match: (m) => ({ kind: 'event', event: 'table_full', netns: m[1] ?? '' }),
  },
  {
    re: new RegExp(`^${CT}expectation table full\\s*$`),
    match: () => ({ kind: 'event', event: 'expect_table_full', netns: '' }),
  },
  {
    re: new RegExp(`^${CT}falling back to vmalloc\\.?\\s*$`),
    match: () => ({ kind: 'event', event: 'vmalloc_fallback', netns: '' }),
  },
  {
    // nf_ct_helper_log through nf_log: `nf_ct_ftp: dropping packet: <why> IN=… OUT=…`, with the
    // helper's name (ftp, sip, netbios-ns, Q.931, H.245, …). nf_ct_proto_<n> is invalid-packet logging.
    re: /^nf_ct_(?!proto_\d)[\w.-]+: dropping packet\b/,
    match: () => ({ kind: 'event', event: 'helper_drop', netns: '' }),
  },
  {
    re: /^(?:TCP: )?time wait bucket table overflow\s*$/,
    match: () => ({ kind: 'event', event: 'timewait_overflow', netns: '' }),
  },
  {
    // 2.6: `possible SYN flooding on port 80. Sending cookies.`
    // 3.1–4.3: `TCP: TCP: Possible …  Check SNMP counters.` (TCPv6 for IPv6)
    // 4.4+: `TCP: request_sock_TCP: Possible …`; 6.2+: `on port 192.0.2.1:80` / `[2001:db8::1]:80`.
    re: /^(?:TCP: )?(?:(?:TCP|TCPv6|request_sock_\w+): )?[Pp]ossible SYN flooding on port \S+\. (?:Sending cookies|Dropping request)/,
    match: () => ({ kind: 'event', event: 'syn_flood', netns: '' }),
  },
  {
    // printk_ratelimit (≤2.6.27), lib/ratelimit.c (2.6.28–2.6.3x), ___ratelimit(rs, "net_ratelimit").
    re: /^(?:printk: (\d+) messages suppressed\.?|(?:__ratelimit|net_ratelimit): (\d+) callbacks suppressed)\s*$/,
    match: (m) => ({ kind: 'suppressed', count: Number(m[1] ?? m[2]) }),
  },
];

/** Classifies bare kernel text (what printk produced, without any sink wrapping). */
export function classifyMessage(text: string): Match | undefined {
  if (text.length > MAX_CLASSIFIED_LENGTH || !hasCandidate(text)) return undefined;
  return matchMessage(text);
}

function matchMessage(text: string): Match | undefined {
  for (const rule of RULES) {
    const m = rule.re.exec(text);
    if (m) return rule.match(m);
  }
  return undefined;
}

export interface KmsgRecord {
  /** syslog priority: facility << 3 | level. */
  readonly prio: number;
  readonly seq: number;
  /** Monotonic timestamp in microseconds. */
  readonly usec: number;
  /** The message text (up to the first newline; dictionary lines follow it). */
  readonly text: string;
}

/**
 * Parses one /dev/kmsg record: `prio,seq,usec,flags[,more…];text\n[ KEY=value\n…]`.
 * Extra comma fields (e.g. `caller=T123`) are ignored. Undefined when malformed.
 */
export function parseKmsgRecord(record: string): KmsgRecord | undefined {
  const semi = record.indexOf(';');
  if (semi < 0) return undefined;
  const c1 = record.indexOf(',');
  const c2 = c1 < 0 ? -1 : record.indexOf(',', c1 + 1);
  const c3 = c2 < 0 ? -1 : record.indexOf(',', c2 + 1);
  if (c3 < 0 || c3 > semi) return undefined;
  const prio = toUint(record, 0, c1);
  const seq = toUint(record, c1 + 1, c2);
  const usec = toUint(record, c2 + 1, c3);
  if (prio < 0 || seq < 0 || usec < 0) return undefined;
  let end = record.indexOf('\n', semi + 1);
  if (end < 0) end = record.length;
  return { prio, seq, usec, text: record.slice(semi + 1, end) };
}

/** A non-negative decimal integer in s[from, to), or -1. */
function toUint(s: string, from: number, to: number): number {
  if (to <= from || to - from > 20) return -1;
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/**
 * Classifies a /dev/kmsg record. Records from user space (facility other than
 * kern, e.g. systemd writing to /dev/kmsg) never count.
 */
export function classifyKmsgRecord(record: string): Match | undefined {
  if (record.length > MAX_CLASSIFIED_LENGTH || !hasCandidate(record)) return undefined;
  const r = parseKmsgRecord(record);
  if (!r || r.prio >> 3 !== 0) return undefined;
  return matchMessage(r.text);
}

// Sink wrappings of a text line, tried in this order:
//  syslog: `May 22 06:38:04 web1 kernel: …`, `2023-05-11T12:38:28.123456+00:00 host kernel: …`,
//          `2026-12-02 10:00:00 host kernel: …` (ISO-like, space; also `,123` fractions),
//          busybox syslogd's `Dec  2 10:00:00 host kern.warn kernel: …` (facility.level before
//          the program: only `kern.*` counts), journalctl's short, short-iso
//          (`2026-12-02T10:00:00+0000`) and short-iso-precise formats
//  RFC 5424: `<4>1 2026-12-02T10:00:00.123+00:00 host kernel - - - …` (APP-NAME `kernel`, the
//          kern facility in PRI; structured data `-` or `[…]`, an optional BOM before MSG)
//  kmsg:   `4,344,165062257,-;…` (a file written from /dev/kmsg)
//  dmesg -r: `<4>[  165.062257] …`; dmesg -x: `kern  :warn  : [  165.062257] …`
//  then an optional stamp `[  165.062257] ` / `[Thu May 11 12:38:28 2023] ` (dmesg, dmesg -T,
//  rsyslog imklog), after which journalctl -o short-monotonic still has `host kernel: `.
const SYSLOG_PREFIX =
  /^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?) \S+ (?:([a-z0-9]+)\.[a-z]+ )?([^\s:[]+)(?:\[\d+\])?: /;
// PRI, VERSION 1, TIMESTAMP, HOSTNAME, APP-NAME, PROCID, MSGID, STRUCTURED-DATA, then MSG (which
// may be absent; "\xEF\xBB\xBF" is the UTF-8 BOM read as latin1).
const RFC5424_PREFIX = /^<(\d{1,3})>1 \S+ \S+ (\S+) \S+ \S+ (?:-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?:\xEF\xBB\xBF)?|$)/;
const KMSG_PREFIX = /^\d+,\d+,\d+,[^;]*;/;
const DMESG_RAW_PREFIX = /^<(\d+)>/;
const DMESG_DECODED_PREFIX = /^([a-z]+) *:([a-z]+) *: /;
const STAMP = /^\[[^\]\n]{1,40}\] ?/;
/** CONFIG_PRINTK_CALLER: dmesg prints `[  T123]` (task) or `[  C1]` (CPU) after the stamp. */
const CALLER = /^\[ *[TC]\d+\] ?/;
const HOST_KERNEL = /^\S+ kernel: /;

/**
 * The kernel text inside one log line of any text sink, or undefined when the
 * line is not from the kernel (another syslog program, a user-space facility).
 */
export function parseLogLine(line: string): string | undefined {
  let rest = line;
  let m = SYSLOG_PREFIX.exec(rest);
  if (m) {
    // busybox syslogd names the facility: a user-space program calling itself "kernel" is not it.
    if (m[2] !== 'kernel' || (m[1] !== undefined && m[1] !== 'kern')) return undefined;
    rest = rest.slice(m[0].length);
  } else if ((m = RFC5424_PREFIX.exec(rest))) {
    if (m[2] !== 'kernel' || Number(m[1]) >> 3 !== 0) return undefined;
    rest = rest.slice(m[0].length);
  } else if (KMSG_PREFIX.test(rest)) {
    const r = parseKmsgRecord(rest);
    return r && r.prio >> 3 === 0 ? r.text : undefined;
  } else if ((m = DMESG_RAW_PREFIX.exec(rest))) {
    if (Number(m[1]) >> 3 !== 0) return undefined;
    rest = rest.slice(m[0].length);
  } else if ((m = DMESG_DECODED_PREFIX.exec(rest))) {
    if (m[1] !== 'kern') return undefined;
    rest = rest.slice(m[0].length);
  }
  const stamp = STAMP.exec(rest);
  if (stamp) {
    rest = rest.slice(stamp[0].length);
    const caller = CALLER.exec(rest);
    if (caller) rest = rest.slice(caller[0].length);
    const hk = HOST_KERNEL.exec(rest);
    if (hk) rest = rest.slice(hk[0].length);
  }
  return rest;
}

/** Classifies one line of a text sink: a log file, dmesg output or journalctl's short formats. */
export function classifyLogLine(line: string): Match | undefined {
  if (line.length > MAX_CLASSIFIED_LENGTH || !hasCandidate(line)) return undefined;
  const text = parseLogLine(line);
  return text === undefined ? undefined : matchMessage(text);
}

/** The text of a journal entry's MESSAGE as latin1 (one char per byte), or undefined. */
export function journalMessage(entry: Record<string, unknown>): string | undefined {
  const m = entry['MESSAGE'];
  // The line was decoded as latin1, so a string MESSAGE already holds one char per byte.
  if (typeof m === 'string') return m;
  // journalctl -o json prints non-UTF-8 fields as arrays of byte values.
  if (Array.isArray(m) && m.length <= MAX_CLASSIFIED_LENGTH && m.every((b) => Number.isInteger(b) && b >= 0 && b < 256)) {
    return Buffer.from(m as number[]).toString('latin1');
  }
  // null: a field larger than journalctl's limit (4096 bytes without --all).
  return undefined;
}

/**
 * Classifies one line of `journalctl -o json`. The JSON is parsed only when
 * the raw line holds an anchor or a MESSAGE given as a byte array.
 */
export function classifyJournalLine(line: string): Match | undefined {
  if (line.length > 4 * MAX_CLASSIFIED_LENGTH) return undefined;
  if (!hasCandidate(line) && line.indexOf('"MESSAGE":[') < 0) return undefined;
  let entry: unknown;
  try {
    entry = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return undefined;
  const e = entry as Record<string, unknown>;
  // -k selects _TRANSPORT=kernel; user-space writes to /dev/kmsg carry another facility.
  const facility = e['SYSLOG_FACILITY'];
  if (facility !== undefined && facility !== '0') return undefined;
  const text = journalMessage(e);
  return text === undefined ? undefined : classifyMessage(text);
}

/** The `__CURSOR` of a `journalctl -o json` line, without parsing the JSON. */
export function journalCursor(line: string): string | undefined {
  const key = '"__CURSOR":"';
  const i = line.indexOf(key);
  if (i < 0) return undefined;
  const j = line.indexOf('"', i + key.length);
  return j < 0 ? undefined : line.slice(i + key.length, j);
}
