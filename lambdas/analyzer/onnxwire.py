"""The few ONNX messages a feed-forward float graph needs, written in protobuf's wire format.

The classifier renders its layers as an ONNX model for ONNX Runtime (`classifier.onnx_model`).
The `onnx` package would build the same bytes, but importing it costs about a second (its
`ml_dtypes` extension alone about 0.7 s) on every cold start, and it brings protobuf and
ml_dtypes with it. The part of the format a graph of float tensors needs is small: a
message is a sequence of fields, each a key (field number << 3 | wire type) followed by a
varint or by a length and that many bytes. Field numbers are those of onnx.proto (ONNX
1.x; the file is proto2, so repeated integers are written one key per value, which every
reader accepts). ONNX Runtime checks the model it is given, and the classifier's tests run
the graph against the same layers computed in numpy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

_VARINT, _BYTES = 0, 2
_FLOAT = 1  # TensorProto.DataType.FLOAT (also TypeProto.Tensor.elem_type)
_ATTRIBUTE_INT, _ATTRIBUTE_INTS = 2, 7  # AttributeProto.AttributeType


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 fields: two's complement in ten bytes
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3 | _VARINT) + _varint(value)


def _bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(field << 3 | _BYTES) + _varint(len(data)) + data


def _each(field: int, values: Iterable[bytes | str]) -> bytes:
    return b"".join(_bytes(field, v) for v in values)


def attribute(name: str, value: int | Sequence[int]) -> bytes:
    """AttributeProto: name = 1, i = 3, ints = 8, type = 20."""
    if isinstance(value, int):
        return _bytes(1, name) + _int(3, value) + _int(20, _ATTRIBUTE_INT)
    return _bytes(1, name) + b"".join(_int(8, v) for v in value) + _int(20, _ATTRIBUTE_INTS)


def node(op_type: str, inputs: Sequence[str], outputs: Sequence[str],
         **attributes: int | Sequence[int]) -> bytes:
    """NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5."""
    return (_each(1, inputs) + _each(2, outputs) + _bytes(3, outputs[0]) + _bytes(4, op_type)
            + _each(5, (attribute(k, v) for k, v in attributes.items())))


def tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto of float32: dims = 1, data_type = 2, name = 8, raw_data = 9 (little-endian)."""
    data = np.ascontiguousarray(array, dtype="<f4")
    return (b"".join(_int(1, d) for d in data.shape) + _int(2, _FLOAT) + _bytes(8, name)
            + _bytes(9, data.tobytes()))


def float_input(name: str, dims: Sequence[int]) -> bytes:
    """ValueInfoProto (name = 1, type = 2) of a float tensor of fixed `dims`: TypeProto
    tensor_type = 1 -> elem_type = 1, shape = 2 -> dim = 1 -> dim_value = 1."""
    shape = b"".join(_bytes(1, _int(1, d)) for d in dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, _FLOAT) + _bytes(2, shape)))


def graph(name: str, nodes: Sequence[bytes], initializers: Sequence[bytes],
          inputs: Sequence[bytes], outputs: Sequence[bytes]) -> bytes:
    """GraphProto: node = 1, name = 2, initializer = 5, input = 11, output = 12."""
    return (_each(1, nodes) + _bytes(2, name) + _each(5, initializers) + _each(11, inputs)
            + _each(12, outputs))


def model(graph_bytes: bytes, *, opset: int, ir_version: int, producer: str) -> bytes:
    """ModelProto: ir_version = 1, producer_name = 2, graph = 7, opset_import = 8
    (OperatorSetIdProto: domain = 1, the default "", version = 2)."""
    return (_int(1, ir_version) + _bytes(2, producer) + _bytes(7, graph_bytes)
            + _bytes(8, _bytes(1, "") + _int(2, opset)))
