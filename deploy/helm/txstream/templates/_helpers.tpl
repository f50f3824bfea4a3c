{{/* Names and labels. */}}
{{- define "txstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "txstream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "txstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "txstream.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of every object; `component` is consumer, scheduler, alert-forwarder, init or empty. */}}
{{- define "txstream.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "txstream.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: txstream
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- define "txstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "txstream.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: the existing ServiceAccount to use when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "txstream.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* `--topic-prefix <p>` for every command, as an args list fragment (nothing when empty). */}}
{{- define "txstream.topicPrefixArgs" -}}
{{- if .Values.topicPrefix }}
- --topic-prefix
- {{ .Values.topicPrefix | quote }}
{{- end }}
{{- end -}}

{{/*
The names of the topics the consumer reads, as src/topics.ts names them (prefix + base name).
*/}}
{{- define "txstream.factTopics" -}}
{{- list (printf "%sbanking.transactions.v1" .Values.topicPrefix) (printf "%srpa.job-executions.v1" .Values.topicPrefix) | toJson -}}
{{- end -}}

{{/*
Settings the chart derives from its own values: refused in `config` so there is one place for each.
*/}}
{{- define "txstream.derivedSettings" -}}
{{- list "KAFKA_BROKERS" "KAFKA_CLIENT_ID" "KAFKA_SSL" "KAFKA_SASL_MECHANISM" "KAFKA_SASL_USERNAME" "SCHEMA_REGISTRY_URL" "SCHEMA_REGISTRY_USERNAME" "GCP_PROJECT_ID" "TOPIC_PARTITIONS" "TOPIC_REPLICATION_FACTOR" "METRICS_HOST" "METRICS_PORT" "ALERTS_FILE" "ALERTS_CONSUMER_GROUP" "ALERTS_FORWARDER_GROUP" | toJson -}}
{{- end -}}

{{/*
Secrets txstream reads (src/config/config.ts SECRETS), and the file settings that point at secret
material. None of them may be a chart value: they come from `secrets` as mounted files.
*/}}
{{- define "txstream.secretSettings" -}}
{{- list "KAFKA_SASL_PASSWORD" "SCHEMA_REGISTRY_PASSWORD" "SLACK_WEBHOOK_URL" "PAGERDUTY_ROUTING_KEY" "SMTP_PASSWORD" "KAFKA_SASL_PASSWORD_FILE" "SCHEMA_REGISTRY_PASSWORD_FILE" "SLACK_WEBHOOK_URL_FILE" "PAGERDUTY_ROUTING_KEY_FILE" "SMTP_PASSWORD_FILE" "GCP_KEY_FILE" "KAFKA_SSL_CA_FILE" | toJson -}}
{{- end -}}

{{/* The `secrets` entries, the variable each sets, and the workloads that mount it. */}}
{{- define "txstream.secretTable" -}}
gcpKey: { env: GCP_KEY_FILE, workloads: [consumer, scheduler, init] }
kafkaSaslPassword: { env: KAFKA_SASL_PASSWORD_FILE, workloads: [consumer, scheduler, alert-forwarder, init] }
kafkaCa: { env: KAFKA_SSL_CA_FILE, workloads: [consumer, scheduler, alert-forwarder, init] }
registryPassword: { env: SCHEMA_REGISTRY_PASSWORD_FILE, workloads: [consumer, scheduler, alert-forwarder, init] }
slackWebhookUrl: { env: SLACK_WEBHOOK_URL_FILE, workloads: [alert-forwarder] }
pagerdutyRoutingKey: { env: PAGERDUTY_ROUTING_KEY_FILE, workloads: [alert-forwarder] }
smtpPassword: { env: SMTP_PASSWORD_FILE, workloads: [alert-forwarder] }
{{- end -}}

{{/* The settings every workload shares (the env ConfigMap's data), as YAML of strings. */}}
{{- define "txstream.settings" -}}
{{- $s := dict -}}
{{- range $k, $v := .Values.config -}}
{{- $_ := set $s $k (toString $v) -}}
{{- end -}}
{{- $_ := set $s "KAFKA_BROKERS" (required "kafka.brokers: the Kafka bootstrap servers (host:port, comma-separated) are required" .Values.kafka.brokers) -}}
{{- $_ := set $s "KAFKA_CLIENT_ID" .Values.kafka.clientId -}}
{{- $_ := set $s "KAFKA_SSL" (ternary "true" "false" (eq (toString .Values.kafka.tls) "true")) -}}
{{- with .Values.kafka.sasl.mechanism }}{{- $_ := set $s "KAFKA_SASL_MECHANISM" . -}}{{- end -}}
{{- with .Values.kafka.sasl.username }}{{- $_ := set $s "KAFKA_SASL_USERNAME" . -}}{{- end -}}
{{- $_ := set $s "SCHEMA_REGISTRY_URL" (required "schemaRegistry.url: the schema registry's base URL is required" .Values.schemaRegistry.url) -}}
{{- with .Values.schemaRegistry.username }}{{- $_ := set $s "SCHEMA_REGISTRY_USERNAME" . -}}{{- end -}}
{{- $_ := set $s "GCP_PROJECT_ID" (required "gcp.projectId: the BigQuery project is required" .Values.gcp.projectId) -}}
{{- $_ := set $s "TOPIC_PARTITIONS" (toString (int .Values.kafka.partitions)) -}}
{{- $_ := set $s "TOPIC_REPLICATION_FACTOR" (toString (int .Values.kafka.replicationFactor)) -}}
{{- $_ := set $s "METRICS_HOST" "0.0.0.0" -}}
{{- $_ := set $s "METRICS_PORT" (toString (int .Values.metrics.port)) -}}
{{- $_ := set $s "ALERTS_FILE" "/etc/txstream/alerts.yaml" -}}
{{- $_ := set $s "ALERTS_CONSUMER_GROUP" .Values.consumer.group -}}
{{- $_ := set $s "ALERTS_FORWARDER_GROUP" .Values.forwarder.group -}}
{{- toYaml $s -}}
{{- end -}}

{{/*
The consumer's stop bound in seconds, from `config` (README of the chart, "Stopping and the grace
period"). On SIGTERM the consumer (src/consumers/runner.ts stop()) stops fetching, waits for the
writes in flight, writes everything it holds in a final flush, commits and leaves the group. Once
stopping, a failing write gets GIVE_UP_AFTER = 3 retries after the attempt under way (backoff.ts), with
full-jitter waits of at most 0.2 + 0.4 + 0.8 s; a write already deep in its retries may be in a wait
of up to 30 s (the backoff's ceiling) and then gets one attempt. Each attempt ends by its deadline T
(BQ_INSERT_TIMEOUT_MS, or BQ_LOAD_JOB_TIMEOUT_MS in load-job mode). So one write takes at most
  W = max(4 T + 1.4 s, T + 30 s),
the rows it gave up on get W again in the final flush, and the commit is one Kafka request (30 s
request timeout):
  bound = 2 W + 30 s.
The linger (BQ_STREAMING_INTERVAL_MS / BQ_LOAD_INTERVAL_MS) does not enter: stop() flushes at once.
*/}}
{{- define "txstream.consumerStopBoundSeconds" -}}
{{- $c := .Values.config -}}
{{- $raw := "true" -}}
{{- if hasKey $c "ENABLE_BQ_STREAMING" }}{{ $raw = toString $c.ENABLE_BQ_STREAMING }}{{ end -}}
{{- $streaming := has $raw (list "true" "1") -}}
{{- $t := ternary (int (default 60000 $c.BQ_INSERT_TIMEOUT_MS)) (int (default 600000 $c.BQ_LOAD_JOB_TIMEOUT_MS)) $streaming -}}
{{- $w := max (add (mul 4 $t) 1400) (add $t 30000) -}}
{{- $boundMs := add (mul 2 $w) 30000 -}}
{{- div (add $boundMs 999) 1000 -}}
{{- end -}}

{{- define "txstream.consumerGraceSeconds" -}}
{{- if kindIs "invalid" .Values.consumer.terminationGracePeriodSeconds -}}
{{- add (include "txstream.consumerStopBoundSeconds" . | int) 10 -}}
{{- else -}}
{{- int .Values.consumer.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/* The scheduler's stop: running jobs get SCHEDULE_SHUTDOWN_TIMEOUT_MS, then it leaves the group. */}}
{{- define "txstream.schedulerGraceMinimum" -}}
{{- $ms := int (default 25000 .Values.config.SCHEDULE_SHUTDOWN_TIMEOUT_MS) -}}
{{- add (div (add $ms 999) 1000) 10 -}}
{{- end -}}

{{/*
Env of a workload's container: the shared ConfigMap, then the secret files it mounts, then its
extraEnv. Arguments: root, component, extraEnv.
*/}}
{{- define "txstream.envFrom" -}}
- configMapRef:
    name: {{ include "txstream.fullname" .root }}-env
{{- end -}}

{{- define "txstream.secretEnv" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- range $entry, $spec := include "txstream.secretTable" $root | fromYaml }}
{{- $ref := index $root.Values.secrets $entry }}
{{- if and $ref.name (has $component $spec.workloads) }}
- name: {{ $spec.env }}
  value: {{ printf "/var/run/secrets/txstream/%s/%s" (kebabcase $entry) $ref.key | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "txstream.secretVolumeMounts" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- range $entry, $spec := include "txstream.secretTable" $root | fromYaml }}
{{- $ref := index $root.Values.secrets $entry }}
{{- if and $ref.name (has $component $spec.workloads) }}
- name: secret-{{ kebabcase $entry }}
  mountPath: /var/run/secrets/txstream/{{ kebabcase $entry }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "txstream.secretVolumes" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- range $entry, $spec := include "txstream.secretTable" $root | fromYaml }}
{{- $ref := index $root.Values.secrets $entry }}
{{- if and $ref.name (has $component $spec.workloads) }}
- name: secret-{{ kebabcase $entry }}
  secret:
    secretName: {{ $ref.name }}
    items:
      - key: {{ $ref.key }}
        path: {{ $ref.key }}
    defaultMode: 288 # 0440: owner and group (fsGroup) read
{{- end }}
{{- end }}
{{- end -}}

{{/* Probes on the metrics port (the kubelet resolves the port name to METRICS_PORT). */}}
{{- define "txstream.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  {{- toYaml .liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  {{- toYaml .readiness | nindent 2 }}
{{- end -}}

{{/* Node selector, tolerations (the workload's own, else the chart-wide ones) and pull secrets. */}}
{{- define "txstream.podPlacement" -}}
{{- with (default .root.Values.nodeSelector .w.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default .root.Values.tolerations .w.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* `env:` of a workload's container (secret files, then extraEnv), or nothing. */}}
{{- define "txstream.containerEnv" -}}
{{- $secretEnv := include "txstream.secretEnv" (dict "root" .root "component" .component) -}}
{{- if or (trim $secretEnv) .extraEnv }}
env:
  {{- trim $secretEnv | nindent 2 }}
  {{- with .extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
A container of the init Job. Its settings are inline, not from the ConfigMap: a pre-install hook runs
before the release's ConfigMap exists. Arguments: root, name, args.
*/}}
{{- define "txstream.initContainer" -}}
{{- $root := .root -}}
- name: {{ .name }}
  image: {{ include "txstream.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  args:
    {{- toYaml .args | nindent 4 }}
    {{- if eq .name "init" }}
    {{- include "txstream.topicPrefixArgs" $root | nindent 4 }}
    {{- end }}
  env:
    {{- range $k, $v := include "txstream.settings" $root | fromYaml }}
    - name: {{ $k }}
      value: {{ $v | quote }}
    {{- end }}
    {{- include "txstream.secretEnv" (dict "root" $root "component" "init") | nindent 4 }}
    {{- with $root.Values.init.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  resources:
    {{- toYaml $root.Values.init.resources | nindent 4 }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- include "txstream.secretVolumeMounts" (dict "root" $root "component" "init") | nindent 4 }}
{{- end -}}
