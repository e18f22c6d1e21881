"""Time to 99 %: ``--preset best``'s recipe in digitnet and in PyTorch (CPU), side by side.

Run from the repository root (it trains until 99.0 % test accuracy, or the recipe's epochs;
minutes, so it is not part of ``benchmarks.compare`` or CI)::

    python -m benchmarks.time_to_99 --data-dir ../shared/data/mnist --json t99.json

Both frameworks train the same recipe on the same training split (the validation images
held out, as ``digitnet train`` does): the same network and initialization, Adam with
digitnet's one-cycle curve step by step, batch size, label smoothing, the same weight
average (``β_t = min(β, (1 + t) / (10 + t))``, what is tested) and dropout, and the *same
augmented images*: each epoch's distortions come from :class:`digitnet.training.EpochImages`,
computed one epoch ahead in a worker process (:class:`digitnet.engine.prefetch.
PrefetchedEpochs`) for both, so the data pipeline is the same and the engines are compared.
After every epoch both make ``digitnet train``'s validation pass with the averaged weights
(timed), then the test accuracy of those weights is checked (not timed); the
time to the first epoch at ``--target`` is reported, and the ratio digitnet / PyTorch (goal
<= 0.7). ``--busy`` repeats both with one CPU-bound process beside them. PyTorch uses as
many threads as digitnet's BLAS may. ``--device gpu`` trains both on the GPU (digitnet on
CuPy, PyTorch on CUDA; the augmentation stays on the CPU, one epoch ahead, for both).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info

from benchmarks import busy, compare
from digitnet.augment import AUGMENTERS
from digitnet.config import TrainConfig, recipe
from digitnet.data import MinMaxScaler, load_dataset
from digitnet.data.datasets import Dataset
from digitnet.engine import make_trainer
from digitnet.engine.prefetch import PrefetchedEpochs, spare_cores
from digitnet.experiment import split_for_training
from digitnet.network import MLP
from digitnet.optimizers import learning_rate
from digitnet.training import EpochImages, EpochRecord, fit

TARGET = 0.99
LIMITS: dict[str, Any] = {"seconds": float("inf"), "stop_at_target": True}  # main() sets


def _done(acc: float, target: float, elapsed: float) -> bool:
    return (acc >= target and LIMITS["stop_at_target"]) or elapsed > LIMITS["seconds"]


def digitnet_run(ds: Dataset, config: TrainConfig, target: float) -> dict[str, Any]:
    """``digitnet train``'s path (fast engine), test accuracy after every epoch."""
    scaler = MinMaxScaler.fit(ds.x_train)
    x_tr, y_tr, x_val, y_val = split_for_training(ds, config)
    net = MLP(ds.n_features, config.hidden, ds.n_classes, config.activation, config.dtype,
              config.seed, config.dropout, config.input_dropout)
    x_test = scaler.transform(ds.x_test)
    curve: list[tuple[float, float]] = []
    watch = compare.StopWatch()

    def check(record: EpochRecord) -> bool:  # the network holds the averaged weights here
        acc = watch.untimed(lambda: float(np.mean(net.predict(x_test) == ds.y_test)))
        curve.append((watch.elapsed(), acc))
        return _done(acc, target, curve[-1][0])

    fit(net, x_tr, y_tr, scaler, config, x_val, y_val, on_epoch_end=check,
        engine=make_trainer)
    return _result(curve, target)


def torch_run(ds: Dataset, config: TrainConfig, threads: int, target: float) -> dict[str, Any]:
    """The same recipe in PyTorch eager mode (on CUDA for ``config.device == "gpu"``)."""
    import torch

    where = "cuda" if config.device == "gpu" else "cpu"
    torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    x_tr, y_tr, x_val, y_val = split_for_training(ds, config)
    scale = 1.0 / 255.0

    def tensor(a: Any) -> Any:
        return torch.from_numpy(a).to(where)

    y = tensor(y_tr.astype(np.int64))
    x_test = tensor(ds.x_test.astype(np.float32) * scale)
    y_test = tensor(ds.y_test.astype(np.int64))
    validation = None if x_val is None or y_val is None else compare.torch_validation(
        tensor(x_val.astype(np.float32) * scale), tensor(y_val.astype(np.int64)))
    model = torch_model([ds.n_features, *config.hidden, ds.n_classes], config.dropout,
                        config.input_dropout).to(where)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps = -(-len(x_tr) // config.batch_size)
    total = steps * config.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: learning_rate(config.schedule, config.lr, t, total) / config.lr)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    params = list(model.parameters())
    average = [p.detach().clone() for p in params] if config.ema else None
    augmenter = AUGMENTERS[config.augment]
    images: Callable[[int], Any] | None = None
    prefetch = None
    if augmenter is not None:
        prefetch = PrefetchedEpochs(  # as digitnet's engine does (several workers on a GPU)
            EpochImages(augmenter, x_tr, config.seed, config.epochs),
            workers=spare_cores() if config.device == "gpu" else 1)
        images = prefetch
    x_plain = tensor(x_tr.astype(np.float32) * scale)
    curve: list[tuple[float, float]] = []
    watch = compare.StopWatch()
    t = 0

    def accuracy() -> float:
        model.eval()
        with torch.no_grad():
            return float((model(x_test).argmax(1) == y_test).float().mean())

    def evaluate() -> float:
        """What digitnet's ``fit`` does after every epoch (timed): the averaged weights
        swapped in, the validation pass; then the test accuracy (untimed)."""
        with torch.no_grad():
            if average is not None:
                own = [p.detach().clone() for p in params]
                torch._foreach_copy_(params, average)
            if validation is not None:
                validation(model)
            acc = watch.untimed(accuracy)
            if average is not None:
                torch._foreach_copy_(params, own)
        return acc

    try:
        for epoch in range(1, config.epochs + 1):
            x = x_plain if images is None else tensor(images(epoch).astype(np.float32) * scale)
            model.train()
            perm = torch.randperm(len(x), device=where)
            for start in range(0, len(x), config.batch_size):
                idx = perm[start:start + config.batch_size]
                opt.zero_grad(set_to_none=True)
                loss_fn(model(x[idx]), y[idx]).backward()
                opt.step()
                sched.step()
                if average is not None:
                    beta = min(config.ema, (1 + t) / (10 + t))
                    with torch.no_grad():
                        torch._foreach_lerp_(average, params, 1.0 - beta)
                t += 1
            acc = evaluate()
            curve.append((watch.elapsed(), acc))
            if _done(acc, target, curve[-1][0]):
                break
    finally:
        if prefetch is not None:
            prefetch.close()
    return _result(curve, target)


def torch_model(sizes: list[int], dropout: float, input_dropout: float) -> Any:
    """digitnet's network in PyTorch (its initialization, its dropout placement)."""
    import torch

    plain = compare._torch_mlp(sizes)
    compare._digitnet_init(plain)
    layers: list[Any] = [torch.nn.Dropout(input_dropout)] if input_dropout else []
    for layer in plain:
        layers.append(layer)
        if isinstance(layer, torch.nn.ReLU) and dropout:
            layers.append(torch.nn.Dropout(dropout))
    return torch.nn.Sequential(*layers)


def _result(curve: list[tuple[float, float]], target: float) -> dict[str, Any]:
    reached = next((i for i, (_, acc) in enumerate(curve) if acc >= target), None)
    return {"seconds": None if reached is None else curve[reached][0],
            "epochs": None if reached is None else reached + 1,
            "final_accuracy": curve[-1][1] if curve else None,
            "best_accuracy": max((acc for _, acc in curve), default=None),
            "curve": [[round(s, 2), acc] for s, acc in curve]}


def side_by_side(ds: Dataset, config: TrainConfig, threads: int, target: float,
                 with_torch: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"digitnet": digitnet_run(ds, config, target)}
    if with_torch:
        result["pytorch"] = torch_run(ds, config, threads, target)
        a, b = result["digitnet"]["seconds"], result["pytorch"]["seconds"]
        result["ratio"] = None if a is None or b is None else a / b
    return result


def _print_line(label: str, r: dict[str, Any], target: float) -> None:
    cells = []
    for name in ("digitnet", "pytorch"):
        if name in r:
            run = r[name]
            cells.append(f"{name}: " + (f"{run['seconds']:.0f} s ({run['epochs']} epochs)"
                                        if run["seconds"] is not None else "not reached"
                                        + (f" (best {run['best_accuracy']:.4f})"
                                           if run.get("best_accuracy") is not None else "")))
    ratio = r.get("ratio")
    print(f"{label}: time to {target:.1%}: " + ", ".join(cells)
          + (f"; ratio {ratio:.2f} (goal <= 0.7)" if ratio is not None else ""))


def over_seeds(ds: Dataset, config: TrainConfig, threads: int, target: float,
               with_torch: bool, seeds: list[int]) -> dict[str, Any]:
    """:func:`side_by_side` for each of ``seeds`` (the frameworks taking turns); with more
    than one seed, the runs and, per framework, the run of the median time
    (:func:`benchmarks.compare.median_run`) and their ratio: the shuffles of the two
    frameworks reach the target a few epochs apart, so one seed's ratio is noisy."""
    runs = [side_by_side(ds, dataclasses.replace(config, seed=seed), threads, target,
                         with_torch) for seed in seeds]
    if len(runs) == 1:
        return runs[0]
    result: dict[str, Any] = {"seeds": seeds, "runs": runs}
    for name in ("digitnet", "pytorch"):
        if name in runs[0]:
            result[name] = compare.median_run([run[name] for run in runs])
    if with_torch:
        result["ratio"] = compare._ratio(result["digitnet"], result["pytorch"])
    return result


def _blas_threads() -> int:
    return max((int(i.get("num_threads", 1)) for i in threadpool_info()), default=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--preset", default="best")
    parser.add_argument("--epochs", type=int, help="at most this many (default: the preset's)")
    parser.add_argument("--hidden", type=int, nargs="+", help="another network (short runs)")
    parser.add_argument("--target", type=float, default=TARGET)
    parser.add_argument("--seed", type=int, nargs="+", default=[0], dest="seeds",
                        help="one seed, or several: the median run of each framework")
    parser.add_argument("--busy", action="store_true",
                        help="also with one CPU-bound process beside the runs")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                        help="train both on the CPU or both on the GPU")
    parser.add_argument("--max-minutes", type=float, help="stop each run after this long")
    parser.add_argument("--full", action="store_true", help="train every epoch (the final "
                        "accuracy), still noting when the target was first reached")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.max_minutes:
        LIMITS["seconds"] = 60 * args.max_minutes
    LIMITS["stop_at_target"] = not args.full
    overrides: dict[str, Any] = {"seed": args.seeds[0], "device": args.device}
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.hidden:
        overrides["hidden"] = tuple(args.hidden)
    config = recipe(args.dataset, args.preset, **overrides)
    ds = load_dataset(args.dataset, args.data_dir, progress=False)
    threads = _blas_threads()
    with_torch = not args.no_torch and compare.torch_available()
    report: dict[str, Any] = {"config": config.to_dict(), "target": args.target,
                              "threads": threads, "machine": compare.machine_notes(threads)}
    report["idle"] = over_seeds(ds, config, threads, args.target, with_torch, args.seeds)
    if args.busy:
        with busy.cpu_hogs(1):
            report["busy"] = over_seeds(ds, config, threads, args.target, with_torch,
                                        args.seeds)
    for label in ("idle", "busy"):
        if label not in report:
            continue
        r = report[label]
        for seed, run in zip(r.get("seeds", []), r.get("runs", []), strict=True):
            _print_line(f"{label}, seed {seed}", run, args.target)
        _print_line(label if "runs" not in r else f"{label}, median", r, args.target)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
