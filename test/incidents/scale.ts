/**
 * Time scaling for the incident lab: the shipped rules run faster than real
 * time by multiplying every duration in them by one factor, together with the
 * scrape and evaluation interval (and Alertmanager's timers), so that the
 * number of scrapes an alert needs to fire is unchanged.
 *
 * Scaled:
 * - `for:` and `keep_firing_for:` of every rule;
 * - every PromQL duration literal (range windows `[5m]`, subqueries
 *   `[10m:1m]`, `offset 5m`) in `expr`, and in the `query "..."` calls of
 *   annotation templates;
 * - seconds written as plain numbers where PromQL needs them: the horizon of
 *   `predict_linear(v, SECONDS)`, a number compared with `time() - x`
 *   (`time() - x < 300`), and the `clamp_min`/`clamp_max` bound such a
 *   comparison is made against.
 * Any other number of 60 or more in an expression that uses `time()` or
 * `predict_linear` is reported in `unscaled`, so a rule written in a way this
 * transform does not know fails its unit test instead of silently running at
 * real time.
 */
import { parse, stringify } from 'yaml';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000, y: 31_536_000_000 };
const DURATION = /^(?:\d+(?:ms|[smhdwy]))+$/;
const DURATION_PART = /(\d+)(ms|[smhdwy])/g;

/** A Prometheus duration (`1h30m`, `250ms`) in milliseconds. */
export function parseDuration(text: string): number {
  if (!DURATION.test(text)) throw new Error(`not a Prometheus duration: ${JSON.stringify(text)}`);
  let ms = 0;
  for (const m of text.matchAll(DURATION_PART)) ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  return ms;
}

/** Milliseconds as the shortest exact Prometheus duration (`90s` → `1m30s`, `1333ms`); at least 1ms. */
export function formatDuration(ms: number): string {
  let rest = Math.max(1, Math.round(ms));
  let out = '';
  for (const unit of ['d', 'h', 'm', 's', 'ms'] as const) {
    const size = UNIT_MS[unit]!;
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out;
}

export function scaleDuration(text: string, factor: number): string {
  return formatDuration(parseDuration(text) * factor);
}

/** Splits PromQL into code and string-literal pieces (strings are never rewritten). */
function pieces(expr: string, escapedQuotes: boolean): { code: boolean; text: string }[] {
  const out: { code: boolean; text: string }[] = [];
  let i = 0;
  let start = 0;
  const push = (end: number, code: boolean): void => {
    if (end > start) out.push({ code, text: expr.slice(start, end) });
    start = end;
  };
  while (i < expr.length) {
    const c = expr[i]!;
    // Inside a Go template string, PromQL's quotes are written \" … \".
    const quote = escapedQuotes && c === '\\' && expr[i + 1] === '"' ? '\\"' : c === '"' || c === "'" || c === '`' ? c : undefined;
    if (!quote) {
      i++;
      continue;
    }
    push(i, true);
    let j = i + quote.length;
    while (j < expr.length && !expr.startsWith(quote, j)) j += quote === '\\"' ? 1 : expr[j] === '\\' ? 2 : 1;
    i = Math.min(expr.length, j + quote.length);
    push(i, false);
  }
  push(expr.length, true);
  return out;
}

/** Index of the parenthesis closing the one at `open`. */
function closing(code: string, open: number): number {
  let depth = 0;
  for (let i = open; i < code.length; i++) {
    if (code[i] === '(') depth++;
    else if (code[i] === ')' && --depth === 0) return i;
  }
  return -1;
}

/** Top-level comma positions between `open` and its closing parenthesis. */
function argCommas(code: string, open: number, close: number): number[] {
  const commas: number[] = [];
  let depth = 0;
  for (let i = open + 1; i < close; i++) {
    const c = code[i];
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 0) commas.push(i);
  }
  return commas;
}

const fmt = (n: number): string => String(Number(n.toPrecision(12)));

export interface ScaledExpr {
  expr: string;
  /** Numbers that look like seconds (≥ 60, in a time()/predict_linear expression) left as they were. */
  unscaled: string[];
}

/** Scales the durations of one PromQL expression. */
export function scalePromQL(expr: string, factor: number, opts: { escapedQuotes?: boolean } = {}): ScaledExpr {
  const parts = pieces(expr, opts.escapedQuotes ?? false);
  const codeOnly = parts.map((p) => (p.code ? p.text : ' '.repeat(p.text.length))).join('');
  // Edits on the code-only view (same offsets as `expr`), applied right to left.
  const edits: { at: number; len: number; text: string }[] = [];
  const seconds = new Set<number>(); // start offsets of numbers already handled as seconds

  for (const m of codeOnly.matchAll(/(?<![\w:.])((?:\d+(?:ms|[smhdwy]))+)(?![\w.])/g)) {
    edits.push({ at: m.index!, len: m[1]!.length, text: scaleDuration(m[1]!, factor) });
  }
  // The step of a subquery, `[10m:30s]` (after a colon, which the pattern above leaves to metric names).
  for (const m of codeOnly.matchAll(/\[\s*(?:\d+(?:ms|[smhdwy]))+\s*:\s*((?:\d+(?:ms|[smhdwy]))+)\s*\]/g)) {
    const at = m.index! + m[0].lastIndexOf(m[1]!);
    edits.push({ at, len: m[1]!.length, text: scaleDuration(m[1]!, factor) });
  }
  const scaleArg = (from: number, to: number): void => {
    const arg = codeOnly.slice(from, to);
    const lead = arg.length - arg.trimStart().length;
    const body = arg.trim();
    if (/^\d+(?:\.\d+)?$/.test(body)) {
      edits.push({ at: from + lead, len: body.length, text: fmt(Number(body) * factor) });
    } else {
      edits.push({ at: from + lead, len: body.length, text: `(${body}) * ${fmt(factor)}` });
    }
    for (const n of body.matchAll(/\d+(?:\.\d+)?/g)) seconds.add(from + lead + n.index!);
  };
  for (const m of codeOnly.matchAll(/\bpredict_linear\s*\(/g)) {
    const open = m.index! + m[0].length - 1;
    const close = closing(codeOnly, open);
    const commas = argCommas(codeOnly, open, close);
    if (close > 0 && commas.length === 1) scaleArg(commas[0]! + 1, close);
  }
  if (/\btime\s*\(\s*\)\s*-/.test(codeOnly)) {
    // `time() - x < 300`: the number compared with an age.
    for (const m of codeOnly.matchAll(/\btime\s*\(\s*\)\s*-\s*[A-Za-z_:][\w:]*(?:\s*\{[^}]*\})?\s*\)?\s*[<>]=?\s*(\d+(?:\.\d+)?)(?![\w.])/g)) {
      const at = m.index! + m[0].length - m[1]!.length;
      scaleArg(at, at + m[1]!.length);
    }
    // `(time() - x) > on (…) clamp_min(k * duration, 600)`: the bound is seconds.
    for (const m of codeOnly.matchAll(/\bclamp_(?:min|max)\s*\(/g)) {
      const open = m.index! + m[0].length - 1;
      const close = closing(codeOnly, open);
      const commas = argCommas(codeOnly, open, close);
      if (close > 0 && commas.length === 1) scaleArg(commas[0]! + 1, close);
    }
  }
  const unscaled: string[] = [];
  if (/\b(?:time\s*\(|predict_linear\s*\()/.test(codeOnly)) {
    for (const m of codeOnly.matchAll(/(?<![\w:.])(\d+(?:\.\d+)?)(?![\w.])/g)) {
      const inDuration = edits.some((e) => m.index! >= e.at && m.index! < e.at + e.len && DURATION.test(codeOnly.slice(e.at, e.at + e.len)));
      if (Number(m[1]) >= 60 && !seconds.has(m.index!) && !inDuration) unscaled.push(m[1]!);
    }
  }
  edits.sort((a, b) => b.at - a.at);
  let out = expr;
  for (const e of edits) out = out.slice(0, e.at) + e.text + out.slice(e.at + e.len);
  return { expr: out, unscaled };
}

/**
 * Scales the PromQL inside an annotation template: every string literal of a `{{ … }}` action
 * that runs `query` (`query "…"`, `printf "…" $x | query`, raw `…` strings). Prose outside the
 * actions is left alone.
 */
export function scaleTemplate(text: string, factor: number): ScaledExpr {
  const unscaled: string[] = [];
  let out = '';
  let i = 0;
  while (i < text.length) {
    const open = text.indexOf('{{', i);
    if (open < 0) {
      out += text.slice(i);
      break;
    }
    out += text.slice(i, open);
    // The action runs to the first `}}` outside a string literal.
    let j = open + 2;
    const strings: { from: number; to: number; raw: boolean }[] = [];
    while (j < text.length && !text.startsWith('}}', j)) {
      const c = text[j];
      if (c === '"' || c === '`') {
        let k = j + 1;
        while (k < text.length && text[k] !== c) k += c === '"' && text[k] === '\\' ? 2 : 1;
        strings.push({ from: j + 1, to: k, raw: c === '`' });
        j = k + 1;
      } else j++;
    }
    const close = Math.min(text.length, j + 2);
    let action = text.slice(open, close);
    if (/\bquery\b/.test(action)) {
      for (const str of [...strings].reverse()) {
        const r = scalePromQL(text.slice(str.from, str.to), factor, { escapedQuotes: !str.raw });
        unscaled.push(...r.unscaled);
        action = action.slice(0, str.from - open) + r.expr + action.slice(str.to - open);
      }
    }
    out += action;
    i = close;
  }
  return { expr: out, unscaled };
}

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  keep_firing_for?: string;
  annotations?: Record<string, string>;
}

export interface ScaledRules {
  yaml: string;
  /** `rule: number` for numbers that look like seconds and were not scaled. */
  unscaled: string[];
}

/** The rules file (YAML text) with every duration multiplied by `factor`. */
export function scaleRules(yamlText: string, factor: number): ScaledRules {
  if (!(factor > 0)) throw new Error(`scale factor must be > 0, got ${factor}`);
  const doc = parse(yamlText) as { groups: { interval?: string; rules: Rule[] }[] };
  const unscaled: string[] = [];
  for (const g of doc.groups) {
    if (g.interval) g.interval = scaleDuration(g.interval, factor);
    for (const r of g.rules) {
      const name = r.alert ?? r.record ?? '?';
      if (r.for) r.for = scaleDuration(r.for, factor);
      if (r.keep_firing_for) r.keep_firing_for = scaleDuration(r.keep_firing_for, factor);
      const e = scalePromQL(r.expr, factor);
      r.expr = e.expr;
      unscaled.push(...e.unscaled.map((n) => `${name}: ${n}`));
      for (const [k, v] of Object.entries(r.annotations ?? {})) {
        const t = scaleTemplate(v, factor);
        r.annotations![k] = t.expr;
        unscaled.push(...t.unscaled.map((n) => `${name} (${k}): ${n}`));
      }
    }
  }
  return { yaml: stringify(doc, { lineWidth: 0 }), unscaled };
}
