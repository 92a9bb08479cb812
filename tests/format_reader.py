"""The reader of snapshot files written from docs/format.md alone
(benchmarks/chunk_parts.py), for tests that take snapshots apart: it shares
no code with the store, so they check the store against the document."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "chunk_parts.py"
_spec = importlib.util.spec_from_file_location("chunk_parts", _PATH)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

Cursor = _module.Cursor
snapshot_parts = _module.snapshot_parts
SCHEMES = _module.SCHEMES
