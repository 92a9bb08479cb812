"""How stores, results and reports show themselves: the HTML notebooks
render (``_repr_html_``) and the text of ``repr()``.

The output is small whatever the data: at most ``MAX_ROWS`` series, metrics
or hosts are listed (the rest are counted), a sparkline has at most
``SPARK_POINTS`` points, and lists of names in text are cut to their first
and last few. Every name is HTML-escaped (a path part may hold ``<`` or
``&``); everything else is a number formatted here.

Styles sit in a ``<style>`` scoped to the wrapper's class, as xarray's do,
with the class named twice in each selector: notebook front ends style
tables with rules of their own (JupyterLab right-aligns every cell with a
rule more specific than one class and an element), and two classes win over
them. Colours are the front end's theme variables (JupyterLab's ``--jp-*``,
VS Code's ``--vscode-*``), falling back to inheriting the text colour, so a
dark theme stays dark. Where a viewer strips ``<style>``, the tables still
read as plain tables.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ._frames import as_rows, full_count, series_name
from .exceptions import ClosedError

if TYPE_CHECKING:
    from ._core import ReadResult
    from .ccbackend import JobLoad
    from .collector import HostHealth
    from .store import RecoveryReport, SeriesStats, Store

__all__ = [
    "MAX_ROWS",
    "SPARK_POINTS",
    "format_bytes",
    "health_html",
    "health_text",
    "host_health_html",
    "host_health_text",
    "job_load_html",
    "job_load_text",
    "read_result_html",
    "read_result_text",
    "recovery_html",
    "recovery_text",
    "series_stats_html",
    "series_stats_text",
    "store_html",
    "store_text",
]

MAX_ROWS = 12
SPARK_POINTS = 60
_SPARK_HEIGHT = 18
# Names shown at each end of a list cut short in text.
_HEAD, _TAIL = 3, 1


def format_bytes(n: int) -> str:
    """``n`` bytes as people read them: B, KiB, MiB or GiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


_SCOPE = "div.metricstore-repr.metricstore-repr"
_FG = "var(--jp-content-font-color1, var(--vscode-editor-foreground, inherit))"
_MUTED = "var(--jp-content-font-color2, var(--vscode-descriptionForeground, inherit))"
_LINE = "var(--jp-border-color2, var(--vscode-editorWidget-border, rgba(128, 128, 128, 0.3)))"
_ACCENT = "var(--jp-brand-color1, var(--vscode-charts-blue, #3b7dd8))"
_WARN = "var(--jp-warn-color1, var(--vscode-editorWarning-foreground, #c77c00))"
_BAD = "var(--jp-error-color1, var(--vscode-editorError-foreground, #d33))"
_GOOD = "var(--jp-success-color1, var(--vscode-testing-iconPassed, #2a8a3e))"
_STYLE = (
    "<style>"
    f"{_SCOPE}{{color:{_FG};font-size:12px;line-height:1.4}}"
    f"{_SCOPE} table{{border-collapse:collapse;margin:4px 0;table-layout:auto;"
    "width:auto;font-size:12px}"
    f"{_SCOPE} tr,{_SCOPE} tbody tr:nth-child(odd),{_SCOPE} tbody tr:nth-child(even),"
    f"{_SCOPE} tbody tr:hover{{background:transparent}}"
    f"{_SCOPE} td,{_SCOPE} th{{padding:1px 8px;text-align:left;vertical-align:middle;"
    f"white-space:nowrap;border:none;border-bottom:1px solid {_LINE};color:{_FG}}}"
    f"{_SCOPE} th{{font-weight:600}}"
    f"{_SCOPE} td.n,{_SCOPE} th.n{{text-align:right;font-variant-numeric:tabular-nums}}"
    f"{_SCOPE} .muted{{color:{_MUTED}}}"
    f"{_SCOPE} .full{{color:{_GOOD}}}{_SCOPE} .partial{{color:{_WARN}}}"
    f"{_SCOPE} .failed{{color:{_BAD}}}"
    f"{_SCOPE} svg .line{{stroke:{_ACCENT};fill:none}}{_SCOPE} svg .dot{{fill:{_ACCENT}}}"
    "</style>"
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
            shapes.append(f'<circle class="dot" cx="{cx}" cy="{cy}" r="1" fill="currentColor"/>')
        elif run:
            shapes.append(
                f'<polyline class="line" points="{" ".join(run)}" fill="none" '
                'stroke="currentColor" stroke-width="1"/>'
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
        f"resampled: {what} bucket of {result.step} {result.time_unit} "
        f"({slots} slots of {result.frequency} {result.time_unit})"
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
    grid = f"step {result.step} {_e(result.time_unit)}" if how is None else _e(how)
    unit = "" if result.unit is None else f", values in {_e(result.unit)}"
    kept = "" if result.min_count <= 1 else f", NaN below {result.min_count:,} samples"
    header = (
        f"<b>ReadResult</b>: {shape}, {grid}{unit}, "
        f"{int(valid.sum()):,} valid values, mean {_number(_mean(values))}, "
        f"coverage {_percent(_overall_coverage(result)) if values.size else '&ndash;'}{kept}<br>"
        f"[{_e(_time(result.start, result.time_unit))}, "
        f"{_e(_time(result.stop, result.time_unit))}) UTC"
        f' <span class="muted">= ticks [{result.start}, {result.stop})</span>'
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


def _cut(names: Sequence[str], head: int = _HEAD, tail: int = _TAIL) -> str:
    """Names joined by commas, the middle of a long list left out."""
    if len(names) <= head + tail + 1:
        return ", ".join(names)
    return ", ".join([*names[:head], "...", *names[len(names) - tail :]])


def _duration(seconds: float) -> str:
    """A span as people read it: "1 day, 0:01:00", "0:05:00", "0.25 s"."""
    if seconds < 1:
        return f"{seconds:g} s"
    return str(_dt.timedelta(seconds=round(seconds)))


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


_SECONDS_PER_TICK = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


# -- recovery ----------------------------------------------------------------------


def _recovery_lines(report: RecoveryReport) -> list[str]:
    """The report in sentences (plain text; callers escape for HTML)."""
    if report.snapshot is None and report.snapshot_lsn > 0:
        source = f"after LSN {report.snapshot_lsn} (a refresh)"
    elif report.snapshot is None:
        source = "no snapshot"
    else:
        source = f"snapshot {_file(report.snapshot)} (LSN {report.snapshot_lsn})"
    lines = [
        f"{source}, then {_count(report.records, 'record')} replayed from "
        f"{_count(report.segments, 'segment')} ({report.bytes:,} bytes); "
        f"last LSN {report.last_lsn}; {report.seconds * 1000:.1f} ms"
    ]
    if report.torn is not None:
        lines.append(
            f"torn tail cut: {report.torn.bytes:,} bytes at offset {report.torn.offset} of "
            f"{_file(report.torn.file)} ({report.torn.reason})"
        )
    if report.stopped is not None:
        lines.append(
            f"point-in-time recovery stopped at offset {report.stopped.offset} of "
            f"{_file(report.stopped.file)} ({report.stopped.reason})"
        )
    for file, reason in report.skipped_snapshots:
        lines.append(f"skipped snapshot {_file(file)}: {reason}")
    if report.set_aside:
        lines.append(f"set aside: {', '.join(_file(f) for f in report.set_aside)}")
    return lines


def _recovery_html(report: RecoveryReport) -> str:
    return "<br>".join(_e(line) for line in _recovery_lines(report))


def recovery_text(report: RecoveryReport) -> str:
    lines = _recovery_lines(report)
    return "\n".join([f"RecoveryReport: {lines[0]}", *(f"  {line}" for line in lines[1:])])


def recovery_html(report: RecoveryReport) -> str:
    return _wrap(f"<b>RecoveryReport</b>: {_recovery_html(report)}")


# -- the store -----------------------------------------------------------------------


class _Summary:
    """What a store's reprs show, gathered once."""

    def __init__(self, store: Store) -> None:
        self.metrics = store.metrics
        self.stats = store.stats()
        self.extent = store.extent()
        counts, self.hosts = store._core.outline()
        self.per_metric = {m.name: n for m, n in zip(self.metrics, counts, strict=False)}

    def time_line(self, unit: str) -> str:
        if self.extent is None:
            return "no samples"
        start, stop = self.extent
        span = (stop - start) * _SECONDS_PER_TICK[unit]
        return f"{_time(start, unit)} .. {_time(stop, unit)} UTC ({_duration(span)})"

    def hosts_line(self) -> str:
        if not self.hosts:
            return "none (no series two levels below the root)"
        return f"{len(self.hosts):,} ({_cut(self.hosts)})"

    def series_of(self, metric: str) -> str:
        return f"{self.per_metric.get(metric, 0):,}"


def _summary(store: Store) -> _Summary | None:
    if store.closed:
        return None
    try:
        return _Summary(store)
    except ClosedError:  # closed by another thread since the check
        return None


def _store_flags(store: Store) -> list[str]:
    flags = [f"unit {store.unit}"]
    if store.readonly:
        flags.append("readonly")
    return flags


def store_text(store: Store) -> str:
    where = "" if store.path is None else f" path={store.path!r}"
    if store.readonly:
        where += " readonly"
    summary = _summary(store)
    if summary is None:
        return f"<metricstore.Store{where} unit={store.unit!r} closed>"
    s = summary.stats
    lines = [
        f"<metricstore.Store{where} unit={store.unit!r} metrics={s['metrics']} "
        f"series={s['series']} samples={s['samples']:,} memory={format_bytes(s['data_bytes'])}",
        f"  time:  {summary.time_line(store.unit)}",
        f"  hosts: {summary.hosts_line()}",
    ]
    if summary.metrics:
        table = [("metric", "frequency", "aggregation", "unit", "series")]
        for m in summary.metrics[:MAX_ROWS]:
            table.append(
                (
                    m.name,
                    f"{m.frequency} {store.unit}",
                    m.aggregation,
                    m.unit or "-",
                    summary.series_of(m.name),
                )
            )
        widths = [max(len(row[i]) for row in table) for i in range(5)]
        for row in table:
            cells = [
                c.ljust(w) if i < 4 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  " + "  ".join(cells).rstrip())
        if len(summary.metrics) > MAX_ROWS:
            lines.append(f"  ... {len(summary.metrics) - MAX_ROWS:,} more metrics")
    if store.recovery is not None:
        lines.append(f"  recovery: {_recovery_lines(store.recovery)[0]}")
    return "\n".join(lines) + ">"


def store_html(store: Store) -> str:
    where = "in memory" if store.path is None else f"<code>{_e(store.path)}</code>"
    flags = [_e(f) for f in _store_flags(store)]
    summary = _summary(store)
    if summary is None:
        flags.append("<b>closed</b>")
    title = f"<b>metricstore.Store</b> {where}, {', '.join(flags)}"
    tables = []
    if summary is not None:
        s = summary.stats
        tables.append(
            _row(["series", "samples", "memory"], {0, 1, 2}, tag="th")
            + _row(
                [f"{s['series']:,}", f"{s['samples']:,}", format_bytes(s["data_bytes"])],
                {0, 1, 2},
            )
        )
        tables.append(
            _row(["time", _e(summary.time_line(store.unit))])
            + _row(["hosts", _e(summary.hosts_line())])
        )
        table = [_row(["metric", "frequency", "aggregation", "unit", "series"], {1, 4}, tag="th")]
        for metric in summary.metrics[:MAX_ROWS]:
            table.append(
                _row(
                    [
                        _e(metric.name),
                        f"{metric.frequency} {_e(store.unit)}",
                        _e(metric.aggregation),
                        _e(metric.unit) if metric.unit else '<span class="muted">&ndash;</span>',
                        summary.series_of(metric.name),
                    ],
                    {1, 4},
                )
            )
        if len(summary.metrics) > MAX_ROWS:
            table.append(_more(len(summary.metrics) - MAX_ROWS, 5))
        tables.append("".join(table) if summary.metrics else _row(["no metrics defined"]))
    body = "".join(f"<table>{t}</table>" for t in tables)
    recovery = store.recovery
    footer = "" if recovery is None else f"<div>Recovery: {_recovery_html(recovery)}</div>"
    return _wrap(f"{title}{body}{footer}")


# -- summaries of one series and of a job ----------------------------------------------


def _value(value: float, unit: str | None) -> str:
    text = "NaN" if np.isnan(value) else _number(value)
    return text if unit is None else f"{text} {unit}"


def series_stats_text(stats: SeriesStats) -> str:
    if stats.count == 0:
        return "SeriesStats(no samples)"
    return (
        f"SeriesStats(count={stats.count:,}, min={_value(stats.min, stats.unit)}, "
        f"avg={_value(stats.avg, stats.unit)}, max={_value(stats.max, stats.unit)})"
    )


def series_stats_html(stats: SeriesStats) -> str:
    head = _row(["samples", "min", "avg", "max", "unit"], {0, 1, 2, 3}, tag="th")
    cells = [f"{stats.count:,}", *(_value(v, None) for v in (stats.min, stats.avg, stats.max))]
    body = _row([*cells, _e(stats.unit or "")], {0, 1, 2, 3})
    return _wrap(f"<b>SeriesStats</b><table>{head}{body}</table>")


def _job_facts(job: JobLoad) -> list[tuple[str, str]]:
    """(label, value) pairs of a job's metadata, in plain text."""
    facts = [("job", f"{job.job_id} on {job.cluster}")]
    if job.user is not None or job.project is not None:
        facts.append(("user", f"{job.user or '?'} (project {job.project or '?'})"))
    start = _time(job.start, "s")
    if job.stop is not None:
        start += f" .. {_time(job.stop, 's')} UTC"
    else:
        start += " UTC"
    if job.duration is not None:
        start += f" ({_duration(job.duration)})"
    facts.append(("time", start))
    if job.state is not None:
        facts.append(("state", job.state))
    where = f"{len(job.hosts)} ({_cut(job.hosts)})"
    if job.partition or job.sub_cluster:
        where += f", partition {job.partition or '?'}, {job.sub_cluster or '?'} nodes"
    facts.append(("hosts", where))
    facts.append(
        ("loaded", f"{len(job.metrics)} metrics, {job.series:,} series, {job.samples:,} "
                   f"samples, {job.missing:,} missing")
    )  # fmt: skip
    return facts


def _job_metric_rows(job: JobLoad) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for name in sorted(set(job.metrics) | set(job.statistics)):
        stat = job.statistics.get(name)
        unit = job.units.get(name) or (stat.unit if stat else None) or ""
        values = ("", "", "") if stat is None else (
            _number(stat.min), _number(stat.avg), _number(stat.max)
        )  # fmt: skip
        rows.append((name, unit, *values))
    return rows


def job_load_text(job: JobLoad) -> str:
    lines = [f"JobLoad {job.job_id} ({job.cluster})"]
    lines += [f"  {label + ':':8} {value}" for label, value in _job_facts(job)[1:]]
    rows = _job_metric_rows(job)
    if rows:
        table = [("metric", "unit", "min", "avg", "max"), *rows[:MAX_ROWS]]
        widths = [max(len(r[i]) for r in table) for i in range(5)]
        lines.append("  cc-backend's statistics:")
        for r in table:
            cells = [
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ]
            lines.append("    " + "  ".join(cells).rstrip())
        if len(rows) > MAX_ROWS:
            lines.append(f"    ... {len(rows) - MAX_ROWS} more metrics")
    return "\n".join(lines)


def job_load_html(job: JobLoad) -> str:
    facts = "".join(_row([_e(label), _e(value)]) for label, value in _job_facts(job))
    head = _row(["metric", "unit", "min", "avg", "max"], {2, 3, 4}, tag="th")
    rows = _job_metric_rows(job)
    body = "".join(_row([_e(c) for c in r], {2, 3, 4}) for r in rows[:MAX_ROWS])
    if len(rows) > MAX_ROWS:
        body += _more(len(rows) - MAX_ROWS, 5)
    stats = f"<div>cc-backend's statistics</div><table>{head}{body}</table>" if rows else ""
    return _wrap(f"<b>JobLoad</b><table>{facts}</table>{stats}")


# -- health ----------------------------------------------------------------------------


def _health_parts(health: HostHealth) -> list[str]:
    parts = [f"{len(health.fresh)} fresh"]
    for word, names in (("stale", health.stale), ("missing", health.missing)):
        if names:
            parts.append(f"{word}: {_cut(names)}")
    return parts


def host_health_text(health: HostHealth) -> str:
    return f"HostHealth({health.state}; {'; '.join(_health_parts(health))})"


def host_health_html(health: HostHealth) -> str:
    state = f'<span class="{health.state}">{health.state}</span>'
    return _wrap(f"<b>HostHealth</b>: {state}; {_e('; '.join(_health_parts(health)))}")


def health_text(report: Iterable[tuple[str, HostHealth]], hosts: int) -> str:
    items = list(report)
    states = Counter(h.state for _, h in items)
    lines = [
        f"HealthReport: {hosts:,} hosts, "
        + ", ".join(f"{states[s]:,} {s}" for s in ("full", "partial", "failed"))
    ]
    # Hosts that are not full first: they are what a reader looks for.
    shown = sorted(items, key=lambda item: item[1].state == "full")[:MAX_ROWS]
    width = max((len(k) for k, _ in shown), default=0)
    for key, health in shown:
        lines.append(f"  {key:{width}}  {health.state:7}  {'; '.join(_health_parts(health))}")
    if len(items) > MAX_ROWS:
        lines.append(f"  ... {len(items) - MAX_ROWS:,} more hosts")
    return "\n".join(lines)


def health_html(report: Iterable[tuple[str, HostHealth]], hosts: int) -> str:
    items = list(report)
    states = Counter(h.state for _, h in items)
    title = f"<b>HealthReport</b>: {hosts:,} hosts, " + ", ".join(
        f'{states[s]:,} <span class="{s}">{s}</span>' for s in ("full", "partial", "failed")
    )
    head = _row(["host", "state", "fresh", "stale", "missing"], {2}, tag="th")
    shown = sorted(items, key=lambda item: item[1].state == "full")[:MAX_ROWS]
    body = "".join(
        _row(
            [
                _e(key),
                f'<span class="{h.state}">{h.state}</span>',
                f"{len(h.fresh)}",
                _e(_cut(h.stale)),
                _e(_cut(h.missing)),
            ],
            {2},
        )
        for key, h in shown
    )
    if len(items) > MAX_ROWS:
        body += _more(len(items) - MAX_ROWS, 5)
    return _wrap(f"{title}<table>{head}{body}</table>")
