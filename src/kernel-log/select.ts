/**
 * Choosing the kernel log source from `--kernel-log.source`.
 *
 * `auto` takes the first that works: /dev/kmsg if it can be opened, else the
 * log file if it exists and is readable, else journald if journalctl runs,
 * else nothing (the collector then reports success 0 and says why).
 */
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import type { FsRoot } from '../procfs/fs.js';
import type { CommandRunner } from '../util/command.js';
import type { LineSource } from './source.js';
import { FileSource } from './sources/file.js';
import { JournalSource } from './sources/journal.js';
import { KmsgSource, openKmsgDevice } from './sources/kmsg.js';

export const SOURCE_CHOICES = ['auto', 'kmsg', 'file', 'journal', 'none'] as const;
export type SourceChoice = (typeof SOURCE_CHOICES)[number];

/** Log files tried in order when --kernel-log.path is empty (Debian/Ubuntu, then RHEL/SUSE). */
export const DEFAULT_LOG_FILES = ['/var/log/kern.log', '/var/log/messages'] as const;

export interface SourceSettings {
  readonly choice: SourceChoice;
  /** --kernel-log.path, '' for the defaults; always resolved under rootfs. */
  readonly path: string;
  readonly kmsgPath: string;
  readonly journalctl: string;
  readonly fromStart: boolean;
  readonly rootfs: FsRoot;
  readonly run: CommandRunner;
  readonly warn: (message: string) => void;
  /** Overrides for tests (poll intervals). */
  readonly pollMs?: number;
}

export interface Selection {
  readonly source: LineSource | undefined;
  /** Why each candidate was passed over (auto) or could not be used. */
  readonly reasons: readonly string[];
}

/** The candidate log files under rootfs, in order. */
export function logFileCandidates(rootfs: FsRoot, path: string): string[] {
  return (path === '' ? DEFAULT_LOG_FILES : [path]).map((p) => rootfs.path(p));
}

async function readable(path: string): Promise<boolean> {
  try {
    await access(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

function fileSource(s: SourceSettings, path: string): FileSource {
  return new FileSource({
    path,
    fromStart: s.fromStart,
    warn: s.warn,
    ...(s.pollMs !== undefined ? { pollMs: s.pollMs } : {}),
  });
}

function journalSource(s: SourceSettings): JournalSource {
  return new JournalSource({ journalctl: s.journalctl, fromStart: s.fromStart, warn: s.warn });
}

function kmsgSource(s: SourceSettings): KmsgSource {
  return new KmsgSource({
    path: s.kmsgPath,
    fromStart: s.fromStart,
    ...(s.pollMs !== undefined ? { pollMs: s.pollMs } : {}),
  });
}

export async function selectSource(s: SourceSettings): Promise<Selection> {
  const files = logFileCandidates(s.rootfs, s.path);
  switch (s.choice) {
    case 'none':
      return { source: undefined, reasons: ['--kernel-log.source=none'] };
    case 'kmsg':
      return { source: kmsgSource(s), reasons: [] };
    case 'journal':
      return { source: journalSource(s), reasons: [] };
    case 'file': {
      const existing = (await Promise.all(files.map(readable))).findIndex(Boolean);
      return { source: fileSource(s, files[Math.max(0, existing)] as string), reasons: [] };
    }
    case 'auto': {
      const reasons: string[] = [];
      try {
        // Probe only; the source opens the device again when it starts.
        openKmsgDevice(s.kmsgPath).close();
        return { source: kmsgSource(s), reasons };
      } catch (err) {
        reasons.push((err as Error).message);
      }
      for (const f of files) {
        if (await readable(f)) return { source: fileSource(s, f), reasons };
        reasons.push(`${f} does not exist or is not readable`);
      }
      try {
        const r = await s.run(s.journalctl, ['--version'], { timeoutMs: 5000 });
        if (r.code === 0) return { source: journalSource(s), reasons };
        reasons.push(`${s.journalctl} --version exited with ${r.code ?? r.signal}`);
      } catch (err) {
        reasons.push((err as Error).message);
      }
      return { source: undefined, reasons };
    }
  }
}
