"""TFRecord files and ``tf.train.Example`` protobufs without TensorFlow.

Framing (TensorFlow's ``record_writer``): per record a little-endian uint64 length, the masked CRC32C of
those 8 bytes (uint32), the data, and the masked CRC32C of the data; masking is
``((crc >> 15) | (crc << 17)) + 0xa282ead8`` (mod 2^32). Both CRCs are checked (``google-crc32c``: Google's
maintained C implementation). A record that is not wanted is skipped with a seek, without reading it.

``tf.train.Example`` is parsed by the ``protobuf`` package from a descriptor built here with the message
layout of TensorFlow's ``example.proto`` / ``feature.proto`` (Example -> Features -> map<string, Feature>;
Feature = oneof bytes_list / float_list / int64_list). It lives in a private descriptor pool, so it never
clashes with a TensorFlow installed next to it.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import google_crc32c
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from converseg_ros.errors import ConverSegError

MASK_DELTA = 0xA282EAD8
MAX_RECORD_BYTES = 2 << 30  # a length beyond this is a corrupt header, not an episode


class TFRecordError(ConverSegError, ValueError):
    """A TFRecord file that is truncated, corrupt or not a tf.train.Example."""


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF


def iter_records(path: str | Path, wanted: Callable[[int], bool] | None = None) -> Iterator[tuple[int, bytes]]:
    """(index, data) of every record of ``path`` for which ``wanted(index)`` is true (default: all); the
    others are skipped with a seek."""
    for index, (offset, _length) in enumerate(index_records(path)):
        if wanted is None or wanted(index):
            yield index, read_record_at(path, offset, index)


def index_records(path: str | Path) -> list[tuple[int, int]]:
    """(offset, length) of every record (length headers checked, data skipped unread)."""
    path, out = Path(path), []
    with open(path, "rb") as fh:
        offset = 0
        while header := fh.read(12):
            length = _check_header(path, header, len(out), offset)
            out.append((offset, length))
            offset += 16 + length
            fh.seek(offset)
        if fh.tell() > offset:
            raise TFRecordError(f"{path}: record {len(out)} truncated at byte {offset}")
    return out


def read_record_at(path: str | Path, offset: int, index: int = 0) -> bytes:
    """The data of the record whose header starts at ``offset`` (both CRCs checked)."""
    path = Path(path)
    with open(path, "rb") as fh:
        fh.seek(offset)
        length = _check_header(path, fh.read(12), index, offset)
        data, footer = fh.read(length), fh.read(4)
    if len(data) < length or len(footer) < 4:
        raise TFRecordError(f"{path}: record {index} truncated at byte {offset}")
    if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
        raise TFRecordError(f"{path}: record {index} fails its CRC32C check (byte {offset})")
    return data


def _check_header(path: Path, header: bytes, index: int, offset: int) -> int:
    if len(header) < 12:
        raise TFRecordError(f"{path}: record {index} truncated in its header at byte {offset}")
    length, length_crc = struct.unpack("<QI", header)
    if masked_crc32c(header[:8]) != length_crc or length > MAX_RECORD_BYTES:
        raise TFRecordError(f"{path}: record {index} has a corrupt length field at byte {offset}")
    return length


# --- tf.train.Example ------------------------------------------------------------------------------------
def _field(name: str, number: int, ftype: int, label: int, type_name: str = "", oneof: int | None = None):
    f = descriptor_pb2.FieldDescriptorProto(name=name, number=number, type=ftype, label=label)
    if type_name:
        f.type_name = type_name
    if oneof is not None:
        f.oneof_index = oneof
    return f


@functools.lru_cache(maxsize=1)
def _example_class():
    fd = descriptor_pb2.FieldDescriptorProto
    rep, opt = fd.LABEL_REPEATED, fd.LABEL_OPTIONAL
    file = descriptor_pb2.FileDescriptorProto(name="converseg_tf_example.proto", package="tensorflow",
                                              syntax="proto3")
    for name, ftype in (("BytesList", fd.TYPE_BYTES), ("FloatList", fd.TYPE_FLOAT), ("Int64List", fd.TYPE_INT64)):
        msg = file.message_type.add(name=name)
        msg.field.append(_field("value", 1, ftype, rep))
    feature = file.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name, kind in ((1, "bytes_list", "BytesList"), (2, "float_list", "FloatList"),
                               (3, "int64_list", "Int64List")):
        feature.field.append(_field(name, number, fd.TYPE_MESSAGE, opt, f".tensorflow.{kind}", oneof=0))
    features = file.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.append(_field("key", 1, fd.TYPE_STRING, opt))
    entry.field.append(_field("value", 2, fd.TYPE_MESSAGE, opt, ".tensorflow.Feature"))
    features.field.append(_field("feature", 1, fd.TYPE_MESSAGE, rep, ".tensorflow.Features.FeatureEntry"))
    example = file.message_type.add(name="Example")
    example.field.append(_field("features", 1, fd.TYPE_MESSAGE, opt, ".tensorflow.Features"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def parse_example(data: bytes, where: str = "record") -> dict[str, list[bytes] | np.ndarray]:
    """A serialized ``tf.train.Example`` -> {feature name: list of bytes, or a float32 / int64 array}."""
    example = _example_class()()
    try:
        example.ParseFromString(data)
    except DecodeError as exc:
        raise TFRecordError(f"{where}: not a tf.train.Example ({exc})") from exc
    out: dict[str, list[bytes] | np.ndarray] = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "bytes_list":
            out[key] = list(feature.bytes_list.value)
        elif kind == "float_list":
            out[key] = np.asarray(feature.float_list.value, dtype=np.float32)
        elif kind == "int64_list":
            out[key] = np.asarray(feature.int64_list.value, dtype=np.int64)
        else:
            out[key] = []
    return out
