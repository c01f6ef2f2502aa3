"""Response shapes of the hub API, for validation and the OpenAPI description.

`Call` is exactly the dict of `sinks.clickhouse.view.call_view` (see its docstring for
what each field means); `CallSummary` is the same without headers and bodies, which is
what a traffic list shows. Every error answer is an `ErrorBody`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    error: str = Field(description="what was wrong, one line")
    line: int | None = Field(None, description="KFL errors: line of the filter, from 1")
    column: int | None = Field(None, description="KFL errors: column, from 1")


class Named(BaseModel):
    name: str
    namespace: str


class EndpointView(BaseModel):
    ip: str
    port: int
    name: str | None = Field(description="pod, else service; null outside the cluster")
    namespace: str | None
    pod: Named | None
    service: Named | None


class RequestSummary(BaseModel):
    method: str
    path: str
    query: str
    version: str
    body_size: int = Field(description="bytes on the wire")


class ResponseSummary(BaseModel):
    status: int
    reason: str
    version: str
    body_size: int = Field(description="bytes on the wire")


class RequestView(RequestSummary):
    headers: dict[str, str] = Field(description="lower-case name → value (redacted)")
    body: str = Field(description="text, or base64 when body_encoding is base64 (redacted)")
    body_encoding: str = Field(description="utf-8 or base64")


class ResponseView(ResponseSummary):
    headers: dict[str, str]
    body: str
    body_encoding: str


class CallSummary(BaseModel):
    id: str
    protocol: str
    timestamp: str = Field(description="request's first byte, RFC 3339 UTC")
    timestamp_ns: int = Field(description="the same as Unix nanoseconds")
    elapsed_ms: float | None = Field(description="request to response; null without one")
    flow_id: str
    src: EndpointView
    dst: EndpointView
    node: str
    source: str = Field(description="afpacket, tls or pcap")
    tls: bool
    flags: list[str]
    verdicts: dict[str, str] = Field(
        default_factory=dict, description="rule name (lower case) -> pass | fail: ..."
    )
    verdict: str | None = Field(
        default=None, description="pass, fail, or null when no rule applies"
    )
    request: RequestSummary
    response: ResponseSummary | None = Field(description="null when no response came")


class Call(CallSummary):
    request: RequestView
    response: ResponseView | None


class CallPage(BaseModel):
    calls: list[CallSummary] = Field(description="newest first")
    next: str | None = Field(
        description="pass as `before` for the next (older) page; null on the last page"
    )


class KflField(BaseModel):
    name: str
    type: str
    doc: str
    aliases: list[str]


class KflFields(BaseModel):
    fields: list[KflField]
    protocols: list[str] = Field(description='bare names meaning protocol == "name"')


class Status(BaseModel):
    status: str
    error: str | None = None
