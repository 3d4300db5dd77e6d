/**
 * The port range a top destination's busiest source draws from, so that
 * `conntrack_table_destination_source_ports / conntrack_table_destination_source_port_range_size`
 * is the share of the range that is actually exhausted:
 *
 * - a source-NATed source (some entry's reply destination is not its
 *   original source): the SNAT range, 1024–65535 for masquerade and for
 *   `snat to <addr>` without ports (the kernel's default in
 *   nf_nat_l4proto_unique_tuple), else what `--collector.table.snat-port-range`
 *   says the rule uses;
 * - a source address of another network namespace on this host (a pod): that
 *   namespace's ip_local_port_range, where a lookup knows it;
 * - any other source: the ip_local_port_range of the exporter's namespace (the
 *   host's with hostNetwork). That is right for local clients; for a pod whose
 *   namespace is unknown, or a client forwarded through this host without
 *   NAT, it is the best guess there is.
 *
 * Pure: the caller reads the files.
 */
import type { PortRange } from '../procfs/port-range.js';
import type { DestinationCount } from './tally.js';

/** The kernel's SNAT port range when the rule names none (nf_nat_l4proto_unique_tuple: 1024 + 64512). */
export const DEFAULT_SNAT_RANGE: PortRange = { low: 1024, high: 65535 };

export type RangeKind = 'snat' | 'netns' | 'local';

export interface SourceRangeContext {
  /** Size of the SNAT range (--collector.table.snat-port-range). */
  readonly snatSize: number;
  /** Size of the exporter namespace's ip_local_port_range; undefined where it cannot be read. */
  readonly localSize: number | undefined;
  /** The ip_local_port_range size of the namespace owning `address` (not the exporter's), if known. */
  readonly namespaceSize?: (address: string) => number | undefined;
}

export interface SourceRange {
  readonly size: number;
  readonly kind: RangeKind;
}

/** The range a destination's busiest source draws from; undefined for protocols without ports or an unknown local range. */
export function sourceRange(d: DestinationCount, ctx: SourceRangeContext): SourceRange | undefined {
  if (d.sourcePorts === undefined) return undefined;
  if (d.busiestSourceTranslated) return { size: ctx.snatSize, kind: 'snat' };
  if (d.busiestSource !== undefined) {
    const size = ctx.namespaceSize?.(d.busiestSource);
    if (size !== undefined) return { size, kind: 'netns' };
  }
  return ctx.localSize === undefined ? undefined : { size: ctx.localSize, kind: 'local' };
}

/** Parses `low-high` (1 ≤ low ≤ high ≤ 65535); returns an error message for a flag's validate(). Pure. */
export function parsePortRangeFlag(text: string): PortRange | string {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(text.trim());
  if (!m) return 'expected low-high, such as 1024-65535';
  const low = Number(m[1]);
  const high = Number(m[2]);
  if (low < 1 || high > 65535 || low > high) return `expected 1 <= low <= high <= 65535, got ${low}-${high}`;
  return { low, high };
}
