{{/* Names, labels and RBAC rules shared by the templates. */}}

{{- define "oauth-token-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release name, plus the chart name unless the release name already contains it. */}}
{{- define "oauth-token-operator.fullname" -}}
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

{{- define "oauth-token-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable for the life of a release (Deployment selectors are immutable). */}}
{{- define "oauth-token-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oauth-token-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Kubernetes recommended labels (app.kubernetes.io/*) + commonLabels. Templates add app.kubernetes.io/component. */}}
{{- define "oauth-token-operator.labels" -}}
helm.sh/chart: {{ include "oauth-token-operator.chart" . }}
{{ include "oauth-token-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: oauth-token-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "oauth-token-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "oauth-token-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "oauth-token-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Kopf peering (leader election) is on with more than one replica. Renders "true" or "". */}}
{{- define "oauth-token-operator.peering" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{- define "oauth-token-operator.peeringName" -}}
{{- default (include "oauth-token-operator.fullname" .) .Values.peering.name }}
{{- end }}

{{/*
RBAC rules the operator needs inside every namespace it watches (Role in namespaced mode, part of the ClusterRole
in cluster-wide mode). Keep in sync with deploy/rbac/cluster/clusterrole.yaml and deploy/namespaced/role.yaml.
*/}}
{{- define "oauth-token-operator.namespacedRules" -}}
# The custom resources: Kopf patches finalizers and its annotations, and the status subresource.
- apiGroups: [oauth-token-operator.dev]
  resources: [oauthclientcredentials]
  verbs: [get, list, watch, patch]
- apiGroups: [oauth-token-operator.dev]
  resources: [oauthclientcredentials/status]
  verbs: [get, patch, update]
# Target Secrets are written; referenced Secrets are watched. No delete: ownerReference garbage collection.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update, patch]
# CA bundles.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# Rollout restart of spec.rolloutRestartTargets.
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [get, patch]
# authMethod kubernetes_service_account: read a ServiceAccount's opt-in annotation, then mint its tokens
# (TokenRequest). Nothing else on ServiceAccounts.
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get]
- apiGroups: [""]
  resources: [serviceaccounts/token]
  verbs: [create]
{{- end }}

{{/*
Kopf observes CRDs and namespaces (both cluster-scoped, read-only), in both modes. In namespaced mode it lists
namespaces to resolve --namespace (which may be a glob); without that permission it retries for about a minute at
every start, logging 403s, before it assumes the named namespaces exist (tests/e2e/test_install.py).
*/}}
{{- define "oauth-token-operator.observationRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}

{{/* Adds chart labels (and the keep policy) to a CRD read from files/, prints it as YAML. Args: (list $ $crd). */}}
{{- define "oauth-token-operator.renderCRD" -}}
{{- $root := index . 0 }}
{{- $crd := index . 1 }}
{{- if hasKey $crd "Error" }}
{{- fail (printf "cannot parse a CRD file of the chart: %s" $crd.Error) }}
{{- end }}
{{- $meta := $crd.metadata }}
{{- $labels := merge (dict "app.kubernetes.io/component" "crd") (include "oauth-token-operator.labels" $root | fromYaml) ($meta.labels | default dict) }}
{{- $_ := set $meta "labels" $labels }}
{{- if $root.Values.crds.keep }}
{{- $_ := set $meta "annotations" (merge (dict "helm.sh/resource-policy" "keep") ($meta.annotations | default dict)) }}
{{- end }}
{{- toYaml $crd }}
{{- end }}
