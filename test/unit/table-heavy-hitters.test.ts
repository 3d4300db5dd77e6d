import { describe, expect, it } from 'vitest';
import { HeavyHitters } from '../../src/table/heavy-hitters.js';
import { rng } from '../helpers/rng.js';

function key(...words: number[]): Uint32Array {
  return Uint32Array.from(words);
}

describe('HeavyHitters', () => {
  it('counts exactly while the distinct keys fit', () => {
    const hh = new HeavyHitters(2, 8);
    for (let i = 0; i < 8; i++) for (let n = 0; n <= i; n++) hh.add(key(i, 1000 + i));
    expect(hh.exact).toBe(true);
    expect(hh.size).toBe(8);
    for (let i = 0; i < 8; i++) expect(hh.get(key(i, 1000 + i))).toBe(i + 1);
    expect(hh.get(key(9, 9))).toBe(0);
    // Keys differing only in the second word are distinct.
    expect(hh.get(key(0, 1001))).toBe(0);
  });

  it('reads its slots without copying', () => {
    const hh = new HeavyHitters(3, 4);
    hh.add(key(1, 2, 3));
    hh.add(key(1, 2, 3));
    const seen: [number[], number][] = [];
    for (let s = 0; s < hh.slotCount; s++) {
      if (hh.countAt(s) > 0) seen.push([[hh.wordAt(s, 0), hh.wordAt(s, 1), hh.wordAt(s, 2)], hh.countAt(s)]);
    }
    expect(seen).toEqual([[[1, 2, 3], 2]]);
  });

  it('keeps every key above 2N/capacity and undercounts by at most the decrements, which stay below 2N/capacity', () => {
    const capacity = 64;
    const hh = new HeavyHitters(1, capacity);
    const truth = new Map<number, number>();
    const random = rng(42);
    // Ten heavy keys take half the stream; the rest is spread over 100,000 light keys.
    const N = 200_000;
    for (let i = 0; i < N; i++) {
      const k = random() < 0.5 ? Math.floor(random() * 10) : 1000 + Math.floor(random() * 100_000);
      truth.set(k, (truth.get(k) ?? 0) + 1);
      hh.add(key(k));
    }
    expect(hh.exact).toBe(false);
    expect(hh.size).toBeLessThanOrEqual(capacity);
    expect(hh.total).toBe(N);
    expect(hh.decremented).toBeLessThanOrEqual((2 * N) / capacity);
    const violations: string[] = [];
    let heavy = 0;
    for (const [k, count] of truth) {
      const estimate = hh.get(key(k));
      if (estimate > count || estimate < count - hh.decremented) violations.push(`key ${k}: ${estimate} for ${count}`);
      if (count > (2 * N) / capacity) {
        heavy++;
        if (estimate === 0) violations.push(`heavy key ${k} (${count}) lost`);
      }
    }
    expect(violations).toEqual([]);
    expect(heavy).toBe(10);
  });

  it('stores payload words with a new key, returns counts, and keeps payloads across purges', () => {
    const hh = new HeavyHitters(1, 4, 2);
    expect(hh.add(key(7, 70, 71))).toBe(1);
    expect(hh.add(key(7, 99, 99))).toBe(2);
    const slot = hh.lastSlot;
    expect([hh.wordAt(slot, 1), hh.wordAt(slot, 2)]).toEqual([70, 71]);
    hh.setWordAt(slot, 2, 5);
    expect(() => hh.setWordAt(slot, 0, 1)).toThrow(RangeError);
    for (let i = 0; i < 20; i++) hh.add(key(7, 0, 0));
    for (let i = 0; i < 10; i++) hh.add(key(100 + i, 0, 0));
    expect(hh.exact).toBe(false);
    const kept = Array.from({ length: hh.slotCount }, (_, s) => s).find((s) => hh.countAt(s) > 0 && hh.wordAt(s, 0) === 7);
    expect(kept).toBeDefined();
    expect([hh.wordAt(kept!, 1), hh.wordAt(kept!, 2)]).toEqual([70, 5]);
  });

  it('forgets everything on clear and rejects a bad shape', () => {
    const hh = new HeavyHitters(1, 2);
    for (let i = 0; i < 10; i++) hh.add(key(i));
    hh.clear();
    expect([hh.size, hh.total, hh.decremented, hh.get(key(9))]).toEqual([0, 0, 0, 0]);
    expect(() => new HeavyHitters(0, 2)).toThrow(RangeError);
    expect(() => new HeavyHitters(1, 3)).toThrow(RangeError);
  });
});
