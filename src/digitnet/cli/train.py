"""``digitnet train``: load data, train, evaluate on the test set, save model and metrics."""

from __future__ import annotations

import argparse
from typing import Any

from digitnet.cli import common

DEFAULTS: dict[str, Any] = {
    # Mirrors digitnet.training.TrainConfig; kept here so --help needs no NumPy import.
    "hidden": [256, 128], "activation": "relu", "epochs": 12, "batch_size": 128,
    "lr": 2e-3, "optimizer": "adam", "momentum": 0.9, "weight_decay": 0.0,
    "schedule": "onecycle", "warmup_epochs": 0.0, "validation_fraction": 1 / 12,
    "patience": 0, "seed": 0, "dtype": "float32",
}


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "train", help="train a network and evaluate it on the test set",
        description="Train a multi-layer perceptron, evaluate it on the test set, and save "
        "model.npz and metrics.json into the run folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    common.add_data_arguments(p)
    arch = p.add_argument_group("network")
    arch.add_argument("--hidden", type=common.positive_int, nargs="+", metavar="UNITS",
                      default=DEFAULTS["hidden"], help="hidden layer sizes, e.g. --hidden 128 64")
    arch.add_argument("--activation", choices=["relu", "leaky_relu", "sigmoid", "tanh"],
                      default=DEFAULTS["activation"], help="hidden-layer activation")
    arch.add_argument("--dtype", choices=["float32", "float64"], default=DEFAULTS["dtype"])
    opt = p.add_argument_group("optimization")
    opt.add_argument("--epochs", type=common.positive_int, default=DEFAULTS["epochs"])
    opt.add_argument("--batch-size", type=common.positive_int, default=DEFAULTS["batch_size"],
                     help="1 = stochastic GD; >= training-set size = full-batch GD")
    opt.add_argument("--lr", type=common.positive_float, default=DEFAULTS["lr"],
                     help="(peak) learning rate")
    opt.add_argument("--optimizer", choices=["sgd", "momentum", "nesterov", "adam"],
                     default=DEFAULTS["optimizer"])
    opt.add_argument("--momentum", type=common.fraction, default=DEFAULTS["momentum"],
                     help="momentum coefficient for --optimizer momentum/nesterov")
    opt.add_argument("--weight-decay", type=common.non_negative_float,
                     default=DEFAULTS["weight_decay"], help="L2 penalty on the weights")
    opt.add_argument("--schedule", choices=["constant", "step", "cosine", "onecycle"],
                     default=DEFAULTS["schedule"], help="learning-rate schedule")
    opt.add_argument("--warmup-epochs", type=common.non_negative_float,
                     default=DEFAULTS["warmup_epochs"], help="linear warm-up (cosine schedule)")
    val = p.add_argument_group("validation and reproducibility")
    val.add_argument("--validation-fraction", type=common.fraction,
                     default=DEFAULTS["validation_fraction"],
                     help="share of the training set held out (stratified) for validation")
    val.add_argument("--patience", type=common.non_negative_int, default=DEFAULTS["patience"],
                     help="stop after this many epochs without a better validation loss "
                     "(0 = never stop early; the best epoch's weights are kept either way)")
    val.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    out = p.add_argument_group("output")
    out.add_argument("--out", metavar="DIR",
                     help="run folder for model.npz and metrics.json (default: runs/<time>)")
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def default_run_dir(dataset: str) -> str:
    import time
    from pathlib import Path

    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{stamp}-{dataset}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return str(candidate)


def run(args: argparse.Namespace) -> int:
    from digitnet.experiment import METRICS_FILE, MODEL_FILE, train_run
    from digitnet.metrics import classification_report, format_confusion_matrix
    from digitnet.training import TrainConfig

    config = TrainConfig(
        hidden=tuple(args.hidden), activation=args.activation, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule,
        warmup_epochs=args.warmup_epochs, validation_fraction=args.validation_fraction,
        patience=args.patience, seed=args.seed, dtype=args.dtype,
    )
    dataset = common.load_data(args)
    out_dir = args.out or default_run_dir(dataset.name)
    outcome = train_run(dataset, config, out_dir, progress=common.progress_enabled(args),
                        log=common.info)
    m = outcome.metrics
    print()
    print(f"Test set ({m['n_samples']} images) — classification report")
    print(classification_report(m))
    print()
    print("Confusion matrix (rows = true class, columns = predicted)")
    print(format_confusion_matrix(m["confusion_matrix"], m["class_names"]))
    print()
    status = " (interrupted)" if m["interrupted"] else ""
    print(f"test accuracy {m['test_accuracy']:.4f}  macro F1 {m['f1_macro']:.4f}  "
          f"training {m['train_seconds']:.1f}s for {m['epochs_run']} epochs{status}")
    print(f"saved {out_dir}/{MODEL_FILE} and {out_dir}/{METRICS_FILE}")
    return 0
