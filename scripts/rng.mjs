// mulberry32: a seeded pseudo-random generator in [0, 1), so a failure can be
// replayed from its seed. Plain JavaScript so that scripts/fuzz.mjs can use it
// without a build; test/helpers/rng.ts re-exports it. Types: rng.d.mts.
export function rng(seed) {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
