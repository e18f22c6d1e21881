"""The pictures and the page a training run leaves behind in its run folder.

:func:`write_report` draws every figure of :mod:`digitnet.plots` for a trained model,
writes each as a PNG into the run folder and gathers them, with the configuration and the
metrics of ``metrics.json``, into ``report.html``: one self-contained page (the PNGs are
embedded as ``data:`` URIs and linked to the files beside it) that opens from disk in any
browser. :func:`load_run` reads a run folder back, so ``digitnet report RUN_DIR`` can
redraw everything later.

Beside the figures, :func:`write_report` stores the numbers of the robustness figures in
``robustness.json`` (:func:`robustness_numbers`): the accuracy at each level of each kind of
damage on a seeded sample of the test set, and the coverage-accuracy curve on the whole test
set. The points maps project a seeded sample of the test set layer by layer with PCA, and
with t-SNE only when asked (``tsne=True``; seconds per layer).

Everything here runs after training, never during it.
"""

from __future__ import annotations

import base64
import contextlib
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

from digitnet import __version__, augment, plots, projection, robustness
from digitnet.config import is_finite_number, is_int
from digitnet.data.datasets import Dataset
from digitnet.errors import DigitnetError
from digitnet.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from digitnet.metrics import classification_report
from digitnet.model_io import TrainedModel, load_model
from digitnet.runs import METRICS_FILE, MODEL_FILE, REPORT_FILE, ROBUSTNESS_FILE

TEMPLATE = "templates/report.html.j2"

GALLERY_SIZE = 25
SAMPLES_PER_CLASS = 10
MAX_WEIGHT_TILES = 64
POINTS_SAMPLE = 1000
MAX_OUTLINED = 30
MARKED_THRESHOLDS = (0.5, 0.9, 0.99)
TABLE_THRESHOLDS = (0.0, 0.5, 0.9, 0.99, 0.999)

REQUIRED_METRICS = (
    "test_accuracy", "test_loss", "n_samples", "class_names", "per_class", "confusion_matrix",
    "precision_macro", "precision_weighted", "recall_macro", "recall_weighted",
    "f1_macro", "f1_weighted",
)


class ReportError(DigitnetError):
    """A run folder cannot be reported on (missing or inconsistent files)."""


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the report: its file name, heading and a sentence on how to read it.

    The caption may name ``{damage_sample}`` and ``{points_sample}`` (how many test images
    the robustness curves and the points maps use), filled in when the page is written.
    """

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
    FigureSpec("coverage.png", "Answering only when confident",
               "With a threshold t the network answers only when its top probability is at "
               "least t, else it says \"don't know\". Each point is one threshold: the share "
               "of the test images answered (coverage) and the accuracy on those. t = 0 "
               "answers all, at the test accuracy; the steeper the curve rises to the left, "
               "the better the confidence tells right answers from wrong ones. Whole test "
               "set; the numbers are below and in robustness.json."),
    FigureSpec("robustness.png", "Robustness to damaged images",
               "Accuracy when every image is damaged in one way, to the level on the x "
               "axis: Gaussian pixel noise, rotation about the centre, strokes thickened "
               "(dilation) or thinned (erosion). The dotted line is the undamaged accuracy "
               "(level 0). Measured on {damage_sample}, damaged as digitnet evaluate "
               "--noise/--rotation/--thickness does; the numbers are below and in "
               "robustness.json."),
    FigureSpec("first_layer_weights.png", "What the first hidden layer looks for",
               "Each tile is one hidden unit's incoming weights, laid out as an image: red "
               "pixels excite the unit, blue pixels inhibit it."),
    FigureSpec("points_map.png", "The test images, layer by layer (PCA)",
               "Each point is one of {points_sample}, placed by the two principal components "
               "of a layer's outputs for it (the plane along which they vary most) and "
               "coloured by its true class; black rings mark misclassified images. Panel by "
               "panel the network pulls the classes apart. Two directions cannot show ten "
               "classes: clusters apart in the layer may still overlap here (t-SNE, "
               "digitnet report RUN_DIR --tsne, shows them more clearly)."),
    FigureSpec("training_samples.png", "What the data looks like",
               "Random training images with their labels, one row per class."),
)
TSNE_FIGURE = FigureSpec(
    "points_map_tsne.png", "The test images, layer by layer (t-SNE)",
    "The same {points_sample} and layers as the PCA map, placed by t-SNE, which keeps images "
    "that are near each other in a layer near each other here: clusters show more clearly, "
    "but the distances between clusters and the axes mean nothing.")
FIGURE_FILES = tuple(spec.filename for spec in FIGURES)
AUGMENT_FIGURE = FigureSpec(
    "augmentation.png", "What augmentation shows the network",
    "One training image of each class (left column), then fresh random distortions of it "
    "with the run's augmentation setting: every epoch trains on new ones like these, never "
    "twice the same image.")
OPTIONAL_FIGURE_FILES = (TSNE_FIGURE.filename, AUGMENT_FIGURE.filename)
AUGMENT_VARIANTS = 8


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


# ---------------------------------------------------------------- robustness numbers
def _one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """BLAS on one thread: the report's products and SVDs are small, and two threads that
    wait for each other on a busy core made the PCA of the points map up to 20x slower (5 s
    instead of 0.25 s beside another process on this 2-core machine); one is as fast idle."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def robustness_numbers(
    model: TrainedModel, dataset: Dataset, test_proba: NDArray[np.floating],
    sample_size: int = robustness.CURVE_SAMPLE, seed: int = 0,
) -> dict[str, Any]:
    """What ``robustness.json`` holds: ``damage``, the accuracy per level of each kind of
    damage on ``sample_size`` test images (:func:`digitnet.robustness.robustness_curves`),
    and ``coverage``, accuracy and coverage per confidence threshold on the whole test set
    (:func:`digitnet.robustness.coverage_curve`, from ``test_proba``)."""
    with _one_blas_thread():
        damage = robustness.robustness_curves(model, dataset, sample_size=sample_size,
                                              seed=seed)
    return {
        "about": "digitnet robustness: test accuracy under damage (on a seeded sample of the "
                 "test set) and coverage/accuracy per confidence threshold (whole test set)",
        "damage": damage,
        "coverage": robustness.coverage_curve(test_proba, dataset.y_test),
    }


def _points_maps(
    model: TrainedModel, dataset: Dataset, proba: NDArray[np.floating], tsne: bool
) -> dict[str, Figure]:
    """The points maps of :data:`POINTS_SAMPLE` test images: PCA, and t-SNE with ``tsne``."""
    chosen = projection.sample_indices(len(dataset.y_test), POINTS_SAMPLE, seed=0)
    labels, predicted = dataset.y_test[chosen], proba[chosen].argmax(axis=1)
    methods = [("PCA", "points_map.png", projection.pca_2d)]
    if tsne:
        methods.append(("t-SNE", TSNE_FIGURE.filename, projection.tsne_2d))
    with _one_blas_thread():
        x = model.scaler.transform(dataset.x_test[chosen])
        layers = projection.layer_representations(model.network, x)
        embedded = {filename: [(name, embed(values)) for name, values in layers]
                    for _, filename, embed in methods}
    return {
        filename: plots.points_map(embedded[filename], labels, predicted,
                                   list(model.class_names), method, MAX_OUTLINED)
        for method, filename, _ in methods
    }


# --------------------------------------------------------------------------- figures
def draw_figures(
    model: TrainedModel, metrics: Mapping[str, Any], dataset: Dataset,
    test_proba: NDArray[np.floating] | None = None,
    numbers: Mapping[str, Any] | None = None, tsne: bool = False,
) -> dict[str, Figure]:
    """Every figure of the report, as ``{filename: matplotlib Figure}`` in :data:`FIGURES`
    order, then the t-SNE map (:data:`TSNE_FIGURE`) when ``tsne``.

    The gallery of mistakes, the coverage curve and the points maps need the test set's
    class probabilities: ``test_proba`` when given (``train_run`` has them already), else
    the test set is predicted here. The robustness figures draw ``numbers`` (as
    :func:`robustness_numbers` returns them; computed here when not given). Everything else
    comes from ``metrics`` and the model's weights.
    """
    value_range = (model.scaler.lo, model.scaler.hi)
    class_names = list(model.class_names)
    proba = model.predict_proba(dataset.x_test) if test_proba is None else test_proba
    if numbers is None:
        numbers = robustness_numbers(model, dataset, proba)
    damage = numbers["damage"]
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
        "coverage.png": plots.coverage_curve(numbers["coverage"]["rows"], MARKED_THRESHOLDS),
        "robustness.png": plots.damage_curves(
            damage["curves"], damage["undamaged_accuracy"], damage["sample_size"],
            damage["n_test"], len(class_names)),
        "first_layer_weights.png": plots.weight_tiles(
            model.network.dense[0].W, model.image_shape, MAX_WEIGHT_TILES),
        **_points_maps(model, dataset, proba, tsne),
        "training_samples.png": plots.training_samples(
            dataset.x_train[samples], dataset.y_train[samples], class_names,
            dataset.image_shape, SAMPLES_PER_CLASS, value_range=value_range),
    }
    augmenter = _augmenter(metrics)
    if augmenter is not None:
        first = samples_per_class(dataset.y_train, 1, seed=0)
        grid = augment.variants(dataset.x_train[first],
                                augmenter.scaled_for(dataset.image_shape), AUGMENT_VARIANTS,
                                seed=0, image_shape=dataset.image_shape)
        figures[AUGMENT_FIGURE.filename] = plots.augmentation_variants(
            grid, [class_names[int(c)] for c in dataset.y_train[first]],
            value_range=value_range)
    order = [spec.filename for spec in _specs(tsne, augmenter is not None)]
    assert sorted(figures) == sorted(order)
    return {name: figures[name] for name in order}


def _specs(tsne: bool, augmented: bool = False) -> tuple[FigureSpec, ...]:
    """The figures of a report, in page order: :data:`FIGURES`, the t-SNE map after the
    PCA one when ``tsne``, the augmentation figure last when the run augmented its data."""
    specs: tuple[FigureSpec, ...] = FIGURES
    if tsne:
        at = FIGURE_FILES.index("points_map.png") + 1
        specs = (*FIGURES[:at], TSNE_FIGURE, *FIGURES[at:])
    return (*specs, AUGMENT_FIGURE) if augmented else specs


def _augmenter(metrics: Mapping[str, Any]) -> augment.Augmenter | None:
    """The augmentation the run's configuration names (``None``: none, or unknown)."""
    name = (metrics.get("config") or {}).get("augment", "none")
    return augment.AUGMENTERS.get(name) if isinstance(name, str) else None


# ------------------------------------------------------------------------------ page
LEVEL_HEADERS = {"noise": "noise std", "rotation": "degrees", "thickness": "pixels"}


def _format_level(kind: str, level: float) -> str:
    """A damage level as the tables print it: ``0.1``, ``-45``, ``+2`` (thickness signed)."""
    return f"{int(level):+d}" if kind == "thickness" and level else f"{float(level):g}"


def _damage_tables(damage: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One small table per kind of damage: level, accuracy."""
    return [
        {"id": f"robustness-{kind}", "caption": str(curve["title"]),
         "header": (LEVEL_HEADERS.get(kind, "level"), "accuracy"),
         "rows": [(_format_level(kind, level), format_percent(acc))
                  for level, acc in zip(curve["levels"], curve["accuracy"], strict=True)]}
        for kind, curve in damage["curves"].items()
    ]


def _coverage_table(coverage: Mapping[str, Any]) -> dict[str, Any]:
    """The coverage curve at :data:`TABLE_THRESHOLDS`: threshold, answered, accuracy."""
    n = int(coverage["n_test"])
    rows = [
        (f"{r['threshold']:g}", format_percent(r["coverage"]),
         f"{round(r['coverage'] * n):,} of {n:,}",
         "-" if r["accuracy"] is None else format_percent(r["accuracy"]))
        for r in coverage["rows"]
        if any(np.isclose(r["threshold"], t) for t in TABLE_THRESHOLDS)
    ]
    return {"id": "coverage", "caption": "Selected thresholds",
            "header": ("threshold", "coverage", "images answered", "accuracy on those"),
            "rows": rows}


def _sample_phrase(sample: int, total: int) -> str:
    """``"a seeded sample of 1,000 of the 10,000 test images"`` (or ``"all 360 ..."``)."""
    if sample >= total:
        return f"all {total:,} test images"
    return f"a seeded sample of {sample:,} of the {total:,} test images"


def _figure_entries(
    metrics: Mapping[str, Any], pngs: Mapping[str, bytes], numbers: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """The figures of ``pngs`` in page order, with captions filled in and their tables."""
    n_test = int(metrics["n_samples"])
    damage_sample = (numbers["damage"]["sample_size"] if numbers
                     else min(robustness.CURVE_SAMPLE, n_test))
    facts = {"damage_sample": _sample_phrase(damage_sample, n_test),
             "points_sample": _sample_phrase(min(POINTS_SAMPLE, n_test), n_test)}
    tables: dict[str, list[dict[str, Any]]] = {}
    if numbers:
        tables = {"robustness.png": _damage_tables(numbers["damage"]),
                  "coverage.png": [_coverage_table(numbers["coverage"])]}
    return [
        {"file": spec.filename, "title": spec.title, "caption": spec.caption.format(**facts),
         "data_uri": "data:image/png;base64," + base64.b64encode(pngs[spec.filename]).decode(),
         "tables": tables.get(spec.filename, [])}
        for spec in _specs(TSNE_FIGURE.filename in pngs, AUGMENT_FIGURE.filename in pngs)
        if spec.filename in pngs
    ]


def _page_context(
    run_dir: Path, model: TrainedModel, metrics: Mapping[str, Any], pngs: Mapping[str, bytes],
    numbers: Mapping[str, Any] | None = None,
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
        "figures": _figure_entries(metrics, pngs, numbers),
        "numbers_file": ROBUSTNESS_FILE if numbers else None,
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
    numbers: Mapping[str, Any] | None = None,
) -> str:
    """``report.html`` as a string: ``pngs`` maps figure file names to PNG bytes (embedded);
    ``numbers`` (:func:`robustness_numbers`) adds the tables of the robustness figures."""
    import jinja2

    source = resources.files("digitnet").joinpath(TEMPLATE).read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    context = _page_context(Path(run_dir), model, metrics, pngs, numbers)
    return env.from_string(source).render(**context)


def write_report(
    run_dir: str | os.PathLike[str],
    model: TrainedModel,
    metrics: Mapping[str, Any],
    dataset: Dataset,
    test_proba: NDArray[np.floating] | None = None,
    tsne: bool = False,
) -> Path:
    """Draw every figure into ``run_dir`` as PNG, write the robustness numbers to
    ``run_dir/robustness.json`` and the page to ``run_dir/report.html``.

    ``metrics`` is ``metrics.json``'s content; ``dataset`` must be the data set the model
    was trained and evaluated on (its test images feed the gallery of mistakes, the
    robustness curves and the points maps, its training images the sample figure). With
    ``tsne`` the t-SNE points map is drawn too (a few seconds per layer); without it, one
    left by an earlier report is removed, so the folder holds what the page shows. Every
    file is written atomically. Returns the path of ``report.html``. ``test_proba``: see
    :func:`draw_figures`.
    """
    check_metrics(metrics, "metrics")
    _check_consistent(model, metrics, dataset)
    folder = Path(run_dir)
    proba = model.predict_proba(dataset.x_test) if test_proba is None else test_proba
    numbers = robustness_numbers(model, dataset, proba)
    pngs = plots.save_pngs(draw_figures(model, metrics, dataset, proba, numbers, tsne))
    for filename, png in pngs.items():
        atomic_write_bytes(folder / filename, png)
    for optional in OPTIONAL_FIGURE_FILES:  # from an earlier report: not on this page
        if optional not in pngs:
            (folder / optional).unlink(missing_ok=True)
    atomic_write_json(folder / ROBUSTNESS_FILE, numbers)
    page = folder / REPORT_FILE
    atomic_write_text(page, render_html(folder, model, metrics, pngs, numbers))
    return page

