"""cc-backend's checkpoint files built byte by byte, for tests.

Written from the layouts in cc-backend's ``pkg/metricstore``
(``walCheckpoint.go``, ``checkpoint.go``), with ``struct`` and ``zlib`` and
one value at a time, and sharing no code with ``metricstore.ccbackend``: the
tests check the reader and writer against the format, not against themselves.

A level is ``{"metrics": {name: (frequency, start, [values])}, "children":
{name: level}}``; a value of None is a missing sample (NaN in .bin, null in
.json).
"""

from __future__ import annotations

import itertools
import json
import math
import struct
import zlib
from pathlib import Path
from typing import Any

SNAPSHOT_MAGIC = 0xCC5B0001
WAL_FILE_MAGIC = 0xCC1DA701
WAL_RECORD_MAGIC = 0xCC1DA7A1

Level = dict[str, Any]


def level(
    metrics: dict[str, tuple[int, int, list[float | None]]] | None = None,
    children: dict[str, Level] | None = None,
) -> Level:
    return {"metrics": metrics or {}, "children": children or {}}


def _f32(value: float | None) -> bytes:
    return struct.pack("<f", math.nan if value is None else value)


def _name16(name: str) -> bytes:
    raw = name.encode()
    return struct.pack("<H", len(raw)) + raw


def _level_bytes(node: Level) -> bytes:
    out = struct.pack("<I", len(node["metrics"]))
    for name, (frequency, start, values) in node["metrics"].items():
        out += _name16(name) + struct.pack("<q", frequency) + struct.pack("<q", start)
        out += struct.pack("<I", len(values))
        for v in values:
            out += _f32(v)
    out += struct.pack("<I", len(node["children"]))
    for name, child in node["children"].items():
        out += _name16(name) + _level_bytes(child)
    return out


def snapshot(first: int, last: int, node: Level) -> bytes:
    """A ``<from>.bin``: u32 magic | i64 from | i64 to | Level."""
    return (
        struct.pack("<I", SNAPSHOT_MAGIC)
        + struct.pack("<q", first)
        + struct.pack("<q", last)
        + _level_bytes(node)
    )


def _json_level(node: Level, first: int, last: int) -> dict[str, Any]:
    return {
        "metrics": {
            name: {"frequency": f, "start": s, "data": list(values)}
            for name, (f, s, values) in node["metrics"].items()
        },
        "children": {n: _json_level(c, first, last) for n, c in node["children"].items()},
        "from": first,
        "to": last,
    }


def snapshot_json(first: int, last: int, node: Level) -> bytes:
    """A ``<from>.json`` (None values become null)."""
    return json.dumps(_json_level(node, first, last)).encode()


def payload(ts: int, metric: str, selectors: tuple[str, ...], value: float) -> bytes:
    out = struct.pack("<q", ts) + _name16(metric) + bytes([len(selectors)])
    for s in selectors:
        raw = s.encode()
        out += bytes([len(raw)]) + raw
    return out + _f32(value)


def record(ts: int, metric: str, selectors: tuple[str, ...], value: float) -> bytes:
    """One log record: u32 magic | u32 payload_len | payload | u32 CRC32(payload)."""
    body = payload(ts, metric, selectors, value)
    crc = zlib.crc32(body) & 0xFFFFFFFF
    return (
        struct.pack("<I", WAL_RECORD_MAGIC)
        + struct.pack("<I", len(body))
        + body
        + struct.pack("<I", crc)
    )


def wal(records: list[tuple[int, str, tuple[str, ...], float]]) -> bytes:
    """A ``current.wal``: the file magic, then the records in order."""
    return struct.pack("<I", WAL_FILE_MAGIC) + b"".join(record(*r) for r in records)


def record_offsets(records: list[tuple[int, str, tuple[str, ...], float]]) -> list[int]:
    """The byte offset of each record in ``wal(records)``, then the file size."""
    offsets = [4]
    for r in records:
        offsets.append(offsets[-1] + len(record(*r)))
    return offsets


def cluster_json(name: str, metrics: list[tuple[str, int, str]]) -> str:
    """A minimal ``cluster.json`` with (name, timestep, aggregation) entries."""
    return json.dumps(
        {
            "name": name,
            "metricConfig": [
                {"name": m, "timestep": t, "aggregation": a, "scope": "node", "unit": {"base": ""}}
                for m, t, a in metrics
            ],
            "subClusters": [],
        }
    )


def put(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def read_snapshot(data: bytes) -> tuple[int, int, Level]:
    """Reads a ``.bin`` one field at a time (to check what a writer wrote)."""
    at = 0

    def take(fmt: str) -> Any:
        nonlocal at
        (value,) = struct.unpack_from(fmt, data, at)
        at += struct.calcsize(fmt)
        return value

    def name() -> str:
        nonlocal at
        length = take("<H")
        at += length
        return data[at - length : at].decode()

    def read_level() -> Level:
        node = level()
        for _ in range(take("<I")):
            metric = name()
            frequency, start, count = take("<q"), take("<q"), take("<I")
            values = [take("<f") for _ in range(count)]
            node["metrics"][metric] = (frequency, start, [None if v != v else v for v in values])
        for _ in range(take("<I")):
            child = name()
            node["children"][child] = read_level()
        return node

    assert take("<I") == SNAPSHOT_MAGIC
    first, last = take("<q"), take("<q")
    node = read_level()
    assert at == len(data), f"{len(data) - at} bytes after the level tree"
    return first, last, node


def collector_blocks(
    first: int, f: int, values: list[float], checkpoints: list[int]
) -> list[tuple[int, list[float]] | None]:
    """What cc-backend's checkpoints hold of one series a collector samples
    at ``first + k * f`` (value ``values[k]``), each sample written when it
    is taken: per interval ``[checkpoints[j - 1], checkpoints[j])``, the
    block ``(start, data)`` its ``toCheckpointFile`` writes, or None where
    the series has no buffer yet.

    Written from cc-backend's ``newBuffer`` (the buffer starts at the first
    write minus ``f // 2``; a full buffer re-anchors at the sample that
    overflows, on the same grid for a steady collector) and ``buffer.read``
    (``from`` moves up to the first write; value ``i`` is the slot holding
    ``start + i * f``; reading stops where the written data ends).
    """
    half = f // 2
    blocks: list[tuple[int, list[float]] | None] = []
    for since, until in itertools.pairwise(checkpoints):
        written = sum(1 for k in range(len(values)) if first + k * f < until)
        if written == 0:
            blocks.append(None)
            continue
        start = max(since, first)
        data = []
        t = start
        while t < until:
            slot = (t - (first - half)) // f
            if slot >= written:
                break
            data.append(values[slot])
            t += f
        blocks.append((start, data))
    return blocks
