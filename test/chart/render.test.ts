/**
 * The Helm chart rendered (helm template) for every ci/ scenario: every manifest is valid against
 * the Kubernetes and prometheus-operator schemas with no unknown field, the exporter accepts the
 * rendered arguments, and each scenario's values reach the objects.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPod } from 'kubernetes-models/v1/Pod';
import type { IService } from 'kubernetes-models/v1/Service';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { IServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import type { IPodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import type { IPrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { beforeAll, describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { COLLECTORS } from '../../src/collectors/index.js';
import { parseOptions } from '../../src/config/options.js';
import { staleAssets } from '../../scripts/sync-chart-assets.mjs';
import { CHART, NAMESPACE, RELEASE, ROOT, find, get, render, scenarios } from './helm.js';
import { validateManifest, type Manifest } from './k8s-validate.js';

const rendered = new Map<string, Manifest[]>();

beforeAll(async () => {
  const names = scenarios();
  const all = await Promise.all(names.map((scenario) => render({ scenario })));
  names.forEach((name, i) => rendered.set(name, all[i]!));
});

function manifests(scenario: string): Manifest[] {
  const m = rendered.get(scenario);
  if (!m) throw new Error(`scenario ${scenario} was not rendered`);
  return m;
}

const daemonSet = (scenario: string) => get<IDaemonSet>(manifests(scenario), 'DaemonSet');
const podSpec = (scenario: string) => daemonSet(scenario).spec!.template.spec!;
const container = (scenario: string): IContainer => podSpec(scenario).containers[0]!;
const args = (scenario: string) => container(scenario).args ?? [];
const mounts = (scenario: string) => Object.fromEntries((container(scenario).volumeMounts ?? []).map((m) => [m.name, m]));
const volumes = (scenario: string) => Object.fromEntries((podSpec(scenario).volumes ?? []).map((v) => [v.name, v]));
const caps = (scenario: string) => container(scenario).securityContext?.capabilities?.add ?? [];

describe.each(scenarios())('scenario %s', (scenario) => {
  test('every manifest is valid against the Kubernetes / prometheus-operator schemas, no unknown field', async () => {
    const problems: string[] = [];
    for (const m of manifests(scenario)) {
      for (const p of await validateManifest(m)) problems.push(`${m.kind}/${m.metadata.name}: ${p}`);
    }
    expect(problems).toEqual([]);
  });

  test('the exporter accepts the rendered arguments', () => {
    const argv = args(scenario).map((a) => a.replace('$(HOST_IP)', '10.0.0.1'));
    expect(() => parseOptions(COLLECTORS, argv, {})).not.toThrow();
  });

  test('the DaemonSet reads the host: /proc read-only at /host/proc, --path.procfs=/host/proc', () => {
    expect(volumes(scenario).proc?.hostPath?.path).toBe('/proc');
    expect(mounts(scenario).proc).toMatchObject({ mountPath: '/host/proc', readOnly: true });
    expect(args(scenario)).toContain('--path.procfs=/host/proc');
    for (const m of Object.values(mounts(scenario))) {
      if (volumes(scenario)[m.name]?.hostPath) expect(m.readOnly, `${m.name} is read-only`).toBe(true);
    }
  });

  test('least privilege: drop ALL, read-only root filesystem, only the features add capabilities', () => {
    const sc = container(scenario).securityContext!;
    expect(sc.capabilities?.drop).toEqual(['ALL']);
    expect(sc.readOnlyRootFilesystem).toBe(true);
    expect(caps(scenario).every((c) => ['NET_ADMIN', 'SYS_PTRACE', 'SYSLOG'].includes(c))).toBe(true);
    if (!sc.privileged) expect(sc.allowPrivilegeEscalation).toBe(false);
  });

  test('uid 0 only with a feature that needs it (a capability, or a root-only file); else uid 65534, non-root enforced', () => {
    const pod = podSpec(scenario).securityContext!;
    const a = args(scenario);
    const needsRoot =
      caps(scenario).length > 0 ||
      !a.includes('--no-collector.table') ||
      a.includes('--path.sysfs=/host/sys') ||
      a.includes('--kernel-log.source=journal');
    if (needsRoot) expect(pod).toMatchObject({ runAsUser: 0, runAsGroup: 0, runAsNonRoot: false });
    else expect(pod).toMatchObject({ runAsUser: 65534, runAsGroup: 65534, runAsNonRoot: true });
  });

  test('liveness probes /-/healthy, readiness /-/ready, on the metrics port; selector labels are on the pods', () => {
    const c = container(scenario);
    const portName = c.ports![0]!.name;
    expect(c.livenessProbe?.httpGet).toMatchObject({ path: '/-/healthy', port: portName });
    expect(c.readinessProbe?.httpGet).toMatchObject({ path: '/-/ready', port: portName });
    const ds = daemonSet(scenario);
    expect(ds.spec!.template.metadata!.labels).toMatchObject(ds.spec!.selector.matchLabels!);
  });

  test('every object is in the release namespace or the one its values name', () => {
    for (const m of manifests(scenario)) expect(m.metadata.namespace).toMatch(/^(monitoring-test|monitoring)$/);
  });
});

describe('the validator itself', () => {
  test('reports unknown fields and wrong types in rendered objects', async () => {
    const ds = structuredClone(find(manifests('default'), 'DaemonSet')!) as Manifest & IDaemonSet;
    const spec = ds.spec!.template.spec! as unknown as Record<string, unknown>;
    spec.hostNetwrk = true;
    const c = ds.spec!.template.spec!.containers[0]! as unknown as Record<string, unknown> & IContainer;
    c.securityContext = { ...c.securityContext, capabilites: { add: ['NET_ADMIN'] } } as never;
    c.ports![0]!.containerPort = '9746' as never;
    const problems = await validateManifest(ds);
    expect(problems).toEqual(
      expect.arrayContaining([
        'spec.template.spec.hostNetwrk: unknown field',
        'spec.template.spec.containers[0].securityContext.capabilites: unknown field',
        expect.stringMatching(/containerPort: must be integer/),
      ]),
    );
  });

  test('reports unknown fields in prometheus-operator objects', async () => {
    const sm = structuredClone(find(manifests('monitors'), 'ServiceMonitor')!);
    (sm.spec as { endpoints: Record<string, unknown>[] }).endpoints[0]!.scrapeInterval = '30s';
    expect(await validateManifest(sm)).toEqual(['spec.endpoints[0].scrapeInterval: unknown field']);
  });
});

describe('default values', () => {
  test('renders only the DaemonSet, Service, ServiceAccount and test pod', () => {
    expect(manifests('default').map((m) => m.kind).sort()).toEqual(['DaemonSet', 'Pod', 'Service', 'ServiceAccount']);
  });

  test('hostNetwork on, hostPID off, every node tolerated, one node at a time', () => {
    const spec = podSpec('default');
    expect(spec.hostNetwork).toBe(true);
    expect(spec.hostPID).toBe(false);
    expect(spec.dnsPolicy).toBe('ClusterFirstWithHostNet');
    expect(spec.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(spec.automountServiceAccountToken).toBe(false);
    expect(daemonSet('default').spec!.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
  });

  test('listens on the node IP (status.hostIP) port 9746, port named metrics, Service port 9746', () => {
    expect(args('default')).toContain('--web.listen-address=[$(HOST_IP)]:9746');
    expect(container('default').env).toContainEqual({ name: 'HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } });
    expect(args('all-interfaces')).toContain('--web.listen-address=:9746');
    expect(container('default').ports).toEqual([{ name: 'metrics', containerPort: 9746, protocol: 'TCP' }]);
    const svc = get<IService>(manifests('default'), 'Service');
    expect(svc.spec!.ports).toEqual([{ name: 'metrics', port: 9746, targetPort: 'metrics', protocol: 'TCP' }]);
  });

  test('least privilege: uid 65534 (group adm for kern.log), no capability, no table scan, no sysfs', () => {
    expect(podSpec('default').securityContext).toMatchObject({ runAsUser: 65534, runAsGroup: 65534, runAsNonRoot: true, supplementalGroups: [4] });
    expect(container('default').securityContext!.capabilities).toEqual({ drop: ['ALL'] });
    expect(container('default').securityContext!.privileged).toBeUndefined();
    expect(args('default')).toContain('--no-collector.table');
    expect(mounts('default').sys).toBeUndefined();
  });

  test('kernel log auto: host log files under --path.rootfs; no journal (no journalctl in the image), no /dev/kmsg', () => {
    expect(args('default')).toEqual(expect.arrayContaining(['--kernel-log.source=auto', '--path.rootfs=/host/root']));
    expect(mounts('default').log).toMatchObject({ mountPath: '/host/root/var/log', readOnly: true });
    expect(volumes('default').log?.hostPath).toEqual({ path: '/var/log', type: 'Directory' });
    expect(mounts('default')['journal-var']).toBeUndefined();
    expect(mounts('default')['machine-id']).toBeUndefined();
    expect(mounts('default').kmsg).toBeUndefined();
  });

  test('the image defaults to the appVersion tag', () => {
    const chart = parse(readFileSync(join(CHART, 'Chart.yaml'), 'utf8')) as { appVersion: string };
    expect(container('default').image).toBe(`conntrack-exporter:${chart.appVersion}`);
  });

  test('helm test fetches /metrics through the Service and is not selected by it', () => {
    const pod = get<IPod>(manifests('default'), 'Pod', '-test-connection');
    expect(pod.metadata!.annotations!['helm.sh/hook']).toBe('test');
    const script = pod.spec!.containers[0]!.command!.join(' ');
    expect(script).toContain(`wget -q -T 10 -O - http://${RELEASE}-conntrack-exporter.${NAMESPACE}.svc:9746/metrics`);
    const svc = get<IService>(manifests('default'), 'Service');
    const selected = Object.entries(svc.spec!.selector!).every(([k, v]) => pod.metadata!.labels![k] === v);
    expect(selected).toBe(false);
  });
});

describe('non-default values reach the objects', () => {
  test('netns: hostPID, CAP_SYS_PTRACE and the collector flags', () => {
    expect(podSpec('netns').hostPID).toBe(true);
    expect(caps('netns')).toEqual(['SYS_PTRACE']);
    expect(args('netns')).toEqual(
      expect.arrayContaining(['--collector.netns', '--collector.netns.min-entries=10', '--collector.netns.max=200']),
    );
  });

  test('kmsg: /dev/kmsg mounted, CAP_SYSLOG, privileged (device cgroup), from the start', () => {
    expect(volumes('kmsg').kmsg?.hostPath).toEqual({ path: '/dev/kmsg', type: 'CharDevice' });
    expect(mounts('kmsg').kmsg).toMatchObject({ mountPath: '/dev/kmsg', readOnly: true });
    expect(caps('kmsg')).toContain('SYSLOG');
    expect(container('kmsg').securityContext).toMatchObject({ privileged: true });
    expect(container('kmsg').securityContext!.allowPrivilegeEscalation).toBeUndefined();
    expect(args('kmsg')).toEqual(expect.arrayContaining(['--kernel-log.source=kmsg', '--kernel-log.from-start']));
    expect(args('kmsg').some((a) => a.startsWith('--path.rootfs'))).toBe(false);
    expect(mounts('kmsg').log).toBeUndefined();
  });

  test('kmsg without privileged: CAP_SYSLOG only', () => {
    expect(container('kmsg-unprivileged').securityContext!.privileged).toBeUndefined();
    expect(caps('kmsg-unprivileged')).toEqual(['SYSLOG']);
  });

  test('table: uid 0 and the table collector, still no capability', () => {
    expect(podSpec('table').securityContext).toMatchObject({ runAsUser: 0, runAsNonRoot: false });
    expect(args('table')).not.toContain('--no-collector.table');
    expect(container('table').securityContext!.capabilities).toEqual({ drop: ['ALL'] });
  });

  test('netlink: CAP_NET_ADMIN for conntrack -L / -S', () => {
    expect(caps('netlink')).toEqual(['NET_ADMIN']);
    expect(podSpec('netlink').securityContext).toMatchObject({ runAsUser: 0 });
  });

  test('runAsRoot: uid 0 without any capability', async () => {
    const ds = get<IDaemonSet>(await render({ set: ['runAsRoot=true'] }), 'DaemonSet');
    expect(ds.spec!.template.spec!.securityContext).toMatchObject({ runAsUser: 0, runAsGroup: 0, runAsNonRoot: false });
    expect(ds.spec!.template.spec!.containers[0]!.securityContext!.capabilities).toEqual({ drop: ['ALL'] });
  });

  test('a capability added by hand brings uid 0 (a non-root uid would not have it)', async () => {
    const ds = get<IDaemonSet>(await render({ set: ['containerSecurityContext.capabilities.add={SYS_ADMIN}'] }), 'DaemonSet');
    expect(ds.spec!.template.spec!.securityContext).toMatchObject({ runAsUser: 0, runAsNonRoot: false });
  });

  test('tableScan governs the table collector (collectors.table is ignored)', async () => {
    const off = get<IDaemonSet>(await render({ set: ['collectors.table=true'] }), 'DaemonSet').spec!.template.spec!.containers[0]!.args!;
    expect(off.filter((a) => a.includes('collector.table'))).toEqual(['--no-collector.table']);
  });

  test('file: the configured host directory under /host/root, --kernel-log.path, no journal', () => {
    expect(volumes('file-log').log?.hostPath?.path).toBe('/var/log/syslog-ng');
    expect(mounts('file-log').log).toMatchObject({ mountPath: '/host/root/var/log/syslog-ng', readOnly: true });
    expect(args('file-log')).toEqual(
      expect.arrayContaining(['--kernel-log.source=file', '--path.rootfs=/host/root', '--kernel-log.path=/var/log/syslog-ng/kernel.log']),
    );
    expect(mounts('file-log')['journal-var']).toBeUndefined();
  });

  test('journal: /var/log, /run/log and /etc/machine-id at their own paths, no rootfs', () => {
    expect(args('journal')).toContain('--kernel-log.source=journal');
    expect(args('journal').some((a) => a.startsWith('--path.rootfs'))).toBe(false);
    expect(mounts('journal')['journal-var']).toMatchObject({ mountPath: '/var/log', readOnly: true });
    expect(mounts('journal')['journal-run']).toMatchObject({ mountPath: '/run/log', readOnly: true });
    expect(volumes('journal')['machine-id']?.hostPath).toEqual({ path: '/etc/machine-id', type: 'File' });
  });

  test('auto with the journal: the log files and the journal', () => {
    expect(Object.keys(mounts('auto-journal'))).toEqual(expect.arrayContaining(['log', 'journal-var', 'journal-run', 'machine-id']));
  });

  test('none: no log mounts, no capability, collectors switched off, no sysfs', () => {
    expect(args('no-kernel-log')).toEqual(
      expect.arrayContaining(['--kernel-log.source=none', '--no-collector.memory', '--no-collector.timeouts']),
    );
    expect(Object.keys(mounts('no-kernel-log'))).toEqual(['proc']);
    expect(container('no-kernel-log').securityContext!.capabilities).toEqual({ drop: ['ALL'] });
  });

  test('custom port: node IP only, the port everywhere, the telemetry path', () => {
    const c = container('port');
    expect(args('port')).toEqual(
      expect.arrayContaining(['--web.listen-address=[$(HOST_IP)]:19747', '--web.telemetry-path=/conntrack/metrics']),
    );
    expect(c.env).toContainEqual({ name: 'HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } });
    expect(c.ports).toEqual([{ name: 'http-metrics', containerPort: 19747, protocol: 'TCP' }]);
    expect(c.livenessProbe!.httpGet!.port).toBe('http-metrics');
    const svc = get<IService>(manifests('port'), 'Service');
    expect(svc.spec).toMatchObject({ type: 'NodePort', ports: [{ name: 'http-metrics', port: 19746, targetPort: 'http-metrics', nodePort: 30746 }] });
    const pod = get<IPod>(manifests('port'), 'Pod', '-test-connection');
    expect(pod.spec!.containers[0]!.command!.join(' ')).toContain(':19746/conntrack/metrics');
  });

  test('a ServiceMonitor without the Service is refused with a message', async () => {
    await expect(render({ set: ['prometheus.monitor.enabled=true', 'service.enabled=false'] })).rejects.toThrow(
      'prometheus.monitor.enabled needs service.enabled',
    );
  });

  test('networkpolicy: admits the metrics port from the given peers', () => {
    expect(podSpec('networkpolicy').hostNetwork).toBe(false);
    expect(podSpec('networkpolicy').dnsPolicy).toBeUndefined();
    const np = get<INetworkPolicy>(manifests('networkpolicy'), 'NetworkPolicy');
    expect(np.spec!.podSelector!.matchLabels).toEqual(daemonSet('networkpolicy').spec!.selector.matchLabels);
    expect(np.spec!.ingress).toEqual([
      {
        ports: [{ port: 'metrics', protocol: 'TCP' }],
        from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }],
      },
    ]);
  });

  test('all features: image, digest, secrets, priority class, web config, extra args and env', () => {
    const c = container('all-features');
    expect(c.image).toBe(
      'registry.example.com/platform/conntrack-exporter:0.1.0-rc1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
    );
    expect(c.imagePullPolicy).toBe('Always');
    expect(podSpec('all-features').priorityClassName).toBe('system-node-critical');
    expect(podSpec('all-features').imagePullSecrets).toEqual([{ name: 'registry-credentials' }]);
    expect(args('all-features')).toEqual(
      expect.arrayContaining([
        '--web.config.file=/etc/conntrack-exporter/web/web-config.yml',
        '--log.level=debug',
        '--log.format=json',
        '--collector.ports',
        '--collector.stat',
        '--collector.stat.per-cpu',
        '--web.max-requests=10',
      ]),
    );
    expect(volumes('all-features')['web-config']?.secret?.secretName).toBe('conntrack-exporter-web');
    expect(c.livenessProbe!.httpGet!.scheme).toBe('HTTPS');
    expect(c.env).toContainEqual({ name: 'TZ', value: 'UTC' });
    expect(c.resources).toEqual({ requests: { cpu: '20m', memory: '64Mi' }, limits: { memory: '160Mi' } });
    expect(caps('all-features')).toEqual(['NET_ADMIN', 'SYS_PTRACE', 'SYSLOG']);
    // helm test cannot fetch over TLS with credentials: it is left out.
    expect(find(manifests('all-features'), 'Pod')).toBeUndefined();
    for (const m of manifests('all-features')) expect(m.metadata.labels?.team).toBe('network');
  });
});

describe('monitors, rules and dashboard', () => {
  interface RuleFile {
    groups: { name: string; rules: { alert?: string; record?: string; expr: string; labels?: Record<string, string> }[] }[];
  }
  const ruleFile = () =>
    parse(readFileSync(join(ROOT, 'deploy', 'prometheus', 'conntrack-rules.yaml'), 'utf8')) as RuleFile;
  const shippedRules = () => ruleFile().groups.flatMap((g) => g.rules);

  test('the chart carries identical copies of the rule file and dashboard (node scripts/sync-chart-assets.mjs)', () => {
    expect(staleAssets().map((a) => a.copy)).toEqual([]);
  });

  test('none of them by default', () => {
    const kinds = manifests('default').map((m) => m.kind);
    for (const kind of ['ServiceMonitor', 'PodMonitor', 'PrometheusRule', 'ConfigMap', 'NetworkPolicy']) {
      expect(kinds).not.toContain(kind);
    }
  });

  test('ServiceMonitor: job label from app.kubernetes.io/name (job="conntrack-exporter"), the values', () => {
    const sm = get<IServiceMonitor>(manifests('monitors'), 'ServiceMonitor');
    expect(sm.metadata!.labels!.release).toBe('kube-prometheus-stack');
    expect(sm.spec.jobLabel).toBe('app.kubernetes.io/name');
    const svc = get<IService>(manifests('monitors'), 'Service');
    expect(svc.metadata!.labels!['app.kubernetes.io/name']).toBe('conntrack-exporter');
    expect(sm.spec.selector.matchLabels).toEqual(svc.spec!.selector);
    expect(sm.spec.namespaceSelector).toEqual({ matchNames: [NAMESPACE] });
    expect(sm.spec.endpoints![0]).toMatchObject({
      port: 'metrics',
      path: '/metrics',
      interval: '30s',
      scrapeTimeout: '10s',
      relabelings: [{ sourceLabels: ['__meta_kubernetes_pod_node_name'], targetLabel: 'node' }],
    });
    expect(sm.spec.attachMetadata).toEqual({ node: true });
    expect(sm.spec.sampleLimit).toBe(20000);
  });

  test('by default both monitors add the node name as a node label (named in the alert descriptions)', () => {
    const node = { sourceLabels: ['__meta_kubernetes_pod_node_name'], targetLabel: 'node', action: 'replace' };
    expect(get<IServiceMonitor>(manifests('all-features'), 'ServiceMonitor').spec.endpoints![0]!.relabelings).toEqual([node]);
    expect(get<IPodMonitor>(manifests('all-features'), 'PodMonitor').spec.podMetricsEndpoints![0]!.relabelings).toEqual([node]);
  });

  test('PodMonitor: its own namespace, selects the pods in the release namespace', () => {
    const pm = get<IPodMonitor>(manifests('monitors'), 'PodMonitor');
    expect(pm.metadata!.namespace).toBe('monitoring');
    expect(pm.spec.jobLabel).toBe('app.kubernetes.io/name');
    expect(pm.spec.namespaceSelector).toEqual({ matchNames: [NAMESPACE] });
    expect(pm.spec.selector.matchLabels).toEqual(daemonSet('monitors').spec!.selector.matchLabels);
    expect(pm.spec.podMetricsEndpoints![0]).toMatchObject({ port: 'metrics', interval: '1m' });
  });

  test('PrometheusRule by default: every group, alert and recording rule of the rule file, unchanged', () => {
    const pr = get<IPrometheusRule>(manifests('all-features'), 'PrometheusRule');
    expect(pr.metadata!.labels!.release).toBe('kube-prometheus-stack');
    expect(pr.spec.groups).toEqual(ruleFile().groups);
    expect(shippedRules().filter((r) => r.alert).length).toBeGreaterThan(0);
  });

  test('PrometheusRule with a selector, disabled alerts, extra labels and groups', () => {
    const pr = get<IPrometheusRule>(manifests('monitors'), 'PrometheusRule');
    expect(pr.metadata!.namespace).toBe('monitoring');
    const rules = pr.spec.groups!.flatMap((g) => g.rules ?? []);
    const alerts = rules.filter((r) => r.alert).map((r) => r.alert);
    const shippedAlerts = shippedRules().filter((r) => r.alert).map((r) => r.alert);
    expect(alerts).toEqual([...shippedAlerts.filter((a) => a !== 'ConntrackTableNearlyFull'), 'ConntrackSiteTableHalfFull']);
    expect(rules.filter((r) => r.record).map((r) => r.record)).toEqual(shippedRules().filter((r) => r.record).map((r) => r.record));
    for (const r of rules) {
      expect(String(r.expr)).not.toContain('job="conntrack-exporter"');
      if (r.alert && r.alert !== 'ConntrackSiteTableHalfFull') {
        expect(r.labels).toMatchObject({ team: 'network' });
        expect(r.labels!.severity).toMatch(/^(critical|warning|info)$/);
        expect(r.annotations!.dashboard).toBe('https://grafana.example.com/d/conntrack');
      }
    }
    const shippedWithSelector = shippedRules().filter(
      (r) => r.alert !== 'ConntrackTableNearlyFull' && r.expr.includes('job="conntrack-exporter"'),
    ).length;
    expect(rules.filter((r) => String(r.expr).includes('job="conntrack",cluster="prod"')).length).toBe(shippedWithSelector);
    expect(pr.spec.groups!.at(-1)!.name).toBe('conntrack-exporter.site');
  });

  test('dashboard ConfigMap: the sidecar label and the dashboard JSON as is', () => {
    const byDefault = get<IConfigMap>(manifests('all-features'), 'ConfigMap', '-dashboard');
    expect(byDefault.metadata!.labels!.grafana_dashboard).toBe('1');
    const cm = get<IConfigMap>(manifests('monitors'), 'ConfigMap', '-dashboard');
    expect(cm.metadata!.labels!.grafana_dashboard).toBe('conntrack');
    expect(cm.metadata!.annotations).toEqual({ grafana_folder: 'Network' });
    expect(cm.metadata!.namespace).toBe('monitoring');
    expect(cm.data!['conntrack.json']).toBe(readFileSync(join(ROOT, 'deploy', 'grafana', 'conntrack.json'), 'utf8'));
  });
});
