"""Replaying a long log holds at most one segment in memory, plus the op
being assembled (docs/guarantees.md, "Recovery on open"), whatever the
length of the log.

A store whose log is several segments long but whose data is small (every
write overwrites the same slots) is opened in a fresh process, which
reports how far its peak resident set rose during the open. That rise must
stay under one segment plus the memory the recovered data really takes (its
slabs) plus a fixed allowance for the process itself, and the log is made
long enough that holding all of it would break that bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import metricstore

MiB = 1 << 20
# Allocator arenas, thread stacks, the open's bookkeeping: not proportional
# to the log.
ALLOWANCE = 16 * MiB
BLOCK = 16384  # 64 KiB of float32 per write, always to the same slots

# The child: resets its peak resident set (Linux: clear_refs "5"), opens
# the store, and reports the rise of the peak and what recovery read.
CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import metricstore

    def status(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise LookupError(field)

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status("VmRSS")
    store = metricstore.open(sys.argv[1], progress=False, checkpoint_interval_s=None,
                             checkpoint_log_bytes=None)
    peak = status("VmHWM")
    last = store.read(("m", "c/h"), 0, int(sys.argv[2])).values
    report = store.recovery
    stats = store.stats()
    store.close(checkpoint=False)
    print(json.dumps({
        "rise": peak - before,
        "log_bytes": report.bytes,
        "segments": report.segments,
        "records": report.records,
        "reserved_bytes": stats["reserved_bytes"],
        "last": last.tolist(),
    }))
""")


def can_measure() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        with open("/proc/self/status") as f:
            return "VmHWM:" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not can_measure(), reason="needs Linux /proc/self/status and clear_refs")
@pytest.mark.parametrize(
    "segment_bytes, log_bytes",
    [(64 * MiB, 200 * MiB), (16 * MiB, 96 * MiB)],
    ids=["default-segments", "small-segments"],
)
def test_replaying_a_long_log_holds_one_segment_not_the_log(
    tmp_path: Path, segment_bytes: int, log_bytes: int
) -> None:
    writes = log_bytes // (BLOCK * 4)
    with metricstore.open(
        tmp_path,
        sync="none",
        segment_bytes=segment_bytes,
        checkpoint_interval_s=None,
        checkpoint_log_bytes=None,
    ) as store:
        store.define_metric("m", 1, "sum")
        h = store.series("m", "c/h")
        base = np.arange(BLOCK, dtype=np.float32)
        for i in range(writes):
            store.write(h, 0, base + np.float32(i))
        store.close(checkpoint=False)

    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), str(BLOCK)],
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(out.stdout)
    assert got["records"] == writes + 2
    assert got["segments"] >= log_bytes // segment_bytes
    np.testing.assert_array_equal(np.array(got["last"], dtype=np.float32), base + (writes - 1))

    bound = segment_bytes + got["reserved_bytes"] + ALLOWANCE
    # Holding the whole log would break the bound: the test can fail.
    assert got["log_bytes"] > 2 * bound
    assert got["rise"] <= bound, (
        f"opening rose the peak resident set by {got['rise'] / MiB:.1f} MiB for a log of "
        f"{got['log_bytes'] / MiB:.0f} MiB in {got['segments']} segments of "
        f"{segment_bytes / MiB:.0f} MiB (data slabs {got['reserved_bytes'] / MiB:.1f} MiB); "
        f"bound {bound / MiB:.1f} MiB"
    )
