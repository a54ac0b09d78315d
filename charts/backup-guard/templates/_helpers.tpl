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

{{/* The server's ServiceAccount: the chart's own, or an existing one (serviceAccount.create=false). */}}
{{- define "backup-guard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "backup-guard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required with serviceAccount.create=false (the chart binds its roles to it)" .Values.serviceAccount.name }}
{{- end }}
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

{{/* repository@digest when a digest is set (it pins the image whatever the tag says), else repository:tag. */}}
{{- define "backup-guard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Security contexts from values (securityContext, podSecurityContext), shared by the server and the
uninstall hook. Keys set to null are left out, so OpenShift can assign the UID.
*/}}
{{- define "backup-guard.containerSecurityContext" -}}
{{- toYaml .Values.securityContext }}
{{- end }}

{{- define "backup-guard.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
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
{{- /* kube-system is always left out (SPEC); webhook.namespaceSelector narrows further. */}}
{{- $namespaces := deepCopy .Values.webhook.namespaceSelector }}
{{- $notKubeSystem := dict "key" "kubernetes.io/metadata.name" "operator" "NotIn" "values" (list "kube-system") }}
{{- $_ := set $namespaces "matchExpressions" (prepend (default (list) $namespaces.matchExpressions) $notKubeSystem) }}
namespaceSelector:
  {{- toYaml $namespaces | nindent 2 }}
objectSelector:
  {{- toYaml .Values.webhook.objectSelector | nindent 2 }}
{{- end }}

{{/*
matchConditions of the mutating webhook (API servers v1.30+; the same as
tests/e2e/manifests/webhooks.yaml.tmpl). The mutator never changes a SystemBackup being deleted,
and an update that only removes finalizers from one that already has the longhorn.io finalizer, a
volumeBackupPolicy and a BackupTarget owner reference would get no patch: the API server skips the
call, so those updates never depend on the webhook being up.
*/}}
{{- define "backup-guard.mutatingMatchConditions" -}}
{{- if and .Values.webhook.matchConditions (semverCompare ">=1.30-0" .Capabilities.KubeVersion.Version) }}
matchConditions:
  {{- .Files.Get "files/mutating-match-conditions.yaml" | nindent 2 }}
{{- end }}
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
{{- $_ := include "backup-guard.serviceAccountName" . }}
{{- $webhookPort := int .Values.ports.webhook }}
{{- if and .Values.hostNetwork (eq $webhookPort 10250) }}
{{- fail "ports.webhook 10250 is the kubelet's port on every node: with hostNetwork choose another" }}
{{- end }}
{{- if and .Values.hostNetwork (eq $webhookPort (int .Values.ports.metrics)) }}
{{- fail "ports.webhook and ports.metrics must differ" }}
{{- end }}
{{- $caps := dig "capabilities" "add" (list) .Values.securityContext }}
{{- if and (lt $webhookPort 1024) (not (has "NET_BIND_SERVICE" $caps)) }}
{{- fail (printf "ports.webhook %d is below 1024: a non-root server cannot bind it without securityContext.capabilities.add [NET_BIND_SERVICE] (on private GKE clusters use 10250)" $webhookPort) }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.apiServer.cidrs) }}
{{- fail "networkPolicy.apiServer.cidrs is required with networkPolicy.enabled: the API server's addresses (kubectl get endpointslice kubernetes -n default), each as a /32" }}
{{- end }}
{{- end }}
