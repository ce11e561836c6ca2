{{/*
Names and labels.
*/}}
{{- define "kubellm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubellm.fullname" -}}
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

{{- define "kubellm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubellm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubellm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kubellm.labels" -}}
helm.sh/chart: {{ include "kubellm.chart" . }}
{{ include "kubellm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubellm
{{- end }}

{{- define "kubellm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubellm.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kubellm.metricsServiceName" -}}
{{- printf "%s-metrics" (include "kubellm.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubellm.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The operators to run, as a YAML list of {name, suffix, namespaces, replicas, peering}: one
per entry of `shards` (each owns its namespaces, with its own peering), or a single one
(`watchNamespaces`, `replicas`, `peering.name`) when no shards are set.
*/}}
{{- define "kubellm.shards" -}}
{{- if and .Values.shards .Values.watchNamespaces }}
{{- fail "set either shards (each with its namespaces) or watchNamespaces, not both" }}
{{- end }}
{{- $owner := dict }}
{{- $shards := list }}
{{- range $shard := .Values.shards }}
{{- range $ns := $shard.namespaces }}
{{- if hasKey $owner $ns }}
{{- fail (printf "namespace %s is in shards %s and %s: each namespace belongs to one shard" $ns (get $owner $ns) $shard.name) }}
{{- end }}
{{- $_ := set $owner $ns $shard.name }}
{{- end }}
{{- $shards = append $shards (dict "name" $shard.name "suffix" (printf "-%s" $shard.name) "namespaces" $shard.namespaces "replicas" (default $.Values.replicas $shard.replicas) "peering" (printf "%s-%s" $.Values.peering.name $shard.name)) }}
{{- else }}
{{- $shards = list (dict "name" "" "suffix" "" "namespaces" .Values.watchNamespaces "replicas" .Values.replicas "peering" .Values.peering.name) }}
{{- end }}
{{- toYaml $shards }}
{{- end }}

{{/*
Every namespace some operator of this release watches (empty: the whole cluster).
*/}}
{{- define "kubellm.watchedNamespaces" -}}
{{- $all := list }}
{{- range $shard := include "kubellm.shards" . | fromYamlArray }}
{{- $all = concat $all ($shard.namespaces | default list) }}
{{- end }}
{{- toYaml $all }}
{{- end }}

{{/*
Peering is on unless the operator runs standalone.
*/}}
{{- define "kubellm.peering" -}}
{{- if not .Values.standalone }}true{{ end }}
{{- end }}

{{/*
RBAC: the operator's permissions, one readable list per scope. Adjust here only.

kubellm.rbac.namespacedRules: what the operator needs in every namespace it serves
(a ClusterRole when it watches the whole cluster, a Role per namespace otherwise).
*/}}
{{- define "kubellm.rbac.namespacedRules" -}}
# The resource itself: read it (the operator never writes the spec or its metadata).
- apiGroups: ["kubellm.io"]
  resources: ["llmdeployments"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["kubellm.io"]
  resources: ["llmdeployments/status"]
  verbs: ["get", "patch", "update"]
# Events on the resource (Kopf posts core/v1 events; newer clients use events.k8s.io).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Children, applied with server-side apply and owned by the LLMDeployment; `update` replaces a
# child someone else edited in a way an apply cannot take back (drift repair).
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Every running revision's snapshot, to rebuild it (immutable once created).
- apiGroups: ["apps"]
  resources: ["controllerrevisions"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["leaderworkerset.x-k8s.io"]
  resources: ["leaderworkersets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["podmonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects", "triggerauthentications"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
{{- with .Values.prometheusAuth.secretNames }}
# Prometheus credentials for canary analysis: `get` only, and only Secrets of these names
# (no list or watch: the operator cannot discover any other Secret).
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: {{ toJson . }}
  verbs: ["get"]
{{- end }}
{{- end }}

{{/*
kubellm.rbac.discoveryRules and kubellm.rbac.clusterwideRules: cluster-scoped needs. Kopf watches CRDs to discover resources,
and namespaces, in every mode (with --namespace it lists namespaces to see which of its own
exist; without that right it retries for about a minute at every start); ClusterKopfPeerings
only when it watches the whole cluster.
*/}}
{{- define "kubellm.rbac.discoveryRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{- define "kubellm.rbac.clusterwideRules" -}}
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings", "kopfpeerings"]
  verbs: ["get", "list", "watch", "patch", "create"]
{{- end }}

{{- define "kubellm.rbac.namespacedPeeringRules" -}}
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch", "create"]
{{- end }}

{{/*
The per-pod custom metrics prometheus-adapter exposes for autoscaling: which signal of
files/engine-metrics.yaml each reads, and how (a rate of a counter, or a gauge).
*/}}
{{- define "kubellm.adapterMetrics" -}}
signals:
  - {key: generationTokens, as: kubellm_generation_tokens_per_second, aggregate: sum, rate: true}
  - {key: requestsInFlight, as: kubellm_requests_in_flight, aggregate: sum, rate: false}
  - {key: queueLength, as: kubellm_queue_length, aggregate: sum, rate: false}
  - {key: kvCacheUtilization, as: kubellm_kv_cache_utilization, aggregate: max, rate: false}
{{- end }}
