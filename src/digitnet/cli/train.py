"""``digitnet train``: load data, train, evaluate on the test set, save model and metrics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from digitnet.cli import common
from digitnet.config import (
    ACTIVATION_NAMES,
    AUGMENTATIONS,
    DEVICES,
    DTYPE_NAMES,
    ENGINES,
    KEEP,
    OPTIMIZERS,
    PRESETS,
    RECIPES,
    SCHEDULES,
    TrainConfig,
    recipe,
)

DEFAULTS: dict[str, Any] = TrainConfig().to_dict()  # numpy-free: --help stays fast


def _default(name: str) -> str:
    """Help text for a default that depends on the data set."""
    digits = RECIPES["digits"].get(name)
    extra = f"; digits: {_show(digits)}" if digits is not None else ""
    return f"(default: {_show(DEFAULTS[name])}{extra})"


def _settings(settings: dict[str, Any]) -> str:
    return " ".join(f"--{k.replace('_', '-')} {_show(v)}" for k, v in settings.items())


def _show(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "train", help="train a network and evaluate it on the test set",
        description="Train a multi-layer perceptron, evaluate it on the test set, and save "
        "model.npz, metrics.json, figures and report.html into the run folder. Options left "
        "out take the data set's recipe (MNIST and Fashion-MNIST share one; digits has its own).",
    )
    common.add_data_arguments(p)
    p.add_argument("--preset", choices=list(PRESETS), help="a named recipe (tuned on MNIST; "
                   "options given beside it override it): " + "; ".join(
                       f"'{name}': {summary} ({_settings(settings)})"
                       for name, (summary, settings) in PRESETS.items()).replace("%", "%%"))
    arch = p.add_argument_group("network")
    arch.add_argument("--hidden", type=common.positive_int, nargs="+", metavar="UNITS",
                      help=f"hidden layer sizes, e.g. --hidden 128 64 {_default('hidden')}")
    arch.add_argument("--activation", choices=ACTIVATION_NAMES,
                      help=f"hidden-layer activation {_default('activation')}")
    arch.add_argument("--dtype", choices=DTYPE_NAMES, help=_default("dtype"))
    arch.add_argument("--init-scale", type=common.positive_float, metavar="S",
                      help="multiply every initial weight by S (experiments: 0.01 starves a "
                      f"sigmoid network, 10 kills ReLU units) {_default('init_scale')}")
    opt = p.add_argument_group("optimization")
    opt.add_argument("--epochs", type=common.positive_int, help=_default("epochs"))
    opt.add_argument("--batch-size", type=common.positive_int,
                     help="1 = stochastic GD; >= training-set size = full-batch GD "
                     + _default("batch_size"))
    opt.add_argument("--lr", type=common.positive_float,
                     help=f"(peak) learning rate {_default('lr')}")
    opt.add_argument("--optimizer", choices=OPTIMIZERS,
                     help=_default("optimizer"))
    opt.add_argument("--momentum", type=common.fraction,
                     help=f"coefficient for --optimizer momentum/nesterov {_default('momentum')}")
    opt.add_argument("--weight-decay", type=common.non_negative_float,
                     help=f"L2 penalty on the weights {_default('weight_decay')}")
    opt.add_argument("--schedule", choices=SCHEDULES,
                     help=f"learning-rate schedule {_default('schedule')}")
    opt.add_argument("--warmup-epochs", type=common.non_negative_float,
                     help=f"linear warm-up (cosine schedule) {_default('warmup_epochs')}")
    reg = p.add_argument_group("regularization (all off by default)")
    reg.add_argument("--dropout", type=common.fraction, metavar="P",
                     help="inverted dropout after each hidden layer, with probability P "
                     f"{_default('dropout')}")
    reg.add_argument("--input-dropout", type=common.fraction, metavar="P",
                     help=f"dropout on the input pixels {_default('input_dropout')}")
    reg.add_argument("--label-smoothing", type=common.fraction, metavar="EPS",
                     help="train towards (1 - EPS) one-hot + EPS / classes "
                     f"{_default('label_smoothing')}")
    reg.add_argument("--max-norm", type=common.non_negative_float, metavar="C",
                     help="keep each unit's incoming weight vector within norm C (0: off) "
                     f"{_default('max_norm')}")
    reg.add_argument("--augment", choices=AUGMENTATIONS,
                     help="train every epoch on fresh random distortions of the training "
                     "images: 'affine' (shifts, rotations, scaling, shear) or 'elastic' (the "
                     f"same plus elastic distortions) {_default('augment')}")
    reg.add_argument("--ema", type=common.fraction, metavar="DECAY",
                     help="validate and save an exponential moving average of the weights "
                     f"(e.g. 0.999; 0: off) {_default('ema')}")
    val = p.add_argument_group("validation and reproducibility")
    val.add_argument("--validation-fraction", type=common.fraction,
                     help="share of the training set held out (stratified) for validation "
                     "and early stopping (default: 1/12)")
    val.add_argument("--patience", type=common.non_negative_int,
                     help="stop after this many epochs without a better validation loss "
                     "(0 = never stop early; the best epoch's weights are kept either way) "
                     + _default("patience"))
    val.add_argument("--keep", choices=KEEP,
                     help="which epoch's weights to keep: 'best' (lowest validation loss) or "
                     f"'last' (for a schedule meant to run to its end) {_default('keep')}")
    val.add_argument("--seed", type=int, help=_default("seed"))
    val.add_argument("--engine", choices=ENGINES, default="fast",
                     help="how the training step runs: 'fast' (digitnet.engine: flat "
                     "parameter vectors, large layers split over two processes when that pays) "
                     "or 'textbook' (digitnet.training's plain step, easiest to follow) "
                     "(default: fast)")
    val.add_argument("--device", choices=DEVICES,
                     help="where the arithmetic runs: 'cpu' (NumPy) or 'gpu' (the same code on "
                     "CuPy arrays; needs pip install 'digitnet[gpu]' and a CUDA GPU; the saved "
                     f"model is the same .npz either way) {_default('device')}")
    out = p.add_argument_group("output")
    out.add_argument("--out", metavar="DIR",
                     help="run folder for model.npz and metrics.json (default: runs/<time>)")
    out.add_argument("--resume", metavar="RUN_DIR",
                     help="continue the run in RUN_DIR from its last checkpoint (written at "
                     "the end of every epoch), with its own data set and settings; ends with "
                     "the weights the uninterrupted run would have")
    out.add_argument("--force", action="store_true",
                     help="replace the run already in --out (refused otherwise)")
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    out.add_argument("--no-plots", action="store_true",
                     help="skip the figures and report.html (draw them later with "
                     "`digitnet report RUN_DIR`)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from digitnet.runs import claim_run_dir, default_run_dir

    given = {name: getattr(args, name) for name in DEFAULTS if getattr(args, name) is not None}
    if args.resume:
        return _resume(args, given)
    config = recipe(args.dataset, args.preset, **given)
    out_dir = args.out or str(default_run_dir(args.dataset))
    with claim_run_dir(out_dir, force=args.force):  # checked before any work, held throughout
        return _train(args, config, out_dir)


def _resume(args: argparse.Namespace, given: dict[str, Any]) -> int:
    from digitnet.errors import DigitnetError
    from digitnet.runs import claim_run_dir, load_checkpoint

    options = sorted(f"--{name.replace('_', '-')}" for name in given)
    if args.preset:
        options.append("--preset")
    if options or args.out or args.engine != "fast" or args.force:
        extra = options + [o for o, on in (("--out", args.out), ("--force", args.force),
                                           ("--engine", args.engine != "fast")) if on]
        raise DigitnetError(f"--resume continues the run with its own settings; leave out "
                            f"{', '.join(extra)}")
    with claim_run_dir(args.resume, force=True):
        _, about = load_checkpoint(args.resume)
        try:
            config = TrainConfig(**about["config"])
            args.dataset, args.engine = about["dataset"], about["engine"]
        except (KeyError, TypeError, ValueError) as exc:
            raise DigitnetError(f"{args.resume}: checkpoint settings unreadable ({exc})"
                                ) from None
        return _train(args, config, args.resume, resume=True)


def _train(args: argparse.Namespace, config: TrainConfig, out_dir: str,
           resume: bool = False) -> int:
    from digitnet.errors import TrainingDivergedError
    from digitnet.experiment import train_run
    from digitnet.metrics import classification_report, format_confusion_matrix
    from digitnet.runs import METRICS_FILE, MODEL_FILE

    if config.device != "cpu":  # a missing CuPy or GPU is said before any work
        from digitnet.devices import array_module

        array_module(config.device)
    dataset = common.load_data(args)
    try:
        outcome = train_run(dataset, config, out_dir, progress=common.progress_enabled(args),
                            log=common.info, engine=args.engine, resume=resume)
    except TrainingDivergedError as exc:
        raise TrainingDivergedError(exc.reason, hint="a lower --lr") from None
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
    if not args.no_plots:  # drawn after training, so plotting never slows it down
        import time

        from digitnet.report import write_report

        started = time.perf_counter()
        page = write_report(out_dir, outcome.model, m, dataset, outcome.test_proba)
        common.info(f"drew the figures in {time.perf_counter() - started:.1f}s")
        print(f"report: {page}")
    elif args.force:  # a replaced run's figures would no longer match its model
        from digitnet.report import FIGURE_FILES, OPTIONAL_FIGURE_FILES
        from digitnet.runs import REPORT_FILE, ROBUSTNESS_FILE

        for name in (*FIGURE_FILES, *OPTIONAL_FIGURE_FILES, ROBUSTNESS_FILE, REPORT_FILE):
            Path(out_dir, name).unlink(missing_ok=True)
    if m["diverged"]:  # the best epoch before it was saved; still a failed run
        print(f"digitnet train: error: {m['diverged']}; saved the model of epoch "
              f"{m['best_epoch']}, before it; try a lower --lr", file=sys.stderr)
        return 1
    return 0
