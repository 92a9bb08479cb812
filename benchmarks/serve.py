"""The network front door (issue 20): `python -m metricstore serve` in its
own process, loaded over loopback by keep-alive clients in this one, with
sync="interval". Both share the machine's cores, as they would on a
2-core test box; the client sends prebuilt requests from one asyncio loop
so that it costs as little as it can.

Targets (issue 20):
- ingest >= 1 M lines/s with 1,000-line bodies over 64 connections, p99
  of a POST under 25 ms (at 1 M lines/s offered: on a fresh store, on the
  store of 464,000 series the other phases make, and once more with a
  checkpoint of that store due inside the phase);
- ingest >= 3 M lines/s with 100,000-line bodies;
- >= 5,000 requests/s with 10-line bodies;
- 1,000 idle keep-alive connections held with < 200 MB extra memory;
- a cc-backend job view (4 hosts x 128 hwthreads x 10 metrics x 24 h at
  60 s: 7.4 M floats) answered in < 1 s;
- JSON float encoding >= 100 M floats/s on one core;
- NATS: >= 500 k lines/s from one subject (when nats-server is installed;
  the server runs in this process for it, the publisher is one socket).

    python benchmarks/serve.py                # 5 s per ingest phase
    python benchmarks/serve.py --seconds 2    # quick run
    python benchmarks/serve.py --only json    # JSON floats alone
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import metricstore
from metricstore import _core

METRICS = [f"m{i}" for i in range(10)]
FREQUENCY = 60
T0 = 1_700_000_000 // 3600 * 3600


def config(path: Path) -> None:
    path.write_text(
        json.dumps(
            {
                "main": {"addr": "127.0.0.1:0"},
                "metrics": {m: {"frequency": FREQUENCY, "aggregation": "avg"} for m in METRICS},
                "metric-store": {"checkpoints": {"directory": "./store"}},
            }
        )
    )


def start_server(base: Path) -> tuple[subprocess.Popen[str], tuple[str, int]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "metricstore", "serve", "--config", str(base / "config.json"),
         "--sync", "interval", "--log-level", "WARNING"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        raise SystemExit(f"the server did not start: {line!r}")
    host, port = line.split()[-1].rsplit("//", 1)[1].rsplit(":", 1)
    return process, (host, int(port))


def stop_server(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=300)


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def body(conn: int, number: int, lines: int) -> bytes:
    """``lines`` lines of one collector (host ``conn``) for the tick ``number``."""
    ts = T0 + FREQUENCY * number
    per_metric = max(1, lines // len(METRICS))
    out = []
    for metric in METRICS:
        for hw in range(per_metric):
            if len(out) == lines:
                break
            value = (conn * 7 + hw * 3 + number) % 1000 / 8
            out.append(
                f"{metric},hostname=n{conn:05d},type=hwthread,type-id={hw} value={value} {ts}\n"
            )
    return "".join(out).encode()


def request(data: bytes) -> bytes:
    return (
        b"POST /api/write?cluster=bench HTTP/1.1\r\nHost: bench\r\n"
        b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(data)
    ) + data


async def post_loop(
    address: tuple[str, int],
    requests: list[bytes],
    until: float,
    latencies: list[float],
    at_least: int = 0,
    period: float = 0.0,
) -> int:
    """Posts ``requests`` in turn until ``until`` (at least ``at_least``),
    one as soon as the last is answered, or one every ``period`` s."""
    reader, writer = await asyncio.open_connection(*address)
    done = 0
    due = time.perf_counter() + period * (hash(id(writer)) % 1000) / 1000
    while done < at_least or time.perf_counter() < until:
        if period:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            due += period
        sent = time.perf_counter()
        writer.write(requests[done % len(requests)])
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 "):
            raise SystemExit(f"write refused: {head[:200]!r}")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        if length:
            await reader.readexactly(length)
        latencies.append(time.perf_counter() - sent)
        done += 1
    writer.close()
    return done


def ingest(
    address: tuple[str, int],
    pid: int,
    connections: int,
    lines: int,
    seconds: float,
    first: int,
    rate: float = 0.0,
) -> dict[str, float]:
    """Posts ``lines``-line bodies on ``connections`` connections for
    ``seconds``, as fast as answered or at ``rate`` lines/s in all;
    lines/s, requests/s, p50/p99 latency, server CPU use."""
    period = connections * lines / rate if rate else 0.0
    bodies = 4
    prepared = [
        [request(body(first + c, n, lines)) for n in range(bodies)] for c in range(connections)
    ]
    latencies: list[float] = []
    timing: dict[str, float] = {}

    async def run() -> int:
        # One untimed post per connection creates the series.
        await asyncio.gather(*(post_loop(address, p[:1], 0.0, [], at_least=1) for p in prepared))
        cpu0, began = cpu_seconds(pid), time.perf_counter()
        until = began + seconds
        counts = await asyncio.gather(
            *(post_loop(address, p, until, latencies, period=period) for p in prepared)
        )
        timing["elapsed"] = time.perf_counter() - began
        timing["cpu"] = cpu_seconds(pid) - cpu0
        return sum(counts)

    total = asyncio.run(run())
    elapsed = timing["elapsed"]
    return {
        "requests_s": total / elapsed,
        "lines_s": total * lines / elapsed,
        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "server_cores": timing["cpu"] / elapsed,
    }


def idle_connections(address: tuple[str, int], pid: int, count: int) -> tuple[int, int]:
    """Server RSS growth with ``count`` idle keep-alive connections, each
    having made one request; and how many the server still holds."""
    before = rss(pid)
    sockets = []
    small = request(body(99_999, 0, 1))
    for _ in range(count):
        s = socket.create_connection(address)
        s.sendall(small)
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += s.recv(4096)
        sockets.append(s)
    time.sleep(1.0)
    grown = rss(pid) - before
    held = 0
    for s in sockets:
        s.setblocking(False)
        try:
            held += s.recv(1) != b""
        except BlockingIOError:
            held += 1
        s.close()
    return grown, held


def load_job(directory: Path, hours: int) -> None:
    """4 hosts x 128 hwthreads x 10 metrics, ``hours`` at 60 s."""
    points = hours * 3600 // FREQUENCY
    rng = np.random.default_rng(3)
    with metricstore.open(directory) as store:
        for m in METRICS:
            store.define_metric(m, FREQUENCY, "avg")
        for host in range(4):
            for m in METRICS:
                values = (rng.random((128, points), dtype=np.float32) * 1000).astype(np.float32)
                for hw in range(128):
                    store.write((m, ("bench", f"job{host}", f"hwthread{hw}")), T0, values[hw])


def job_view(address: tuple[str, int], hours: int) -> tuple[float, int]:
    """Seconds for the query cc-backend sends for a job view (one request,
    one query per host and metric with the 128 hwthread ids), and the
    answer's size."""
    queries = [
        {"metric": m, "host": f"job{h}", "type": "hwthread",
         "type-ids": [str(i) for i in range(128)], "resolution": FREQUENCY, "aggreg": False}
        for h in range(4) for m in METRICS
    ]  # fmt: skip
    payload = json.dumps(
        {"cluster": "bench", "from": T0, "to": T0 + hours * 3600, "queries": queries,
         "with-stats": True, "with-data": True}
    ).encode()  # fmt: skip
    head = b"GET /api/query?version=v2 HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n" % len(
        payload
    )
    best = float("inf")
    size = 0
    for _ in range(3):
        with socket.create_connection(address) as s:
            began = time.perf_counter()
            s.sendall(head + payload)
            reply = bytearray()
            while b"\r\n\r\n" not in reply:
                reply += s.recv(1 << 20)
            top, _, first = bytes(reply).partition(b"\r\n\r\n")
            length = int(top.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            rest = bytearray(first)
            while len(rest) < length:
                rest += s.recv(1 << 20)
            best = min(best, time.perf_counter() - began)
            size = len(rest)
    answer = json.loads(rest)
    floats = sum(len(r["data"]) for rs in answer["results"] for r in rs)
    assert floats == 4 * 10 * 128 * hours * 3600 // FREQUENCY, floats
    return best, size


def json_rate() -> tuple[float, float]:
    """Floats/s of _core.json_float_rows on one core (7.4 M floats), and
    of Python's own formatting as the peer (a 200,000-float sample)."""
    values = (np.random.default_rng(5).random((5120, 1440), dtype=np.float32) * 1000).astype(
        np.float32
    )
    values[:, ::97] = np.nan
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        _core.json_float_rows(values)
        best = min(best, time.perf_counter() - began)
    sample = values.ravel()[:200_000].tolist()
    began = time.perf_counter()
    "[" + ",".join("null" if v != v else f"{v:.3f}" for v in sample) + "]"
    python = len(sample) / (time.perf_counter() - began)
    return values.size / best, python


def print_json_rate() -> None:
    rate, python = json_rate()
    print(f"JSON floats: {rate / 1e6:.0f} M floats/s on one core; Python's f-strings "
          f"{python / 1e6:.1f} M/s ({rate / python:.0f}x) "
          f"(target 100 M/s: {verdict(rate >= 100e6)})")  # fmt: skip


def nats_rate(messages: int = 400, lines: int = 1_000) -> float | None:
    """Lines/s taken from one NATS subject: ``messages`` batches published
    at once, timed until the subscriber has written them all."""
    server_binary = shutil.which("nats-server")
    if server_binary is None:
        return None
    from metricstore.server import NatsSubscription, ServeConfig

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nats = subprocess.Popen(
        [server_binary, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        store = metricstore.Store()
        for m in METRICS:
            store.define_metric(m, FREQUENCY, "avg")
        settings = ServeConfig(
            nats_address=f"nats://127.0.0.1:{port}",
            nats_subscriptions=(NatsSubscription("bench", "bench"),),
        )

        def wire(numbers: range) -> bytes:
            payloads = [body(n % 64, n, lines) for n in numbers]
            return b"".join(b"PUB bench %d\r\n%s\r\n" % (len(p), p) for p in payloads)

        warm, timed = wire(range(64)), wire(range(64, 64 + messages))
        with metricstore.serve(store, "127.0.0.1:0", nats=settings) as server:
            subscriber = server.nats
            assert subscriber is not None and subscriber.wait_connected(30)
            with socket.create_connection(("127.0.0.1", port)) as pub:
                pub.makefile("rb").readline()
                pub.sendall(b'CONNECT {"verbose":false}\r\n' + warm)
                # The first 64 messages create the series, untimed.
                while subscriber.counters.messages < 64:
                    time.sleep(0.001)
                began = time.perf_counter()
                pub.sendall(timed)
                while subscriber.counters.messages < 64 + messages:
                    time.sleep(0.001)
                elapsed = time.perf_counter() - began
        return messages * lines / elapsed
    finally:
        nats.kill()
        nats.wait()


def log_since_snapshot(store: Path) -> int:
    """Bytes of log after the newest snapshot: the server checkpoints when
    they pass 512 MiB (the store's default checkpoint_log_bytes)."""
    snapshots = [
        int(p.name[len("snapshot-") : -len(".snap")]) for p in store.glob("snapshot-*.snap")
    ]
    newest = max(snapshots, default=0)
    return sum(
        p.stat().st_size
        for p in store.glob("wal-*.log")
        if int(p.name[len("wal-") : -len(".log")]) > newest
    )


def to_the_brink(address: tuple[str, int], pid: int, store: Path, margin: int) -> None:
    """Posts until a checkpoint is at most ``margin`` bytes of log away, so
    that the next phase (which logs more than that) contains one."""
    for _ in range(200):
        due = 512 * 2**20 - log_since_snapshot(store)
        if 0 < due <= margin:
            return
        if due <= 0:  # a checkpoint is due or under way: let it finish
            time.sleep(1.0)
            continue
        ingest(address, pid, 16, 1_000, min(1.0, due / 100e6), 400)


def paced(address: tuple[str, int], pid: int, seconds: float, where: str, store: Path) -> None:
    """The p99 target's load: 1 M lines/s offered in 1,000-line bodies,
    spread evenly over 64 connections. Also says how many checkpoints of
    the server's store (snapshot files) finished meanwhile."""
    before = set(store.glob("snapshot-*.snap"))
    r = ingest(address, pid, 64, 1_000, seconds, 300, rate=1e6)
    checkpoints = len(set(store.glob("snapshot-*.snap")) - before)
    # A checkpoint writes its snapshot under a temporary name until done.
    under_way = "one" if any(store.glob("snapshot-*.snap.tmp")) else "none"
    print(
        f"ingest 1,000-line bodies, 64 connections, offered 1 M lines/s, on {where}: "
        f"{r['lines_s'] / 1e6:.2f} M lines/s, p50 {r['p50_ms']:.1f} ms, "
        f"p99 {r['p99_ms']:.1f} ms, server {r['server_cores']:.2f} cores, "
        f"{checkpoints} checkpoint(s) finished during it, {under_way} under way at its end "
        f"(p99 < 25 ms: {verdict(r['p99_ms'] < 25)})"
    )


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per ingest phase")
    parser.add_argument("--hours", type=int, default=24, help="job view length")
    parser.add_argument(
        "--only", choices=["json"], help="measure only this (json: JSON float encoding)"
    )
    args = parser.parse_args()
    if args.only == "json":
        print_json_rate()
        return
    base = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    try:
        config(base / "config.json")
        load_job(base / "store", args.hours)
        process, address = start_server(base)
        try:
            print(f"server pid {process.pid} on {address[0]}:{address[1]}, {os.cpu_count()} cores")
            seconds, size = job_view(address, args.hours)
            floats = 4 * 10 * 128 * args.hours * 3600 // FREQUENCY
            print(f"job view: {floats / 1e6:.2f} M floats, {size / 1e6:.1f} MB JSON "
                  f"in {seconds:.3f} s (target < 1 s: {verdict(seconds < 1)})")  # fmt: skip
            paced(address, process.pid, args.seconds, "a fresh store", base / "store")
            for label, connections, lines, target, key, first in (
                ("1,000-line bodies, 64 connections", 64, 1_000, 1e6, "lines_s", 0),
                ("100,000-line bodies, 4 connections", 4, 100_000, 3e6, "lines_s", 100),
                ("10-line bodies, 64 connections", 64, 10, 5_000, "requests_s", 200),
            ):
                r = ingest(address, process.pid, connections, lines, args.seconds, first)
                print(
                    f"ingest {label}: {r['lines_s'] / 1e6:.2f} M lines/s, "
                    f"{r['requests_s']:,.0f} requests/s, p50 {r['p50_ms']:.1f} ms, "
                    f"p99 {r['p99_ms']:.1f} ms, server {r['server_cores']:.2f} cores "
                    f"(target {target:,.0f} {key.replace('_s', '/s')}: {verdict(r[key] >= target)}"
                    + ")"
                )
            paced(
                address,
                process.pid,
                args.seconds,
                "the store of 464,000 series made above",
                base / "store",
            )
            # The same once more, started when the log is about 1.5 s of
            # this load short of the size that starts a checkpoint.
            to_the_brink(address, process.pid, base / "store", 24 * 2**20)
            paced(
                address,
                process.pid,
                args.seconds,
                "that store, with a checkpoint due during the phase",
                base / "store",
            )
            grown, held = idle_connections(address, process.pid, 1_000)
            print(f"1,000 idle keep-alive connections: {held} held, server RSS "
                  f"+{grown / 1e6:.0f} MB (target < 200 MB: {verdict(grown < 200e6)})")  # fmt: skip
        finally:
            stop_server(process)
        taken = nats_rate()
        if taken is None:
            print("NATS: nats-server is not installed; not measured")
        else:
            print(f"NATS, one subject, 1,000-line messages: {taken / 1e6:.2f} M lines/s "
                  f"(target 500 k lines/s: {verdict(taken >= 500e3)})")  # fmt: skip
        print_json_rate()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
