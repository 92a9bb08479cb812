"""The pytest plugin: a user's suite gets working ``store``, ``store_factory``
and ``crashed_store`` fixtures, a failed comparison explains itself, and
loading the plugin loads no compiled code."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

# In-process pytester runs drop the modules a run imported; NumPy cannot be
# imported twice in one process, so the user suites find these loaded.
import metricstore.store
import metricstore.testing  # noqa: F401

pytest_plugins = ["pytester"]

PLUGIN = "metricstore.pytest_plugin"


def plugin_args() -> list[str]:
    """Loads the plugin by name unless the installed package's entry point
    already does (an install older than the entry point)."""
    if any(ep.value == PLUGIN for ep in entry_points(group="pytest11")):
        return []
    return ["-p", PLUGIN]


USER_SUITE = """
    import numpy as np
    import pytest

    import metricstore
    from metricstore.testing import assert_series_equal

    OPENED = []


    def test_store_is_open_in_a_fresh_directory(store, tmp_path):
        assert not store.closed and store.path is not None and len(store) == 0
        assert store.path.startswith(str(tmp_path))
        store.define_metric("cpu", 10, "avg")
        store.write(("cpu", "node1"), 0, [1.0, 2.0])
        assert_series_equal(store.read(("cpu", "node1"), 0, 20), [1.0, 2.0])
        OPENED.append(store)


    def test_the_store_was_closed_after_its_test():
        assert len(OPENED) == 1 and OPENED[0].closed


    def test_store_factory_reopens_the_same_directory(store_factory):
        first = store_factory(sync="always")
        first.define_metric("cpu", 10, "avg")
        first.write(("cpu", "node1"), 0, [1.0, 2.0])
        again = store_factory.reopen(first)
        assert first.closed and again.path == str(store_factory.path)
        assert again.recovery.snapshot is not None
        assert_series_equal(again.read(("cpu", "node1"), 0, 20), [1.0, 2.0])
        reader = store_factory(readonly=True)
        assert reader.metrics == again.metrics
        OPENED.extend([again, reader])


    def test_the_factory_closed_every_store():
        assert len(OPENED) == 3 and all(s.closed for s in OPENED)


    def test_crashed_store_keeps_every_acknowledged_block(crashed_store):
        assert len(crashed_store.acknowledged) >= 20 and not crashed_store.finished
        with metricstore.open(crashed_store.path) as store:
            for key, start, values in crashed_store.acknowledged:
                assert_series_equal(store.read(key, start, start + 10 * len(values)), values)


    WRITER = (
        "store.define_metric('x', 1, 'sum')\\n"
        "for i in range(3):\\n"
        "    store.write(('x', 'a'), i, [i])\\n"
        "    ack(i)\\n"
    )


    @pytest.mark.metricstore_crash(writer=WRITER, after_acks=100, sync="always")
    def test_the_marker_chooses_the_writer(crashed_store):
        assert crashed_store.finished and crashed_store.acknowledged == [0, 1, 2]
"""


def test_a_user_suite_gets_working_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=textwrap.dedent(USER_SUITE))
    result = pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)


def test_a_failed_comparison_in_a_user_suite_names_the_first_difference(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_user="""
        from metricstore.testing import assert_series_equal

        def test_load(store):
            store.define_metric("cpu", 10, "avg")
            store.write(("cpu", "node1"), 100, [1.0, 2.0, 3.0, 4.0])
            assert_series_equal(store.read(("cpu", "node1"), 100, 140), [1.0, 2.0, 3.0, 4.5])
        """
    )
    result = pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    # The failure points at the user's line, not into metricstore.testing.
    result.stdout.fnmatch_lines(
        [
            ">       assert_series_equal(store.read(*",
            "E       AssertionError: series ('cpu', 'node1'): 1 of 4 slots differ; the first at "
            "1970-01-01T00:02:10 (tick 130 of 's'), slot 3:",
            "E         actual:   4.0 (bits 0x40800000)",
            "E         expected: 4.5 (bits 0x40900000)",
            "",
            "test_user.py:6: AssertionError",
        ]
    )


def test_importing_the_plugin_loads_no_compiled_code() -> None:
    code = textwrap.dedent("""
        import sys
        import metricstore.pytest_plugin
        print("metricstore._core" in sys.modules, "numpy" in sys.modules)
        import metricstore
        assert set(metricstore.__all__) <= set(dir(metricstore))
        print("metricstore._core" in sys.modules)
        metricstore.Store
        print("metricstore._core" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.stdout.split("\n") == ["False False", "False", "True", ""], done.stderr


def test_the_plugin_is_declared_as_a_pytest11_entry_point() -> None:
    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["entry-points"]["pytest11"]
    assert declared == {"metricstore": PLUGIN}
