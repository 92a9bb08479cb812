"""Collectors: line protocol in cc-backend's dialect, the Collector writer,
and the health check.

Line protocol goldens cover each tag combination, precision detection and
path-name safety; a file of 100,000 mixed lines must give exact report
counts and store exactly its good lines.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import metricstore
from metricstore import ClosedError, WrongProcessError

T0 = 1_700_000_000  # a present-day epoch second, on the 10 s grid


@pytest.fixture
def store() -> metricstore.Store:
    store = metricstore.Store()
    store.define_metric("cpu_load", 10, "avg")
    store.define_metric("flops_any", 10, "sum")
    store.define_metric("mem_used", 60, "avg")
    return store


def at(store: metricstore.Store, metric: str, path: str, t: int) -> float:
    return float(store.read((metric, path), t, t + 1).values[0])


# -- line protocol -------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "path"),
    [
        ("cluster=emmy,hostname=e01", "emmy/e01"),
        ("hostname=e01,cluster=emmy", "emmy/e01"),
        ("cluster=emmy,host=e01", "emmy/e01"),
        ("cluster=emmy,hostname=e01,type=node", "emmy/e01"),
        ("cluster=emmy,hostname=e01,type=node,type-id=0", "emmy/e01"),
        ("cluster=emmy,hostname=e01,type=hwthread,type-id=17", "emmy/e01/hwthread17"),
        ("type-id=17,type=hwthread,hostname=e01,cluster=emmy", "emmy/e01/hwthread17"),
        ("cluster=emmy,hostname=e01,type=socket,type-id=1,stype=core,stype-id=9",
         "emmy/e01/socket1/core9"),
        ("cluster=emmy,hostname=e01,type=accelerator,type-id=0000:3b:00.0",
         "emmy/e01/accelerator0000:3b:00.0"),
        ("cluster=emmy,hostname=e01,unit=GHz,type=cpu,type-id=3", "emmy/e01/cpu3"),
        ("hostname=e01", "dflt/e01"),
    ],
)  # fmt: skip
def test_tags_place_each_sample_at_its_path(store: metricstore.Store, tags: str, path: str) -> None:
    report = store.ingest(f"flops_any,{tags} value=2.5 {T0}\n", default_cluster="dflt")
    assert report == metricstore.IngestReport(1, 1, [], 1)
    assert store.list_series() == [(0, "flops_any", tuple(path.split("/")))]
    assert at(store, "flops_any", path, T0) == 2.5


@pytest.mark.parametrize(
    ("stamp", "unit", "expected"),
    [
        (f"{T0}", "s", T0),
        (f"{T0}123", "s", T0),  # milliseconds, truncated to the second
        (f"{T0}123456", "ms", T0 * 1000 + 123),
        (f"{T0}123456789", "us", T0 * 1_000_000 + 123456),
        (f"{T0}123456789", "ns", T0 * 1_000_000_000 + 123456789),
        (f"{T0}", "ns", T0 * 1_000_000_000),
    ],
)
def test_timestamp_precision_is_told_from_magnitude(stamp: str, unit: str, expected: int) -> None:
    store = metricstore.Store(unit=unit)
    store.define_metric("m", 1, "avg")
    report = store.ingest(f"m,cluster=c,hostname=h value=1 {stamp}")
    assert report.ok, report.rejected
    assert store.read(("m", "c/h"), expected, expected + 1).values.tolist() == [1.0]


def test_lines_without_a_timestamp_are_written_at_now(store: metricstore.Store) -> None:
    report = store.ingest("cpu_load,cluster=c,hostname=h value=4", now=T0 + 20)
    assert report.accepted == 1
    assert at(store, "cpu_load", "c/h", T0 + 20) == 4.0


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("cpu_load,cluster=c,hostname=.. value=1", "path name not allowed"),
        ("cpu_load,cluster=c,hostname=. value=1", "path name not allowed"),
        ("cpu_load,cluster=a/b,hostname=h value=1", "path name not allowed"),
        ("cpu_load,cluster=c,hostname=a\\\\b value=1", "path name not allowed"),
        ("cpu_load,cluster=c,hostname= value=1", "path name not allowed"),
        ("cpu_load,cluster=c,hostname=h,type=cpu,type-id=../x value=1", "path name not allowed"),
        ("nope,cluster=c,hostname=h value=1", 'unknown metric "nope"'),
        ("cpu_load,cluster=c,hostname=h value=abc", "bad value"),
        ('cpu_load,cluster=c,hostname=h value="1"', "bad value"),
        ("cpu_load,cluster=c,hostname=h value=true", "bad value"),
        ("cpu_load,cluster=c,hostname=h value=1e40", "bad value"),
        ("cpu_load,cluster=c,hostname=h value=nan", "bad value"),
        ("cpu_load,cluster=c,hostname=h load=1", "bad field"),
        ("cpu_load,cluster=c,hostname=h value=1,x=2", "bad field"),
        ("cpu_load,cluster=c,hostname=h value=1 12:00", "bad timestamp"),
        ("cpu_load,cluster=c,hostname=h,type=cpu value=1", "bad tag"),
        ("cpu_load,cluster=c,hostname=h,type-id=1 value=1", "bad tag"),
        ("cpu_load,cluster=c,hostname=h,stype=core,stype-id=1 value=1", "bad tag"),
        ("cpu_load,cluster=c,hostname=h,type=node,stype=core,stype-id=1 value=1", "bad tag"),
        ("cpu_load,cluster=c,hostname value=1", "bad tag"),
        ("cpu_load,cluster=c value=1", "no host"),
        ("cpu_load,hostname=h value=1", "no cluster"),
        ("cpu_load,cluster=c,hostname=h", "syntax"),
        ("cpu_load,cluster=c,hostname=h ", "syntax"),
    ],
)
def test_a_bad_line_is_rejected_with_its_reason_and_the_rest_written(
    store: metricstore.Store, line: str, reason: str
) -> None:
    good = f"cpu_load,cluster=c,hostname=h value=7 {T0}"
    report = store.ingest(f"{good}\n{line} {T0 + 10}\n{good.replace('=7', '=8')}\n")
    assert (report.lines, report.accepted) == (3, 2)
    assert [n for n, _ in report.rejected] == [2]
    assert report.rejected[0][1].startswith(reason), report.rejected[0][1]
    # The later line overwrote the earlier one's slot; the bad one wrote nothing.
    got = store.read(("cpu_load", "c/h"), T0, T0 + 20).values
    np.testing.assert_array_equal(got, np.array([8.0, np.nan], np.float32))
    assert store.stats()["samples"] == 1
    assert [key[2] for key in store.list_series()] == [("c", "h")]


def test_a_bad_default_cluster_fails_the_call_and_writes_nothing(store: metricstore.Store) -> None:
    with pytest.raises(ValueError, match=r"^default_cluster: "):
        store.ingest("cpu_load,hostname=h value=1", default_cluster="..")
    with pytest.raises(TypeError, match=r"^data: "):
        store.ingest(12)  # type: ignore[arg-type]
    assert store.stats()["samples"] == 0 and len(store) == 0


def mixed_lines(n: int) -> tuple[str, dict[tuple[str, int], float], int]:
    """``n`` lines, one in seven bad in one of seven ways; returns the text,
    the expected (path, time) -> value of the good lines, and the bad count."""
    rng = np.random.default_rng(7)
    values = rng.integers(-1000, 1000, n) / 8  # exact in float32
    bad_kinds = [
        "nope,cluster=c,hostname=h{h} value=1 {t}",
        "cpu_load,cluster=c,hostname=h{h} value=x {t}",
        "cpu_load,cluster=c,hostname=.. value=1 {t}",
        "cpu_load,cluster=c,hostname=h{h},type=cpu value=1 {t}",
        "cpu_load,cluster=c value=1 {t}",
        "cpu_load,cluster=c,hostname=h{h} other=1 {t}",
        "cpu_load,cluster=c,hostname=h{h} value=1 t{t}",
    ]
    lines, expected, bad = [], {}, 0
    for i in range(n):
        host, t = i % 50, T0 + 10 * (i // 50)
        if i % 7 == 3:
            lines.append(bad_kinds[(i // 7) % 7].format(h=host, t=t))
            bad += 1
        else:
            lines.append(f"cpu_load,cluster=c,hostname=h{host} value={values[i]} {t}")
            expected[(f"c/h{host}", t)] = float(values[i])
    return "\n".join(lines) + "\n", expected, bad


def test_a_file_of_100000_mixed_lines_gives_exact_counts_and_data(store: metricstore.Store) -> None:
    text, expected, bad = mixed_lines(100_000)
    report = store.ingest(text)
    assert (report.lines, report.accepted, len(report.rejected)) == (100_000, 100_000 - bad, bad)
    assert report.series_created == 50
    assert all(number % 7 == 4 for number, _ in report.rejected)  # line i + 1
    assert store.stats()["samples"] == len(expected)
    stop = T0 + 10 * (100_000 // 50)
    for host in (0, 17, 49):
        got = store.read(("cpu_load", f"c/h{host}"), T0, stop).values
        want = [expected.get((f"c/h{host}", T0 + 10 * k), np.nan) for k in range(len(got))]
        np.testing.assert_array_equal(got, np.array(want, dtype=np.float32))


def logged_ops(path: str) -> dict[str, int]:
    """Ops in the store's log, by kind."""
    counts: dict[str, int] = {}
    for segment in metricstore._core.inspect(path)["segments"]:
        for kind, n in segment["ops"].items():
            counts[kind] = counts.get(kind, 0) + n
    return counts


def test_an_ingest_call_is_one_log_record_and_survives_reopening(
    tmp_path: os.PathLike[str],
) -> None:
    path = os.path.join(tmp_path, "s")
    with metricstore.open(path) as store:
        store.define_metric("cpu_load", 10, "avg")
        store.ingest(f"cpu_load,cluster=c,hostname=a value=1 {T0}")  # creates a series
        store.flush()
        before = logged_ops(path)
        store.ingest(
            f"cpu_load,cluster=c,hostname=a value=2 {T0 + 10}\n"
            f"cpu_load,cluster=c,hostname=a value=3 {T0 + 20}\n"
            f"cpu_load,cluster=c,hostname=a value=zz {T0 + 30}\n"
        )
        store.flush()
        assert logged_ops(path) == {**before, "write_points": before["write_points"] + 1}
        store.close(checkpoint=False)
    with metricstore.open(path, readonly=True) as again:
        assert again.read(("cpu_load", "c/a"), T0, T0 + 40).values[:3].tolist() == [1, 2, 3]


# -- the Collector -------------------------------------------------------------


def test_a_collector_caches_handles_and_writes_ticks(store: metricstore.Store) -> None:
    with store.collector() as collector:
        collector.tick(T0, {("cpu_load", "c/h1"): 1.0, ("cpu_load", ("c", "h2")): 2.0})
        calls = store.stats()["write_calls"]
        collector.tick(T0 + 10, {("cpu_load", "c/h1"): 3.0, ("cpu_load", ("c", "h2")): 4.0})
        collector.tick_arrays(T0 + 20, [("cpu_load", "c/h1")], np.array([5.0]))
        # Cached handles: the later ticks created no series, one op each.
        assert store.stats()["write_calls"] == calls + 2
        assert collector.handle("cpu_load", ["c", "h2"]) == store.series("cpu_load", "c/h2")
    assert collector.closed
    assert store.read(("cpu_load", "c/h1"), T0, T0 + 30).values.tolist() == [1.0, 3.0, 5.0]
    with pytest.raises(ClosedError):
        collector.tick(T0, {("cpu_load", "c/h1"): 1.0})
    with pytest.raises(TypeError, match=r"^samples: "):
        store.collector().tick(T0, [1.0])  # type: ignore[arg-type]


def test_a_collector_shared_by_threads_writes_every_tick(store: metricstore.Store) -> None:
    collector = store.collector()
    hosts = [f"c/h{i}" for i in range(40)]

    def write(thread: int) -> None:
        for k in range(50):
            t = T0 + 10 * (thread * 50 + k)
            collector.tick(t, {("cpu_load", h): float(thread * 1000 + k) for h in hosts})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store) == 40
    want = np.array([float(t * 1000 + k) for t in range(4) for k in range(50)], np.float32)
    for host in hosts:
        np.testing.assert_array_equal(store.read(("cpu_load", host), T0, T0 + 2000).values, want)


def test_flushing_a_collector_makes_its_ticks_visible_to_a_readonly_open(
    tmp_path: os.PathLike[str],
) -> None:
    path = os.path.join(tmp_path, "s")
    store = metricstore.open(path, sync="none")
    store.define_metric("cpu_load", 10, "avg")
    with store.collector(default_cluster="c") as collector:
        collector.ingest(f"cpu_load,hostname=h value=6 {T0}")
        collector.flush()
        with metricstore.open(path, readonly=True) as reader:
            assert reader.read(("cpu_load", "c/h"), T0, T0 + 10).values.tolist() == [6.0]
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_collector_in_a_forked_child_refuses_to_write(tmp_path: os.PathLike[str]) -> None:
    store = metricstore.open(os.path.join(tmp_path, "s"))
    store.define_metric("cpu_load", 10, "avg")
    collector = store.collector()
    collector.tick(T0, {("cpu_load", "c/h"): 1.0})
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            collector.tick(T0 + 10, {("cpu_load", "c/h"): 2.0})
            os.write(write_end, b"wrote")
        except WrongProcessError:
            os.write(write_end, b"WrongProcessError")
        except BaseException as e:
            os.write(write_end, type(e).__name__.encode())
        os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    assert os.read(read_end, 100) == b"WrongProcessError"
    assert status == 0
    collector.tick(T0 + 10, {("cpu_load", "c/h"): 3.0})
    assert store.read(("cpu_load", "c/h"), T0, T0 + 20).values.tolist() == [1.0, 3.0]
    store.close()


# -- health ----------------------------------------------------------------------


def test_health_classifies_hosts_like_ccbackend(store: metricstore.Store) -> None:
    now = T0 + 1000
    # cpu_load (10 s): fresh while its data ends at most 50 s before now;
    # its data ends 5 s (half a period) after its last sample.
    store.ingest(
        f"cpu_load,cluster=c,hostname=full value=1 {now - 10}\n"
        f"mem_used,cluster=c,hostname=full value=1 {now - 60}\n"
        f"cpu_load,cluster=c,hostname=part,type=cpu,type-id=0 value=1 {now - 10}\n"
        f"cpu_load,cluster=c,hostname=part,type=cpu,type-id=1 value=1 {now - 70}\n"
        f"mem_used,cluster=c,hostname=part value=1 {now}\n"
        f"cpu_load,cluster=c,hostname=old value=1 {now - 70}\n"
    )
    metrics = ["cpu_load", "mem_used"]
    health = store.health(["c/full", ("c", "part"), "c/old", "c/gone"], metrics, now=now)
    H = metricstore.HostHealth
    assert health == {
        "c/full": H("full", ["cpu_load", "mem_used"], [], []),
        "c/part": H("partial", ["mem_used"], ["cpu_load"], []),
        "c/old": H("failed", [], ["cpu_load"], ["mem_used"]),
        "c/gone": H("failed", [], [], ["cpu_load", "mem_used"]),
    }
    # The edge: cpu1's sample at now - 70 ends at now - 65, so it is fresh
    # until 55 s after the sample, and stale one tick later.
    assert store.health(["c/part"], ["cpu_load"], now=now - 15)["c/part"].state == "full"
    at_edge = store.health(["c/part"], ["cpu_load"], now=now - 14)
    assert at_edge == {"c/part": H("failed", [], ["cpu_load"], [])}
    with pytest.raises(TypeError, match=r"^metrics: "):
        store.health(["c/full"], "cpu_load", now=now)
