"""Compression benchmark: sealed chunks on real HPC data and on a random walk,
next to NumPy holding the same samples, measured in one run.

Data sets:
- emmy: the real job in ../shared/data/cc-job-archive (288 series of 60 s
  metrics, 1,441 samples each, gaps included), loaded --copies times, each
  copy 40 hours after the last (short, job-length series at times that do
  not line up with chunks, as jobs come and go);
- walk: --walk-series float32 random walks of --walk-points samples;
- w1: the peers benchmark's W1 (1,000 series x 100,000 uniform random
  float32, 400 MB raw, next to incompressible): the store the time to first
  query target is set on.

A sample is a slot of a series between its first and last sample, missing
ones included (a 1,441-sample emmy series is 1,441 samples, raw 4 B each),
as issue 15 counts them; the figures per present (non-NaN) sample follow
in brackets where they differ.

For each it measures:
- disk after close: bytes of the store directory per sample;
- memory: a fresh process opens the store and reads every series once; its
  resident set grows by this much per sample (NumPy: loading .npy files),
  split into what the store holds (anonymous memory) and the pages it maps
  from the page cache (clean, so the kernel can take them back under
  pressure and map them again when read): the snapshot's, and the rest
  (mostly the extension module's code, mapped as the read first runs it);
- time to first query: a fresh process, the files dropped from the page
  cache, imports done, opens the store and reads the first 1,000 points of
  one series, the first one stored and the one in the middle (NumPy:
  np.load(mmap_mode="r") of that series' .npy file and a copy);
- reading everything: open and read every series, cold and warm, against
  NumPy loading every .npy file;
- 1,000-point window reads per second on a freshly opened store, against
  NumPy slicing in memory, the two taking turns (the ratio is the median of
  each round's);
- encode and decode: Store.seal() of raw chunks, and reads of sealed chunks,
  in slots per second on one thread: every slot a chunk holds or a read
  returns, gaps included. Emmy's 288 series each hold every copy of the
  job, 40 hours apart, so its reads return 44 M slots for its 26.6 M
  samples (the default 64 copies): per sample, its rates are six tenths of
  these (the ratio is printed beside them).

Each figure is the median of --repeat runs. Targets (issue 15): memory at
most 1.3 B/sample (emmy) and 2.2 (walk); decode at least 1 G slots/s,
encode at least 200 M; first query at most 5x NumPy; window reads at least
0.5 of NumPy; reading everything at least 2x NumPy files; disk after close
at most 1.5 B/sample (emmy) and 2.5 (walk).

    python benchmarks/compression.py --dir /path/on/the/disk   # about two minutes
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import drop_from_page_cache, make_data, rss_bytes, rss_of_files_under, rss_split

import metricstore
from metricstore import ccbackend

JOB = Path(__file__).resolve().parents[2] / "shared/data/cc-job-archive/emmy/1403/244/1608923076"
SHIFT = 40 * 3600


def emmy_series(copies: int) -> list[tuple[str, tuple[str, ...], int, np.ndarray]]:
    """(metric, path, start, values) of every series of every copy."""
    scratch = metricstore.Store()
    ccbackend.load_job(JOB, scratch)
    out = []
    for handle, metric, path in scratch.list_series():
        extent = scratch.extent(handle)
        assert extent is not None
        values = scratch.read(handle, *extent).values
        for k in range(copies):
            out.append((metric, path, extent[0] + k * SHIFT, values))
    return out


def walk_series(n: int, points: int) -> list[tuple[str, tuple[str, ...], int, np.ndarray]]:
    rng = np.random.default_rng(1)
    walks = np.cumsum(rng.standard_normal((n, points)), axis=1).astype(np.float32)
    return [("walk", ("c", f"s{i:04d}"), 0, walks[i]) for i in range(n)]


def walk_information(data: list) -> float:
    """Bytes per sample a lossless coding of the walks needs at least, about:
    each step is a unit normal rounded to the float32 spacing at the value
    before it, whose entropy is log2(1 / spacing) + log2(sqrt(2 pi e)) bits
    (the first sample of each walk left out)."""
    bits = [
        np.log2(1.0 / np.spacing(np.abs(values[:-1])).astype(np.float64)).sum()
        + (len(values) - 1) * 0.5 * np.log2(2 * np.pi * np.e)
        for _, _, _, values in data
    ]
    return float(sum(bits)) / sum(len(v) - 1 for _, _, _, v in data) / 8


def w1_series() -> list[tuple[str, tuple[str, ...], int, np.ndarray]]:
    data = make_data(1000, 100_000)
    return [("m", ("cluster", f"host{i:04d}"), 1_700_000_000, data[i]) for i in range(1000)]


def build(base: Path, name: str, data: list) -> tuple[Path, Path, int]:
    """The store and the NumPy files of `data`; returns (store, npy dir, samples)."""
    store_dir, npy_dir = base / f"{name}.store", base / f"{name}.npy"
    shutil.rmtree(store_dir, ignore_errors=True)
    shutil.rmtree(npy_dir, ignore_errors=True)
    npy_dir.mkdir(parents=True)
    metrics = {data[0][0]: (10, "avg")}
    scratch = metricstore.Store()
    if name == "emmy":
        ccbackend.load_job(JOB, scratch)
        metrics = {m.name: (m.frequency, m.aggregation) for m in scratch.metrics}
    with metricstore.open(store_dir, sync="none", checkpoint_interval_s=None) as store:
        for metric, (frequency, aggregation) in metrics.items():
            store.define_metric(metric, frequency, aggregation)
        for i, (metric, path, start, values) in enumerate(data):
            store.write((metric, path), start, values)
            np.save(npy_dir / f"{i:06d}.npy", values)
    samples = sum(len(v) for *_, v in data)
    return store_dir, npy_dir, samples


def present(data: list) -> int:
    """Samples that are not NaN."""
    return sum(int(np.count_nonzero(~np.isnan(v))) for *_, v in data)


def child(args: argparse.Namespace) -> None:
    """One measurement in a fresh process; prints a JSON line."""
    store_dir, npy_dir = Path(args.store), Path(args.npy)
    if args.cold:
        drop_from_page_cache(store_dir)
        drop_from_page_cache(npy_dir)
    open_store = metricstore.open  # imports the store module: imports are not timed
    base, base_split = rss_bytes(), rss_split()
    clock = time.perf_counter
    t0 = clock()
    if args.child == "store-first":
        # The same 1,000 samples NumPy reads: the first ones of data[i].
        metric, path, start, step, _ = json.loads(args.first)
        store = open_store(store_dir, readonly=True)
        got = store.read((metric, path), start, start + 1000 * step).values
        result = {"seconds": clock() - t0, "n": len(got)}
    elif args.child == "numpy-first":
        i = json.loads(args.first)[-1]
        got = np.array(np.load(npy_dir / f"{i:06d}.npy", mmap_mode="r")[:1000])
        result = {"seconds": clock() - t0, "n": len(got)}
    elif args.child == "store-all":
        store = open_store(store_dir, readonly=True)
        n = 0
        # Handles are 0 .. len - 1: no list of every key (18,432 Python
        # tuples for emmy) to count as the store's memory.
        for handle in range(len(store)):
            extent = store.extent(handle)
            if extent is not None:
                n += len(store.read(handle, *extent).values)
        seconds = clock() - t0
        (anon, mapped), (anon0, mapped0) = rss_split(), base_split
        result = {"seconds": seconds, "n": n, "rss": rss_bytes() - base}
        result |= {
            "anon": anon - anon0,
            "file": mapped - mapped0,
            "store_files": rss_of_files_under(store_dir),
        }
    else:
        arrays = [np.load(f) for f in sorted(npy_dir.iterdir())]
        result = {
            "seconds": clock() - t0,
            "n": sum(len(a) for a in arrays),
            "rss": rss_bytes() - base,
        }
    print(json.dumps(result))


def in_child(kind: str, store_dir: Path, npy_dir: Path, cold: bool, first: str = "") -> dict:
    command = [sys.executable, __file__, "--child", kind, "--store", str(store_dir)]
    command += ["--npy", str(npy_dir), "--first", first] + (["--cold"] if cold else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def median(run: Callable[[], float], repeat: int) -> float:
    return statistics.median(run() for _ in range(repeat))


def window_reads(store_dir: Path, npy_dir: Path, repeat: int) -> tuple[float, float, float]:
    """1,000-point reads per second at random places: (the store freshly
    opened, NumPy slicing arrays in memory and copying, the ratio). The two
    take turns, a pass each, and the ratio is the median of each round's:
    on a machine whose speed drifts, NumPy's rate moved by 2x between runs,
    and a ratio of medians taken minutes apart would carry that drift."""
    rng = np.random.default_rng(5)
    store = metricstore.open(store_dir, readonly=True)
    try:
        frequency = {m.name: m.frequency for m in store.metrics}
        windows = []
        listed = store.list_series()
        for i in rng.integers(0, len(listed), 2000):
            handle, metric, _ = listed[i]
            extent = store.extent(handle)
            assert extent is not None
            f = frequency[metric]
            first = (
                extent[0] + int(rng.integers(0, max(1, (extent[1] - extent[0]) // f - 1000))) * f
            )
            windows.append((handle, first, first + 1000 * f))

        def store_rate() -> float:
            t0 = time.perf_counter()
            for handle, first, stop in windows:
                store.read(handle, first, stop)
            return len(windows) / (time.perf_counter() - t0)

        arrays = [np.load(f) for f in sorted(npy_dir.iterdir())]
        slices = [
            (arrays[i], int(rng.integers(0, max(1, len(arrays[i]) - 1000))))
            for i in rng.integers(0, len(arrays), len(windows))
        ]

        def numpy_rate() -> float:
            t0 = time.perf_counter()
            for array, first in slices:
                array[first : first + 1000].copy()
            return len(slices) / (time.perf_counter() - t0)

        rounds = [(store_rate(), numpy_rate()) for _ in range(repeat)]
        return (
            statistics.median(s for s, _ in rounds),
            statistics.median(n for _, n in rounds),
            statistics.median(s / n for s, n in rounds),
        )
    finally:
        store.close()


def codec_rates(store_dir: Path, repeat: int) -> tuple[float, float, int]:
    """(encode, decode) in slots per second on one thread: sealing raw
    chunks (Store.seal), and reading every slot of sealed ones; and the
    slots read."""
    with metricstore.open(store_dir, readonly=True) as sealed:
        assert sealed.stats()["raw_chunks"] == 0
        spans = [(h, sealed.extent(h)) for h, _, _ in sealed.list_series()]
        spans = [(h, e) for h, e in spans if e is not None]
        slots = sum(len(sealed.read(h, *e).values) for h, e in spans)

        def decode() -> float:
            t0 = time.perf_counter()
            for handle, extent in spans:
                sealed.read(handle, *extent)
            return slots / (time.perf_counter() - t0)

        decode_rate = statistics.median(decode() for _ in range(repeat))
        metrics = sealed.metrics
        contents = [(sealed.series_key(h), e[0], sealed.read(h, *e).values) for h, e in spans]

    def encode() -> float:
        raw = metricstore.Store()
        raw.set_seal_after(None)  # nothing sealed before the timed passes
        for m in metrics:
            raw.define_metric(m.name, m.frequency, m.aggregation)
        for key, start, values in contents:
            raw.write(key, start, values)
        chunks = raw.stats()["raw_chunks"]
        t0 = time.perf_counter()
        done = raw.seal() + raw.seal()  # the second seals each series' newest
        seconds = time.perf_counter() - t0
        assert done == chunks, (done, chunks)
        return done * 1024 / seconds

    return statistics.median(encode() for _ in range(repeat)), decode_rate, slots


def report(
    name: str,
    store_dir: Path,
    npy_dir: Path,
    samples: tuple[int, int],
    firsts: tuple[str, str],
    repeat: int,
) -> dict:
    disk = sum(f.stat().st_size for f in store_dir.iterdir() if f.is_file())
    npy_disk = sum(f.stat().st_size for f in npy_dir.iterdir())

    def first_query(first: str) -> tuple[float, float]:
        store = median(
            lambda: in_child("store-first", store_dir, npy_dir, True, first)["seconds"], repeat
        )
        numpy = median(
            lambda: in_child("numpy-first", store_dir, npy_dir, True, first)["seconds"], repeat
        )
        return store, numpy

    cold_store = [in_child("store-all", store_dir, npy_dir, True) for _ in range(repeat)]
    cold_numpy = [in_child("numpy-all", store_dir, npy_dir, True) for _ in range(repeat)]
    warm_store = [in_child("store-all", store_dir, npy_dir, False) for _ in range(repeat)]
    warm_numpy = [in_child("numpy-all", store_dir, npy_dir, False) for _ in range(repeat)]
    med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    windows = window_reads(store_dir, npy_dir, repeat)
    encode, decode, slots = codec_rates(store_dir, repeat)
    spanned, valid = samples
    return {
        "name": name,
        "samples": spanned,
        "present": valid,
        "disk": disk / spanned,
        "npy_disk": npy_disk / spanned,
        "memory": med(warm_store, "rss") / spanned,
        "memory_anon": med(warm_store, "anon") / spanned,
        "memory_file": med(warm_store, "file") / spanned,
        "memory_store_files": med(warm_store, "store_files") / spanned,
        "npy_memory": med(warm_numpy, "rss") / spanned,
        "first": first_query(firsts[0]),
        "first_middle": first_query(firsts[1]),
        "all_cold": (med(cold_store, "seconds"), med(cold_numpy, "seconds")),
        "all_warm": (med(warm_store, "seconds"), med(warm_numpy, "seconds")),
        "windows": windows,
        "encode": encode,
        "decode": decode,
        "slots": slots,
    }


def print_report(r: dict, targets: dict) -> None:
    print(f"\n{r['name']}: {r['samples']:,} samples, {r['present']:,} of them present")
    print(f"{'':40} {'metricstore':>14} {'numpy':>14} {'ratio':>8}")
    per_present = r["samples"] / r["present"]
    for label, key in (("disk after close", "disk"), ("memory after reading all", "memory")):
        extra = f"  ({r[key] * per_present:.2f} per present sample)" if per_present > 1 else ""
        print(f"{label + ', B/sample':40} {r[key]:14.2f} {r['npy_' + key]:14.2f}         {extra}")
    print(
        f"{'  of it: held by the store / mapped files':40} "
        f"{r['memory_anon']:6.2f} / {r['memory_file']:.2f}"
    )
    print(
        f"{'  of the mapped: snapshot / code and rest':40} "
        f"{r['memory_store_files']:6.2f} / {r['memory_file'] - r['memory_store_files']:.2f}"
    )
    fs, fn = r["first"]
    ms, mn = r["first_middle"]
    for label, (s, n) in (
        ("first 1,000-point query, cold, ms", (fs, fn)),
        ("  of the series in the middle", (ms, mn)),
    ):
        print(f"{label:40} {s * 1e3:14.1f} {n * 1e3:14.1f} {s / n:8.1f}x")
    for label, key in (
        ("read everything, cold, s", "all_cold"),
        ("read everything, warm, s", "all_warm"),
    ):
        s, n = r[key]
        print(f"{label:40} {s:14.3f} {n:14.3f} {n / s:8.2f}")
    ws, wn, wr = r["windows"]
    print(f"{'1,000-point window reads/s':40} {ws:14,.0f} {wn:14,.0f} {wr:8.2f}")
    per_sample = (
        f"  ({r['samples'] / r['slots']:.2f} samples a slot)" if r["slots"] > r["samples"] else ""
    )
    print(f"{'encode (seal), M slots/s':40} {r['encode'] / 1e6:14.0f}{'':24}{per_sample}")
    print(f"{'decode (read sealed), M slots/s':40} {r['decode'] / 1e6:14.0f}{'':24}{per_sample}")
    checks = [
        (key, r[key] <= targets[key], f"{r[key]:.2f} <= {targets[key]}")
        for key in ("memory", "disk")
        if key in targets
    ] + [
        ("first query", fs <= 5 * fn, f"{fs / fn:.1f}x <= 5x"),
        ("first query in the middle", ms <= 5 * mn, f"{ms / mn:.1f}x <= 5x"),
        ("read all cold", r["all_cold"][1] / r["all_cold"][0] >= 2,
         f"{r['all_cold'][1] / r['all_cold'][0]:.2f} >= 2"),
        ("read all warm", r["all_warm"][1] / r["all_warm"][0] >= 2,
         f"{r['all_warm'][1] / r['all_warm'][0]:.2f} >= 2"),
        ("windows", wr >= 0.5, f"{wr:.2f} >= 0.5"),
        ("encode", r["encode"] >= 200e6, f"{r['encode'] / 1e6:.0f}M >= 200M"),
        ("decode", r["decode"] >= 1e9, f"{r['decode'] / 1e6:.0f}M >= 1000M"),
    ]  # fmt: skip
    print(
        "targets: " + "; ".join(f"{n} {'met' if ok else 'MISSED'} ({how})" for n, ok, how in checks)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--copies", type=int, default=64)
    parser.add_argument("--walk-series", type=int, default=200)
    parser.add_argument("--walk-points", type=int, default=100_000)
    parser.add_argument("--sets", default="emmy,walk,w1", help="data sets, comma-separated")
    parser.add_argument("--keep", action="store_true", help="keep the stores and NumPy files")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--npy", help=argparse.SUPPRESS)
    parser.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--first", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    base = args.dir or Path(tempfile.mkdtemp(prefix="metricstore-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"metricstore {metricstore.__version__}, numpy {np.__version__}; directory {base}; "
          f"median of {args.repeat} runs")  # fmt: skip
    sets = {
        "emmy": (lambda: emmy_series(args.copies), {"memory": 1.3, "disk": 1.5}),
        "walk": (
            lambda: walk_series(args.walk_series, args.walk_points),
            {"memory": 2.2, "disk": 2.5},
        ),
        "w1": (w1_series, {}),
    }
    for name in args.sets.split(","):
        make, targets = sets[name]
        data = make()
        store_dir, npy_dir, spanned = build(base, name, data)
        samples = (spanned, present(data))
        firsts = []
        for i in (0, len(data) // 2):
            metric, path, start, _ = data[i]
            with metricstore.open(store_dir, readonly=True) as store:
                step = next(m.frequency for m in store.metrics if m.name == metric)
            firsts.append(json.dumps([metric, "/".join(path), start, step, i]))
        if name == "walk":
            print(f"\nwalk: its information, at least {walk_information(data):.2f} B/sample "
                  "for any lossless coding (a unit normal step at float32 spacing)")  # fmt: skip
        report_ = report(name, store_dir, npy_dir, samples, (firsts[0], firsts[1]), args.repeat)
        print_report(report_, targets)
        if not args.keep:
            shutil.rmtree(store_dir)
            shutil.rmtree(npy_dir)
    if args.dir is None and not args.keep:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
