{{- /* Named templates of the chart: names, labels, the ServiceAccount, and the RBAC pieces that
rbac.yaml uses more than once. */}}
{{- define "cloudsso-mfa-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cloudsso-mfa-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "cloudsso-mfa-operator.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "cloudsso-mfa-operator.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "cloudsso-mfa-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cloudsso-mfa-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cloudsso-mfa-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "cloudsso-mfa-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "cloudsso-mfa-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cloudsso-mfa-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- /* The namespaced kinds people write (those of later releases included: a role may name a
resource the API server does not serve yet). */}}
{{- define "cloudsso-mfa-operator.namespacedKinds" -}}
[directorymfapolicies, usermfasettings, ramusermfastatuses, usermfapolicies, ramsecuritypreferences, ramusermfasettings]
{{- end }}

{{- /* The operator's cluster-scoped reads: the CloudAccounts (and their status, which it writes)
and the Namespaces their selectors match. */}}
{{- define "cloudsso-mfa-operator.clusterScopedRules" }}
  - apiGroups: [cloudsso.mfa-operator.dev]
    resources: [cloudaccounts]
    verbs: [get, list, watch]
  - apiGroups: [cloudsso.mfa-operator.dev]
    resources: [cloudaccounts/status]
    verbs: [patch]
  - apiGroups: [""]
    resources: [namespaces]
    verbs: [get, list, watch]
{{- end }}
