{{/* Names and labels shared by every template. */}}

{{- define "pathgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pathgate.fullname" -}}
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

{{- define "pathgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pathgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pathgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pathgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The agent's ServiceAccount: pathgate's upstream identity. */}}
{{- define "pathgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pathgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required with serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pathgate.tlsSecretName" -}}
{{- if .Values.tls.generate }}
{{- printf "%s-tls" (include "pathgate.fullname" .) }}
{{- else }}
{{- required "tls.secretName is required (a Secret with tls.crt, tls.key and ca.crt; see deploy/README.md), or set tls.generate=true" .Values.tls.secretName }}
{{- end }}
{{- end }}

{{/* The `server` section of pathgate.yaml (restart to apply). */}}
{{- define "pathgate.serverConfig" -}}
listen: {{ printf "127.0.0.1:%d" (int .Values.pathgate.port) }}
admin_listen: {{ printf "0.0.0.0:%d" (int .Values.pathgate.adminPort) }}
auth: sidecar
in_cluster: true
tls_cert: /etc/pathgate/tls/tls.crt
tls_key: /etc/pathgate/tls/tls.key
workers: {{ int .Values.pathgate.workers }}
{{- end }}

{{/* The `ledger` section of pathgate.yaml (restart to apply); empty when the ledger is off. */}}
{{- define "pathgate.ledgerConfig" -}}
{{- if .Values.ledger.enabled }}
{{- $ledger := merge (dict "dir" .Values.ledger.mountPath) (deepCopy .Values.ledger.sinks) (deepCopy .Values.ledger.settings) }}
{{- toYaml $ledger }}
{{- end }}
{{- end }}

{{/* pathgate.yaml: the policy keys verbatim, then the two restart-only sections. */}}
{{- define "pathgate.config" -}}
{{- range $key := list "mode" "server" "ledger" }}
{{- if hasKey $.Values.pathgate.policy $key }}
{{- fail (printf "pathgate.policy.%s: not a policy key; the chart sets it (pathgate.mode, pathgate.port/adminPort/workers, the ledger values)" $key) }}
{{- end }}
{{- end }}
{{- if hasKey .Values.ledger.settings "dir" }}
{{- fail "ledger.settings.dir: the ledger directory is ledger.mountPath" }}
{{- end }}
{{- $policy := deepCopy .Values.pathgate.policy }}
{{- $_ := set $policy "mode" .Values.pathgate.mode }}
{{- $_ := set $policy "mutation_namespaces" (.Values.pathgate.mutationNamespaces | default (list .Release.Namespace)) }}
{{- toYaml $policy }}
server:
{{- include "pathgate.serverConfig" . | nindent 2 }}
{{- with include "pathgate.ledgerConfig" . }}
ledger:
{{- . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The agent's kubeconfig. pathgate's sidecar mode drops the placeholder token; it is
there so kubectl never prompts for credentials (a pod has no terminal). The session is the
pod's name, set by pathgate's --session: the file needs no per-pod substitution. */}}
{{- define "pathgate.agentKubeconfig" -}}
apiVersion: v1
kind: Config
clusters:
- name: pathgate
  cluster:
    server: {{ printf "https://127.0.0.1:%d" (int .Values.pathgate.port) }}
    certificate-authority: {{ dir .Values.agent.kubeconfigPath }}/pathgate-ca.crt
users:
- name: agent
  user:
    token: pathgate-sidecar-placeholder
contexts:
- name: pathgate
  context:
    cluster: pathgate
    user: agent
    namespace: {{ .Release.Namespace }}
current-context: pathgate
{{- end }}
