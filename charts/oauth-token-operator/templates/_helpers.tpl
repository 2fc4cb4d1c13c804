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
RBAC rules of one group of files/rbac.yaml (the one definition of every rule, each with the reason it exists;
hack/generate.sh writes deploy/'s RBAC from the same file). Args: (list $ "groupName"). Prints a YAML list.
*/}}
{{- define "oauth-token-operator.rules" -}}
{{- $root := index . 0 }}
{{- $group := index . 1 }}
{{- $all := $root.Files.Get "files/rbac.yaml" | fromYaml }}
{{- if hasKey $all "Error" }}
{{- fail (printf "cannot parse files/rbac.yaml: %s" $all.Error) }}
{{- end }}
{{- if not (hasKey $all $group) }}
{{- fail (printf "files/rbac.yaml has no group %s" $group) }}
{{- end }}
{{- $rules := list }}
{{- range (index $all $group) }}
{{- $rules = append $rules (omit . "why") }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{/* The operator's rules inside each watched namespace: the namespaced group, plus rollout restarts when on. */}}
{{- define "oauth-token-operator.namespacedRules" -}}
{{ include "oauth-token-operator.rules" (list . "namespaced") }}
{{- if .Values.rolloutRestart.enabled }}
{{ include "oauth-token-operator.rules" (list . "rolloutRestart") }}
{{- end }}
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
