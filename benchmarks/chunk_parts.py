"""Where a store's snapshot spends its bytes, by part of the sealed-chunk
format (docs/format.md): residual bits, patches, gap maps, exceptions,
headers, the index. For work on the codec's density: it shows which part a
change could shrink, and by how much at most.

    python benchmarks/chunk_parts.py STORE_DIR [STORE_DIR ...]

It reads the newest snapshot of each directory on its own, from the format
as documented (snapshot format 2 and later, whose chunks blocks hold
encoded chunks back to back), so it also checks that document against
what the store writes: a chunk it cannot walk to its last byte stops it.
"""

from __future__ import annotations

import argparse
import struct
from collections import Counter
from pathlib import Path

BLOCK_HEADER = 12  # len u32, crc u32, kind u8, 3 zero bytes
KINDS = {1: "catalog block", 3: "end block", 5: "index block", 6: "directory block"}
CHUNKS = 4
SCHEMES = ("raw", "all-NaN", "constant", "packed")
BLOCK_VALUES = 128


class Cursor:
    """Reads a snapshot's little-endian fields from ``at`` on."""

    def __init__(self, data: bytes | bytearray, at: int = 0) -> None:
        self.data, self.at = data, at

    def take(self, n: int) -> bytes | bytearray:
        if self.at + n > len(self.data):
            raise ValueError(f"ends early at byte {self.at}")
        self.at += n
        return self.data[self.at - n : self.at]

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def varint(self) -> int:
        """A LEB128 varint (7 bits a byte, low bits first)."""
        value = shift = 0
        while True:
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value


def unpack(data: bytes, width: int, count: int) -> list[int]:
    bits = int.from_bytes(data, "little")
    mask = (1 << width) - 1
    return [(bits >> (i * width)) & mask for i in range(count)]


def packed_chunk(c: Cursor, n: int, parts: Counter, kinds: Counter) -> None:
    """One packed chunk after its header: adds each part's bytes to `parts`."""
    layout = c.u8()
    parts["layout, k, base"] += 1
    coder, delta = layout & 3, bool(layout & 4)
    coders = ("decimal", "reciprocal", "float bits")
    kinds[f"coder: {coders[coder]}, {'delta' if delta else 'frame of reference'}"] += 1
    m = n
    if layout & 8:  # gaps
        if not layout & 32:  # the gap NaN, unless canonical
            parts["gap NaN"] += len(c.take(4))
        at = c.at
        kinds["gaps: " + ("bitmap" if layout & 16 else "runs")] += 1
        if layout & 16:  # bitmap
            m = n - sum(bin(b).count("1") for b in c.take((n + 7) // 8))
        else:  # runs
            tail = struct.unpack("<H", c.take(2))[0]
            runs = c.varint()
            skip_width, len_width = c.u8(), c.u8()
            c.take((runs * skip_width + 7) // 8)
            lengths = unpack(c.take((runs * len_width + 7) // 8), len_width, runs)
            m = n - (n - tail) - sum(length + 1 for length in lengths)
        parts["gap map"] += c.at - at
    decimal = coder in (0, 1)
    parts["layout, k, base"] += len(c.take(1 + 4 if decimal else 4))
    at = c.at
    exceptions = c.varint() if decimal else 0
    patches = c.varint()
    parts["counts"] += c.at - at
    at = c.at
    for _ in range(2 * patches):
        c.varint()
    parts["patches"] += c.at - at
    kinds["values: patched"] += patches
    for first in range(0, m, BLOCK_VALUES):
        width = c.u8()
        parts["block widths"] += 1
        parts["residual bits"] += len(c.take(((min(BLOCK_VALUES, m - first)) * width + 7) // 8))
        if not delta:
            at = c.at
            c.varint()
            parts["block offsets"] += c.at - at
    parts["exceptions"] += len(c.take(6 * exceptions))
    kinds["values: exceptions"] += exceptions


def chunk(c: Cursor, parts: Counter, kinds: Counter) -> int:
    """One encoded chunk: its parts added up; returns its slot count."""
    version, scheme, n = struct.unpack("<BBH", c.take(4))
    if version != 1:
        raise ValueError(f"chunk version {version} at byte {c.at - 4}")
    parts["chunk headers"] += 4
    if scheme == 0:
        parts["raw chunks"] += len(c.take(4 * n))
    elif scheme == 2:
        parts["constant chunks"] += len(c.take(4))
    elif scheme == 3:
        packed_chunk(c, n, parts, kinds)
    elif scheme != 1:
        raise ValueError(f"unknown scheme {scheme} at byte {c.at - 3}")
    kinds["scheme: " + SCHEMES[scheme]] += 1
    return n


def snapshot_parts(path: Path) -> tuple[Counter, Counter, int]:
    data = path.read_bytes()
    if data[:8] != b"MSSNAPSH" or struct.unpack_from("<I", data, 8)[0] < 2:
        raise ValueError(f"{path}: not a snapshot of format 2 or later")
    parts, kinds, slots, at = Counter({"file header": 32}), Counter(), 0, 32
    while at < len(data):
        length, _, kind = struct.unpack_from("<IIB", data, at)
        parts["block headers"] += BLOCK_HEADER
        payload = data[at + BLOCK_HEADER : at + BLOCK_HEADER + length]
        if kind == CHUNKS:
            c = Cursor(payload)
            while c.at < len(payload):
                slots += chunk(c, parts, kinds)
        else:
            parts[KINDS.get(kind, f"kind {kind} block")] += length
        at += BLOCK_HEADER + length
    if sum(parts.values()) != len(data):
        raise ValueError(f"{path}: parts add up to {sum(parts.values()):,} of {len(data):,} bytes")
    return parts, kinds, slots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", nargs="+", type=Path)
    for store in parser.parse_args().stores:
        snapshots = sorted(store.glob("snapshot-*.snap")) or sorted(store.glob("*/snapshot-*.snap"))
        if not snapshots:
            raise SystemExit(f"{store}: no snapshot")
        parts, kinds, slots = snapshot_parts(snapshots[-1])
        total = sum(parts.values())
        chunks = sum(kinds["scheme: " + s] for s in SCHEMES)
        print(f"{snapshots[-1]}: {total:,} bytes, {chunks:,} chunks of {slots:,} slots")
        for name, n in parts.most_common():
            print(f"  {name:18} {n:>13,} {n / slots:8.4f} B/slot {n / chunks:9.1f} B/chunk")
        for name, n in sorted(kinds.items()):
            print(f"  {name:44} {n:>11,}")


if __name__ == "__main__":
    main()
