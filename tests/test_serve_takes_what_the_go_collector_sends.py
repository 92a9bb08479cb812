"""A collector replica in Go (tests/interop/ccsink.go: cc-metric-collector's
encoder and HTTP sink, standard library only) posts to `metricstore serve`
with a Bearer token; every value reads back exactly. Needs Debian's
golang-go (.ci/run installs it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import metricstore

GO = shutil.which("go")
pytestmark = pytest.mark.skipif(GO is None, reason="go (Debian golang-go) is not installed")
SOURCE = Path(__file__).parent / "interop" / "ccsink.go"


def expected(metric: int, node: int, thread: int, tick: int) -> float:
    """ccsink.go's value(), as the store keeps it (float32)."""
    if metric == 0:
        v = node * 1000 + thread + tick / 8
    elif metric == 1:
        v = node * 100000 + thread * 100 + tick
    else:
        v = float(node * 4096 + thread * 16 + tick) * 1024
    return float(np.float32(v))


def test_every_value_the_go_collector_posts_reads_back_exactly(tmp_path: Path) -> None:
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    assert GO is not None
    binary = tmp_path / "ccsink"
    env = {**os.environ, "GOCACHE": str(tmp_path / "gocache"), "GO111MODULE": "off",
           "GOPATH": str(tmp_path / "gopath"), "CGO_ENABLED": "0"}  # fmt: skip
    subprocess.run([GO, "build", "-o", str(binary), str(SOURCE)], check=True, env=env,
                   timeout=600)  # fmt: skip

    seed = bytes(range(32))
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    key = base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    store = metricstore.open(tmp_path / "store", sync="interval")
    for name in ("cpu_load", "instructions", "mem_bw"):
        store.define_metric(name, 60, "sum")
    nodes, threads, ticks = 4, 16, 10
    with metricstore.serve(store, "127.0.0.1:0", jwt_public_key=key, own_store=True) as server:
        done = subprocess.run(
            [str(binary), "-url", f"{server.url}/api/write?cluster=fritz", "-seed", seed.hex(),
             "-nodes", str(nodes), "-threads", str(threads), "-ticks", str(ticks)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        stats = server.stats()
    assert json.loads(done.stdout) == {"posts": nodes * ticks,
                                       "lines": nodes * ticks * (threads * 3 + 1)}  # fmt: skip
    assert stats["lines_written"] == nodes * ticks * threads * 3
    assert stats["lines_skipped"] == nodes * ticks

    with metricstore.open(tmp_path / "store", readonly=True) as again:
        for m, name in enumerate(("cpu_load", "instructions", "mem_bw")):
            for node in range(nodes):
                rows = again.read_many(
                    [(name, f"fritz/n{node:03d}/hwthread{t}") for t in range(threads)],
                    6000,
                    6000 + 60 * ticks,
                )
                want = [[expected(m, node, t, k) for k in range(ticks)] for t in range(threads)]
                assert rows.values.tolist() == want
