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
    damage = p.add_argument_group("robustness: damage the test images first")
    damage.add_argument("--noise", type=common.non_negative_float, default=0.0, metavar="S",
                        help="add Gaussian noise of standard deviation S (pixels 0-1)")
    damage.add_argument("--rotation", type=float, default=0.0, metavar="DEG",
                        help="rotate by DEG degrees")
    damage.add_argument("--thickness", type=int, default=0, metavar="PX",
                        help="make strokes PX pixels thicker (negative: thinner)")
    p.add_argument("--threshold", type=common.probability, metavar="P",
                   help="answer only when the top probability is at least P (else 'don't "
                   "know'): report the coverage and the accuracy on the answered images")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from digitnet.experiment import evaluate_model
    from digitnet.metrics import classification_report, format_confusion_matrix
    from digitnet.model_io import load_model

    model = load_model(args.model)
    if args.dataset is None:
        args.dataset = model.dataset if model.dataset in common.DATASETS else "mnist"
    dataset = common.load_data(args)
    damaged = bool(args.noise or args.rotation or args.thickness)
    if damaged:
        from digitnet.robustness import damage_dataset

        dataset = damage_dataset(dataset, model.scaler, noise=args.noise,
                                 rotation=args.rotation, thickness=args.thickness)
    proba = np.empty((len(dataset.x_test), len(model.class_names)), np.float64)
    metrics = evaluate_model(model, dataset, proba)
    metrics["damage"] = {"noise": args.noise, "rotation": args.rotation,
                         "thickness": args.thickness}
    if args.threshold is not None:
        from digitnet.robustness import coverage_accuracy

        metrics["abstention"] = coverage_accuracy(proba, dataset.y_test, [args.threshold])[0]
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    print(f"{args.model}: {model.network.describe()} on {dataset.name} "
          f"({metrics['n_samples']} test images)")
    print(classification_report(metrics))
    print()
    print(format_confusion_matrix(metrics["confusion_matrix"], metrics["class_names"]))
    print()
    extra = ""
    if damaged:
        extra = (f"  (damaged: noise {args.noise:g}, rotation {args.rotation:g} deg, "
                 f"thickness {args.thickness:+d} px)")
    print(f"test accuracy {metrics['test_accuracy']:.4f}  macro F1 {metrics['f1_macro']:.4f}"
          + extra)
    if args.threshold is not None:
        a = metrics["abstention"]
        answered = "n/a" if a["accuracy"] is None else f"{a['accuracy']:.4f}"
        print(f"with threshold {args.threshold:g}: answers {a['coverage']:.1%} of the images, "
              f"accuracy on those {answered}; says \"don't know\" to the rest")
    return 0
