/**
 * What one scan of the table adds up to: entries by family, protocol and
 * state, entries per flag, entries per destination port, and the busiest
 * original-direction destinations, each with its entries by state and the
 * most source ports one source address holds toward it (the source as the
 * reply direction names it: the translated address of a source-NATed entry,
 * whose ports it holds).
 *
 * Memory is fixed however large the table: the per-state and per-flag
 * counts live in flat arrays indexed by family, protocol number and state id,
 * destination ports in one 65,536-slot array per protocol with ports, and
 * destinations and (source, destination) pairs are counted in bounded
 * heavy-hitter tables (see heavy-hitters.ts for the accuracy guarantee).
 *
 * A destination's per-state counts ride in its heavy-hitter slot, so they
 * count every entry seen since the destination (last) entered the table:
 * exact while no purge happened; after purges each is a lower bound, low by
 * at most the entries the destination had before it last entered the
 * table, which is at most `destinationsError`. Its reported entries are the
 * sum of its state counts (the same bound; tighter than the summary's own
 * count, which purges decrement further).
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

export interface StateCount {
  readonly state: string;
  readonly entries: number;
}

export interface PortCount {
  readonly protocol: string;
  /** Decimal original-direction destination port. */
  readonly port: string;
  readonly entries: number;
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
  /**
   * The source address holding `sourcePorts` (IPv4 dotted or IPv6 compressed;
   * the translated address for source-NATed entries); undefined where
   * sourcePorts is, or where no entry toward the destination holds a port.
   */
  readonly busiestSource: string | undefined;
  /** Whether any entry of that source toward the destination is source-NATed (reply dst ≠ original src). */
  readonly busiestSourceTranslated: boolean;
  /** Entries by state (`none` for stateless protocols), most first; they add up to `entries`. */
  readonly states: StateCount[];
}

export interface TableSummary {
  readonly entries: EntryCount[];
  readonly flags: FlagCount[];
  /** Top destinations by entries, most first. */
  readonly destinations: DestinationCount[];
  /** Top destination ports by entries (both families together), most first. */
  readonly ports: PortCount[];
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
 * Payload of a destination key: its first entry's source address (4), the
 * first entry's PENDING_* bits (1), and its entries per state (STATE_SLOTS).
 * Most destinations of a big table have a single entry, which can never
 * decide the source-ports maximum; holding the first pair back until a
 * second entry arrives saves the pair lookup for all of them.
 */
const PENDING_WORD = PAIR_WIDTH;
/** The first entry's pair is still to be counted. */
const PENDING = 1;
/** The entry is source-NATed (its reply destination is not its original source). */
const TRANSLATED = 2;
/** The entry holds its source's port (see TallyOptions.timeWaitReleased). */
const HOLDS_PORT = 4;
/**
 * Per-state counters per destination. A destination has one protocol, and no
 * kernel tracker has more than 11 state names (TCP: 10 and `none` for
 * offloaded entries); a 12th and later name of one protocol (only garbage
 * lines could make one) is counted in the last slot as OTHER_STATE.
 */
const STATE_SLOTS = 12;
export const OTHER_STATE = 'other';
const STATE_WORD = PENDING_WORD + 1;
const DEST_PAYLOAD = 4 + 1 + STATE_SLOTS;
/** Payload of a (destination, source) key: TRANSLATED if any of its entries is. */
const PAIR_PAYLOAD = 1;
const PAIR_FLAGS_WORD = PAIR_WIDTH;
/** Protocol numbers with ports that get a port array (others have no sport/dport in the table). */
const TCP = 6;
/** Most ports reported, whatever is asked: each top port is one series per scan. */
export const MAX_TOP_PORTS = 1000;
/** Ports per protocol: a dense count array. */
const PORTS = 65_536;
/** The kernel's socket TIME_WAIT (TCP_TIMEWAIT_LEN, fixed at 60 s). */
export const SOCKET_TIME_WAIT_SECONDS = 60;

export interface TallyOptions {
  /** How many top destinations to report (0: skip destination counting). */
  readonly topDestinations: number;
  /** How many top destination ports to report (0: skip port counting; at most MAX_TOP_PORTS). */
  readonly topPorts?: number;
  /**
   * conntrack's TCP TIME_WAIT timeout of the scanned table (nf_conntrack_tcp_timeout_time_wait,
   * 120 s by default). A TIME_WAIT entry that is not source-NATed and whose remaining timeout is at
   * most this minus the socket's 60 s TIME_WAIT has been closed longer than any socket keeps the
   * port: it no longer holds one and is left out of the source ports. Undefined: every entry counts.
   */
  readonly conntrackTimeWaitSeconds?: number;
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
  /** Key scratch: destination and pair key, then the destination payload (state words stay 0). */
  private readonly key = new Uint32Array(PAIR_WIDTH + DEST_PAYLOAD);
  private readonly firstKey = new Uint32Array(PAIR_WIDTH + DEST_PAYLOAD);
  /** (protocol × MAX_STATES + state id) → per-destination state slot, -1 unassigned. */
  private readonly stateSlot = new Int8Array(256 * MAX_STATES).fill(-1);
  /** (protocol × STATE_SLOTS + slot) → state id (for slots below the last). */
  private readonly slotState = new Int16Array(256 * STATE_SLOTS);
  private readonly slotsUsed = new Uint8Array(256);
  /** Entries per destination port, per protocol number, allocated at the protocol's first entry. */
  private readonly portCounts: (Uint32Array | undefined)[] = new Array<Uint32Array | undefined>(256).fill(undefined);
  /** State id of TCP's TIME_WAIT once seen (-1 before). */
  private timeWait = -1;
  /** Remaining timeout at or below which a TIME_WAIT entry holds no socket's port (-1: never). */
  private readonly releasedAtOrBelow: number;
  readonly topDestinations: number;
  readonly topPorts: number;

  constructor(
    private readonly states: StateNames,
    options: TallyOptions,
  ) {
    this.topDestinations = options.topDestinations;
    this.topPorts = Math.min(options.topPorts ?? 0, MAX_TOP_PORTS);
    if (this.topDestinations > 0) {
      const capacity = options.keyCapacity ?? DEFAULT_KEY_CAPACITY;
      this.destinations = new HeavyHitters(DEST_WIDTH, capacity, DEST_PAYLOAD);
      this.pairs = new HeavyHitters(PAIR_WIDTH, capacity, PAIR_PAYLOAD);
    }
    const conntrackTw = options.conntrackTimeWaitSeconds;
    this.releasedAtOrBelow = conntrackTw === undefined ? -1 : conntrackTw - SOCKET_TIME_WAIT_SECONDS;
  }

  /** The per-destination state slot of `state` for `protocol`, assigned at first sight. */
  private slotOf(protocol: number, state: number): number {
    const i = protocol * MAX_STATES + state;
    const known = this.stateSlot[i] as number;
    if (known >= 0) return known;
    const used = this.slotsUsed[protocol] as number;
    // The last slot is shared by every name past the 11th (OTHER_STATE).
    const slot = used < STATE_SLOTS - 1 ? used : STATE_SLOTS - 1;
    if (used < STATE_SLOTS - 1) {
      this.slotsUsed[protocol] = used + 1;
      this.slotState[protocol * STATE_SLOTS + slot] = state;
    }
    this.stateSlot[i] = slot;
    if (protocol === TCP && this.states.name(state) === 'TIME_WAIT') this.timeWait = state;
    return slot;
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
    if (this.topPorts > 0 && line.hasPorts) {
      let ports = this.portCounts[line.protocol];
      if (ports === undefined) {
        ports = new Uint32Array(PORTS);
        this.portCounts[line.protocol] = ports;
      }
      ports[line.dport]!++;
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
    const stateSlot = this.slotOf(line.protocol, line.state);
    const orig = line.src;
    const translated = src[0] !== orig[0] || src[1] !== orig[1] || src[2] !== orig[2] || src[3] !== orig[3];
    // An entry holds its source's port unless it is a TIME_WAIT entry older than the socket's TIME_WAIT
    // (source-NATed ones keep their NAT tuple for the entry's whole life).
    const holds =
      translated ||
      line.state !== this.timeWait ||
      line.protocol !== TCP ||
      line.timeout < 0 ||
      line.timeout > this.releasedAtOrBelow;
    key[PENDING_WORD] = PENDING | (translated ? TRANSLATED : 0) | (holds ? HOLDS_PORT : 0);
    const dests = this.destinations;
    const count = dests.add(key);
    const slot = dests.lastSlot;
    dests.addToWordAt(slot, STATE_WORD + stateSlot, 1);
    if (!line.hasPorts || count < 2) return;
    const pending = dests.wordAt(slot, PENDING_WORD);
    if (pending & PENDING) {
      // The destination's first entry (source and bits kept in the payload) joins its pairs now.
      if (pending & HOLDS_PORT) this.addPair(dests.keyAt(slot, this.firstKey), (pending & TRANSLATED) !== 0);
      dests.setWordAt(slot, PENDING_WORD, pending & ~PENDING);
    }
    if (holds) this.addPair(key, translated);
  }

  private addPair(key: Uint32Array, translated: boolean): void {
    const pairs = this.pairs as HeavyHitters;
    // A new pair's flags word is copied from key[PAIR_FLAGS_WORD]: set it explicitly.
    const saved = key[PAIR_FLAGS_WORD] as number;
    key[PAIR_FLAGS_WORD] = translated ? TRANSLATED : 0;
    pairs.add(key);
    key[PAIR_FLAGS_WORD] = saved;
    if (translated) {
      const slot = pairs.lastSlot;
      const flags = pairs.wordAt(slot, PAIR_FLAGS_WORD);
      if (!(flags & TRANSLATED)) pairs.setWordAt(slot, PAIR_FLAGS_WORD, flags | TRANSLATED);
    }
  }

  /** Forgets the counts, keeping the memory, for the next scan. */
  reset(): void {
    this.entryCounts.fill(0);
    this.flagCounts.fill(0);
    this.perProtocol.fill(0);
    for (const ports of this.portCounts) ports?.fill(0);
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
      ports: this.topPortList(),
      destinationsError: this.destinations?.decremented ?? 0,
      // A held-back first pair is lost if its destination is dropped by a purge before its second entry.
      sourcePortsError: (this.pairs?.decremented ?? 0) + (this.destinations?.decremented ?? 0),
    };
  }

  /** The topPorts ports with most entries, most first; ties: lower protocol number, then lower port. */
  private topPortList(): PortCount[] {
    const k = this.topPorts;
    if (k === 0) return [];
    // (count, protocol, port) of the k best, best first, by insertion (few ports beat the k-th).
    const top: { count: number; protocol: number; port: number }[] = [];
    for (let protocol = 0; protocol < 256; protocol++) {
      const ports = this.portCounts[protocol];
      if (ports === undefined) continue;
      for (let port = 0; port < PORTS; port++) {
        const count = ports[port] as number;
        if (count === 0 || (top.length === k && count <= (top[k - 1] as { count: number }).count)) continue;
        const item = { count, protocol, port };
        let i = top.length < k ? top.length : k - 1;
        if (top.length < k) top.push(item);
        while (i > 0 && count > (top[i - 1] as { count: number }).count) {
          top[i] = top[i - 1] as { count: number; protocol: number; port: number };
          i--;
        }
        top[i] = item;
      }
    }
    return top.map((t) => ({ protocol: protocolName(t.protocol), port: String(t.port), entries: t.count }));
  }

  /** The destination's per-state counts, most first (ties: state name), and their sum. */
  private statesOf(dests: HeavyHitters, slot: number, protocol: number): { states: StateCount[]; sum: number } {
    const states: StateCount[] = [];
    let sum = 0;
    const used = this.slotsUsed[protocol] as number;
    for (let i = 0; i < STATE_SLOTS; i++) {
      const n = dests.wordAt(slot, STATE_WORD + i);
      if (n === 0) continue;
      sum += n;
      const state = i < used && i < STATE_SLOTS - 1 ? this.states.name(this.slotState[protocol * STATE_SLOTS + i] as number) : OTHER_STATE;
      states.push({ state, entries: n });
    }
    states.sort((a, b) => b.entries - a.entries || (a.state < b.state ? -1 : a.state > b.state ? 1 : 0));
    return { states, sum };
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

  /** Whether pair slot a's source address is below slot b's (b < 0: none yet), for a stable choice among ties. */
  private static sourceBelow(t: HeavyHitters, a: number, b: number): boolean {
    if (b < 0) return true;
    for (let i = 5; i < 9; i++) {
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
    const bestPair = new Array<number>(top.length).fill(-1);
    const word4 = new Set(top.map((slot) => dests.wordAt(slot, 4)));
    for (let p = 0; p < pairs.slotCount; p++) {
      const count = pairs.countAt(p);
      if (count === 0 || !word4.has(pairs.wordAt(p, 4))) continue;
      for (let i = 0; i < top.length; i++) {
        const slot = top[i] as number;
        if (
          pairs.wordAt(p, 4) === dests.wordAt(slot, 4) &&
          pairs.wordAt(p, 3) === dests.wordAt(slot, 3) &&
          pairs.wordAt(p, 2) === dests.wordAt(slot, 2) &&
          pairs.wordAt(p, 1) === dests.wordAt(slot, 1) &&
          pairs.wordAt(p, 0) === dests.wordAt(slot, 0) &&
          (count > (best[i] as number) || (count === best[i] && TableTally.sourceBelow(pairs, p, bestPair[i] as number)))
        ) {
          best[i] = count;
          bestPair[i] = p;
        }
      }
    }

    return top.map((slot, i) => {
      const key = dests.keyAt(slot, new Uint32Array(DEST_WIDTH + DEST_PAYLOAD));
      const w = key[4] as number;
      const hasPorts = ((w >>> 24) & 1) === 1;
      const ipv6 = w >>> 25 !== 0;
      const protocol = (w >>> 16) & 255;
      const { states, sum } = this.statesOf(dests, slot, protocol);
      const format = (words: Uint32Array): string => (ipv6 ? formatIPv6(words) : formatIPv4(words[3] as number));
      let sourcePorts: number | undefined;
      let busiestSource: string | undefined;
      let busiestSourceTranslated = false;
      if (hasPorts) {
        const pending = key[PENDING_WORD] as number;
        const p = bestPair[i] as number;
        if (p >= 0) {
          sourcePorts = best[i] as number;
          busiestSource = format(pairs.keyAt(p, new Uint32Array(PAIR_WIDTH + PAIR_PAYLOAD)).subarray(5, 9));
          busiestSourceTranslated = (pairs.wordAt(p, PAIR_FLAGS_WORD) & TRANSLATED) !== 0;
        } else if (pending & PENDING && pending & HOLDS_PORT) {
          // One entry since the destination entered the table: its source, kept in the payload.
          sourcePorts = 1;
          busiestSource = format(key.subarray(5, 9));
          busiestSourceTranslated = (pending & TRANSLATED) !== 0;
        } else {
          // No entry holds a port (all TIME_WAIT past the socket's), or purges dropped its pairs.
          sourcePorts = 0;
        }
      }
      return {
        protocol: protocolName(protocol),
        destination: format(key),
        port: hasPorts ? String(w & 0xffff) : '',
        entries: sum,
        sourcePorts,
        busiestSource,
        busiestSourceTranslated,
        states,
      };
    });
  }
}
