"""Which metricstore the suite tests.

CI runs the suite twice: once after `pip install '.[test]'`, and once in a
fresh venv holding only the wheel `.ci/wheel` built, with no Rust toolchain
on PATH. For that second run .ci/run sets METRICSTORE_TEST_SITE to the
venv's site-packages, and the run stops at once unless `import metricstore`
(and its compiled `_core`) resolved there, not to the source tree.

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
