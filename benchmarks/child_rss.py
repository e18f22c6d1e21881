"""Run a command and report its peak memory in MB, as JSON on the last line of stdout.

    python -m benchmarks.child_rss COMMAND [ARGS...]

* ``max_rss_mb``: the largest resident set of any one process of the command (Linux
  ``ru_maxrss`` of the waited-for descendants, in KiB);
* ``peak_pss_mb``: the largest total *proportional* set size of the command's whole process
  tree, sampled every 20 ms (pages shared between processes, such as the data a forked
  helper reads, count once, split between them). Linux only; ``null`` elsewhere.

The command's own output goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def _descendants(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return pids


def tree_pss_mb(pid: int) -> float | None:
    """Total ``Pss`` of ``pid`` and its descendants, in MB (``None`` without /proc)."""
    total_kib = 0
    for p in _descendants(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kib += int(line.split()[1])
                    break
        except OSError:
            if p == pid:
                return None
    return total_kib / 1024


def main() -> int:
    proc = subprocess.Popen(sys.argv[1:], stdout=sys.stderr)
    peak_pss: float | None = None
    while proc.poll() is None:
        pss = tree_pss_mb(proc.pid)
        if pss is not None:
            peak_pss = max(peak_pss or 0.0, pss)
        time.sleep(0.02)
    if proc.returncode != 0:
        return proc.returncode
    max_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"max_rss_mb": max_rss, "peak_pss_mb": peak_pss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
