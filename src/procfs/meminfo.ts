/**
 * `/proc/meminfo`: `Name:   value kB` lines (a few, such as HugePages_Total,
 * are plain counts without a unit).
 */
import { ParseError } from './fs.js';

/** Parses meminfo into name → value, converting `kB` to bytes. Pure; throws ParseError on a malformed line. */
export function parseMeminfo(text: string, source = 'meminfo'): Map<string, number> {
  const out = new Map<string, number>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (line === '') continue;
    const m = /^([A-Za-z0-9_()]+):\s+(\d+)(?:\s+(kB))?$/.exec(line);
    if (!m) throw new ParseError(`${source}: line ${i + 1} is malformed: ${JSON.stringify(line.slice(0, 60))}`);
    const value = Number(m[2]) * (m[3] === 'kB' ? 1024 : 1);
    // A digit run too long for a double (Infinity) is as malformed as a letter (found by scripts/fuzz.mjs).
    if (!Number.isSafeInteger(value)) throw new ParseError(`${source}: line ${i + 1}: ${m[1]} value out of range`);
    out.set(m[1] as string, value);
  }
  return out;
}
