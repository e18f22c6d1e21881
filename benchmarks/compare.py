"""Side-by-side speed benchmark: digitnet vs PyTorch (CPU) vs scikit-learn's MLPClassifier.

Run from the repository root (PyTorch is optional: ``pip install torch==2.13.0``)::

    python -m benchmarks.compare --data-dir ../shared/data/mnist --json bench.json

It measures, in one process sequence on the same machine and data:

1. epoch throughput: 784-128-64-10 ReLU, batch 128, Adam (lr 1e-3), float32, the same thread
   count for all; seconds per epoch = median over several epochs after one warm-up epoch;
   -- digitnet with its helper process (``digitnet.parallel``) and in one process;
2. time to accuracy: wall time from the start of training until the test accuracy, checked
   at the end of each epoch (checks not timed), first reaches 98.0 %, for digitnet's default
   ``train`` recipe and for the fastest of several PyTorch recipes of similar size
   (:func:`torch_recipes`: 784-256-128-10, Adam, one-cycle, batch 128 or digitnet's);
3. peak memory of a full ``digitnet train`` run (both processes), in a child process;
4. the machine's sgemm GFLOP/s and the fraction of it digitnet's epoch achieves;
5. how long ``digitnet --help`` takes.

Timings on a shared machine are noisy: compare the ratios of one run, not absolute
seconds across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from digitnet import parallel
from digitnet.data import MinMaxScaler, load_dataset, stratified_split
from digitnet.data.datasets import Dataset
from digitnet.network import MLP
from digitnet.optimizers import learning_rate
from digitnet.training import EpochRecord, TrainConfig, fit

TARGET_ACCURACY = 0.98
THROUGHPUT_LAYERS = (128, 64)


# --------------------------------------------------------------------------- helpers
def median_after_warmup(seconds: list[float]) -> float:
    """Median of the per-epoch times, ignoring the first (warm-up) epoch."""
    return statistics.median(seconds[1:])


def mlp_flops_per_epoch(layer_sizes: list[int], n_samples: int) -> float:
    """FLOPs of one training epoch: forward ``2·n·Σ d_in·d_out``, the same again for the
    weight gradients, and once more for the input gradients of every layer but the first."""
    products = [a * b for a, b in itertools.pairwise(layer_sizes)]
    return 2.0 * n_samples * (2 * sum(products) + sum(products[1:]))


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The machine's float32 matrix-product rate (median of ``repeats`` n x n products)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2.0 * n**3 / statistics.median(times) / 1e9


# ----------------------------------------------------------------- 1. throughput
def digitnet_epochs(ds: Dataset, epochs: int, helper: bool = True) -> list[float]:
    """Epoch times of digitnet; ``helper=False`` keeps it in one process (the split
    arithmetic then runs inline, BLAS on all threads)."""
    config = TrainConfig(hidden=THROUGHPUT_LAYERS, epochs=epochs, batch_size=128, lr=1e-3,
                         optimizer="adam", schedule="constant", validation_fraction=0)
    net = MLP(ds.n_features, config.hidden, ds.n_classes, seed=0)
    with contextlib.ExitStack() as stack:
        if not helper:
            stack.enter_context(mock.patch.object(parallel, "helper_can_run", lambda: False))
        result = fit(net, ds.x_train, ds.y_train, MinMaxScaler.fit(ds.x_train), config)
    return [r.seconds for r in result.history]


def torch_epochs(ds: Dataset, epochs: int, threads: int) -> list[float]:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.from_numpy(ds.x_train.astype(np.float32) / 255.0)
    y = torch.from_numpy(ds.y_train)
    sizes = [ds.n_features, *THROUGHPUT_LAYERS, ds.n_classes]
    model = _torch_mlp(sizes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        _torch_epoch(model, opt, loss_fn, x, y, 128)
        times.append(time.perf_counter() - start)
    return times


def sklearn_epochs(ds: Dataset, epochs: int) -> list[float]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x = ds.x_train.astype(np.float32) / np.float32(255.0)
    clf = MLPClassifier(hidden_layer_sizes=THROUGHPUT_LAYERS, solver="adam",
                        learning_rate_init=1e-3, batch_size=128, alpha=0.0, random_state=0)
    classes = np.arange(ds.n_classes)
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(epochs):
            start = time.perf_counter()
            clf.partial_fit(x, ds.y_train, classes=classes)
            times.append(time.perf_counter() - start)
    return times


def _torch_mlp(sizes: list[int]):  # type: ignore[no-untyped-def]
    import torch

    layers: list[Any] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def _torch_epoch(model, opt, loss_fn, x, y, batch, scheduler=None) -> None:  # type: ignore[no-untyped-def]
    import torch

    model.train()
    perm = torch.randperm(len(x))
    for start in range(0, len(x), batch):
        idx = perm[start : start + batch]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


# ------------------------------------------------------------ 2. time to accuracy
class StopWatch:
    """Wall time since start, excluding the intervals spent in evaluation."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.excluded = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start - self.excluded

    def untimed(self, fn: Callable[[], float]) -> float:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.excluded += time.perf_counter() - t0


class ReachedTarget(Exception):
    pass


def digitnet_time_to_accuracy(ds: Dataset) -> dict[str, Any]:
    """digitnet's default ``train`` recipe (TrainConfig()), as ``digitnet train`` runs it."""
    config = TrainConfig()
    scaler = MinMaxScaler.fit(ds.x_train)
    tr, val = stratified_split(ds.y_train, config.validation_fraction, config.seed)
    # The data is ready before the clock starts, as PyTorch's tensors are.
    x_tr, y_tr, x_val, y_val = ds.x_train[tr], ds.y_train[tr], ds.x_train[val], ds.y_train[val]
    net = MLP(ds.n_features, config.hidden, ds.n_classes, config.activation, config.dtype,
              config.seed)
    x_test = scaler.transform(ds.x_test)
    curve: list[tuple[float, float]] = []
    watch = StopWatch()

    def check(record: EpochRecord) -> None:
        acc = watch.untimed(lambda: float(np.mean(net.predict(x_test) == ds.y_test)))
        curve.append((watch.elapsed(), acc))
        if acc >= TARGET_ACCURACY:
            raise ReachedTarget

    with contextlib.suppress(ReachedTarget):
        fit(net, x_tr, y_tr, scaler, config, x_val, y_val, on_epoch_end=check)
    return _tta_result(f"{'-'.join(map(str, net.layer_sizes))} adam onecycle "
                       f"lr {config.lr} batch {config.batch_size}", curve)


def torch_time_to_accuracy(ds: Dataset, threads: int, recipe: TorchRecipe) -> dict[str, Any]:
    """A PyTorch recipe, trained on the same training split as digitnet's default recipe
    (validation images held out)."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tr, _ = stratified_split(ds.y_train, TrainConfig().validation_fraction, 0)
    x = torch.from_numpy(ds.x_train[tr].astype(np.float32) / 255.0)
    y = torch.from_numpy(ds.y_train[tr])
    x_test = torch.from_numpy(ds.x_test.astype(np.float32) / 255.0)
    y_test = torch.from_numpy(ds.y_test)
    model = _torch_mlp([ds.n_features, *recipe.hidden, ds.n_classes])
    if recipe.digitnet_style:
        _digitnet_init(model)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    steps = -(-len(x) // recipe.batch)
    sched: Any
    if recipe.digitnet_style:  # digitnet's own one-cycle curve, step by step
        total = steps * recipe.epochs
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda t: learning_rate("onecycle", recipe.lr, t, total) / recipe.lr
        )
    else:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, epochs=recipe.epochs,
                                                    steps_per_epoch=steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    curve: list[tuple[float, float]] = []
    watch = StopWatch()

    def test_accuracy() -> float:
        model.eval()
        with torch.no_grad():
            return float((model(x_test).argmax(1) == y_test).float().mean())

    for _ in range(recipe.epochs):
        _torch_epoch(model, opt, loss_fn, x, y, recipe.batch, sched)
        acc = watch.untimed(test_accuracy)
        curve.append((watch.elapsed(), acc))
        if acc >= TARGET_ACCURACY:
            break
    return _tta_result(recipe.describe(), curve)


def _digitnet_init(model: Any) -> None:
    """digitnet's initialization (digitnet.layers.init_weights): He-normal hidden layers,
    Glorot-uniform output layer, zero biases."""
    import torch

    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for layer in linears:
            if layer is linears[-1]:
                torch.nn.init.xavier_uniform_(layer.weight)
            else:
                torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            torch.nn.init.zeros_(layer.bias)


@dataclass(frozen=True)
class TorchRecipe:
    """Adam + one-cycle over ``epochs`` with peak ``lr``; ``digitnet_style`` uses digitnet's
    initialization and one-cycle curve instead of PyTorch's defaults (``OneCycleLR`` with
    momentum cycling, ``nn.Linear``'s uniform initialization)."""

    epochs: int
    batch: int
    lr: float
    hidden: tuple[int, ...] = (256, 128)
    digitnet_style: bool = False

    def describe(self) -> str:
        style = "digitnet init+schedule" if self.digitnet_style else "OneCycleLR"
        return (f"784-{'-'.join(map(str, self.hidden))}-10 adam {style} ({self.epochs} epochs) "
                f"lr {self.lr:g} batch {self.batch}")


def torch_recipes() -> list[TorchRecipe]:
    """The PyTorch recipes tried: the issue's example (784-256-128-10, batch 128, one-cycle)
    at three lengths, and digitnet's default recipe with PyTorch's defaults and exactly."""
    d = TrainConfig()
    return [
        TorchRecipe(6, 128, 2e-3), TorchRecipe(8, 128, 2e-3), TorchRecipe(12, 128, 2e-3),
        TorchRecipe(d.epochs, d.batch_size, d.lr, d.hidden),
        TorchRecipe(d.epochs + 2, d.batch_size, d.lr, d.hidden),
        TorchRecipe(d.epochs, d.batch_size, d.lr, d.hidden, digitnet_style=True),
    ]


def best_torch_time_to_accuracy(ds: Dataset, threads: int) -> dict[str, Any]:
    """Tune the PyTorch recipe: the fastest of :func:`torch_recipes` to reach the target."""
    tried = [torch_time_to_accuracy(ds, threads, recipe) for recipe in torch_recipes()]
    reached = [t for t in tried if t["seconds"] is not None]
    best = min(reached, key=lambda t: t["seconds"]) if reached else tried[-1]
    return {**best, "tried": [{k: t[k] for k in ("recipe", "epochs", "seconds")} for t in tried]}


def _tta_result(recipe: str, curve: list[tuple[float, float]]) -> dict[str, Any]:
    reached = next(((i + 1, t) for i, (t, a) in enumerate(curve) if a >= TARGET_ACCURACY), None)
    return {
        "recipe": recipe,
        "epochs": reached[0] if reached else None,
        "seconds": reached[1] if reached else None,
        "curve": [{"seconds": t, "test_accuracy": a} for t, a in curve],
    }


# ------------------------------------------------------------ 3. memory, 5. --help
def peak_rss_of_train(data_dir: str | None, dataset: str) -> dict[str, Any]:
    """Max RSS of ``digitnet train`` (default recipe, no plots) in a fresh child process."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "benchmarks.child_rss", sys.executable, "-m", "digitnet",
               "train", "--dataset", dataset, "--no-progress", "--out", out]
        if data_dir:
            cmd += ["--data-dir", data_dir]
        cmd += ["--no-plots"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"digitnet train failed: {proc.stderr.strip()[-500:]}")
        memory = json.loads(proc.stdout.strip().splitlines()[-1])
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    return {**memory, "test_accuracy": metrics["test_accuracy"],
            "train_seconds": metrics["train_seconds"]}


def help_seconds(repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "digitnet", "--help"], capture_output=True,
                       check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ------------------------------------------------------------------------ report
def machine_notes(threads: int) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = [(i.get("internal_api"), i.get("architecture"), i.get("num_threads"))
            for i in threadpool_info()]
    notes: dict[str, Any] = {
        "cpu": cpu, "cores": os.cpu_count(), "threads": threads,
        "python": platform.python_version(), "numpy": np.__version__, "blas": blas,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_THREAD_TIMEOUT": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
    }
    try:
        import sklearn
        notes["sklearn"] = sklearn.__version__
    except ImportError:
        pass
    try:
        import torch
        notes["torch"] = torch.__version__
    except ImportError:
        notes["torch"] = None
    return notes


def print_table(r: dict[str, Any]) -> None:
    tp = r["throughput"]
    print(f"\nMachine: {r['machine']['cpu']}, {r['machine']['cores']} cores, "
          f"{r['machine']['threads']} threads; OPENBLAS_CORETYPE="
          f"{r['machine']['OPENBLAS_CORETYPE']}, OPENBLAS_THREAD_TIMEOUT="
          f"{r['machine']['OPENBLAS_THREAD_TIMEOUT']}")
    print("\n1. Epoch throughput (784-128-64-10 ReLU, batch 128, Adam lr 1e-3, float32)")
    print(f"   {'':<22}{'s/epoch':>10}{'vs PyTorch':>12}")
    for name in ("digitnet", "digitnet_one_process", "pytorch", "sklearn"):
        if name in tp:
            ratio = tp[name] / tp["pytorch"] if "pytorch" in tp else float("nan")
            print(f"   {name:<22}{tp[name]:>10.3f}{ratio:>12.2f}")
    tta = r["time_to_accuracy"]
    print(f"\n2. Time to {TARGET_ACCURACY:.1%} test accuracy")
    for name, row in tta.items():
        if not isinstance(row, dict):
            continue
        secs = "not reached" if row["seconds"] is None else f"{row['seconds']:.2f} s"
        print(f"   {name:<10}{secs:>14}  after {row['epochs']} epochs  ({row['recipe']})")
    if tta.get("ratio") is not None:
        print(f"   ratio digitnet / pytorch: {tta['ratio']:.2f}")
    if "memory" in r:
        m = r["memory"]
        pss = "n/a" if m["peak_pss_mb"] is None else f"{m['peak_pss_mb']:.0f} MB"
        print(f"\n3. digitnet train: peak RSS {m['max_rss_mb']:.0f} MB (largest process), "
              f"{pss} for both processes together (PSS)\n   (test accuracy "
              f"{m['test_accuracy']:.4f}, {m['train_seconds']:.1f} s training)")
    g = r["gemm"]
    print(f"\n4. sgemm {g['sgemm_gflops']:.0f} GFLOP/s; digitnet epoch "
          f"{g['digitnet_gflops']:.0f} GFLOP/s = {g['fraction']:.0%} of it")
    print(f"\n5. digitnet --help: {r['help_seconds']:.3f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DIGITNET_DATA_DIR"),
                        help="MNIST folder (default: $DIGITNET_DATA_DIR, else cache/download)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--epochs", type=int, default=5,
                        help="measured epochs per framework (after one warm-up epoch)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["pytorch", "sklearn", "tta", "memory"], help="parts to skip")
    args = parser.parse_args(argv)

    ds = load_dataset("mnist", args.data_dir, progress=False)
    has_torch = "pytorch" not in args.skip
    if has_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("PyTorch not installed (pip install torch==2.13.0): skipping it",
                  file=sys.stderr)
            has_torch = False
    results: dict[str, Any] = {"machine": machine_notes(args.threads)}
    n = args.epochs + 1
    with threadpool_limits(args.threads):
        print("throughput: digitnet ...", file=sys.stderr)
        raw: dict[str, list[float]] = {"digitnet": digitnet_epochs(ds, n)}
        print("throughput: digitnet in one process ...", file=sys.stderr)
        raw["digitnet_one_process"] = digitnet_epochs(ds, n, helper=False)
        if has_torch:
            print("throughput: pytorch ...", file=sys.stderr)
            raw["pytorch"] = torch_epochs(ds, n, args.threads)
        if "sklearn" not in args.skip:
            print("throughput: scikit-learn ...", file=sys.stderr)
            raw["sklearn"] = sklearn_epochs(ds, n)
        tp: dict[str, Any] = {k: median_after_warmup(v) for k, v in raw.items()}
        if "pytorch" in tp:
            tp["ratio_digitnet_pytorch"] = tp["digitnet"] / tp["pytorch"]
        tp["epoch_seconds"] = raw
        results["throughput"] = tp

        if "tta" not in args.skip:
            print("time to accuracy: digitnet ...", file=sys.stderr)
            tta: dict[str, Any] = {"digitnet": digitnet_time_to_accuracy(ds)}
            if has_torch:
                print("time to accuracy: pytorch ...", file=sys.stderr)
                tta["pytorch"] = best_torch_time_to_accuracy(ds, args.threads)
                a, b = tta["digitnet"]["seconds"], tta["pytorch"]["seconds"]
                tta["ratio"] = a / b if a is not None and b is not None else None
            results["time_to_accuracy"] = tta

        layer_sizes = [ds.n_features, *THROUGHPUT_LAYERS, ds.n_classes]
        flops = mlp_flops_per_epoch(layer_sizes, len(ds.x_train))
        peak = sgemm_gflops()
        achieved = flops / tp["digitnet"] / 1e9
        results["gemm"] = {"sgemm_gflops": peak, "digitnet_gflops": achieved,
                           "fraction": achieved / peak, "flops_per_epoch": flops}
    if "memory" not in args.skip:
        print("peak memory: digitnet train ...", file=sys.stderr)
        results["memory"] = peak_rss_of_train(args.data_dir, "mnist")
    results["help_seconds"] = help_seconds()
    if "time_to_accuracy" not in results:
        results["time_to_accuracy"] = {}
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
