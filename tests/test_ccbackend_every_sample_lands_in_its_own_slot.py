"""cc-backend's snapshot blocks start at the checkpoint's clock time, not at a
sample time. Loaded, every sample of a tree whose series sample at their own
phase lands in the slot of its true time, whichever side of a rounding
boundary the clock-time labels fall on: none lost, none in two slots. The
report says how many blocks were placed by the series' sample phase and how
many, the phase unknown, by rounding their labels.

The tree is built by ``ccfiles.collector_blocks`` (cc-backend's buffers and
``toCheckpointFile``) from known true sample times: a series per phase
offset of 0 to f - 1 s, f = 60 and 30 s, checkpoints every 30 min from a
start at an arbitrary second, three snapshots and a log after them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ccfiles as cc
import numpy as np
import pytest

import metricstore
from metricstore.ccbackend import load_checkpoints

METRICS = {"cpu_load": 60, "ipc": 30}
BASE = 1_700_000_000 // 3600 * 3600
STARTUP = BASE + 1237  # cc-backend started here; it checkpoints every INTERVAL after
INTERVAL = 1800
CHECKPOINTS = [STARTUP + j * INTERVAL for j in range(4)]  # three snapshots
END = CHECKPOINTS[-1] + 900  # the log: 15 minutes after the last checkpoint
CLUSTER = "c"


@dataclass
class Series:
    host: str
    metric: str
    child: str
    f: int
    first: int
    values: list[float]

    def time(self, value: float) -> int:
        return self.first + (int(value) % 1000) * self.f


def first_after(t: int, phase: int, f: int) -> int:
    """The first time after ``t`` whose phase modulo ``f`` is ``phase``."""
    return t + 1 + (phase - (t + 1)) % f


def slot(ts: int, f: int) -> int:
    """The store's nearest slot (ties go to the later one)."""
    return (ts + f // 2) // f


# host: (series start after, samples end before, first snapshot kept, log)
HOSTS = {
    "anchored": (STARTUP, END, True, True),  # first blocks start at their first write
    "cleaned": (STARTUP, END, False, True),  # those blocks deleted: the log gives the phase
    "late": (CHECKPOINTS[1] + 100, END, True, True),  # first write in the second snapshot
    "stopped": (STARTUP, CHECKPOINTS[2] - 200, False, False),  # no phase anywhere
}


def build(root: Path, kind: str) -> tuple[list[Series], dict[str, list[tuple[Series, int, list]]]]:
    """Writes the tree; returns its series and, per host, the blocks it
    wrote (series, label, values)."""
    series: list[Series] = []
    written: dict[str, list[tuple[Series, int, list]]] = {}
    for host, (after, end, keep_first, logged) in HOSTS.items():
        snapshots: list[dict[str, dict]] = [{} for _ in CHECKPOINTS[1:]]
        records = []
        written[host] = []
        for metric, f in METRICS.items():
            for phase in range(f):
                first = first_after(after, phase, f)
                count = (end - first + f - 1) // f
                base = len(series) * 1000
                s = Series(host, metric, f"cpu{phase}", f, first, [base + k for k in range(count)])
                series.append(s)
                blocks = cc.collector_blocks(first, f, [float(v) for v in s.values], CHECKPOINTS)
                for j, block in enumerate(blocks):
                    if block is None or (j == 0 and not keep_first):
                        continue
                    start, data = block
                    snapshots[j].setdefault(s.child, {})[metric] = (f, start, data)
                    if data:
                        written[host].append((s, start, data))
                if logged:
                    records += [
                        (t, metric, (s.child,), float(v))
                        for v in s.values
                        if (t := s.time(v)) >= CHECKPOINTS[-1]
                    ]
        for j, children in enumerate(snapshots):
            if j == 0 and not keep_first:
                continue
            node = cc.level(children={name: cc.level(m) for name, m in children.items()})
            since, until = CHECKPOINTS[j], CHECKPOINTS[j + 1]
            directory = root / CLUSTER / host
            if kind == "bin":
                cc.put(directory / f"{since}.bin", cc.snapshot(since, until, node))
            else:
                cc.put(directory / f"{since}.json", cc.snapshot_json(since, until, node))
        if records:
            records.sort(key=lambda r: r[0])
            cc.put(root / CLUSTER / host / "current.wal", cc.wal(records))
    return series, written


def load(root: Path) -> tuple[metricstore.Store, metricstore.ccbackend.CheckpointLoadReport]:
    store = metricstore.Store()
    for metric, f in METRICS.items():
        store.define_metric(metric, f, "avg")
    return store, load_checkpoints(root, store, progress=False, workers=2)


def stored(store: metricstore.Store, s: Series, lo: int, hi: int) -> np.ndarray:
    result = store.read((s.metric, (CLUSTER, s.host, s.child)), lo * s.f, hi * s.f)
    assert (result.start, result.step) == (lo * s.f, s.f)
    return result.values


@pytest.mark.parametrize("kind", ["bin", "json"])
def test_every_sample_of_the_files_lands_in_the_slot_of_its_true_time(
    tmp_path: Path, kind: str
) -> None:
    series, written = build(tmp_path, kind)
    store, report = load(tmp_path)
    assert report.damaged == () and report.skipped == ()
    checked = 0
    for s in series:
        if s.host == "stopped":
            continue
        # The samples the files hold: in a kept block or in the log.
        present = {v for x, _, data in written[s.host] if x is s for v in data}
        present |= {v for v in s.values if s.time(v) >= CHECKPOINTS[-1]}
        times = {v: s.time(v) for v in present}
        lo = slot(min(times.values()), s.f) - 1
        hi = slot(max(times.values()), s.f) + 2
        expected = np.full(hi - lo, np.nan, dtype=np.float32)
        for v, t in times.items():
            assert np.isnan(expected[slot(t, s.f) - lo]), "two samples share a slot"
            expected[slot(t, s.f) - lo] = v
        np.testing.assert_array_equal(stored(store, s, lo, hi), expected, err_msg=str(s)[:80])
        checked += len(present)
    assert checked > 30_000
    blocks = {host: len(w) for host, w in written.items()}
    assert report.phase_blocks == blocks["anchored"] + blocks["cleaned"] + blocks["late"]
    assert report.rounded_blocks == blocks["stopped"] == 90
    assert "placed 90 blocks at the nearest slot of their clock-time start" in report.summary()


def test_the_tree_straddles_the_rounding_boundary(tmp_path: Path) -> None:
    # Without this the test above would pass with labels rounded alone.
    _, written = build(tmp_path, "bin")
    labels = written["cleaned"]
    shifted = sum(slot(start, s.f) != slot(s.time(data[0]), s.f) for s, start, data in labels)
    assert 0 < shifted < len(labels)


def test_a_series_without_a_known_phase_is_placed_by_its_labels(tmp_path: Path) -> None:
    _, written = build(tmp_path, "bin")
    store, report = load(tmp_path)
    for s, start, data in written["stopped"]:
        first = slot(start, s.f)
        got = stored(store, s, first, first + len(data))
        np.testing.assert_array_equal(got, np.array(data, dtype=np.float32))
    assert report.rounded_blocks == len(written["stopped"])
