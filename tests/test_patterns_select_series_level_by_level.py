"""A path pattern selects stored series level by level, each component
matched like ``fnmatch.fnmatchcase``: in ``list_series`` (with a metric
filter) and as a key of ``read_many``, which reads one row per matching
series in path order. Patterns never create series, and single-series
calls take a path literally."""

from __future__ import annotations

import numpy as np
import pytest

import metricstore

HOSTS = ["e0103", "e0102", "e0201"]


@pytest.fixture
def store() -> metricstore.Store:
    store = metricstore.Store()
    store.define_metric("cpu_load", 60, "sum")
    store.define_metric("mem_used", 60, "avg")
    for i, host in enumerate(HOSTS):
        store.write(("mem_used", ("emmy", host)), 0, [float(i)])
        for cpu in range(2):
            store.write(("cpu_load", ("emmy", host, f"cpu{cpu}")), 0, [10.0 * i + cpu])
    store.write(("cpu_load", "fritz/f0101/cpu0"), 0, [99.0])
    return store


def paths(found: list[tuple[int, str, tuple[str, ...]]]) -> list[str]:
    return [f"{metric}:{'/'.join(path)}" for _, metric, path in found]


def test_list_series_filters_by_metric_and_path_pattern(store: metricstore.Store) -> None:
    assert len(store.list_series()) == 10
    assert paths(store.list_series("mem_used")) == [
        "mem_used:emmy/e0103", "mem_used:emmy/e0102", "mem_used:emmy/e0201",
    ]  # fmt: skip
    # One component per level: "emmy/*" is the hosts, not the cpus below them.
    assert paths(store.list_series(path="emmy/*")) == paths(store.list_series("mem_used"))
    assert paths(store.list_series("cpu_load", "emmy/e01*/cpu*")) == [
        "cpu_load:emmy/e0103/cpu0", "cpu_load:emmy/e0103/cpu1",
        "cpu_load:emmy/e0102/cpu0", "cpu_load:emmy/e0102/cpu1",
    ]  # fmt: skip
    assert paths(store.list_series(path=("*", "?0[!2]01", "cpu0"))) == [
        "cpu_load:fritz/f0101/cpu0",
    ]
    assert paths(store.list_series("cpu_load", "emmy/e0102/cpu1")) == ["cpu_load:emmy/e0102/cpu1"]
    assert store.list_series("mem_used", "emmy/e0102/*") == []
    handles = [h for h, _, _ in store.list_series("cpu_load", "emmy/e0201/*")]
    assert [store.series_key(h)[1] for h in handles] == [
        ("emmy", "e0201", "cpu0"), ("emmy", "e0201", "cpu1"),
    ]  # fmt: skip


def test_bad_filters_raise_naming_the_argument(store: metricstore.Store) -> None:
    with pytest.raises(metricstore.UnknownMetricError, match=r'^unknown metric "gpu"'):
        store.list_series("gpu")
    with pytest.raises(
        metricstore.InvalidNameError, match=r'^path: invalid path component 1 "\.\."'
    ):
        store.list_series(path="emmy/../*")
    with pytest.raises(TypeError, match=r"^metric: expected a str or None, got int$"):
        store.list_series(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^path: expected a tuple of names"):
        store.list_series(path=3)  # type: ignore[arg-type]


def test_a_pattern_key_reads_one_row_per_matching_series_in_path_order(
    store: metricstore.Store,
) -> None:
    before = len(store)
    got = store.read_many([("cpu_load", "emmy/*/cpu1"), ("mem_used", "emmy/e0102")], 0, 60)
    assert got.keys == [
        ("cpu_load", ("emmy", "e0102", "cpu1")),
        ("cpu_load", ("emmy", "e0103", "cpu1")),
        ("cpu_load", ("emmy", "e0201", "cpu1")),
        ("mem_used", ("emmy", "e0102")),
    ]
    np.testing.assert_array_equal(got.values, [[11.0], [1.0], [21.0], [1.0]])
    frame_columns = [f"{m}:{'/'.join(p)}" for m, p in got.keys]
    assert frame_columns[0] == "cpu_load:emmy/e0102/cpu1"
    # A pattern selects stored series only: cpu_load is stored per cpu, so
    # "emmy/e01*" matches none of it, while "emmy" sums what is below.
    summed = store.read_many([("cpu_load", "emmy/e01*"), ("cpu_load", "emmy")], 0, 60)
    assert [k[1] for k in summed.keys] == [("emmy",)]
    np.testing.assert_array_equal(summed.values, [[0 + 1 + 10 + 11 + 20 + 21]])
    resampled = store.read_many([("mem_used", "emmy/e0[12]0[123]")], 0, 120, resolution=120)
    assert [k[1][1] for k in resampled.keys] == ["e0102", "e0103", "e0201"]
    assert len(store) == before


def test_a_pattern_matching_nothing_gives_no_rows(store: metricstore.Store) -> None:
    got = store.read_many([("mem_used", "emmy/x*")], 0, 60)
    assert (got.values.shape, got.keys) == ((0, 0), [])
    got = store.read_many([("mem_used", "fritz/*"), ("mem_used", "emmy/e0102")], 0, 60)
    assert got.keys == [("mem_used", ("emmy", "e0102"))]
    with pytest.raises(metricstore.UnknownMetricError, match=r'"gpu"'):
        store.read_many([("gpu", "emmy/*")], 0, 60)


def test_a_single_series_read_takes_a_pattern_literally_and_says_so(
    store: metricstore.Store,
) -> None:
    hint = r"; a path holding \* \? or \[ selects series only in read_many and list_series$"
    for call in (
        lambda: store.read(("mem_used", "emmy/*")),
        lambda: store.read(("mem_used", "emmy/*"), 0, 60, resolution=120),
        lambda: store.read_stats(("mem_used", "emmy/*")),
    ):
        with pytest.raises(metricstore.UnknownSeriesError, match=r'^no series .*"emmy/\*"' + hint):
            call()
    with pytest.raises(metricstore.UnknownSeriesError, match=r'"emmy/e9"$'):
        store.read(("mem_used", "emmy/e9"))


def test_a_stored_name_holding_pattern_characters_is_matched_with_brackets(
    store: metricstore.Store,
) -> None:
    # Names may hold * ? [ (older stores have them); single-series calls
    # take them literally, and a pattern matches them with [*].
    store.write(("mem_used", "emmy/e*"), 0, [7.0])
    assert store.read(("mem_used", "emmy/e*"), 0, 60).values.tolist() == [7.0]
    literal = store.read_many([("mem_used", "emmy/e[*]")], 0, 60)
    assert literal.keys == [("mem_used", ("emmy", "e*"))]
    assert len(store.read_many([("mem_used", "emmy/e*")], 0, 60)) == 1
    assert store.read_many([("mem_used", "emmy/e*")], 0, 60).values.shape == (4, 1)
