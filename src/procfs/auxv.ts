/**
 * The page size from `/proc/self/auxv`, the ELF auxiliary vector the kernel
 * hands every process: pairs of native unsigned longs (type, value) ending in
 * AT_NULL. AT_PAGESZ (6) is the kernel's page size (4 KiB on x86-64, 4, 16 or
 * 64 KiB on arm64 and ppc64), which Node.js does not expose otherwise.
 */
import { ParseError } from './fs.js';

const AT_NULL = 0n;
const AT_PAGESZ = 6n;

/**
 * Finds AT_PAGESZ in an auxv image. `wordBytes` and `littleEndian` describe the
 * reading process (8 and true for x64 and arm64). Pure; throws ParseError if
 * the vector is truncated or has no page size.
 */
export function parseAuxvPageSize(data: Uint8Array, wordBytes: 4 | 8, littleEndian: boolean, source = 'auxv'): number {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const read = (offset: number): bigint =>
    wordBytes === 8 ? view.getBigUint64(offset, littleEndian) : BigInt(view.getUint32(offset, littleEndian));
  for (let off = 0; off + 2 * wordBytes <= data.byteLength; off += 2 * wordBytes) {
    const type = read(off);
    if (type === AT_NULL) break;
    if (type === AT_PAGESZ) {
      const value = Number(read(off + wordBytes));
      if (value < 1024 || (value & (value - 1)) !== 0) {
        throw new ParseError(`${source}: AT_PAGESZ ${value} is not a plausible page size`);
      }
      return value;
    }
  }
  throw new ParseError(`${source}: no AT_PAGESZ entry (${data.byteLength} bytes, ${wordBytes}-byte words)`);
}
