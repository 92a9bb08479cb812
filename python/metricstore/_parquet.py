"""Annotating a Parquet file's int64 columns INTEGER(64, signed) in place.

parquet-go (which writes cc-backend's archive) gives every int64 column the
logical type INTEGER(64, signed) and the converted type INT_64; pyarrow leaves
signed integers without annotation. Both mean the same numbers, but readers
that compare schemas see a difference. This rewrites the file's footer, the
Thrift-compact ``FileMetaData`` after the data, with the annotation added to
each INT64 column that has none; the data pages are not touched.

The footer's layout: ``... | FileMetaData | u32 length | "PAR1"``. Its
``schema`` (field 2) is a list of ``SchemaElement`` structs: field 1 the
physical type (INT64 = 2), 6 the converted type (INT_64 = 18), 10 the
logical type, a union whose field 10 is ``IntType {1: bitWidth i8,
2: isSigned bool}``.
"""

from __future__ import annotations

import os
import struct
from typing import Any, TypeAlias

MAGIC = b"PAR1"
_INT64 = 2
_CONVERTED_INT_64 = 18
# Thrift compact types
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY = 1, 2, 3, 4, 5, 6, 7, 8
_LIST, _SET, _MAP, _STRUCT = 9, 10, 11, 12

# A struct is a list of (field id, compact type, value); a list or set is
# (element type, [values]); a map is (key type, value type, [(key, value)]).
Struct: TypeAlias = list[tuple[int, int, Any]]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def byte(self) -> int:
        self.at += 1
        return self.data[self.at - 1]

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, kind: int) -> Any:
        if kind in (_TRUE, _FALSE):  # a bool inside a list: one byte
            return self.byte() == _TRUE
        if kind == _BYTE:
            return struct.unpack("b", bytes([self.byte()]))[0]
        if kind in (_I16, _I32, _I64):
            return self.zigzag()
        if kind == _DOUBLE:
            self.at += 8
            return self.data[self.at - 8 : self.at]
        if kind == _BINARY:
            n = self.varint()
            self.at += n
            return self.data[self.at - n : self.at]
        if kind in (_LIST, _SET):
            head = self.byte()
            size, element = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            return (element, [self.value(element) for _ in range(size)])
        if kind == _MAP:
            size = self.varint()
            if size == 0:
                return (0, 0, [])
            types = self.byte()
            k, v = types >> 4, types & 0x0F
            return (k, v, [(self.value(k), self.value(v)) for _ in range(size)])
        if kind == _STRUCT:
            return self.struct()
        raise ValueError(f"Thrift compact type {kind} is not known")

    def struct(self) -> Struct:
        fields: Struct = []
        last = 0
        while True:
            head = self.byte()
            if head == 0:
                return fields
            kind, delta = head & 0x0F, head >> 4
            field = last + delta if delta else self.zigzag()
            if kind in (_TRUE, _FALSE):
                fields.append((field, kind, kind == _TRUE))
            else:
                fields.append((field, kind, self.value(kind)))
            last = field


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


def _write(kind: int, value: Any) -> bytes:
    if kind in (_TRUE, _FALSE):
        return bytes([_TRUE if value else _FALSE])
    if kind == _BYTE:
        return struct.pack("b", value)
    if kind in (_I16, _I32, _I64):
        return _zigzag(value)
    if kind == _DOUBLE:
        return bytes(value)
    if kind == _BINARY:
        return _varint(len(value)) + bytes(value)
    if kind in (_LIST, _SET):
        element, items = value
        head = (
            bytes([len(items) << 4 | element])
            if len(items) < 15
            else bytes([0xF0 | element]) + _varint(len(items))
        )
        return head + b"".join(_write(element, item) for item in items)
    if kind == _MAP:
        k, v, pairs = value
        if not pairs:
            return b"\0"
        body = b"".join(_write(k, a) + _write(v, b) for a, b in pairs)
        return _varint(len(pairs)) + bytes([k << 4 | v]) + body
    if kind == _STRUCT:
        return _write_struct(value)
    raise ValueError(f"Thrift compact type {kind} is not known")


def _write_struct(fields: Struct) -> bytes:
    out = bytearray()
    last = 0
    for field, kind, value in fields:
        if kind in (_TRUE, _FALSE):
            kind = _TRUE if value else _FALSE
        delta = field - last
        if 0 < delta <= 15:
            out.append(delta << 4 | kind)
        else:
            out.append(kind)
            out += _zigzag(field)
        if kind not in (_TRUE, _FALSE):
            out += _write(kind, value)
        last = field
    out.append(0)
    return bytes(out)


def _annotated(element: Struct) -> bool:
    """Adds INTEGER(64, signed) to an INT64 schema element without a logical
    or converted type; True if it did."""
    fields = {field: value for field, _, value in element}
    if fields.get(1) != _INT64 or 6 in fields or 10 in fields:
        return False
    element.append((6, _I32, _CONVERTED_INT_64))
    integer: Struct = [(1, _BYTE, 64), (2, _TRUE, True)]
    element.append((10, _STRUCT, [(10, _STRUCT, integer)]))
    element.sort(key=lambda f: f[0])
    return True


def annotate_signed_int64(path: str | os.PathLike[str]) -> int:
    """Gives the INT64 columns of the Parquet file ``path`` the annotation
    INTEGER(64, signed) (converted type INT_64), rewriting its footer in
    place; returns how many columns it annotated."""
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(size - 8)
        tail = f.read(8)
        if tail[4:] != MAGIC:
            raise ValueError(f"path: {path} does not end with Parquet's magic")
        (length,) = struct.unpack("<I", tail[:4])
        start = size - 8 - length
        f.seek(start)
        meta = _Reader(f.read(length)).struct()
        annotated = 0
        for field, kind, value in meta:
            if field == 2 and kind == _LIST:
                annotated = sum(_annotated(element) for element in value[1])
        if annotated:
            footer = _write_struct(meta)
            f.seek(start)
            f.write(footer + struct.pack("<I", len(footer)) + MAGIC)
            f.truncate()
        return annotated
