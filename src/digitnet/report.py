"""The pictures and the page a training run leaves behind in its run folder.

:func:`write_report` draws every figure of :mod:`digitnet.plots` for a trained model,
writes each as a PNG into the run folder and gathers them, with the configuration and the
metrics of ``metrics.json``, into ``report.html``: one self-contained page (the PNGs are
embedded as ``data:`` URIs and linked to the files beside it) that opens from disk in any
browser. :func:`load_run` reads a run folder back, so ``digitnet report RUN_DIR`` can
redraw everything later.

Everything here runs after training, never during it.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from digitnet import __version__, plots
from digitnet.config import is_finite_number, is_int
from digitnet.data.datasets import Dataset
from digitnet.errors import DigitnetError
from digitnet.fileio import atomic_write_bytes, atomic_write_text
from digitnet.metrics import classification_report
from digitnet.model_io import TrainedModel, load_model
from digitnet.runs import METRICS_FILE, MODEL_FILE, REPORT_FILE

TEMPLATE = "templates/report.html.j2"

GALLERY_SIZE = 25
SAMPLES_PER_CLASS = 10
MAX_WEIGHT_TILES = 64

REQUIRED_METRICS = (
    "test_accuracy", "test_loss", "n_samples", "class_names", "per_class", "confusion_matrix",
    "precision_macro", "precision_weighted", "recall_macro", "recall_weighted",
    "f1_macro", "f1_weighted",
)


class ReportError(DigitnetError):
    """A run folder cannot be reported on (missing or inconsistent files)."""


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the report: its file name, heading and a sentence on how to read it."""

    filename: str
    title: str
    caption: str


FIGURES = (
    FigureSpec("learning_curves.png", "Learning curves",
               "Loss and accuracy per epoch on the training set (averaged over the epoch's "
               "mini-batches) and on the held-out validation set (after the epoch)."),
    FigureSpec("confusion_matrix.png", "Confusion matrix",
               "Rows are the true class, columns the prediction: the diagonal holds the "
               "correct answers, every other cell one kind of mistake."),
    FigureSpec("per_class_metrics.png", "Precision, recall and F1 per class",
               "Precision: of the images predicted as the class, the share that are. Recall: "
               "of the images of the class, the share found. F1: their harmonic mean."),
    FigureSpec("misclassified.png", "Most confident mistakes",
               "Misclassified test images, the ones the network was surest about first."),
    FigureSpec("first_layer_weights.png", "What the first hidden layer looks for",
               "Each tile is one hidden unit's incoming weights, laid out as an image: red "
               "pixels excite the unit, blue pixels inhibit it."),
    FigureSpec("training_samples.png", "What the data looks like",
               "Random training images with their labels, one row per class."),
)
FIGURE_FILES = tuple(spec.filename for spec in FIGURES)


# ----------------------------------------------------------------------- formatting
def format_score(value: float) -> str:
    """How the page prints a metric in [0, 1] (and the loss): four decimals, as the text report."""
    return f"{float(value):.4f}"


def format_percent(value: float) -> str:
    """A fraction as a percentage with two decimals: ``0.98123`` -> ``"98.12 %"``."""
    return f"{100 * float(value):.2f} %"


def _format_setting(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "-"}[value]
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return "-".join(map(str, value)) if all(isinstance(v, int) for v in value) else str(value)
    return str(value)


# ------------------------------------------------------------------------ selection
def most_confident_mistakes(
    proba: NDArray[np.floating], y_true: NDArray[np.integer], limit: int
) -> NDArray[np.intp]:
    """Indices of up to ``limit`` misclassified samples, highest predicted probability first.

    ``proba`` is ``(n, K)``; a sample is misclassified when ``argmax proba[i] != y_true[i]``,
    and its confidence is ``max proba[i]``. Ties keep the data set's order.
    """
    proba = np.asarray(proba)
    predicted = proba.argmax(axis=1)
    confidence = proba.max(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(y_true))
    order = np.argsort(-confidence[wrong], kind="stable")
    return wrong[order][:limit]


def samples_per_class(
    labels: NDArray[np.integer], per_class: int, seed: int = 0
) -> NDArray[np.intp]:
    """Indices of up to ``per_class`` random samples of each class, grouped by class (seeded)."""
    labels = np.asarray(labels)
    shuffled = np.random.default_rng(seed).permutation(len(labels))
    parts = [shuffled[labels[shuffled] == c][:per_class] for c in np.unique(labels)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.intp)


# ------------------------------------------------------------------------- run files
SCORES = ("test_accuracy", "precision_macro", "precision_weighted", "recall_macro",
          "recall_weighted", "f1_macro", "f1_weighted")
HISTORY_NUMBERS = ("train_loss", "train_accuracy", "lr", "seconds")
OPTIONAL_NUMBERS = ("train_seconds",)
OPTIONAL_COUNTS = ("epochs_run", "best_epoch", "n_parameters")


def check_metrics(metrics: Mapping[str, Any], source: str = METRICS_FILE) -> None:
    """Raise :class:`ReportError` unless ``metrics`` has what the report shows, each of the
    type and shape the report needs (a hand-edited or damaged file gets one line naming the
    file and the field, never a traceback from deep inside the drawing)."""
    missing = [key for key in REQUIRED_METRICS if key not in metrics]
    if missing:
        raise ReportError(f"{source}: not a digitnet metrics file (lacks {', '.join(missing)})")

    def bad(field: str, expected: str) -> ReportError:
        return ReportError(f"{source}: {field} should be {expected}")

    for key in SCORES:
        if not (is_finite_number(metrics[key]) and 0 <= metrics[key] <= 1):
            raise bad(key, "a number between 0 and 1")
    if not is_finite_number(metrics["test_loss"]) or metrics["test_loss"] < 0:
        raise bad("test_loss", "a number >= 0")
    if not is_int(metrics["n_samples"], 0):
        raise bad("n_samples", "a count")
    names = metrics["class_names"]
    if not (isinstance(names, list) and len(names) >= 2
            and all(isinstance(n, str) for n in names)):
        raise bad("class_names", "a list of at least two names")
    k = len(names)
    cm = metrics["confusion_matrix"]
    if not (isinstance(cm, list) and len(cm) == k and all(
            isinstance(row, list) and len(row) == k and all(is_int(c, 0) for c in row)
            for row in cm)):
        raise bad("confusion_matrix", f"a {k} x {k} table of counts")
    per_class = metrics["per_class"]
    if not (isinstance(per_class, dict) and list(per_class) == names and all(
            isinstance(row, dict) and all(is_finite_number(row.get(f)) for f in
                                          ("precision", "recall", "f1"))
            and is_int(row.get("support"), 0) for row in per_class.values())):
        raise bad("per_class", "precision, recall, f1 and support for each class")
    for key in OPTIONAL_NUMBERS:
        if key in metrics and not (is_finite_number(metrics[key]) and metrics[key] >= 0):
            raise bad(key, "a number >= 0")
    for key in OPTIONAL_COUNTS:
        if metrics.get(key) is not None and not is_int(metrics[key], 0):
            raise bad(key, "a count")
    history = metrics.get("history", [])
    if not isinstance(history, list) or not all(
            isinstance(r, dict) and is_int(r.get("epoch"), 0)
            and all(is_finite_number(r.get(f)) for f in HISTORY_NUMBERS)
            and all(r.get(f) is None or is_finite_number(r[f])
                    for f in ("val_loss", "val_accuracy"))
            for r in history):
        raise bad("history", "a list of epochs (epoch, train_loss, train_accuracy, lr, "
                  "seconds, val_loss and val_accuracy numbers or null)")
    for key in ("config", "dataset", "environment"):
        if metrics.get(key) is not None and not isinstance(metrics[key], dict):
            raise bad(key, "an object")


def load_run(run_dir: str | os.PathLike[str]) -> tuple[TrainedModel, dict[str, Any]]:
    """The model and metrics saved in a run folder by ``digitnet train``."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise ReportError(f"{folder}: run folder not found (expected a folder with "
                          f"{MODEL_FILE} and {METRICS_FILE} written by `digitnet train`)")
    metrics_path = folder / METRICS_FILE
    if not metrics_path.is_file():
        raise ReportError(f"{metrics_path}: not found; is {folder} a `digitnet train` run folder?")
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{metrics_path}: not readable JSON ({exc})") from None
    if not isinstance(metrics, dict):
        raise ReportError(f"{metrics_path}: expected a JSON object")
    check_metrics(metrics, str(metrics_path))
    return load_model(folder / MODEL_FILE), metrics


def _check_consistent(model: TrainedModel, metrics: Mapping[str, Any], dataset: Dataset) -> None:
    if dataset.n_features != model.network.n_inputs:
        raise ReportError(f"the model (trained on {model.dataset!r}) expects "
                          f"{model.network.n_inputs} features but data set {dataset.name!r} "
                          f"has {dataset.n_features}")
    if list(dataset.class_names) != list(model.class_names):
        raise ReportError(f"the model's classes ({', '.join(model.class_names)}) differ from "
                          f"data set {dataset.name!r}'s ({', '.join(dataset.class_names)})")
    if list(metrics["class_names"]) != list(model.class_names):
        raise ReportError("the metrics and the model name different classes")
    if int(metrics["n_samples"]) != len(dataset.y_test):
        raise ReportError(f"the metrics were computed on {metrics['n_samples']} test images "
                          f"but data set {dataset.name!r} has {len(dataset.y_test)}")


# --------------------------------------------------------------------------- figures
def draw_figures(
    model: TrainedModel, metrics: Mapping[str, Any], dataset: Dataset,
    test_proba: NDArray[np.floating] | None = None,
) -> dict[str, Figure]:
    """Every figure of the report, as ``{filename: matplotlib Figure}`` in :data:`FIGURES` order.

    The gallery of mistakes needs the test set's class probabilities: ``test_proba`` when
    given (``train_run`` has them already), else the test set is predicted here. Everything
    else comes from ``metrics`` and the model's weights.
    """
    value_range = (model.scaler.lo, model.scaler.hi)
    class_names = list(model.class_names)
    proba = model.predict_proba(dataset.x_test) if test_proba is None else test_proba
    wrong = most_confident_mistakes(proba, dataset.y_test, GALLERY_SIZE)
    n_errors = int(np.count_nonzero(proba.argmax(axis=1) != dataset.y_test))
    samples = samples_per_class(dataset.y_train, SAMPLES_PER_CLASS, seed=0)
    figures = {
        "learning_curves.png": plots.learning_curves(
            metrics.get("history", []), metrics.get("best_epoch")),
        "confusion_matrix.png": plots.confusion_matrix(metrics["confusion_matrix"], class_names),
        "per_class_metrics.png": plots.per_class_scores(metrics["per_class"]),
        "misclassified.png": plots.misclassified_gallery(
            dataset.x_test[wrong], dataset.y_test[wrong], proba[wrong].argmax(axis=1),
            proba[wrong].max(axis=1), class_names, dataset.image_shape,
            n_errors=n_errors, n_total=len(dataset.y_test), value_range=value_range),
        "first_layer_weights.png": plots.weight_tiles(
            model.network.dense[0].W, model.image_shape, MAX_WEIGHT_TILES),
        "training_samples.png": plots.training_samples(
            dataset.x_train[samples], dataset.y_train[samples], class_names,
            dataset.image_shape, SAMPLES_PER_CLASS, value_range=value_range),
    }
    assert tuple(figures) == FIGURE_FILES
    return figures


# ------------------------------------------------------------------------------ page
def _page_context(
    run_dir: Path, model: TrainedModel, metrics: Mapping[str, Any], pngs: Mapping[str, bytes]
) -> dict[str, Any]:
    """Everything the template shows, already formatted as strings."""
    config = metrics.get("config") or model.info.get("config") or {}
    data = metrics.get("dataset") or {}
    history = metrics.get("history") or []
    headline = [
        ("test accuracy", format_percent(metrics["test_accuracy"])),
        ("macro F1", format_score(metrics["f1_macro"])),
        ("test loss", format_score(metrics["test_loss"])),
        ("test images", f"{int(metrics['n_samples']):,}"),
    ]
    if "epochs_run" in metrics:
        headline.append(("epochs", str(metrics["epochs_run"])))
    if "train_seconds" in metrics:
        headline.append(("training time", f"{float(metrics['train_seconds']):.1f} s"))
    averages = [
        (label, format_score(metrics[f"{key}_macro"]), format_score(metrics[f"{key}_weighted"]))
        for key, label in (("precision", "precision"), ("recall", "recall"), ("f1", "F1"))
    ]
    per_class = [
        (name, format_score(row["precision"]), format_score(row["recall"]),
         format_score(row["f1"]), f"{int(row['support']):,}")
        for name, row in metrics["per_class"].items()
    ]
    run_rows = [
        ("data set", data.get("name", model.dataset)),
        ("source", data.get("source")),
        ("training / validation / test images",
         " / ".join(f"{int(data[k]):,}" for k in ("n_train", "n_validation", "n_test"))
         if all(k in data for k in ("n_train", "n_validation", "n_test")) else None),
        ("network", metrics.get("architecture", model.network.describe())),
        ("parameters", f"{int(metrics.get('n_parameters', model.network.n_parameters)):,}"),
        ("epochs run", metrics.get("epochs_run")),
        ("best epoch (weights kept)", metrics.get("best_epoch")),
        ("stopped early", metrics.get("stopped_early")),
        ("interrupted", metrics.get("interrupted")),
        ("training time", f"{float(metrics['train_seconds']):.1f} s"
         if "train_seconds" in metrics else None),
    ]
    history_rows = [
        (str(r.get("epoch")),
         *(format_score(r[k]) if r.get(k) is not None else "-"
           for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")),
         f"{float(r['lr']):.2e}" if r.get("lr") is not None else "-",
         f"{float(r['seconds']):.1f}" if r.get("seconds") is not None else "-")
        for r in history
    ]
    figures = [
        {"file": spec.filename, "title": spec.title, "caption": spec.caption,
         "data_uri": "data:image/png;base64," + base64.b64encode(pngs[spec.filename]).decode()}
        for spec in FIGURES if spec.filename in pngs
    ]
    return {
        "run_name": run_dir.resolve().name,
        "dataset": data.get("name", model.dataset),
        "architecture": metrics.get("architecture", model.network.describe()),
        "generated": time.strftime("%Y-%m-%d %H:%M"),
        "version": __version__,
        "interrupted": bool(metrics.get("interrupted")),
        "headline": headline,
        "accuracy": format_score(metrics["test_accuracy"]),
        "test_loss": format_score(metrics["test_loss"]),
        "averages": averages,
        "per_class": per_class,
        "text_report": classification_report(dict(metrics)),
        "figures": figures,
        "config_rows": [(k, _format_setting(v)) for k, v in config.items()],
        "run_rows": [(k, _format_setting(v)) for k, v in run_rows if v is not None],
        "environment_rows": [(k, _format_setting(v))
                             for k, v in (metrics.get("environment") or {}).items()],
        "history_rows": history_rows,
    }


def render_html(
    run_dir: str | os.PathLike[str],
    model: TrainedModel,
    metrics: Mapping[str, Any],
    pngs: Mapping[str, bytes],
) -> str:
    """``report.html`` as a string: ``pngs`` maps figure file names to PNG bytes (embedded)."""
    import jinja2

    source = resources.files("digitnet").joinpath(TEMPLATE).read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    context = _page_context(Path(run_dir), model, metrics, pngs)
    return env.from_string(source).render(**context)


def write_report(
    run_dir: str | os.PathLike[str],
    model: TrainedModel,
    metrics: Mapping[str, Any],
    dataset: Dataset,
    test_proba: NDArray[np.floating] | None = None,
) -> Path:
    """Draw every figure into ``run_dir`` as PNG and write ``run_dir/report.html``.

    ``metrics`` is ``metrics.json``'s content; ``dataset`` must be the data set the model
    was trained and evaluated on (its test images feed the gallery of mistakes, its
    training images the sample figure). Every file is written atomically. Returns the
    path of ``report.html``. ``test_proba``: see :func:`draw_figures`.
    """
    check_metrics(metrics, "metrics")
    _check_consistent(model, metrics, dataset)
    folder = Path(run_dir)
    pngs: dict[str, bytes] = {}
    for filename, figure in draw_figures(model, metrics, dataset, test_proba).items():
        pngs[filename] = plots.save_png(figure)
        atomic_write_bytes(folder / filename, pngs[filename])
    page = folder / REPORT_FILE
    atomic_write_text(page, render_html(folder, model, metrics, pngs))
    return page

