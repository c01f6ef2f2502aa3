"""Span data into the OpenTelemetry SDK and out over OTLP, one batch at a time.

The SDK's own tracer builds every span (attribute limits, resource, kind, status), with
the ids and the captured times the span data carries: a preset id generator hands the
tracer the call's ids. Ended spans are collected, not queued: `export` sends a batch with
the SDK's OTLP exporter and says whether the collector took it, which the consumer needs
before it may commit (a BatchSpanProcessor's force_flush reports success even when its
export failed).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from wiretide.otel.endpoint import Endpoint
from wiretide.otel.spans import Attributes, SpanData

SCOPE = "wiretide"
_KINDS = {"client": SpanKind.CLIENT, "server": SpanKind.SERVER}
_MAX_RESOURCES = 4096  # distinct sides (service, pod, namespace) kept with a provider each


class _PresetIds(IdGenerator):
    """Hands the tracer the ids set just before it starts a span."""

    def __init__(self) -> None:
        self.trace_id = self.span_id = 0

    def generate_trace_id(self) -> int:
        return self.trace_id

    def generate_span_id(self) -> int:
        return self.span_id


class _Collect(SpanProcessor):
    """Keeps ended spans until the batch is exported."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class _LastError(logging.Handler):
    """The OTLP exporter says why an export failed only in its log: keep the most telling
    line (the HTTP exporter's last one only says that it gave up)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = " ".join(record.getMessage().split())
        except Exception:  # a log record that does not format is no reason to fail
            return
        if self.last and "due to timeout, max retries" in text:
            return
        errno = _ERRNO.search(text)
        self.last = errno.group(1) if errno else text[:300]


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


class SpanBuilder:
    """Turns span data into SDK spans: one tracer provider per side's resource."""

    def __init__(self) -> None:
        self._ids = _PresetIds()
        self._collect = _Collect()
        self._tracers: dict[Attributes, trace.Tracer] = {}

    def add(self, spans: Iterable[SpanData]) -> None:
        for data in spans:
            self._start_and_end(data)

    def take(self) -> list[ReadableSpan]:
        spans, self._collect.spans = self._collect.spans, []
        return spans

    def _tracer(self, resource: Attributes) -> trace.Tracer:
        tracer = self._tracers.get(resource)
        if tracer is None:
            if len(self._tracers) >= _MAX_RESOURCES:
                self._tracers.clear()
            provider = TracerProvider(
                sampler=ALWAYS_ON,  # sampled before: the same choice for a whole trace
                resource=Resource.create(dict(resource)),
                id_generator=self._ids,
                shutdown_on_exit=False,
            )
            provider.add_span_processor(self._collect)
            tracer = self._tracers[resource] = provider.get_tracer(SCOPE)
        return tracer

    def _start_and_end(self, data: SpanData) -> None:
        context = Context()
        if data.parent_span_id:
            parent = SpanContext(
                data.trace_id,
                data.parent_span_id,
                is_remote=data.parent_remote,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
            context = trace.set_span_in_context(NonRecordingSpan(parent), context)
        self._ids.trace_id, self._ids.span_id = data.trace_id, data.span_id
        span = self._tracer(data.resource).start_span(
            data.name,
            context=context,
            kind=_KINDS[data.kind],
            attributes=dict(data.attributes),
            start_time=data.start_ns,
            record_exception=False,
            set_status_on_exception=False,
        )
        if data.error is not None:
            span.set_status(Status(StatusCode.ERROR, data.error))
        span.end(end_time=data.end_ns)


class OtlpOut:
    """The SDK's OTLP exporter for an endpoint; `send` says why a batch was not taken."""

    def __init__(self, endpoint: Endpoint, timeout_s: float = 10.0) -> None:
        self.endpoint = endpoint
        self._errors = _LastError()
        log = logging.getLogger("opentelemetry")
        log.addHandler(self._errors)
        log.propagate = False  # its retry warnings are said once, by the consumer
        self._exporter = _exporter(endpoint, timeout_s)

    def send(self, spans: list[ReadableSpan]) -> str | None:
        """None when the collector took every span; else why not, in one line."""
        if not spans:
            return None
        self._errors.last = ""
        try:
            result = self._exporter.export(spans)
        except Exception as ex:  # the exporter should not raise; a bug is still an outage
            return f"{type(ex).__name__}: {ex}"
        if result is SpanExportResult.SUCCESS:
            return None
        return self._errors.last or "the collector did not take the spans"

    def close(self) -> None:
        self._exporter.shutdown()
        logging.getLogger("opentelemetry").removeHandler(self._errors)


def _exporter(endpoint: Endpoint, timeout_s: float) -> SpanExporter:
    if endpoint.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(
            endpoint=endpoint.url, insecure=endpoint.insecure, timeout=timeout_s
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    return Http(endpoint=endpoint.url, timeout=timeout_s)
