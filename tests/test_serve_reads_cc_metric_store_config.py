"""`metricstore serve` reads cc-metric-store's config.json in its current
layout and in the older one, and names the key of a bad value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metricstore.server import NatsSubscription, read_config
from metricstore.server.config import parse_addr


def write(tmp_path: Path, config: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_the_current_layout(tmp_path: Path) -> None:
    config = read_config(write(tmp_path, {
        "main": {"addr": "0.0.0.0:8082", "jwt-public-key": "a2V5", "https-cert-file": "c.pem",
                 "https-key-file": "k.pem", "user": "ccms"},
        "metrics": {"flops_any": {"frequency": 60, "aggregation": "sum"},
                    "cpu_load": {"frequency": 10, "aggregation": None}},
        "metric-store": {"retention-in-memory": "48h", "memory-cap": 100,
                         "checkpoints": {"file-format": "wal", "directory": "./var/cp"},
                         "nats-subscriptions": [{"subscribe-to": "hpc", "cluster-tag": "fritz"},
                                                {"subscribe-to": "any"}]},
        "nats": {"address": "nats://127.0.0.1:4222", "username": "u", "password": "p",
                 "creds-file-path": "nats/user.creds"},
    }))  # fmt: skip
    assert config.addr == "0.0.0.0:8082"
    assert config.jwt_public_key == "a2V5"
    assert (config.https_cert_file, config.https_key_file) == (
        tmp_path / "c.pem",
        tmp_path / "k.pem",
    )
    assert config.metrics == {"flops_any": (60, "sum"), "cpu_load": (10, "none")}
    assert config.retention_seconds == 48 * 3600
    assert config.memory_cap_bytes == 100_000_000_000
    assert config.store_dir == tmp_path / "var" / "cp"
    assert config.nats_subscriptions == (
        NatsSubscription("hpc", "fritz"),
        NatsSubscription("any", None),
    )
    assert (config.nats_address, config.nats_username, config.nats_password) == (
        "nats://127.0.0.1:4222", "u", "p")  # fmt: skip
    assert config.nats_creds_file == tmp_path / "nats" / "user.creds"


def test_the_older_layout(tmp_path: Path) -> None:
    config = read_config(write(tmp_path, {
        "metrics": {"clock": {"frequency": 60, "aggregation": "avg"}},
        "checkpoints": {"interval": "12h", "directory": "./var/checkpoints", "restore": "48h"},
        "http-api": {"address": "localhost:8081", "https-cert-file": None},
        "retention-in-memory": "1h30m",
        "nats": [{"address": "nats://h:4222", "subscriptions": [{"subscribe-to": "s",
                                                                 "cluster-tag": "c"}]}],
        "jwt-public-key": "a2V5",
    }))  # fmt: skip
    assert config.addr == "localhost:8081"
    assert config.https_cert_file is None
    assert config.retention_seconds == 5400
    assert config.store_dir == tmp_path / "var" / "checkpoints"
    assert config.nats_address == "nats://h:4222"
    assert config.nats_subscriptions == (NatsSubscription("s", "c"),)
    assert config.jwt_public_key == "a2V5"
    defaults = read_config(write(tmp_path, {}))
    assert (defaults.addr, defaults.store_dir, defaults.metrics) == ("127.0.0.1:8082", None, {})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"metrics": {"x": {"frequency": 0}}}, 'metric "x" has frequency 0'),
        ({"metrics": {"x": {"frequency": 60, "aggregation": "max"}}}, "has aggregation 'max'"),
        (
            {"metric-store": {"retention-in-memory": "2 days"}},
            "\"retention-in-memory\" is '2 days'",
        ),
        ({"metric-store": {"memory-cap": "lots"}}, "\"metric-store.memory-cap\" is 'lots'"),
        ({"metric-store": {"nats-subscriptions": [{"cluster-tag": "c"}]}}, 'lacks "subscribe-to"'),
        ({"main": []}, '"main" is [], not an object'),
        ([1], "not a JSON object"),
    ],
)
def test_a_bad_value_is_named(tmp_path: Path, config: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        read_config(write(tmp_path, config))
    assert message in str(caught.value)


def test_addresses_as_go_writes_them() -> None:
    assert parse_addr(":8082") == ("0.0.0.0", 8082)
    assert parse_addr("localhost:8082") == ("localhost", 8082)
    assert parse_addr("[::1]:9") == ("::1", 9)
    with pytest.raises(ValueError, match="addr: '8082' is not host:port"):
        parse_addr("8082")
