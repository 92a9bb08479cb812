"""Which metricstore the suite tests.

CI runs the suite twice: once after `pip install '.[test]'`, and once in a
fresh venv holding only the wheel `.ci/wheel` built, with no Rust toolchain
on PATH. For that second run .ci/run sets METRICSTORE_TEST_SITE to the
venv's site-packages, and the run stops at once unless `import metricstore`
(and its compiled `_core`) resolved there, not to the source tree.

The modules in EXHAUSTIVE are marked `exhaustive`: long matrices over the
engine's logic (kills, power cuts, a model, thread interleavings), whose
compiled code is the same in both builds. The wheel's run leaves them out
(`-m "not exhaustive"`); every module is still imported there.

Also the `ctrl_c_handled` fixture, for the tests that press Ctrl-C.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import metricstore
import metricstore._core

EXHAUSTIVE = frozenset(
    {
        "test_concurrent_writers_to_the_same_slots_recover_bit_for_bit.py",
        "test_coverage_counts_and_min_count_match_numpy.py",
        "test_cuts_of_old_data_replay_exactly.py",
        "test_kill9_during_close_loses_nothing.py",
        "test_kill9_loses_nothing_acknowledged.py",
        "test_power_cut_on_a_real_file_system.py",
        "test_replay_memory_is_bounded.py",
        "test_threads.py",
        "test_writes_match_model.py",
    }
)


def pytest_report_header() -> str:
    return f"metricstore: {Path(metricstore.__file__).parent}"


def pytest_configure(config: pytest.Config) -> None:
    site = os.environ.get("METRICSTORE_TEST_SITE")
    if not site:
        return
    expected = Path(site).resolve()
    for module in (metricstore, metricstore._core):
        found = Path(str(module.__file__)).resolve()
        if not found.is_relative_to(expected):
            raise pytest.UsageError(
                f"METRICSTORE_TEST_SITE: {module.__name__} was imported from {found}, "
                f"not from {expected}"
            )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    renamed = sorted(name for name in EXHAUSTIVE if not (Path(__file__).parent / name).exists())
    if renamed:
        raise pytest.UsageError(f"tests/conftest.py: EXHAUSTIVE names no such file: {renamed}")
    for item in items:
        if item.path.name in EXHAUSTIVE:
            item.add_marker(pytest.mark.exhaustive)


@pytest.fixture
def ctrl_c_handled() -> Iterator[None]:
    """Python's own SIGINT handler for the test, as an interactive process has.

    A process started in the background of a shell without job control
    ignores SIGINT, and Python then takes no Ctrl-C at all: a simulated one
    (`_thread.interrupt_main`) does nothing either.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
