"""`metricstore serve` signs in to NATS with a creds file, as
cc-metric-store's `nats.creds-file-path`: a user JWT in operator mode, or
an NKEY alone, with the server's nonce signed by the user's seed. Debian's
`nats-server` checks the keys, JWTs and signatures, so a mistake in how
they are written is refused by it, not by our own code. Wrong credentials
and broken creds files give errors that say what is wrong."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_serve_takes_line_protocol_from_nats import NATS, free_port, start_nats, wait_for

import metricstore
from metricstore.server import NatsSubscription, ServeConfig
from metricstore.server.nkeys import Credentials, encode_public, encode_seed, read_creds

pytestmark = pytest.mark.skipif(NATS is None, reason="nats-server is not installed")


class Key:
    """An Ed25519 key pair of one NKEY type."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.seed = os.urandom(32)
        self.private = Ed25519PrivateKey.from_private_bytes(self.seed)
        self.public = encode_public(kind, self.private.public_key().public_bytes_raw())
        self.seed_text = encode_seed(kind, self.seed)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(subject: Key, issuer: Key, nats: dict[str, object], name: str) -> str:
    """A NATS JWT (version 2) about ``subject``, signed by ``issuer``."""
    claims = {
        "jti": b64url(os.urandom(12)), "iat": int(time.time()), "iss": issuer.public,
        "name": name, "sub": subject.public, "nats": {**nats, "version": 2},
    }  # fmt: skip
    head = b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = b64url(json.dumps(claims).encode())
    signature = issuer.private.sign(f"{head}.{body}".encode())
    return f"{head}.{body}.{b64url(signature)}"


UNLIMITED = {"subs": -1, "data": -1, "payload": -1}


def user_jwt(user: Key, account: Key) -> str:
    return jwt(user, account, {"type": "user", "pub": {}, "sub": {}, **UNLIMITED}, "collector")


def creds_text(seed_text: str, user_jwt: str | None = None) -> str:
    """A creds file as `nsc` writes it (the JWT part only if given)."""
    parts = []
    if user_jwt is not None:
        parts.append(
            f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        )
    parts.append(
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed_text}\n------END USER NKEY SEED------\n"
    )
    return "".join(parts)


def start_configured(tmp_path: Path, port: int, text: str) -> subprocess.Popen[bytes]:
    conf = tmp_path / "nats.conf"
    conf.write_text(text)
    return start_nats(port, "-c", str(conf))


def publish(port: int, creds: Credentials | None, data: bytes, user: str | None = None) -> None:
    """Publishes one message on "hpc" (signing in with ``creds`` or as
    ``user``) and waits for the server's PONG."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        reader = s.makefile("rb")
        info = json.loads(reader.readline()[5:])
        connect: dict[str, object] = {"verbose": False}
        if creds is not None:
            connect["jwt"] = creds.jwt
            connect["sig"] = creds.sign(info["nonce"])
        if user is not None:
            connect.update(user=user, **{"pass": "secret"})
        s.sendall(b"CONNECT %s\r\nPUB hpc %d\r\n%s\r\nPING\r\n" % (
            json.dumps(connect).encode(), len(data), data))  # fmt: skip
        assert reader.readline() == b"PONG\r\n"


def settings(port: int, creds: Path) -> ServeConfig:
    return ServeConfig(
        nats_address=f"nats://127.0.0.1:{port}",
        nats_creds_file=creds,
        nats_subscriptions=(NatsSubscription("hpc", "c"),),
    )


def new_store() -> metricstore.Store:
    store = metricstore.Store()
    store.define_metric("cpu_load", 60, "avg")
    return store


@pytest.fixture
def operator_mode(tmp_path: Path) -> Iterator[tuple[int, Key]]:
    """A nats-server in operator mode trusting one operator and one
    account (preloaded); yields its port and the account key."""
    operator, account = Key("operator"), Key("account")
    operator_jwt = jwt(operator, operator, {"type": "operator"}, "site")
    limits = {**UNLIMITED, "imports": -1, "exports": -1, "wildcards": True, "conn": -1,
              "leaf": -1}  # fmt: skip
    account_jwt = jwt(account, operator, {"type": "account", "limits": limits}, "metrics")
    (tmp_path / "operator.jwt").write_text(operator_jwt)
    port = free_port()
    process = start_configured(
        tmp_path, port,
        f'operator: "{tmp_path / "operator.jwt"}"\nresolver: MEMORY\n'
        f'resolver_preload: {{\n  {account.public}: "{account_jwt}"\n}}\n',
    )  # fmt: skip
    yield port, account
    process.kill()
    process.wait()


def test_a_user_jwt_signs_in_in_operator_mode(
    tmp_path: Path, operator_mode: tuple[int, Key]
) -> None:
    port, account = operator_mode
    user = Key("user")
    path = tmp_path / "collector.creds"
    path.write_text(creds_text(user.seed_text, user_jwt(user, account)))
    store = new_store()
    with metricstore.serve(store, "127.0.0.1:0", nats=settings(port, path)) as server:
        assert server.nats is not None and server.nats.wait_connected(30)
        assert server.nats.last_error is None
        publish(port, read_creds(path), b"cpu_load,hostname=h value=7 6000\n")
        wait_for(lambda: server.stats()["nats"]["messages"] == 1)
    assert store.read(("cpu_load", "c/h"), 6000, 6060).values.tolist() == [7.0]


def test_a_jwt_of_an_untrusted_account_is_refused_by_name(
    tmp_path: Path, operator_mode: tuple[int, Key]
) -> None:
    port, _ = operator_mode
    user, stranger = Key("user"), Key("account")
    path = tmp_path / "collector.creds"
    path.write_text(creds_text(user.seed_text, user_jwt(user, stranger)))
    with metricstore.serve(new_store(), "127.0.0.1:0", nats=settings(port, path)) as server:
        subscriber = server.nats
        assert subscriber is not None
        wait_for(lambda: subscriber.last_error is not None)
        assert not subscriber.wait_connected(0)
        error = subscriber.last_error
    assert f"the server refused the user JWT of creds file {str(path)!r}" in error
    assert f"(user {user.public})" in error
    assert "Authorization Violation" in error


def test_an_nkey_alone_signs_in_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    user, other = Key("user"), Key("user")
    port = free_port()
    process = start_configured(
        tmp_path, port,
        f'authorization {{\n  users = [\n    {{nkey: "{user.public}"}}\n'
        '    {user: "publisher", password: "secret"}\n  ]\n}\n',
    )  # fmt: skip
    try:
        good, wrong = tmp_path / "good.creds", tmp_path / "wrong.creds"
        good.write_text(creds_text(user.seed_text))
        wrong.write_text(creds_text(other.seed_text))
        store = new_store()
        with metricstore.serve(store, "127.0.0.1:0", nats=settings(port, good)) as server:
            assert server.nats is not None and server.nats.wait_connected(30)
            publish(port, None, b"cpu_load,hostname=h value=2.5 6000\n", user="publisher")
            wait_for(lambda: server.stats()["nats"]["messages"] == 1)
        assert store.read(("cpu_load", "c/h"), 6000, 6060).values.tolist() == [2.5]
        with metricstore.serve(new_store(), "127.0.0.1:0", nats=settings(port, wrong)) as server:
            subscriber = server.nats
            assert subscriber is not None
            wait_for(lambda: subscriber.last_error is not None)
            error = subscriber.last_error
            assert not subscriber.wait_connected(0)
        assert f"refused the NKEY of creds file {str(wrong)!r} (user {other.public})" in error
        assert "Authorization Violation" in error
    finally:
        process.kill()
        process.wait()


def test_a_broken_creds_file_stops_serve_with_what_is_wrong(tmp_path: Path) -> None:
    user = Key("user")
    # One character in the middle changed (the last one holds padding bits too).
    text = user.seed_text
    damaged = text[:20] + ("A" if text[20] != "A" else "B") + text[21:]
    cases = {
        "missing.creds": None,
        "empty.creds": "nothing here\n",
        "damaged.creds": creds_text(damaged),
        "account.creds": creds_text(Key("account").seed_text),
        "badjwt.creds": creds_text(user.seed_text, "not-a-jwt"),
    }
    expected = {
        "missing.creds": "cannot be read",
        "empty.creds": "holds no NKEY seed",
        "damaged.creds": "its checksum does not match",
        "account.creds": "the seed is an account key's, not a user's",
        "badjwt.creds": "the user JWT is not header.payload.signature",
    }
    port = free_port()  # nothing listens: the file is read before connecting
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(ValueError) as caught:
            metricstore.serve(new_store(), "127.0.0.1:0", nats=settings(port, path))
        assert f"creds file {str(path)!r}: " in str(caught.value)
        assert expected[name] in str(caught.value)
