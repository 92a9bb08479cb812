"""The HTTP transport: the standard library's threaded HTTP/1.1 server
(one thread per connection, keep-alive), with the work in the store's Rust
core, which releases the GIL (line-protocol parsing, reads, JSON floats).

Guards: a body larger than ``max_body_bytes`` is refused with 413 before
it is read (also on ``Expect: 100-continue``); a connection idle for
``idle_timeout`` seconds is closed; a request whose body has not arrived
within ``request_timeout`` gets 408; a body without Content-Length gets 411.
Any error in a handler answers 500 and leaves the server running.

The request line and headers are parsed here rather than by
``http.server`` (which runs every request's headers through
``email.parser``: more than half of the GIL time of a 10-line write);
the limits are the standard library's (64 KiB a line, 100 headers), and
a header block that does not arrive within ``request_timeout`` is cut.

Shutdown stops accepting, answers 503 to requests that arrive meanwhile,
waits for requests under way (their writes are acknowledged or not, never
half), closes idle connections, then flushes (or closes) the store.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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

_READ_CHUNK = 1 << 20

#: Bodies up to this size go out in one write with the headers.
_ONE_WRITE = 64 << 10

#: The standard library's limits on a request line or header line, and on
#: the number of headers (http.client's _MAXLINE and _MAXHEADERS).
_MAX_LINE = 65536
_MAX_HEADERS = 100

_HTTP_DATE = "%a, %d %b %Y %H:%M:%S GMT"


class _Date:
    """The Date header's value, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            # Two threads may both format the same second; both are right.
            self._text = time.strftime(_HTTP_DATE, time.gmtime(second))
            self._second = second
        return self._text


_date = _Date()


class _Refused(Exception):
    """A request answered before its body was read; the connection closes."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # An unparsable request line still gets a status line and headers.
    default_request_version = "HTTP/1.1"
    error_message_format = "%(code)d %(message)s: %(explain)s\n"
    error_content_type = "text/plain; charset=utf-8"
    server_version = "metricstore"
    sys_version = ""
    server: HttpServer
    #: The request's headers by lower-case name (set by parse_request).
    fields: dict[str, str]
    raw_requestline: bytes

    def setup(self) -> None:
        self.request.settimeout(self.server.idle_timeout)
        # Replies go out whole; Nagle would hold a body back until the
        # client acknowledges the headers (40 ms with delayed ACKs).
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()
        self.server._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server._track(self.connection, False)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if log.isEnabledFor(logging.DEBUG):
            super().log_request(code, size)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def parse_request(self) -> bool:
        """The request line as ``http.server`` reads it, then the headers
        into :attr:`fields` (lower-case names); False once an error reply
        has been sent."""
        words = self.raw_requestline.split()
        if len(words) == 3 and words[2] == b"HTTP/1.1":
            # The common case, without the general version parsing.
            self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
            command, path = str(words[0], "iso-8859-1"), str(words[1], "iso-8859-1")
            self.request_version = "HTTP/1.1"
            self.close_connection = False
            if path.startswith("//"):
                path = "/" + path.lstrip("/")
            self.command, self.path = command, path
        else:
            # Anything else (HTTP/1.0, HTTP/0.9, bad versions) as
            # http.server answers it, with an empty header block.
            if not self._parse_request_line():
                return False
        fields = self._read_fields()
        if fields is None:
            return False
        self.fields = fields
        connection = fields.get("connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        if (
            fields.get("expect", "").lower() == "100-continue"
            and self.request_version >= "HTTP/1.1"
        ):
            return self.handle_expect_100()
        return True

    def _parse_request_line(self) -> bool:
        # http.server's parse_request reads the request line, then the
        # headers; give it none, and read them here afterwards.
        rfile = self.rfile
        self.rfile = io.BytesIO(b"\r\n")
        try:
            return super().parse_request()
        finally:
            self.rfile = rfile

    def _read_fields(self) -> dict[str, str] | None:
        """The header block as {lower-case name: value}; None once an error
        reply has been sent. A repeated header's values are joined with
        ", " (RFC 9110 5.3); Content-Lengths that differ are refused."""
        fields: dict[str, str] = {}
        deadline = time.monotonic() + self.server.request_timeout
        readline = self.rfile.readline
        for _ in range(_MAX_HEADERS + 1):
            line = readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                self.send_error(431, "Line too long", "header line longer than 65536 bytes")
                return None
            if line in (b"\r\n", b"\n", b""):
                return fields
            if time.monotonic() > deadline:
                self.send_error(408, "Request Timeout", "the headers did not arrive in time")
                return None
            name, colon, value = str(line, "iso-8859-1").partition(":")
            if not colon or not name or name != name.strip():
                # Also obsolete line folding (RFC 9112 5.2 lets a server refuse it).
                self.send_error(400, "Bad header line", f"{line[:100]!r}")
                return None
            key = name.lower()
            value = value.strip(" \t\r\n")
            if key in fields:
                if key == "content-length" and fields[key] != value:
                    self.send_error(400, "Bad request", "two different Content-Length headers")
                    return None
                if key != "content-length":
                    value = fields[key] + ", " + value
            fields[key] = value
        self.send_error(431, "Too many headers", f"more than {_MAX_HEADERS} headers")
        return None

    def handle_expect_100(self) -> bool:
        # Refuse an oversized body before the client sends it.
        try:
            self._body_length()
        except _Refused as refused:
            self._send(refused.reply, close=True)
            return False
        return super().handle_expect_100()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        server = self.server
        if not server._begin():
            self._send(error_reply(503, "the server is shutting down"), close=True)
            return
        try:
            try:
                reply, close = self._answer(method)
            except _Refused as refused:
                reply, close = refused.reply, True
            except Exception:  # the server must outlive any request
                log.exception("request %s %s failed", method, self.path)
                reply, close = error_reply(500, "internal error; see the server log"), True
            self._send(reply, close=close)
        finally:
            server._end()

    def _answer(self, method: str) -> tuple[Reply, bool]:
        server = self.server
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") if parts.path != "/" else parts.path
        methods = _ROUTES.get(path)
        if methods is None:
            raise _Refused(text_reply(404, "404 page not found"))
        endpoint = methods.get(method)
        if endpoint is None:
            reply = text_reply(405, "Method Not Allowed")
            reply.headers["Allow"] = ", ".join(methods)
            raise _Refused(reply)
        self._authorize()
        body = self._read_body()
        api = server.api
        if endpoint == "write":
            return api.write(parts.query, body), False
        if endpoint == "query":
            return api.query(body), False
        if endpoint == "free":
            return api.free(parts.query, body), False
        if endpoint == "health":
            return api.health(body), False
        return api.debug(parts.query), False

    def _authorize(self) -> None:
        verifier = self.server.verifier
        if verifier is None:
            return
        token = self.fields.get("x-auth-token")
        if not token:
            header = self.fields.get("authorization", "")
            if not header.startswith("Bearer "):
                raise _Refused(text_reply(401, "Use JWT Authentication"))
            token = header[len("Bearer ") :]
        try:
            verifier.check(token.strip())
        except TokenError as error:
            raise _Refused(text_reply(401, str(error))) from None

    def _body_length(self) -> int:
        if self.fields.get("transfer-encoding", "").lower() not in ("", "identity"):
            raise _Refused(error_reply(411, "send the body with a Content-Length"))
        raw = self.fields.get("content-length")
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

    def _read_body(self) -> bytes:
        length = self._body_length()
        if length == 0:
            return b""
        deadline = time.monotonic() + self.server.request_timeout
        chunks = []
        left = length
        while left:
            if time.monotonic() > deadline:
                raise _Refused(error_reply(408, "the body did not arrive in time"))
            try:
                chunk = self.rfile.read1(min(left, _READ_CHUNK))
            except TimeoutError:
                raise _Refused(error_reply(408, "the body did not arrive in time")) from None
            if not chunk:
                raise _Refused(error_reply(400, f"the body ended {left} bytes early"))
            chunks.append(chunk)
            left -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _send(self, reply: Reply, *, close: bool) -> None:
        """Writes the reply: the status line, headers and a small body in
        one write(2), so it leaves as one packet."""
        self.log_request(reply.status)
        phrase = self.responses[reply.status][0] if reply.status in self.responses else ""
        lines = [
            f"{self.protocol_version} {reply.status} {phrase}",
            f"Server: {self.version_string()}",
            f"Date: {_date.now()}",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(reply.body)}",
            *(f"{name}: {value}" for name, value in reply.headers.items()),
        ]
        if close:
            lines.append("Connection: close")
            self.close_connection = True
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            if len(reply.body) <= _ONE_WRITE:
                self.wfile.write(head + reply.body)
            else:
                self.wfile.write(head)
                self.wfile.write(reply.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


class HttpServer(ThreadingHTTPServer):
    """A threaded HTTP server around an :class:`Api`."""

    daemon_threads = True
    request_queue_size = 1024

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
    ) -> None:
        self.api = api
        self.verifier = verifier
        self.tls = tls
        self.max_body_bytes = max_body_bytes
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self._lock = threading.Condition()
        self._active = 0
        self._stopping = False
        self._connections: set[socket.socket] = set()
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        if self.tls is not None:
            # The handshake runs in the connection's own thread (setup).
            conn = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            request.settimeout(self.idle_timeout)
            try:
                request.do_handshake()
            except (OSError, ssl.SSLError):
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

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
        with self._lock:
            return len(self._connections)

    def drain(self, timeout: float) -> bool:
        """Refuses new requests, waits up to ``timeout`` s for those under
        way, and closes every connection; True if none was cut short."""
        with self._lock:
            self._stopping = True
            done = self._lock.wait_for(lambda: self._active == 0, timeout)
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return done
