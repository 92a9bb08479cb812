"""pytest fixtures for suites that test code built on metricstore.

Installed with the package and loaded by pytest through the ``pytest11``
entry point ``metricstore`` (``-p no:metricstore`` turns it off):

- ``store``: a store opened in a fresh directory under ``tmp_path``,
  closed after the test.
- ``store_factory``: opens (and reopens) stores in such a directory; every
  store it opened is closed after the test.
- ``crashed_store``: a store directory whose writer was killed with SIGKILL
  in the middle of writing, and what that writer acknowledged (a
  :class:`metricstore.testing.Crash`). The marker
  ``@pytest.mark.metricstore_crash(...)`` passes its keyword arguments to
  :func:`metricstore.testing.kill_writer` to choose another writer, moment
  or sync mode.

Importing this module loads neither the compiled core nor NumPy (pytest
imports it in every session); the fixtures import what they need.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .store import Store
    from .testing import Crash

__all__ = ["StoreFactory", "crashed_store", "store", "store_factory"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "metricstore_crash(**kwargs): keyword arguments for metricstore.testing.kill_writer "
        "that make the crashed_store fixture (writer, after_acks, sync, args, open_options)",
    )


class StoreFactory:
    """Opens stores in one directory, ``path``, and remembers them so the
    fixture closes them all after the test."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.opened: list[Store] = []

    def __call__(self, **options: Any) -> Store:
        """Opens the store at ``path``: ``metricstore.open(path, **options)``."""
        import metricstore

        store = metricstore.open(self.path, **options)
        self.opened.append(store)
        return store

    def reopen(self, store: Store, **options: Any) -> Store:
        """Closes ``store`` (with a final snapshot, as ``close()`` does) and
        opens the directory again, so the new store recovers what the old
        one left."""
        store.close()
        return self(**options)

    def close_all(self) -> None:
        """Closes every store opened here (closing twice is fine); raises the
        first error after trying them all."""
        errors = []
        for store in self.opened:
            try:
                store.close()
            except Exception as error:
                errors.append(error)
        if errors:
            raise errors[0]


@pytest.fixture
def store_factory(tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens stores in the directory ``tmp_path / "store"``:
    ``store_factory(**options)`` is ``metricstore.open(that directory,
    **options)``, ``store_factory.reopen(store)`` closes a store and opens the
    directory again, and ``store_factory.path`` is the directory. Every store
    opened is closed after the test."""
    factory = StoreFactory(tmp_path / "store")
    yield factory
    factory.close_all()


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    """A store opened with default options in the fresh directory
    ``store_factory.path``; closed after the test. It is the factory's first
    store, so ``store_factory.reopen(store)`` restarts it."""
    return store_factory()


@pytest.fixture
def crashed_store(request: pytest.FixtureRequest, tmp_path: Path) -> Crash:
    """The directory ``tmp_path / "crashed"`` of a store whose writer was
    killed with SIGKILL in the middle of writing, as a
    :class:`metricstore.testing.Crash`: ``.path`` is the directory (no
    process holds it), ``.acknowledged`` the values the writer acknowledged,
    in order.

    By default the writer is :func:`metricstore.testing.block_writer`, killed
    after 20 acknowledgements in sync mode "interval": each acknowledgement
    is ``(key, start, values)``, a block of values written to series ``key``
    (metric "m", frequency 10) from tick ``start``, so every one must be found
    by ``store.read(key, start, start + 10 * len(values))`` after reopening.
    ``@pytest.mark.metricstore_crash(writer=..., after_acks=..., sync=...,
    args=..., open_options=...)`` changes any of these.
    """
    from .testing import block_writer, kill_writer

    options: dict[str, Any] = {"writer": block_writer, "after_acks": 20, "sync": "interval"}
    marker = request.node.get_closest_marker("metricstore_crash")
    if marker is not None:
        if marker.args:
            raise TypeError("metricstore_crash: pass keyword arguments only")
        options.update(marker.kwargs)
    return kill_writer(tmp_path / "crashed", **options)
