"""A `metricstore serve` process killed with SIGKILL while collectors post
to it loses no line it acknowledged with 200 (sync="interval": a 200 means
the lines are in the log), and every value after the restart is exact."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import numpy as np
from serve_client import Client, start_cli

import metricstore

THREADS = 4
HWTHREADS = 16
STEPS = 10  # timestamps per batch


def batch(thread: int, number: int) -> tuple[str, np.ndarray]:
    """The lines of one post and their values, [hwthread, step]."""
    values = np.empty((HWTHREADS, STEPS), dtype=np.float32)
    lines = []
    for step in range(STEPS):
        ts = 60 * (number * STEPS + step)
        for hw in range(HWTHREADS):
            value = thread * 1_000_000 + number * 1_000 + step * HWTHREADS + hw + 0.25
            values[hw, step] = value
            lines.append(
                f"flops_any,hostname=h{thread},type=hwthread,type-id={hw} value={value!r} {ts}\n"
            )
    return "".join(lines), values


def test_every_acknowledged_line_survives_kill_9(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "main": {"addr": "127.0.0.1:0"},
                "metrics": {"flops_any": {"frequency": 60, "aggregation": "sum"}},
                "metric-store": {"checkpoints": {"directory": "./store"}},
            }
        )
    )
    process, url = start_cli(config, "--sync", "interval")
    acknowledged: list[tuple[int, int]] = []
    lock = threading.Lock()

    def post(thread: int) -> None:
        client = Client(url, timeout=30)
        number = 0
        while True:
            text, _ = batch(thread, number)
            try:
                status, _ = client.write(text, cluster="c")
            except OSError:
                return
            if status == 200:
                with lock:
                    acknowledged.append((thread, number))
            number += 1

    workers = [threading.Thread(target=post, args=(t,)) for t in range(THREADS)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            if len(acknowledged) >= 40:
                break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    for worker in workers:
        worker.join(timeout=60)
    assert len(acknowledged) >= 40

    with metricstore.open(tmp_path / "store") as store:
        for thread, number in acknowledged:
            _, values = batch(thread, number)
            rows = store.read_many(
                [("flops_any", f"c/h{thread}/hwthread{hw}") for hw in range(HWTHREADS)],
                60 * number * STEPS,
                60 * (number + 1) * STEPS,
            )
            np.testing.assert_array_equal(rows.values, values)
        # Whatever else is stored (posts cut short by the kill) holds the
        # values that were sent, sample for sample.
        for handle, _, path in store.list_series():
            thread, hw = int(path[1][1:]), int(path[2][len("hwthread") :])
            got = store.read(handle)
            slot = got.ticks // 60
            expected = (
                thread * 1_000_000
                + (slot // STEPS) * 1_000
                + (slot % STEPS) * HWTHREADS
                + hw
                + 0.25
            ).astype(np.float32)
            present = ~np.isnan(got.values)
            np.testing.assert_array_equal(got.values[present], expected[present])
