/**
 * Rendering one registry in either exposition format.
 *
 * prom-client can render OpenMetrics, but only from a registry created for
 * it, and doing so renames counter objects in place (dropping `_total`),
 * which would corrupt the Prometheus-format rendering of the same metrics.
 * So the text format comes from prom-client, and OpenMetrics is rendered here
 * from the registry's JSON view.
 */
import { Registry } from 'prom-client';

export const PROMETHEUS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;
export const OPENMETRICS_CONTENT_TYPE = Registry.OPENMETRICS_CONTENT_TYPE;

/** The entries of an Accept or Accept-Encoding header with their quality (`q`, default 1). */
function qualityList(header: string): { value: string; q: number }[] {
  const out: { value: string; q: number }[] = [];
  for (const part of header.split(',')) {
    const [value, ...params] = part.trim().split(';').map((s) => s.trim());
    if (!value) continue;
    let q = 1;
    for (const p of params) {
      const m = /^q=([0-9.]+)$/.exec(p);
      if (m) q = Number(m[1]);
    }
    out.push({ value: value.toLowerCase(), q });
  }
  return out;
}

/** True when the Accept header prefers OpenMetrics (as Prometheus sends it). */
export function wantsOpenMetrics(accept: string | undefined): boolean {
  if (!accept) return false;
  let best: { om: boolean; q: number } | undefined;
  for (const { value, q } of qualityList(accept)) {
    const isOm = value === 'application/openmetrics-text';
    const isText = value === 'text/plain' || value === '*/*';
    if (!isOm && !isText) continue;
    if (!best || q > best.q) best = { om: isOm, q };
  }
  return best?.om === true && best.q > 0;
}

/** True when the Accept-Encoding header accepts gzip (`gzip` or `*` with a quality above 0). */
export function acceptsGzip(acceptEncoding: string | undefined): boolean {
  if (!acceptEncoding) return false;
  const list = qualityList(acceptEncoding);
  const entry = list.find((e) => e.value === 'gzip' || e.value === 'x-gzip') ?? list.find((e) => e.value === '*');
  return entry !== undefined && entry.q > 0;
}

function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function formatLabels(labels: Record<string, string | number | undefined>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(labels)) {
    if (v === undefined) continue;
    parts.push(`${k}="${escapeLabelValue(String(v))}"`);
  }
  return parts.length ? `{${parts.join(',')}}` : '';
}

/** Renders the registry as OpenMetrics 1.0 text, ending in `# EOF`. */
export async function renderOpenMetrics(registry: Registry): Promise<string> {
  const families = await registry.getMetricsAsJSON();
  const out: string[] = [];
  for (const f of families) {
    const type = String(f.type);
    const family = type === 'counter' ? f.name.replace(/_total$/, '') : f.name;
    out.push(`# TYPE ${family} ${type === 'untyped' ? 'unknown' : type}`);
    out.push(`# HELP ${family} ${escapeHelp(f.help)}`);
    for (const v of f.values) {
      const val = v as { value: number; labels: Record<string, string | number>; metricName?: string };
      const name = type === 'counter' ? `${family}_total` : (val.metricName ?? f.name);
      out.push(`${name}${formatLabels(val.labels)} ${formatValue(val.value)}`);
    }
  }
  out.push('# EOF');
  return out.join('\n') + '\n';
}
