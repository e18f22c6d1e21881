"""Benchmarks of digitnet against its peers (not part of the installed package).

Like the ``digitnet`` command, they let OpenBLAS's idle threads sleep within a millisecond
(``digitnet.cli.OPENBLAS_THREAD_TIMEOUT``; a value already in the environment wins). It is
set here, when ``python -m benchmarks.compare`` imports this package, because OpenBLAS reads
it once, when NumPy loads it. It concerns the OpenBLAS users (digitnet, scikit-learn), not
PyTorch (MKL).
"""

import os

from digitnet.cli import OPENBLAS_THREAD_TIMEOUT

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
