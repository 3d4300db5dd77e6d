/**
 * Counting keys in bounded memory: exact while the distinct keys fit, a
 * heavy-hitters summary (Misra–Gries with batched decrements) beyond that.
 *
 * A table of a million entries can hold a million distinct destinations;
 * counting them all would cost hundreds of megabytes. This table keeps at
 * most `capacity` keys. When a new key arrives at a full table, it finds the
 * count t held by the (capacity/2)-th largest key, subtracts t from every
 * count and drops the keys that reach 0, which frees at least half the table.
 *
 * Guarantee, for N additions in total: while no purge has happened the
 * counts are exact. After purges, every count is a lower bound of the true
 * count, low by at most `decremented` ≤ 2N/capacity, because each purge
 * removes at least (capacity/2)·t of the N counted units. So every key whose
 * true count exceeds 2N/capacity is present. Each purge costs O(capacity log
 * capacity) and happens at most once per capacity/2 new keys.
 *
 * Keys are fixed-width tuples of 32-bit words, stored in typed arrays with
 * open addressing, so counting allocates nothing. Each key may carry a few
 * payload words, stored when the key is inserted and kept across purges.
 */

export class HeavyHitters {
  /** Keys stored. */
  size = 0;
  /** Sum of the decrements applied by purges: the largest possible undercount. */
  decremented = 0;
  /** Units counted. */
  total = 0;
  /** Slot of the key touched by the last add(). */
  lastSlot = 0;
  private readonly mask: number;
  /** Words stored per slot: the key, then the payload. */
  private readonly stride: number;
  private readonly keys: Uint32Array;
  private readonly counts: Uint32Array;
  private readonly keptKeys: Uint32Array;
  private readonly keptCounts: Uint32Array;
  private readonly sortScratch: Uint32Array;

  /**
   * @param width words per key
   * @param capacity most keys kept (even, ≥ 2); the hash has twice as many slots
   * @param payload extra words stored with each key (not part of it)
   */
  constructor(
    readonly width: number,
    readonly capacity: number,
    readonly payload = 0,
  ) {
    if (!Number.isInteger(width) || width < 1) throw new RangeError(`width must be a positive integer, got ${width}`);
    if (!Number.isInteger(capacity) || capacity < 2 || capacity % 2 !== 0) {
      throw new RangeError(`capacity must be an even integer of at least 2, got ${capacity}`);
    }
    let slots = 4;
    while (slots < capacity * 2) slots *= 2;
    this.mask = slots - 1;
    this.stride = width + payload;
    this.keys = new Uint32Array(slots * this.stride);
    this.counts = new Uint32Array(slots);
    this.keptKeys = new Uint32Array((capacity / 2) * this.stride);
    this.keptCounts = new Uint32Array(capacity / 2);
    this.sortScratch = new Uint32Array(capacity);
  }

  /** Whether every count is exact (no purge happened). */
  get exact(): boolean {
    return this.decremented === 0;
  }

  private hash(key: Uint32Array): number {
    let h = 0x9e3779b9;
    for (let i = 0; i < this.width; i++) {
      h = Math.imul(h ^ (key[i] as number), 0x85ebca6b);
      h ^= h >>> 13;
    }
    h = Math.imul(h, 0xc2b2ae35);
    return (h ^ (h >>> 16)) & this.mask;
  }

  /** The slot holding `key`, or the empty slot where it would go. */
  private find(keys: Uint32Array, counts: Uint32Array, key: Uint32Array): number {
    const w = this.width;
    let slot = this.hash(key);
    for (;;) {
      if (counts[slot] === 0) return slot;
      const base = slot * this.stride;
      let i = 0;
      while (i < w && keys[base + i] === key[i]) i++;
      if (i === w) return slot;
      slot = (slot + 1) & this.mask;
    }
  }

  /**
   * Counts one occurrence of `key` (its first `width` words; a new key also
   * stores the `payload` words after them). Returns the key's count.
   */
  add(key: Uint32Array): number {
    this.total++;
    let slot = this.find(this.keys, this.counts, key);
    this.lastSlot = slot;
    const c = this.counts[slot] as number;
    if (c !== 0) {
      this.counts[slot] = c + 1;
      return c + 1;
    }
    if (this.size === this.capacity) {
      this.purge();
      slot = this.find(this.keys, this.counts, key);
      this.lastSlot = slot;
    }
    const stride = this.stride;
    const base = slot * stride;
    for (let i = 0; i < stride; i++) this.keys[base + i] = key[i] as number;
    this.counts[slot] = 1;
    this.size++;
    return 1;
  }

  /** The count of `key` (0 if absent). */
  get(key: Uint32Array): number {
    const slot = this.find(this.keys, this.counts, key);
    return this.counts[slot] as number;
  }

  private purge(): void {
    const counts = this.counts;
    const keys = this.keys;
    const w = this.stride;
    let n = 0;
    for (let s = 0; s < counts.length; s++) if (counts[s] !== 0) this.sortScratch[n++] = counts[s] as number;
    const sorted = this.sortScratch.subarray(0, n).sort();
    const t = sorted[n - this.capacity / 2] as number;
    this.decremented += t;
    // Open addressing cannot delete in place: set the survivors (fewer than capacity/2) aside, then reinsert them.
    let kept = 0;
    for (let s = 0; s < counts.length; s++) {
      const c = counts[s] as number;
      if (c <= t) continue;
      for (let i = 0; i < w; i++) this.keptKeys[kept * w + i] = keys[s * w + i] as number;
      this.keptCounts[kept++] = c - t;
    }
    counts.fill(0);
    for (let j = 0; j < kept; j++) {
      const key = this.keptKeys.subarray(j * w, j * w + w);
      const slot = this.find(keys, counts, key);
      for (let i = 0; i < w; i++) keys[slot * w + i] = key[i] as number;
      counts[slot] = this.keptCounts[j] as number;
    }
    this.size = kept;
  }

  /** Number of slots; `countAt(slot)` is 0 for an empty one. Iterate slots to read the table without copying. */
  get slotCount(): number {
    return this.counts.length;
  }

  countAt(slot: number): number {
    return this.counts[slot] as number;
  }

  /** Word `i` of the key (i < width) or of the payload (width ≤ i < width + payload) in `slot`. */
  wordAt(slot: number, i: number): number {
    return this.keys[slot * this.stride + i] as number;
  }

  /** Sets payload word `i` (width ≤ i < width + payload) in `slot`. */
  setWordAt(slot: number, i: number, value: number): void {
    if (i < this.width || i >= this.stride) throw new RangeError(`word ${i} is not a payload word`);
    this.keys[slot * this.stride + i] = value;
  }

  /** Adds `delta` to payload word `i` (width ≤ i < width + payload) in `slot`. */
  addToWordAt(slot: number, i: number, delta: number): void {
    if (i < this.width || i >= this.stride) throw new RangeError(`word ${i} is not a payload word`);
    const at = slot * this.stride + i;
    this.keys[at] = (this.keys[at] as number) + delta;
  }

  /** Copies the key and payload in `slot` into `out`. */
  keyAt(slot: number, out: Uint32Array): Uint32Array {
    const base = slot * this.stride;
    for (let i = 0; i < this.stride; i++) out[i] = this.keys[base + i] as number;
    return out;
  }

  /** Forgets every key, keeping the memory. */
  clear(): void {
    this.counts.fill(0);
    this.size = 0;
    this.decremented = 0;
    this.total = 0;
  }
}
