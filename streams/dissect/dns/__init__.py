"""DNS over UDP and TCP: message parsing with name compression (`parser`), query/response
pairing by transaction id and question (`stitch`), and the factory the registry lists."""

from __future__ import annotations

from streams.dissect.dns.parser import HEADER, plausible
from streams.dissect.dns.stitch import PROTOCOL, DnsDissector
from streams.dissect.skeleton import SkeletonFactory

__all__ = ["DNS", "DnsDissector", "DnsFactory"]


class DnsFactory(SkeletonFactory):
    """One `DnsDissector` per flow (a UDP 4-tuple or a TCP connection)."""

    protocol = PROTOCOL
    ports = frozenset({53, 5353})
    transports = frozenset({"udp", "tcp"})
    dissector = DnsDissector

    def probe(self, data: bytes) -> float:
        """A whole datagram that parses as DNS scores 1.0; a TCP segment whose length
        prefix fits and whose message parses (or starts with a valid question) scores the
        same or 0.7. The probe does not know the transport, so it tries both framings."""
        data = bytes(data[: 0xFFFF + 2])
        score = plausible(data)
        if score < 1.0 and len(data) >= 2 + HEADER:  # 1.0 is the most it can score
            size = (data[0] << 8) | data[1]
            if size >= HEADER and size >= len(data) - 2:
                score = max(score, plausible(data[2 : 2 + size]))
        return score


DNS = DnsFactory()
