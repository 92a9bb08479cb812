"""`POST /api/free` is a logged op: after a 200 and a SIGKILL of the server,
the restarted store still has the freed data gone, and every other sample
(of other hosts, and of the freed host from `to` on) exact."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
from serve_client import Client, start_cli

import metricstore

HOSTS = 3
HWTHREADS = 4
STEPS = 40  # samples per series, 60 s apart
TO = 60 * 25  # the free keeps steps 25 and later


def value(host: int, hw: int, step: int) -> float:
    return host * 10_000 + hw * 100 + step + 0.5


def test_a_free_acknowledged_before_kill_9_stays_done(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "main": {"addr": "127.0.0.1:0"},
                "metrics": {
                    "flops_any": {"frequency": 60, "aggregation": "sum"},
                    "cpu_load": {"frequency": 60, "aggregation": "avg"},
                },
                "metric-store": {"checkpoints": {"directory": "./store"}},
            }
        )
    )
    process, url = start_cli(config, "--sync", "interval")
    try:
        client = Client(url, timeout=60)
        lines = [
            f"flops_any,hostname=h{host},type=hwthread,type-id={hw} "
            f"value={value(host, hw, step)!r} {60 * step}\n"
            for host in range(HOSTS)
            for hw in range(HWTHREADS)
            for step in range(STEPS)
        ] + [
            f"cpu_load,hostname=h{host} value={value(host, 99, step)!r} {60 * step}\n"
            for host in range(HOSTS)
            for step in range(STEPS)
        ]
        assert client.write("".join(lines), cluster="c") == (200, b"")
        status, body, _ = client.request("POST", f"/api/free?to={TO}", b'[["c","h1"]]')
        assert (status, body) == (200, b"buffers freed: %d\n" % (HWTHREADS + 1))
        client.close()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)

    steps = np.arange(STEPS)
    with metricstore.open(tmp_path / "store") as store:
        assert store.recovery is not None and store.recovery.records > 0
        for host in range(HOSTS):
            for metric, hw, path in [("cpu_load", 99, f"c/h{host}")] + [
                ("flops_any", hw, f"c/h{host}/hwthread{hw}") for hw in range(HWTHREADS)
            ]:
                expected = value(host, hw, steps).astype(np.float32)
                if host == 1:
                    expected[: TO // 60] = np.nan
                got = store.read((metric, path), 0, 60 * STEPS).values
                np.testing.assert_array_equal(got, expected, err_msg=f"{metric} {path}")
