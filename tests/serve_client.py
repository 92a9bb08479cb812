"""Clients of `metricstore serve` for the tests: one that sends what
cc-backend's metric-store client sends (GET with a JSON body,
`?version=v2`, `Authorization: Bearer`), one that posts line protocol as
cc-metric-collector's HTTP sink does (one keep-alive connection, exactly
200 expected), and Ed25519 JSON Web Tokens."""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class Client:
    """One keep-alive HTTP/1.1 connection to a server's URL."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.token = token
        self.timeout = timeout
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        sent = dict(headers or {})
        if self.token is not None:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        self.conn.request(method, path, body=body, headers=sent)
        reply = self.conn.getresponse()
        data = reply.read()
        got = {k.lower(): v for k, v in reply.getheaders()}
        if reply.will_close:
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return reply.status, data, got

    def query(self, request: dict[str, Any]) -> tuple[int, bytes]:
        """What cc-backend's client does: GET /api/query?version=v2 with the
        request as a JSON body."""
        body = json.dumps(request).encode()
        status, data, _ = self.request(
            "GET", "/api/query?version=v2", body, {"Content-Type": "application/json"}
        )
        return status, data

    def write(self, lines: str, cluster: str | None = None) -> tuple[int, bytes]:
        path = "/api/write" + ("" if cluster is None else f"?cluster={cluster}")
        status, data, _ = self.request("POST", path, lines.encode())
        return status, data

    def close(self) -> None:
        self.conn.close()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_key() -> tuple[Any, str]:
    """An Ed25519 private key and its public key as cc-metric-store's
    config holds it (standard base64 of the 32 raw bytes)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return key, base64.b64encode(raw).decode()


def token(
    key: Any,
    *,
    expires_in: float | None = 3600.0,
    alg: str = "EdDSA",
    claims: dict[str, Any] | None = None,
) -> str:
    """A JWT signed by ``key``; ``expires_in`` seconds from now (negative:
    already expired; None: no ``exp``); ``claims`` added to the payload."""
    header = _b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload_claims: dict[str, Any] = {"sub": "collector", "roles": ["api"], **(claims or {})}
    if expires_in is not None:
        payload_claims["exp"] = int(time.time() + expires_in)
    payload = _b64url(json.dumps(payload_claims).encode())
    signature = _b64url(key.sign(f"{header}.{payload}".encode()))
    return f"{header}.{payload}.{signature}"


def start_cli(config: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """Starts `python -m metricstore serve --config config *extra` and
    waits for its "listening on URL" line: (process, URL)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "metricstore", "serve", "--config", str(config), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        process.kill()
        raise AssertionError(f"no listening line: {line!r} {process.stderr.read()!r}")  # type: ignore[union-attr]
    return process, line.split()[-1]
