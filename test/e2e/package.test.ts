/**
 * The documented install (README, "Running with systemd"): `npm pack` in a clean copy of the
 * repository builds dist/ itself (prepack) and ships what the exporter needs and nothing else;
 * `npm install -g` of that tarball into a fresh prefix gives a `conntrack-exporter` command that
 * runs. The copy holds the files git tracks (plus untracked, not ignored ones), as a clone would,
 * with the repository's node_modules linked in for the build; the repository's own dist/ is not
 * touched, so tests running the built exporter beside this one are not disturbed.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/kernel.js';

const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { name: string; version: string; engines: { node: string } };
// npm and the installed command's `#!/usr/bin/env node` run on the Node.js running this test.
const env = { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`, npm_config_update_notifier: 'false' };

function run(cmd: string, args: readonly string[], cwd: string): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, env, maxBuffer: 64 * 1024 * 1024, timeout: 240_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

/** engines.node is one `>=X.Y.Z` bound. */
function nodeSatisfiesEngines(): boolean {
  const min = /^>=(\d+)\.(\d+)\.(\d+)$/.exec(pkg.engines.node);
  if (!min) throw new Error(`engines.node ${pkg.engines.node}: expected >=X.Y.Z`);
  const have = process.versions.node.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    if (have[i]! !== Number(min[i + 1])) return have[i]! > Number(min[i + 1]);
  }
  return true;
}

interface PackResult {
  filename: string;
  files: { path: string }[];
}

describe('npm pack and npm install -g of the tarball', () => {
  let work: string;
  let pack: PackResult;
  let packStderr: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'conntrack-exporter-pack-'));
    const clone = join(work, 'clone');
    const { stdout } = await run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], REPO_ROOT);
    for (const file of stdout.split('\0')) {
      if (file === '' || !existsSync(join(REPO_ROOT, file))) continue; // deleted in the work tree
      mkdirSync(dirname(join(clone, file)), { recursive: true });
      copyFileSync(join(REPO_ROOT, file), join(clone, file));
    }
    expect(existsSync(join(clone, 'dist')), 'the copy must start without dist/').toBe(false);
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(clone, 'node_modules'));
    const packed = await run('npm', ['pack', '--json', '--pack-destination', work], clone);
    packStderr = packed.stderr;
    // prepack's build output precedes the JSON on stdout.
    const json = packed.stdout.slice(packed.stdout.indexOf('\n[') + 1 || packed.stdout.indexOf('['));
    pack = (JSON.parse(json) as PackResult[])[0]!;
  }, 300_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('holds the built exporter, README, LICENSE and CHANGELOG, and no source maps, sources or tests', () => {
    const files = pack.files.map((f) => f.path).sort();
    expect(pack.filename).toBe(`${pkg.name}-${pkg.version}.tgz`);
    for (const f of ['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'dist/main.js', 'dist/app.js', 'dist/build-info.json', 'dist/table/read-worker.js']) {
      expect(files, packStderr).toContain(f);
    }
    expect(files.filter((f) => f.endsWith('.map'))).toEqual([]);
    expect(files.filter((f) => !/^(dist\/|package\.json$|README\.md$|LICENSE$|CHANGELOG\.md$)/.test(f))).toEqual([]);
    // Every module the tarball ships comes from a source file (no stale output of a removed module).
    for (const f of files.filter((f) => f.startsWith('dist/') && f.endsWith('.js'))) {
      expect(existsSync(join(REPO_ROOT, 'src', f.slice('dist/'.length).replace(/\.js$/, '.ts'))), f).toBe(true);
    }
  });

  it('LICENSE is the Apache License 2.0 that package.json declares', () => {
    const license = readFileSync(join(REPO_ROOT, 'LICENSE'), 'utf8');
    expect(license).toContain('Apache License');
    expect(license).toContain('Version 2.0, January 2004');
    expect(license).toContain('END OF TERMS AND CONDITIONS');
    expect((JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { license: string }).license).toBe('Apache-2.0');
  });

  it('installs globally into a fresh prefix and the command prints its version', async () => {
    const prefix = join(work, 'prefix');
    const installed = await run(
      'npm',
      ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', join(work, pack.filename)],
      work,
    );
    // The registry's dependency versions must accept the Node.js that engines allows (a global
    // install applies no overrides). Checked on a Node.js that engines allows (CI installs one).
    if (nodeSatisfiesEngines()) expect(installed.stderr).not.toContain('EBADENGINE');
    else if (process.env.CI === 'true') throw new Error(`Node.js ${process.version} does not satisfy engines ${pkg.engines.node}: .ci/run installs one`);
    else console.warn(`package test: Node.js ${process.version} does not satisfy engines ${pkg.engines.node}; EBADENGINE not checked`);
    const bin = join(prefix, 'bin', 'conntrack-exporter');
    const { stdout } = await run(bin, ['--version'], work);
    expect(stdout).toMatch(new RegExp(`^conntrack-exporter, version ${pkg.version.replace(/\./g, '\\.')} \\(revision: [^)]+\\)\\n  node: ${process.version}\\n$`));
    const help = await run(bin, ['--help'], work);
    expect(help.stdout).toContain('--web.listen-address');
  }, 300_000);
});
