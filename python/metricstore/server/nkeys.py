"""NATS credentials: NKEYs (Ed25519 keys written as base32 text with a
type prefix and a CRC-16 check) and creds files, for the ``jwt``/``nkey``
and ``sig`` fields of a NATS ``CONNECT``.

An NKEY is base32 (RFC 4648, no padding) of a prefix byte, the 32-byte key
and a CRC-16/XMODEM of both, little-endian: public keys start with ``U``
(user), ``A`` (account), ``O`` (operator); a seed (the private key) has
two prefix bytes and starts with ``S`` then its type letter (``SU...``).
A creds file, as ``nsc`` writes it, holds a user JWT and that user's seed,
each between ``-----BEGIN ...-----`` and ``------END ...------`` lines. A
file that holds only the seed gives NKEY auth (``nkey`` instead of
``jwt``). The client proves the key by signing the server's ``INFO``
nonce; the signature goes base64url without padding.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Credentials", "decode_seed", "encode_public", "encode_seed", "read_creds"]

#: The type prefixes (the first byte's top five bits).
PREFIXES = {"operator": 14 << 3, "account": 0, "user": 20 << 3}
_SEED = 18 << 3

_BLOCK = re.compile(
    rb"-{3,}[^\n]*BEGIN ([^\n]*?)-{3,}\r?\n\s*([A-Za-z0-9_.=-]+)\s*\r?\n-{3,}[^\n]*END[^\n]*-{3,}"
)


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM (polynomial 0x1021, start 0), as NKEYs use it."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _encode(raw: bytes) -> str:
    raw += crc16(raw).to_bytes(2, "little")
    return base64.b32encode(raw).decode().rstrip("=")


def _decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise ValueError(f"{what}: not base32 text") from None
    if len(raw) < 3 or crc16(raw[:-2]) != int.from_bytes(raw[-2:], "little"):
        raise ValueError(f"{what}: its checksum does not match (a damaged or mistyped key)")
    return raw[:-2]


def encode_public(kind: str, key: bytes) -> str:
    """The NKEY text of a 32-byte Ed25519 public key of ``kind`` (user,
    account or operator)."""
    return _encode(bytes([PREFIXES[kind]]) + key)


def encode_seed(kind: str, seed: bytes) -> str:
    """The NKEY seed text (``S``...) of a 32-byte Ed25519 private key."""
    prefix = PREFIXES[kind]
    return _encode(bytes([_SEED | prefix >> 5, (prefix & 31) << 3]) + seed)


def decode_seed(text: str, what: str = "seed") -> tuple[str, bytes]:
    """(kind, 32-byte private key) of an NKEY seed; ValueError naming
    ``what`` if it is not one."""
    raw = _decode(text.strip(), what)
    if len(raw) != 34 or raw[0] & 0xF8 != _SEED:
        raise ValueError(f"{what}: not an NKEY seed (those start with S)")
    prefix = (raw[0] & 7) << 5 | raw[1] >> 3
    kinds = {v: k for k, v in PREFIXES.items()}
    if prefix not in kinds:
        raise ValueError(f"{what}: a seed of an unknown key type")
    return kinds[prefix], raw[2:]


@dataclass(frozen=True)
class Credentials:
    """A user's JWT (None for NKEY auth) and Ed25519 private key (a
    ``cryptography`` Ed25519PrivateKey), read from ``source``."""

    jwt: str | None
    key: Any
    source: str

    def public_key(self) -> str:
        """The user's NKEY (``U``...)."""
        return encode_public("user", self.key.public_key().public_bytes_raw())

    def sign(self, nonce: str) -> str:
        """The signature of ``nonce``, base64url without padding."""
        signature = self.key.sign(nonce.encode())
        return base64.urlsafe_b64encode(signature).decode().rstrip("=")


def read_creds(path: str | Path) -> Credentials:
    """The credentials in a creds file (a user JWT and seed, or a seed
    alone); ValueError naming the file and what is wrong with it."""
    where = f"creds file {str(path)!r}"
    try:
        text = Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"{where}: cannot be read: {error.strerror or error}") from None
    blocks = {
        name.decode(errors="replace").strip().upper(): value.decode()
        for name, value in _BLOCK.findall(text)
    }
    jwt = next((v for k, v in blocks.items() if k.endswith("JWT")), None)
    seed_text = next((v for k, v in blocks.items() if k.endswith("SEED")), None)
    if seed_text is None:
        # nats.go also takes a bare seed on a line of its own.
        bare = re.search(rb"^\s*(SU[A-Z2-7]+)\s*$", text, re.MULTILINE)
        if bare is None:
            raise ValueError(f"{where}: holds no NKEY seed (-----BEGIN USER NKEY SEED-----)")
        seed_text = bare.group(1).decode()
    kind, seed = decode_seed(seed_text, f"{where}: the seed")
    if kind != "user":
        raise ValueError(f"{where}: the seed is an {kind} key's, not a user's")
    if jwt is not None and jwt.count(".") != 2:
        raise ValueError(f"{where}: the user JWT is not header.payload.signature")
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError:
        raise ValueError(
            f"{where}: signing needs the cryptography package (pip install 'metricstore[serve]')"
        ) from None
    return Credentials(jwt, Ed25519PrivateKey.from_private_bytes(seed), where)
