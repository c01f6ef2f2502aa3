"""Who may call the API.

Listening on loopback, only this machine can connect, so no token is asked for; but a
web page in a local browser can still reach loopback (DNS rebinding, cross-site
WebSockets), so requests must then name a loopback host, and WebSockets opened by a
page must come from a loopback origin.

Listening beyond loopback, every /api request needs `Authorization: Bearer <token>`.
Browsers cannot set headers on a WebSocket, so /api/live also takes the token as a
subprotocol: offer `["wiretide", "bearer.<token>"]` and the hub answers `wiretide`.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from schemas.config import Settings

TOKEN_ENV = Settings.variable("hub_token")
SUBPROTOCOL = "wiretide"
_BEARER_PROTOCOL = "bearer."


def is_loopback(host: str) -> bool:
    """Whether a listen address or Host name stays on this machine."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(authority: str) -> str:
    """`host` of a `host[:port]` or `[v6][:port]` Host header."""
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else authority
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


@dataclass(frozen=True, slots=True)
class Access:
    """The rule for one listening hub: `token` None means loopback, no token needed."""

    token: str | None

    @classmethod
    def for_listen(cls, host: str, token: str | None) -> tuple[Access, bool]:
        """(the rule, whether its token was generated here and must be shown to the user);
        `token`: the one chosen (Settings.hub_token), else one is made."""
        if is_loopback(host):
            return cls(None), False
        return cls(token or secrets.token_urlsafe(32)), not token

    def check_http(self, headers: Mapping[str, str]) -> str | None:
        """None if the request may pass, else why not (for a 401 or 400)."""
        if self.token is None:
            return self._local_host(headers)
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return "this hub needs a token: send 'Authorization: Bearer <token>'"
        if not secrets.compare_digest(value.strip().encode(), self.token.encode()):
            return "wrong token in 'Authorization: Bearer <token>'"
        return None

    def check_websocket(self, headers: Mapping[str, str], offered: list[str]) -> str | None:
        if self.token is None:
            why = self._local_host(headers)
            origin = headers.get("origin")
            if why is None and origin and not is_loopback(urlsplit(origin).hostname or ""):
                why = f"WebSocket from origin {origin} refused: the hub listens on loopback"
            return why
        for proto in offered:
            if proto.startswith(_BEARER_PROTOCOL):
                token = proto[len(_BEARER_PROTOCOL) :]
                if secrets.compare_digest(token.encode(), self.token.encode()):
                    return None
                return "wrong token in the bearer.<token> subprotocol"
        return self.check_http(headers)

    @staticmethod
    def _local_host(headers: Mapping[str, str]) -> str | None:
        host = host_of(headers.get("host", ""))
        if host and not is_loopback(host):
            return f"host {host!r} refused: the hub listens on loopback only"
        return None
