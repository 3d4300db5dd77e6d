/**
 * Version and revision of this build. `npm run build` writes
 * dist/build-info.json (package version and git revision); running from
 * source falls back to package.json and "unknown".
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

export interface BuildInfo {
  version: string;
  revision: string;
}

function readJson(path: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

let cached: BuildInfo | undefined;

export function buildInfo(): BuildInfo {
  if (cached) return cached;
  const here = dirname(fileURLToPath(import.meta.url));
  const generated = readJson(join(here, 'build-info.json'));
  const pkg = readJson(join(here, '..', 'package.json'));
  cached = {
    version: String(generated?.['version'] ?? pkg?.['version'] ?? 'unknown'),
    revision: String(process.env['CONNTRACK_EXPORTER_REVISION'] || generated?.['revision'] || 'unknown'),
  };
  return cached;
}
