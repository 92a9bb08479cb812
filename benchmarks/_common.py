"""Helpers shared by the benchmarks: seeded data, resident memory, and the
disk's own figures (sequential write+fsync, one append+fdatasync per tick)
that the store is compared against."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

FREQUENCY = 10


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def rss_split() -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes: memory the process holds,
    and pages of the page cache it has mapped (which the kernel can take
    back under pressure, as they are clean copies of files)."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0]) * 1024
    return fields["RssAnon"], fields["RssFile"] + fields["RssShmem"]


def rss_of_files_under(directory: Path) -> int:
    """Resident bytes of the mappings of files under `directory` (the pages
    of a store's snapshot a reader has mapped), from /proc/self/smaps."""
    prefix, total, inside = str(directory.resolve()) + "/", 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):  # a mapping's first line
                fields = line.split(maxsplit=5)
                inside = len(fields) == 6 and fields[5].rstrip("\n").startswith(prefix)
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1]) * 1024
    return total


def drop_from_page_cache(path: Path) -> None:
    """Asks the kernel to drop the file `path`, or the files under it, from
    the page cache (written back first)."""
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def make_data(n_series: int, n_points: int, seed: int = 42) -> np.ndarray:
    return np.random.default_rng(seed).random((n_series, n_points), dtype=np.float32)


def fresh(base: Path, name: str) -> Path:
    path = base / name
    shutil.rmtree(path, ignore_errors=True)
    return path


def disk_write_fsync(base: Path, total: int) -> float:
    """Seconds to write `total` bytes sequentially in 4 MiB writes and fsync."""
    path = base / "raw.bin"
    block = os.urandom(4 << 20)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        written = 0
        while written < total:
            written += os.write(fd, block[: min(len(block), total - written)])
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - t0
    path.unlink()
    return seconds


def bare_ticks(base: Path, series: int, ticks: int, warmup: int = 0) -> float:
    """Seconds for `ticks` appends of a tick's worth of bytes, each followed
    by fdatasync: the floor for one durable commit per tick. `warmup` more
    go first, untimed."""
    path = base / "ticks.bin"
    payload = os.urandom(series * 8 + 40)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        for _ in range(warmup):
            os.write(fd, payload)
            os.fdatasync(fd)
        t0 = time.perf_counter()
        for _ in range(ticks):
            os.write(fd, payload)
            os.fdatasync(fd)
        seconds = time.perf_counter() - t0
    finally:
        os.close(fd)
    path.unlink()
    return seconds
