"""A network front door compatible with ClusterCockpit's cc-metric-store:
``metricstore.serve(store)`` from Python, ``python -m metricstore serve``
from a shell. cc-metric-collector writes line protocol to ``/api/write``,
cc-backend reads through ``/api/query``; docs/serve.md says how to point
them here and where this store answers differently (on purpose).

- ``config``: cc-metric-store's ``config.json``;
- ``api``: the endpoints on a store, request and reply bytes only;
- ``auth``: Ed25519 JSON Web Tokens;
- ``http``: the HTTP/1.1 transport (one asyncio event loop);
- ``nats``: line-protocol batches from NATS subjects;
- ``nkeys``: NATS creds files and NKEY signatures.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any

from ..store import Store
from .api import Api
from .auth import TokenVerifier
from .config import DEFAULT_ADDR, NatsSubscription, ServeConfig, parse_addr, read_config
from .http import HttpServer
from .nats import NatsSubscriber
from .nkeys import read_creds

__all__ = ["NatsSubscription", "ServeConfig", "Server", "read_config", "serve"]

log = logging.getLogger("metricstore.serve")


class Server:
    """A running front door (see :func:`serve`). ``close()`` stops it:
    requests under way finish, the store is flushed, and closed if the
    server owns it. A context manager."""

    def __init__(
        self, http: HttpServer, store: Store, *, own_store: bool, nats: NatsSubscriber | None
    ) -> None:
        self._http = http
        self._nats = nats
        self.store = store
        self._own_store = own_store
        self._closed = False
        self._close_lock = threading.Lock()
        self._thread = threading.Thread(
            target=http.serve_forever, kwargs={"poll_interval": 0.2}, name="metricstore-serve",
            daemon=True,
        )  # fmt: skip
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the server listens on (the port is real when 0 was asked)."""
        host, port = self._http.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        scheme = "https" if self._http.tls is not None else "http"
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown}:{port}"

    def stats(self) -> dict[str, Any]:
        """Counters: writes, lines written, rejected and skipped, queries,
        and the open connections."""
        counters = asdict(self._http.api.counters)
        counters["connections"] = self._http.connections
        if self._nats is not None:
            counters["nats"] = asdict(self._nats.counters)
        return counters

    @property
    def nats(self) -> NatsSubscriber | None:
        """The NATS subscriber, if ``nats`` was given."""
        return self._nats

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float = 30.0) -> None:
        """Stops accepting, waits up to ``timeout`` s for requests under way,
        closes every connection, then flushes the store, or closes it if
        the server owns it. Closing twice is fine."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            if self._nats is not None:
                self._nats.close()
            self._http.shutdown()
            self._http.server_close()
            if not self._http.drain(timeout):
                log.warning("requests still under way after %.0f s were cut short", timeout)
            if self.store.closed:
                return
            if self._own_store:
                self.store.close()
            elif not self.store.readonly:
                self.store.flush()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<metricstore.Server {self.url}{state}>"


def serve(
    store: Store,
    addr: str = DEFAULT_ADDR,
    *,
    jwt_public_key: str | None = None,
    tls: tuple[str | Path, str | Path] | None = None,
    strict: bool = False,
    max_body_bytes: int = 256 << 20,
    idle_timeout: float = 120.0,
    request_timeout: float = 30.0,
    own_store: bool = False,
    nats: ServeConfig | None = None,
) -> Server:
    """Serves ``store`` with cc-metric-store's HTTP API on ``addr``
    (``host:port``; port 0 picks a free one, see ``Server.address``) and
    returns the running :class:`Server`; its threads serve until
    ``close()``.

    ``jwt_public_key``: the base64 Ed25519 public key tokens must be signed
    with (``Authorization: Bearer <jwt>`` or ``X-Auth-Token``); None serves
    without auth (and logs a warning). ``tls``: (certificate file, key file)
    for HTTPS. ``strict``: leave not-found entries out of query answers as
    cc-metric-store does (by default they carry an ``error``, so cc-backend
    labels later series right). Bodies over ``max_body_bytes`` are refused
    (413); connections idle for ``idle_timeout`` s are closed; a body must
    arrive within ``request_timeout`` s. ``own_store``: close the store
    when the server closes (else it is flushed). ``nats``: a configuration
    whose ``nats_address`` and ``nats_subscriptions`` say which subjects to
    take line protocol from (see :mod:`metricstore.server.nats`), with
    ``nats_username``/``nats_password`` or ``nats_creds_file`` (a creds
    file: a user JWT and its NKEY seed, or a seed alone for NKEY auth).
    """
    if not isinstance(store, Store):
        raise TypeError(f"store: expected a metricstore.Store, got {type(store).__name__}")
    if store.readonly:
        raise ValueError("store: a read-only store cannot take writes; open it for writing")
    if store.unit != "s":
        raise ValueError(
            f"store: cc-metric-store's API speaks seconds; this store's unit is \"{store.unit}\""
        )
    for name, value in (("max_body_bytes", max_body_bytes), ("idle_timeout", idle_timeout),
                        ("request_timeout", request_timeout)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{name}: expected a positive number, got {value!r}")
    verifier = None
    if jwt_public_key:
        verifier = TokenVerifier(jwt_public_key)
    else:
        log.warning(
            "no jwt-public-key configured: every endpoint is open to anyone who can connect"
        )
    context = None
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
    http = HttpServer(
        parse_addr(addr),
        Api(store, strict=strict),
        verifier=verifier,
        tls=context,
        max_body_bytes=int(max_body_bytes),
        idle_timeout=float(idle_timeout),
        request_timeout=float(request_timeout),
        inline_writes=store.stats()["sync"] != "always",
    )
    subscriber = None
    if nats is not None and nats.nats_address and nats.nats_subscriptions:
        creds = nats.nats_creds_file

        def ingest(payload: bytes, cluster: str | None) -> tuple[int, int, int]:
            report = store.ingest(payload, default_cluster=cluster, unknown="skip")
            return report.accepted, len(report.rejected), report.skipped

        try:
            subscriber = NatsSubscriber(
                nats.nats_address,
                nats.nats_subscriptions,
                ingest,
                username=nats.nats_username,
                password=nats.nats_password,
                credentials=None if creds is None else read_creds(creds),
            )
        except BaseException:
            http.server_close()
            raise
    return Server(http, store, own_store=own_store, nats=subscriber)
