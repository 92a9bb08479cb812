"""NATS ingest: each message on a subscribed subject is a line-protocol
batch, written with that subscription's default cluster.

A small client of NATS' text protocol (``INFO``, ``CONNECT``, ``SUB``,
``MSG``, ``PING``/``PONG``), one connection and one reader thread per
server. Auth by user and password, or by a creds file (see ``nkeys``): the
user JWT, or the NKEY alone, and the signature of the server's nonce.

Core NATS delivers at most once: what is published while the connection
is down is lost, and the server cannot know how much. So every
disconnect is logged with how long it lasted, and counted
(``Server.stats()``), never hidden; the client reconnects until stopped.
A refused sign-in is logged as an error naming the credentials sent, at
every attempt, and kept in ``last_error``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from .config import NatsSubscription
from .nkeys import Credentials

__all__ = ["NatsCounters", "NatsSubscriber"]

log = logging.getLogger("metricstore.serve")

#: The largest message taken (NATS' own default max_payload is 1 MiB).
MAX_MESSAGE = 64 << 20


@dataclass
class NatsCounters:
    """What the subscriber has done since it started."""

    messages: int = 0
    lines_written: int = 0
    lines_rejected: int = 0
    lines_skipped: int = 0
    connects: int = 0
    disconnects: int = 0
    seconds_disconnected: float = 0.0


class _Closed(Exception):
    """The connection ended."""


class _Refused(Exception):
    """The server refused the connection (auth) before it was up."""


class NatsSubscriber:
    """Subscribes to ``subscriptions`` on the NATS server at ``address``
    (``nats://host:port``) and hands each message to ``ingest(payload,
    cluster) -> (written, rejected, skipped)``, in a thread of its own."""

    def __init__(
        self,
        address: str,
        subscriptions: Sequence[NatsSubscription],
        ingest: Callable[[bytes, str | None], tuple[int, int, int]],
        *,
        username: str | None = None,
        password: str | None = None,
        credentials: Credentials | None = None,
        retry_seconds: float = 1.0,
    ) -> None:
        parts = urlsplit(address if "://" in address else f"nats://{address}")
        if parts.scheme != "nats" or not parts.hostname:
            raise ValueError(f"nats address: {address!r} is not nats://host:port")
        self.host, self.port = parts.hostname, parts.port or 4222
        self.subscriptions = list(subscriptions)
        if not self.subscriptions:
            raise ValueError("nats-subscriptions: none configured")
        self._ingest = ingest
        self._user = username
        self._password = password
        self._credentials = credentials
        #: Why the last connection attempt or session failed (None while all is well).
        self.last_error: str | None = None
        self._retry = retry_seconds
        self.counters = NatsCounters()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metricstore-nats", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        """True once subscribed (within ``timeout`` s)."""
        return self._connected.wait(timeout)

    def close(self) -> None:
        """Stops reading; a message being written is finished first."""
        self._stop.set()
        with self._lock:
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join()

    def _run(self) -> None:
        down_since: float | None = None
        while not self._stop.is_set():
            try:
                sock = socket.create_connection((self.host, self.port), timeout=10)
            except OSError as error:
                self.last_error = f"unreachable: {error}"
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("NATS %s:%d unreachable: %s", self.host, self.port, error)
                self._stop.wait(self._retry)
                continue
            with self._lock:
                self._sock = sock
            try:
                self._session(sock, down_since)
                down_since = None
            except _Refused as error:
                # Retried (the server's accounts may be fixed meanwhile), but
                # said at every attempt: nothing arrives until then.
                self.last_error = str(error)
                if down_since is None:
                    down_since = time.monotonic()
                log.error("NATS %s:%d: %s", self.host, self.port, error)
            except (_Closed, OSError, ValueError) as error:
                self.last_error = f"connection lost: {error}"
                if not self._stop.is_set():
                    down_since = time.monotonic()
                    self.counters.disconnects += 1
                    log.warning(
                        "NATS %s:%d: connection lost (%s); messages published until it is "
                        "back are lost (core NATS delivers at most once)",
                        self.host, self.port, error,
                    )  # fmt: skip
            finally:
                self._connected.clear()
                with self._lock:
                    self._sock = None
                sock.close()
            if not self._stop.is_set():
                self._stop.wait(self._retry)

    def _session(self, sock: socket.socket, down_since: float | None) -> None:
        reader = sock.makefile("rb")
        info = reader.readline()
        if not info.startswith(b"INFO "):
            raise ValueError(f"expected INFO from the NATS server, got {info[:80]!r}")
        connect: dict[str, object] = {
            "verbose": False, "pedantic": False, "name": "metricstore", "lang": "python",
            "version": "0", "protocol": 1,
        }  # fmt: skip
        if self._user is not None:
            connect["user"] = self._user
            connect["pass"] = self._password or ""
        creds = self._credentials
        if creds is not None:
            try:
                nonce = json.loads(info[5:]).get("nonce")
            except (ValueError, AttributeError):
                raise ValueError(f"the NATS server's INFO is not JSON: {info[:80]!r}") from None
            if creds.jwt is not None:
                connect["jwt"] = creds.jwt
            else:
                connect["nkey"] = creds.public_key()
            if nonce:
                connect["sig"] = creds.sign(nonce)
        out = [b"CONNECT " + json.dumps(connect).encode() + b"\r\n"]
        for sid, sub in enumerate(self.subscriptions, start=1):
            out.append(f"SUB {sub.subject} {sid}\r\n".encode())
        out.append(b"PING\r\n")
        sock.sendall(b"".join(out))
        sock.settimeout(None)
        while not self._stop.is_set():
            line = reader.readline(4096)
            if not line:
                raise _Closed("closed by the server")
            if line.startswith(b"MSG "):
                self._message(line, reader)
            elif line.startswith(b"PING"):
                sock.sendall(b"PONG\r\n")
            elif line.startswith(b"PONG"):
                if not self._connected.is_set():
                    self.counters.connects += 1
                    if down_since is not None:
                        gone = time.monotonic() - down_since
                        self.counters.seconds_disconnected += gone
                        log.warning(
                            "NATS %s:%d: back after %.1f s disconnected",
                            self.host, self.port, gone,
                        )  # fmt: skip
                    self.last_error = None
                    self._connected.set()
            elif line.startswith(b"-ERR"):
                error = line.decode(errors="replace").strip()
                if not self._connected.is_set() and b"authoriz" in line.lower():
                    raise _Refused(self._refusal(error))
                raise _Closed(error)

    def _refusal(self, error: str) -> str:
        """What a refused CONNECT means, naming the credentials sent."""
        creds = self._credentials
        if creds is not None:
            what = "user JWT" if creds.jwt is not None else "NKEY"
            sent = f"the {what} of {creds.source} (user {creds.public_key()})"
        elif self._user is not None:
            sent = f"user {self._user!r} and its password"
        else:
            sent = "no credentials (set nats.username/password or nats.creds-file-path)"
        return f"the server refused {sent}: {error}"

    def _message(self, line: bytes, reader: object) -> None:
        fields = line.split()
        if len(fields) not in (4, 5):
            raise ValueError(f"bad MSG line {line[:80]!r}")
        sid, size = int(fields[2]), int(fields[-1])
        if size > MAX_MESSAGE:
            raise ValueError(f"a message of {size} bytes; at most {MAX_MESSAGE}")
        payload = reader.read(size + 2)  # type: ignore[attr-defined]
        if len(payload) != size + 2:
            raise _Closed("closed in the middle of a message")
        cluster = (
            self.subscriptions[sid - 1].cluster if 0 < sid <= len(self.subscriptions) else None
        )
        written, rejected, skipped = self._ingest(payload[:size], cluster)
        c = self.counters
        c.messages += 1
        c.lines_written += written
        c.lines_rejected += rejected
        c.lines_skipped += skipped
        if rejected:
            log.warning("NATS message on %s: %d lines rejected", fields[1].decode(), rejected)
