{{/* Chart name. */}}
{{- define "vaultlet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name, used as the prefix of every resource. */}}
{{- define "vaultlet.fullname" -}}
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

{{/* Chart label value. */}}
{{- define "vaultlet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels without a component. */}}
{{- define "vaultlet.commonLabels" -}}
helm.sh/chart: {{ include "vaultlet.chart" . }}
{{ include "vaultlet.instanceLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vaultlet
{{- end }}

{{/* Standard labels of the injector's resources. */}}
{{- define "vaultlet.labels" -}}
{{ include "vaultlet.commonLabels" . }}
app.kubernetes.io/component: injector
{{- end }}

{{/* Name and instance labels. */}}
{{- define "vaultlet.instanceLabels" -}}
app.kubernetes.io/name: {{ include "vaultlet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of the injector Pods. */}}
{{- define "vaultlet.selectorLabels" -}}
{{ include "vaultlet.instanceLabels" . }}
app.kubernetes.io/component: injector
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "vaultlet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vaultlet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the Secret with the webhook's serving certificate. */}}
{{- define "vaultlet.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "vaultlet.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{/* Name of the cert-manager serving Certificate. */}}
{{- define "vaultlet.certificateName" -}}
{{- printf "%s-serving" (include "vaultlet.fullname" .) }}
{{- end }}

{{/* DNS names the API server uses to reach the webhook Service. */}}
{{- define "vaultlet.dnsNames" -}}
{{- $svc := include "vaultlet.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- $host := include "vaultlet.urlHost" . -}}
{{- if and $host (not (include "vaultlet.urlHostIsIP" .)) -}}
{{- $names = append $names $host -}}
{{- end -}}
{{- $names | toJson }}
{{- end }}

{{/* The host of webhook.url ("" without one). */}}
{{- define "vaultlet.urlHost" -}}
{{- with .Values.webhook.url }}{{ (urlParse .).hostname }}{{ end -}}
{{- end }}

{{/* "true" when the host of webhook.url is an IP address (it then goes into ipAddresses). */}}
{{- define "vaultlet.urlHostIsIP" -}}
{{- if regexMatch "^[0-9.]+$|:" (include "vaultlet.urlHost" .) }}true{{ end -}}
{{- end }}

{{/* IP addresses the serving certificate names, as a JSON list. */}}
{{- define "vaultlet.ipAddresses" -}}
{{- if include "vaultlet.urlHostIsIP" . -}}
{{- list (include "vaultlet.urlHost" .) | toJson -}}
{{- else -}}
[]
{{- end -}}
{{- end }}

{{/* image reference: repository[:tag][@digest]; args: dict "image" <values> "default" <tag>. */}}
{{- define "vaultlet.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .default .image.tag) }}
{{- end }}
{{- end }}
