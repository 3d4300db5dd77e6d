/**
 * The exporter's flags: the global ones declared here, plus
 * `--[no-]collector.<name>` and each collector's own flags.
 */
import type { CollectorDefinition } from '../collectors/collector.js';
import { parseFlags, type FlagSpec, type ParseResult } from './flags.js';

export const DEFAULT_PORT = 9746;

/** Paths served besides the metrics (src/app.ts); the telemetry path cannot be one of them. */
const RESERVED_PATHS = ['/', '/healthz', '/-/healthy', '/-/ready'];

export const GLOBAL_FLAGS: readonly FlagSpec[] = [
  {
    name: 'web.listen-address',
    type: 'string',
    default: `:${DEFAULT_PORT}`,
    help: 'Address to listen on, host:port; ":port" listens on every interface, "[::1]:port" for IPv6.',
    validate: (v) => (parseListenAddress(String(v)) ? undefined : 'expected host:port, :port or [ipv6]:port'),
  },
  {
    name: 'web.telemetry-path',
    type: 'string',
    default: '/metrics',
    help: 'Path under which to expose metrics.',
    validate: (v) => {
      if (!/^\/[^\s?#]*$/.test(String(v))) return 'expected a path such as /metrics';
      return RESERVED_PATHS.includes(String(v)) ? `${String(v)} is the ${v === '/' ? 'landing page' : 'health check'}` : undefined;
    },
  },
  {
    name: 'web.config.file',
    type: 'string',
    default: '',
    help: 'Path to a web configuration file (exporter-toolkit format) enabling TLS and/or basic authentication.',
  },
  {
    name: 'web.max-requests',
    type: 'int',
    default: '40',
    min: 0,
    help: 'Maximum scrapes served at once; further ones get 503. 0 means no limit.',
  },
  {
    name: 'web.disable-exporter-metrics',
    type: 'bool',
    default: 'false',
    help: "Leave out the exporter's own process_* and nodejs_* metrics (conntrack_exporter_build_info stays).",
  },
  { name: 'path.procfs', type: 'string', default: '/proc', help: 'procfs mountpoint (the host /proc, e.g. /host/proc in a container).' },
  { name: 'path.sysfs', type: 'string', default: '/sys', help: 'sysfs mountpoint (for module parameters such as hashsize).' },
  { name: 'path.rootfs', type: 'string', default: '/', help: 'Root filesystem mountpoint (for log files such as /var/log/kern.log).' },
  {
    name: 'conntrack.path',
    type: 'string',
    default: 'conntrack',
    help: 'The conntrack-tools binary (netlink, needs CAP_NET_ADMIN): the table scan on kernels before 6.16, and the statistics and table where the kernel has no /proc/net/stat/nf_conntrack or /proc/net/nf_conntrack.',
  },
  { name: 'log.level', type: 'enum', default: 'info', choices: ['debug', 'info', 'warn', 'error'], help: 'Only log messages with the given severity or above.' },
  { name: 'log.format', type: 'enum', default: 'logfmt', choices: ['logfmt', 'json'], help: 'Output format of log messages.' },
];

export function collectorFlags(collectors: readonly CollectorDefinition[]): FlagSpec[] {
  const specs: FlagSpec[] = [
    {
      name: 'collector.disable-defaults',
      type: 'bool',
      default: 'false',
      help: 'Disable every collector not enabled explicitly with --collector.<name> (or its environment twin).',
    },
  ];
  for (const c of collectors) {
    specs.push({
      name: `collector.${c.name}`,
      type: 'bool',
      default: String(c.defaultEnabled),
      help: `Enable the ${c.name} collector: ${c.help}`,
    });
    specs.push(...(c.flags ?? []));
  }
  return specs;
}

export function allFlags(collectors: readonly CollectorDefinition[]): FlagSpec[] {
  return [...GLOBAL_FLAGS, ...collectorFlags(collectors)];
}

export function parseOptions(
  collectors: readonly CollectorDefinition[],
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ParseResult {
  return parseFlags(allFlags(collectors), argv, env);
}

export interface ListenAddress {
  /** undefined: every interface. */
  host: string | undefined;
  port: number;
}

/** Parses `host:port`, `:port`, `[v6]:port`. Pure; undefined when malformed. */
export function parseListenAddress(text: string): ListenAddress | undefined {
  const m = /^(?:\[([0-9a-fA-F:.%\w]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  const host = m[1] ?? m[2];
  return { host: host === '' ? undefined : host, port };
}
