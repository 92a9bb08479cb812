"""HTML for notebooks: ``_repr_html_`` of :class:`ReadResult` and :class:`Store`.

The output is small whatever the data: at most ``MAX_ROWS`` series or
metrics are listed (the rest are counted), and a sparkline has at most
``SPARK_POINTS`` points. Every name is HTML-escaped (a path part may hold
``<`` or ``&``); everything else is a number formatted here. Styles are
inline, so nothing leaks into the rest of the notebook.
"""

from __future__ import annotations

import html
import os
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ._frames import as_rows, full_count, series_name
from .exceptions import ClosedError

if TYPE_CHECKING:
    from .store import ReadResult, RecoveryReport, Store

__all__ = [
    "MAX_ROWS",
    "SPARK_POINTS",
    "format_bytes",
    "read_result_html",
    "read_result_text",
    "store_html",
]

MAX_ROWS = 12
SPARK_POINTS = 60
_SPARK_HEIGHT = 18


def format_bytes(n: int) -> str:
    """``n`` bytes as people read them: B, KiB, MiB or GiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


# Scoped to the wrapper's class, as xarray does; where a notebook viewer
# strips <style>, the tables still read as plain tables.
_STYLE = (
    "<style>.metricstore-repr table{border-collapse:collapse;font-size:12px;margin:2px 0}"
    ".metricstore-repr td,.metricstore-repr th{padding:1px 8px;text-align:left;"
    "border-bottom:1px solid #ddd}.metricstore-repr .n{text-align:right}</style>"
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float) -> str:
    return f"{value:.6g}"


def _row(cells: list[str], numeric: set[int] | None = None, tag: str = "td") -> str:
    numeric = numeric or set()
    return (
        "<tr>"
        + "".join(
            f'<{tag} class="n">{c}</{tag}>' if i in numeric else f"<{tag}>{c}</{tag}>"
            for i, c in enumerate(cells)
        )
        + "</tr>"
    )


def _more(count: int, columns: int) -> str:
    return f"<tr><td colspan={columns}>&hellip; {count:,} more</td></tr>"


def _wrap(inner: str) -> str:
    return f'<div class="metricstore-repr">{_STYLE}{inner}</div>'


def _time(ticks: int, unit: str) -> str:
    return str(np.array(ticks, dtype=np.int64).astype(f"datetime64[{unit}]"))


def sparkline(row: NDArray[np.float32]) -> str:
    """An inline SVG of a row: bucket means, scaled to the row's range, with
    gaps where a bucket holds no value."""
    if len(row) == 0:
        return ""
    buckets = min(len(row), SPARK_POINTS)
    edges = np.linspace(0, len(row), buckets + 1).astype(np.int64)[:-1]
    values = row.astype(np.float64)
    present = np.isfinite(values)
    sums = np.add.reduceat(np.where(present, values, 0.0), edges)
    counts = np.add.reduceat(present.astype(np.int64), edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / counts, np.nan)
    finite = means[~np.isnan(means)]
    if len(finite) == 0:
        return ""
    low, high = float(finite.min()), float(finite.max())
    span = high - low
    width = 2.0 * SPARK_POINTS
    xs = np.arange(buckets) * (width / max(buckets - 1, 1))
    ys = (
        np.full(buckets, _SPARK_HEIGHT / 2)
        if span == 0
        else (_SPARK_HEIGHT - 1) - (means - low) / span * (_SPARK_HEIGHT - 2)
    )
    shapes = []
    run: list[str] = []
    for x, y, mean in [*zip(xs, ys, means, strict=True), (0.0, 0.0, np.nan)]:
        if not np.isnan(mean):
            run.append(f"{x:.0f},{y:.1f}")
            continue
        if len(run) == 1:
            cx, cy = run[0].split(",")
            shapes.append(f'<circle cx="{cx}" cy="{cy}" r="1" fill="#1f77b4"/>')
        elif run:
            shapes.append(
                f'<polyline points="{" ".join(run)}" fill="none" stroke="#1f77b4" '
                'stroke-width="1"/>'
            )
        run = []
    return (
        f'<svg width="{width:.0f}" height="{_SPARK_HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(shapes)}</svg>'
    )


def coverage(result: ReadResult) -> NDArray[np.float64]:
    """Per row, the share of the samples a full read would have that are
    behind its values: counts summed over the samples of full values (NaN
    for a row of no values)."""
    counts = as_rows(result.counts).astype(np.float64)
    full = full_count(result).astype(np.float64) * counts.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(counts.sum(axis=1) / full, dtype=np.float64)


def _overall_coverage(result: ReadResult) -> float:
    counts = result.counts
    full = float(full_count(result).sum()) * counts.shape[-1]
    return float(counts.sum(dtype=np.float64)) / full if full else float("nan")


def _mean(values: NDArray[np.float32]) -> float:
    present = values[~np.isnan(values)]
    return float(present.mean(dtype=np.float64)) if len(present) else float("nan")


def _percent(share: float) -> str:
    return "&ndash;" if np.isnan(share) else f"{share:.1%}"


def resampling(result: ReadResult) -> str | None:
    """How a read was resampled, in words, or None for a read of the grid."""
    if result.method is None:
        return None
    slots = result.step // result.frequency if result.frequency else 0
    what = "one sample per" if result.method == "lttb" else f"{result.method} of each"
    return (
        f"resampled: {what} bucket of {result.step} {result.unit} "
        f"({slots} slots of {result.frequency} {result.unit})"
    )


def read_result_text(result: ReadResult, head: str) -> str:
    """The text repr: ``head`` (the result's fields, from the core) with
    its mean, coverage and resampling; a few dozen characters whatever the
    data."""
    parts = [head, f"mean={_mean(result.values):.6g}"]
    if result.values.size:
        parts.append(f"coverage={_overall_coverage(result):.1%}")
    if result.method is not None:
        parts.append(f"method={result.method!r}, frequency={result.frequency}")
    if result.min_count > 1:
        parts.append(f"min_count={result.min_count}")
    return ", ".join(parts) + ")"


def read_result_html(result: ReadResult) -> str:
    values = result.values
    rows = as_rows(values)
    valid = np.count_nonzero(~np.isnan(rows), axis=1)
    names = [series_name(k) for k in result.keys]
    count = len(result)
    shares = coverage(result)
    row_sources = np.atleast_1d(np.asarray(result.sources))
    shape = f"{len(rows)} series &times; {count} slots" if values.ndim == 2 else f"{count} slots"
    how = resampling(result)
    grid = f"step {result.step} {_e(result.unit)}" if how is None else _e(how)
    kept = "" if result.min_count <= 1 else f", NaN below {result.min_count:,} samples"
    header = (
        f"<b>ReadResult</b>: {shape}, {grid}, "
        f"{int(valid.sum()):,} valid values, mean {_number(_mean(values))}, "
        f"coverage {_percent(_overall_coverage(result)) if values.size else '&ndash;'}{kept}<br>"
        f"[{_e(_time(result.start, result.unit))}, {_e(_time(result.stop, result.unit))}) UTC"
        f" = ticks [{result.start}, {result.stop})"
    )
    body = [
        _row(
            ["series", "sources", "valid", "coverage", "mean", "min", "max", ""],
            {1, 2, 3, 4, 5, 6},
            tag="th",
        )
    ]
    for i, (name, row, n) in enumerate(
        zip(names[:MAX_ROWS], rows[:MAX_ROWS], valid[:MAX_ROWS], strict=False)
    ):
        present = row[~np.isnan(row)]
        low = _number(float(present.min())) if n else "&ndash;"
        high = _number(float(present.max())) if n else "&ndash;"
        mean = _number(_mean(row)) if n else "&ndash;"
        cells = [
            _e(name),
            f"{int(row_sources[i]):,}",
            f"{int(n):,}",
            _percent(float(shares[i])),
            mean,
            low,
            high,
            sparkline(row),
        ]
        body.append(_row(cells, {1, 2, 3, 4, 5, 6}))
    if len(rows) > MAX_ROWS:
        body.append(_more(len(rows) - MAX_ROWS, 8))
    return _wrap(f"{header}<table>{''.join(body)}</table>")


def _file(path: str) -> str:
    """A file of the store directory by its name; the directory is shown once."""
    return os.path.basename(path)


def _recovery_html(report: RecoveryReport) -> str:
    if report.snapshot is None:
        source = "no snapshot"
    else:
        source = f"snapshot {_e(_file(report.snapshot))} (LSN {report.snapshot_lsn})"
    parts = [
        f"{source}, then {report.records:,} records replayed from {report.segments:,} "
        f"segments ({report.bytes:,} bytes); last LSN {report.last_lsn}; "
        f"{report.seconds * 1000:.1f} ms"
    ]
    if report.torn is not None:
        parts.append(
            f"torn tail cut: {report.torn.bytes:,} bytes at offset {report.torn.offset} of "
            f"{_e(_file(report.torn.file))} ({_e(report.torn.reason)})"
        )
    if report.stopped is not None:
        parts.append(
            f"point-in-time recovery stopped at offset {report.stopped.offset} of "
            f"{_e(_file(report.stopped.file))} ({_e(report.stopped.reason)})"
        )
    for file, reason in report.skipped_snapshots:
        parts.append(f"skipped snapshot {_e(_file(file))}: {_e(reason)}")
    if report.set_aside:
        parts.append(f"set aside: {', '.join(_e(_file(f)) for f in report.set_aside)}")
    return "<br>".join(parts)


def store_html(store: Store) -> str:
    where = "in memory" if store.path is None else f"<code>{_e(store.path)}</code>"
    flags = [f"unit {_e(store.unit)}"]
    if store.readonly:
        flags.append("readonly")
    metrics: list[Any] = []
    stats: dict[str, Any] | None = None
    if not store.closed:
        try:
            metrics, stats = store.metrics, store.stats()
        except ClosedError:  # closed by another thread since the check
            stats = None
    if stats is None:
        flags.append("<b>closed</b>")
    title = f"<b>metricstore.Store</b> {where}, {', '.join(flags)}"
    summary = []
    if stats is not None:
        summary.append(
            _row(["series", "samples", "memory"], {0, 1, 2}, tag="th")
            + _row(
                [
                    f"{stats['series']:,}",
                    f"{stats['samples']:,}",
                    format_bytes(stats["data_bytes"]),
                ],
                {0, 1, 2},
            )
        )
        table = [_row(["metric", "frequency", "aggregation"], {1}, tag="th")]
        for metric in metrics[:MAX_ROWS]:
            table.append(
                _row(
                    [
                        _e(metric.name),
                        f"{metric.frequency} {_e(store.unit)}",
                        _e(metric.aggregation),
                    ],
                    {1},
                )
            )
        if len(metrics) > MAX_ROWS:
            table.append(_more(len(metrics) - MAX_ROWS, 3))
        summary.append("".join(table) if metrics else _row(["no metrics defined"]))
    tables = "".join(f"<table>{t}</table>" for t in summary)
    recovery = store.recovery
    footer = "" if recovery is None else f"<div>Recovery: {_recovery_html(recovery)}</div>"
    return _wrap(f"{title}{tables}{footer}")
