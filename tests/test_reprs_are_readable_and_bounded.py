"""Stores, results and reports show what a reader needs (names, units,
counts, the time they cover) in text and HTML, stay small however much
they describe, and style themselves so that notebook front ends neither
override their alignment nor get hard-coded colours in a dark theme."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import metricstore
from metricstore import _display
from metricstore.ccbackend import load_job
from metricstore.demo import EMMY_JOB

T0 = 1_608_923_040


def many_series_store(hosts: int = 2000, metrics: int = 30) -> metricstore.Store:
    store = metricstore.Store()
    for m in range(metrics):
        store.define_metric(f"metric{m:02}", 60, "sum", "GF/s" if m % 2 else None)
    keys = [("metric00", f"emmy/h{i:04}") for i in range(hosts)]
    store.write_tick(T0, keys, np.arange(hosts, dtype=np.float32))
    store.write(("metric01", "emmy/h0000"), T0 + 3600, np.ones(3))
    return store


def test_the_store_repr_shows_extent_hosts_series_per_metric_and_units() -> None:
    store = many_series_store()
    text = repr(store)
    assert text.startswith("<metricstore.Store unit='s' metrics=30 series=2001 samples=2,003 ")
    assert "  time:  2020-12-25T19:04:00 .. 2020-12-25T20:07:00 UTC (1:03:00)\n" in text
    assert "  hosts: 2,000 (emmy/h0000, emmy/h0001, emmy/h0002, ..., emmy/h1999)\n" in text
    assert re.search(r"\n  metric00 +60 s +sum +- +2,000\n", text)
    assert re.search(r"\n  metric01 +60 s +sum +GF/s +1\n", text)
    assert f"... {30 - _display.MAX_ROWS} more metrics" in text
    assert len(text) < 5000
    page = store._repr_html_()
    assert "2020-12-25T19:04:00 .. 2020-12-25T20:07:00 UTC (1:03:00)" in page
    assert "2,000 (emmy/h0000, emmy/h0001, emmy/h0002, ..., emmy/h1999)" in page
    assert '<td>metric01</td><td class="n">60 s</td><td>sum</td><td>GF/s</td>' in page
    assert '<td class="n">1</td>' in page
    assert len(page) < 20_000


def test_a_store_without_samples_or_hosts_says_so() -> None:
    store = metricstore.Store()
    store.define_metric("load", 10, "avg")
    store.write(("load", "lab"), 0, [1.0])
    text = repr(store)
    assert "  hosts: none (no series two levels below the root)\n" in text
    empty = metricstore.Store()
    assert "  time:  no samples\n" in repr(empty)


def test_a_2000_series_result_has_a_short_text_repr_with_its_unit() -> None:
    store = many_series_store()
    result = store.read_many([("metric00", "emmy/*")], T0, T0 + 600)
    text = repr(result)
    assert len(result.keys) == 2000 and len(text) < 5000
    assert "(2000 series)" in text and "time_unit='s'" in text
    assert "unit=" not in text.replace("time_unit=", "")  # metric00 has none
    one = store.read(("metric01", "emmy"), T0 + 3600, T0 + 3780)
    assert "unit='GF/s'" in repr(one) and "values in GF/s" in one._repr_html_()


def test_styles_win_over_notebook_css_and_follow_the_theme() -> None:
    store = many_series_store(hosts=3, metrics=2)
    pages = [
        store._repr_html_(),
        store.read_many([("metric00", "emmy/*")], T0, T0 + 600)._repr_html_(),
        store.read_stats(("metric00", "emmy"))._repr_html_(),
        store.health(["emmy/h0000"], ["metric00"], now=T0)._repr_html_(),
    ]
    for page in pages:
        assert page.startswith('<div class="metricstore-repr"><style>')
        style = page[page.index("<style>") : page.index("</style>")]
        # Two classes and an element: more specific than JupyterLab's
        # `.jp-RenderedHTMLCommon td` and its `:not(...)` variants.
        assert "div.metricstore-repr.metricstore-repr td," in style
        assert "text-align:left" in style
        # Every colour is a theme variable; literal colours only as the last
        # fallback inside var(...).
        for match in re.finditer(r"#[0-9a-fA-F]{3,6}\b", page):
            assert page[: match.start()].rstrip().endswith(","), page[match.start() - 60 :]
        assert "--jp-" in style and "--vscode-" in style
        assert 'stroke="#' not in page and 'fill="#' not in page


def test_recovery_reports_read_as_sentences(tmp_path: Path) -> None:
    where = tmp_path / "store"
    with metricstore.open(where) as store:
        store.define_metric("load", 60, "avg", "load")
        store.write(("load", "emmy/e0102"), T0, np.ones(10))
        store.close(checkpoint=False)
    with metricstore.open(where, readonly=True) as store:
        report = store.recovery
        assert report is not None
        text = repr(report)
        page = report._repr_html_()
        store_text = repr(store)
    assert text.startswith("RecoveryReport: no snapshot, then 3 records replayed from 1 segment (")
    assert f"last LSN {report.last_lsn}" in text and "\n" not in text
    assert "<b>RecoveryReport</b>: no snapshot, then 3 records replayed" in page
    assert "  recovery: no snapshot, then 3 records replayed" in store_text


def test_host_health_reads_as_a_table_of_hosts() -> None:
    store = metricstore.Store()
    store.define_metric("load", 10, "avg")
    store.define_metric("power", 10, "sum")
    store.write(("load", "emmy/e0102"), T0, [1.0])
    store.write(("power", "emmy/e0102"), T0 - 600, [1.0])
    report = store.health(["emmy/e0102", "emmy/e0999"], ["load", "power", "ipc"], now=T0 + 10)
    assert isinstance(report, dict) and list(report) == ["emmy/e0102", "emmy/e0999"]
    assert repr(report["emmy/e0102"]) == "HostHealth(partial; 1 fresh; stale: power; missing: ipc)"
    assert repr(report) == (
        "HealthReport: 2 hosts, 0 full, 1 partial, 1 failed\n"
        "  emmy/e0102  partial  1 fresh; stale: power; missing: ipc\n"
        "  emmy/e0999  failed   0 fresh; missing: load, power, ipc"
    )
    page = report._repr_html_()
    assert '<td>emmy/e0102</td><td><span class="partial">partial</span></td>' in page
    assert "<td>power</td><td>ipc</td>" in page
    assert "partial" in report["emmy/e0102"]._repr_html_()


def test_series_stats_show_their_unit() -> None:
    store = metricstore.Store()
    store.define_metric("flops_any", 60, "sum", "GF/s")
    store.write(("flops_any", "emmy/e0102"), T0, [1.5, np.nan, 2.5, 5.0])
    stats = store.read_stats(("flops_any", "emmy/e0102"))
    assert repr(stats) == "SeriesStats(count=3, min=1.5 GF/s, avg=3 GF/s, max=5 GF/s)"
    assert '<td class="n">3</td><td class="n">1.5</td><td class="n">3</td>' in stats._repr_html_()
    none = store.read_stats(("flops_any", "emmy/e0102"), T0 + 6000, T0 + 6060)
    assert repr(none) == "SeriesStats(no samples)"


def test_a_job_shows_its_header_and_cc_backends_statistics_with_units() -> None:
    job = load_job(EMMY_JOB, metricstore.Store())
    text = repr(job)
    assert text.startswith("JobLoad 1403244 (emmy)\n  user:    emmyUser6 (project no project)\n")
    assert "  time:    2020-12-25T19:04:36 .. 2020-12-26T19:06:02 UTC (1 day, 0:01:26)\n" in text
    assert "  state:   completed\n" in text
    assert "  loaded:  9 metrics, 288 series, 377,019 samples, 37,989 missing\n" in text
    assert re.search(r"\n    flops_any +GF/s +0 +225\.59 +404\.62\n", text)
    assert re.search(r"\n    mem_used +GB +1\.55 +27\.84 +37\.5\n", text)
    assert len(text) < 5000
    page = job._repr_html_()
    assert "<td>user</td><td>emmyUser6 (project no project)</td>" in page
    assert (
        '<td>flops_any</td><td>GF/s</td><td class="n">0</td><td class="n">225.59</td>'
        '<td class="n">404.62</td>'
    ) in page
