"""GET /api/coverage: what each node captures and decrypts, and why not.

The nodes' newest facts come from the coverage topic (each agent publishes its own, see
wiretide/coverage.py); the undecrypted TLS flows are counted in the store. The report is
schemas/coverage.py's CoverageReport.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from schemas.config import Settings
from schemas.coverage import CoverageReport
from schemas.errors import WiretideError
from sinks.errors import SinkError
from wiretide.hub.models import ErrorBody
from wiretide.hub.store import HubStore


class TlsProcessView(BaseModel):
    pid: int
    command: str
    library: str = Field(description="OpenSSL | BoringSSL | Go | Java | GnuTLS | NSS")
    hooked: bool
    version: str = Field(description="e.g. 3.0.19 (OpenSSL) or 1.26.8 (Go); empty: unknown")
    path: str = Field(description="the file probed, or the one that could not be")
    reason: str = Field(description="why not hooked; empty when hooked")
    exe: str
    pod: str
    namespace: str


class NodeView(BaseModel):
    node: str
    updated_ns: int = Field(description="when the agent said this, Unix epoch ns")
    sources: list[str] = Field(description="active capture sources: afpacket, tls-uprobes")
    interfaces: str
    tls: str = Field(description="off (not asked for) | on | unavailable")
    tls_problem: str = Field(description="why TLS capture is unavailable")
    kernel_packets: int
    kernel_drops: int
    tls_bytes: int = Field(description="plaintext bytes read through the uprobes")
    processes: list[TlsProcessView]
    undecrypted_flows: int
    undecrypted_bytes: int


class PodView(BaseModel):
    pod: str = Field(description="namespace/pod")
    node: str
    processes: list[TlsProcessView]
    undecrypted_flows: int
    undecrypted_bytes: int


class UndecryptedView(BaseModel):
    node: str
    client: str = Field(description="namespace/pod, else the IP")
    server: str = Field(description="namespace/pod, else ip:port")
    flows: int
    bytes: int


class Coverage(BaseModel):
    nodes: list[NodeView]
    pods: list[PodView]
    undecrypted: list[UndecryptedView] = Field(
        description="TLS flows stored as ciphertext only (no plaintext captured), most bytes first"
    )
    undecrypted_flows: int
    undecrypted_bytes: int
    problems: list[str] = Field(description="what could not be read (Kafka, the store)")


def _kafka(settings: Settings) -> Settings:
    """The settings with Kafka named: theirs, else the data dir's broker when it runs."""
    if settings.kafka:
        return settings
    from wiretide.broker import local_broker

    broker = local_broker(settings)
    if not broker.is_up():
        raise WiretideError("no Kafka to read the nodes' coverage from (start with --kafka)")
    return settings.replace(kafka=broker.bootstrap)


def router(store: HubStore) -> APIRouter:
    from wiretide import coverage

    api = APIRouter(tags=["coverage"])

    @api.get(
        "/coverage",
        response_model=Coverage,
        responses={400: {"model": ErrorBody, "description": "bad parameter"}},
    )
    def get_coverage(
        request: Request,
        hours: Annotated[
            float, Query(gt=0, le=24 * 366, description="undecrypted flows of the last N hours")
        ] = 24,
    ) -> dict[str, Any]:
        """Per node and pod: capture sources, TLS libraries hooked or why not, kernel
        drops, and TLS flows seen only encrypted."""
        problems: list[str] = []
        nodes = []
        try:
            nodes = coverage.read_nodes(_kafka(request.app.state.settings))
        except WiretideError as ex:
            problems.append(str(ex))
        since = time.time_ns() - int(hours * 3600e9)
        flows = []
        try:
            with store.reading():
                flows = coverage.undecrypted(store.reads, since)
        except SinkError as ex:
            problems.append(str(ex))
        return {**CoverageReport.build(nodes, flows).to_dict(), "problems": problems}

    return api
