{{- define "wiretide.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
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

{{- define "wiretide.bootstrap" -}}
{{- if and .Values.strimzi.enabled (not .Values.kafka.bootstrap) -}}
{{- printf "%s-kafka-kafka-bootstrap:9092" (include "wiretide.fullname" .) -}}
{{- else -}}
{{- required "kafka.bootstrap is required (or strimzi.enabled)" .Values.kafka.bootstrap -}}
{{- end -}}
{{- end -}}

{{- define "wiretide.dsn" -}}
{{- if and .Values.altinity.enabled (not .Values.clickhouse.dsn) -}}
{{- printf "http://clickhouse-%s:8123" (include "wiretide.fullname" .) -}}
{{- else -}}
{{- required "clickhouse.dsn is required (or altinity.enabled)" .Values.clickhouse.dsn -}}
{{- end -}}
{{- end -}}

{{/* Environment every Wiretide process shares: Kafka, ClickHouse, names. */}}
{{- define "wiretide.env" -}}
- name: WIRETIDE_KAFKA
  value: {{ include "wiretide.bootstrap" . | quote }}
- name: WIRETIDE_PARTITIONS
  value: {{ .Values.partitions | quote }}
- name: WIRETIDE_PREFIX
  value: {{ .Values.prefix | quote }}
- name: WIRETIDE_CLICKHOUSE
  value: {{ include "wiretide.dsn" . | quote }}
- name: WIRETIDE_RETENTION_DAYS
  value: {{ .Values.clickhouse.retentionDays | quote }}
{{- with .Values.clickhouse.cluster }}
- name: WIRETIDE_CLICKHOUSE_CLUSTER
  value: {{ . | quote }}
{{- end }}
{{- with .Values.clickhouse.passwordSecret }}
- name: WIRETIDE_CLICKHOUSE_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ . | quote }}, key: password}}
{{- end }}
{{- if .Values.kafka.tls.enabled }}
- name: WIRETIDE_KAFKA_SECURITY_PROTOCOL
  value: {{ ternary "SASL_SSL" "SSL" .Values.kafka.sasl.enabled | quote }}
{{- if .Values.kafka.tls.caSecret }}
- name: WIRETIDE_KAFKA_CA
  value: /etc/wiretide/kafka-ca/ca.crt
{{- end }}
{{- else if .Values.kafka.sasl.enabled }}
- name: WIRETIDE_KAFKA_SECURITY_PROTOCOL
  value: SASL_PLAINTEXT
{{- end }}
{{- if .Values.kafka.sasl.enabled }}
- name: WIRETIDE_KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
- name: WIRETIDE_KAFKA_USERNAME
  valueFrom: {secretKeyRef: {name: {{ required "kafka.sasl.secret is required with SASL" .Values.kafka.sasl.secret | quote }}, key: username}}
- name: WIRETIDE_KAFKA_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ .Values.kafka.sasl.secret | quote }}, key: password}}
{{- end }}
{{- end -}}

{{- define "wiretide.kafkaCaVolume" -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret: {secretName: {{ .Values.kafka.tls.caSecret | quote }}}
{{- end }}
{{- end -}}

{{- define "wiretide.kafkaCaMount" -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.caSecret }}
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
