// Types of scripts/kernel-lock.mjs.
export declare const LOCK_DIR: string;
export declare const MAX_PATH: string;
export declare function acquireLock(timeoutMs?: number): Promise<void>;
export declare function releaseLock(): void;
export declare function readConntrackMax(): number;
export declare function setConntrackMax(value: number): () => void;
