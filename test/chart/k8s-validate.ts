/**
 * Offline validation of rendered Kubernetes manifests.
 *
 * Two checks per object:
 * - the compiled JSON-schema validators of `kubernetes-models` and
 *   `@kubernetes-models/prometheus-operator` (types, required fields, enums, formats);
 * - unknown fields: those validators accept any extra key, so every key of the object is also
 *   looked up in the packages' TypeScript interfaces (through the TypeScript checker), the way
 *   the API server's strict field validation would reject it.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface KindInfo {
  /** Module exporting the model class and its `I<Kind>` interface. */
  module: string;
}

/** apiVersion/kind → model module. Only the kinds the chart renders. */
export const KINDS: Record<string, KindInfo> = {
  'v1/ServiceAccount': { module: 'kubernetes-models/v1/ServiceAccount' },
  'v1/Service': { module: 'kubernetes-models/v1/Service' },
  'v1/ConfigMap': { module: 'kubernetes-models/v1/ConfigMap' },
  'v1/Pod': { module: 'kubernetes-models/v1/Pod' },
  'apps/v1/DaemonSet': { module: 'kubernetes-models/apps/v1/DaemonSet' },
  'networking.k8s.io/v1/NetworkPolicy': { module: 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy' },
  'monitoring.coreos.com/v1/ServiceMonitor': {
    module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor',
  },
  'monitoring.coreos.com/v1/PodMonitor': {
    module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor',
  },
  'monitoring.coreos.com/v1/PrometheusRule': {
    module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule',
  },
};

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

const kindKey = (m: { apiVersion: string; kind: string }) => `${m.apiVersion}/${m.kind}`;

/** The TypeScript checker over the models' interfaces, built once (about a second). */
let typeCache: { checker: ts.TypeChecker; types: Map<string, ts.Type> } | undefined;

function interfaceTypes(): { checker: ts.TypeChecker; types: Map<string, ts.Type> } {
  if (typeCache) return typeCache;
  const entries = Object.entries(KINDS);
  const virtual = join(ROOT, 'test', 'chart', '__k8s_interfaces__.ts');
  const source = entries
    .map(([key, { module }], i) => {
      const kind = key.slice(key.lastIndexOf('/') + 1);
      return `import type { I${kind} as T${i} } from '${module}';\nexport type K${i} = T${i};`;
    })
    .join('\n');
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    skipLibCheck: true,
    noEmit: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.fileExists = (f) => f === virtual || fileExists.call(host, f);
  host.readFile = (f) => (f === virtual ? source : readFile.call(host, f));
  host.getSourceFile = (f, lang, ...rest) =>
    f === virtual ? ts.createSourceFile(f, source, lang) : getSourceFile.call(host, f, lang, ...rest);
  const program = ts.createProgram([virtual], options, host);
  const diagnostics = ts.getPreEmitDiagnostics(program);
  if (diagnostics.length > 0) {
    throw new Error(`cannot load the model interfaces: ${ts.formatDiagnostics(diagnostics, host)}`);
  }
  const checker = program.getTypeChecker();
  const file = program.getSourceFile(virtual);
  const moduleSymbol = file && checker.getSymbolAtLocation(file);
  if (!moduleSymbol) throw new Error('cannot load the model interfaces');
  const exports = new Map(checker.getExportsOfModule(moduleSymbol).map((s) => [s.name, s]));
  const types = new Map<string, ts.Type>();
  entries.forEach(([key], i) => {
    const symbol = exports.get(`K${i}`);
    if (!symbol) throw new Error(`no interface for ${key}`);
    types.set(key, checker.getDeclaredTypeOfSymbol(symbol));
  });
  typeCache = { checker, types };
  return typeCache;
}

/** Paths of fields the interfaces do not declare, e.g. `spec.template.spec.hostNetwrk`. */
export function unknownFields(manifest: Manifest): string[] {
  const { checker, types } = interfaceTypes();
  const type = types.get(kindKey(manifest));
  if (!type) return [`${kindKey(manifest)}: kind not known to the validator`];
  const errors: string[] = [];
  walk(checker, manifest, type, '', errors);
  return errors;
}

function walk(checker: ts.TypeChecker, value: unknown, declared: ts.Type, path: string, errors: string[]): void {
  if (value === null || typeof value !== 'object') return; // scalars: the schema validators check them
  let type = checker.getNonNullableType(declared);
  if (type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown | ts.TypeFlags.NonPrimitive)) return;
  if (type.isUnion()) {
    const candidates = type.types.filter((t) => t.flags & ts.TypeFlags.Object);
    if (candidates.length === 0) return; // e.g. int-or-string given an object: the validators report it
    // Several object shapes: take the one that declares the most of the given keys.
    const keys = Array.isArray(value) ? [] : Object.keys(value);
    const score = (t: ts.Type) => keys.filter((k) => checker.getPropertyOfType(t, k)).length;
    type = candidates.reduce((best, t) => (score(t) > score(best) ? t : best));
  }
  if (Array.isArray(value)) {
    const element = checker.getIndexTypeOfType(type, ts.IndexKind.Number);
    if (!element) {
      errors.push(`${path || '.'}: an array where the API has an object`);
      return;
    }
    value.forEach((v, i) => walk(checker, v, element, `${path}[${i}]`, errors));
    return;
  }
  const stringIndex = checker.getIndexTypeOfType(type, ts.IndexKind.String);
  for (const [key, v] of Object.entries(value)) {
    const child = path === '' ? key : `${path}.${key}`;
    const prop = checker.getPropertyOfType(type, key);
    if (prop) walk(checker, v, checker.getTypeOfSymbol(prop), child, errors);
    else if (stringIndex) walk(checker, v, stringIndex, child, errors);
    else errors.push(`${child}: unknown field`);
  }
}

/** Schema errors from the models' compiled validators (empty when valid). */
export async function schemaErrors(manifest: Manifest): Promise<string[]> {
  const info = KINDS[kindKey(manifest)];
  if (!info) return [`${kindKey(manifest)}: kind not known to the validator`];
  const kind = manifest.kind;
  const mod = (await import(info.module)) as Record<string, new (data: unknown) => { validate(): void }>;
  const Model = mod[kind];
  if (!Model) return [`${info.module} exports no ${kind}`];
  try {
    new Model(manifest).validate();
    return [];
  } catch (err) {
    const details = (err as { errors?: { instancePath: string; message?: string }[] }).errors;
    if (details) return details.map((e) => `${e.instancePath || '.'}: ${e.message ?? 'invalid'}`);
    return [String(err)];
  }
}

/** Every problem with a manifest: schema errors and unknown fields. */
export async function validateManifest(manifest: Manifest): Promise<string[]> {
  return [...(await schemaErrors(manifest)), ...unknownFields(manifest)];
}
