"""cc-metric-store's ``config.json``, read into a :class:`ServeConfig`.

Both layouts cc-metric-store has used are read: the current one (a
``main`` section with ``addr``, ``jwt-public-key`` and the TLS files; a
``metric-store`` section with ``retention-in-memory``, ``memory-cap``,
``checkpoints.directory`` and ``nats-subscriptions``; a top-level ``nats``
object) and the older one (``http-api.address``, top-level
``jwt-public-key``, ``checkpoints``, ``retention-in-memory`` and a ``nats``
list with its subscriptions). Both define metrics the same way:
``"metrics": {"<name>": {"frequency": 60, "aggregation": "sum" | "avg" | null}}``.

Relative paths are relative to the directory of ``config.json``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NatsSubscription", "ServeConfig", "parse_addr", "read_config"]

DEFAULT_ADDR = "127.0.0.1:8082"

_GO_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class NatsSubscription:
    """A NATS subject whose messages are line-protocol batches; lines
    without a cluster tag go to ``cluster``."""

    subject: str
    cluster: str | None


@dataclass(frozen=True)
class ServeConfig:
    """What ``serve`` takes from cc-metric-store's configuration."""

    addr: str = DEFAULT_ADDR
    jwt_public_key: str | None = None
    https_cert_file: Path | None = None
    https_key_file: Path | None = None
    metrics: dict[str, tuple[int, str]] = field(default_factory=dict)
    retention_seconds: float | None = None
    memory_cap_bytes: int | None = None
    store_dir: Path | None = None
    nats_address: str | None = None
    nats_username: str | None = None
    nats_password: str | None = None
    nats_creds_file: Path | None = None
    nats_subscriptions: tuple[NatsSubscription, ...] = ()


def _duration(value: object, where: str) -> float:
    """Seconds of a Go duration ("48h", "1h30m") or of plain seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f'{where} is {value!r}, not a duration such as "48h"')
    body = value.lstrip("+-")
    parts = _GO_DURATION.findall(body)
    if body != "0" and (not body or "".join(n + u for n, u in parts) != body):
        raise ValueError(f'{where} is {value!r}, not a duration such as "48h" or "1h30m"')
    seconds = sum(float(n) * _GO_UNITS[u] for n, u in parts)
    return -seconds if value.startswith("-") else seconds


def _section(config: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = config.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f'{where}: "{name}" is {value!r}, not an object')
    return value


def _text(value: object, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where} is {value!r}, not a string")
    return value


def _metrics(section: dict[str, Any], where: str) -> dict[str, tuple[int, str]]:
    metrics: dict[str, tuple[int, str]] = {}
    for name, entry in section.items():
        if not isinstance(entry, dict):
            raise ValueError(f'{where}: metric "{name}" is {entry!r}, not an object')
        frequency = entry.get("frequency")
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency <= 0:
            raise ValueError(
                f'{where}: metric "{name}" has frequency {frequency!r}; expected a positive '
                "integer of seconds"
            )
        aggregation = entry.get("aggregation")
        if aggregation in (None, ""):
            aggregation = "none"
        if aggregation not in ("sum", "avg", "none"):
            raise ValueError(
                f'{where}: metric "{name}" has aggregation {aggregation!r}; expected "sum", '
                '"avg" or null'
            )
        metrics[name] = (frequency, aggregation)
    return metrics


def _subscriptions(entries: object, where: str) -> list[NatsSubscription]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ValueError(f"{where} is {entries!r}, not a list")
    found = []
    for i, entry in enumerate(entries):
        subject = entry.get("subscribe-to") if isinstance(entry, dict) else None
        if not isinstance(subject, str) or not subject:
            raise ValueError(f'{where}[{i}] lacks "subscribe-to"')
        found.append(NatsSubscription(subject, _text(entry.get("cluster-tag"), f"{where}[{i}]")))
    return found


def read_config(path: str | Path) -> ServeConfig:
    """Reads cc-metric-store's ``config.json`` (see the module docs); a
    missing file or a bad value raises ValueError naming the key."""
    path = Path(path)
    where = f"config {path}"
    try:
        config = json.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"{where}: cannot read it: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{where}: not a JSON object")
    base = path.parent

    def resolve(value: object, key: str) -> Path | None:
        text = _text(value, f"{where}: {key}")
        return None if text is None else base / text

    main = _section(config, "main", where)
    old_http = _section(config, "http-api", where)
    store = _section(config, "metric-store", where)
    checkpoints = _section(store, "checkpoints", where) or _section(config, "checkpoints", where)
    addr = (
        _text(main.get("addr"), f'{where}: "main.addr"')
        or _text(old_http.get("address"), f'{where}: "http-api.address"')
        or _text(config.get("http-api-address"), f'{where}: "http-api-address"')
        or DEFAULT_ADDR
    )
    retention = store.get("retention-in-memory", config.get("retention-in-memory"))
    cap = store.get("memory-cap")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int | float) or cap < 0):
        raise ValueError(f'{where}: "metric-store.memory-cap" is {cap!r}, not a number of GB')

    nats_address = nats_user = nats_password = nats_creds = None
    subscriptions = _subscriptions(
        store.get("nats-subscriptions"), f'{where}: "metric-store.nats-subscriptions"'
    )
    nats = config.get("nats")
    if isinstance(nats, list):  # the older layout: servers with their subscriptions
        nats = nats[0] if nats else None
        if isinstance(nats, dict):
            subscriptions += _subscriptions(nats.get("subscriptions"), f'{where}: "nats"')
    if isinstance(nats, dict):
        nats_address = _text(nats.get("address"), f'{where}: "nats.address"')
        nats_user = _text(nats.get("username"), f'{where}: "nats.username"')
        nats_password = _text(nats.get("password"), f'{where}: "nats.password"')
        nats_creds = _text(nats.get("creds-file-path"), f'{where}: "nats.creds-file-path"')
    elif nats is not None:
        raise ValueError(f'{where}: "nats" is {nats!r}, not an object')

    return ServeConfig(
        addr=addr,
        jwt_public_key=_text(
            main.get("jwt-public-key", config.get("jwt-public-key")), f'{where}: "jwt-public-key"'
        ),
        https_cert_file=resolve(
            main.get("https-cert-file", old_http.get("https-cert-file")), "https-cert-file"
        ),
        https_key_file=resolve(
            main.get("https-key-file", old_http.get("https-key-file")), "https-key-file"
        ),
        metrics=_metrics(_section(config, "metrics", where), where),
        retention_seconds=None
        if retention is None
        else _duration(retention, f'{where}: "retention-in-memory"'),
        memory_cap_bytes=None if not cap else int(cap * 1_000_000_000),
        store_dir=resolve(checkpoints.get("directory"), "checkpoints.directory"),
        nats_address=nats_address,
        nats_username=nats_user,
        nats_password=nats_password,
        nats_creds_file=resolve(nats_creds, "nats.creds-file-path"),
        nats_subscriptions=tuple(subscriptions),
    )


def parse_addr(addr: str) -> tuple[str, int]:
    """``host:port`` as Go writes it (``:8082`` is every interface,
    ``[::1]:8082`` IPv6) into (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"addr: {addr!r} is not host:port (such as 127.0.0.1:8082)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (host or "0.0.0.0", int(port))
