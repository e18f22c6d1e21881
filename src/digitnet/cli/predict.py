"""``digitnet predict``: classify image files (PNG, JPEG, BMP, GIF) with a saved model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digitnet.cli import common
from digitnet.errors import DigitnetError

if TYPE_CHECKING:
    from digitnet.predict import Prediction

# Grey ramp for --show, from background to full ink.
_RAMP = " .:-=+*#%@"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "predict", help="classify your own images of digits",
        description="Predict the digit in each image. Images may be any size and PNG, JPEG, BMP "
        "or GIF; dark ink on light paper or light on dark; with or without transparency. Each "
        "is preprocessed the way MNIST was made (polarity, crop, scale into a 20x20 box, centre "
        "of mass at the centre of 28x28) before the network sees it. Exit status: 0 if every "
        "image was classified, 1 if some could not be read (the others are still printed), "
        "2 for a usage error.",
    )
    p.add_argument("--model", required=True, metavar="PATH", help="model.npz (or its run folder)")
    p.add_argument("--top", type=common.positive_int, default=1, metavar="K",
                   help="show the K most probable classes (default: 1)")
    p.add_argument("--json", action="store_true",
                   help="print JSON: per image the prediction, the top K and all probabilities")
    p.add_argument("--show", action="store_true",
                   help="also draw the preprocessed image the network sees, as text")
    p.add_argument("--explain", action="store_true",
                   help="also write IMAGE.explain.png beside each image: what the network "
                   "saw, the saliency maps of its answer and of the runner-up (which pixels "
                   "push towards each), and which hidden units fired")
    p.add_argument("--threshold", type=common.probability, metavar="P",
                   help="answer only when the top probability is at least P; below, the "
                   "answer is \"don't know\" (with the best guess)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.set_defaults(run=run)


def format_line(pred: Prediction, k: int) -> str:
    """``digit.png: 7 (98.2%)``, or with ``k > 1`` the top ``k`` separated by commas."""
    return f"{pred.source}: " + ", ".join(f"{name} ({p:.1%})" for name, p in pred.top(k))


def ascii_art(pred: Prediction) -> str:
    """The network's input drawn with characters, one per pixel, doubled horizontally."""
    levels = (pred.network_input * (len(_RAMP) - 1) + 0.5).astype(int)
    return "\n".join("".join(_RAMP[v] * 2 for v in row).rstrip() for row in levels)


def run(args: argparse.Namespace) -> int:
    import json

    from digitnet.imageprep import ImageInputError
    from digitnet.predict import load_predictor, predict_file

    model = load_predictor(args.model)
    n_classes = len(model.class_names)
    if args.top > n_classes:
        raise ValueError(f"--top {args.top}: the model has only {n_classes} classes")

    records: list[dict[str, Any]] = []
    n_failed = 0
    for path in args.images:
        try:
            pred = predict_file(model, path)
        except ImageInputError as exc:
            n_failed += 1
            print(f"digitnet predict: error: {exc}", file=sys.stderr, flush=True)
            records.append({"file": path, "error": str(exc)})
            continue
        picture = _write_explanation(model, pred, path) if args.explain else None
        unsure = args.threshold is not None and pred.probability < args.threshold
        if args.json:
            record = pred.to_dict(args.top)
            if args.threshold is not None:
                record["answer"] = None if unsure else pred.name
            if picture is not None:
                record["explanation"] = str(picture)
            if args.show:
                record["network_input"] = pred.input_pixels().tolist()
            records.append(record)
        else:
            if unsure:
                print(f"{pred.source}: don't know (best guess {pred.name}, "
                      f"{pred.probability:.1%}, under the threshold {args.threshold})",
                      flush=True)
            else:
                print(format_line(pred, args.top), flush=True)
            if args.show:
                print(ascii_art(pred))
            if picture is not None:
                print(f"  explanation: {picture}")
    if args.json:
        print(json.dumps(records, indent=2))
    return 1 if n_failed else 0


def _write_explanation(model: Any, pred: Prediction, image_path: str) -> Path:
    """``IMAGE.explain.png`` beside the image (atomically)."""
    from digitnet import plots
    from digitnet.fileio import atomic_write_bytes
    from digitnet.predict import explain_prediction

    e = explain_prediction(model, pred)
    names = model.class_names
    figure = plots.explanation(pred.network_input, e.saliency, e.runner_up_saliency,
                               e.hidden[0], names[e.predicted], names[e.runner_up],
                               (float(e.probabilities[e.predicted]),
                                float(e.probabilities[e.runner_up])))
    target = Path(image_path).with_name(Path(image_path).name + ".explain.png")
    try:
        atomic_write_bytes(target, plots.save_png(figure))
    except OSError as exc:
        raise DigitnetError(f"{target}: cannot write the explanation ({exc.strerror or exc})"
                            ) from None
    return target
