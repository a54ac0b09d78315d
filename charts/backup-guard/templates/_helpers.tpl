{{/* Names. Kubernetes names are at most 63 characters; suffixes below keep within that. */}}
{{- define "backup-guard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "backup-guard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "backup-guard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Namespace of the storage engine's custom resources, Lease and self-managed Secret. */}}
{{- define "backup-guard.storageNamespace" -}}
{{- default .Release.Namespace .Values.storageNamespace }}
{{- end }}

{{- define "backup-guard.serviceAccountName" -}}
{{- default (include "backup-guard.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "backup-guard.uninstallName" -}}
{{- printf "%s-uninstall" (include "backup-guard.fullname" .) }}
{{- end }}

{{- define "backup-guard.mutatingName" -}}
{{- printf "%s-mutating" (include "backup-guard.fullname" .) }}
{{- end }}

{{- define "backup-guard.validatingName" -}}
{{- printf "%s-validating" (include "backup-guard.fullname" .) }}
{{- end }}

{{/* Secret with the serving certificate (every mode but existingSecret). */}}
{{- define "backup-guard.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "existingSecret" }}
{{- required "certificates.existingSecret.name is required with certificates.mode=existingSecret" .Values.certificates.existingSecret.name }}
{{- else }}
{{- printf "%s-tls" (include "backup-guard.fullname" .) }}
{{- end }}
{{- end }}

{{/* Lease where every replica publishes the certificate it serves (self-managed mode). */}}
{{- define "backup-guard.servedLeaseName" -}}
{{- printf "%s-served" (include "backup-guard.tlsSecretName" .) }}
{{- end }}

{{/* cert-manager Certificate for the serving certificate. */}}
{{- define "backup-guard.servingCertificateName" -}}
{{- printf "%s-serving" (include "backup-guard.fullname" .) }}
{{- end }}

{{/* Lease the replicas elect a leader with (serve --leader-election-id). */}}
{{- define "backup-guard.leaseName" -}}
{{- include "backup-guard.fullname" . }}
{{- end }}

{{/* The Service's DNS names, short to fully qualified, then the extra ones from values. */}}
{{- define "backup-guard.dnsNames" -}}
{{- $svc := include "backup-guard.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.certificates.clusterDomain) }}
{{- concat $names .Values.certificates.extraDnsNames | uniq | toYaml }}
{{- end }}

{{- define "backup-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "backup-guard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "backup-guard.labels" -}}
helm.sh/chart: {{ include "backup-guard.chart" . }}
{{ include "backup-guard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "backup-guard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Container security context shared by the server and the uninstall hook: the image is distroless and
runs as 65532; nothing is written to the root filesystem.
*/}}
{{- define "backup-guard.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "backup-guard.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The webhook clientConfig for one path: the Service, or webhook.url when the server runs outside the
cluster. caBundle is written only in existingSecret mode: in selfManaged mode the server patches it
in itself and in certManager mode cainjector does, so the template must not own the field.
*/}}
{{- define "backup-guard.clientConfig" -}}
{{- $ := index . 0 }}
{{- $path := index . 1 }}
{{- with $.Values.webhook.url }}
url: {{ printf "%s%s" (trimSuffix "/" .) $path | quote }}
{{- else }}
service:
  name: {{ include "backup-guard.fullname" $ }}
  namespace: {{ $.Release.Namespace }}
  path: {{ $path | quote }}
  port: {{ $.Values.service.port }}
{{- end }}
{{- if and (eq $.Values.certificates.mode "existingSecret") $.Values.certificates.existingSecret.caBundle }}
caBundle: {{ $.Values.certificates.existingSecret.caBundle | quote }}
{{- end }}
{{- end }}

{{/* Annotations shared by both webhook configurations. */}}
{{- define "backup-guard.webhookAnnotations" -}}
{{- $annotations := deepCopy .Values.webhook.annotations }}
{{- if eq .Values.certificates.mode "certManager" }}
{{- $_ := set $annotations "cert-manager.io/inject-ca-from" (printf "%s/%s" .Release.Namespace (include "backup-guard.servingCertificateName" .)) }}
{{- end }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Fields shared by every webhook of both configurations. */}}
{{- define "backup-guard.webhookCommon" -}}
admissionReviewVersions: ["v1"]
sideEffects: None
timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
failurePolicy: {{ .Values.webhook.failurePolicy }}
matchPolicy: Equivalent
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: ["kube-system"]
{{- end }}

{{/* Checks values the schema cannot relate to each other. */}}
{{- define "backup-guard.validate" -}}
{{- $s := .Values.shutdown }}
{{- if le (int $s.terminationGracePeriodSeconds) (add $s.preStopDelaySeconds $s.graceSeconds | int) }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%v) must exceed shutdown.preStopDelaySeconds + shutdown.graceSeconds (%v)" $s.terminationGracePeriodSeconds (add $s.preStopDelaySeconds $s.graceSeconds)) }}
{{- end }}
{{- if and .Values.webhook.url (not (regexMatch "^https://[^/]+/?$" .Values.webhook.url)) }}
{{- fail (printf "webhook.url must be https://host[:port] without a path, got %q" .Values.webhook.url) }}
{{- end }}
{{- $_ := include "backup-guard.tlsSecretName" . }}
{{- end }}
