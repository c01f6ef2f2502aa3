"""The HTTP/2 dissector's `FastDecoder` decodes every header block as hpack's own `Decoder`
does: the same headers, the same dynamic table after it, the same error and message."""

from __future__ import annotations

from hpack import Decoder, Encoder
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.dissect.http2.hpack_decoder import FastDecoder

NAMES = st.sampled_from(
    [b":method", b":path", b":status", b"content-type", b"grpc-status", b"x-trace", b"cookie"]
)
VALUES = st.binary(max_size=200) | st.sampled_from([b"GET", b"200", b"application/grpc"])
HEADER_SETS = st.lists(st.lists(st.tuples(NAMES | st.binary(max_size=40), VALUES), max_size=12))


def outcome(decoder: Decoder, block: bytes):
    try:
        return decoder.decode(block, raw=True), list(decoder.header_table.dynamic_entries)
    except Exception as e:
        return type(e), str(e)


def as_plain(result):
    """hpack's HeaderTuples as plain tuples, for comparing."""
    if isinstance(result[0], list):
        return [tuple(h) for h in result[0]], result[1]
    return result


@settings(max_examples=300, deadline=None)
@given(HEADER_SETS, st.booleans(), st.data())
def test_same_headers_table_and_errors_as_hpack(header_sets, huffman, data):
    encoder = Encoder()
    slow, fast = Decoder(4096), FastDecoder(4096)
    for i, headers in enumerate(header_sets):
        if i == 1:
            encoder.header_table_size = data.draw(st.integers(0, 8192))  # a size update
        block = encoder.encode(
            [(n, v) if k % 3 else (n, v, True) for k, (n, v) in enumerate(headers)],
            huffman=huffman,
        )
        if data.draw(st.booleans()):  # cut or corrupt some blocks
            cut = data.draw(st.integers(0, len(block)))
            block = block[:cut] + data.draw(st.binary(max_size=4))
        expected = as_plain(outcome(slow, block))
        got = outcome(fast, block)
        if isinstance(expected[0], type) and "memory at" in expected[1]:
            assert got[0] is expected[0]  # the message names a memoryview's address
        else:
            assert got == expected
        if isinstance(expected[0], type):
            return  # the dissector gives a decoder up after an error


def test_garbage_blocks_fail_alike():
    for block in (b"\x80", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", b"\x40\x05ab",
                  b"\x00\x81", b"\x3f\xe1\x1f", b"\xbe", b"\x82\x20"):  # fmt: skip
        expected, got = as_plain(outcome(Decoder(), block)), outcome(FastDecoder(), block)
        assert got[0] == expected[0]
        if "memory at" not in str(expected[1]):
            assert got == expected
