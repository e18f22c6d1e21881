"""Epoch time on a GPU: digitnet's code on CuPy against PyTorch on CUDA, side by side.

Run from the repository root on a machine with a CUDA GPU, CuPy and PyTorch::

    python -m benchmarks.gpu --data-dir ../shared/data/mnist --json gpu.json

For each network (the throughput benchmark's 784-128-64-10 at batch 128, ``--preset best``'s
784-1024-1024-10 at batch 256, and Cireşan et al.'s 784-2500-2000-1500-1000-500-10 at batch
256), float32, Adam at a constant rate, no augmentation: the median epoch time after a
warm-up epoch of digitnet's fast engine and textbook step on CuPy (``--device gpu``), and of
PyTorch eager on CUDA (the same layers and batch; the loop waits for the GPU only at the
end of each epoch, the fastest way to run it). The ratio digitnet / PyTorch is the figure
(goal: at most 1.5). Without real data (no ``--data-dir``) random images of MNIST's shape are
timed, which costs the same. ``--device cpu`` runs the same on the CPU (PyTorch on the CPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import numpy as np

from benchmarks import compare
from digitnet import devices
from digitnet.config import TrainConfig
from digitnet.data import MinMaxScaler, load_dataset
from digitnet.engine import trainer_factory
from digitnet.network import MLP
from digitnet.training import fit

NETWORKS: list[tuple[str, tuple[int, ...], int]] = [
    ("benchmark 784-128-64-10", (128, 64), 128),
    ("--preset best 784-1024-1024-10", (1024, 1024), 256),
    ("Ciresan 784-2500-2000-1500-1000-500-10", (2500, 2000, 1500, 1000, 500), 256),
]


def training_set(data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    if data_dir:
        ds = load_dataset("mnist", data_dir, download_ok=False, progress=False)
        return ds.x_train, ds.y_train
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (60_000, 784), dtype=np.uint8),
            rng.integers(0, 10, 60_000))


def digitnet_epochs(x: np.ndarray, y: np.ndarray, hidden: tuple[int, ...], batch: int,
                    epochs: int, device: str, engine: str) -> list[float]:
    config = TrainConfig(hidden=hidden, epochs=epochs, batch_size=batch, lr=1e-3,
                         schedule="constant", validation_fraction=0.0, device=device)
    net = MLP(x.shape[1], hidden, 10, seed=0)
    result = fit(net, x, y, MinMaxScaler.fit(x), config, engine=trainer_factory(engine))
    return [r.seconds for r in result.history]


def torch_epochs(x: np.ndarray, y: np.ndarray, hidden: tuple[int, ...], batch: int,
                 epochs: int, device: str) -> list[float]:
    import torch

    where = "cuda" if device == "gpu" else "cpu"
    torch.manual_seed(0)
    xt = torch.tensor(x).to(where).float().div_(255.0)  # the data set on the device once
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(where)
    model = compare._torch_mlp([x.shape[1], *hidden, 10]).to(where)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        perm = torch.randperm(len(xt), device=where)
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xt[idx]), yt[idx]).backward()
            opt.step()
        if where == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def median_after_warmup(times: list[float]) -> float:
    return statistics.median(times[1:]) if len(times) > 1 else times[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs (after one "
                        "warm-up epoch)")
    parser.add_argument("--networks", type=int, nargs="*", help="indices into NETWORKS")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.device == "gpu":
        devices.array_module("gpu")  # a missing CuPy or GPU: one line, before any work
    x, y = training_set(args.data_dir)
    with_torch = not args.no_torch and compare.torch_available()
    report: dict[str, Any] = {"device": args.device, "machine": _machine(args.device),
                              "networks": []}
    chosen = [NETWORKS[i] for i in args.networks] if args.networks else NETWORKS
    for name, hidden, batch in chosen:
        row: dict[str, Any] = {"network": name, "batch": batch}
        for engine in ("fast", "textbook"):
            times = digitnet_epochs(x, y, hidden, batch, args.epochs + 1, args.device, engine)
            row[f"digitnet_{engine}"] = median_after_warmup(times)
        if with_torch:
            times = torch_epochs(x, y, hidden, batch, args.epochs + 1, args.device)
            row["pytorch"] = median_after_warmup(times)
            row["ratio_fast"] = row["digitnet_fast"] / row["pytorch"]
            row["ratio_textbook"] = row["digitnet_textbook"] / row["pytorch"]
        report["networks"].append(row)
        print(f"{name} (batch {batch}): digitnet fast {row['digitnet_fast']:.2f} s, textbook "
              f"{row['digitnet_textbook']:.2f} s"
              + (f", PyTorch {row['pytorch']:.2f} s; ratio {row['ratio_fast']:.2f} "
                 f"(textbook {row['ratio_textbook']:.2f}; goal <= 1.5)" if with_torch else ""),
              flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    return 0


def _machine(device: str) -> dict[str, Any]:
    notes: dict[str, Any] = {}
    if device == "gpu":
        xp = devices.array_module("gpu")
        props = xp.cuda.runtime.getDeviceProperties(0)
        notes["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) \
            else str(props["name"])
        notes["cupy"] = xp.__version__
    try:
        import torch

        notes["torch"] = torch.__version__
    except ImportError:
        pass
    return notes


if __name__ == "__main__":
    sys.exit(main())
