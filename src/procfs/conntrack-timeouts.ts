/**
 * The conntrack timeout sysctls, `/proc/sys/net/netfilter/nf_conntrack_<proto>_timeout[_<state>]`,
 * mapped to a protocol and a state.
 *
 * The state label follows the kernel's own timeout-policy names (the
 * `CTA_TIMEOUT_*` attributes of nfnetlink_cttimeout, which `nfct timeout` uses):
 * - TCP, SCTP and DCCP: the state in the file name (`established`,
 *   `time_wait`, …). TCP's `max_retrans` and `unacknowledged` are not states but
 *   the timeouts that replace the state's when retransmissions exceed
 *   tcp_max_retrans or data is unacknowledged; they keep their names.
 * - UDP, UDP-Lite and GRE: `<proto>_timeout` is `unreplied` (traffic seen in one
 *   direction only) and `<proto>_timeout_stream` is `replied` (both
 *   directions seen: the stream timeout).
 * - ICMP, ICMPv6 and generic (any other protocol): one timeout, state "".
 * `nf_conntrack_frag6_timeout` is IPv6 fragment reassembly, not an entry
 * timeout, and is left out. Kernels before 4.9 also had the IPv4-only
 * `net/ipv4/netfilter/ip_conntrack_*` copies of the same variables; they are
 * read only when the nf_conntrack files are missing.
 */

export interface TimeoutKey {
  readonly protocol: string;
  readonly state: string;
}

/** Protocols whose bare `<proto>_timeout` is the unreplied one and `_stream` the replied one. */
const STREAM_PROTOCOLS = new Set(['udp', 'udplite', 'gre']);

/**
 * Maps a sysctl file name to its protocol and state, or undefined for files
 * that are not entry timeouts. Pure.
 */
export function parseTimeoutSysctlName(file: string): TimeoutKey | undefined {
  const m = /^(?:nf|ip)_conntrack_([a-z0-9]+)_timeout(?:_([a-z0-9_]+))?$/.exec(file);
  if (!m) return undefined;
  const protocol = m[1] as string;
  const suffix = m[2];
  if (protocol === 'frag6') return undefined;
  if (STREAM_PROTOCOLS.has(protocol)) {
    if (suffix === undefined) return { protocol, state: 'unreplied' };
    if (suffix === 'stream') return { protocol, state: 'replied' };
    return { protocol, state: suffix };
  }
  return { protocol, state: suffix ?? '' };
}
