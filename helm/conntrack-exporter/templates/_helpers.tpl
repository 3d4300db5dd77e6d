{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "conntrack-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, plus the chart name unless the release already contains it.
*/}}
{{- define "conntrack-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Namespace of every namespaced object.
*/}}
{{- define "conntrack-exporter.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{/*
Chart label: name-version.
*/}}
{{- define "conntrack-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "conntrack-exporter.labels" -}}
helm.sh/chart: {{ include "conntrack-exporter.chart" . }}
{{ include "conntrack-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ include "conntrack-exporter.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: metrics
app.kubernetes.io/part-of: {{ include "conntrack-exporter.name" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels (immutable on the DaemonSet: never add to these).
*/}}
{{- define "conntrack-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "conntrack-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount.
*/}}
{{- define "conntrack-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "conntrack-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image tag: image.tag, else the chart's appVersion.
*/}}
{{- define "conntrack-exporter.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
Full image reference: [registry/]repository[:tag][@digest].
*/}}
{{- define "conntrack-exporter.image" -}}
{{- $repo := .Values.image.repository }}
{{- if .Values.image.registry }}
{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" $repo (include "conntrack-exporter.imageTag" .) .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (include "conntrack-exporter.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Whether the pod shares the host PID namespace: hostPID, or the netns collector.
*/}}
{{- define "conntrack-exporter.hostPID" -}}
{{- if or .Values.hostPID .Values.netns.enabled }}true{{ else }}false{{ end }}
{{- end }}

{{/*
Kernel-log source as given (auto, kmsg, file, journal, none).
*/}}
{{- define "conntrack-exporter.kernelLogSource" -}}
{{- .Values.kernelLog.source | default "auto" }}
{{- end }}

{{/*
Whether host log files are mounted (sources file and auto).
*/}}
{{- define "conntrack-exporter.mountLogFiles" -}}
{{- $s := include "conntrack-exporter.kernelLogSource" . }}
{{- if or (eq $s "file") (eq $s "auto") }}true{{ end }}
{{- end }}

{{/*
Whether the journal directories are mounted (sources journal and auto).
*/}}
{{- define "conntrack-exporter.mountJournal" -}}
{{- $s := include "conntrack-exporter.kernelLogSource" . }}
{{- if or (eq $s "journal") (and (eq $s "auto") .Values.kernelLog.journal.mountInAuto) }}true{{ end }}
{{- end }}

{{/*
Whether the pod runs as uid 0: runAsRoot, capabilities added by hand, or a feature that reads
root-only files or needs a capability (Kubernetes gives a non-root uid no effective capability). See values.yaml, "Privileges".
*/}}
{{- define "conntrack-exporter.needsRoot" -}}
{{- $s := include "conntrack-exporter.kernelLogSource" . }}
{{- $extraCaps := (default dict .Values.containerSecurityContext.capabilities).add }}
{{- if or .Values.runAsRoot $extraCaps .Values.tableScan.enabled .Values.conntrackNetlink.enabled .Values.hostSysfs.enabled .Values.netns.enabled (eq $s "journal") (eq $s "kmsg") }}true{{ end }}
{{- end }}

{{/*
Pod securityContext: the values', with uid/gid 0 where a feature needs them.
*/}}
{{- define "conntrack-exporter.podSecurityContext" -}}
{{- $ctx := deepCopy (default dict .Values.securityContext) }}
{{- if include "conntrack-exporter.needsRoot" . }}
{{- $_ := set $ctx "runAsUser" 0 }}
{{- $_ := set $ctx "runAsGroup" 0 }}
{{- $_ := set $ctx "runAsNonRoot" false }}
{{- end }}
{{- toYaml $ctx }}
{{- end }}

{{/*
Container securityContext: containerSecurityContext plus the capabilities each enabled feature
needs (see values.yaml, "Privileges").
*/}}
{{- define "conntrack-exporter.containerSecurityContext" -}}
{{- $ctx := deepCopy (default dict .Values.containerSecurityContext) }}
{{- $caps := deepCopy (default dict $ctx.capabilities) }}
{{- $add := list }}
{{- range (default list $caps.add) }}{{ $add = append $add . }}{{ end }}
{{- if .Values.conntrackNetlink.enabled }}{{ $add = append $add "NET_ADMIN" }}{{ end }}
{{- if .Values.netns.enabled }}{{ $add = append $add "SYS_PTRACE" }}{{ end }}
{{- $source := include "conntrack-exporter.kernelLogSource" . }}
{{- if eq $source "kmsg" }}
{{- $add = append $add "SYSLOG" }}
{{- if .Values.kernelLog.kmsg.privileged }}
{{- $_ := set $ctx "privileged" true }}
{{- /* The API rejects allowPrivilegeEscalation: false together with privileged: true. */}}
{{- $_ := unset $ctx "allowPrivilegeEscalation" }}
{{- end }}
{{- end }}
{{- if $add }}
{{- $_ := set $caps "add" (uniq $add) }}
{{- else }}
{{- $_ := unset $caps "add" }}
{{- end }}
{{- if $caps }}
{{- $_ := set $ctx "capabilities" $caps }}
{{- end }}
{{- toYaml $ctx }}
{{- end }}

{{/*
Exporter arguments.
*/}}
{{- define "conntrack-exporter.args" -}}
{{- $source := include "conntrack-exporter.kernelLogSource" . }}
{{- if .Values.service.listenOnAllInterfaces }}
- --web.listen-address=:{{ .Values.service.targetPort }}
{{- else }}
- --web.listen-address=[$(HOST_IP)]:{{ .Values.service.targetPort }}
{{- end }}
{{- if ne .Values.web.telemetryPath "/metrics" }}
- --web.telemetry-path={{ .Values.web.telemetryPath }}
{{- end }}
{{- if .Values.web.config.existingSecret }}
- --web.config.file=/etc/conntrack-exporter/web/{{ .Values.web.config.key }}
{{- end }}
- --path.procfs=/host/proc
{{- if .Values.hostSysfs.enabled }}
- --path.sysfs=/host/sys
{{- end }}
{{- if include "conntrack-exporter.mountLogFiles" . }}
- --path.rootfs=/host/root
{{- end }}
- --log.level={{ .Values.log.level }}
- --log.format={{ .Values.log.format }}
{{- if not .Values.tableScan.enabled }}
- --no-collector.table
{{- end }}
{{- range $name, $on := .Values.collectors }}
{{- if eq $name "table" }}
{{- else if $on }}
- --collector.{{ $name }}
{{- else }}
- --no-collector.{{ $name }}
{{- end }}
{{- end }}
{{- if .Values.netns.enabled }}
- --collector.netns
{{- with .Values.netns.minEntries }}
- --collector.netns.min-entries={{ . }}
{{- end }}
{{- with .Values.netns.max }}
- --collector.netns.max={{ . }}
{{- end }}
{{- end }}
- --kernel-log.source={{ $source }}
{{- with .Values.kernelLog.path }}
- --kernel-log.path={{ . }}
{{- end }}
{{- if .Values.kernelLog.fromStart }}
- --kernel-log.from-start
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
A probe: the values' probe settings, with httpGet path (/-/healthy or /-/ready) on the metrics port.
*/}}
{{- define "conntrack-exporter.probe" -}}
{{- $probe := deepCopy .probe }}
{{- $http := deepCopy (default dict $probe.httpGet) }}
{{- $_ := set $http "path" .path }}
{{- $_ := set $http "port" .portName }}
{{- if not $http.httpHeaders }}{{ $_ := unset $http "httpHeaders" }}{{ end }}
{{- $_ := set $probe "httpGet" $http }}
{{- toYaml $probe }}
{{- end }}

{{/*
Endpoint settings shared by the ServiceMonitor endpoint and the PodMonitor podMetricsEndpoint.
*/}}
{{- define "conntrack-exporter.monitorEndpoint" -}}
{{- $m := .monitor }}
path: {{ .root.Values.web.telemetryPath }}
scheme: {{ $m.scheme }}
{{- with $m.interval }}
interval: {{ . }}
{{- end }}
{{- with $m.scrapeTimeout }}
scrapeTimeout: {{ . }}
{{- end }}
{{- if $m.honorLabels }}
honorLabels: true
{{- end }}
{{- with $m.tlsConfig }}
tlsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $m.basicAuth }}
basicAuth:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $m.relabelings }}
relabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $m.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Scrape limits shared by the ServiceMonitor and the PodMonitor spec.
*/}}
{{- define "conntrack-exporter.monitorLimits" -}}
{{- range $key := list "sampleLimit" "targetLimit" "labelLimit" "labelNameLengthLimit" "labelValueLengthLimit" }}
{{- with index $.monitor $key }}
{{ $key }}: {{ . }}
{{- end }}
{{- end }}
{{- if $.monitor.attachMetadata.node }}
attachMetadata:
  node: true
{{- end }}
{{- end }}
