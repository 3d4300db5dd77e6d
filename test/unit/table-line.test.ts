import { describe, expect, it } from 'vitest';
import { formatIPv4, formatIPv6 } from '../../src/table/address.js';
import { FLAG_NAMES, ParsedLine, parseLine, StateNames } from '../../src/table/line.js';

interface Fields {
  family: number;
  protocol: number;
  state: string;
  flags: string[];
  src: string;
  dst: string;
  dport: number | undefined;
}

function parse(text: string): Fields | undefined {
  const states = new StateNames();
  const out = new ParsedLine();
  const buf = Buffer.from(text, 'latin1');
  if (!parseLine(buf, 0, buf.length, out, states)) return undefined;
  const addr = (w: Uint32Array): string => (out.family === 6 ? formatIPv6(w) : formatIPv4(w[3]!));
  return {
    family: out.family,
    protocol: out.protocol,
    state: states.name(out.state),
    flags: FLAG_NAMES.filter((_, bit) => out.flags & (1 << bit)),
    src: addr(out.src),
    dst: addr(out.dst),
    dport: out.hasPorts ? out.dport : undefined,
  };
}

// One line per format in kernel-interfaces.md §1.4, plus the variants of §1.2.
describe('parseLine', () => {
  it('tcp with state and [ASSURED]', () => {
    expect(
      parse(
        'ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.0.5 dst=93.184.216.34 sport=51234 dport=443 src=93.184.216.34 dst=10.0.0.5 sport=443 dport=51234 [ASSURED] mark=0 zone=0 use=2',
      ),
    ).toEqual({ family: 4, protocol: 6, state: 'ESTABLISHED', flags: ['assured'], src: '10.0.0.5', dst: '93.184.216.34', dport: 443 });
  });

  it('tcp SYN_SENT with [UNREPLIED] after the original tuple', () => {
    expect(
      parse(
        'ipv4     2 tcp      6 119 SYN_SENT src=10.0.0.5 dst=198.51.100.7 sport=40000 dport=80 [UNREPLIED] src=198.51.100.7 dst=10.0.0.5 sport=80 dport=40000 mark=0 zone=0 use=2',
      ),
    ).toMatchObject({ state: 'SYN_SENT', flags: ['unreplied'], dport: 80 });
  });

  it('ipv6 uncompressed addresses', () => {
    expect(
      parse(
        'ipv6     10 tcp      6 299 ESTABLISHED src=2001:0db8:0000:0000:0000:0000:0000:0005 dst=2001:0db8:0000:0000:0000:0000:0000:0001 sport=51234 dport=22 src=2001:0db8:0000:0000:0000:0000:0000:0001 dst=2001:0db8:0000:0000:0000:0000:0000:0005 sport=22 dport=51234 [ASSURED] mark=0 zone=0 use=2',
      ),
    ).toEqual({ family: 6, protocol: 6, state: 'ESTABLISHED', flags: ['assured'], src: '2001:db8::5', dst: '2001:db8::1', dport: 22 });
  });

  it('udp without state; packets/bytes and delta-time', () => {
    expect(
      parse(
        'ipv4     2 udp      17 118 src=10.0.0.5 dst=10.0.0.1 sport=123 dport=123 packets=4 bytes=304 src=10.0.0.1 dst=10.0.0.5 sport=123 dport=123 packets=4 bytes=304 [ASSURED] mark=0 zone=0 delta-time=12 use=2',
      ),
    ).toEqual({ family: 4, protocol: 17, state: 'none', flags: ['assured'], src: '10.0.0.5', dst: '10.0.0.1', dport: 123 });
  });

  it('zone-orig/zone-reply and secctx', () => {
    expect(
      parse(
        'ipv4     2 udp      17 30 src=10.0.0.7 dst=10.0.0.1 sport=5353 dport=53 zone-orig=5 src=10.0.0.1 dst=10.0.0.7 sport=53 dport=5353 zone-reply=5 mark=0 secctx=system_u:object_r:unlabeled_t:s0 use=2',
      ),
    ).toMatchObject({ protocol: 17, state: 'none', flags: [], dport: 53 });
  });

  it('icmp and icmpv6 have no ports', () => {
    expect(
      parse(
        'ipv4     2 icmp     1 29 src=10.0.0.5 dst=8.8.8.8 type=8 code=0 id=4242 src=8.8.8.8 dst=10.0.0.5 type=0 code=0 id=4242 mark=0 zone=0 use=2',
      ),
    ).toEqual({ family: 4, protocol: 1, state: 'none', flags: [], src: '10.0.0.5', dst: '8.8.8.8', dport: undefined });
    expect(
      parse(
        'ipv6     10 icmpv6   58 29 src=2001:0db8:0000:0000:0000:0000:0000:0005 dst=2001:0db8:0000:0000:0000:0000:0000:0001 type=128 code=0 id=7 src=2001:0db8:0000:0000:0000:0000:0000:0001 dst=2001:0db8:0000:0000:0000:0000:0000:0005 type=129 code=0 id=7 mark=0 zone=0 use=2',
      ),
    ).toMatchObject({ family: 6, protocol: 58, state: 'none', dport: undefined });
  });

  it('sctp and dccp states', () => {
    expect(
      parse(
        'ipv4     2 sctp     132 209 ESTABLISHED src=10.0.0.5 dst=10.0.0.9 sport=5000 dport=5000 src=10.0.0.9 dst=10.0.0.5 sport=5000 dport=5000 [ASSURED] mark=0 zone=0 use=2',
      ),
    ).toMatchObject({ protocol: 132, state: 'ESTABLISHED', dport: 5000 });
    expect(
      parse(
        'ipv4     2 dccp     33 43199 OPEN src=10.0.0.5 dst=10.0.0.9 sport=5001 dport=5001 src=10.0.0.9 dst=10.0.0.5 sport=5001 dport=5001 [ASSURED] mark=0 zone=0 use=2',
      ),
    ).toMatchObject({ protocol: 33, state: 'OPEN', dport: 5001 });
  });

  it('gre "timeout=…, stream_timeout=…" is not a state; keys are not ports', () => {
    expect(
      parse(
        'ipv4     2 gre      47 179 timeout=30, stream_timeout=180 src=10.0.0.5 dst=10.0.0.9 srckey=0x0 dstkey=0x0 src=10.0.0.9 dst=10.0.0.5 srckey=0x0 dstkey=0x0 [ASSURED] mark=0 zone=0 use=2',
      ),
    ).toEqual({ family: 4, protocol: 47, state: 'none', flags: ['assured'], src: '10.0.0.5', dst: '10.0.0.9', dport: undefined });
  });

  it('udplite and unknown N', () => {
    expect(
      parse(
        'ipv4     2 udplite  136 29 src=10.0.0.5 dst=10.0.0.9 sport=7000 dport=7000 [UNREPLIED] src=10.0.0.9 dst=10.0.0.5 sport=7000 dport=7000 mark=0 zone=0 use=2',
      ),
    ).toMatchObject({ protocol: 136, flags: ['unreplied'], dport: 7000 });
    expect(parse('ipv4     2 unknown  50 599 src=10.0.0.5 dst=10.0.0.9 src=10.0.0.9 dst=10.0.0.5 mark=0 zone=0 use=2')).toEqual({
      family: 4,
      protocol: 50,
      state: 'none',
      flags: [],
      src: '10.0.0.5',
      dst: '10.0.0.9',
      dport: undefined,
    });
  });

  it('offloaded entries: no timeout, and TCP without state', () => {
    expect(
      parse(
        'ipv4     2 tcp      6 src=1.1.1.17 dst=1.1.1.16 sport=56394 dport=5001 src=1.1.1.16 dst=1.1.1.17 sport=5001 dport=56394 [HW_OFFLOAD] mark=0 zone=0 use=3',
      ),
    ).toMatchObject({ protocol: 6, state: 'none', flags: ['hw_offload'], dport: 5001 });
    expect(
      parse(
        'ipv4     2 udp      17 src=1.1.1.17 dst=1.1.1.16 sport=56394 dport=5001 src=1.1.1.16 dst=1.1.1.17 sport=5001 dport=56394 [OFFLOAD] mark=0 zone=0 use=3',
      ),
    ).toMatchObject({ protocol: 17, state: 'none', flags: ['offload'] });
  });

  it('the old /proc/net/ip_conntrack layout (no l3 columns), with LISTEN', () => {
    expect(
      parse(
        'tcp      6 60 LISTEN src=10.0.0.5 dst=10.0.0.9 sport=51236 dport=3306 packets=1 bytes=60 [UNREPLIED] src=10.0.0.9 dst=10.0.0.5 sport=3306 dport=51236 packets=0 bytes=0 mark=0 use=1',
      ),
    ).toEqual({ family: 4, protocol: 6, state: 'LISTEN', flags: ['unreplied'], src: '10.0.0.5', dst: '10.0.0.9', dport: 3306 });
  });

  it('conntrack -L -o extended: compressed IPv6 and v4-mapped addresses', () => {
    expect(
      parse(
        'ipv6     10 udp      17 29 src=::1 dst=::ffff:10.0.0.9 sport=1000 dport=53 [UNREPLIED] src=::ffff:10.0.0.9 dst=::1 sport=53 dport=1000 mark=0 use=1',
      ),
    ).toEqual({ family: 6, protocol: 17, state: 'none', flags: ['unreplied'], src: '::1', dst: '::ffff:10.0.0.9', dport: 53 });
  });

  it.each([
    ['truncated after sport', 'ipv4     2 udp      17 29 src=10.0.0.5 dst=10.0.0.1 sport=1'],
    ['unknown l3 name', 'ipv5     2 udp      17 29 src=10.0.0.5 dst=10.0.0.1 sport=2 dport=53 use=2'],
    ['l3 number not matching', 'ipv4     10 udp      17 29 src=10.0.0.5 dst=10.0.0.1 sport=2 dport=53 use=2'],
    ['bad IPv4', 'ipv4     2 udp      17 29 src=10.0.0.300 dst=10.0.0.1 sport=3 dport=53 use=2'],
    ['lower-case state', 'ipv4     2 tcp      6 29 established src=10.0.0.5 dst=10.0.0.1 sport=4 dport=53 use=2'],
    ['families mixed', 'ipv4     2 udp      17 29 src=2001:db8::1 dst=10.0.0.1 sport=5 dport=53 use=2'],
    ['two states', 'ipv4     2 tcp      6 29 SYN_SENT SYN_RECV src=10.0.0.5 dst=10.0.0.1 sport=7 dport=53 use=2'],
    ['port out of range', 'ipv4     2 udp      17 29 src=10.0.0.5 dst=10.0.0.1 sport=8 dport=99999 use=2'],
    ['no tuple', 'ipv4     2 udp      17 29 mark=0 use=2'],
    ['no dst', 'ipv4     2 udp      17 29 src=10.0.0.5 sport=8 dport=53 use=2'],
    ['garbage', 'garbage'],
    ['over-long', `ipv4     2 udp      17 29 src=10.0.0.5 dst=10.0.0.1 sport=8 dport=53 ${'x'.repeat(5000)} use=2`],
  ])('rejects %s', (_what, line) => {
    expect(parse(line)).toBeUndefined();
  });
});

describe('StateNames', () => {
  it('interns by bytes and caps the number of names', () => {
    const states = new StateNames();
    const b = Buffer.from('TIME_WAIT ESTABLISHED TIME_WAIT');
    const a = states.intern(b, 0, 9);
    expect(states.intern(b, 10, 21)).not.toBe(a);
    expect(states.intern(b, 22, 31)).toBe(a);
    expect(states.name(a)).toBe('TIME_WAIT');
    expect(states.name(0)).toBe('none');
    let last = 0;
    for (let i = 0; i < 100; i++) last = states.intern(Buffer.from(`S${i}`), 0, `S${i}`.length);
    expect(last).toBe(-1);
  });
});
