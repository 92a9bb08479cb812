"""`metricstore serve` refuses bad input with a clear status and message,
never crashes on it, times out idle and slow clients, and on SIGTERM or
SIGINT finishes, closes the store and keeps every acknowledged line."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from serve_client import Client, start_cli

import metricstore


def new_store() -> metricstore.Store:
    store = metricstore.Store()
    store.define_metric("cpu_load", 60, "avg")
    return store


def raw_exchange(address: tuple[str, int], data: bytes, timeout: float = 30.0) -> bytes:
    """Sends ``data`` on a fresh connection and reads until the server
    closes it (or the first full reply if it keeps it open)."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk
            final = received
            while final.startswith(b"HTTP/1.1 100 ") and b"\r\n\r\n" in final:
                final = final.partition(b"\r\n\r\n")[2]  # an interim reply
            head, sep, rest = final.partition(b"\r\n\r\n")
            if sep:
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-length:")), 0,
                )  # fmt: skip
                if len(rest) >= length:
                    return received


def test_an_oversized_body_is_refused_before_it_is_sent() -> None:
    with metricstore.serve(new_store(), "127.0.0.1:0", max_body_bytes=1000) as server:
        # Only the headers go out: a 413 proves the server did not wait for the body.
        reply = raw_exchange(
            server.address,
            b"POST /api/write?cluster=c HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n",
        )
        assert reply.startswith(b"HTTP/1.1 413 ")
        assert b"Connection: close" in reply
        assert b"this server takes at most 1000" in reply
        reply = raw_exchange(
            server.address,
            b"POST /api/write HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
            b"Expect: 100-continue\r\n\r\n",
        )
        assert reply.startswith(b"HTTP/1.1 413 ")
        assert b"100 Continue" not in reply
        # Within the limit, Expect: 100-continue goes on as usual.
        body = b"cpu_load,hostname=h value=1 6000\n"
        reply = raw_exchange(
            server.address,
            b"POST /api/write?cluster=c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body,
        )
        assert b"HTTP/1.1 100 Continue" in reply and b"HTTP/1.1 200 OK" in reply
        assert server.store.read(("cpu_load", "c/h"), 6000, 6060).values.tolist() == [1.0]


def test_malformed_requests_get_4xx_and_the_server_keeps_serving() -> None:
    with metricstore.serve(new_store(), "127.0.0.1:0") as server:
        client = Client(server.url)
        cases = [
            ("GET", "/api/query", b"{not json", 400, "query: the body is not valid JSON"),
            ("GET", "/api/query", b"[1,2]", 400, "query: the body must be a JSON object"),
            ("GET", "/api/query", b'{"from":"yesterday"}', 400, 'query: "from" is "yesterday"'),
            ("GET", "/api/query", b'{"from":10,"to":5}', 400, 'query: "from" (10) is after'),
            ("GET", "/api/query", b'{"queries":[{"metric":"cpu_load","type-ids":[1]}]}', 400,
             'query: queries[0]: "type-ids" must be a list of strings'),
            ("GET", "/api/query", b'{"for-all-nodes":["cpu_load"]}', 400,
             '"for-all-nodes" needs a "cluster"'),
            ("POST", "/api/write?cluster=a/b", b"cpu_load,hostname=h value=1 1\n", 400,
             "default_cluster"),
            ("GET", "/api/healthcheck", b"\xff\xfe", 400, "not valid JSON"),
        ]  # fmt: skip
        for method, path, body, status, message in cases:
            got, reply, headers = client.request(method, path, body)
            assert got == status, (path, body, reply)
            assert message in json.loads(reply)["error"]
            assert headers["content-type"] == "application/json"
        assert client.request("GET", "/api/nothing")[:2] == (404, b"404 page not found\n")
        got, _, headers = client.request("GET", "/api/write")
        assert (got, headers["allow"]) == (405, "POST")
        reply = raw_exchange(
            server.address,
            b"POST /api/write HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
        )
        assert reply.startswith(b"HTTP/1.1 411 ")
        garbage = (
            b"\x00\x01\x02 nonsense\r\n\r\n",
            b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
            b"POST /api/write HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        )
        for request, status in zip(garbage, (b" 400 ", b" 414 ", b" 400 "), strict=True):
            reply = raw_exchange(server.address, request)
            assert status in reply.split(b"\r\n")[0], reply[:100]
        # Still serving, and nothing stored was touched.
        assert client.write("cpu_load,hostname=h value=2 6000\n", cluster="c") == (200, b"")
        assert server.store.read(("cpu_load", "c/h"), 6000, 6060).values.tolist() == [2.0]


def test_header_blocks_are_read_strictly_and_any_case_of_a_name_works() -> None:
    store = new_store()
    with metricstore.serve(store, "127.0.0.1:0") as server:
        line = b"cpu_load,hostname=h value=3 6000\n"
        bad = (
            # Two Content-Lengths that disagree: which body is meant is unknowable.
            (b"Content-Length: %d\r\ncontent-length: 5\r\n" % len(line), b" 400 "),
            # A folded header line (obsolete; RFC 9112 lets a server refuse it).
            (b"X-Note: a\r\n  b\r\nContent-Length: %d\r\n" % len(line), b" 400 "),
            (b"No colon here\r\nContent-Length: %d\r\n" % len(line), b" 400 "),
            (b"Content-Length : %d\r\n" % len(line), b" 400 "),
            (b"X-Long: " + b"a" * 70000 + b"\r\n", b" 431 "),
            (b"".join(b"X-%d: a\r\n" % i for i in range(101)), b" 431 "),
        )
        for headers, status in bad:
            request = b"POST /api/write?cluster=c HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
            reply = raw_exchange(server.address, request + line)
            assert status in reply.split(b"\r\n")[0], (headers[:60], reply[:200])
        assert store.stats()["samples"] == 0
        # Header names in any case, and HTTP/1.0 (whose connection closes after the reply).
        reply = raw_exchange(
            server.address,
            b"POST /api/write?cluster=c HTTP/1.0\r\nCONTENT-LENGTH: %d\r\n\r\n" % len(line) + line,
        )
        assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
        assert store.read(("cpu_load", "c/h"), 6000, 6060).values.tolist() == [3.0]


def test_idle_and_slow_clients_time_out() -> None:
    with metricstore.serve(
        new_store(), "127.0.0.1:0", idle_timeout=0.5, request_timeout=0.5
    ) as server:
        with socket.create_connection(server.address, timeout=30) as idle:
            # An idle connection is closed by the server: recv sees the end.
            assert idle.recv(100) == b""
        with socket.create_connection(server.address, timeout=30) as slow:
            slow.sendall(b"POST /api/write HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            reply = b""
            while chunk := slow.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 408 ")
        assert server.store.stats()["samples"] == 0


def test_close_waits_for_writes_then_flushes_or_closes_the_store(tmp_path: Path) -> None:
    store = metricstore.open(tmp_path / "s", sync="none")
    store.define_metric("cpu_load", 60, "avg")
    server = metricstore.serve(store, "127.0.0.1:0", own_store=True)
    client = Client(server.url)
    assert client.write("cpu_load,hostname=h value=3.5 6000\n", cluster="c") == (200, b"")
    server.close()
    server.close()
    assert store.closed
    with pytest.raises(OSError):
        client.write("cpu_load,hostname=h value=1 6060\n", cluster="c")
    with metricstore.open(tmp_path / "s") as again:
        assert again.read(("cpu_load", "c/h"), 6000, 6120).values.tolist()[0] == 3.5


def config_file(tmp_path: Path, **main: object) -> Path:
    config = {
        "main": {"addr": "127.0.0.1:0", **main},
        "metrics": {
            "cpu_load": {"frequency": 60, "aggregation": "avg"},
            "mem_used": {"frequency": 60, "aggregation": None},
        },
        "metric-store": {
            "memory-cap": 0,
            "checkpoints": {"file-format": "wal", "directory": "./store"},
        },
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_cli_and_closes_the_store(tmp_path: Path, sig: int) -> None:
    process, url = start_cli(config_file(tmp_path), "--sync", "none")
    client = Client(url)
    lines = "".join(f"cpu_load,hostname=h{i % 3} value={i}.25 {6000 + 60 * i}\n" for i in range(50))
    assert client.write(lines, cluster="fritz") == (200, b"")
    assert client.write("mem_used,hostname=h0 value=1 6000\n", cluster="fritz") == (200, b"")
    process.send_signal(sig)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "stopped; 51 lines written" in out
    # The store was closed (a final snapshot, the lock released): it opens for writing.
    with metricstore.open(tmp_path / "store") as store:
        assert store.recovery is not None and store.recovery.records == 0
        for i in range(50):
            got = store.read(("cpu_load", f"fritz/h{i % 3}"), 6000 + 60 * i, 6060 + 60 * i)
            assert got.values.tolist() == [i + 0.25]
        assert [m.name for m in store.metrics] == ["cpu_load", "mem_used"]


def test_the_cli_hides_what_start_up_made_from_the_collector(tmp_path: Path) -> None:
    # The server's full collections scanned every module and object made at
    # start-up (15-17 ms each in benchmarks/serve.py); the CLI freezes them
    # once it listens. A thread in the CLI's process waits for the freeze,
    # reports how many objects it covers, and stops the server.
    watcher = (
        "import gc, os, signal, sys, threading, time\n"
        "from metricstore.__main__ import main\n"
        "def watch():\n"
        "    while gc.get_freeze_count() == 0:\n"
        "        time.sleep(0.02)\n"
        "    print('frozen', gc.get_freeze_count(), flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "threading.Thread(target=watch, daemon=True).start()\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", watcher, "serve", "--config", str(config_file(tmp_path))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("listening on ") or lines[1].startswith("listening on ")
    frozen = next(int(line.split()[1]) for line in lines if line.startswith("frozen "))
    assert frozen > 10_000  # the modules imported: numpy, asyncio, metricstore...
    assert lines[-1] == "stopped; 0 lines written"


def test_the_cli_reports_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text('{"metrics": {"x": {"frequency": "1m"}}}')
    done = subprocess.run(
        [sys.executable, "-m", "metricstore", "serve", "--config", str(bad)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "metric \"x\" has frequency '1m'" in done.stderr
    assert not os.path.exists(tmp_path / "store")


def test_random_requests_never_break_the_server() -> None:
    rng = random.Random(20)
    pieces = (
        b'{ } [ ] "queries" "from" : , 1e999 -1 null "x" \xff cpu_load ,hostname=h value= \n ='
    ).split(b" ")
    paths = [
        "/api/write?cluster=c",
        "/api/query",
        "/api/free?to=1",
        "/api/healthcheck",
        "/api/debug?selector=c:h",
        "/api/write?cluster=%00",
        "/api/query?version=v2",
    ]
    store = new_store()
    with metricstore.serve(store, "127.0.0.1:0", max_body_bytes=4096) as server:
        client = Client(server.url)
        for _ in range(300):
            body = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 40)))
            method = rng.choice(["GET", "POST"])
            status, reply, _ = client.request(method, rng.choice(paths), body)
            assert status in (200, 400, 405, 413), (status, reply)
            assert status == 200 or reply
        assert client.write("cpu_load,hostname=h value=8 6000\n", cluster="c") == (200, b"")
        status, body = client.query(
            {"cluster": "c", "from": 6000, "to": 6060,
             "queries": [{"metric": "cpu_load", "host": "h"}]}
        )  # fmt: skip
    assert status == 200
    assert json.loads(body)["results"][0][0]["data"] == [8.0]


@pytest.mark.parametrize("sync", ["always", "interval", "none"])
def test_every_acknowledged_write_of_many_connections_reopens_exactly(
    tmp_path: Path, sync: str
) -> None:
    # With sync="always" a write waits for the disk: writes then run in the
    # server's pool (where concurrent ones share a sync), not on its loop.
    store = metricstore.open(tmp_path / "s", sync=sync)
    store.define_metric("cpu_load", 60, "avg")
    assert store.stats()["sync"] == sync
    threads, per_thread = 6, 15
    with metricstore.serve(store, "127.0.0.1:0") as server:
        assert server._http.inline_writes is (sync != "always")

        def post(t: int) -> list[int]:
            client = Client(server.url)
            try:
                return [
                    client.write(f"cpu_load,hostname=h{t} value={i}.25 {60 * i}\n", "c")[0]
                    for i in range(per_thread)
                ]
            finally:
                client.close()

        with ThreadPoolExecutor(threads) as pool:
            statuses = [s for batch in pool.map(post, range(threads)) for s in batch]
    assert statuses == [200] * (threads * per_thread)
    store.close()
    with metricstore.open(tmp_path / "s", readonly=True) as reopened:
        for t in range(threads):
            got = reopened.read(("cpu_load", f"c/h{t}"), 0, 60 * per_thread).values
            assert got.tolist() == [i + 0.25 for i in range(per_thread)]


def test_stats_name_the_sync_mode_and_none_without_a_log(tmp_path: Path) -> None:
    assert metricstore.Store().stats()["sync"] is None
    with metricstore.open(tmp_path / "s", sync="interval") as store:
        assert store.stats()["sync"] == "interval"
    with metricstore.open(tmp_path / "s", readonly=True) as reader:
        assert reader.stats()["sync"] is None
