"""Run a command and print its peak resident memory in MB (Linux ``ru_maxrss`` is in KiB).

    python -m benchmarks.child_rss COMMAND [ARGS...]

The command's own output goes to stderr; stdout's last line is the peak RSS.
"""

from __future__ import annotations

import resource
import subprocess
import sys


def main() -> int:
    proc = subprocess.run(sys.argv[1:], stdout=sys.stderr, check=False)
    if proc.returncode != 0:
        return proc.returncode
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())
