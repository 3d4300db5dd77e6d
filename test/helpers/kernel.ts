/**
 * Helpers for tests against the real kernel: network namespaces, the global
 * nf_conntrack_max, and the exporter run inside a namespace.
 *
 * Rules every kernel test follows:
 * - Wrap the whole file in `describeKernel(...)`: it runs when we are root and
 *   the tools exist; otherwise it skips with a message, except under CI=true,
 *   where a missing prerequisite is a failure.
 * - All kernel work happens inside namespaces made by `Netns.create()`, and
 *   `destroy()` is called in afterAll/finally. Never flush or delete entries
 *   outside a namespace we made.
 * - `withKernelLock()` serialises kernel tests across processes (several test
 *   runs may share this machine), and `withConntrackMax()` lowers the global
 *   limit and restores it in a finally block, even after a crashed holder.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readlinkSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'vitest';
import { acquireLock, MAX_PATH, readConntrackMax, releaseLock, setConntrackMax } from '../../scripts/kernel-lock.mjs';

const execFileP = promisify(execFile);

export const IN_CI = process.env['CI'] === 'true';
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export { MAX_PATH };
/** Traffic generators run inside a namespace (`node traffic.mjs <mode> …`). */
export const TRAFFIC = join(REPO_ROOT, 'test', 'helpers', 'traffic.mjs');

function which(tool: string): boolean {
  for (const dir of (process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    if (existsSync(join(dir, tool))) return true;
  }
  return false;
}

/** Why kernel tests cannot run here, or undefined when they can. */
export function kernelPrerequisiteProblem(tools: readonly string[] = ['ip', 'conntrack', 'nft']): string | undefined {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'not running as root (network namespaces and nf_conntrack_max need root)';
  if (!existsSync(MAX_PATH)) return `nf_conntrack is not loaded (${MAX_PATH} missing; try modprobe nf_conntrack)`;
  const missing = tools.filter((t) => !which(t));
  if (missing.length) return `missing tools: ${missing.join(', ')} (apt-get install conntrack nftables iproute2)`;
  if (!existsSync(join(REPO_ROOT, 'dist', 'main.js'))) return 'dist/main.js missing: run npm run build first';
  return undefined;
}

/**
 * describe() for tests that need root and the real kernel. Skips with a clear
 * message on a laptop; fails under CI=true so CI can never pass by skipping.
 */
export function describeKernel(name: string, fn: () => void, tools?: readonly string[]): void {
  const problem = kernelPrerequisiteProblem(tools);
  if (!problem) {
    describe(name, fn);
    return;
  }
  if (IN_CI) {
    describe(name, () => {
      it('has its prerequisites (required under CI=true)', () => {
        throw new Error(`kernel test cannot run: ${problem}`);
      });
    });
    return;
  }
  // eslint-disable-next-line no-console
  console.warn(`SKIPPED kernel tests "${name}": ${problem}`);
  describe.skip(name, fn);
}

/** Runs a command; rejects with its stderr on a non-zero exit. */
export async function sh(file: string, args: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<string> {
  if (opts.input !== undefined) {
    return new Promise((resolve, reject) => {
      const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      child.on('error', reject);
      child.on('close', (code) =>
        code === 0 ? resolve(out) : reject(new Error(`${file} ${args.join(' ')} exited ${code}: ${err.trim()}`)),
      );
      child.stdin.end(opts.input);
    });
  }
  try {
    const { stdout } = await execFileP(file, args as string[], {
      timeout: opts.timeoutMs ?? 120_000,
      maxBuffer: 512 * 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${file} ${args.join(' ')} failed: ${(e.stderr ?? '').trim() || e.message}`, { cause: err });
  }
}

// ---------------------------------------------------------------------------
// Cross-process lock for kernel tests and the global nf_conntrack_max
// (scripts/kernel-lock.mjs, shared with the table benchmark).

let lockDepth = 0;

/** Acquires the machine-wide kernel-test lock (re-entrant within this process). */
export async function acquireKernelLock(timeoutMs = 15 * 60_000): Promise<void> {
  if (lockDepth > 0) {
    lockDepth++;
    return;
  }
  await acquireLock(timeoutMs);
  lockDepth = 1;
}

export function releaseKernelLock(): void {
  if (lockDepth === 0) return;
  lockDepth--;
  if (lockDepth > 0) return;
  releaseLock();
}

export async function withKernelLock<T>(fn: () => Promise<T>): Promise<T> {
  await acquireKernelLock();
  try {
    return await fn();
  } finally {
    releaseKernelLock();
  }
}

export { readConntrackMax };

/**
 * Sets the global nf_conntrack_max to `value` for the duration of fn and
 * restores the previous value in finally (and from a saved copy if this
 * process dies). Takes the kernel lock.
 */
export async function withConntrackMax<T>(value: number, fn: () => Promise<T>): Promise<T> {
  return withKernelLock(async () => {
    const restore = setConntrackMax(value);
    try {
      return await fn();
    } finally {
      restore();
    }
  });
}

// ---------------------------------------------------------------------------
// Network namespaces.

const liveNamespaces = new Set<Netns>();
process.once('exit', () => {
  for (const ns of liveNamespaces) ns.destroySync();
});

export class Netns {
  private readonly children = new Set<ChildProcess>();

  private constructor(readonly name: string) {}

  /** Creates `cte-<label>-<random>` with loopback up. */
  static async create(label: string): Promise<Netns> {
    const name = `cte-${label}-${randomBytes(3).toString('hex')}`.slice(0, 60);
    await sh('ip', ['netns', 'add', name]);
    const ns = new Netns(name);
    liveNamespaces.add(ns);
    await ns.exec('ip', ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** The namespace's inode, as in `readlink /proc/PID/ns/net` → net:[INODE]. */
  inode(): number {
    return statSync(`/run/netns/${this.name}`).ino;
  }

  exec(file: string, args: readonly string[], opts?: { timeoutMs?: number; input?: string }): Promise<string> {
    return sh('ip', ['netns', 'exec', this.name, file, ...args], opts);
  }

  /** A long-running process inside the namespace, killed by destroy(). */
  spawn(file: string, args: readonly string[], env?: NodeJS.ProcessEnv): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.name, file, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: env ?? process.env,
    });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  /** `conntrack -S` in the namespace summed over CPUs, keyed by the exporter's names (conntrack-tools spells some differently). */
  async statSums(): Promise<Map<string, number>> {
    const out = await this.exec('conntrack', ['-S']);
    const alias: Record<string, string> = { clashres: 'clash_resolve', error: 'icmp_error', chaintoolong: 'chain_too_long' };
    const sums = new Map<string, number>();
    for (const m of out.matchAll(/\b([a-z_]+)=(\d+)/g)) {
      if (m[1] === 'cpu') continue;
      const name = alias[m[1] as string] ?? (m[1] as string);
      sums.set(name, (sums.get(name) ?? 0) + Number(m[2]));
    }
    return sums;
  }

  /** A `sleep` inside the namespace, returned once its pid has entered it (so /proc/<pid>/ns/net names it). */
  async processIn(): Promise<ChildProcess> {
    const child = this.spawn('sleep', ['300']);
    const want = `net:[${this.inode()}]`;
    for (let i = 0; i < 100; i++) {
      try {
        if (readlinkSync(`/proc/${child.pid}/ns/net`) === want) return child;
      } catch {
        // Not there yet.
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`pid ${child.pid} did not enter ${this.name}`);
  }

  /** `count` TCP connections to 127.0.0.1:`port` held open until destroy(); resolves once they are up. */
  holdTcp(count: number, port: number): Promise<ChildProcess> {
    const child = this.spawn(process.execPath, [TRAFFIC, 'tcp-hold', String(count), String(port)]);
    return new Promise((resolve, reject) => {
      let out = '';
      child.stdout?.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('ready')) resolve(child);
      });
      child.on('exit', (code) => reject(new Error(`tcp-hold exited ${code}`)));
    });
  }

  /**
   * Loads an nftables ruleset that makes the kernel track connections in this
   * namespace (any `ct` expression registers the conntrack hooks). Traffic to
   * and from `untrackedPorts` (the exporter's own port) is left untracked so
   * scrapes do not change the counts under test.
   */
  async enableConntrack(untrackedPorts: readonly number[] = []): Promise<void> {
    const ports = untrackedPorts.length ? `{ ${untrackedPorts.join(', ')} }` : '';
    const notrack = ports
      ? `tcp dport ${ports} notrack\n    tcp sport ${ports} notrack\n`
      : '';
    const ruleset = `table inet cte {
  chain raw_pre {
    type filter hook prerouting priority raw; policy accept;
    ${notrack}
  }
  chain raw_out {
    type filter hook output priority raw; policy accept;
    ${notrack}
  }
  chain track {
    type filter hook output priority filter; policy accept;
    ct state new,established,related,invalid,untracked counter accept
  }
}
`;
    await this.exec('nft', ['-f', '-'], { input: ruleset });
  }

  /** `conntrack -C` in this namespace (the oracle for entry counts). */
  async conntrackCount(): Promise<number> {
    return Number((await this.exec('conntrack', ['-C'])).trim());
  }

  async destroy(): Promise<void> {
    for (const c of this.children) c.kill('SIGKILL');
    await Promise.all(
      [...this.children].map((c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.once('exit', r)))),
    );
    await sh('ip', ['netns', 'del', this.name]).catch(() => undefined);
    liveNamespaces.delete(this);
  }

  destroySync(): void {
    for (const c of this.children) c.kill('SIGKILL');
    try {
      execFileSync('ip', ['netns', 'del', this.name], { stdio: 'ignore' });
    } catch {
      // Already gone.
    }
  }
}

// ---------------------------------------------------------------------------
// The exporter inside a namespace.

export interface RunningExporter {
  readonly port: number;
  /** GET a path from inside the namespace; returns the body. */
  get(path?: string, headers?: Record<string, string>): Promise<string>;
  /** Parsed samples of /metrics: `name{labels}` → value. */
  scrape(): Promise<Map<string, number>>;
  /** Everything the exporter logged so far. */
  logs(): string;
  stop(): Promise<number | null>;
}

/** Parses Prometheus text exposition into `series → value` (series as printed). */
export function parseExposition(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

const FETCH_SCRIPT =
  "const [u,h]=process.argv.slice(1);fetch(u,{headers:JSON.parse(h)}).then(async r=>{process.stdout.write(await r.text());process.exit(r.ok?0:3)}).catch(e=>{console.error(e.message);process.exit(4)})";

/** Starts dist/main.js inside `ns` on <host>:<port> (127.0.0.1 unless told), port untracked by conntrack. */
export async function startExporterInNetns(ns: Netns, args: readonly string[] = [], port = 9746, host = '127.0.0.1'): Promise<RunningExporter> {
  const child = ns.spawn(process.execPath, [
    join(REPO_ROOT, 'dist', 'main.js'),
    `--web.listen-address=${host}:${port}`,
    '--log.format=json',
    ...args,
  ]);
  let log = '';
  child.stdout?.on('data', (b: Buffer) => (log += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (log += b.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`exporter did not start within 15 s:\n${log}`)), 15_000);
    const check = (): void => {
      if (log.includes('"listening on ')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stderr?.on('data', check);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exporter exited with ${code} before listening:\n${log}`));
    });
  });
  const get = (path = '/metrics', headers: Record<string, string> = {}): Promise<string> =>
    ns.exec(process.execPath, ['-e', FETCH_SCRIPT, `http://${host}:${port}${path}`, JSON.stringify(headers)]);
  return {
    port,
    get,
    async scrape() {
      return parseExposition(await get('/metrics'));
    },
    logs: () => log,
    stop() {
      return new Promise((resolve) => {
        if (child.exitCode !== null) {
          resolve(child.exitCode);
          return;
        }
        child.once('exit', (code) => resolve(code));
        child.kill('SIGTERM');
      });
    },
  };
}
