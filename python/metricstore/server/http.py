"""The HTTP transport: HTTP/1.1 with keep-alive on one asyncio event loop
(the loop's own thread), the work in the store's Rust core, which
releases the GIL (line-protocol parsing, reads, JSON floats).

One thread reads and answers every connection, so a small request costs
no switch between threads: with a thread per connection, 64 connections
of 10-line writes spent more than half the server's CPU time in the
kernel handing the GIL from thread to thread (``perf record -g`` on the
server during benchmarks/serve.py). Writes of at most ``INLINE_BYTES``
are written on the loop itself; larger writes and every other endpoint run
in a pool of threads, so big bodies parse in parallel and a long query
holds up no other connection. With ``inline_writes`` off (a store that
syncs every write: each would hold the loop for a disk flush) every write
goes to the pool, where concurrent writes share one sync. A connection takes its next request only
once the last is answered and its reply handed to the kernel or buffered.

Guards: a body larger than ``max_body_bytes`` is refused with 413 before
it is read (also on ``Expect: 100-continue``, before the client sends it),
and so is a request to an unknown path (404), with a wrong method (405) or
without a valid token (401); a body without Content-Length gets 411; a
request line over 64 KiB gets 414, a header line over 64 KiB or more than
100 headers 431, a malformed request line or header line 400, two
different Content-Lengths 400. A connection idle for ``idle_timeout``
seconds is closed; a request whose head and body have not arrived within
``request_timeout`` of its first byte gets 408. Any error in a handler
answers 500 and leaves the server running.

Shutdown stops accepting, answers 503 to requests that arrive meanwhile,
waits for requests under way (their writes are acknowledged or not, never
half), closes every connection, then flushes (or closes) the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from .api import Api, Reply, error_reply, text_reply
from .auth import TokenError, TokenVerifier

__all__ = ["HttpServer"]

log = logging.getLogger("metricstore.serve")

_ROUTES = {
    "/api/write": {"POST": "write"},
    "/api/query": {"GET": "query", "POST": "query"},
    "/api/free": {"POST": "free"},
    "/api/healthcheck": {"GET": "health", "POST": "health"},
    "/api/debug": {"GET": "debug", "POST": "debug"},
}

#: Writes with bodies up to this size run on the event loop itself (a
#: 10-line body is about 700 bytes; 16 KiB parse in tens of microseconds).
INLINE_BYTES = 16 << 10

#: Bodies up to this size go out in one write with the headers.
_ONE_WRITE = 64 << 10

#: The standard library's limits on a request line or header line, and on
#: the number of headers (http.client's _MAXLINE and _MAXHEADERS).
_MAX_LINE = 65536
_MAX_HEADERS = 100
_MAX_HEAD = (_MAX_LINE + 2) * (_MAX_HEADERS + 2)

#: Bytes of a following request held while one is answered, before the
#: connection stops reading.
_PIPELINE_BYTES = 1 << 20

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_VERSION = re.compile(r"HTTP/(\d{1,10})\.(\d{1,10})")

_STATUS_PHRASES = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required",
    413: "Request Entity Too Large", 414: "Request-URI Too Long",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    503: "Service Unavailable", 505: "HTTP Version Not Supported",
}  # fmt: skip

_HTTP_DATE = "%a, %d %b %Y %H:%M:%S GMT"


class _Date:
    """The Date header's value, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._text = time.strftime(_HTTP_DATE, time.gmtime(second))
            self._second = second
        return self._text


_date = _Date()


class _Refused(Exception):
    """A request answered before its body was read; the connection closes."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply


def _protocol_error(status: int, message: str) -> _Refused:
    return _Refused(text_reply(status, f"{status} {message}"))


class _Request:
    """A request whose head has been read."""

    __slots__ = ("endpoint", "fields", "keep_alive", "length", "method", "path", "query")

    def __init__(self) -> None:
        self.method = ""
        self.path = ""
        self.query = ""
        self.endpoint = ""
        self.fields: dict[str, str] = {}
        self.length = 0
        self.keep_alive = True


def _parse_head(head: bytes) -> _Request:
    """The request line and header fields (lower-case names); raises
    _Refused with the error reply."""
    lines = head.split(b"\n")
    if len(lines[0]) > _MAX_LINE:
        raise _protocol_error(414, "Request-URI Too Long")
    words = lines[0].rstrip(b"\r").split()
    if len(words) != 3:
        raise _protocol_error(400, f"Bad request syntax ({lines[0][:100]!r})")
    request = _Request()
    version = str(words[2], "iso-8859-1")
    if version != "HTTP/1.1":
        matched = _VERSION.fullmatch(version)
        if matched is None:
            raise _protocol_error(400, f"Bad request version ({version[:20]!r})")
        number = (int(matched[1]), int(matched[2]))
        if number >= (2, 0):
            raise _protocol_error(505, f"Invalid HTTP version ({version[5:]})")
        request.keep_alive = number >= (1, 1)
    request.method = str(words[0], "iso-8859-1")
    target = str(words[1], "iso-8859-1")
    if target.startswith("//"):
        target = "/" + target.lstrip("/")
    parts = urlsplit(target)
    request.path = parts.path.rstrip("/") if parts.path != "/" else parts.path
    request.query = parts.query
    if len(lines) - 1 > _MAX_HEADERS:
        raise _protocol_error(431, f"Too many headers (more than {_MAX_HEADERS})")
    fields = request.fields
    for raw in lines[1:]:
        if len(raw) > _MAX_LINE:
            raise _protocol_error(431, "Line too long (a header line over 65536 bytes)")
        name, colon, value = str(raw, "iso-8859-1").partition(":")
        if not colon or not name or name != name.strip():
            # Also obsolete line folding (RFC 9112 5.2 lets a server refuse it).
            raise _protocol_error(400, f"Bad header line ({raw[:100]!r})")
        key = name.lower()
        value = value.strip(" \t\r")
        if key in fields:
            if key == "content-length":
                if fields[key] != value:
                    raise _Refused(error_reply(400, "two different Content-Length headers"))
                continue
            # A repeated header's values are joined (RFC 9110 5.3).
            value = fields[key] + ", " + value
        fields[key] = value
    connection = fields.get("connection", "").lower()
    if connection == "close":
        request.keep_alive = False
    elif connection == "keep-alive":
        request.keep_alive = True
    return request


class _Connection(asyncio.Protocol):
    """One client connection: reads requests one after the other, answers
    each, and keeps the connection open unless told otherwise."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        #: Where the search for the end of the head goes on.
        self.scanned = 0
        self.request: _Request | None = None
        #: A request is being answered (in the pool); nothing else is read.
        self.busy = False
        self.writing_paused = False
        self.reading_paused = False
        self.closing = False
        self.eof = False
        #: loop.time() of the last activity, and of the current request's first byte.
        self.last_active = 0.0
        self.started: float | None = None

    # -- asyncio callbacks -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.last_active = self.server.loop.time()
        self.server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server._connections.discard(self)
        if self.request is not None:
            # A request whose body never came: nothing was done for it.
            self.request = None
            self.server._end()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if not self.buffer and self.started is None:
            self.started = self.server.loop.time()
        self.buffer += data
        if self.busy or self.writing_paused:
            if len(self.buffer) > _PIPELINE_BYTES and not self.reading_paused:
                self.reading_paused = True
                self._transport().pause_reading()
            return
        self._guarded(self._process)

    def eof_received(self) -> bool | None:
        # The client sent all it will: answer what is under way, then close.
        self.eof = True
        return True if self.busy else None

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if not self.busy and not self.closing:
            self._guarded(self._process)

    def _guarded(self, step: Callable[[], None]) -> None:
        """Runs ``step``; a fault in this module answers 500 and closes
        this connection, never the server."""
        try:
            step()
        except Exception:
            log.exception("connection failed")
            if self.request is not None:
                self.request = None
                self.server._end()
            self._send(error_reply(500, "internal error; see the server log"), close=True)

    # -- requests --------------------------------------------------------------

    def _transport(self) -> asyncio.Transport:
        assert self.transport is not None
        return self.transport

    def _process(self) -> None:
        """Answers the requests complete in the buffer, one at a time."""
        while not (self.closing or self.busy or self.writing_paused):
            if self.request is None:
                try:
                    request = self._read_head()
                except _Refused as refused:
                    self._send(refused.reply, close=True)
                    return
                if request is None:
                    return
                self.request = request
            request = self.request
            if len(self.buffer) < request.length:
                return
            body = bytes(memoryview(self.buffer)[: request.length])
            del self.buffer[: request.length]
            self.request = None
            self.started = self.server.loop.time() if self.buffer else None
            self._answer(request, body)
        if self.reading_paused and not self.busy and not self.closing:
            self.reading_paused = False
            self._transport().resume_reading()

    def _read_head(self) -> _Request | None:
        """The next request's head, once whole, checked (route, token, body
        size); None while it is still arriving."""
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n", self.scanned)
        size = 4
        if end < 0:
            matched = _HEAD_END.search(buffer, self.scanned)
            if matched is None:
                self.scanned = max(0, len(buffer) - 3)
                first = buffer.find(b"\n", 0, _MAX_LINE + 1)
                if first < 0 and len(buffer) > _MAX_LINE:
                    raise _protocol_error(414, "Request-URI Too Long")
                if len(buffer) > _MAX_HEAD:
                    raise _protocol_error(431, "Request Header Fields Too Large")
                return None
            end, size = matched.start(), matched.end() - matched.start()
        head = bytes(buffer[:end])
        del buffer[: end + size]
        self.scanned = 0
        if not head.strip():
            # Blank lines before a request (RFC 9112 2.2 lets a server skip them).
            return None if not buffer else self._read_head()
        request = _parse_head(head)
        server = self.server
        if not server._begin():
            raise _Refused(error_reply(503, "the server is shutting down"))
        try:
            methods = _ROUTES.get(request.path)
            if methods is None:
                raise _Refused(text_reply(404, "404 page not found"))
            endpoint = methods.get(request.method)
            if endpoint is None:
                reply = text_reply(405, "Method Not Allowed")
                reply.headers["Allow"] = ", ".join(methods)
                raise _Refused(reply)
            request.endpoint = endpoint
            self._authorize(request.fields)
            request.length = self._body_length(request.fields)
        except _Refused:
            server._end()
            raise
        if request.fields.get("expect", "").lower() == "100-continue":
            self._transport().write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return request

    def _authorize(self, fields: dict[str, str]) -> None:
        verifier = self.server.verifier
        if verifier is None:
            return
        token = fields.get("x-auth-token")
        if not token:
            header = fields.get("authorization", "")
            if not header.startswith("Bearer "):
                raise _Refused(text_reply(401, "Use JWT Authentication"))
            token = header[len("Bearer ") :]
        try:
            verifier.check(token.strip())
        except TokenError as error:
            raise _Refused(text_reply(401, str(error))) from None

    def _body_length(self, fields: dict[str, str]) -> int:
        if fields.get("transfer-encoding", "").lower() not in ("", "identity"):
            raise _Refused(error_reply(411, "send the body with a Content-Length"))
        raw = fields.get("content-length")
        if raw is None:
            return 0
        try:
            length = int(raw)
        except ValueError:
            raise _Refused(error_reply(400, f"Content-Length {raw!r} is not a number")) from None
        if length < 0:
            raise _Refused(error_reply(400, f"Content-Length {raw!r} is negative"))
        limit = self.server.max_body_bytes
        if length > limit:
            raise _Refused(
                error_reply(413, f"the body has {length} bytes; this server takes at most {limit}")
            )
        return length

    def _answer(self, request: _Request, body: bytes) -> None:
        """Runs the endpoint (here for a small write, else in the pool),
        then sends its reply."""
        server = self.server
        work = server._work(request, body)
        if request.endpoint == "write" and server.inline_writes and len(body) <= INLINE_BYTES:
            self._finish(request, _run(work, request))
            return
        self.busy = True
        future = server._pool.submit(_run, work, request)
        future.add_done_callback(
            lambda done: server.loop.call_soon_threadsafe(self._finished, request, done)
        )

    def _finished(self, request: _Request, done: Future[Reply]) -> None:
        self.busy = False
        self._finish(request, done.result())
        self._guarded(self._process)
        if self.eof and not self.busy:
            self.close()

    def _finish(self, request: _Request, reply: Reply) -> None:
        try:
            self._send(reply, close=not request.keep_alive or reply.status == 500)
        finally:
            self.server._end()
        self.last_active = self.server.loop.time()

    def _send(self, reply: Reply, *, close: bool) -> None:
        """Writes the reply: the status line, headers and a small body in
        one write, so it leaves as one packet."""
        if self.closing:
            return
        lines = [
            f"HTTP/1.1 {reply.status} {_STATUS_PHRASES.get(reply.status, '')}",
            "Server: metricstore",
            f"Date: {_date.now()}",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(reply.body)}",
            *(f"{name}: {value}" for name, value in reply.headers.items()),
        ]
        if close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        transport = self._transport()
        if len(reply.body) <= _ONE_WRITE:
            transport.write(head + reply.body)
        else:
            transport.write(head)
            transport.write(reply.body)
        if log.isEnabledFor(logging.DEBUG):
            peer = transport.get_extra_info("peername")
            log.debug("%s %d %d", peer, reply.status, len(reply.body))
        if close:
            self.close()

    def close(self) -> None:
        """Closes once what is written has been sent."""
        if not self.closing:
            self.closing = True
            self._transport().close()

    def expire(self, now: float) -> None:
        """Closes the connection if idle too long, or answers 408 if its
        request is taking too long to arrive (the server's sweep)."""
        if self.closing or self.busy:
            return
        server = self.server
        if self.started is not None:
            if now - self.started > server.request_timeout:
                if self.request is not None:
                    self.request = None
                    server._end()
                self._send(error_reply(408, "the request did not arrive in time"), close=True)
        elif now - self.last_active > server.idle_timeout:
            self.close()


def _run(work: Callable[[], Reply], request: _Request) -> Reply:
    try:
        return work()
    except Exception:  # the server must outlive any request
        log.exception("request %s %s failed", request.method, request.path)
        return error_reply(500, "internal error; see the server log")


class HttpServer:
    """An HTTP/1.1 server around an :class:`Api`; ``serve_forever`` runs
    its event loop in the calling thread."""

    def __init__(
        self,
        address: tuple[str, int],
        api: Api,
        *,
        verifier: TokenVerifier | None,
        tls: ssl.SSLContext | None,
        max_body_bytes: int,
        idle_timeout: float,
        request_timeout: float,
        inline_writes: bool = True,
    ) -> None:
        self.api = api
        self.inline_writes = inline_writes
        self.verifier = verifier
        self.tls = tls
        self.max_body_bytes = max_body_bytes
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        # Bound here, so a taken port fails the caller and port 0 is known.
        self._socket = socket.create_server(address, family=family, backlog=1024)
        self.server_address: tuple[Any, ...] = self._socket.getsockname()
        self.loop = asyncio.new_event_loop()
        self._pool = ThreadPoolExecutor(
            max_workers=min(32, 4 * (os.cpu_count() or 1) + 4),
            thread_name_prefix="metricstore-serve",
        )
        self._connections: set[_Connection] = set()
        self._listener: asyncio.Server | None = None
        self._lock = threading.Condition()
        self._active = 0
        self._stopping = False
        self._stopped = threading.Event()
        self._running = False

    def _work(self, request: _Request, body: bytes) -> Callable[[], Reply]:
        api, query, endpoint = self.api, request.query, request.endpoint
        if endpoint == "write":
            return lambda: api.write(query, body)
        if endpoint == "query":
            return lambda: api.query(body)
        if endpoint == "free":
            return lambda: api.free(query, body)
        if endpoint == "health":
            return lambda: api.health(body)
        return lambda: api.debug(query)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serves until ``drain``; ``poll_interval`` is unused (the loop
        wakes on events)."""
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            handshake = None if self.tls is None else self.idle_timeout
            listening = loop.create_server(
                lambda: _Connection(self), sock=self._socket, ssl=self.tls, backlog=1024,
                ssl_handshake_timeout=handshake,
            )  # fmt: skip
            self._listener = loop.run_until_complete(listening)
            self._running = True
            sweep = max(0.05, min(1.0, self.idle_timeout / 4, self.request_timeout / 4))
            loop.call_soon(self._sweep, sweep)
            loop.run_forever()
        finally:
            if self._listener is not None:
                self._listener.close()
            for connection in list(self._connections):
                connection.close()
            # Let the transports send their last bytes and close.
            loop.run_until_complete(self._settle(1.0))
            for connection in list(self._connections):
                if connection.transport is not None:
                    connection.transport.abort()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()
            self._pool.shutdown(wait=False)
            self._stopped.set()

    async def _settle(self, seconds: float) -> None:
        deadline = self.loop.time() + seconds
        while self._connections and self.loop.time() < deadline:
            await asyncio.sleep(0.01)

    def _sweep(self, every: float) -> None:
        now = self.loop.time()
        for connection in list(self._connections):
            connection.expire(now)
        self.loop.call_later(every, self._sweep, every)

    def shutdown(self) -> None:
        """Stops accepting connections (requests on open ones go on until
        ``drain``)."""
        if self._running and not self._stopped.is_set():
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(self._stop_listening(), self.loop).result(30)

    async def _stop_listening(self) -> None:
        if self._listener is not None:
            self._listener.close()

    def server_close(self) -> None:
        """Closes the listening socket (if the loop never ran)."""
        if not self._running:
            self._socket.close()
            self.loop.close()
            self._pool.shutdown(wait=False)

    def _begin(self) -> bool:
        with self._lock:
            if self._stopping:
                return False
            self._active += 1
            return True

    def _end(self) -> None:
        with self._lock:
            self._active -= 1
            self._lock.notify_all()

    @property
    def connections(self) -> int:
        return len(self._connections)

    def drain(self, timeout: float) -> bool:
        """Refuses new requests, waits up to ``timeout`` s for those under
        way, and closes every connection; True if none was cut short."""
        with self._lock:
            self._stopping = True
            done = self._lock.wait_for(lambda: self._active == 0, timeout)
        if self._running and not self._stopped.is_set():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.loop.stop)
            self._stopped.wait(timeout)
        return done
