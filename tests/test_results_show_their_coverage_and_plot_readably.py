"""A result's coverage (how many samples are behind each value) reaches
pandas, xarray and both reprs, with the resampling that made it; plots are
drawn sharp enough to read, and a heatmap labels its rows without overlap
and takes its colour scale from well-covered values only."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import metricstore

STEP = 60
T0 = 1_608_922_800  # 2020-12-25T19:00:00, on every bucket boundary used here


def cluster(hosts: int = 4, slots: int = 6) -> metricstore.Store:
    """`hosts` hosts of a summed metric; host i misses slot i (mod slots)."""
    store = metricstore.Store()
    store.define_metric("flops_any", STEP, "sum")
    for i in range(hosts):
        values = np.full(slots, float(i + 1))
        values[i % slots] = np.nan
        store.write(("flops_any", f"emmy/e{i:04}"), T0, values)
    return store


def test_to_pandas_with_counts_puts_values_and_counts_side_by_side() -> None:
    pd = pytest.importorskip("pandas")
    store = cluster()
    total = store.read(("flops_any", "emmy"), T0, T0 + 6 * STEP)
    frame = total.to_pandas(counts=True)
    assert list(frame.columns) == ["value", "count"]
    assert frame["count"].tolist() == [3, 3, 3, 3, 4, 4]
    assert frame["count"].dtype == np.uint32
    assert frame["value"].dtype == np.float32
    assert frame["value"].tolist() == [9.0, 8.0, 7.0, 6.0, 10.0, 10.0]
    assert isinstance(total.to_pandas(), pd.Series)
    rows = store.read_many([("flops_any", "emmy"), ("flops_any", "emmy/e0000")], T0, T0 + 120)
    wide = rows.to_pandas(counts=True)
    assert wide.columns.names == ["field", "series"]
    assert wide["count"]["flops_any:emmy"].tolist() == [3, 3]
    assert wide["count"]["flops_any:emmy/e0000"].tolist() == [0, 1]
    assert wide["value"]["flops_any:emmy"].tolist() == [9.0, 8.0]


def test_to_xarray_carries_counts_sources_and_resampling() -> None:
    pytest.importorskip("xarray")
    store = cluster()
    rows = store.read_many(
        [("flops_any", "emmy"), ("flops_any", "emmy/e0001")],
        T0,
        T0 + 6 * STEP,
        resolution=3 * STEP,
        method="max",
        min_count=3,
    )
    da = rows.to_xarray()
    assert da["counts"].dims == ("series", "time")
    # Slot counts 3 3 3 | 3 4 4 for the four hosts; e0001 misses slot 1.
    assert da["counts"].values.tolist() == [[9, 11], [2, 3]]
    assert da["sources"].values.tolist() == [4, 1]
    assert da.attrs["method"] == "max" and da.attrs["min_count"] == 3
    assert da.attrs["frequency"] == STEP and da.attrs["step"] == 3 * STEP
    assert da.values[0].tolist() == [9.0, 10.0]
    assert np.isnan(da.values[1, 0]) and da.values[1, 1] == 2.0
    well = da.where(da.counts >= 10)
    assert np.isnan(well.values[0, 0]) and well.values[0, 1] == 10.0
    plain = store.read(("flops_any", "emmy/e0001"), T0, T0 + 3 * STEP).to_xarray()
    assert plain["counts"].values.tolist() == [1, 0, 1]
    assert "method" not in plain.attrs and plain["sources"].item() == 1


def test_the_reprs_give_mean_coverage_and_resampling() -> None:
    store = cluster()
    total = store.read(("flops_any", "emmy"), T0, T0 + 6 * STEP)
    text = repr(total)
    # 20 of the 24 samples of 4 series in 6 slots; mean of 9, 8, 7, 6, 10, 10.
    assert text.endswith(", mean=8.33333, coverage=83.3%)")
    coarse = store.read(("flops_any", "emmy"), T0, T0 + 6 * STEP, resolution=3 * STEP,
                        min_count=10)  # fmt: skip
    text = repr(coarse)
    # Buckets of 9 and 11 samples of 12; the first is below min_count.
    assert "mean=8.66667, coverage=83.3%, method='avg', frequency=60" in text
    assert text.endswith("min_count=10)")
    page = coarse._repr_html_()
    assert "resampled: avg of each bucket of 180 s (3 slots of 60 s)" in page
    assert "coverage 83.3%" in page and "NaN below 10 samples" in page
    # The row: 4 series, 1 valid bucket, 20 of 24 samples.
    assert '<td class="n">4</td><td class="n">1</td><td class="n">83.3%</td>' in page
    plain = store.read(("flops_any", "emmy/e0000"), T0, T0 + 6 * STEP)
    assert "coverage 83.3%" in plain._repr_html_()
    assert "resampled" not in plain._repr_html_() and "method=" not in repr(plain)


# -- matplotlib ------------------------------------------------------------------


@pytest.fixture
def pyplot() -> Any:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot

    old = matplotlib.rcParams["figure.dpi"]
    matplotlib.rcParams["figure.dpi"] = 72
    yield matplotlib.pyplot
    matplotlib.rcParams["figure.dpi"] = old
    matplotlib.pyplot.close("all")


def test_a_new_plot_is_at_least_100_dpi_with_a_legible_legend(pyplot: Any) -> None:
    store = cluster()
    rows = store.read_many([("flops_any", "emmy/*")], T0, T0 + 6 * STEP)
    ax = rows.plot()
    assert ax.figure.dpi >= 100
    texts = ax.get_legend().get_texts()
    assert len(texts) == 4
    # At least 12 px high: 9 points at 100 dpi or more.
    assert all(t.get_fontsize() * ax.figure.dpi / 72 >= 12 for t in texts)
    one = store.read(("flops_any", "emmy"), T0, T0 + 6 * STEP).plot(label="cluster")
    assert [line.get_label() for line in one.lines] == ["cluster"]


def test_a_heatmap_draws_every_row_and_thins_labels_that_would_overlap(pyplot: Any) -> None:
    store = cluster(hosts=200, slots=30)
    rows = store.read_many([("flops_any", "emmy/*")], T0, T0 + 30 * STEP)
    ax = rows.heatmap()
    assert ax.figure.dpi >= 100
    (mesh,) = ax.collections
    assert mesh.get_array().shape == (200, 30)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    # Host names without the common "emmy/", every k-th one, top to bottom.
    every = int(labels[1][1:])
    assert labels == [f"e{i:04}" for i in range(0, 200, every)]
    assert 5 <= len(labels) < 200
    ticks = ax.get_yticks()
    gap_points = (ticks[1] - ticks[0]) / 200 * ax.get_position().height * 72 * \
        ax.figure.get_figheight()  # fmt: skip
    assert gap_points >= ax.get_yticklabels()[0].get_fontsize()
    assert ax.get_title() == "flops_any"
    few = store.read_many([("flops_any", f"emmy/e{i:04}") for i in range(5)], T0, T0 + 120)
    assert [t.get_text() for t in few.heatmap().get_yticklabels()] == [f"e{i:04}" for i in range(5)]


def test_the_heatmap_scale_ignores_outliers_and_short_buckets(pyplot: Any) -> None:
    store = metricstore.Store()
    store.define_metric("m", STEP, "avg")
    rng = np.random.default_rng(3)
    for i in range(10):
        values = rng.uniform(10.0, 20.0, 50)
        values[7] = 1000.0 if i == 0 else values[7]  # one wild sample
        store.write(("m", f"c/h{i}"), 0, values)
    # A last bucket of one slot: its mean of a single 0.0 sample must not
    # set the scale either.
    for i in range(10):
        store.write(("m", f"c/h{i}"), 50 * STEP, [0.0])
    rows = store.read_many([("m", "c/*")], 0, 51 * STEP, resolution=10 * STEP)
    assert rows.counts[:, -1].tolist() == [1] * 10
    ax = rows.heatmap()
    low, high = ax.collections[0].get_clim()
    backed = rows.values[:, :-1].astype(np.float64)
    want = np.percentile(backed, [2, 98])
    assert (low, high) == (pytest.approx(want[0]), pytest.approx(want[1]))
    assert low > 10.0 and high < 120.0
    low, high = rows.heatmap(robust=False).collections[0].get_clim()
    assert (low, high) == (pytest.approx(backed.min()), pytest.approx(backed.max()))
    assert rows.heatmap(vmin=0, vmax=5).collections[0].get_clim() == (0, 5)
    lttb = store.read(("m", "c/h0"), 0, 50 * STEP, resolution=10 * STEP, method="lttb")
    with pytest.raises(ValueError, match=r"^method: an LTTB read"):
        lttb.heatmap()


def test_empty_results_show_no_coverage_and_draw_no_heatmap(pyplot: Any) -> None:
    store = cluster()
    nothing = store.read(("flops_any", "emmy"), T0 + 3600, T0 + 3600)
    assert nothing.counts.shape == (0,)
    assert repr(nothing).endswith("values=<float32 0>, mean=nan)")
    assert "0 slots" in nothing._repr_html_() and "coverage &ndash;" in nothing._repr_html_()
    no_rows = store.read_many([], T0, T0 + 60)
    assert no_rows.counts.shape == (0, 0) and "0 series" in no_rows._repr_html_()
    for empty in (nothing, no_rows):
        with pytest.raises(ValueError, match=r"^heatmap: the result has no values to draw"):
            empty.heatmap()
