/**
 * Command-line flags in the conventions of Prometheus exporters.
 *
 * Every flag is `--dotted.name=value` (or `--dotted.name value`); booleans also
 * accept the bare `--name` and `--no-name`. Every flag has an environment
 * variable twin, `CONNTRACK_EXPORTER_<NAME>` with dots and dashes as
 * underscores. Precedence: command line, then environment, then default.
 *
 * Parsing is pure: it takes argv and env and returns values or throws a
 * FlagError naming the flag, so the entry point can print it and exit 2.
 */

export type FlagType = 'string' | 'int' | 'bool' | 'duration' | 'enum';

export interface FlagSpec {
  /** Dotted name without leading dashes, e.g. `web.listen-address`. */
  readonly name: string;
  readonly type: FlagType;
  readonly help: string;
  /** Default as it would be written on the command line (`30s`, `true`, `:9746`). */
  readonly default: string;
  /** Allowed values for `enum`. */
  readonly choices?: readonly string[];
  /** Lower bound for `int` and `duration` (seconds). */
  readonly min?: number;
  /** Extra validation of the parsed value; return an error message or undefined. */
  readonly validate?: (value: FlagValue) => string | undefined;
}

export type FlagValue = string | number | boolean;

export class FlagError extends Error {
  override readonly name = 'FlagError';
}

export const ENV_PREFIX = 'CONNTRACK_EXPORTER_';

export function envName(flag: string): string {
  return ENV_PREFIX + flag.toUpperCase().replace(/[.-]/g, '_');
}

const DURATION_UNITS: Record<string, number> = {
  ms: 0.001,
  s: 1,
  m: 60,
  h: 3600,
  d: 86400,
};

/** Parses a Prometheus-style duration (`30s`, `1m30s`, `500ms`, `2h`) into seconds. */
export function parseDuration(text: string): number | undefined {
  if (text === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    total += Number(m[1]) * (DURATION_UNITS[m[2] as string] as number);
    matched = re.lastIndex;
  }
  if (matched === 0 || matched !== text.length) return undefined;
  return total;
}

function convert(spec: FlagSpec, raw: string, origin: string): FlagValue {
  const where = `${origin} ${origin === 'flag' ? `--${spec.name}` : envName(spec.name)}`;
  let value: FlagValue;
  switch (spec.type) {
    case 'string':
      value = raw;
      break;
    case 'bool': {
      const v = raw.toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(v)) value = true;
      else if (['false', '0', 'no', 'off'].includes(v)) value = false;
      else throw new FlagError(`invalid value "${raw}" for ${where}: expected true or false`);
      break;
    }
    case 'int': {
      if (!/^-?\d+$/.test(raw)) throw new FlagError(`invalid value "${raw}" for ${where}: expected an integer`);
      value = Number(raw);
      if (spec.min !== undefined && value < spec.min) {
        throw new FlagError(`invalid value "${raw}" for ${where}: must be at least ${spec.min}`);
      }
      break;
    }
    case 'duration': {
      const secs = parseDuration(raw);
      if (secs === undefined) {
        throw new FlagError(`invalid value "${raw}" for ${where}: expected a duration such as 30s, 1m or 500ms`);
      }
      if (spec.min !== undefined && secs < spec.min) {
        throw new FlagError(`invalid value "${raw}" for ${where}: must be at least ${spec.min}s`);
      }
      value = secs;
      break;
    }
    case 'enum': {
      const choices = spec.choices ?? [];
      if (!choices.includes(raw)) {
        throw new FlagError(`invalid value "${raw}" for ${where}: expected one of ${choices.join(', ')}`);
      }
      value = raw;
      break;
    }
  }
  const problem = spec.validate?.(value);
  if (problem) throw new FlagError(`invalid value "${raw}" for ${where}: ${problem}`);
  return value;
}

/** Parsed flag values with typed accessors. Asking for an undeclared flag is a programming error. */
export class Flags {
  constructor(
    private readonly values: ReadonlyMap<string, FlagValue>,
    /** Names set explicitly on the command line or in the environment. */
    readonly explicit: ReadonlySet<string>,
  ) {}

  private get(name: string): FlagValue {
    const v = this.values.get(name);
    if (v === undefined) throw new Error(`flag --${name} is not declared`);
    return v;
  }

  has(name: string): boolean {
    return this.values.has(name);
  }

  string(name: string): string {
    return String(this.get(name));
  }

  bool(name: string): boolean {
    const v = this.get(name);
    if (typeof v !== 'boolean') throw new Error(`flag --${name} is not a boolean`);
    return v;
  }

  /** An `int` flag's value, or a `duration` flag's value in seconds. */
  number(name: string): number {
    const v = this.get(name);
    if (typeof v !== 'number') throw new Error(`flag --${name} is not numeric`);
    return v;
  }

  entries(): IterableIterator<[string, FlagValue]> {
    return this.values.entries();
  }
}

export interface ParseResult {
  flags: Flags;
  /** `--help` or `--version` was given. */
  action?: 'help' | 'version';
}

/**
 * Parses argv (without node and script) and env against the declared specs.
 * Throws FlagError for unknown flags, missing values, bad values and positional arguments.
 */
export function parseFlags(
  specs: readonly FlagSpec[],
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ParseResult {
  const byName = new Map<string, FlagSpec>();
  for (const s of specs) {
    if (byName.has(s.name)) throw new Error(`flag --${s.name} declared twice`);
    byName.set(s.name, s);
  }
  const values = new Map<string, FlagValue>();
  const explicit = new Set<string>();
  let action: ParseResult['action'];

  for (const spec of specs) {
    values.set(spec.name, convert(spec, spec.default, 'default of'));
  }
  for (const spec of specs) {
    const raw = env[envName(spec.name)];
    if (raw !== undefined && raw !== '') {
      values.set(spec.name, convert(spec, raw, 'environment variable'));
      explicit.add(spec.name);
    }
  }

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h') {
      action = 'help';
      continue;
    }
    if (arg === '--version') {
      action = 'version';
      continue;
    }
    if (!arg.startsWith('--') || arg === '--') {
      throw new FlagError(`unexpected argument "${arg}": flags look like --name=value (see --help)`);
    }
    const body = arg.slice(2);
    const eq = body.indexOf('=');
    let name = eq >= 0 ? body.slice(0, eq) : body;
    let raw: string | undefined = eq >= 0 ? body.slice(eq + 1) : undefined;
    let spec = byName.get(name);
    if (!spec && name.startsWith('no-')) {
      const positive = byName.get(name.slice(3));
      if (positive?.type === 'bool') {
        if (raw !== undefined) throw new FlagError(`flag --${name} takes no value`);
        spec = positive;
        name = positive.name;
        raw = 'false';
      }
    }
    if (!spec) throw new FlagError(`unknown flag --${name} (see --help)`);
    if (raw === undefined) {
      if (spec.type === 'bool') {
        raw = 'true';
      } else {
        const next = argv[i + 1];
        if (next === undefined || next.startsWith('--')) {
          throw new FlagError(`flag --${name} needs a value`);
        }
        raw = next;
        i++;
      }
    }
    values.set(spec.name, convert(spec, raw, 'flag'));
    explicit.add(spec.name);
  }

  return action ? { flags: new Flags(values, explicit), action } : { flags: new Flags(values, explicit) };
}

/** The `--help` text: one block per flag with its default and environment twin. */
export function formatHelp(specs: readonly FlagSpec[], usage: string): string {
  const lines = [usage, '', 'Flags:'];
  lines.push('  -h, --help                  Show this help and exit.');
  lines.push('      --version               Show the version and exit.');
  for (const s of specs) {
    const name = s.type === 'bool' ? `--[no-]${s.name}` : `--${s.name}=${s.type === 'enum' ? (s.choices ?? []).join('|') : s.type.toUpperCase()}`;
    lines.push(`      ${name}`);
    lines.push(`          ${s.help} (default: ${s.default === '' ? '""' : s.default}; env: ${envName(s.name)})`);
  }
  return lines.join('\n') + '\n';
}
