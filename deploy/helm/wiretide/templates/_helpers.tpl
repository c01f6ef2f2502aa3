{{- define "wiretide.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "wiretide.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "wiretide.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "wiretide.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "wiretide.agentImage" -}}
{{- printf "%s:%s" .Values.image.agentRepository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Replicas that can have work: a consumer group never gives one partition to two members. */}}
{{- define "wiretide.replicas" -}}
{{- min .replicas .root.Values.partitions -}}
{{- end -}}

{{/* The Kafka the Strimzi template creates, and the KafkaUser it makes for SASL. */}}
{{- define "wiretide.strimziCluster" -}}
{{- printf "%s-kafka" (include "wiretide.fullname" .) -}}
{{- end -}}

{{- define "wiretide.bootstrap" -}}
{{- if .Values.strimzi.enabled -}}
{{- printf "%s-kafka-bootstrap:%s" (include "wiretide.strimziCluster" .) (ternary "9093" "9092" .Values.kafka.tls.enabled) -}}
{{- else -}}
{{- required "kafka.bootstrap is required (or set strimzi.enabled)" .Values.kafka.bootstrap -}}
{{- end -}}
{{- end -}}

{{/* Secret holding the Kafka CA (key ca.crt): the user's, or the Strimzi cluster CA. */}}
{{- define "wiretide.kafkaCaSecret" -}}
{{- if .Values.kafka.tls.enabled -}}
{{- if .Values.kafka.tls.caSecret -}}
{{- .Values.kafka.tls.caSecret -}}
{{- else if .Values.strimzi.enabled -}}
{{- printf "%s-cluster-ca-cert" (include "wiretide.strimziCluster" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* ClickHouse cluster for ON CLUSTER DDL: the user's, or the one the Altinity template makes. */}}
{{- define "wiretide.clickhouseCluster" -}}
{{- if .Values.clickhouse.cluster -}}
{{- .Values.clickhouse.cluster -}}
{{- else if .Values.altinity.enabled -}}
wiretide
{{- end -}}
{{- end -}}

{{/* The store DSN. A password from a Secret goes in through the kubelet's $(VAR)
     expansion of CLICKHOUSE_PASSWORD, so it never lands in the rendered manifest. */}}
{{- define "wiretide.dsn" -}}
{{- $dsn := .Values.clickhouse.dsn -}}
{{- if .Values.altinity.enabled -}}
{{- $dsn = printf "http://wiretide@clickhouse-%s:8123" (include "wiretide.fullname" .) -}}
{{- end -}}
{{- $dsn = required "clickhouse.dsn is required (or set altinity.enabled)" $dsn -}}
{{- if .Values.clickhouse.passwordSecret -}}
{{- $u := urlParse $dsn -}}
{{- $user := (splitList ":" $u.userinfo) | first | default "default" -}}
{{- $query := ternary (printf "?%s" $u.query) "" (ne $u.query "") -}}
{{- printf "%s://%s:$(CLICKHOUSE_PASSWORD)@%s%s%s" $u.scheme $user $u.host $u.path $query -}}
{{- else -}}
{{- $dsn -}}
{{- end -}}
{{- end -}}

{{/* Kafka settings every process needs. */}}
{{- define "wiretide.kafkaEnv" -}}
- name: WIRETIDE_KAFKA
  value: {{ include "wiretide.bootstrap" . | quote }}
- name: WIRETIDE_PARTITIONS
  value: {{ .Values.partitions | quote }}
- name: WIRETIDE_PREFIX
  value: {{ .Values.prefix | quote }}
{{- if .Values.kafka.tls.enabled }}
- name: WIRETIDE_KAFKA_SECURITY_PROTOCOL
  value: {{ ternary "SASL_SSL" "SSL" .Values.kafka.sasl.enabled | quote }}
{{- if include "wiretide.kafkaCaSecret" . }}
- name: WIRETIDE_KAFKA_CA
  value: /etc/wiretide/kafka-ca/ca.crt
{{- end }}
{{- else if .Values.kafka.sasl.enabled }}
- name: WIRETIDE_KAFKA_SECURITY_PROTOCOL
  value: SASL_PLAINTEXT
{{- end }}
{{- if and .Values.kafka.sasl.enabled .Values.strimzi.enabled }}
- name: WIRETIDE_KAFKA_SASL_MECHANISM
  value: SCRAM-SHA-512
- name: WIRETIDE_KAFKA_USERNAME
  value: {{ include "wiretide.fullname" . | quote }}
- name: WIRETIDE_KAFKA_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ include "wiretide.fullname" . | quote }}, key: password}}
{{- else if .Values.kafka.sasl.enabled }}
- name: WIRETIDE_KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
- name: WIRETIDE_KAFKA_USERNAME
  valueFrom: {secretKeyRef: {name: {{ required "kafka.sasl.secret is required with kafka.sasl.enabled" .Values.kafka.sasl.secret | quote }}, key: username}}
- name: WIRETIDE_KAFKA_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ .Values.kafka.sasl.secret | quote }}, key: password}}
{{- end }}
{{- end -}}

{{/* Store settings, only for the processes that talk to ClickHouse (writer, hub). */}}
{{- define "wiretide.storeEnv" -}}
{{- with .Values.clickhouse.passwordSecret }}
- name: CLICKHOUSE_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ . | quote }}, key: password}}
{{- end }}
- name: WIRETIDE_CLICKHOUSE
  value: {{ include "wiretide.dsn" . | quote }}
- name: WIRETIDE_RETENTION_DAYS
  value: {{ .Values.clickhouse.retentionDays | quote }}
{{- with include "wiretide.clickhouseCluster" . }}
- name: WIRETIDE_CLICKHOUSE_CLUSTER
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "wiretide.kafkaCaVolume" -}}
{{- with include "wiretide.kafkaCaSecret" . }}
- name: kafka-ca
  secret: {secretName: {{ . | quote }}, items: [{key: ca.crt, path: ca.crt}]}
{{- end }}
{{- end -}}

{{- define "wiretide.kafkaCaMount" -}}
{{- if include "wiretide.kafkaCaSecret" . }}
- name: kafka-ca
  mountPath: /etc/wiretide/kafka-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "wiretide.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "wiretide.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}

{{/* An exec probe on the heartbeat file the component beats in its data dir. */}}
{{- define "wiretide.healthProbes" -}}
livenessProbe:
  exec: {command: [wiretide, health, {{ .component }}, --max-age, "60"]}
  initialDelaySeconds: 30
  periodSeconds: 20
  timeoutSeconds: 10
readinessProbe:
  exec: {command: [wiretide, health, {{ .component }}, --max-age, "30"]}
  initialDelaySeconds: 5
  periodSeconds: 10
  timeoutSeconds: 10
{{- end -}}

{{- define "wiretide.hubTokenSecret" -}}
{{- default (printf "%s-hub-token" (include "wiretide.fullname" .)) .Values.hub.tokenSecret -}}
{{- end -}}

{{/* Traffic validation rules (values.rules): a ConfigMap mounted where WIRETIDE_RULES points. */}}
{{- define "wiretide.rulesEnv" -}}
{{- if .Values.rules }}
- name: WIRETIDE_RULES
  value: /etc/wiretide/rules/rules.yaml
{{- end }}
{{- end -}}

{{- define "wiretide.rulesMount" -}}
{{- if .Values.rules }}
- name: rules
  mountPath: /etc/wiretide/rules
  readOnly: true
{{- end }}
{{- end -}}

{{- define "wiretide.rulesVolume" -}}
{{- if .Values.rules }}
- name: rules
  configMap: {name: {{ include "wiretide.fullname" . }}-rules}
{{- end }}
{{- end -}}
{{- /* The pipeline's own /metrics (agent, worker, writer): --metrics-port via env. */ -}}
{{- define "wiretide.metricsEnv" -}}
{{- if .Values.metrics.enabled }}
- name: WIRETIDE_METRICS_PORT
  value: {{ .Values.metrics.port | quote }}
{{- end }}
{{- end -}}
{{- define "wiretide.metricsPorts" -}}
{{- if .Values.metrics.enabled }}
ports:
  - {name: metrics, containerPort: {{ .Values.metrics.port }}, protocol: TCP}
{{- end }}
{{- end -}}
