"""Does batch normalization earn its place? A trial on the validation split (issue 14).

Run from the repository root (minutes; the test set is never touched)::

    python -m benchmarks.batchnorm --data-dir ../shared/data/mnist --json bn.json

Batch normalization (Ioffe & Szegedy 2015) after every hidden Dense layer, before its
activation: each unit's pre-activation is standardized over the mini-batch and then scaled
and shifted by two learned parameters per unit::

    mu = mean_i z_i,  var = mean_i (z_i - mu)^2,  x̂ = (z - mu) / sqrt(var + eps)
    out = gamma * x̂ + beta

    dL/dgamma = sum_i dout_i * x̂_i,  dL/dbeta = sum_i dout_i
    dL/dz = gamma / sqrt(var + eps) * (dout - mean_i dout_i - x̂ * mean_i (dout_i * x̂_i))

At inference it uses running averages of ``mu`` and ``var`` (momentum 0.9). The layer lives
here, not in :mod:`digitnet.layers`, until it earns its place: the trial trains the same
recipe with and without it (textbook trainer, same seeds) and reports the validation
accuracy of the last epoch. Its gradient is checked against finite differences in the tests.

Measured (2026-12-01, 2-core AMD EPYC): the MNIST default recipe (no weight average), seeds
0-1, 98.78 % mean validation accuracy with and without; ``--preset best --epochs 20``, seed 0,
99.18 % without, 98.98 % with. It did not earn its place.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet.config import TrainConfig, recipe
from digitnet.data import MinMaxScaler, load_dataset
from digitnet.experiment import split_for_training
from digitnet.layers import ActivationLayer, Dense
from digitnet.network import DTYPES, MLP
from digitnet.training import fit

Array = NDArray[np.floating]


class BatchNorm:
    """Batch normalization of ``d`` units (the docstring above has the formulas)."""

    def __init__(self, d: int, dtype: Any, eps: float = 1e-5, momentum: float = 0.9) -> None:
        self.gamma, self.beta = np.ones(d, dtype=dtype), np.zeros(d, dtype=dtype)
        self.grad_gamma, self.grad_beta = np.zeros_like(self.gamma), np.zeros_like(self.beta)
        self.running_mean, self.running_var = np.zeros(d, dtype=dtype), np.ones(d, dtype=dtype)
        self.eps, self.momentum = eps, momentum
        self.training = False
        self._xhat: Array | None = None
        self._inv_std: Array | None = None

    def forward(self, z: Array) -> Array:
        if self.training:
            mu, var = z.mean(axis=0), z.var(axis=0)
            m = self.momentum
            self.running_mean = m * self.running_mean + (1 - m) * mu
            self.running_var = m * self.running_var + (1 - m) * var
        else:
            mu, var = self.running_mean, self.running_var
        inv_std = 1.0 / np.sqrt(var + self.eps)
        xhat = (z - mu) * inv_std
        self._xhat, self._inv_std = xhat, inv_std
        return self.gamma * xhat + self.beta

    def backward(self, dout: Array) -> Array:
        assert self._xhat is not None and self._inv_std is not None
        xhat = self._xhat
        self.grad_gamma[...] = (dout * xhat).sum(axis=0)
        self.grad_beta[...] = dout.sum(axis=0)
        dxhat = dout * self.gamma
        return self._inv_std * (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0))


class BatchNormMLP(MLP):
    """:class:`digitnet.network.MLP` with :class:`BatchNorm` after every hidden Dense layer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.norms: list[BatchNorm] = []
        layers: list[Any] = []
        for layer in self.layers:
            layers.append(layer)
            if isinstance(layer, Dense) and layer is not self.dense[-1]:
                self.norms.append(BatchNorm(layer.W.shape[1], DTYPES[self.dtype]))
                layers.append(self.norms[-1])
        assert all(isinstance(a, ActivationLayer) for a in layers[2::3][:len(self.norms)])
        self.layers = layers

    def loss_and_gradients(self, x: Array, targets: Any) -> tuple[float, int]:
        for norm in self.norms:
            norm.training = True
        try:
            return super().loss_and_gradients(x, targets)
        finally:
            for norm in self.norms:
                norm.training = False

    def parameters(self) -> list[Array]:
        return [*super().parameters(), *(p for n in self.norms for p in (n.gamma, n.beta))]

    def gradients(self) -> list[Array]:
        return [*super().gradients(),
                *(g for n in self.norms for g in (n.grad_gamma, n.grad_beta))]

    def decayed(self) -> list[bool]:
        return [*super().decayed(), *([False, False] * len(self.norms))]


def trial(ds: Any, config: TrainConfig, batch_norm: bool) -> dict[str, Any]:
    scaler = MinMaxScaler.fit(ds.x_train)
    x_tr, y_tr, x_val, y_val = split_for_training(ds, config)
    kind = BatchNormMLP if batch_norm else MLP
    net = kind(ds.n_features, config.hidden, ds.n_classes, config.activation, config.dtype,
               config.seed)
    started = time.perf_counter()
    result = fit(net, x_tr, y_tr, scaler, config, x_val, y_val)  # the textbook trainer
    last = result.history[-1]
    return {"batch_norm": batch_norm, "seed": config.seed, "epochs": config.epochs,
            "val_accuracy": last.val_accuracy, "val_loss": last.val_loss,
            "curve": [r.val_accuracy for r in result.history],
            "seconds": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--preset", help="a preset's recipe instead of MNIST's default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, help="instead of the recipe's")
    parser.add_argument("--hidden", type=int, nargs="+", help="instead of the recipe's")
    parser.add_argument("--lr", type=float, help="instead of the recipe's")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    ds = load_dataset("mnist", args.data_dir, progress=False)
    overrides: dict[str, Any] = {"ema": 0.0}  # a weight average would not average BN's statistics
    for name in ("epochs", "lr"):
        if getattr(args, name):
            overrides[name] = getattr(args, name)
    if args.hidden:
        overrides["hidden"] = tuple(args.hidden)
    rows = []
    for seed in args.seeds:
        for batch_norm in (False, True):
            config = recipe("mnist", args.preset, seed=seed, **overrides)
            row = trial(ds, config, batch_norm)
            rows.append(row)
            print(f"seed {seed} batch norm {'on ' if batch_norm else 'off'}: validation "
                  f"{row['val_accuracy']:.4f} (loss {row['val_loss']:.4f}) in "
                  f"{row['seconds']:.0f} s; per epoch {row['curve']}", flush=True)
    for batch_norm in (False, True):
        accs = [r["val_accuracy"] for r in rows if r["batch_norm"] == batch_norm]
        print(f"batch norm {'on ' if batch_norm else 'off'}: mean validation accuracy "
              f"{np.mean(accs):.4f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            settings = {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}
            json.dump({"preset": args.preset, "overrides": settings, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
