"""Read a graph's outputs from an ONNX file, and serialize a graph with unchanged weights, without touching
the weights themselves.

A ModelProto is a protobuf message: its graph (field 7) holds the nodes, the initializers (the weights,
hundreds of megabytes) and the outputs (field 12). Walking the wire format and skipping every other field by
its length reads the outputs of a 400 MB graph in milliseconds, where ``onnx.load`` parses everything; and the
initializers' encoded bytes can be copied as they are into a graph serialized without them
(`with_initializers`), where ``SerializeToString`` encodes every weight again.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path

_MODEL_GRAPH = 7  # ModelProto.graph
_GRAPH_INITIALIZER = 5  # GraphProto.initializer
_GRAPH_OUTPUT = 12  # GraphProto.output
_TENSOR_NAME = 8  # TensorProto.name
_LENGTH_DELIMITED = 2


def _varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, start of the field's record (its key), start and end of its value) of each field
    of the message in ``buf[start:end]``."""
    pos = start
    while pos < end:
        record = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:  # varint
            _, nxt = _varint(buf, pos)
        elif wire == 1:  # 64-bit
            nxt = pos + 8
        elif wire == _LENGTH_DELIMITED:
            length, pos = _varint(buf, pos)
            nxt = pos + length
        elif wire == 5:  # 32-bit
            nxt = pos + 4
        else:  # groups (3, 4) are not used by onnx.proto
            raise ValueError(f"unexpected protobuf wire type {wire}")
        if nxt > end:
            raise ValueError("truncated protobuf message")
        yield number, wire, record, pos, nxt
        pos = nxt


def graph_outputs(path: Path) -> list:
    """The graph outputs (``onnx.ValueInfoProto``) of the ONNX file at ``path``, in order (as ``onnx.load`` would
    give them: a message field that occurs twice is merged, its repeated fields concatenated); ValueError when
    the file is empty or not a well-formed protobuf message."""
    import onnx

    outputs = []
    with open(path, "rb") as f:
        if not f.seek(0, 2):
            raise ValueError(f"{path.name} is empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                for number, wire, _, start, end in _fields(buf, 0, len(buf)):
                    if number == _MODEL_GRAPH and wire == _LENGTH_DELIMITED:
                        outputs += [
                            onnx.ValueInfoProto.FromString(buf[s:e])
                            for n, w, _, s, e in _fields(buf, start, end)
                            if n == _GRAPH_OUTPUT and w == _LENGTH_DELIMITED
                        ]
            except IndexError:
                raise ValueError(f"{path.name}: truncated protobuf message") from None
    return outputs


def _graph(buf) -> tuple[int, int, int]:
    """(record start, value start, value end) of the only graph field of the serialized ModelProto ``buf``."""
    try:
        graphs = [(r, s, e) for n, w, r, s, e in _fields(buf, 0, len(buf)) if n == _MODEL_GRAPH]
    except IndexError:
        raise ValueError("truncated protobuf message") from None
    if len(graphs) != 1:
        raise ValueError(f"{len(graphs)} graph fields in the model, not one")
    return graphs[0]


def _tensor_name(buf, start: int, end: int) -> str:
    """The name of the TensorProto in ``buf[start:end]`` (its fields before the name are dims, type and small
    data; the weights' raw_data comes after it)."""
    for number, wire, _, s, e in _fields(buf, start, end):
        if number == _TENSOR_NAME and wire == _LENGTH_DELIMITED:
            return bytes(buf[s:e]).decode()
    return ""


def with_initializers(head: bytes, original: bytes, names: list[str]) -> bytes:
    """The serialized ModelProto ``head``, whose graph has no initializers, with the initializer records named
    ``names`` of the serialized ModelProto ``original`` put where a protobuf serializer writes them: after the
    graph's nodes and name (fields 1 and 2), before its other fields (serializers write known fields in
    field-number order, repeated ones in their order). When ``head`` serializes ``original``'s model with its
    initializers removed, and ``names`` are those it kept (others may have been dropped; none changed), the
    result is what serializing the model with them gives, byte for byte: the weights are copied once instead of
    encoded again. ValueError when either is not such a message, or ``names`` are not initializers of
    ``original`` in its order."""
    view = memoryview(original)
    _, start, end = _graph(view)
    originals = iter(
        (_tensor_name(view, s, e), view[r:e]) for n, _, r, s, e in _fields(view, start, end) if n == _GRAPH_INITIALIZER
    )
    records = []
    for name in names:
        found = next((record for candidate, record in originals if candidate == name), None)
        if found is None:
            raise ValueError(f"initializer {name!r} is not in the original graph, or not in its order")
        records.append(found)
    record, start, end = _graph(head)
    fields = list(_fields(head, start, end))
    if any(n == _GRAPH_INITIALIZER for n, *_ in fields):
        raise ValueError("the graph to complete has initializers")
    insert = next((r for n, _, r, _, _ in fields if n > _GRAPH_INITIALIZER), end)
    size = end - start + sum(len(r) for r in records)
    key = _encode_varint(_MODEL_GRAPH << 3 | _LENGTH_DELIMITED)
    return b"".join(
        [head[:record], key, _encode_varint(size), head[start:insert], *records, head[insert:end], head[end:]]
    )
