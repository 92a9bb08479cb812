"""With a jwt-public-key, `metricstore serve` lets in only requests whose
token (`Authorization: Bearer` or `X-Auth-Token`) is signed with the
matching Ed25519 key and not expired; without one it serves everyone and
warns at start."""

from __future__ import annotations

import logging
import time

import pytest
from serve_client import Client, new_key, token

import metricstore
from metricstore.server.auth import TokenError, TokenVerifier

LINE = "cpu_load,hostname=h value=1 6000\n"


def new_store() -> metricstore.Store:
    store = metricstore.Store()
    store.define_metric("cpu_load", 60, "avg")
    return store


def test_only_tokens_signed_by_the_key_and_in_time_get_in() -> None:
    key, public = new_key()
    other, _ = new_key()
    store = new_store()
    with metricstore.serve(store, "127.0.0.1:0", jwt_public_key=public) as server:
        valid = Client(server.url, token(key))
        assert valid.write(LINE, cluster="c") == (200, b"")
        status, body, _ = Client(server.url).request(
            "POST", "/api/write?cluster=c", LINE.encode(), {"X-Auth-Token": token(key)}
        )
        assert (status, body) == (200, b"")
        for bad, message in (
            (None, b"Use JWT Authentication\n"),
            (token(key, expires_in=-60), b"token: token is expired\n"),
            (token(other), b"token: signature is invalid\n"),
            (token(key, alg="HS256"), b"token: signing method 'HS256' refused; only EdDSA"),
            ("not.a.token!", b"token: the header or payload is not JSON\n"),
            ("abc", b"token: not a JWT"),
        ):
            client = Client(server.url, bad)
            for method, path in (("POST", "/api/write?cluster=c"), ("GET", "/api/query")):
                status, body, headers = client.request(method, path, LINE.encode())
                assert status == 401, (bad, body)
                assert body.startswith(message), body
                assert headers["content-type"] == "text/plain; charset=utf-8"
        # A token without exp is valid (as cc-metric-store's README token).
        assert Client(server.url, token(key, expires_in=None)).write(LINE, cluster="c")[0] == 200
    assert store.read(("cpu_load", "c/h"), 6000, 6060).values.tolist() == [1.0]
    assert store.stats()["write_calls"] == 3


def test_a_cached_token_is_refused_once_it_expires() -> None:
    key, public = new_key()
    verifier = TokenVerifier(public)
    good = token(key, expires_in=100)
    now = time.time()
    verifier.check(good, now)
    verifier.check(good, now + 50)
    with pytest.raises(TokenError, match="expired"):
        verifier.check(good, now + 200)
    with pytest.raises(TokenError, match="signature is invalid"):
        verifier.check(good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"), now)


def test_a_bad_key_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="jwt-public-key: an Ed25519 public key is 32 bytes"):
        metricstore.serve(new_store(), "127.0.0.1:0", jwt_public_key="c2hvcnQ=")
    with pytest.raises(ValueError, match="not standard base64"):
        metricstore.serve(new_store(), "127.0.0.1:0", jwt_public_key="!!")


def test_no_key_means_no_auth_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "metricstore.serve"):
        server = metricstore.serve(new_store(), "127.0.0.1:0")
    with server:
        assert Client(server.url).write(LINE, cluster="c") == (200, b"")
    assert "no jwt-public-key configured" in caplog.text
