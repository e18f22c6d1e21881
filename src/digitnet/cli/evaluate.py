"""``digitnet evaluate``: reload a saved model and report its test-set metrics."""

from __future__ import annotations

import argparse
from typing import Any

from digitnet.cli import common


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "evaluate", help="evaluate a saved model on the test set",
        description="Reload model.npz and report accuracy, precision, recall, F1 and the "
        "confusion matrix on the test set of the data set it was trained on.",
    )
    p.add_argument("--model", required=True, metavar="PATH", help="model.npz (or its run folder)")
    common.add_data_arguments(p, for_model=True)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from digitnet.experiment import evaluate_model
    from digitnet.metrics import classification_report, format_confusion_matrix
    from digitnet.model_io import load_model

    model = load_model(args.model)
    if args.dataset is None:
        args.dataset = model.dataset if model.dataset in common.DATASETS else "mnist"
    dataset = common.load_data(args)
    metrics = evaluate_model(model, dataset)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    print(f"{args.model}: {model.network.describe()} on {dataset.name} "
          f"({metrics['n_samples']} test images)")
    print(classification_report(metrics))
    print()
    print(format_confusion_matrix(metrics["confusion_matrix"], metrics["class_names"]))
    print()
    print(f"test accuracy {metrics['test_accuracy']:.4f}  macro F1 {metrics['f1_macro']:.4f}")
    return 0
