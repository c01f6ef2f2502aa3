"""hpack's `Decoder` with a faster `decode(block, raw=True)`: the same header table,
integer and Huffman code, errors and messages, without what costs per header in hpack's
loop (a copy of the rest of the block for every literal, a `HeaderTuple` per header, debug
logging), and with the Huffman strings seen lately remembered. Headers come back as plain
`(name, value)` tuples of bytes."""

from __future__ import annotations

from hpack import Decoder
from hpack.exceptions import HPACKDecodingError, InvalidTableSizeError, OversizedHeaderListError
from hpack.hpack import decode_integer
from hpack.huffman_table import decode_huffman

# Huffman-coded strings repeat across connections (each first request spells its user
# agent, content type, authority...): their decoding, remembered. Decoding is pure.
_HUFFMAN: dict[bytes, bytes] = {}
_MAX_HUFFMAN = 4096
_MAX_REMEMBERED = 256  # bytes of a coded string worth remembering


class FastDecoder(Decoder):
    def decode(self, data: bytes, raw: bool = False) -> list:  # type: ignore[override]
        if not raw:
            return super().decode(data, raw)
        mem = memoryview(data)
        get = self.header_table.get_by_index
        add = self.header_table.add
        headers: list[tuple[bytes, bytes]] = []
        size = 0  # of the header list, as hpack counts it (32 per entry)
        n = len(data)
        i = 0
        while i < n:
            b = data[i]
            if b & 0x80:  # indexed field
                if b & 0x7F != 0x7F:
                    index, i = b & 0x7F, i + 1
                else:
                    index, used = decode_integer(mem[i:], 7)
                    i += used
                name, value = get(index)
            elif b & 0x40 or not b & 0x20:  # a literal, added to the table or not
                indexed = b & 0x40
                mask = 0x3F if indexed else 0x0F
                if b & mask:  # its name from the table
                    if b & mask != mask:
                        index, at = b & mask, i + 1
                    else:
                        index, used = decode_integer(data[i:], 6 if indexed else 4)
                        at = i + used
                    name = get(index)[0]
                else:
                    name, at = _string(data, i + 1)
                value, i = _string(data, at)
                if indexed:
                    add(name, value)
            else:  # dynamic table size update
                if headers:
                    msg = "Table size update not at the start of the block"
                    raise HPACKDecodingError(msg)
                new_size, used = decode_integer(mem[i:], 5)
                if new_size > self.max_allowed_table_size:
                    msg = "Encoder exceeded max allowable table size"
                    raise InvalidTableSizeError(msg)
                self.header_table_size = new_size
                i += used
                continue
            headers.append((name, value))
            size += 32 + len(name) + len(value)
            if size > self.max_header_list_size:
                msg = f"A header list larger than {self.max_header_list_size} has been received"
                raise OversizedHeaderListError(msg)
        self._assert_valid_table_size()
        return headers


def _string(data: bytes, at: int) -> tuple[bytes, int]:
    """The string literal (7-bit length prefix, H bit) at `at` and the offset after it."""
    if at < len(data) and data[at] & 0x7F != 0x7F:
        length, used = data[at] & 0x7F, 1
    else:
        length, used = decode_integer(data[at:], 7)
    start = at + used
    text = data[start : start + length]
    if len(text) != length:
        msg = "Truncated header block"
        raise HPACKDecodingError(msg)
    if data[at] & 0x80:
        plain = _HUFFMAN.get(text)
        if plain is None:
            plain = decode_huffman(text)
            if len(text) <= _MAX_REMEMBERED:
                if len(_HUFFMAN) >= _MAX_HUFFMAN:
                    _HUFFMAN.clear()
                _HUFFMAN[text] = plain
        text = plain
    return text, start + length
