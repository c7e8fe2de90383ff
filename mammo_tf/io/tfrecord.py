"""TFRecord framing and tf.train.Example messages, without TensorFlow.

A TFRecord file is a sequence of records, each framed as

    uint64 length | uint32 masked_crc32c(length) | data[length] | uint32 masked_crc32c(data)

(little-endian; the mask is TensorFlow's `((crc >> 15) | (crc << 17)) + 0xa282ead8`), so
`tf.data.TFRecordDataset` reads what `frame_record` writes, and `read_record_at` reads one record
at a known byte offset without touching the others. Both CRCs are checked on every read.

`tf.train.Example` is parsed and serialised by protobuf's own runtime (a dependency of
TensorFlow, 0.07 s to import against TensorFlow's 2 s), from a descriptor built here with the same
message names and field numbers as tensorflow/core/example/{example,feature}.proto. It lives in a
private descriptor pool, so it never clashes with TensorFlow's copy when both are loaded. Features
are serialised deterministically (map keys sorted): the same values give the same bytes.

CRC-32C is google-crc32c's C implementation (GB/s; a pure-Python CRC would cost more than decoding
the image the record holds).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping, Sequence
from typing import BinaryIO

import google_crc32c

_MASK_DELTA = 0xA282EAD8
HEADER_BYTES = 12  # uint64 length + uint32 masked CRC of the length
FOOTER_BYTES = 4  # uint32 masked CRC of the data
FRAME_BYTES = HEADER_BYTES + FOOTER_BYTES

_EXAMPLE_PROTO = """
name: "mammo_tf/example.proto" package: "tensorflow" syntax: "proto3"
message_type { name: "BytesList" field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_BYTES } }
message_type { name: "FloatList" field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_FLOAT } }
message_type { name: "Int64List" field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_INT64 } }
message_type {
  name: "Feature"
  field { name: "bytes_list" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".tensorflow.BytesList"
          oneof_index: 0 }
  field { name: "float_list" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".tensorflow.FloatList"
          oneof_index: 0 }
  field { name: "int64_list" number: 3 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".tensorflow.Int64List"
          oneof_index: 0 }
  oneof_decl { name: "kind" }
}
message_type {
  name: "Features"
  field { name: "feature" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".tensorflow.Features.FeatureEntry" }
  nested_type {
    name: "FeatureEntry"
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".tensorflow.Feature" }
    options { map_entry: true }
  }
}
message_type {
  name: "Example"
  field { name: "features" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".tensorflow.Features" }
}
"""


class RecordError(ValueError):
    """A record that cannot be read: truncated, or a CRC that does not match. The caller names the file."""


def masked_crc(data: bytes | memoryview) -> int:
    """TensorFlow's masked CRC-32C of `data`, as stored in a TFRecord frame."""
    crc = google_crc32c.value(bytes(data) if isinstance(data, memoryview) else data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """One TFRecord: `data` with its length, and both CRCs (len(data) + FRAME_BYTES bytes)."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


def read_record_at(handle: BinaryIO, offset: int, size: int | None = None) -> bytes:
    """The data of the record framed at byte `offset` of an open file, both CRCs checked.

    size: the file's size in bytes, if known: a length pointing past it is refused before
    anything is allocated (a damaged length field can claim exabytes).
    """
    handle.seek(offset)
    header = handle.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES:
        raise RecordError(f"truncated: no record header at byte {offset}")
    length, length_crc = struct.unpack("<QI", header)
    if masked_crc(header[:8]) != length_crc:
        raise RecordError(f"record at byte {offset}: length checksum mismatch (corrupt or not a record boundary)")
    end = offset + HEADER_BYTES + length + FOOTER_BYTES
    if size is not None and end > size:
        raise RecordError(f"truncated: the record at byte {offset} needs {end} bytes, the file has {size}")
    body = handle.read(length + FOOTER_BYTES)
    if len(body) < length + FOOTER_BYTES:
        raise RecordError(f"truncated: the record at byte {offset} ends early")
    data = body[:length]
    if masked_crc(data) != struct.unpack("<I", body[length:])[0]:
        raise RecordError(f"record at byte {offset}: data checksum mismatch (corrupt)")
    return data


@functools.cache
def _example_class():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

    pool = descriptor_pool.DescriptorPool()  # private: TensorFlow's own tensorflow.Example never collides
    pool.Add(text_format.Parse(_EXAMPLE_PROTO, descriptor_pb2.FileDescriptorProto()))
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def encode_example(features: Mapping[str, tuple[str, Sequence]]) -> bytes:
    """A serialised tf.train.Example from {name: (kind, values)}.

    kind: "bytes" (bytes, or str stored as UTF-8), "int64" or "float" (float32 on the wire), as
    tf.train.Feature's three lists. Deterministic: the same features give the same bytes.
    """
    example = _example_class()()
    for key, (kind, values) in features.items():
        feature = example.features.feature[key]
        if kind == "bytes":
            feature.bytes_list.value.extend(v.encode("utf-8") if isinstance(v, str) else v for v in values)
        elif kind == "int64":
            feature.int64_list.value.extend(int(v) for v in values)
        elif kind == "float":
            feature.float_list.value.extend(float(v) for v in values)
        else:
            raise ValueError(f"feature {key!r}: unknown kind {kind!r} (bytes, int64 or float)")
    return example.SerializeToString(deterministic=True)


def decode_example(data: bytes) -> dict[str, list]:
    """A serialised tf.train.Example as {name: list of bytes, int or float}; a ValueError if it does not parse."""
    from google.protobuf.message import DecodeError

    example = _example_class()()
    try:
        example.ParseFromString(data)
    except DecodeError as err:
        raise ValueError(f"not a tf.train.Example ({err})") from None
    out: dict[str, list] = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        out[key] = list(getattr(feature, kind).value) if kind else []
    return out
