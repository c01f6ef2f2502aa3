"""OpenTelemetry export: every call of the calls topic as a client and a server span.

`context` (trace ids and propagated headers) and `spans` (call -> span data) are sans-IO;
`exporter` is the shell that consumes the topic and exports over OTLP with the SDK."""
