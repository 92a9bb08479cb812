"""cc-metric-store's HTTP API on a :class:`~metricstore.Store`, without
the transport: each endpoint takes the request's query string and body and
returns a :class:`Reply`.

The shapes and number formats are cc-metric-store's (``APIQueryRequest``,
``APIMetricData``, ``ErrorResponse``): data values with 3 decimals, stats
with 2, NaN as ``null``, keys in Go's struct order. Where this store
differs, it is on purpose and documented in docs/serve.md:

- a host or metric that is not found gives an entry with an ``error``
  (cc-metric-store leaves it out, which shifts every later entry cc-backend
  maps by position); ``strict=True`` leaves it out too;
- data is NaN-padded at both ends of the range with ``with-padding``, and
  trimmed to the samples without it;
- ``resolution`` averages buckets (cc-metric-store picks points by LTTB);
- a write answers 200 only once every line is in the log under the sync
  mode; bad lines are reported (400) and never stop the good ones;
  lines of metrics the store does not define are skipped and counted.
"""

from __future__ import annotations

import functools
import json
import math
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import numpy as np
from numpy.typing import NDArray

from .. import _core
from ..exceptions import StoreError, UnknownSeriesError
from ..store import Store

__all__ = ["Api", "ApiCounters", "Reply"]

_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"

NOT_FOUND = "metric or host not found"

_STATUS_TEXT = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

#: Rejected lines named in a write's error message (the count is always whole).
_REJECTED_SHOWN = 10


@dataclass
class Reply:
    """An HTTP answer: status, content type, body and extra headers."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(status: int, message: str) -> Reply:
    """cc-metric-store's ``ErrorResponse``: ``{"status": <status text>,
    "error": <message>}`` and a newline."""
    body = f'{{"status":{go_string(_STATUS_TEXT[status])},"error":{go_string(message)}}}\n'
    return Reply(status, _JSON, body.encode())


def text_reply(status: int, message: str) -> Reply:
    """Go's ``http.Error``: the message as plain text and a newline."""
    return Reply(status, _TEXT, (message + "\n").encode())


def go_string(text: str) -> str:
    """A JSON string as Go's encoder writes it (UTF-8 kept; ``<``, ``>``,
    ``&``, U+2028 and U+2029 escaped)."""
    return (
        json.dumps(text, ensure_ascii=False)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def stat_text(value: float) -> str:
    """A ``schema.Float``: 2 decimals, ``null`` for NaN (and infinities)."""
    return f"{value:.2f}" if math.isfinite(value) else "null"


@functools.lru_cache(maxsize=1024)
def _cluster(query: str) -> str | None:
    """A write's ``?cluster=`` (None if absent or empty); collectors send
    the same few query strings again and again."""
    return parse_qs(query).get("cluster", [""])[0] or None


class BadRequest(ValueError):
    """A request the API refuses as a whole (400)."""


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``obj[key]`` if it is of ``kind`` (None if absent or null); a bool
    is not taken for a number."""
    value = obj.get(key)
    if value is None:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise BadRequest(f'{where}: "{key}" is {json.dumps(value)}, not {_kind_name(kind)}')
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {bool: "a boolean", int: "an integer", str: "a string", list: "a list",
             dict: "an object", float: "a number"}  # fmt: skip
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _strings(obj: dict[str, Any], key: str, where: str) -> list[str] | None:
    value = _field(obj, key, list, where)
    if value is not None and not all(isinstance(v, str) for v in value):
        raise BadRequest(f'{where}: "{key}" must be a list of strings')
    return None if value is None else [str(v) for v in value]


def _json_body(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(f"{what}: the body is not valid JSON: {error}") from None


@dataclass
class ApiCounters:
    """What the API has done since it started (``Server.stats()``)."""

    writes: int = 0
    lines_written: int = 0
    lines_rejected: int = 0
    lines_skipped: int = 0
    queries: int = 0


@dataclass
class _Query:
    """One ``APIQuery`` of a request, checked."""

    metric: str
    host: str
    kind: str | None = None
    sub: str | None = None
    kind_ids: list[str] | None = None
    sub_ids: list[str] | None = None
    resolution: int = 0
    scale: float = 0.0
    aggregate: bool = False

    def echo(self) -> str:
        """The query as cc-metric-store echoes it (Go struct order)."""
        parts = []
        if self.kind is not None:
            parts.append(f'"type":{go_string(self.kind)}')
        if self.sub is not None:
            parts.append(f'"subtype":{go_string(self.sub)}')
        parts.append(f'"metric":{go_string(self.metric)}')
        parts.append(f'"host":{go_string(self.host)}')
        parts.append(f'"resolution":{self.resolution}')
        if self.kind_ids:
            parts.append(f'"type-ids":[{",".join(map(go_string, self.kind_ids))}]')
        if self.sub_ids:
            parts.append(f'"subtype-ids":[{",".join(map(go_string, self.sub_ids))}]')
        if self.scale:
            parts.append(f'"scale-by":{stat_text(self.scale)}')
        parts.append(f'"aggreg":{"true" if self.aggregate else "false"}')
        return "{" + ",".join(parts) + "}"

    def selectors(self, cluster: str) -> list[list[tuple[str, ...]]]:
        """The selectors of the query, each the paths one result combines."""
        host: tuple[str, ...] = (cluster, self.host)
        if self.kind is None:
            return [[host]]
        kinds = [self.kind + i for i in self.kind_ids or []]
        if self.sub is None:
            paths = [(*host, k) for k in kinds]
        else:
            subs = [self.sub + i for i in self.sub_ids or []]
            paths = [(*host, k, s) for k in kinds for s in subs]
        if self.aggregate:
            return [paths]
        return [[p] for p in paths]


def _parse_query(raw: object, where: str) -> _Query:
    if not isinstance(raw, dict):
        raise BadRequest(f"{where}: is {json.dumps(raw)}, not an object")
    metric = _field(raw, "metric", str, where)
    host = _field(raw, "host", str, where)
    resolution = _field(raw, "resolution", int, where) or 0
    scale = _field(raw, "scale-by", (int, float), where) or 0.0
    return _Query(
        metric=metric or "",
        host=host or "",
        kind=_field(raw, "type", str, where),
        sub=_field(raw, "subtype", str, where),
        kind_ids=_strings(raw, "type-ids", where),
        sub_ids=_strings(raw, "subtype-ids", where),
        resolution=resolution,
        scale=float(scale),
        aggregate=bool(_field(raw, "aggreg", bool, where)),
    )


@dataclass
class _Result:
    """One ``APIMetricData``."""

    error: str | None = None
    data: bytes | None = None
    start: int = 0
    stop: int = 0
    resolution: int = 0
    stats: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def parts(self) -> list[bytes]:
        """The entry's JSON as pieces, joined once for the whole answer
        (a large answer is copied once, not per entry)."""
        head = b"{"
        if self.error is not None:
            head += b'"error":' + go_string(self.error).encode() + b","
        avg, low, high = self.stats
        tail = (
            f'"from":{self.start},"to":{self.stop},"resolution":{self.resolution},'
            f'"avg":{stat_text(avg)},"min":{stat_text(low)},"max":{stat_text(high)}}}'
        ).encode()
        if self.data is not None and self.data != b"[]":
            return [head, b'"data":', self.data, b",", tail]
        return [head, tail]


def _row_stats(rows: NDArray[np.float32]) -> list[tuple[float, float, float]]:
    """(avg, min, max) of each row over its non-NaN values, NaN for none."""
    if rows.shape[1] == 0:
        return [(math.nan, math.nan, math.nan)] * rows.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        wide = rows.astype(np.float64)
        count = np.sum(~np.isnan(wide), axis=1)
        total = np.nansum(wide, axis=1)
        avg = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        low = np.nanmin(wide, axis=1)
        high = np.nanmax(wide, axis=1)
    return list(zip(avg.tolist(), low.tolist(), high.tolist(), strict=True))


def _combine(rows: NDArray[np.float32], aggregation: str, metric: str) -> NDArray[np.float32]:
    """One row of several, by the metric's aggregation (NaN-skipping, as
    the store aggregates below a path)."""
    if rows.shape[0] == 1:
        row: NDArray[np.float32] = rows[0]
        return row
    if aggregation == "none":
        raise ValueError(
            f'metric "{metric}" has no aggregation; it cannot combine {len(rows)} series'
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        wide = rows.astype(np.float64)
        valid = np.sum(~np.isnan(wide), axis=0)
        total = np.nansum(wide, axis=0)
        out = total if aggregation == "sum" else total / np.maximum(valid, 1)
        out = np.where(valid > 0, out, np.nan)
    return out.astype(np.float32)


class Api:
    """The endpoints on ``store``. ``strict`` omits not-found entries from
    query answers as cc-metric-store does. Safe to call from many threads
    (the store is)."""

    def __init__(self, store: Store, *, strict: bool = False) -> None:
        self.store = store
        self.strict = strict
        self.counters = ApiCounters()
        self._counting = threading.Lock()
        self._hosts_lock = threading.Lock()
        self._hosts_seen = 0
        self._hosts_by_cluster: dict[str, set[str]] = {}
        self._metrics = {m.name: (m.frequency, m.aggregation) for m in store.metrics}

    def _metric(self, name: str) -> tuple[int, str] | None:
        found = self._metrics.get(name)
        if found is None:
            # Defined after the server started (by the embedding program).
            self._metrics = {m.name: (m.frequency, m.aggregation) for m in self.store.metrics}
            found = self._metrics.get(name)
        return found

    # -- /api/write ----------------------------------------------------------

    def write(self, query: str, body: bytes) -> Reply:
        """Line protocol in ``body``; ``?cluster=`` for lines without one."""
        cluster = _cluster(query)
        try:
            report = self.store.ingest(body, default_cluster=cluster, unknown="skip")
        except (ValueError, TypeError) as error:
            return error_reply(400, str(error))
        with self._counting:
            c = self.counters
            c.writes += 1
            c.lines_written += report.accepted
            c.lines_rejected += len(report.rejected)
            c.lines_skipped += report.skipped
        headers = {
            "X-Lines-Written": str(report.accepted),
            "X-Lines-Skipped": str(report.skipped),
        }
        if report.rejected:
            shown = "; ".join(f"line {n}: {why}" for n, why in report.rejected[:_REJECTED_SHOWN])
            more = len(report.rejected) - _REJECTED_SHOWN
            tail = f"; and {more} more" if more > 0 else ""
            reply = error_reply(
                400,
                f"{len(report.rejected)} of {report.lines} lines rejected, the other "
                f"{report.accepted} written ({report.skipped} of undefined metrics skipped): "
                f"{shown}{tail}",
            )
            reply.headers.update(headers)
            return reply
        return Reply(200, _JSON, b"", headers)

    # -- /api/query ----------------------------------------------------------

    def query(self, body: bytes) -> Reply:
        """An ``APIQueryRequest`` in ``body``; ``APIQueryResponse`` back."""
        try:
            answer = self._query(body)
        except BadRequest as error:
            return error_reply(400, str(error))
        with self._counting:
            self.counters.queries += 1
        return Reply(200, _JSON, answer)

    def _query(self, body: bytes) -> bytes:
        request = _json_body(body, "query")
        if not isinstance(request, dict):
            raise BadRequest("query: the body must be a JSON object (an APIQueryRequest)")
        where = "query"
        cluster = _field(request, "cluster", str, where) or ""
        start = _field(request, "from", int, where) or 0
        stop = _field(request, "to", int, where) or 0
        if start > stop:
            raise BadRequest(f'query: "from" ({start}) is after "to" ({stop})')
        flags = {}
        for key in ("with-stats", "with-data", "with-padding"):
            value = _field(request, key, bool, where)
            flags[key] = True if value is None else value
        raw_queries = _field(request, "queries", list, where) or []
        queries = [_parse_query(q, f"query: queries[{i}]") for i, q in enumerate(raw_queries)]
        echoed: list[_Query] = []
        for_all = _strings(request, "for-all-nodes", where)
        if for_all is not None:
            if not cluster:
                raise BadRequest('query: "for-all-nodes" needs a "cluster"')
            for host in self._hosts(cluster):
                for metric in for_all:
                    echoed.append(_Query(metric=metric, host=host))
            queries += echoed

        results = [self._answer(q, cluster, start, stop, flags) for q in queries]
        parts = [b"{"]
        if echoed:
            parts.append(b'"queries":[' + ",".join(q.echo() for q in echoed).encode() + b"],")
        parts.append(b'"results":[')
        for i, entries in enumerate(results):
            parts.append(b",[" if i else b"[")
            for j, entry in enumerate(entries):
                if j:
                    parts.append(b",")
                parts.extend(entry.parts())
            parts.append(b"]")
        parts.append(b"]}\n")
        return b"".join(parts)

    def _hosts(self, cluster: str) -> list[str]:
        """The hosts of ``cluster`` (names below it that have series), in
        name order. Series are never removed and their handles are dense,
        so only the series created since the last call are looked at."""
        with self._hosts_lock:
            count = len(self.store)
            for handle in range(self._hosts_seen, count):
                path = self.store.series_key(handle)[1]
                if len(path) > 1:
                    self._hosts_by_cluster.setdefault(path[0], set()).add(path[1])
            self._hosts_seen = count
            return sorted(self._hosts_by_cluster.get(cluster, ()))

    def _answer(
        self, q: _Query, cluster: str, start: int, stop: int, flags: dict[str, bool]
    ) -> list[_Result]:
        selectors = q.selectors(cluster)
        definition = self._metric(q.metric)
        if definition is None:
            return [_Result(error=f"unknown metric: {q.metric}") for _ in selectors]
        frequency, aggregation = definition
        resolution = frequency
        if q.resolution > frequency:
            if q.resolution % frequency:
                message = (
                    f"resolution {q.resolution} is not a multiple of the frequency {frequency} "
                    f'of "{q.metric}"'
                )
                return [_Result(error=message) for _ in selectors]
            resolution = q.resolution
        paths = [p for sel in selectors for p in sel]
        try:
            rows, begin, step, missing = self._read(q.metric, paths, start, stop, resolution)
        except (StoreError, ValueError, TypeError) as error:
            # A name the store refuses (such as ".."), a range too long to read.
            return [_Result(error=str(error)) for _ in selectors]
        out: list[_Result] = []
        at = 0
        picked: list[NDArray[np.float32]] = []
        kept: list[int] = []
        for sel in selectors:
            found = [at + i for i, p in enumerate(sel) if p not in missing]
            at += len(sel)
            if not found:
                if not self.strict:
                    out.append(_Result(error=NOT_FOUND))
                continue
            try:
                picked.append(_combine(rows[found], aggregation, q.metric))
            except ValueError as error:
                out.append(_Result(error=str(error)))
                continue
            kept.append(len(out))
            out.append(_Result())
        if not picked:
            return out
        matrix = np.ascontiguousarray(np.stack(picked))
        stats = _row_stats(matrix) if flags["with-stats"] else None
        scale = q.scale if q.scale not in (0.0, 1.0) else None
        values: NDArray[Any] = matrix if scale is None else matrix.astype(np.float64) * scale
        width = values.shape[1]
        bounds = [(0, width)] * len(kept)
        if not flags["with-padding"]:
            for n in range(len(kept)):
                valid = np.flatnonzero(~np.isnan(values[n]))
                bounds[n] = (0, 0) if len(valid) == 0 else (int(valid[0]), int(valid[-1]) + 1)
        texts: list[bytes] | None = None
        if flags["with-data"]:
            if flags["with-padding"]:
                texts = _core.json_float_rows(values)
            else:
                texts = [
                    _core.json_float_rows(np.ascontiguousarray(values[n : n + 1, lo:hi]))[0]
                    for n, (lo, hi) in enumerate(bounds)
                ]
        for n, index in enumerate(kept):
            result = out[index]
            result.resolution = step
            lo, hi = bounds[n]
            result.start = begin + lo * step
            result.stop = begin + hi * step
            if stats is not None:
                avg, low, high = stats[n]
                result.stats = (avg, low, high) if scale is None else (
                    avg * scale, low * scale, high * scale)  # fmt: skip
            if texts is not None:
                result.data = texts[n]
        return out

    def _read(
        self, metric: str, paths: Sequence[tuple[str, ...]], start: int, stop: int, resolution: int
    ) -> tuple[NDArray[np.float32], int, int, set[tuple[str, ...]]]:
        """Rows of ``paths`` over [start, stop) at ``resolution``, the first
        row's time, the step, and the paths with no series."""
        keys = [(metric, p) for p in paths]

        def read(which: list[tuple[str, tuple[str, ...]]]) -> Any:
            if resolution == self._metrics[metric][0]:
                return self.store.read_many(which, start, stop)
            return self.store.read_many(which, start, stop, resolution=resolution)

        try:
            result = read(keys)
            return result.values, result.start, result.step, set()
        except UnknownSeriesError:
            pass
        # Some path has no series: read them one by one to know which.
        missing: set[tuple[str, ...]] = set()
        rows: list[NDArray[np.float32] | None] = []
        begin = step = 0
        for key in keys:
            try:
                one = read([key])
            except UnknownSeriesError:
                missing.add(key[1])
                rows.append(None)
                continue
            rows.append(one.values[0])
            begin, step = one.start, one.step
        width = next((len(r) for r in rows if r is not None), 0)
        matrix = np.full((len(rows), width), np.nan, dtype=np.float32)
        for i, row in enumerate(rows):
            if row is not None:
                matrix[i] = row
        return matrix, begin, step, missing

    # -- /api/free -----------------------------------------------------------

    def free(self, query: str, body: bytes) -> Reply:
        """Drops the data before ``to`` (Unix seconds) of every series at or
        below each selector (``[cluster, host, ...]``), as one logged op:
        a restart does not bring it back. Answers how many series were cut."""
        raw = parse_qs(query).get("to", [""])[0]
        if not raw:
            return error_reply(400, "'to' is a required query parameter")
        try:
            to = int(raw)
        except ValueError:
            return error_reply(400, f"'to' is {raw!r}, not an integer (Unix seconds)")
        try:
            selectors = _json_body(body, "free")
        except BadRequest as error:
            return text_reply(400, str(error))
        if not isinstance(selectors, list) or not all(
            isinstance(s, list) and all(isinstance(n, str) for n in s) for s in selectors
        ):
            return text_reply(400, "free: the body must be a list of selectors (lists of strings)")
        if any(not s for s in selectors):
            return text_reply(400, "free: a selector must name at least a cluster")
        prefixes = {tuple(s) for s in selectors}
        depths = {len(p) for p in prefixes}
        handles = [
            handle
            for handle, _, path in self.store.list_series()
            if any(path[:d] in prefixes for d in depths)
        ]
        if handles:
            try:
                before = np.datetime64(to, "s")
            except OverflowError:
                return error_reply(400, f"'to' is {raw}, out of range")
            self.store.drop_series_before(handles, before)
        return Reply(200, _TEXT, b"buffers freed: %d\n" % len(handles))

    # -- /api/healthcheck ------------------------------------------------------

    def health(self, body: bytes) -> Reply:
        """``{"cluster", "nodes", "metric-names"}`` in; per node its
        ``State`` and ``HealthMetrics`` (a JSON string) out."""
        try:
            request = _json_body(body, "healthcheck")
            if not isinstance(request, dict):
                raise BadRequest("healthcheck: the body must be a JSON object")
            unknown = sorted(set(request) - {"cluster", "nodes", "metric-names"})
            if unknown:
                raise BadRequest(f'healthcheck: unknown field "{unknown[0]}"')
            where = "healthcheck"
            cluster = _field(request, "cluster", str, where) or ""
            nodes = _strings(request, "nodes", where) or []
            names = _strings(request, "metric-names", where) or []
        except BadRequest as error:
            return error_reply(400, f"parsing request body failed: {error}")
        now = int(time.time())
        entries = []
        for node in sorted(set(nodes)):
            try:
                states = self.store._core.health([cluster, node], names, now)
            except (StoreError, ValueError) as error:
                return error_reply(400, str(error))
            if states is None:
                entries.append(f'{go_string(node)}:{{"State":"failed","HealthMetrics":""}}')
                continue
            degraded = [m for m, s in zip(names, states, strict=True) if s == "stale"]
            missing = [m for m, s in zip(names, states, strict=True) if s == "missing"]
            fresh = len(names) - len(degraded) - len(missing)
            state = (
                "full" if not degraded and not missing else "failed" if fresh == 0 else "partial"
            )
            inner = (
                f'{{"degraded":[{",".join(map(go_string, degraded))}],'
                f'"missing":[{",".join(map(go_string, missing))}]}}'
            )
            entries.append(
                f'{go_string(node)}:{{"State":"{state}","HealthMetrics":{go_string(inner)}}}'
            )
        return Reply(200, _JSON, ("{" + ",".join(entries) + "}\n").encode())

    # -- /api/debug ------------------------------------------------------------

    def debug(self, query: str) -> Reply:
        """The tree below ``?selector=a:b:c``: per level its metrics (start,
        slot count and end of their data) and children."""
        raw = parse_qs(query).get("selector", [""])[0]
        prefix = tuple(raw.split(":")) if raw else ()
        tree: dict[str, Any] = {}
        found = False
        for handle, metric, path in self.store.list_series():
            if path[: len(prefix)] != prefix:
                continue
            found = True
            node = tree
            for name in path[len(prefix) :]:
                node = node.setdefault(name, {})
            extent = self.store.extent(handle)
            frequency = self._metrics[metric][0] if metric in self._metrics else 1
            if extent is None:
                node[metric] = []
            else:
                begin, end = extent
                node[metric] = [{"start": begin, "len": (end - begin) // frequency, "end": end}]
        if not found and prefix:
            return error_reply(400, f"not found: {list(prefix)!r}")
        return Reply(
            200, _JSON, (json.dumps({"data": tree}, separators=(",", ":")) + "\n").encode()
        )
