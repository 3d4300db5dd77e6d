/**
 * The Helm chart: helm lint --strict on every ci/ scenario, values.schema.json strictness,
 * Chart.yaml versions, and a comment on every key of values.yaml.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { isMap, isScalar, parse, parseDocument, type YAMLMap } from 'yaml';
import { CHART, ROOT, helm, render, scenarioFile, scenarios } from './helm.js';

describe('helm lint --strict', () => {
  test('there are ci/ scenarios', () => {
    expect(scenarios()).toEqual(
      expect.arrayContaining([
        'default', 'all-features', 'kmsg', 'file-log', 'journal', 'netns', 'port', 'networkpolicy', 'monitors',
      ]),
    );
  });

  test.each(scenarios())('%s', async (scenario) => {
    const r = await helm(['lint', '--strict', CHART, '--values', scenarioFile(scenario)]);
    expect(r.stderr + r.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(r.code).toBe(0);
    // --strict turns warnings into failures; only the optional icon remark may be left.
    const remarks = r.stdout.split('\n').filter((l) => /^\[(INFO|WARNING|ERROR)\]/.test(l));
    expect(remarks.filter((l) => !l.includes('icon is recommended'))).toEqual([]);
  });
});

describe('values.schema.json', () => {
  test.each([
    ['an unknown top-level key', 'hostNetwrk=true', 'hostNetwrk'],
    ['an unknown nested key', 'kernelLog.sorce=kmsg', 'sorce'],
    ['an unknown kernel-log source', 'kernelLog.source=dmesg', 'kernelLog.source'],
    ['a port out of range', 'service.targetPort=70000', 'service.targetPort'],
    ['a log level the exporter does not know', 'log.level=trace', 'log.level'],
    ['an extra argument that is not a flag', 'extraArgs[0]=oops', 'extraArgs'],
    ['a non-boolean collector switch', 'collectors.table=maybe', 'collectors'],
    ['an empty rule selector', 'prometheusRule.selector=', 'prometheusRule.selector'],
  ])('rejects %s', async (_what, set, named) => {
    await expect(render({ set: [set] })).rejects.toThrow(named);
  });

  test('accepts being a subchart (global values)', async () => {
    await expect(render({ set: ['global.foo=bar'] })).resolves.not.toHaveLength(0);
  });

  test('describes every key of values.yaml and nothing else', () => {
    const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as Schema;
    const values = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as Record<string, unknown>;
    const missing: string[] = [];
    const unused: string[] = [];
    compareKeys(schema, values, '', missing, unused);
    expect(missing, 'keys of values.yaml without a schema property').toEqual([]);
    expect(unused.filter((k) => k !== 'global'), 'schema properties with no default in values.yaml').toEqual([]);
  });
});

interface Schema {
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
}

function compareKeys(schema: Schema, value: unknown, path: string, missing: string[], unused: string[]): void {
  if (schema.additionalProperties !== false || !schema.properties) return; // a pass-through object
  const obj = (value ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    const sub = schema.properties[key];
    if (!sub) missing.push(path + key);
    else compareKeys(sub, obj[key], `${path}${key}.`, missing, unused);
  }
  for (const key of Object.keys(schema.properties)) if (!(key in obj)) unused.push(path + key);
}

describe('Chart.yaml', () => {
  const chart = parse(readFileSync(join(CHART, 'Chart.yaml'), 'utf8')) as Record<string, string>;
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };

  test('the chart version is its own, not the app version', () => {
    expect(chart.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(chart.version).not.toBe(chart.appVersion);
  });

  test('appVersion is the exporter version in package.json (the default image tag)', () => {
    expect(chart.appVersion).toBe(pkg.version);
  });
});

describe('values.yaml', () => {
  test('every key has a comment', () => {
    const doc = parseDocument(readFileSync(join(CHART, 'values.yaml'), 'utf8'));
    const uncommented: string[] = [];
    const walk = (node: unknown, path: string) => {
      if (!isMap(node)) return;
      (node as YAMLMap).items.forEach((pair, i) => {
        const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        // The yaml parser attaches a comment above a map's first key to the map itself.
        const comment = (isScalar(pair.key) ? pair.key.commentBefore : undefined) ?? (i === 0 ? (node as YAMLMap).commentBefore : undefined);
        if (!comment?.trim()) uncommented.push(path + key);
        walk(pair.value, `${path}${key}.`);
      });
    };
    walk(doc.contents, '');
    expect(uncommented).toEqual([]);
  });
});
