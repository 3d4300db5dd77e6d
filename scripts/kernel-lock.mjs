// The machine-wide lock that kernel tests, the table benchmark and the image
// test (scripts/test-image.sh, same directory) hold while they touch global
// kernel state, and the crash-safe way to change the global nf_conntrack_max
// under it. Plain JavaScript so that bench/*.mjs can use it without a build;
// test/helpers/kernel.ts adds re-entrancy on top. Types: kernel-lock.d.mts.
//
// Protocol: the lock is a directory (mkdir is atomic) holding `owner` (the
// holder's pid). Before changing nf_conntrack_max the holder saves the old
// value in `saved-max`; a holder that dies leaves both behind, and the next
// process to take the lock restores the saved value first.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const LOCK_DIR = '/tmp/conntrack-exporter-kernel-test.lock';
export const MAX_PATH = '/proc/sys/net/netfilter/nf_conntrack_max';
const SAVED_MAX = join(LOCK_DIR, 'saved-max');

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

function restoreSavedMax() {
  if (!existsSync(SAVED_MAX)) return;
  const saved = readFileSync(SAVED_MAX, 'utf8').trim();
  if (/^\d+$/.test(saved)) writeFileSync(MAX_PATH, saved);
  rmSync(SAVED_MAX, { force: true });
}

/** Waits for the lock (taking it over from a dead holder) and takes it. */
export async function acquireLock(timeoutMs = 15 * 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      mkdirSync(LOCK_DIR);
      writeFileSync(join(LOCK_DIR, 'owner'), String(process.pid));
      return;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
      let owner = NaN;
      try {
        owner = Number(readFileSync(join(LOCK_DIR, 'owner'), 'utf8'));
      } catch {
        // Owner file not written yet; treat as held.
      }
      if (Number.isInteger(owner) && !pidAlive(owner)) {
        // A crashed holder: put the limit back, then take over.
        restoreSavedMax();
        rmSync(LOCK_DIR, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${LOCK_DIR} (held by pid ${owner})`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** Releases the lock, restoring nf_conntrack_max if a change of it was not undone. */
export function releaseLock() {
  restoreSavedMax();
  rmSync(LOCK_DIR, { recursive: true, force: true });
}

export function readConntrackMax() {
  return Number(readFileSync(MAX_PATH, 'utf8').trim());
}

/**
 * Sets the global nf_conntrack_max (the caller holds the lock), saving the old
 * value for a crash-safe restore. Returns the function that restores it.
 */
export function setConntrackMax(value) {
  const previous = String(readConntrackMax());
  if (!existsSync(SAVED_MAX)) writeFileSync(SAVED_MAX, previous);
  writeFileSync(MAX_PATH, String(value));
  return () => {
    writeFileSync(MAX_PATH, previous);
    if (existsSync(SAVED_MAX) && readFileSync(SAVED_MAX, 'utf8').trim() === previous) rmSync(SAVED_MAX, { force: true });
  };
}
