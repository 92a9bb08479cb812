"""Progress bars and Ctrl-C for long calls (:func:`metricstore.open`,
:func:`metricstore.ccbackend.load_checkpoints`).

One rule for ``progress`` everywhere: ``False`` never shows a bar, ``None``
(the default) shows one when stderr is a terminal or in a notebook, and
``True`` whenever tqdm is installed. tqdm is optional
(``pip install 'metricstore[progress]'``); without it no bar is shown.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def check_progress(progress: object) -> None:
    """Raises TypeError unless ``progress`` is True, False or None."""
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress: expected True, False or None, got {progress!r}")


def wants_bar(progress: bool | None) -> bool:
    """Whether ``progress`` and the environment call for a bar (see the
    module docstring); raises TypeError for a bad ``progress``."""
    check_progress(progress)
    if progress is False:
        return False
    try:
        importlib.import_module("tqdm.auto")
    except ImportError:
        return False
    return progress is True or sys.stderr.isatty() or in_notebook()


def new_bar(total: int, description: str, initial: int = 0) -> Any:
    """A tqdm bar counting bytes up to ``total``, ``initial`` of them done
    (tqdm must be installed)."""
    auto = importlib.import_module("tqdm.auto")
    return auto.tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=description,
    )


def progress_bar(progress: bool | None, total: int, description: str) -> Any:
    """A bar counting bytes up to ``total``, or None when :func:`wants_bar`
    says no."""
    return new_bar(total, description) if wants_bar(progress) else None


def in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


@contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Holds Ctrl-C back while worker threads start, so that every worker is
    started (and can be stopped and joined) when KeyboardInterrupt is
    raised; a Ctrl-C that came meanwhile is raised on leaving."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is None  # a handler Python cannot restore
    ):
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught and callable(previous):
        previous(signal.SIGINT, None)
