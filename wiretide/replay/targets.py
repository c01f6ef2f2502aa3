"""`--target SPEC`: where the calls that went to one place go now. Sans-IO.

    URL                    every call
    svc/NAME=URL           calls whose destination service is NAME (or NAME.NAMESPACE)
    HOST:PORT=URL          calls that went to that address (HOST an IP or a pod name)

URL is http(s)://HOST[:PORT][/PREFIX] for HTTP, HTTP/2, gRPC and GraphQL calls, or
redis://HOST[:PORT] for Redis commands; a call only meets targets of its kind. A call
meets the first specific rule that names its destination, else the catch-all URL of its
kind; a call no rule names is not sent (counted as "no target").
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from schemas.errors import WiretideError
from schemas.records import ApiCall


class ReplayError(WiretideError):
    """A replay option or input that cannot be used (one line)."""


DEFAULT_PORTS = {"http": 80, "https": 443, "redis": 6379}


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str  # http | https
    host: str
    port: int
    base_path: str = ""  # a URL's path, put before each call's path ("" or "/v2")

    @property
    def authority(self) -> str:
        default = DEFAULT_PORTS[self.scheme]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def url(self, path: str, query: str) -> str:
        if self.scheme == "redis":
            return f"redis://{self.authority}"
        target = self.base_path + (path if path.startswith("/") else "/" + path)
        return f"{self.scheme}://{self.authority}{target}" + (f"?{query}" if query else "")


@dataclass(frozen=True, slots=True)
class Target:
    kind: str  # all | service | address
    key: str  # "" | service name (maybe name.namespace) | "host:port"
    origin: Origin


def parse_url(text: str, spec: str) -> Origin:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as ex:
        raise ReplayError(f"--target {spec!r}: {ex}") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ReplayError(
            f"--target {spec!r}: expected an http://, https:// or redis:// URL with a host, "
            "e.g. http://127.0.0.1:8080"
        )
    if parts.query or parts.fragment:
        raise ReplayError(f"--target {spec!r}: a target URL takes no ?query or #fragment")
    port = port or DEFAULT_PORTS[parts.scheme]
    return Origin(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


def parse_target(spec: str) -> Target:
    """One `--target` value; ReplayError (one line) when it is not one of the forms."""
    spec = spec.strip()
    if "=" not in spec or spec.startswith(("http://", "https://", "redis://")):
        return Target("all", "", parse_url(spec, spec))
    where, _, url = spec.partition("=")
    where = where.strip()
    origin = parse_url(url.strip(), spec)
    if where.startswith("svc/"):
        name = where[4:]
        if not name or "/" in name:
            raise ReplayError(f"--target {spec!r}: expected svc/NAME=URL, e.g. svc/orders=URL")
        return Target("service", name, origin)
    host, sep, port = where.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ReplayError(
            f"--target {spec!r}: expected URL, svc/NAME=URL or HOST:PORT=URL "
            "(e.g. 10.0.0.5:8080=http://127.0.0.1:8080)"
        )
    return Target("address", f"{host.strip('[]')}:{int(port)}", origin)


def parse_targets(specs: list[str]) -> tuple[Target, ...]:
    targets = tuple(parse_target(s) for s in specs)
    for redis in (False, True):
        if sum(t.kind == "all" and _is_redis(t.origin) == redis for t in targets) > 1:
            raise ReplayError(
                "--target: give at most one catch-all URL of a kind (the others: svc/NAME=URL)"
            )
    return targets


def _is_redis(origin: Origin) -> bool:
    return origin.scheme == "redis"


def route(call: ApiCall, targets: tuple[Target, ...]) -> Origin | None:
    """Where this call goes now: the first rule naming its destination, else the catch-all."""
    fallback = None
    redis = call.protocol == "redis"
    for t in targets:
        if _is_redis(t.origin) != redis:
            continue
        if t.kind == "all":
            fallback = t.origin
        elif t.kind == "service" and call.dst_service and t.key in _service_names(call):
            return t.origin
        elif t.kind == "address" and t.key in _addresses(call):
            return t.origin
    return fallback


def _service_names(call: ApiCall) -> tuple[str, ...]:
    name, ns = call.dst_service, call.dst_namespace
    return (name, f"{name}.{ns}") if ns else (name,)


def _addresses(call: ApiCall) -> tuple[str, ...]:
    port = call.dst_port
    out = [f"{call.dst_ip}:{port}"]
    if call.dst_pod:
        out.append(f"{call.dst_pod}:{port}")
    if call.dst_service:
        out.append(f"{call.dst_service}:{port}")
    return tuple(out)
