"""Every notebook in notebooks/ runs from top to bottom against the package
under test, and is committed without outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import metricstore

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
TIMEOUT_S = 120  # per cell; each notebook takes well under 20 s in all


def test_the_notebooks_are_there() -> None:
    assert {p.name for p in NOTEBOOKS} >= {
        "quickstart.ipynb",
        "crash_and_recover.ipynb",
        "live_collector.ipynb",
        "checkpoints.ipynb",
        "scale_out.ipynb",
    }


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(notebook: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} of {notebook.name} has outputs"
            assert cell.execution_count is None, f"cell {i} of {notebook.name} was executed"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_without_errors(notebook: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # The kernel (and the processes the notebooks start) must import the
    # metricstore these tests import, not whichever one site-packages holds.
    package_root = str(Path(metricstore.__file__).parent.parent)
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel picks its inline backend
    nb = nbformat.read(notebook, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebook.parent)}},
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert errors == []
    executed = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert executed == list(range(1, len(executed) + 1))
