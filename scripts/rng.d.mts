// Types of scripts/rng.mjs.
export declare function rng(seed: number): () => number;
