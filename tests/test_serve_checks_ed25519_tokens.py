"""With a jwt-public-key, `metricstore serve` lets in only requests whose
token (`Authorization: Bearer` or `X-Auth-Token`) is signed with the
matching Ed25519 key and not expired; without one it serves everyone and
warns at start."""

from __future__ import annotations

import logging
import socket
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
            (
                token(key, claims={"nbf": int(time.time()) + 600}),
                b"token: token is not valid yet\n",
            ),
            (
                token(key, claims={"iat": int(time.time()) + 600}),
                b"token: token used before issued\n",
            ),
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
        past = int(time.time()) - 60
        in_time = token(key, claims={"nbf": past, "iat": past})
        assert Client(server.url, in_time).write(LINE, cluster="c")[0] == 200
    assert store.read(("cpu_load", "c/h"), 6000, 6060).values.tolist() == [1.0]
    assert store.stats()["write_calls"] == 4


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


def test_https_with_the_configured_certificate(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import datetime
    import http.client
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    store = new_store()
    with metricstore.serve(store, "127.0.0.1:0", tls=(cert_file, key_file)) as server:
        assert server.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert_file))
        context.check_hostname = False
        conn = http.client.HTTPSConnection(*server.address, context=context, timeout=30)

        def post(value: int) -> None:
            conn.request(
                "POST", "/api/write?cluster=c", f"cpu_load,hostname=h value={value} 6000\n"
            )
            reply = conn.getresponse()
            assert (reply.status, reply.read()) == (200, b"")

        post(1)
        # Plain HTTP to the TLS port gets no answer, and the server goes on.
        with socket.create_connection(server.address, timeout=30) as plain:
            plain.sendall(b"GET /api/query HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"HTTP/1.1" not in plain.recv(4096)
        post(2)
        conn.close()
    assert store.read(("cpu_load", "c/h"), 6000, 6060).values.tolist() == [2.0]
