"""The packets of exactly these calls: each call's window on its connection stops at its
neighbours, so an export of one call of a keep-alive connection holds no other call's.

`wiretide.export` keeps a call's segments within one second of it (MARGIN_NS): enough
for the handshake and the closing ACKs, but on a keep-alive connection that second also
holds the calls before and after. Here each call's window runs from just after the end
of the last call on the same flow that ended before it began (or a second before it, if
that is later) to just before the start of the first call that began after it ended (or
a second after it). Calls that overlap it (pipelined HTTP/1.1 requests sharing a packet,
HTTP/2 streams) do not clip it: their packets interleave with its own.
"""

from __future__ import annotations

from collections.abc import Iterable

from sinks.errors import one_line
from wiretide.export import MARGIN_NS, CallSpan, ExportError, spans_query


def tighten(spans: Iterable[CallSpan], neighbours: Iterable[CallSpan]) -> list[CallSpan]:
    """Sans-IO: `spans` with windows clipped by the other calls of their flows.

    The result is for wiretide.export's SegmentPicker, which widens every span by
    MARGIN_NS: each span comes back narrowed by as much, so that widened it is the
    clipped window."""
    by_flow: dict[str, list[CallSpan]] = {}
    for n in neighbours:
        by_flow.setdefault(n.flow_id, []).append(n)
    out = []
    for s in spans:
        others = by_flow.get(s.flow_id, ())
        before = [n.end_ns for n in others if n.end_ns < s.start_ns]
        after = [n.start_ns for n in others if n.start_ns > s.end_ns]
        low = max(s.start_ns - MARGIN_NS, max(before, default=-(2**62)) + 1)
        high = min(s.end_ns + MARGIN_NS, min(after, default=2**62) - 1)
        out.append(CallSpan(s.call_id, s.flow_id, low + MARGIN_NS, high - MARGIN_NS, s.replayed))
    return out


def neighbour_spans(client: object, flows: Iterable[str]) -> list[CallSpan]:
    """Every stored call of these flows, read with a clickhouse-connect client."""
    flows = sorted(set(flows))
    if not flows:
        return []
    where = "flow_id IN {cp_flows:Array(String)}"
    sql, bound = spans_query(where, {"cp_flows": flows}, None, None, None)
    try:
        result = client.query(
            sql, parameters=bound, settings={"do_not_merge_across_partitions_select_final": 1}
        )
    except Exception as ex:
        raise ExportError(f"cannot read the calls around the matching ones: {one_line(ex)}") from ex
    return [
        CallSpan(call_id, flow, int(start), int(end), source == "pcap")
        for call_id, flow, start, end, source in result.result_rows
    ]
