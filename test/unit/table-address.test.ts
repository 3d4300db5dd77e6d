import { describe, expect, it } from 'vitest';
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from '../../src/table/address.js';

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');

function v6(text: string): number[] | undefined {
  const out = new Uint32Array(4);
  const b = bytes(text);
  return parseIPv6(b, 0, b.length, out) ? [...out] : undefined;
}

describe('parseIPv4 / formatIPv4', () => {
  it.each(['0.0.0.0', '10.0.0.5', '93.184.216.34', '255.255.255.255'])('round-trips %s', (text) => {
    const out = new Uint32Array(4);
    const b = bytes(text);
    expect(parseIPv4(b, 0, b.length, out)).toBe(true);
    expect(out[0]! + out[1]! + out[2]!).toBe(0);
    expect(formatIPv4(out[3]!)).toBe(text);
  });

  it.each(['10.0.0', '10.0.0.256', '10.0.0.1.2', '10..0.1', '1234.0.0.1', 'a.b.c.d', ''])('rejects %j', (text) => {
    const b = bytes(text);
    expect(parseIPv4(b, 0, b.length, new Uint32Array(4))).toBe(false);
  });
});

describe('parseIPv6', () => {
  it('parses the kernel uncompressed form and the compressed form to the same words', () => {
    const full = v6('2001:0db8:0000:0000:0000:0000:0000:0001');
    expect(full).toEqual([0x20010db8, 0, 0, 1]);
    expect(v6('2001:db8::1')).toEqual(full);
    expect(v6('::1')).toEqual([0, 0, 0, 1]);
    expect(v6('::')).toEqual([0, 0, 0, 0]);
    expect(v6('fe80::')).toEqual([0xfe800000, 0, 0, 0]);
    expect(v6('FE80::ABCD:1')).toEqual([0xfe800000, 0, 0, 0xabcd0001]);
    expect(v6('::ffff:10.0.0.9')).toEqual([0, 0, 0xffff, 0x0a000009]);
  });

  it.each(['2001:db8:::1', '2001:db8::1::2', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '12345::1', '1:', 'g::1', '::ffff:10.0.0.300'])(
    'rejects %j',
    (text) => expect(v6(text)).toBeUndefined(),
  );
});

describe('formatIPv6 (as inet_ntop / RFC 5952)', () => {
  it.each([
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['0000:0000:0000:0000:0000:0000:0000:0001', '::1'],
    ['0000:0000:0000:0000:0000:0000:0000:0000', '::'],
    ['2001:0db8:0000:0000:0000:0000:0000:0000', '2001:db8::'],
    ['2001:0db8:0000:0001:0000:0000:0000:0001', '2001:db8:0:1::1'],
    ['2001:0db8:0000:0000:0001:0000:0000:0001', '2001:db8::1:0:0:1'],
    ['2001:0db8:0001:0001:0001:0001:0001:0001', '2001:db8:1:1:1:1:1:1'],
    ['fe80:0000:0000:0000:0202:b3ff:fe1e:8329', 'fe80::202:b3ff:fe1e:8329'],
    ['0000:0000:0000:0000:0000:ffff:0a00:0009', '::ffff:10.0.0.9'],
    ['0000:0000:0000:0000:0000:0000:0102:0304', '::1.2.3.4'],
  ])('%s → %s', (full, expected) => {
    const words = v6(full);
    expect(words).toBeDefined();
    expect(formatIPv6(words!)).toBe(expected);
  });
});
