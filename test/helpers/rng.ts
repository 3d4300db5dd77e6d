/** mulberry32: a seeded pseudo-random generator in [0, 1), shared with scripts/fuzz.mjs. */
export { rng } from '../../scripts/rng.mjs';
