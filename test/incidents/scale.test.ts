/**
 * The lab's time scaling (scale.ts) is a pure function of the rules text: these
 * tests pin what it rewrites and what it leaves alone, and check that the
 * shipped rules, scaled, are still valid rules with nothing left at real time.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { PROMTOOL, promtool } from '../deploy/promtool.js';
import { IN_CI, REPO_ROOT } from '../helpers/kernel.js';
import { formatDuration, parseDuration, scaleDuration, scalePromQL, scaleRules, scaleTemplate } from './scale.js';

const RULES = join(REPO_ROOT, 'deploy', 'prometheus', 'conntrack-rules.yaml');
const F = 2 / 15;

describe('durations', () => {
  it('parses and formats Prometheus durations', () => {
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('250ms')).toBe(250);
    expect(() => parseDuration('5 m')).toThrow(/not a Prometheus duration/);
    expect(formatDuration(90_000)).toBe('1m30s');
    expect(formatDuration(1333.4)).toBe('1s333ms');
    expect(formatDuration(0)).toBe('1ms');
  });

  it('scales by the factor: 15 s scrapes to 2 s keeps 8 scrapes in 2m', () => {
    expect(scaleDuration('15s', F)).toBe('2s');
    expect(scaleDuration('2m', F)).toBe('16s');
    expect(scaleDuration('5m', F)).toBe('40s');
    expect(parseDuration(scaleDuration('2m', F)) / parseDuration(scaleDuration('15s', F))).toBe(8);
  });
});

describe('scalePromQL', () => {
  it('scales range windows, subqueries and offsets, not metric names or label values', () => {
    const r = scalePromQL('rate(x_total{job="a5m", port="15s"}[5m]) > 0 and y:rate5m offset 1h and max_over_time(z[10m:30s])', F);
    expect(r.expr).toBe('rate(x_total{job="a5m", port="15s"}[40s]) > 0 and y:rate5m offset 8m and max_over_time(z[1m20s:4s])');
    expect(r.unscaled).toEqual([]);
  });

  it('scales the predict_linear horizon, a literal or an expression', () => {
    expect(scalePromQL('predict_linear(a[1h], 14400) > b', F).expr).toBe('predict_linear(a[8m], 1920) > b');
    expect(scalePromQL('predict_linear(a[30m], 4 * 3600) >= b', F).expr).toBe('predict_linear(a[4m], (4 * 3600) * 0.133333333333) >= b');
  });

  it('scales ages compared with time() and the clamp bound of such a comparison', () => {
    expect(scalePromQL('x > 0 and on (instance) (time() - process_start_time_seconds{job="j"} < 300)', F).expr).toBe(
      'x > 0 and on (instance) (time() - process_start_time_seconds{job="j"} < 40)',
    );
    expect(scalePromQL('(time() - ts{job="j"}) > on (instance, job) clamp_min(30 * d{job="j"}, 600)', F).expr).toBe(
      '(time() - ts{job="j"}) > on (instance, job) clamp_min(30 * d{job="j"}, 80)',
    );
  });

  it('reports seconds-like numbers it does not know how to scale', () => {
    expect(scalePromQL('time() - x > 3600 * 2', F)).toEqual({ expr: 'time() - x > 480 * 2', unscaled: [] });
    expect(scalePromQL('max(time() - x) + 86400 > y', F).unscaled).toEqual(['86400']);
    // Thresholds without time() are not seconds.
    expect(scalePromQL('x > 1000', F).unscaled).toEqual([]);
  });

  it('scales queries inside annotation templates, leaving the prose', () => {
    const t = scaleTemplate('for 5m: {{ with query "topk(1, increase(x{port=\\"5m\\"}[5m]))" }}{{ . }}{{ end }} {{ with query `rate(y{a="b"}[2m])` }}{{ end }}', F);
    expect(t.expr).toBe('for 5m: {{ with query "topk(1, increase(x{port=\\"5m\\"}[40s]))" }}{{ . }}{{ end }} {{ with query `rate(y{a="b"}[16s])` }}{{ end }}');
  });

  it('scales printf-built queries of an action, not the prose around it', () => {
    const t = scaleTemplate(
      'The log said "table full [5m]".{{ with printf "increase(x{instance=%q}[5m]) > 0" $labels.instance | query }} {{ . | first | value | printf "%.0f" }} in 5m{{ end }}',
      F,
    );
    expect(t.expr).toBe(
      'The log said "table full [5m]".{{ with printf "increase(x{instance=%q}[40s]) > 0" $labels.instance | query }} {{ . | first | value | printf "%.0f" }} in 5m{{ end }}',
    );
  });
});

describe('scaleRules on the shipped rules', () => {
  const text = readFileSync(RULES, 'utf8');
  const scaled = scaleRules(text, F);
  const before = parse(text) as { groups: { rules: { alert?: string; for?: string }[] }[] };
  const after = parse(scaled.yaml) as typeof before;

  it('leaves no seconds-like number at real time', () => {
    expect(scaled.unscaled).toEqual([]);
  });

  it('keeps the number of 15 s scrapes each alert needs (for: / 15 s before = for: / 2 s after)', () => {
    const ratio = (g: typeof before, scrape: number): (number | undefined)[] =>
      g.groups.flatMap((gr) => gr.rules.map((r) => (r.for ? parseDuration(r.for) / scrape : undefined)));
    expect(ratio(after, 2000)).toEqual(ratio(before, 15_000));
  });

  it('is a valid rules file (promtool check rules)', () => {
    if (!PROMTOOL) {
      if (IN_CI) throw new Error('promtool not found (apt-get install prometheus)');
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'cte-incidents-scale-'));
    try {
      writeFileSync(join(dir, 'rules.yaml'), scaled.yaml);
      const r = promtool(['check', 'rules', join(dir, 'rules.yaml')]);
      expect(r.status, r.stdout + r.stderr).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
