"""A ReadResult handed to pandas, xarray or matplotlib keeps its values bit
for bit and its time axis exactly; the notebook HTML of results and stores
shows exact counts and escapes every name; a missing optional package names
the extra that installs it."""

from __future__ import annotations

import datetime as dt
import html
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import metricstore
from metricstore import _display

# A path part may hold any of these: the HTML must escape them.
NASTY = "<b>&'\""


def same_bits(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype == np.float32 and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def filled_store(unit: str = "s") -> metricstore.Store:
    """Three hosts of one metric at 60 s, with gaps, a negative zero and a
    NaN with a payload (bits must survive every conversion)."""
    store = metricstore.Store(unit=unit)
    step = 60 * {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    store.define_metric("cpu_load", step, "avg")
    store.define_metric("power", step, "sum")
    payload_nan = np.array([0x7FC0_1234], dtype=np.uint32).view(np.float32)[0]
    rows = {
        "e0102": [1.5, np.nan, -0.0, 3.25, 1e-40, 7.0],
        "e0103": [2.0, 2.5, payload_nan, np.nan, np.nan, 8.0],
        NASTY: [np.nan] * 6,
    }
    for host, values in rows.items():
        store.write(("cpu_load", ("emmy", host)), 1608923100 * step // 60, np.array(values))
    store.write(("power", "emmy/e0102/socket0"), 1608923100 * step // 60, np.arange(6.0))
    return store


def read_all(store: metricstore.Store) -> metricstore.ReadResult:
    step = store.metrics[0].frequency
    start = 1608923100 * step // 60
    keys = [("cpu_load", ("emmy", h)) for h in ("e0102", "e0103", NASTY)]
    return store.read_many(keys, start - step, start + 7 * step)


# -- pandas -------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_to_pandas_dataframe_keeps_values_bits_and_exact_times(unit: str) -> None:
    pd = pytest.importorskip("pandas")
    result = read_all(filled_store(unit))
    frame = result.to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == [
        "cpu_load:emmy/e0102",
        "cpu_load:emmy/e0103",
        f"cpu_load:emmy/{NASTY}",
    ]
    assert frame.columns.name == "series"
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert frame.index.name == "time"
    assert frame.index.dtype == np.dtype(f"datetime64[{unit}]")
    assert np.array_equal(frame.index.to_numpy(), result.timestamps)
    for i, column in enumerate(frame.columns):
        assert same_bits(frame[column].to_numpy(), result.values[i])
    # The payload NaN and -0.0 made it through, not just "some NaN".
    assert frame.iloc[3, 1].tobytes() == result.values[1, 3].tobytes()
    assert np.signbit(frame.iloc[3, 0])


def test_to_pandas_series_of_a_one_dimensional_read_is_named_by_its_key() -> None:
    pd = pytest.importorskip("pandas")
    store = filled_store()
    result = store.read(("cpu_load", "emmy"), 1608923100, 1608923100 + 6 * 60)
    series = result.to_pandas()
    assert isinstance(series, pd.Series)
    assert series.name == "cpu_load:emmy"
    assert series.index.name == "time"
    assert np.array_equal(series.index.to_numpy(), result.timestamps)
    assert same_bits(series.to_numpy(), result.values)


def test_to_pandas_with_tz_gives_a_tz_aware_index_of_the_same_instants() -> None:
    pd = pytest.importorskip("pandas")
    result = read_all(filled_store("ms"))
    naive = result.to_pandas()
    utc = result.to_pandas(tz="UTC")
    assert str(utc.index.tz) == "UTC"
    assert utc.index.dtype == pd.DatetimeTZDtype("ms", "UTC")
    assert utc.index.name == "time"
    assert utc.index[0] == pd.Timestamp(naive.index[0], tz="UTC")
    assert np.array_equal(utc.index.tz_localize(None).to_numpy(), result.timestamps)
    berlin = result.to_pandas(tz=dt.timezone(dt.timedelta(hours=1)))
    assert berlin.index[0] == utc.index[0]
    assert berlin.index[0].hour == (utc.index[0].hour + 1) % 24
    assert same_bits(utc.to_numpy().T, result.values)
    with pytest.raises(ValueError, match=r"^tz: unknown time zone 'Nowhere/City'$"):
        result.to_pandas(tz="Nowhere/City")
    with pytest.raises(TypeError, match=r"^tz: expected a time zone name or a tzinfo, got int$"):
        result.to_pandas(tz=5)


def test_rows_read_by_handle_are_named_by_handle_unless_keys_are_given() -> None:
    pytest.importorskip("pandas")
    store = filled_store()
    handle = store.find_series("power", "emmy/e0102/socket0")
    assert handle is not None
    result = store.read_many([handle, ("cpu_load", "emmy/e0102")], 1608923100, 1608923460)
    assert result.keys == [handle, ("cpu_load", ("emmy", "e0102"))]
    assert list(result.to_pandas().columns) == [handle, "cpu_load:emmy/e0102"]

    named = metricstore.ReadResult(
        result.values, result.start, result.step, result.time_unit, result.series,
        keys=[store.series_key(handle), ("cpu_load", "emmy/e0102")],
    )  # fmt: skip
    assert named.keys == [("power", ("emmy", "e0102", "socket0")), ("cpu_load", ("emmy", "e0102"))]
    assert list(named.to_pandas().columns) == ["power:emmy/e0102/socket0", "cpu_load:emmy/e0102"]


# -- xarray -------------------------------------------------------------------


def test_to_xarray_has_series_and_time_dims_with_path_coordinates() -> None:
    pytest.importorskip("xarray")
    store = filled_store()
    result = store.read_many(
        [("cpu_load", "emmy/e0102"), ("power", "emmy/e0102/socket0")], 1608923100, 1608923460
    )
    da = result.to_xarray(levels=("cluster", "host", "socket"))
    assert da.dims == ("series", "time")
    assert da.dtype == np.float32
    assert same_bits(da.values, result.values)
    assert np.array_equal(da["time"].values, result.timestamps)
    assert list(da["series"].values) == ["cpu_load:emmy/e0102", "power:emmy/e0102/socket0"]
    assert list(da["metric"].values) == ["cpu_load", "power"]
    assert list(da["path"].values) == ["emmy/e0102", "emmy/e0102/socket0"]
    assert list(da["cluster"].values) == ["emmy", "emmy"]
    assert list(da["host"].values) == ["e0102", "e0102"]
    assert list(da["socket"].values) == ["", "socket0"]  # a shorter path has no such level
    assert da.name is None  # two metrics
    assert da.attrs == {"step": 60, "time_unit": "s", "frequency": 60, "min_count": 0}
    # The coordinates select what a data scientist asks for.
    assert same_bits(da.sel(series=da["metric"] == "power").values[0], result.values[1])


def test_to_xarray_of_one_series_is_one_dimensional_and_named_by_its_metric() -> None:
    pytest.importorskip("xarray")
    store = filled_store()
    result = store.read(("cpu_load", ("emmy", "e0103")), 1608923100, 1608923460)
    da = result.to_xarray(levels=["cluster", "host"])
    assert da.dims == ("time",)
    assert da.name == "cpu_load"
    assert same_bits(da.values, result.values)
    assert np.array_equal(da["time"].values, result.timestamps)
    assert (da["series"].item(), da["path"].item(), da["host"].item()) == (
        "cpu_load:emmy/e0103",
        "emmy/e0103",
        "e0103",
    )


def test_to_xarray_without_keys_has_no_path_coordinates_and_refuses_levels() -> None:
    pytest.importorskip("xarray")
    store = filled_store()
    handle = store.series("cpu_load", "emmy/e0102")
    result = store.read_many([handle], 1608923100, 1608923460)
    da = result.to_xarray()
    assert list(da["series"].values) == [handle]
    assert "metric" not in da.coords and "path" not in da.coords
    with pytest.raises(ValueError, match="levels: the series were read by handle"):
        result.to_xarray(levels=["cluster"])
    with pytest.raises(ValueError, match="levels: 'time'"):
        read_all(store).to_xarray(levels=["cluster", "time"])


# -- matplotlib ------------------------------------------------------------------


@pytest.fixture
def pyplot() -> Any:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot

    yield matplotlib.pyplot
    matplotlib.pyplot.close("all")


def test_plot_draws_one_line_per_series_with_the_data_and_a_legend(pyplot: Any) -> None:
    result = read_all(filled_store())
    ax = result.plot()
    assert len(ax.lines) == 3
    for line, row in zip(ax.lines, result.values, strict=True):
        assert same_bits(line.get_ydata(), row)
        assert np.array_equal(line.get_xdata(), result.timestamps)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "cpu_load:emmy/e0102",
        "cpu_load:emmy/e0103",
        f"cpu_load:emmy/{NASTY}",
    ]
    assert ax.get_ylabel() == "cpu_load"
    assert "time" in ax.get_xlabel()
    assert type(ax.xaxis.get_major_formatter()).__name__ == "ConciseDateFormatter"


def test_plot_onto_given_axes_passes_kwargs_and_titles_a_single_series(pyplot: Any) -> None:
    store = filled_store()
    _, ax = pyplot.subplots()
    result = store.read(("cpu_load", "emmy"), 1608923100, 1608923460)
    returned = result.plot(ax=ax, color="red", linewidth=3)
    assert returned is ax
    (line,) = ax.lines
    assert line.get_color() == "red" and line.get_linewidth() == 3
    assert same_bits(line.get_ydata(), result.values)
    assert ax.get_title() == "cpu_load:emmy"
    assert ax.get_legend() is None


def test_plot_labels_lines_as_asked_and_names_label_when_they_do_not_fit(pyplot: Any) -> None:
    store = filled_store()
    _, ax = pyplot.subplots()
    node = store.read(("cpu_load", "emmy/e0102"), 1608923100, 1608923460)
    cluster = store.read(("cpu_load", "emmy"), 1608923100, 1608923460)
    node.plot(ax=ax, label="e0102")
    cluster.plot(ax=ax, label="emmy, summed", linestyle="--")
    assert [line.get_label() for line in ax.lines] == ["e0102", "emmy, summed"]
    assert same_bits(ax.lines[1].get_ydata(), cluster.values)
    assert ax.lines[1].get_linestyle() == "--"
    three = read_all(store)
    ax = three.plot(label=["a", "b", "c"])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"^label: one string for 3 series"):
        three.plot(label="all")
    with pytest.raises(ValueError, match=r"^label: 2 labels for 3 series"):
        three.plot(label=["a", "b"])


def test_plot_leaves_out_the_legend_of_many_series_unless_asked(pyplot: Any) -> None:
    store = metricstore.Store()
    store.define_metric("m", 10, "sum")
    keys = [("m", f"c/h{i:02}") for i in range(13)]
    for key in keys:
        store.write(key, 0, [1.0, 2.0])
    result = store.read_many(keys, 0, 20)
    assert len(result.plot().lines) == 13
    assert result.plot().get_legend() is None
    assert len(result.plot(legend=True).get_legend().get_texts()) == 13


def test_the_text_repr_of_many_series_stays_short_and_names_the_ends() -> None:
    store = metricstore.Store()
    store.define_metric("m", 10, "sum")
    keys = [("m", f"c/h{i:04}") for i in range(2000)]
    for key in keys:
        store.write(key, 0, [1.0])
    text = repr(store.read_many(keys, 0, 50))
    assert len(text) < 5000
    assert "('m', 'c/h0000')" in text and "('m', 'c/h1999')" in text
    assert "('m', 'c/h1000')" not in text and "(2000 series)" in text
    assert "<float32 2000x5>" in text
    few = repr(store.read_many(keys[:3], 0, 50))
    assert few.startswith(
        "ReadResult(series=[('m', 'c/h0000'), ('m', 'c/h0001'), ('m', 'c/h0002')]"
    )


# -- HTML -------------------------------------------------------------------------


def test_read_result_html_escapes_names_and_shows_exact_counts_and_extremes() -> None:
    result = read_all(filled_store())
    page = result._repr_html_()
    assert html.escape(f"cpu_load:emmy/{NASTY}", quote=True) in page
    assert NASTY not in page and "<b>&" not in page
    # Valid values per row: 5 of e0102 (one NaN), 3 of e0103 (two NaN and the
    # payload NaN), 0 of the all-NaN row; 8 in all. Slots: 8 (one before, one after).
    assert "3 series &times; 8 slots" in page
    assert "8 valid values" in page
    # Columns: series, series combined, valid, coverage, mean, min, max.
    n = '<td class="n">'
    assert (
        f"<td>cpu_load:emmy/e0102</td>{n}1</td>{n}5</td>{n}62.5%</td>{n}2.35</td>{n}-0</td>"
        f"{n}7</td>" in page
    )
    assert f"{n}3</td>{n}37.5%</td>{n}4.16667</td>{n}2</td>{n}8</td>" in page
    assert f"{n}0</td>{n}0.0%</td>{n}&ndash;</td>{n}&ndash;</td>{n}&ndash;</td>" in page
    assert "[2020-12-25T19:04:00, 2020-12-25T19:12:00) UTC" in page
    assert page.count("<svg") == 2  # no sparkline for the all-NaN row


def test_read_result_html_stays_small_for_many_long_series() -> None:
    store = metricstore.Store()
    store.define_metric("m", 1, "sum")
    keys = [("m", f"c/h{i}") for i in range(200)]
    for key in keys:
        store.write(key, 0, np.arange(100_000, dtype=np.float32))
    page = store.read_many(keys, 0, 100_000)._repr_html_()
    assert f"&hellip; {200 - _display.MAX_ROWS:,} more" in page
    assert page.count("<svg") == _display.MAX_ROWS
    assert "20,000,000 valid values" in page
    assert len(page) < 20_000


def test_store_html_shows_metrics_counts_and_the_recovery_of_a_directory(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a&b<c>"
    with metricstore.open(path) as store:
        store.define_metric("cpu_load", 60, "avg")
        store.write(("cpu_load", "emmy/e0102"), 0, np.arange(1234.0))
        store.write(("cpu_load", "emmy/e0103"), 0, [1.0, np.nan, 2.0])
    with metricstore.open(path, readonly=True) as store:
        page = store._repr_html_()
        report = store.recovery
        assert report is not None
    assert html.escape(str(path)) in page and "a&b<c>" not in page
    assert "readonly" in page and "closed" not in page
    assert '<td class="n">2</td><td class="n">1,236</td>' in page  # series, samples
    assert '<td>cpu_load</td><td class="n">60 s</td><td>avg</td>' in page
    assert f"(LSN {report.snapshot_lsn})" in page
    assert f"last LSN {report.last_lsn}" in page


def test_store_html_of_a_closed_store_says_closed_and_keeps_the_recovery(
    tmp_path: Path,
) -> None:
    store = metricstore.open(tmp_path / "s")
    store.define_metric("cpu_load", 60, "avg")
    store.close()
    page = store._repr_html_()
    assert "<b>closed</b>" in page
    assert "cpu_load" not in page  # the catalog is gone with the data
    assert "Recovery: no snapshot, then 0 records replayed" in page
    memory = metricstore.Store()
    memory.close()
    assert "in memory" in memory._repr_html_() and "Recovery" not in memory._repr_html_()


def test_store_html_lists_at_most_max_rows_metrics() -> None:
    store = metricstore.Store()
    for i in range(_display.MAX_ROWS + 5):
        store.define_metric(f"m{i:03}", 10, "sum")
    page = store._repr_html_()
    assert f"<td>m{_display.MAX_ROWS - 1:03}</td>" in page
    assert f"<td>m{_display.MAX_ROWS:03}</td>" not in page
    assert "&hellip; 5 more" in page


# -- optional packages ------------------------------------------------------------


@pytest.mark.parametrize(
    "modules, call, extra",
    [
        (["pandas"], lambda r: r.to_pandas(), "pandas"),
        (["xarray"], lambda r: r.to_xarray(), "xarray"),
        (["matplotlib", "matplotlib.dates", "matplotlib.pyplot"], lambda r: r.plot(), "plot"),
    ],
    ids=["pandas", "xarray", "plot"],
)
def test_a_missing_optional_package_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, modules: list[str], call: Any, extra: str
) -> None:
    result = read_all(filled_store())
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=rf"pip install 'metricstore\[{extra}\]'"):
        call(result)


def test_importing_and_displaying_loads_no_optional_package() -> None:
    code = (
        "import sys, metricstore\n"
        "s = metricstore.Store(); s.define_metric('m', 10, 'sum'); s.write(('m', 'a'), 0, [1.0])\n"
        "s._repr_html_(); s.read(('m', 'a'), 0, 10)._repr_html_()\n"
        "print(sorted(m for m in ('pandas', 'xarray', 'matplotlib') if m in sys.modules))\n"
    )
    package_root = str(Path(metricstore.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": package_root}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
