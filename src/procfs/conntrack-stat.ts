/**
 * The kernel's per-CPU conntrack statistics, from `/proc/net/stat/nf_conntrack`
 * or from `conntrack -S` (ctnetlink), parsed by column name, never by position:
 * 5.10 and 5.15 reused two columns under new names (searched → clashres,
 * delete_list → chainlength).
 */
import { ParseError } from './fs.js';

/** One CPU's row: stat name (canonical, see STAT_ALIASES) → raw u32 value. */
export interface CpuStats {
  readonly cpu: number;
  readonly values: ReadonlyMap<string, number>;
}

export interface ConntrackStats {
  /** Canonical stat names in the order the source printed them (without `entries`). */
  readonly names: readonly string[];
  readonly cpus: readonly CpuStats[];
  /** The per-netns entry count repeated on every row of the proc file (not summed); absent from netlink. */
  readonly entries?: number;
}

/**
 * Kernel and tool spellings → the metric's name (`conntrack_stat_<name>_total`).
 * Names not listed here are exported under their own (sanitised) name.
 */
export const STAT_ALIASES: Readonly<Record<string, string>> = {
  clashres: 'clash_resolve',
  clash_resolve: 'clash_resolve',
  chainlength: 'chain_too_long',
  chaintoolong: 'chain_too_long',
  error: 'icmp_error',
  icmp_error: 'icmp_error',
};

/** HELP text per canonical stat name. */
export const STAT_HELP: Readonly<Record<string, string>> = {
  searched: 'Hash table lookups (always 0 since about 4.10)',
  found: 'Successful lookups (since about 4.10 only NAT tuple-taken hits)',
  new: 'Entries added that were not expected (always 0 since about 4.10)',
  invalid: 'Packets that could not be tracked',
  ignore: 'Packets already attached to an entry, not tracked again (always 0 since 5.10)',
  delete: 'Entries deleted (always 0 since about 4.10)',
  delete_list: 'Entries put on the dying list (always 0 since about 4.10)',
  insert: 'Entries inserted into the table',
  insert_failed: 'Insertions that failed, e.g. the UDP clash race behind DNS timeouts (counted resolved clashes too before 5.10)',
  drop: 'Packets dropped because an entry could not be allocated (table full) or a clash could not be resolved',
  early_drop: 'Unassured entries evicted to make room when the table was full',
  icmp_error: 'ICMP errors that could not be matched to an entry',
  expect_new: 'Expectations added',
  expect_create: 'Expectations created',
  expect_delete: 'Expectations deleted',
  search_restart: 'Lookups restarted because of a hash resize or a moved entry',
  clash_resolve: 'Insertion clashes that were resolved (since 5.10)',
  chain_too_long: 'Insertions refused because the hash chain was too long (since 5.15)',
};

export function canonicalStatName(raw: string): string {
  const lower = raw.toLowerCase();
  return STAT_ALIASES[lower] ?? lower.replace(/[^a-z0-9_]/g, '_');
}

const HEX = /^[0-9a-fA-F]{1,8}$/;

/** Longest statistic name accepted (the kernel's are under 20 characters). */
const MAX_NAME = 64;

/**
 * Parses `/proc/net/stat/nf_conntrack`: a header of column names, then one
 * row of `%08x` values per possible CPU. Pure; throws ParseError naming the line.
 */
export function parseConntrackStatFile(text: string, source = 'net/stat/nf_conntrack'): ConntrackStats {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const header = lines[0];
  if (header === undefined) throw new ParseError(`${source}: empty file`);
  const columns = header.trim().split(/\s+/);
  // Kernel column names are short words; a longer one is garbage (and would cost its length per CPU row).
  if (!columns.every((c) => c.length <= MAX_NAME && /^[a-z_][a-z0-9_]*$/i.test(c))) {
    throw new ParseError(`${source}: line 1 is not a header of column names: ${JSON.stringify(header.slice(0, 80))}`);
  }
  if (new Set(columns).size !== columns.length) {
    throw new ParseError(`${source}: duplicate column names in header`);
  }
  if (lines.length < 2) throw new ParseError(`${source}: header but no CPU rows`);

  const names = columns.filter((c) => c !== 'entries').map(canonicalStatName);
  const cpus: CpuStats[] = [];
  let entries: number | undefined;
  for (let i = 1; i < lines.length; i++) {
    const fields = (lines[i] as string).trim().split(/\s+/);
    if (fields.length !== columns.length) {
      throw new ParseError(
        `${source}: line ${i + 1} has ${fields.length} fields, header has ${columns.length} (truncated or garbled)`,
      );
    }
    const values = new Map<string, number>();
    for (let c = 0; c < columns.length; c++) {
      const f = fields[c] as string;
      if (!HEX.test(f)) throw new ParseError(`${source}: line ${i + 1} column ${columns[c]}: "${f.slice(0, 20)}" is not a hex u32`);
      const v = parseInt(f, 16);
      if (columns[c] === 'entries') entries ??= v;
      else values.set(canonicalStatName(columns[c] as string), v);
    }
    cpus.push({ cpu: i - 1, values });
  }
  return entries === undefined ? { names, cpus } : { names, cpus, entries };
}

/**
 * Parses `conntrack -S` (and `conntrack -S expect`) output:
 * `cpu=0<pad>\tfound=0 invalid=0 … ` per CPU. When netlink fails the tool
 * falls back to the proc file and prints its header names (`entries=`, `clashres=`);
 * both vocabularies map to the same canonical names. `unknownN` placeholders are dropped.
 */
export function parseConntrackToolStats(text: string, source = 'conntrack -S'): ConntrackStats {
  const byCpu = new Map<number, Map<string, number>>();
  const names: string[] = [];
  const seen = new Set<string>();
  let entries: number | undefined;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (line === '') continue;
    const tokens = line.split(/\s+/);
    const first = tokens[0] as string;
    const m = /^cpu=(\d+)$/.exec(first);
    if (!m) throw new ParseError(`${source}: line ${i + 1} does not start with cpu=N: ${JSON.stringify(line.slice(0, 80))}`);
    const cpu = Number(m[1]);
    if (!Number.isSafeInteger(cpu)) throw new ParseError(`${source}: line ${i + 1}: cpu number out of range`);
    const values = byCpu.get(cpu) ?? new Map<string, number>();
    byCpu.set(cpu, values);
    for (const tok of tokens.slice(1)) {
      const kv = /^([a-z_][a-z0-9_]*)=(\d+)$/i.exec(tok);
      if (!kv) throw new ParseError(`${source}: line ${i + 1}: malformed field ${JSON.stringify(tok.slice(0, 40))}`);
      const raw = kv[1] as string;
      const v = Number(kv[2]);
      // A digit run too long for a double would be Infinity (found by scripts/fuzz.mjs).
      if (!Number.isSafeInteger(v) || raw.length > MAX_NAME) throw new ParseError(`${source}: line ${i + 1}: field ${raw.slice(0, 40)} out of range`);
      if (/^unknown\d+$/.test(raw)) continue;
      if (raw === 'entries') {
        entries ??= v;
        continue;
      }
      const name = canonicalStatName(raw);
      values.set(name, v);
      if (!seen.has(name)) {
        seen.add(name);
        names.push(name);
      }
    }
  }
  if (byCpu.size === 0) throw new ParseError(`${source}: no cpu= lines`);
  const cpus = [...byCpu.entries()].sort((a, b) => a[0] - b[0]).map(([cpu, values]) => ({ cpu, values }));
  return entries === undefined ? { names, cpus } : { names, cpus, entries };
}
