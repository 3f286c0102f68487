{{/* Names, labels and shared fragments. Every resource is named from "rollgate.fullname", which is
"rollgate" for a release named rollgate (DESIGN.md: Services rollgate-webhook and rollgate-api,
service account rollgate). */}}

{{- define "rollgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rollgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else if contains (include "rollgate.name" .) .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "rollgate.name" .) | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rollgate.labels" -}}
app.kubernetes.io/name: {{ include "rollgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "rollgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rollgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "rollgate.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "rollgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{- define "rollgate.serviceAccountName" -}}
{{- default (include "rollgate.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "rollgate.webhookService" -}}
{{- printf "%s-webhook" (include "rollgate.fullname" .) -}}
{{- end -}}

{{- define "rollgate.apiService" -}}
{{- printf "%s-api" (include "rollgate.fullname" .) -}}
{{- end -}}

{{/* The Secret holding tls.crt, tls.key and ca.crt, whichever way it is made. */}}
{{- define "rollgate.tlsSecret" -}}
{{- if eq .Values.certs.mode "secret" -}}
{{- required "certs.existingSecret is required with certs.mode=secret" .Values.certs.existingSecret -}}
{{- else -}}
{{- printf "%s-tls" (include "rollgate.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "rollgate.signingKeySecret" -}}
{{- default (printf "%s-signing-key" (include "rollgate.fullname" .)) .Values.signingKey.existingSecret -}}
{{- end -}}

{{- define "rollgate.redisSecret" -}}
{{- if eq .Values.redis.mode "bundled" -}}
{{- printf "%s-redis" (include "rollgate.fullname" .) -}}
{{- else -}}
{{- .Values.redis.external.passwordSecret.name -}}
{{- end -}}
{{- end -}}

{{- define "rollgate.redisUrl" -}}
{{- if eq .Values.redis.mode "bundled" -}}
{{- printf "redis://%s-redis.%s.svc:6379/0" (include "rollgate.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- required "redis.external.url is required with redis.mode=external (redis://, rediss://, redis+sentinel:// or redis+cluster://)" .Values.redis.external.url -}}
{{- end -}}
{{- end -}}

{{- define "rollgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The DNS names of the serving certificate: both Services, short and long forms. */}}
{{- define "rollgate.dnsNames" -}}
{{- $ns := .Release.Namespace -}}
{{- range $svc := list (include "rollgate.webhookService" .) (include "rollgate.apiService" .) }}
- {{ $svc }}
- {{ $svc }}.{{ $ns }}
- {{ $svc }}.{{ $ns }}.svc
- {{ $svc }}.{{ $ns }}.svc.cluster.local
{{- end }}
{{- range .Values.certs.extraDnsNames }}
- {{ . }}
{{- end }}
{{- end -}}

{{/* rollgate's config file: the keys the chart owns, then .Values.config. */}}
{{- define "rollgate.config" -}}
webhookAddr: 0.0.0.0:8443
apiAddr: 0.0.0.0:8444
adminAddr: 0.0.0.0:9090
publicApiUrl: {{ default (printf "https://%s.%s.svc:8444" (include "rollgate.apiService" .) .Release.Namespace) .Values.publicApiUrl | quote }}
serviceAccountUsername: {{ printf "system:serviceaccount:%s:%s" .Release.Namespace (include "rollgate.serviceAccountName" .) | quote }}
tls:
  certFile: /tls/tls.crt
  keyFile: /tls/tls.key
signingKeyFile: /keys/signing-key.pem
store: {{ include "rollgate.redisUrl" . | quote }}
{{- if include "rollgate.redisSecret" . }}
redisPasswordFile: /secrets/redis/password
{{- end }}
{{- if and (eq .Values.redis.mode "external") .Values.redis.external.sentinelPasswordSecret.name }}
redisSentinelPasswordFile: /secrets/sentinel/password
{{- end }}
{{ toYaml .Values.config }}
{{- end -}}
