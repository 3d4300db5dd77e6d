/**
 * What one scan of the table adds up to: entries by family, protocol and
 * state, entries per flag, and the busiest original-direction destinations
 * with the most source ports one source address holds toward each (the
 * source as the reply direction names it: the translated address of a
 * source-NATed entry, whose ports it holds).
 *
 * Memory is fixed however large the table: the per-state and per-flag
 * counts live in flat arrays indexed by family, protocol number and state id,
 * and destinations and (source, destination) pairs are counted in bounded
 * heavy-hitter tables (see heavy-hitters.ts for the accuracy guarantee).
 */
import { formatIPv4, formatIPv6 } from './address.js';
import { HeavyHitters } from './heavy-hitters.js';
import { FLAG_NAMES, MAX_STATES, type ParsedLine, type StateNames } from './line.js';

/** Kernel tracker names by IP protocol number; others are labelled with the number. */
const PROTOCOL_NAMES = new Map<number, string>([
  [1, 'icmp'],
  [6, 'tcp'],
  [17, 'udp'],
  [33, 'dccp'],
  [47, 'gre'],
  [58, 'icmpv6'],
  [132, 'sctp'],
  [136, 'udplite'],
]);

export function protocolName(protocol: number): string {
  return PROTOCOL_NAMES.get(protocol) ?? String(protocol);
}

export type Family = 'ipv4' | 'ipv6';

export interface EntryCount {
  readonly family: Family;
  readonly protocol: string;
  readonly state: string;
  readonly count: number;
}

export interface FlagCount {
  readonly family: Family;
  readonly protocol: string;
  readonly flag: (typeof FLAG_NAMES)[number];
  readonly count: number;
}

export interface DestinationCount {
  readonly protocol: string;
  /** IPv4 dotted or IPv6 compressed. */
  readonly destination: string;
  /** Decimal port, or '' for protocols without ports (icmp, gre, unknown). */
  readonly port: string;
  readonly entries: number;
  /**
   * The most entries (hence distinct source ports) any one source address
   * has toward this destination; undefined for protocols without ports.
   */
  readonly sourcePorts: number | undefined;
}

export interface TableSummary {
  readonly entries: EntryCount[];
  readonly flags: FlagCount[];
  /** Top destinations by entries, most first. */
  readonly destinations: DestinationCount[];
  /** Largest possible undercount of a destination's entries (0: exact). */
  readonly destinationsError: number;
  /** Largest possible undercount of a source-ports value (0: exact). */
  readonly sourcePortsError: number;
}

/** Words per destination key: address (4) + family/ports/protocol/port (1). */
const DEST_WIDTH = 5;
/** Words per (destination, source) key: destination key + source address (4). */
const PAIR_WIDTH = 9;
/**
 * Payload of a destination key: its first entry's source address (4) and
 * whether that entry's pair is still to be counted (1). Most destinations of
 * a big table have a single entry, which can never decide the source-ports
 * maximum; holding the first pair back until a second entry arrives saves
 * the pair lookup for all of them.
 */
const DEST_PAYLOAD = 5;
const PENDING_WORD = PAIR_WIDTH;

export interface TallyOptions {
  /** How many top destinations to report (0: skip destination counting). */
  readonly topDestinations: number;
  /** Distinct keys counted exactly before the heavy-hitter summary takes over (even). */
  readonly keyCapacity?: number;
}

export const DEFAULT_KEY_CAPACITY = 16_384;

/** Key words in tie-break order: protocol/port word, then the address. */
const KEY_ORDER = [4, 0, 1, 2, 3] as const;

export class TableTally {
  private readonly entryCounts = new Float64Array(2 * 256 * MAX_STATES);
  private readonly flagCounts = new Float64Array(2 * 256 * FLAG_NAMES.length);
  private readonly perProtocol = new Float64Array(2 * 256);
  private readonly destinations: HeavyHitters | undefined;
  private readonly pairs: HeavyHitters | undefined;
  private readonly key = new Uint32Array(PAIR_WIDTH + 1);
  private readonly firstKey = new Uint32Array(PAIR_WIDTH + 1);
  readonly topDestinations: number;

  constructor(
    private readonly states: StateNames,
    options: TallyOptions,
  ) {
    this.topDestinations = options.topDestinations;
    if (this.topDestinations > 0) {
      const capacity = options.keyCapacity ?? DEFAULT_KEY_CAPACITY;
      this.destinations = new HeavyHitters(DEST_WIDTH, capacity, DEST_PAYLOAD);
      this.pairs = new HeavyHitters(PAIR_WIDTH, capacity);
    }
  }

  add(line: ParsedLine): void {
    const family = line.family === 6 ? 1 : 0;
    const base = (family << 8) | line.protocol;
    this.perProtocol[base]!++;
    this.entryCounts[base * MAX_STATES + line.state]!++;
    const flags = line.flags;
    if (flags !== 0) {
      for (let bit = 0; bit < FLAG_NAMES.length; bit++) {
        if (flags & (1 << bit)) this.flagCounts[base * FLAG_NAMES.length + bit]!++;
      }
    }
    if (this.destinations === undefined || this.pairs === undefined) return;
    const key = this.key;
    const dst = line.dst;
    key[0] = dst[0] as number;
    key[1] = dst[1] as number;
    key[2] = dst[2] as number;
    key[3] = dst[3] as number;
    key[4] = (family << 25) | ((line.hasPorts ? 1 : 0) << 24) | (line.protocol << 16) | line.dport;
    // The source whose ports the entry holds: the reply direction's destination (the NAT address
    // for source-NATed entries, else the original source).
    const src = line.replyDst;
    key[5] = src[0] as number;
    key[6] = src[1] as number;
    key[7] = src[2] as number;
    key[8] = src[3] as number;
    key[PENDING_WORD] = 1;
    const dests = this.destinations;
    const count = dests.add(key);
    if (!line.hasPorts || count < 2) return;
    const slot = dests.lastSlot;
    if (dests.wordAt(slot, PENDING_WORD) === 1) {
      // The destination's first entry (source kept in the payload) joins its pairs now.
      this.pairs.add(dests.keyAt(slot, this.firstKey));
      dests.setWordAt(slot, PENDING_WORD, 0);
    }
    this.pairs.add(key);
  }

  /** Forgets the counts, keeping the memory, for the next scan. */
  reset(): void {
    this.entryCounts.fill(0);
    this.flagCounts.fill(0);
    this.perProtocol.fill(0);
    this.destinations?.clear();
    this.pairs?.clear();
  }

  summary(): TableSummary {
    const entries: EntryCount[] = [];
    const flags: FlagCount[] = [];
    for (let base = 0; base < this.perProtocol.length; base++) {
      if (this.perProtocol[base] === 0) continue;
      const family: Family = base >> 8 ? 'ipv6' : 'ipv4';
      const protocol = protocolName(base & 255);
      for (let s = 0; s < MAX_STATES; s++) {
        const count = this.entryCounts[base * MAX_STATES + s] as number;
        if (count > 0) entries.push({ family, protocol, state: this.states.name(s), count });
      }
      FLAG_NAMES.forEach((flag, bit) => {
        flags.push({ family, protocol, flag, count: this.flagCounts[base * FLAG_NAMES.length + bit] as number });
      });
    }
    return {
      entries,
      flags,
      destinations: this.topList(),
      destinationsError: this.destinations?.decremented ?? 0,
      // A held-back first pair is lost if its destination is dropped by a purge before its second entry.
      sourcePortsError: (this.pairs?.decremented ?? 0) + (this.destinations?.decremented ?? 0),
    };
  }

  /** Whether slot a ranks above slot b: more entries, then the lower key (a stable order for ties). */
  private static ranksAbove(t: HeavyHitters, a: number, b: number): boolean {
    const ca = t.countAt(a);
    const cb = t.countAt(b);
    if (ca !== cb) return ca > cb;
    for (const i of KEY_ORDER) {
      const wa = t.wordAt(a, i);
      const wb = t.wordAt(b, i);
      if (wa !== wb) return wa < wb;
    }
    return false;
  }

  private topList(): DestinationCount[] {
    const dests = this.destinations;
    const pairs = this.pairs;
    const k = this.topDestinations;
    if (!dests || !pairs || k === 0) return [];
    // The k best slots, best first, by insertion: cheap because k is small and few slots beat the k-th.
    const top: number[] = [];
    for (let slot = 0; slot < dests.slotCount; slot++) {
      if (dests.countAt(slot) === 0) continue;
      if (top.length === k && !TableTally.ranksAbove(dests, slot, top[k - 1] as number)) continue;
      let i = Math.min(top.length, k - 1);
      if (top.length < k) top.push(slot);
      while (i > 0 && TableTally.ranksAbove(dests, slot, top[i - 1] as number)) {
        top[i] = top[i - 1] as number;
        i--;
      }
      top[i] = slot;
    }

    // Most source ports per top destination: the largest count among pairs with that destination.
    const best = new Array<number>(top.length).fill(0);
    const word4 = new Set(top.map((slot) => dests.wordAt(slot, 4)));
    for (let p = 0; p < pairs.slotCount; p++) {
      const count = pairs.countAt(p);
      if (count === 0 || !word4.has(pairs.wordAt(p, 4))) continue;
      for (let i = 0; i < top.length; i++) {
        const slot = top[i] as number;
        if (
          count > (best[i] as number) &&
          pairs.wordAt(p, 4) === dests.wordAt(slot, 4) &&
          pairs.wordAt(p, 3) === dests.wordAt(slot, 3) &&
          pairs.wordAt(p, 2) === dests.wordAt(slot, 2) &&
          pairs.wordAt(p, 1) === dests.wordAt(slot, 1) &&
          pairs.wordAt(p, 0) === dests.wordAt(slot, 0)
        ) {
          best[i] = count;
        }
      }
    }

    return top.map((slot, i) => {
      const key = dests.keyAt(slot, new Uint32Array(DEST_WIDTH));
      const w = key[4] as number;
      const hasPorts = ((w >>> 24) & 1) === 1;
      return {
        protocol: protocolName((w >>> 16) & 255),
        destination: w >>> 25 ? formatIPv6(key) : formatIPv4(key[3] as number),
        port: hasPorts ? String(w & 0xffff) : '',
        entries: dests.countAt(slot),
        // A destination with entries has at least one source; after purges its pairs may have been dropped.
        sourcePorts: hasPorts ? Math.max(best[i] as number, 1) : undefined,
      };
    });
  }
}
