"""`metricstore.serve` speaks cc-metric-store's HTTP API: golden JSON for
every endpoint, asked the way cc-backend's client asks (GET with a JSON
body, `?version=v2`), with and without a trailing slash; writes answer 200
only for lines that are stored, and report bad lines without losing the
good ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
from serve_client import Client

import metricstore
from metricstore import _core

LINES = """\
cpu_load,hostname=f0101,type=node value=1.25 6000
cpu_load,hostname=f0101 value=2.5 6060
flops_any,hostname=f0101,type=hwthread,type-id=0 value=10 6000
flops_any,hostname=f0101,type=hwthread,type-id=0 value=11 6060
flops_any,hostname=f0101,type=hwthread,type-id=1 value=20 6000
flops_any,hostname=f0101,type=hwthread,type-id=1 value=0.0625 6060
mem_used,cluster=alex,hostname=a0001 value=1e+06 6000
cpu_load,hostname=f0102 value=7i 6000
ib_recv,hostname=f0101 value=1 6000
"""


def new_store() -> metricstore.Store:
    store = metricstore.Store()
    store.define_metric("cpu_load", 60, "avg")
    store.define_metric("flops_any", 60, "sum")
    store.define_metric("mem_used", 60, "none")
    return store


@pytest.fixture
def served():
    store = new_store()
    server = metricstore.serve(store, "127.0.0.1:0")
    client = Client(server.url)
    status, body = client.write(LINES, cluster="fritz")
    assert (status, body) == (200, b"")
    yield server, client
    client.close()
    server.close()


NODE = '"from":6000,"to":6180,"resolution":60'
NOT_FOUND = (
    '{"error":"metric or host not found","from":0,"to":0,"resolution":0,'
    '"avg":0.00,"min":0.00,"max":0.00}'
)

QUERIES = {
    "cluster": "fritz",
    "from": 6000,
    "to": 6180,
    "with-stats": True,
    "with-data": True,
    "queries": [
        {"metric": "cpu_load", "host": "f0101", "resolution": 60},
        {"metric": "flops_any", "host": "f0101", "type": "hwthread",
         "type-ids": ["0", "1", "5"], "resolution": 60, "aggreg": False},
        {"metric": "flops_any", "host": "f0101", "type": "hwthread",
         "type-ids": ["0", "1"], "resolution": 60, "aggreg": True},
        {"metric": "flops_any", "host": "f0101", "resolution": 60},
        {"metric": "cpu_load", "host": "f0102", "resolution": 60},
        {"metric": "nope", "host": "f0101", "resolution": 60},
    ],
}  # fmt: skip

GOLDEN = (
    '{"results":['
    f'[{{"data":[1.250,2.500,null],{NODE},"avg":1.88,"min":1.25,"max":2.50}}],'
    f'[{{"data":[10.000,11.000,null],{NODE},"avg":10.50,"min":10.00,"max":11.00}},'
    f'{{"data":[20.000,0.062,null],{NODE},"avg":10.03,"min":0.06,"max":20.00}},'
    f"{NOT_FOUND}],"
    f'[{{"data":[30.000,11.062,null],{NODE},"avg":20.53,"min":11.06,"max":30.00}}],'
    f'[{{"data":[30.000,11.062,null],{NODE},"avg":20.53,"min":11.06,"max":30.00}}],'
    f'[{{"data":[7.000,null,null],{NODE},"avg":7.00,"min":7.00,"max":7.00}}],'
    '[{"error":"unknown metric: nope","from":0,"to":0,"resolution":0,'
    '"avg":0.00,"min":0.00,"max":0.00}]'
    "]}\n"
)


def test_a_job_query_answers_byte_for_byte_with_three_and_two_decimals(served) -> None:
    _server, client = served
    status, body = client.query(QUERIES)
    assert status == 200
    assert body.decode() == GOLDEN
    # The same body by POST and with a trailing slash.
    for method, path in (("POST", "/api/query"), ("GET", "/api/query/")):
        status, again, headers = client.request(method, path, json.dumps(QUERIES).encode())
        assert (status, again) == (200, body)
        assert headers["content-type"] == "application/json"


def test_strict_compatibility_leaves_not_found_entries_out() -> None:
    store = new_store()
    with metricstore.serve(store, "127.0.0.1:0", strict=True) as server:
        client = Client(server.url)
        assert client.write(LINES, cluster="fritz") == (200, b"")
        status, body = client.query(QUERIES)
    assert status == 200
    assert body.decode() == GOLDEN.replace("," + NOT_FOUND, "")


def test_flags_padding_scaling_and_resolution(served) -> None:
    _server, client = served
    base = {"cluster": "fritz", "from": 5880, "to": 6240}
    one = {"metric": "cpu_load", "host": "f0101"}

    def ask(request: dict[str, object]) -> bytes:
        status, body = client.query(request)
        assert status == 200, body
        return body

    # Padding fills the whole range; without it, the data is trimmed to the samples.
    body = ask({**base, "queries": [one]})
    assert body == (
        b'{"results":[[{"data":[null,null,1.250,2.500,null,null],"from":5880,"to":6240,'
        b'"resolution":60,"avg":1.88,"min":1.25,"max":2.50}]]}\n'
    )
    body = ask({**base, "queries": [one], "with-padding": False})
    assert body == (
        b'{"results":[[{"data":[1.250,2.500],"from":6000,"to":6120,'
        b'"resolution":60,"avg":1.88,"min":1.25,"max":2.50}]]}\n'
    )
    # Without stats the fields are Go's zero value; without data there is none.
    body = ask({**base, "queries": [one], "with-stats": False, "with-data": False})
    assert body == (
        b'{"results":[[{"from":5880,"to":6240,"resolution":60,'
        b'"avg":0.00,"min":0.00,"max":0.00}]]}\n'
    )
    # scale-by multiplies data and stats (0 and 1 leave them).
    body = ask({**base, "queries": [{**one, "scale-by": 0.5}],
                                 "with-padding": False})  # fmt: skip
    assert body == (
        b'{"results":[[{"data":[0.625,1.250],"from":6000,"to":6120,'
        b'"resolution":60,"avg":0.94,"min":0.62,"max":1.25}]]}\n'
    )
    # resolution 120 averages pairs of slots on a 120 s grid; 90 is refused per entry.
    _status, body = client.query({**base, "queries": [{**one, "resolution": 120},
                                                     {**one, "resolution": 90}]})  # fmt: skip
    assert body == (
        b'{"results":[[{"data":[null,1.875,null],"from":5880,"to":6240,'
        b'"resolution":120,"avg":1.88,"min":1.88,"max":1.88}],'
        b'[{"error":"resolution 90 is not a multiple of the frequency 60 of \\"cpu_load\\"",'
        b'"from":0,"to":0,"resolution":0,"avg":0.00,"min":0.00,"max":0.00}]]}\n'
    )


def test_a_name_the_store_refuses_is_an_entry_with_its_error(served) -> None:
    _server, client = served
    status, body = client.query(
        {"cluster": "fritz", "from": 6000, "to": 6060,
         "queries": [{"metric": "cpu_load", "host": ".."},
                     {"metric": "cpu_load", "host": "f0102"}]}
    )  # fmt: skip
    assert status == 200
    first, second = json.loads(body)["results"]
    refused = "path: invalid path component 1 \"..\": '.' and '..' are not allowed"
    assert first == [{"error": refused, "from": 0, "to": 0, "resolution": 0,
                      "avg": 0, "min": 0, "max": 0}]  # fmt: skip
    assert second == [{"data": [7.0], "from": 6000, "to": 6060, "resolution": 60,
                       "avg": 7.0, "min": 7.0, "max": 7.0}]  # fmt: skip


def test_for_all_nodes_echoes_the_queries_it_made(served) -> None:
    _server, client = served
    status, body = client.query(
        {"cluster": "fritz", "from": 6000, "to": 6120, "for-all-nodes": ["cpu_load", "mem_used"]}
    )
    assert status == 200
    echo = '{{"metric":"{m}","host":"{h}","resolution":0,"aggreg":false}}'
    queries = [echo.format(m=m, h=h) for h in ("f0101", "f0102") for m in ("cpu_load", "mem_used")]
    assert body.decode() == (
        '{"queries":[' + ",".join(queries) + '],"results":['
        '[{"data":[1.250,2.500],"from":6000,"to":6120,"resolution":60,'
        '"avg":1.88,"min":1.25,"max":2.50}],'
        f"[{NOT_FOUND}],"
        '[{"data":[7.000,null],"from":6000,"to":6120,"resolution":60,'
        '"avg":7.00,"min":7.00,"max":7.00}],'
        f"[{NOT_FOUND}]"
        "]}\n"
    )


def test_for_all_nodes_sees_hosts_written_after_an_earlier_query(served) -> None:
    _server, client = served
    request = {"cluster": "fritz", "from": 6000, "to": 6060, "for-all-nodes": ["cpu_load"],
               "with-data": False, "with-stats": False}  # fmt: skip

    def hosts() -> list[str]:
        status, body = client.query(request)
        assert status == 200
        return [q["host"] for q in json.loads(body)["queries"]]

    assert hosts() == ["f0101", "f0102"]
    assert client.write("cpu_load,hostname=f0001 value=1 6000\n", cluster="fritz") == (200, b"")
    assert client.write("cpu_load,hostname=z9 value=1 6000\n", cluster="other") == (200, b"")
    assert hosts() == ["f0001", "f0101", "f0102"]


def test_healthcheck_answers_with_capitalised_keys_and_a_json_string(served) -> None:
    _server, client = served
    request = {"cluster": "fritz", "nodes": ["f0102", "f0101", "x9"],
               "metric-names": ["cpu_load", "mem_used"]}  # fmt: skip
    status, body, _ = client.request("GET", "/api/healthcheck", json.dumps(request).encode())
    assert status == 200
    # The samples are from 1970: every metric that has data is stale.
    assert body.decode() == (
        '{"f0101":{"State":"failed","HealthMetrics":'
        '"{\\"degraded\\":[\\"cpu_load\\"],\\"missing\\":[\\"mem_used\\"]}"},'
        '"f0102":{"State":"failed","HealthMetrics":'
        '"{\\"degraded\\":[\\"cpu_load\\"],\\"missing\\":[\\"mem_used\\"]}"},'
        '"x9":{"State":"failed","HealthMetrics":""}}\n'
    )
    status, body, _ = client.request("GET", "/api/healthcheck/", b'{"cluster":"fritz","host":1}')
    assert status == 400
    assert json.loads(body) == {
        "status": "Bad Request",
        "error": 'parsing request body failed: healthcheck: unknown field "host"',
    }


def test_fresh_data_makes_a_host_full() -> None:
    import time

    store = new_store()
    now = int(time.time())
    with metricstore.serve(store, "127.0.0.1:0") as server:
        client = Client(server.url)
        assert client.write(f"cpu_load,hostname=n1 value=1 {now}\n", cluster="c") == (200, b"")
        _status, body, _ = client.request(
            "GET", "/api/healthcheck",
            b'{"cluster":"c","nodes":["n1"],"metric-names":["cpu_load"]}',
        )  # fmt: skip
    assert (
        body == b'{"n1":{"State":"full","HealthMetrics":"{\\"degraded\\":[],\\"missing\\":[]}"}}\n'
    )


def test_debug_dumps_the_tree_below_a_selector(served) -> None:
    _server, client = served
    status, body, _ = client.request("GET", "/api/debug?selector=fritz:f0101")
    assert status == 200
    assert json.loads(body) == {
        "data": {
            "cpu_load": [{"start": 6000, "len": 2, "end": 6120}],
            "hwthread0": {"flops_any": [{"start": 6000, "len": 2, "end": 6120}]},
            "hwthread1": {"flops_any": [{"start": 6000, "len": 2, "end": 6120}]},
        }
    }
    status, body, _ = client.request("GET", "/api/debug/?selector=fritz:nohost")
    assert status == 400
    assert json.loads(body)["error"] == "not found: ['fritz', 'nohost']"


def test_free_drops_the_older_data_of_the_selected_hosts_only(served) -> None:
    server, client = served
    store = server.store
    status, body, _ = client.request("POST", "/api/free/", b"[]")
    assert status == 400
    assert json.loads(body)["error"] == "'to' is a required query parameter"
    status, body, _ = client.request("POST", "/api/free?to=soon", b"[]")
    assert status == 400
    status, body, _ = client.request("POST", "/api/free?to=1", b'{"a":1}')
    assert status == 400
    assert body.startswith(b"free: the body must be a list")
    status, body, _ = client.request("POST", "/api/free?to=1", b"[[]]")
    assert (status, body) == (400, b"free: a selector must name at least a cluster\n")
    status, body, _ = client.request("POST", "/api/free?to=7000", b'[["fritz","nohost"]]')
    assert (status, body) == (200, b"buffers freed: 0\n")
    assert store.read(("cpu_load", "fritz/f0101"), 6000, 6120).values.tolist() == [1.25, 2.5]
    # f0101's three series lose their sample at 6000 and keep the one at
    # 6060; f0102 and alex keep everything.
    status, body, _ = client.request("POST", "/api/free?to=6060", b'[["fritz","f0101"]]')
    assert (status, body) == (200, b"buffers freed: 3\n")
    nan = np.nan
    np.testing.assert_array_equal(
        store.read(("cpu_load", "fritz/f0101"), 6000, 6120).values, [nan, 2.5]
    )
    for hw, kept in (("0", 11.0), ("1", 0.0625)):
        np.testing.assert_array_equal(
            store.read(("flops_any", f"fritz/f0101/hwthread{hw}"), 6000, 6120).values, [nan, kept]
        )
    assert store.read(("cpu_load", "fritz/f0102"), 6000, 6060).values.tolist() == [7.0]
    assert store.read(("mem_used", "alex/a0001"), 6000, 6060).values.tolist() == [1e6]
    # A deeper selector cuts only below it.
    status, body, _ = client.request(
        "POST", "/api/free?to=7000", b'[["fritz","f0101","hwthread1"]]'
    )
    assert (status, body) == (200, b"buffers freed: 1\n")
    assert np.isnan(store.read(("flops_any", "fritz/f0101/hwthread1"), 6000, 6120).values).all()
    np.testing.assert_array_equal(
        store.read(("flops_any", "fritz/f0101/hwthread0"), 6000, 6120).values, [nan, 11.0]
    )


def test_a_write_stores_the_good_lines_and_names_the_bad_ones() -> None:
    store = new_store()
    with metricstore.serve(store, "127.0.0.1:0") as server:
        client = Client(server.url)
        status, body = client.write(
            "cpu_load,hostname=h value=1 6000\n"
            "cpu_load,hostname=h value=oops 6060\n"
            "ib_recv,hostname=h value=3 6000\n"
            "cpu_load,hostname=h value=4 6120\n"
            "cpu_load value=5 6180\n",
            cluster="c",
        )
        stats = server.stats()
    assert status == 400
    assert json.loads(body) == {
        "status": "Bad Request",
        "error": "2 of 5 lines rejected, the other 2 written (1 of undefined metrics skipped): "
        'line 2: bad value: "oops" is not a number; '
        "line 5: no host: the line has no hostname (or host) tag",
    }
    assert store.read(("cpu_load", "c/h"), 6000, 6180).values.tolist()[0::2] == [1.0, 4.0]
    assert np.isnan(store.read(("cpu_load", "c/h"), 6060, 6120).values[0])
    assert (stats["lines_written"], stats["lines_rejected"], stats["lines_skipped"]) == (2, 2, 1)


def test_undefined_metrics_are_skipped_counted_and_answered_with_200() -> None:
    store = new_store()
    with metricstore.serve(store, "127.0.0.1:0") as server:
        client = Client(server.url)
        status, body, headers = client.request(
            "POST", "/api/write/?cluster=c",
            b"ib_recv,hostname=h value=1 6000\ncpu_load,hostname=h value=2 6000\n",
        )  # fmt: skip
    assert (status, body) == (200, b"")
    assert (headers["x-lines-written"], headers["x-lines-skipped"]) == ("1", "1")
    assert [m.name for m in store.metrics] == ["cpu_load", "flops_any", "mem_used"]
    assert store.read(("cpu_load", "c/h"), 6000, 6060).values.tolist() == [2.0]


def test_json_float_rows_formats_as_go_does() -> None:
    values = np.array([[0.0625, -0.0001, np.nan, np.inf, 123456.789, 1e30]], dtype=np.float32)
    [row] = _core.json_float_rows(values)
    expected = ",".join("null" if not np.isfinite(v) else f"{float(v):.3f}" for v in values[0])
    assert row == f"[{expected}]".encode()
    assert row.startswith(b"[0.062,-0.000,null,null,123456.789,")
    rng = np.random.default_rng(7)
    many = (rng.standard_normal((4, 5000)) * 10.0 ** rng.integers(-4, 9, (4, 5000))).astype(
        np.float32
    )
    for text, row_values in zip(_core.json_float_rows(many), many, strict=True):
        assert text == ("[" + ",".join(f"{float(v):.3f}" for v in row_values) + "]").encode()
    # More rows than are formatted per release of the GIL, texts of
    # different lengths in one buffer, with 2 decimals as stats use.
    tall = (rng.standard_normal((150, 7)) * 10.0 ** rng.integers(-3, 7, (150, 7))).astype(
        np.float32
    )
    tall[::5] = 5.0
    got = _core.json_float_rows(tall, 2)
    assert got == [("[" + ",".join(f"{float(v):.2f}" for v in r) + "]").encode() for r in tall]
    assert _core.json_float_rows(np.zeros((3, 0), dtype=np.float32)) == [b"[]"] * 3
    [wide] = _core.json_float_rows(np.array([[1 / 3, np.nan]]), 2)
    assert wide == b"[0.33,null]"
    with pytest.raises(ValueError, match="decimals"):
        _core.json_float_rows(values, 9)
    with pytest.raises(TypeError, match="2-D"):
        _core.json_float_rows(values[0])
