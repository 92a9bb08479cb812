"""A metric's unit is part of its definition: logged, kept in snapshots,
back after every kind of reopen, carried by reads into pandas/xarray/plots,
and checked like the other settings. Stores written before units read as
metrics without one (tests/test_old_formats_still_open.py opens them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import metricstore
from metricstore import Metric, MetricConflictError

T0 = 1_608_923_040

DEFINITIONS = [
    Metric("flops_any", 60, "sum", "GF/s"),
    Metric("mem_used", 60, "sum", "GB"),
    Metric("cpu_load", 60, "avg", None),
    Metric("temp", 10, "avg", "°C"),
]


def define_and_write(store: metricstore.Store) -> None:
    for m in DEFINITIONS:
        store.define_metric(m.name, m.frequency, m.aggregation, m.unit)
    for m in DEFINITIONS:
        for host in ("e0102", "e0103"):
            store.write((m.name, f"emmy/{host}"), T0, np.arange(5, dtype=np.float32))


def assert_units(store: metricstore.Store) -> None:
    assert store.metrics == DEFINITIONS
    assert store.read(("flops_any", "emmy/e0102"), T0, T0 + 300).unit == "GF/s"
    assert store.read(("flops_any", "emmy"), T0, T0 + 300).unit == "GF/s"
    assert store.read(("cpu_load", "emmy"), T0, T0 + 300).unit is None
    handle = store.find_series("temp", "emmy/e0103")
    assert handle is not None
    assert store.read(handle, T0, T0 + 50).unit == "°C"


def test_a_unit_is_kept_in_memory_and_read_back_with_every_kind_of_read() -> None:
    store = metricstore.Store()
    define_and_write(store)
    assert_units(store)
    assert store.read(("mem_used", "emmy"), T0, T0 + 600, resolution=120).unit == "GB"
    lttb = store.read(("mem_used", "emmy/e0102"), T0, T0 + 600, resolution=120, method="lttb")
    assert lttb.unit == "GB"
    same = store.read_many([("flops_any", "emmy/*")], T0, T0 + 300)
    assert (len(same.keys), same.unit) == (2, "GF/s")
    mixed = store.read_many([("flops_any", "emmy"), ("mem_used", "emmy")], T0, T0 + 300)
    assert mixed.unit is None
    one_without = store.read_many([("flops_any", "emmy"), ("cpu_load", "emmy")], T0, T0 + 300)
    assert one_without.unit is None
    assert store.read_many([("flops_any", "emmy/*")], resolution=120).unit == "GF/s"
    assert store.read_many([]).unit is None
    assert "unit='GF/s'" in repr(same)


def test_bad_units_are_refused_naming_the_argument_and_lose_nothing() -> None:
    store = metricstore.Store()
    define_and_write(store)
    with pytest.raises(TypeError, match=r"^unit: expected a str or None, got int$"):
        store.define_metric("x", 60, "sum", 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^unit: it is empty; give None for no unit$"):
        store.define_metric("x", 60, "sum", "")
    with pytest.raises(ValueError, match=r"^unit: .* is 65 bytes long; the limit is 64$"):
        store.define_metric("x", 60, "sum", "u" * 65)
    with pytest.raises(ValueError, match=r"^unit: .* holds the control character '\\n'$"):
        store.define_metric("x", 60, "sum", "GF\n")
    with pytest.raises(
        MetricConflictError,
        match=r'^metric "flops_any" is already defined with frequency 60, aggregation "sum", '
        r'unit "GF/s"; cannot redefine it with frequency 60, aggregation "sum", unit "MF/s"$',
    ):
        store.define_metric("flops_any", 60, "sum", "MF/s")
    with pytest.raises(MetricConflictError, match=r'unit None; cannot .* unit "W"$'):
        store.define_metric("cpu_load", 60, "avg", "W")
    with pytest.raises(MetricConflictError, match=r'unit "GB"; cannot .* unit None$'):
        store.define_metric("mem_used", 60, "sum")
    store.define_metric("flops_any", 60, "sum", "GF/s")  # the same again: a no-op
    assert_units(store)
    assert [m.name for m in store.metrics] == [m.name for m in DEFINITIONS]


def test_units_come_back_from_the_log_from_a_snapshot_and_read_only(tmp_path: Path) -> None:
    where = tmp_path / "store"
    with metricstore.open(where, checkpoint_interval_s=None) as store:
        define_and_write(store)
        store.close(checkpoint=False)
    with metricstore.open(where) as store:  # from the log alone
        assert store.recovery is not None and store.recovery.snapshot is None
        assert store.recovery.records > len(DEFINITIONS)
        assert_units(store)
        store.checkpoint()
    with metricstore.open(where) as store:  # from the snapshot alone
        assert store.recovery is not None and store.recovery.snapshot is not None
        assert store.recovery.records == 0
        assert_units(store)
    with metricstore.open(where, readonly=True) as reader:  # mapped snapshot
        assert_units(reader)


def test_inspect_names_the_definitions_the_log_holds(tmp_path: Path) -> None:
    where = tmp_path / "store"
    with metricstore.open(where) as store:
        define_and_write(store)
        store.close(checkpoint=False)
    shown = subprocess.run(
        [sys.executable, "-m", "metricstore", "inspect", str(where)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"{len(DEFINITIONS)} define_metric" in shown.stdout


def test_conversions_and_plots_carry_the_unit() -> None:
    store = metricstore.Store()
    define_and_write(store)
    result = store.read(("flops_any", "emmy"), T0, T0 + 300)
    pytest.importorskip("xarray")
    da = result.to_xarray()
    assert da.attrs == {
        "units": "GF/s",
        "step": 60,
        "time_unit": "s",
        "frequency": 60,
        "min_count": 0,
    }
    assert "units" not in store.read(("cpu_load", "emmy"), T0, T0 + 300).to_xarray().attrs
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = result.plot()
    assert ax.get_ylabel() == "flops_any [GF/s]"
    both = store.read_many([("mem_used", "emmy/*")], T0, T0 + 300).plot()
    assert both.get_ylabel() == "mem_used [GB]"
    mixed = store.read_many([("flops_any", "emmy"), ("cpu_load", "emmy")], T0, T0 + 300).plot()
    assert mixed.get_ylabel() == "value"
    plt.close("all")
