import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  classifyJournalLine,
  classifyKmsgRecord,
  classifyLogLine,
  classifyMessage,
  journalCursor,
  parseKmsgRecord,
  parseLogLine,
  type Match,
} from '../../src/kernel-log/classify.js';
import { LineSplitter } from '../../src/kernel-log/line-splitter.js';
import { journalArgs } from '../../src/kernel-log/sources/journal.js';
import { REPO_ROOT } from '../helpers/kernel.js';

const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'kernel-log');

const ev = (event: string, netns = ''): Match => ({ kind: 'event', event, netns }) as Match;
const sup = (count: number): Match => ({ kind: 'suppressed', count });

/** Every wording in kernel-interfaces.md §4, as the kernel prints it, with what it must count as. */
const MESSAGES: readonly [string, Match][] = [
  ['ip_conntrack: table full, dropping packet.', ev('table_full')],
  ['nf_conntrack: table full, dropping packet.', ev('table_full')],
  ['nf_conntrack: table full, dropping packet', ev('table_full')],
  ['nf_conntrack: nf_conntrack: table full, dropping packet', ev('table_full')],
  ['nf_conntrack: nf_conntrack: table full in netns 4026532177, dropping packet', ev('table_full', '4026532177')],
  ['nf_conntrack: expectation table full', ev('expect_table_full')],
  ['nf_conntrack: falling back to vmalloc.', ev('vmalloc_fallback')],
  ['nf_ct_ftp: dropping packet: partial response IN=eth0 OUT= SRC=192.0.2.9 DST=192.0.2.1 LEN=60 PROTO=TCP SPT=21 DPT=40000 ', ev('helper_drop')],
  ['nf_ct_Q.931: dropping packet: H.245 conversion failed IN=eth0 OUT= ', ev('helper_drop')],
  ['nf_ct_netbios-ns: dropping packet: cannot add expectation IN=eth0 OUT= ', ev('helper_drop')],
  ['TCP: time wait bucket table overflow', ev('timewait_overflow')],
  ['possible SYN flooding on port 80. Sending cookies.', ev('syn_flood')],
  ['TCP: TCP: Possible SYN flooding on port 80. Sending cookies.  Check SNMP counters.', ev('syn_flood')],
  ['TCP: request_sock_TCP: Possible SYN flooding on port 80. Sending cookies.  Check SNMP counters.', ev('syn_flood')],
  ['TCP: request_sock_TCPv6: Possible SYN flooding on port 80. Dropping request.  Check SNMP counters.', ev('syn_flood')],
  ['TCP: request_sock_TCP: Possible SYN flooding on port 192.0.2.1:80. Sending cookies.', ev('syn_flood')],
  ['TCP: request_sock_TCPv6: Possible SYN flooding on port [2001:db8::1]:80. Sending cookies.', ev('syn_flood')],
  ['printk: 2758 messages suppressed.', sup(2758)],
  ['__ratelimit: 61 callbacks suppressed', sup(61)],
  ['net_ratelimit: 3939 callbacks suppressed', sup(3939)],
];

/** Each sink's wrapping of kernel text at warning level, and the classifier that reads that sink. */
const SHAPES: readonly [string, (text: string) => string, (line: string) => Match | undefined][] = [
  ['bare text', (t) => t, classifyLogLine],
  ['dmesg', (t) => `[  165.062257] ${t}`, classifyLogLine],
  ['dmesg -T', (t) => `[Thu May 11 12:38:28 2023] ${t}`, classifyLogLine],
  ['dmesg, CONFIG_PRINTK_CALLER', (t) => `[  165.062257] [  T1234] ${t}`, classifyLogLine],
  ['dmesg -x', (t) => `kern  :warn  : [  165.062257] ${t}`, classifyLogLine],
  ['dmesg -r', (t) => `<4>[  165.062257] ${t}`, classifyLogLine],
  ['kmsg record', (t) => `4,344,165062257,-;${t}`, classifyKmsgRecord],
  ['kmsg record with caller', (t) => `4,344,165062257,-,caller=T123;${t}\n SUBSYSTEM=net`, classifyKmsgRecord],
  ['kmsg record in a file', (t) => `4,344,165062257,-;${t}`, classifyLogLine],
  ['rsyslog kern.log', (t) => `May 22 06:38:04 web1 kernel: [38775494.392631] ${t}`, classifyLogLine],
  ['rsyslog, single-digit day', (t) => `May  2 06:38:04 web1 kernel: [38775494.392631] ${t}`, classifyLogLine],
  ['RHEL messages (no stamp)', (t) => `Mar 14 03:12:18 dbhost01 kernel: ${t}`, classifyLogLine],
  ['RFC 3339', (t) => `2023-05-11T12:38:28.123456+00:00 host kernel: ${t}`, classifyLogLine],
  ['RFC 3339 with stamp', (t) => `2023-05-11T12:38:28.123456+00:00 host kernel: [  165.062257] ${t}`, classifyLogLine],
  ['journalctl -k', (t) => `May 11 12:38:28 host kernel: ${t}`, classifyLogLine],
  ['journalctl -o short-monotonic', (t) => `[  165.062257] host kernel: ${t}`, classifyLogLine],
  [
    'journal JSON',
    (t) => JSON.stringify({ __CURSOR: 's=1;i=2', PRIORITY: '4', SYSLOG_FACILITY: '0', _TRANSPORT: 'kernel', MESSAGE: t }),
    classifyJournalLine,
  ],
  [
    'journal JSON, MESSAGE as bytes',
    (t) => JSON.stringify({ __CURSOR: 's=1;i=3', _TRANSPORT: 'kernel', MESSAGE: [...Buffer.from(t, 'latin1')] }),
    classifyJournalLine,
  ],
];

describe('every message in every sink shape', () => {
  for (const [shape, wrap, classify] of SHAPES) {
    it(shape, () => {
      for (const [text, expected] of MESSAGES) expect(classify(wrap(text)), `${shape}: ${text}`).toEqual(expected);
    });
  }
  it('bare kernel text', () => {
    for (const [text, expected] of MESSAGES) expect(classifyMessage(text)).toEqual(expected);
  });
});

/** Lines that mention the messages but must never count. */
const NOISE: readonly string[] = [
  // other conntrack lines
  'nf_conntrack version 0.5.0 (65536 buckets, 262144 max)',
  'ip_conntrack version 2.4 (8192 buckets, 65536 max) - 228 bytes per conntrack',
  'nf_conntrack: automatic helper assignment is deprecated and it will be removed soon. Use the iptables CT target to attach helpers instead.',
  'nf_conntrack: default automatic helper assignment has been turned off for security reasons and CT-based  firewall rule not found. Use the iptables CT target to attach helpers instead.',
  "conntrack: generic helper won't handle protocol 47. Please consider loading the specific helper module.",
  'nf_ct_proto_6: invalid tcp flag combination IN=eth0 OUT= SRC=192.0.2.9 DST=192.0.2.1 LEN=40 PROTO=TCP SPT=1 DPT=2 ',
  'nf_ct_proto_17: dropping packet: bad checksum IN=eth0 OUT= ',
  'kauditd_printk_skb: 12 callbacks suppressed',
  'nf_conntrack: nf_conntrack: table full, dropping packet and more',
  // user space quoting the message
  'sshd[123]: error: nf_conntrack: table full, dropping packet',
  'May 22 06:38:10 web1 sshd[1234]: nf_conntrack: table full, dropping packet',
  'May 22 06:38:13 web1 logger: nf_conntrack: nf_conntrack: table full, dropping packet',
  '2023-05-11T12:38:35.5+00:00 host containerd[812]: nf_conntrack: nf_conntrack: table full, dropping packet',
  'Mar 14 03:12:33 dbhost01 postfix/smtpd[2211]: net_ratelimit: 5 callbacks suppressed',
  'grep "nf_conntrack: table full, dropping packet" /var/log/kern.log',
  '12,344,165062257,-;nf_conntrack: nf_conntrack: table full, dropping packet',
  '<12>[  165.062257] nf_conntrack: nf_conntrack: table full, dropping packet',
  'user  :warn  : [  165.062257] nf_conntrack: nf_conntrack: table full, dropping packet',
  '',
  ' SUBSYSTEM=pci',
];

describe('noise', () => {
  it('never matches other conntrack lines or user space quoting a message', () => {
    for (const line of NOISE) {
      expect(classifyLogLine(line), line).toBeUndefined();
      expect(classifyMessage(line.startsWith('nf_') || line.startsWith('k') ? line : `x ${line}`), line).toBeUndefined();
    }
  });

  it('rejects user-space facilities in kmsg and the journal', () => {
    expect(classifyKmsgRecord('12,344,165062257,-;nf_conntrack: nf_conntrack: table full, dropping packet')).toBeUndefined();
    expect(classifyKmsgRecord('14,345,165062258,-;net_ratelimit: 99 callbacks suppressed')).toBeUndefined();
    const fromLogger = JSON.stringify({ SYSLOG_FACILITY: '1', _TRANSPORT: 'kernel', MESSAGE: 'nf_conntrack: table full, dropping packet' });
    expect(classifyJournalLine(fromLogger)).toBeUndefined();
  });

  it('survives binary garbage, invalid UTF-8, malformed JSON and a 1 MB line', () => {
    const garbage = Buffer.alloc(4096);
    for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 131 + 7) % 256;
    expect(classifyLogLine(garbage.toString('latin1'))).toBeUndefined();
    const invalid = Buffer.concat([Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from(' nf_conntrack: table full, dropping packet')]);
    expect(classifyLogLine(invalid.toString('latin1'))).toBeUndefined();
    // Invalid UTF-8 elsewhere in a real kernel line does not stop it from counting.
    const stamped = Buffer.concat([Buffer.from('May 22 06:38:04 h\xe9\xff kernel: ', 'latin1'), Buffer.from('nf_conntrack: table full, dropping packet')]);
    expect(classifyLogLine(stamped.toString('latin1'))).toEqual(ev('table_full'));
    expect(classifyJournalLine('{"MESSAGE":"nf_conntrack: table full, dropping packet"')).toBeUndefined();
    expect(classifyJournalLine('{"MESSAGE":[256,-1,"x"],"t":"table full"}')).toBeUndefined();
    expect(classifyJournalLine('["nf_conntrack: table full, dropping packet"]')).toBeUndefined();
    const huge = 'nf_conntrack: table full, dropping packet ' + 'x'.repeat(1024 * 1024);
    expect(classifyLogLine(huge)).toBeUndefined();
    expect(classifyKmsgRecord(`4,1,1,-;${huge}`)).toBeUndefined();
    expect(classifyMessage(huge)).toBeUndefined();
  });
});

/** Per fixture: the classifier for its sink and the events and suppressed sum it must yield. */
const FIXTURE_EXPECTATIONS: readonly [string, (line: string) => Match | undefined, Record<string, number>][] = [
  ['kmsg-6.18.txt', classifyKmsgRecord, { 'table_full/': 2, 'table_full/4026532177': 2, 'table_full/4026532401': 1, 'syn_flood/': 2, 'expect_table_full/': 1, 'helper_drop/': 1, suppressed: 3939 }],
  ['kmsg-6.18.txt', classifyLogLine, { 'table_full/': 2, 'table_full/4026532177': 2, 'table_full/4026532401': 1, 'syn_flood/': 2, 'expect_table_full/': 1, 'helper_drop/': 1, suppressed: 3939 }],
  ['dmesg-6.18.txt', classifyLogLine, { 'table_full/4026532177': 2, 'table_full/': 1, 'syn_flood/': 1, suppressed: 120 }],
  ['dmesg-T-4.19.txt', classifyLogLine, { 'table_full/': 2, 'syn_flood/': 2, suppressed: 2758 }],
  ['dmesg-x-5.10.txt', classifyLogLine, { 'table_full/': 1, 'expect_table_full/': 1, suppressed: 17 }],
  ['dmesg-r-4.9.txt', classifyLogLine, { 'table_full/': 1, suppressed: 5 }],
  ['kern.log-ubuntu-4.15.txt', classifyLogLine, { 'table_full/': 3, 'syn_flood/': 1, 'helper_drop/': 1, suppressed: 312 }],
  ['messages-rhel7-3.10.txt', classifyLogLine, { 'table_full/': 2, 'timewait_overflow/': 1, 'syn_flood/': 2, 'vmalloc_fallback/': 1, suppressed: 61 }],
  ['messages-rhel6-2.6.32.txt', classifyLogLine, { 'table_full/': 3, 'syn_flood/': 1, 'timewait_overflow/': 1, suppressed: 61 }],
  ['messages-2.6.18.txt', classifyLogLine, { 'table_full/': 2, suppressed: 2770 }],
  ['syslog-rfc3339-6.1.txt', classifyLogLine, { 'table_full/': 2, 'expect_table_full/': 1, suppressed: 44 }],
  ['journal-short-6.1.txt', classifyLogLine, { 'table_full/': 2, suppressed: 7 }],
  // busybox syslogd (OpenWrt, Alpine): `host kern.warn kernel:`; user.* writing as "kernel" does not count.
  ['busybox-syslogd-5.15.txt', classifyLogLine, { 'table_full/': 3, 'table_full/4026532177': 1, 'syn_flood/': 1, suppressed: 213 }],
  // `YYYY-MM-DD HH:MM:SS host kernel:` (syslog-ng, rsyslog date templates), also with fractions and offsets.
  ['syslog-iso-space-5.4.txt', classifyLogLine, { 'table_full/': 3, suppressed: 65 }],
  // RFC 5424 files (rsyslog RSYSLOG_SyslogProtocol23Format, syslog-ng): PRI of the kern facility, APP-NAME kernel.
  ['rfc5424-6.1.txt', classifyLogLine, { 'table_full/': 4, 'table_full/4026532177': 1, suppressed: 61 }],
  // journalctl -o short-iso / short-iso-precise.
  ['journal-short-iso-6.18.txt', classifyLogLine, { 'table_full/4026532177': 2, 'table_full/': 2, suppressed: 2758 }],
  ['journal-6.1.json', classifyJournalLine, { 'table_full/4026532177': 1, 'table_full/4026532400': 1, 'table_full/': 1, 'syn_flood/': 1, suppressed: 250 }],
];

function tally(text: string, classify: (line: string) => Match | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = classify(line);
    if (!m) continue;
    const key = m.kind === 'suppressed' ? 'suppressed' : `${m.event}/${m.netns}`;
    out[key] = (out[key] ?? 0) + (m.kind === 'suppressed' ? m.count : 1);
  }
  return out;
}

describe('log excerpts per kernel generation and sink (test/fixtures/kernel-log)', () => {
  for (const [file, classify, expected] of FIXTURE_EXPECTATIONS) {
    it(`${file} (${classify.name})`, () => {
      expect(tally(readFileSync(join(FIXTURES, file), 'latin1'), classify)).toEqual(expected);
    });
  }
});

describe('parsers', () => {
  it('parseKmsgRecord reads the header and ignores extra fields and dictionary lines', () => {
    expect(parseKmsgRecord('4,344,165062257,-;nf_conntrack: x')).toEqual({ prio: 4, seq: 344, usec: 165062257, text: 'nf_conntrack: x' });
    expect(parseKmsgRecord('6,7,8,c,caller=T12;text;with;semicolons\n SUBSYSTEM=pci\n')).toEqual({ prio: 6, seq: 7, usec: 8, text: 'text;with;semicolons' });
    expect(parseKmsgRecord('4,344;no usec')).toBeUndefined();
    expect(parseKmsgRecord('x,1,2,-;text')).toBeUndefined();
    expect(parseKmsgRecord('no header at all')).toBeUndefined();
  });

  it('parseLogLine unwraps each sink and refuses other programs', () => {
    expect(parseLogLine('May 22 06:38:04 web1 kernel: [38775494.392631] TCP: x')).toBe('TCP: x');
    expect(parseLogLine('May 22 06:38:04 web1 sshd[12]: TCP: x')).toBeUndefined();
    expect(parseLogLine('kern  :warn  : [  1.000000] TCP: x')).toBe('TCP: x');
    expect(parseLogLine('[Thu May 11 12:38:28 2023] TCP: x')).toBe('TCP: x');
    // busybox syslogd: facility.level before the program; only kern.* is the kernel.
    expect(parseLogLine('Dec  2 10:00:00 host kern.warn kernel: TCP: x')).toBe('TCP: x');
    expect(parseLogLine('Dec  2 10:00:00 host kern.warn kernel: [  813.004211] TCP: x')).toBe('TCP: x');
    expect(parseLogLine('Dec  2 10:00:00 host user.notice kernel: TCP: x')).toBeUndefined();
    expect(parseLogLine('Dec  2 10:00:00 host daemon.info dnsmasq[12]: TCP: x')).toBeUndefined();
    // ISO-like dates with a space, and journalctl -o short-iso(-precise).
    expect(parseLogLine('2026-12-02 10:00:00 host kernel: TCP: x')).toBe('TCP: x');
    expect(parseLogLine('2026-12-02 10:00:00,512 host kernel: TCP: x')).toBe('TCP: x');
    expect(parseLogLine('2026-12-02T10:00:00+0000 host kernel: TCP: x')).toBe('TCP: x');
    expect(parseLogLine('2026-12-02T10:00:00.123456+00:00 host kernel: TCP: x')).toBe('TCP: x');
    expect(parseLogLine('2026-12-02 10:00:00 host sshd[1]: TCP: x')).toBeUndefined();
    // RFC 5424: structured data `-` or `[…]` (with escaped `]`), a BOM, a nil timestamp.
    expect(parseLogLine('<4>1 2026-12-02T10:00:00.123+00:00 host kernel - - - TCP: x')).toBe('TCP: x');
    expect(parseLogLine('<4>1 2026-12-02T10:00:00.123+00:00 host kernel - - [a b="c\\]d"][e] TCP: x')).toBe('TCP: x');
    expect(parseLogLine('<4>1 - host kernel - - - \xEF\xBB\xBFTCP: x')).toBe('TCP: x');
    expect(parseLogLine('<4>1 - host kernel - - -')).toBe('');
    expect(parseLogLine('<12>1 2026-12-02T10:00:00Z host kernel - - - TCP: x')).toBeUndefined();
    expect(parseLogLine('<4>1 2026-12-02T10:00:00Z host sshd 12 - - TCP: x')).toBeUndefined();
    // dmesg -r is not mistaken for RFC 5424.
    expect(parseLogLine('<4>[  165.062257] TCP: x')).toBe('TCP: x');
  });

  it('journalCursor and journalArgs', () => {
    expect(journalCursor('{"__CURSOR":"s=ab;i=1f","MESSAGE":"x"}')).toBe('s=ab;i=1f');
    expect(journalCursor('{"MESSAGE":"x"}')).toBeUndefined();
    expect(journalArgs(false, undefined)).toEqual(['-k', '-f', '-o', 'json', '--no-pager', '--lines=0']);
    expect(journalArgs(true, undefined)).toEqual(['-k', '-f', '-o', 'json', '--no-pager', '--no-tail']);
    expect(journalArgs(false, 's=1')).toEqual(['-k', '-f', '-o', 'json', '--no-pager', '--after-cursor=s=1', '--no-tail']);
  });
});

describe('LineSplitter', () => {
  const split = (chunks: Buffer[], max?: number): (string | undefined)[] => {
    const out: (string | undefined)[] = [];
    const s = new LineSplitter((l) => out.push(l), max);
    for (const c of chunks) s.push(c);
    s.flush();
    return out;
  };

  it('joins lines across chunk boundaries and strips CR', () => {
    expect(split([Buffer.from('ab'), Buffer.from('c\nde'), Buffer.from('f\r\n\ng')])).toEqual(['abc', 'def', '', 'g']);
  });

  it('keeps bytes as latin1 and never throws on invalid UTF-8', () => {
    expect(split([Buffer.from([0xff, 0xc3, 0x0a])])).toEqual(['\xff\xc3']);
  });

  it('reports an overlong line once, as undefined, without buffering it', () => {
    const big = Buffer.alloc(1024 * 1024, 0x61);
    const out: (string | undefined)[] = [];
    const s = new LineSplitter((l) => out.push(l), 1000);
    for (let i = 0; i < big.length; i += 4096) {
      s.push(big.subarray(i, i + 4096));
      expect(s.pending).toBeLessThanOrEqual(1000);
    }
    s.push(Buffer.from('\nshort\n'));
    expect(out).toEqual([undefined, 'short']);
    expect(split([Buffer.from('x'.repeat(2000) + '\nok\n')], 1000)).toEqual([undefined, 'ok']);
  });
});
