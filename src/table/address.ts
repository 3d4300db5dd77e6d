/**
 * IP addresses as they appear in conntrack lines, parsed straight from bytes.
 *
 * The scan handles a million lines per pass, so addresses are never turned
 * into strings while scanning: they are parsed into four 32-bit words (IPv4
 * in word 3, the others 0) and only the few that end up in a metric label are
 * formatted. The kernel prints IPv6 uncompressed (`%pI6`), conntrack-tools
 * compressed (inet_ntop); both parse to the same words.
 */

/** Parses dotted-quad IPv4 in [start, end) into `out[3]`; false if malformed. */
export function parseIPv4(buf: Uint8Array, start: number, end: number, out: Uint32Array): boolean {
  return scanIPv4(buf, start, end, out) === end;
}

/**
 * Parses dotted-quad IPv4 from `start` up to a space, newline or `limit` into
 * `out[3]`. Returns where it stopped, or -1 if that is not an IPv4 address.
 */
export function scanIPv4(buf: Uint8Array, start: number, limit: number, out: Uint32Array): number {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  let p = start;
  for (; p < limit; p++) {
    const c = buf[p] as number;
    if (c === 0x20 || c === 0x0a) break;
    if (c >= 0x30 && c <= 0x39) {
      octet = octet * 10 + (c - 0x30);
      if (++digits > 3 || octet > 255) return -1;
    } else if (c === 0x2e && digits > 0 && dots < 3) {
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  out[0] = 0;
  out[1] = 0;
  out[2] = 0;
  out[3] = value * 256 + octet;
  return p;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

const groups = new Uint16Array(8);
const embedded = new Uint32Array(4);

/**
 * Parses IPv6 text in [start, end) (full or `::`-compressed, optionally with
 * a trailing dotted IPv4) into four words; false if malformed.
 */
export function parseIPv6(buf: Uint8Array, start: number, end: number, out: Uint32Array): boolean {
  let n = 0; // groups written
  let gap = -1; // group index where "::" stands
  let p = start;
  if (end - start >= 2 && buf[p] === 0x3a && buf[p + 1] === 0x3a) {
    gap = 0;
    p += 2;
  }
  while (p < end) {
    if (n === 8) return false;
    // A trailing dotted quad fills the last two groups.
    let q = p;
    let value = 0;
    while (q < end && q - p < 4) {
      const h = hexValue(buf[q] as number);
      if (h < 0) break;
      value = value * 16 + h;
      q++;
    }
    if (q < end && buf[q] === 0x2e) {
      if (n > 6 || !parseIPv4(buf, p, end, embedded)) return false;
      const v4 = embedded[3] as number;
      groups[n++] = v4 >>> 16;
      groups[n++] = v4 & 0xffff;
      p = end;
      break;
    }
    if (q === p) return false;
    groups[n++] = value;
    p = q;
    if (p === end) break;
    if (buf[p] !== 0x3a) return false;
    p++;
    if (p < end && buf[p] === 0x3a) {
      if (gap >= 0) return false;
      gap = n;
      p++;
    } else if (p === end) {
      return false; // a trailing single colon
    }
  }
  if (gap < 0) {
    if (n !== 8) return false;
  } else {
    if (n > 7) return false;
    // Shift the groups after the gap to the end and zero the gap.
    const tail = n - gap;
    for (let i = 0; i < tail; i++) groups[7 - i] = groups[n - 1 - i] as number;
    for (let i = gap; i < 8 - tail; i++) groups[i] = 0;
  }
  for (let i = 0; i < 4; i++) out[i] = (groups[2 * i] as number) * 65536 + (groups[2 * i + 1] as number);
  return true;
}

/** Dotted-quad text of a 32-bit IPv4 value. */
export function formatIPv4(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`;
}

/**
 * IPv6 text as inet_ntop writes it (RFC 5952): lower-case hex, no leading
 * zeros, the first longest run of two or more zero groups as `::`, and IPv4
 * embedded in ::ffff:a.b.c.d and ::a.b.c.d. So labels match `conntrack -L`.
 */
export function formatIPv6(words: ArrayLike<number>): string {
  const g: number[] = [];
  for (let i = 0; i < 4; i++) {
    const w = words[i] as number;
    g.push(w >>> 16, w & 0xffff);
  }
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) bestStart = -1;
  const v4Tail =
    bestStart === 0 && (bestLen === 6 || (bestLen === 5 && g[5] === 0xffff)) ? formatIPv4((words[3] as number) >>> 0) : '';
  const parts: string[] = [];
  const last = v4Tail ? 6 : 8;
  for (let i = 0; i < last; i++) {
    if (i === bestStart) {
      parts.push(i === 0 ? ':' : '');
      i += bestLen - 1;
      if (i === last - 1) parts.push('');
      continue;
    }
    parts.push((g[i] as number).toString(16));
  }
  const head = parts.join(':');
  return v4Tail ? `${head}${head.endsWith(':') ? '' : ':'}${v4Tail}` : head;
}
