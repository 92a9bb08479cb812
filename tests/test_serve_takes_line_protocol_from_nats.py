"""`metricstore serve` subscribes to the configured NATS subjects (each
with its default cluster) and writes each message's lines; when the NATS
server goes away it says so, counts it, and takes messages again once it
is back. Needs Debian's `nats-server` (.ci/run installs it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

import metricstore
from metricstore.server import NatsSubscription, ServeConfig

NATS = shutil.which("nats-server")
pytestmark = pytest.mark.skipif(NATS is None, reason="nats-server is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nats(port: int, *extra: str) -> subprocess.Popen[bytes]:
    assert NATS is not None
    process = subprocess.Popen(
        [NATS, "-a", "127.0.0.1", "-p", str(port), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("nats-server did not start")


def publish(port: int, messages: list[tuple[str, bytes]], user: str | None = None) -> None:
    """Publishes and waits for the server's PONG, so every PUB was taken."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        reader = s.makefile("rb")
        assert reader.readline().startswith(b"INFO ")
        auth = "" if user is None else f',"user":"{user}","pass":"secret"'
        out = [b'CONNECT {"verbose":false%s}\r\n' % auth.encode()]
        out += [b"PUB %s %d\r\n%s\r\n" % (subject.encode(), len(data), data)
                for subject, data in messages]  # fmt: skip
        s.sendall(b"".join(out) + b"PING\r\n")
        assert reader.readline() == b"PONG\r\n"


def wait_for(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def nats_port() -> Iterator[int]:
    port = free_port()
    process = start_nats(port)
    yield port
    process.kill()
    process.wait()


def new_store() -> metricstore.Store:
    store = metricstore.Store()
    store.define_metric("cpu_load", 60, "avg")
    return store


def config(port: int) -> ServeConfig:
    return ServeConfig(
        nats_address=f"nats://127.0.0.1:{port}",
        nats_subscriptions=(
            NatsSubscription("hpc.fritz", "fritz"),
            NatsSubscription("hpc.alex", "alex"),
        ),
    )


def test_each_subscription_writes_with_its_own_default_cluster(nats_port: int) -> None:
    store = new_store()
    with metricstore.serve(store, "127.0.0.1:0", nats=config(nats_port)) as server:
        assert server.nats is not None and server.nats.wait_connected(30)
        publish(nats_port, [
            ("hpc.fritz", b"cpu_load,hostname=f1 value=1.5 6000\n"
                          b"cpu_load,hostname=f1 value=2 6060\n"),
            ("hpc.alex", b"cpu_load,hostname=a1 value=3 6000\nmem_used,hostname=a1 value=1 6000\n"),
            ("hpc.alex", b"cpu_load,cluster=fritz,hostname=f2 value=4 6000\nbad line\n"),
            ("other", b"cpu_load,hostname=x value=9 6000\n"),
        ])  # fmt: skip
        wait_for(lambda: server.stats()["nats"]["messages"] == 3)
        stats = server.stats()["nats"]
    assert store.read(("cpu_load", "fritz/f1"), 6000, 6120).values.tolist() == [1.5, 2.0]
    assert store.read(("cpu_load", "alex/a1"), 6000, 6060).values.tolist() == [3.0]
    assert store.read(("cpu_load", "fritz/f2"), 6000, 6060).values.tolist() == [4.0]
    assert len(store) == 3
    assert (stats["lines_written"], stats["lines_rejected"], stats["lines_skipped"]) == (4, 1, 1)


def test_a_lost_connection_is_counted_and_messages_flow_again() -> None:
    store = new_store()
    port = free_port()
    first = start_nats(port)
    with metricstore.serve(store, "127.0.0.1:0", nats=config(port)) as server:
        subscriber = server.nats
        assert subscriber is not None and subscriber.wait_connected(30)
        publish(port, [("hpc.fritz", b"cpu_load,hostname=f1 value=1 6000\n")])
        wait_for(lambda: subscriber.counters.messages == 1)
        first.kill()
        first.wait()
        wait_for(lambda: subscriber.counters.disconnects == 1)
        second = start_nats(port)
        try:
            wait_for(lambda: subscriber.counters.connects == 2)
            publish(port, [("hpc.fritz", b"cpu_load,hostname=f1 value=2 6060\n")])
            wait_for(lambda: subscriber.counters.messages == 2)
        finally:
            second.kill()
            second.wait()
        assert subscriber.counters.seconds_disconnected > 0
    assert store.read(("cpu_load", "fritz/f1"), 6000, 6120).values.tolist() == [1.0, 2.0]


def test_user_and_password_go_in_connect() -> None:
    port = free_port()
    process = start_nats(port, "--user", "collector", "--pass", "secret")
    try:
        store = new_store()
        settings = ServeConfig(
            nats_address=f"nats://127.0.0.1:{port}",
            nats_username="collector",
            nats_password="secret",
            nats_subscriptions=(NatsSubscription("hpc", "c"),),
        )
        with metricstore.serve(store, "127.0.0.1:0", nats=settings) as server:
            assert server.nats is not None and server.nats.wait_connected(30)
            publish(port, [("hpc", b"cpu_load,hostname=h value=5 6000\n")], user="collector")
            wait_for(lambda: server.stats()["nats"]["messages"] == 1)
        assert store.read(("cpu_load", "c/h"), 6000, 6060).values.tolist() == [5.0]
    finally:
        process.kill()
        process.wait()
