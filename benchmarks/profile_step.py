"""Where a training step's time goes in this process: µs per step in each wrapped method.

Run from the repository root::

    python -m benchmarks.profile_step --data-dir ../shared/data/mnist --batch-size 512

It trains digitnet's default network for a few epochs (the fast engine) with timers around
the methods listed in :data:`TIMED` (inclusive times: ``split.forward`` contains
``share.forward`` and ``wait``).
The helper process's own time is not seen here; ``wait`` is how long this process waited for it.
The per-step total also holds each ``fit``'s start (the helper's fork, shared buffers).
"""

from __future__ import annotations

import argparse
import collections
import os
import time
from collections.abc import Callable
from typing import Any

from digitnet import layers
from digitnet.data import MinMaxScaler, load_dataset
from digitnet.engine import make_trainer, split
from digitnet.engine import optimizers as fast_optimizers
from digitnet.experiment import split_for_training
from digitnet.network import MLP
from digitnet.training import TrainConfig, fit

TIMED: list[tuple[Any, str, str]] = [
    (split.SplitTrainer, "step", "step"),
    (MLP, "loss_and_gradients", "forward+backward"),
    (split.SplitDense, "forward", "split.forward"),
    (split.RowShare, "forward", "share.forward (product)"),
    (split.SplitDense, "backward", "split.backward"),
    (split.RowShare, "backward", "share.backward (products)"),
    (split.HelperProcess, "wait", "wait for the helper"),
    (layers.ActivationLayer, "forward", "activation.forward"),
    (layers.ActivationLayer, "backward", "activation.backward"),
    (layers.SoftmaxCrossEntropy, "forward", "loss.forward"),
    (layers.SoftmaxCrossEntropy, "backward", "loss.backward"),
    (fast_optimizers.Adam, "_update", "adam"),
    (split.SplitBatchLoader, "load", "batch load"),
    (split.SplitTrainer, "evaluate", "validation"),
]


def _timed(method: Callable[..., Any], label: str,
           totals: dict[str, float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - start
    return wrapper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DIGITNET_DATA_DIR"))
    parser.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--hidden", type=int, nargs="+", help="another network, e.g. 1024 1024")
    args = parser.parse_args(argv)

    ds = load_dataset("mnist", args.data_dir, progress=False)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                         **({"hidden": tuple(args.hidden)} if args.hidden else {}))
    x_train, y_train, x_val, y_val = split_for_training(ds, config)
    scaler = MinMaxScaler.fit(ds.x_train)
    totals: dict[str, float] = collections.defaultdict(float)
    originals = [(cls, name, getattr(cls, name)) for cls, name, _ in TIMED]
    for cls, name, label in TIMED:
        setattr(cls, name, _timed(getattr(cls, name), label, totals))
    try:
        net = MLP(ds.n_features, config.hidden, ds.n_classes, seed=config.seed)
        start = time.perf_counter()
        result = fit(net, x_train, y_train, scaler, config, x_val, y_val, engine=make_trainer)
        seconds = time.perf_counter() - start
    finally:
        for cls, name, method in originals:
            setattr(cls, name, method)
    steps = -(-len(x_train) // config.batch_size) * len(result.history)
    per_epoch, per_step = seconds / len(result.history), seconds / steps * 1e6
    print(f"{'-'.join(map(str, net.layer_sizes))}, batch {config.batch_size}: "
          f"{per_epoch:.3f} s per epoch, {per_step:.0f} µs per step")
    for _, _, label in TIMED:
        if label in totals:
            print(f"  {label:<28}{totals[label] / steps * 1e6:>8.0f} µs per step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
