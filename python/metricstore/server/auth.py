"""JSON Web Tokens signed with Ed25519 (``alg: EdDSA``), as cc-metric-store
and cc-backend take them: the public key is 32 raw bytes in standard
base64 (``jwt-public-key``); the signature and the time claims (``exp``,
``nbf``, ``iat``) are checked; roles and other claims are not.

Verified tokens are cached (at most :data:`CACHE_SIZE`); a cached token is
still refused once its ``exp`` has passed. The signature check uses the
``cryptography`` package (``pip install 'metricstore[serve]'``).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from typing import Any

__all__ = ["CACHE_SIZE", "TokenError", "TokenVerifier"]

CACHE_SIZE = 1024


class TokenError(ValueError):
    """A token that is malformed, wrongly signed or outside its time."""


def _segment(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError(f"token: the {what} is not base64url") from None


def _claim_time(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f'token: claim "{name}" is {value!r}, not a number of seconds')
    return float(value)


class TokenVerifier:
    """Checks tokens against one Ed25519 public key (base64 of 32 bytes)."""

    def __init__(self, public_key: str) -> None:
        try:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        except ImportError:
            raise ImportError(
                "jwt-public-key: checking tokens needs the cryptography package; "
                "pip install 'metricstore[serve]'"
            ) from None
        try:
            raw = base64.b64decode(public_key, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("jwt-public-key: not standard base64") from None
        if len(raw) != 32:
            raise ValueError(
                f"jwt-public-key: an Ed25519 public key is 32 bytes, this one is {len(raw)}"
            )
        self._key = Ed25519PublicKey.from_public_bytes(raw)
        self._cache: dict[str, float | None] = {}
        self._lock = threading.Lock()

    def check(self, token: str, now: float | None = None) -> None:
        """Returns if ``token`` is valid now; raises TokenError saying why not."""
        when = time.time() if now is None else now
        with self._lock:
            cached = token in self._cache
            expires = self._cache.get(token)
        if cached:
            if expires is not None and when > expires:
                with self._lock:
                    self._cache.pop(token, None)
                raise TokenError("token: token is expired")
            return
        expires = self._verify(token, when)
        with self._lock:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[token] = expires

    def _verify(self, token: str, when: float) -> float | None:
        from cryptography.exceptions import InvalidSignature

        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("token: not a JWT (three base64url parts joined by '.')")
        try:
            header = json.loads(_segment(parts[0], "header"))
            claims = json.loads(_segment(parts[1], "payload"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise TokenError("token: the header or payload is not JSON") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise TokenError("token: the header and payload must be JSON objects")
        if header.get("alg") != "EdDSA":
            raise TokenError(
                f"token: signing method {header.get('alg')!r} refused; only EdDSA (Ed25519)"
            )
        try:
            self._key.verify(_segment(parts[2], "signature"), f"{parts[0]}.{parts[1]}".encode())
        except InvalidSignature:
            raise TokenError("token: signature is invalid") from None
        expires = _claim_time(claims, "exp")
        if expires is not None and when > expires:
            raise TokenError("token: token is expired")
        not_before = _claim_time(claims, "nbf")
        if not_before is not None and when < not_before:
            raise TokenError("token: token is not valid yet")
        issued = _claim_time(claims, "iat")
        if issued is not None and when < issued:
            raise TokenError("token: token used before issued")
        return expires
