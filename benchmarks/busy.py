"""The benchmark on a busy machine and across core counts (part 6 of ``benchmarks.compare``).

Run alone from the repository root (``benchmarks.compare`` runs it too)::

    python -m benchmarks.busy --data-dir ../shared/data/mnist [--json busy.json]

1. epoch throughput (the network of part 1) with one CPU-bound process beside it, started
   and stopped here: digitnet (its engine deciding), digitnet in one process with one BLAS
   thread (as ``OPENBLAS_NUM_THREADS=1``) and PyTorch;
2. ``digitnet train`` with its defaults, in a child process, with one CPU-bound process
   beside it, against the same command with ``OPENBLAS_NUM_THREADS=1`` under the same load
   (the issue's bound: at most 1.15 x);
3. two trainings started together against the same two one after the other, for
   ``digitnet train`` and for PyTorch running digitnet's default recipe (the bound: each
   run together takes at most 1.15 x the two one after the other);
4. epoch throughput for 1, 2, 4, 8, 16 threads (those the machine has), digitnet and
   PyTorch with the same thread count.

Every figure is a ratio within this one run; seconds are training time as the trainer
measures it (``train_seconds``), not the command's start-up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

HOG = "while True: pass"
THREAD_COUNTS = (1, 2, 4, 8, 16)


@contextlib.contextmanager
def cpu_hogs(n: int = 1) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``n`` CPU-bound processes (``while True: pass``) for the duration of the block."""
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(n)]
    try:
        time.sleep(0.2)  # let them take their cores
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# ------------------------------------------------------------------ child processes
def digitnet_train_command(data_dir: str | None, out: str) -> list[str]:
    cmd = [sys.executable, "-m", "digitnet", "train", "--preset", "plain", "--no-plots",
           "--no-progress", "--out", out]
    return cmd + (["--data-dir", data_dir] if data_dir else [])


def torch_train_command(data_dir: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "benchmarks.busy", "--torch-child"]
    return cmd + (["--data-dir", data_dir] if data_dir else [])


def start(kind: str, data_dir: str | None, folder: str, env: dict[str, str] | None = None
          ) -> tuple[subprocess.Popen[str], str]:
    """Start one training child (``"digitnet"`` or ``"pytorch"``); returns it and its run
    folder (for digitnet's metrics.json)."""
    out = tempfile.mkdtemp(dir=folder)
    cmd = (digitnet_train_command(data_dir, out) if kind == "digitnet"
           else torch_train_command(data_dir))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    return proc, out


def finish(kind: str, proc: subprocess.Popen[str], out: str) -> dict[str, Any]:
    """Wait for a child of :func:`start`; its training seconds (and digitnet's engine info)."""
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} training failed: {stderr.strip()[-500:]}")
    if kind == "digitnet":
        metrics = json.loads((Path(out) / "metrics.json").read_text())
        return {"seconds": metrics["train_seconds"], "test_accuracy": metrics["test_accuracy"],
                "engine_info": metrics.get("engine_info")}
    return json.loads(stdout.strip().splitlines()[-1])


def train(kind: str, data_dir: str | None, folder: str, env: dict[str, str] | None = None
          ) -> dict[str, Any]:
    return finish(kind, *start(kind, data_dir, folder, env))


def two_at_once(kind: str, data_dir: str | None, folder: str) -> dict[str, Any]:
    """Two trainings one after the other, then two started together; ``ratio``: the slower
    of the two together over the sum of the two one after the other."""
    apart = [train(kind, data_dir, folder) for _ in range(2)]
    children = [start(kind, data_dir, folder) for _ in range(2)]
    together = [finish(kind, *child) for child in children]
    one_after_other = sum(r["seconds"] for r in apart)
    return {"apart": apart, "together": together, "one_after_other_seconds": one_after_other,
            "ratio": max(r["seconds"] for r in together) / one_after_other}


def train_beside_a_hog(data_dir: str | None, folder: str) -> dict[str, Any]:
    """``digitnet train`` with one CPU-bound process beside it, as it is and in one process
    with one BLAS thread; ``ratio``: the first over the second."""
    with cpu_hogs(1):
        engine = train("digitnet", data_dir, folder)
        one = train("digitnet", data_dir, folder, {"OPENBLAS_NUM_THREADS": "1"})
    return {"digitnet": engine, "one_process": one, "ratio": engine["seconds"] / one["seconds"]}


def torch_child(data_dir: str | None) -> int:
    """PyTorch trains digitnet's default recipe (network, initialization, one-cycle curve,
    batch, epochs) on the same training split; prints ``{"seconds": ...}``."""
    import torch

    from benchmarks import compare
    from digitnet.data import load_dataset
    from digitnet.experiment import split_for_training
    from digitnet.optimizers import learning_rate
    from digitnet.training import TrainConfig

    config = TrainConfig()
    ds = load_dataset("mnist", data_dir, progress=False)
    x_tr, y_tr, _, _ = split_for_training(ds, config)
    x = torch.from_numpy(x_tr.astype(np.float32) / 255.0)
    y = torch.from_numpy(y_tr)
    torch.manual_seed(config.seed)
    model = compare._torch_mlp([ds.n_features, *config.hidden, ds.n_classes])
    compare._digitnet_init(model)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    total = -(-len(x) // config.batch_size) * config.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: learning_rate("onecycle", config.lr, t, total) / config.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    started = time.perf_counter()
    for _ in range(config.epochs):
        compare._torch_epoch(model, opt, loss_fn, x, y, config.batch_size, sched)
    print(json.dumps({"seconds": time.perf_counter() - started}))
    return 0


# --------------------------------------------------------------- in this process
def throughput_beside_a_hog(ds: Any, epochs: int, threads: int, with_torch: bool
                            ) -> dict[str, float]:
    """Seconds per epoch (median after a warm-up) with one CPU-bound process beside."""
    from benchmarks import compare

    out: dict[str, float] = {}
    with cpu_hogs(1):
        out["digitnet"] = compare.median_after_warmup(compare.digitnet_epochs(ds, epochs))
        with threadpool_limits(1):
            out["digitnet_one_process"] = compare.median_after_warmup(
                compare.digitnet_epochs(ds, epochs, helper=False))
        if with_torch:
            out["pytorch"] = compare.median_after_warmup(
                compare.torch_epochs(ds, epochs, threads))
    return out


def thread_scaling(ds: Any, epochs: int, with_torch: bool,
                   counts: tuple[int, ...] = THREAD_COUNTS) -> list[dict[str, Any]]:
    """Seconds per epoch with each thread count the machine has (digitnet: its two
    processes get half each; one thread means one process)."""
    from benchmarks import compare

    rows = []
    for n in (c for c in counts if c <= _cores()):
        with threadpool_limits(n):
            row: dict[str, Any] = {"threads": n, "digitnet": compare.median_after_warmup(
                compare.digitnet_epochs(ds, epochs))}
            if with_torch:
                row["pytorch"] = compare.median_after_warmup(compare.torch_epochs(ds, epochs, n))
                row["ratio"] = row["digitnet"] / row["pytorch"]
        rows.append(row)
    return rows


def busy_machine(ds: Any, data_dir: str | None, epochs: int, threads: int, with_torch: bool
                 ) -> dict[str, Any]:
    """Parts 1-4 of this module's docstring."""
    result: dict[str, Any] = {"cores": _cores()}
    print("busy: throughput beside a CPU-bound process ...", file=sys.stderr)
    result["throughput_beside_a_hog"] = throughput_beside_a_hog(ds, epochs, threads, with_torch)
    with tempfile.TemporaryDirectory() as folder:
        print("busy: digitnet train beside a CPU-bound process ...", file=sys.stderr)
        result["train_beside_a_hog"] = train_beside_a_hog(data_dir, folder)
        print("busy: two digitnet trainings at once ...", file=sys.stderr)
        result["two_at_once"] = {"digitnet": two_at_once("digitnet", data_dir, folder)}
        if with_torch:
            print("busy: two PyTorch trainings at once ...", file=sys.stderr)
            result["two_at_once"]["pytorch"] = two_at_once("pytorch", data_dir, folder)
    print("busy: thread counts ...", file=sys.stderr)
    result["thread_scaling"] = thread_scaling(ds, epochs, with_torch)
    return result


def print_busy(r: dict[str, Any]) -> None:
    tp = r["throughput_beside_a_hog"]
    print("\n6. A busy machine (one CPU-bound process beside; two trainings at once)")
    print("   seconds per epoch (part 1's network) with one CPU-bound process beside:")
    for name in ("digitnet", "digitnet_one_process", "pytorch"):
        if name in tp:
            ratio = f"{tp[name] / tp['pytorch']:.2f} x PyTorch" if "pytorch" in tp else ""
            print(f"   {name:<22}{tp[name]:>8.3f}   {ratio}")
    hog = r["train_beside_a_hog"]
    print(f"   digitnet train beside it: {hog['digitnet']['seconds']:.2f} s, in one process "
          f"(OPENBLAS_NUM_THREADS=1) {hog['one_process']['seconds']:.2f} s: "
          f"{hog['ratio']:.2f} x (bound 1.15)")
    steps = (hog["digitnet"].get("engine_info") or {}).get("steps")
    if steps:
        print(f"     (steps with the helper process / inline: {steps.get('process')} / "
              f"{steps.get('inline')})")
    for name, two in r["two_at_once"].items():
        together = " and ".join(f"{t['seconds']:.2f}" for t in two["together"])
        print(f"   two {name} trainings at once: {together} s each, one after the other "
              f"{two['one_after_other_seconds']:.2f} s in all: {two['ratio']:.2f} x "
              f"(bound 1.15)")
    print(f"\n7. Thread counts ({r['cores']} cores here): seconds per epoch, part 1's network")
    for row in r["thread_scaling"]:
        line = f"   {row['threads']:>2} threads: digitnet {row['digitnet']:.3f}"
        if "pytorch" in row:
            line += f"  PyTorch {row['pytorch']:.3f}  ratio {row['ratio']:.2f}"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DIGITNET_DATA_DIR"))
    parser.add_argument("--threads", type=int, default=_cores())
    parser.add_argument("--epochs", type=int, default=3,
                        help="measured epochs per throughput figure (after one warm-up)")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--threads-only", action="store_true",
                        help="only part 4, the thread counts (e.g. on a big machine lent briefly)")
    parser.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_child:
        return torch_child(args.data_dir)
    from benchmarks import compare
    from digitnet.data import load_dataset

    ds = load_dataset("mnist", args.data_dir, progress=False)
    with_torch = not args.no_torch and compare.torch_available()
    if args.threads_only:
        rows = thread_scaling(ds, args.epochs + 1, with_torch)
        result: dict[str, Any] = {"cores": _cores(), "thread_scaling": rows,
                                  "machine": compare.machine_notes(args.threads)}
        for row in rows:
            print(f"{row['threads']:>2} threads: digitnet {row['digitnet']:.3f} s/epoch"
                  + (f"  PyTorch {row['pytorch']:.3f}  ratio {row['ratio']:.2f}"
                     if "pytorch" in row else ""), flush=True)
    else:
        result = busy_machine(ds, args.data_dir, args.epochs + 1, args.threads, with_torch)
        print_busy(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
