"""`--endpoint` and `--protocol` checked into where and how spans go: sans-IO."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from schemas.errors import WiretideError

PROTOCOLS = ("grpc", "http")
_EXAMPLE = "expected a URL such as http://collector:4317 (grpc) or http://collector:4318 (http)"


@dataclass(frozen=True)
class Endpoint:
    url: str  # grpc: scheme://host:port; http: the full URL of the traces path
    protocol: str  # grpc | http
    insecure: bool  # grpc over plain TCP (http://)


def parse_endpoint(text: str, protocol: str = "grpc") -> Endpoint:
    """The endpoint of `--endpoint URL --protocol P`; one-line WiretideError when bad.
    Over http a URL without a path gets OTLP's `/v1/traces`."""
    if protocol not in PROTOCOLS:
        raise WiretideError(f"--protocol {protocol!r}: expected grpc or http")
    raw = text.strip()
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as ex:
        raise WiretideError(f"--endpoint {text!r}: {ex}; {_EXAMPLE}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WiretideError(f"--endpoint {text!r}: {_EXAMPLE}")
    if protocol == "grpc":
        if parts.path not in ("", "/") or parts.query:
            raise WiretideError(
                f"--endpoint {text!r}: an OTLP/gRPC endpoint has no path ({_EXAMPLE})"
            )
        netloc = parts.netloc if port else f"{parts.netloc}:4317"
        return Endpoint(f"{parts.scheme}://{netloc}", "grpc", parts.scheme == "http")
    netloc = parts.netloc if port else f"{parts.netloc}:4318"
    path = parts.path if parts.path not in ("", "/") else "/v1/traces"
    query = f"?{parts.query}" if parts.query else ""
    return Endpoint(f"{parts.scheme}://{netloc}{path}{query}", "http", parts.scheme == "http")
