"""Figures that explain a training run, one function per figure.

Every function takes plain arrays, lists and dictionaries (nothing from the rest of
digitnet) and returns a :class:`matplotlib.figure.Figure`, built without ``pyplot``: no
display, no global figure registry, safe in any thread and under the Agg backend.
:func:`save_png` writes a figure to PNG bytes, :func:`save_pngs` several at once.

Images arrive as flattened rows ``(n, h * w)`` together with ``image_shape = (h, w)``,
and classes by index into ``class_names``, so the same code draws 28x28 MNIST digits,
Fashion-MNIST garments and scikit-learn's 8x8 digits.

One visual vocabulary for all figures: images in :data:`IMAGE_CMAP` (ink dark on white),
counts and shares in :data:`MATRIX_CMAP`, signed weights in the diverging
:data:`WEIGHT_CMAP` centred at zero; the font sizes of :data:`STYLE`.
"""

from __future__ import annotations

import functools
import io
import math
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, ParamSpec

import matplotlib as mpl
import numpy as np
from matplotlib.colors import Colormap, PowerNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter
from numpy.typing import ArrayLike, NDArray

from digitnet.forking import FORK_GATE

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

IMAGE_CMAP = "gray_r"
MATRIX_CMAP = "Blues"
WEIGHT_CMAP = "RdBu_r"
SERIES_COLORS = {"training": "#1f77b4", "validation": "#d62728"}
SCORE_COLORS = {"precision": "#4c72b0", "recall": "#dd8452", "f1": "#55a868"}
SEPARATOR_COLOR = "#b8c2cc"
DPI = 100

STYLE: dict[RcKeyType, Any] = {
    "font.size": 11,
    "axes.titlesize": 13,
    "axes.labelsize": 12,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 15,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "image.interpolation": "nearest",
}

P = ParamSpec("P")


def _styled(func: Callable[P, Figure]) -> Callable[P, Figure]:
    """Build the figure under :data:`STYLE` (without touching the caller's rcParams)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with mpl.rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


def save_png(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes (drawn under :data:`STYLE`, so lazily made ticks match)."""
    buffer = io.BytesIO()
    with mpl.rc_context(STYLE):
        fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


_TO_RENDER: dict[str, Figure] = {}  # what the forked renderers of save_pngs read


def _render(name: str) -> bytes:
    return save_png(_TO_RENDER[name])


def save_pngs(figures: Mapping[str, Figure], workers: int | None = None) -> dict[str, bytes]:
    """Every figure as PNG bytes (:func:`save_png`), the same bytes as one by one.

    Rendering is most of a report's time (~0.4 s a figure), so the figures are rendered by
    ``workers`` forked processes at once (default: one per usable core, at most one per
    figure), which read them from this process's memory. One by one instead where forking
    is not safe or not possible: a thread other than the main one (a server's), a daemon
    process (a Dask or joblib worker), a platform other than Linux; and when a renderer
    cannot be started or is killed (memory)."""
    names = list(figures)
    can_fork = (sys.platform.startswith("linux")  # elsewhere fork is unsafe or absent
                and threading.current_thread() is threading.main_thread()
                and not multiprocessing.current_process().daemon)
    n = min(len(names), workers or (len(os.sched_getaffinity(0)) if can_fork else 1))
    if n > 1 and can_fork:
        _TO_RENDER.update(figures)
        try:
            with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork")) as pool:
                with FORK_GATE.forking():  # the first task forks every renderer at once
                    futures = [pool.submit(_render, names[0])]
                futures += [pool.submit(_render, name) for name in names[1:]]
                return {name: f.result() for name, f in zip(names, futures, strict=True)}
        except (OSError, BrokenProcessPool):  # no processes to be had, or one was killed
            pass
        finally:
            _TO_RENDER.clear()
    return {name: save_png(figure) for name, figure in figures.items()}


def _message(ax: Any, text: str) -> None:
    """An empty panel that says why it is empty."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.35")
    ax.set_xticks([])
    ax.set_yticks([])


def _as_images(images: ArrayLike, image_shape: Sequence[int]) -> NDArray[np.float64]:
    """Rows ``(n, h * w)`` (or images ``(n, h, w)``) as float images ``(n, h, w)``."""
    h, w = (int(s) for s in image_shape)
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.size and arr.reshape(len(arr), -1).shape[1] != h * w:
        raise ValueError(
            f"images have {arr.reshape(len(arr), -1).shape[1]} pixels each, "
            f"expected {h}x{w} = {h * w}"
        )
    return arr.reshape(len(arr), h, w)


def _value_range(
    images: NDArray[np.float64], value_range: tuple[float, float] | None
) -> tuple[float, float]:
    if value_range is not None:
        return float(value_range[0]), float(value_range[1])
    if images.size == 0:
        return 0.0, 1.0
    lo, hi = float(images.min()), float(images.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _mosaic(tiles: NDArray[np.float64], columns: int, pad: int) -> NDArray[np.float64]:
    """Tiles ``(n, h, w)`` laid out in rows of ``columns``, ``pad`` NaN pixels between them.

    A NaN tile (all-NaN) is an empty slot; NaN is drawn in the colormap's "bad" colour.
    """
    n, h, w = tiles.shape
    rows = max(1, math.ceil(n / columns))
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad), np.nan)
    for i in range(n):
        r, c = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        out[top : top + h, left : left + w] = tiles[i]
    return out


def _panel_grid(fig: Figure, n: int, rows: int, columns: int, empty: str) -> Any:
    """``rows x columns`` axes for ``n`` panels (the spare ones hidden), as a flat array;
    ``None`` after writing ``empty`` on the figure when there is nothing to show."""
    if n == 0:
        _message(fig.subplots(), empty)
        return None
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_axis_off()
    return axes


def _cmap(name: str, bad: str) -> Colormap:
    return mpl.colormaps[name].with_extremes(bad=bad)


# --------------------------------------------------------------------- learning curves
def _plain_number(value: float, _pos: int | None = None) -> str:
    """A log-axis tick as a plain number: ``0.3``, not ``3x10^-1``."""
    return f"{value:g}"


def _plain_minor(value: float, _pos: int | None = None) -> str:
    """Label the minor log ticks at 2, 3 and 5 times a power of ten, leave the rest blank."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if round(mantissa) in (2, 3, 5) else ""


@_styled
def learning_curves(
    history: Sequence[Mapping[str, Any]], best_epoch: int | None = None
) -> Figure:
    """Training and validation loss (left) and accuracy (right) per epoch.

    ``history`` is one mapping per epoch with ``epoch``, ``train_loss``,
    ``train_accuracy`` and optionally ``val_loss``/``val_accuracy`` (``None`` without a
    validation set), as in ``metrics.json``. ``best_epoch`` (the epoch whose weights were
    kept, chosen by validation loss) is marked with a dotted line when there was validation.
    The loss axis is logarithmic: cross-entropy falls by orders of magnitude and the late
    epochs would otherwise look flat.
    """
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    fig.suptitle("Learning curves")
    ax_loss.set_title("Loss (mean cross-entropy)")
    ax_acc.set_title("Accuracy")
    if not history:
        for ax in (ax_loss, ax_acc):
            _message(ax, "no completed epoch")
        return fig

    series = (("training", "train"), ("validation", "val"))
    # Without validation every epoch is "best" in turn: no line to draw then.
    validated = any(r.get("val_loss") is not None for r in history)
    for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        for label, prefix in series:
            points = [
                (int(r["epoch"]), float(r[f"{prefix}_{metric}"]))
                for r in history
                if r.get(f"{prefix}_{metric}") is not None
            ]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=4,
                    color=SERIES_COLORS[label], label=label, linewidth=2)
        if best_epoch and validated:
            ax.axvline(best_epoch, color="0.4", linestyle=":", linewidth=1.5,
                       label=f"best epoch ({best_epoch}, weights kept)")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend()
    positive = all(
        r.get(k) is None or float(r[k]) > 0 for r in history for k in ("train_loss", "val_loss")
    )
    if positive:
        ax_loss.set_yscale("log")
        losses = [float(r[k]) for r in history for k in ("train_loss", "val_loss")
                  if r.get(k) is not None]
        ax_loss.yaxis.set_major_formatter(FuncFormatter(_plain_number))
        if max(losses) / min(losses) <= 300:  # few decades: label 2, 3 and 5 times 10^k too
            ax_loss.yaxis.set_minor_formatter(FuncFormatter(_plain_minor))
        ax_loss.set_ylabel("cross-entropy (log scale)")
    else:
        ax_loss.set_ylabel("cross-entropy")
    ax_acc.set_ylabel("accuracy")
    ax_acc.yaxis.set_major_formatter(PercentFormatter(1.0))
    return fig


# -------------------------------------------------------------------- confusion matrix
@_styled
def confusion_matrix(cm: ArrayLike, class_names: Sequence[str]) -> Figure:
    """The confusion matrix as two heatmaps: counts, and each row divided by its total.

    ``cm[i, j]`` counts test images of true class ``i`` predicted as ``j``; the
    row-normalized matrix ``cm[i, j] / sum_j cm[i, j]`` has the per-class recall on its
    diagonal. Non-zero cells are annotated; the colour scale is a square root, so that a
    handful of confusions stays visible beside thousands of correct answers.
    """
    counts = np.asarray(cm, dtype=np.int64)
    k = len(class_names)
    if counts.shape != (k, k):
        raise ValueError(f"confusion matrix has shape {counts.shape}, expected ({k}, {k})")
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)

    long_names = max((len(n) for n in class_names), default=1) > 3
    # Cells stay roughly square through the figure's proportions rather than through
    # aspect="equal", which the constrained layout does not always fit with the labels.
    side = max(4.6, 0.45 * k + 0.1)
    fig = Figure(figsize=(2 * side + 2.6, side + (2.0 if long_names else 1.3)),
                 layout="constrained")
    axes = fig.subplots(1, 2)
    fig.suptitle("Confusion matrix on the test set (rows: true class, columns: predicted)")
    panels = (
        (axes[0], counts, "Counts", "test images", float(max(counts.max(), 1)),
         lambda v: f"{int(v)}"),
        (axes[1], shares, "Row-normalized (% of each true class)", "share of the true class",
         1.0, lambda v: f"{100 * v:.1f}" if v < 0.9995 else "100"),
    )
    annot_size = max(5.0, min(11.0, 100.0 / k))
    for ax, data, title, bar_label, vmax, fmt in panels:
        # A square-root colour scale: rare confusions stay visible next to the diagonal.
        norm = PowerNorm(0.5, vmin=0.0, vmax=vmax)
        image = ax.imshow(data, cmap=MATRIX_CMAP, norm=norm, aspect="auto")
        colorbar = fig.colorbar(image, ax=ax, pad=0.02)
        colorbar.set_label(bar_label)
        if data is shares:
            colorbar.formatter = PercentFormatter(1.0)
            colorbar.update_ticks()
        ax.set_title(title)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_xticks(range(k), labels=list(class_names),
                      rotation=45 if long_names else 0, ha="right" if long_names else "center",
                      rotation_mode="anchor")
        ax.set_yticks(range(k), labels=list(class_names))
        for i in range(k):
            for j in range(k):
                if counts[i, j] == 0:
                    continue
                dark = norm(data[i, j]) > 0.6
                ax.text(j, i, fmt(data[i, j]), ha="center", va="center", fontsize=annot_size,
                        color="white" if dark else "#1a1a1a")
    return fig


# ------------------------------------------------------------------- per-class scores
@_styled
def per_class_scores(per_class: Mapping[str, Mapping[str, float]]) -> Figure:
    """Precision, recall and F1 of every class as grouped bars.

    ``per_class`` maps class name -> ``{"precision", "recall", "f1", ...}`` (as in
    ``metrics.json``). With uniformly high scores the axis starts above zero, so that
    differences between classes stay visible; the axis label says where it starts.
    """
    names = list(per_class)
    k = len(names)
    fig = Figure(figsize=(max(10.0, 0.9 * k + 3), 5.2), layout="constrained")
    ax = fig.subplots()
    ax.set_title("Precision, recall and F1 per class (test set)")
    if k == 0:
        _message(ax, "no classes")
        return fig
    keys = ("precision", "recall", "f1")
    labels = {"precision": "precision", "recall": "recall", "f1": "F1"}
    values = np.array([[float(per_class[n][key]) for n in names] for key in keys])
    x = np.arange(k)
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        ax.bar(x + (i - 1) * width, values[i], width, label=labels[key],
               color=SCORE_COLORS[key], edgecolor="white", linewidth=0.5)
    low = float(values.min())
    step = 0.01 if low >= 0.9 else 0.05
    bottom = max(0.0, math.floor((low - 0.02) / step) * step) if low > 0.5 else 0.0
    ax.set_ylim(bottom, 1.0)
    ax.set_ylabel("score" if bottom == 0 else f"score (axis starts at {bottom:.2f})")
    long_names = max(len(n) for n in names) > 3
    ax.set_xticks(x, labels=names, rotation=30 if long_names else 0,
                  ha="right" if long_names else "center", rotation_mode="anchor")
    ax.set_xlabel("class")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


# -------------------------------------------------------------- misclassified gallery
def _probability(p: float) -> str:
    """A probability as a percentage that never rounds a near-certainty up to 100 %."""
    for decimals in (1, 2):
        text = f"{100 * p:.{decimals}f}"
        if float(text) < 100 or p >= 1:
            return f"{text} %"
    return "> 99.99 %"


@_styled
def misclassified_gallery(
    images: ArrayLike,
    true_labels: Sequence[int] | NDArray[np.integer],
    predicted: Sequence[int] | NDArray[np.integer],
    confidence: Sequence[float] | NDArray[np.floating],
    class_names: Sequence[str],
    image_shape: Sequence[int],
    n_errors: int | None = None,
    n_total: int | None = None,
    columns: int = 5,
    value_range: tuple[float, float] | None = None,
) -> Figure:
    """A grid of misclassified images in the given order, each titled with the true
    class, the predicted class and the predicted probability.

    The caller chooses and orders the images (e.g. most confident mistakes first);
    ``n_errors`` of ``n_total`` test images were wrong (for the figure title).
    """
    tiles = _as_images(images, image_shape)
    n = len(tiles)
    if not len(true_labels) == len(predicted) == len(confidence) == n:
        raise ValueError("images, true labels, predictions and confidences differ in length")
    lo, hi = _value_range(tiles, value_range)
    columns = max(1, min(columns, n)) if n else 1
    rows = max(1, math.ceil(n / columns))
    long_names = max((len(c) for c in class_names), default=1) > 3
    cell_w = 2.3 if long_names else 2.0
    fig = Figure(figsize=(max(cell_w * columns, 6.0), 2.45 * rows + 0.9), layout="constrained")
    title = "Most confident mistakes (highest predicted probability first)"
    if n_errors is not None and n_total:
        shown = f"all {n}" if n == n_errors else f"the first {n}"
        title += (f"\n{n_errors:,} of {n_total:,} test images misclassified "
                  f"({100 * n_errors / n_total:.2f} %); showing {shown}")
    fig.suptitle(title)
    axes = _panel_grid(fig, n, rows, columns, "no misclassified images")
    if axes is None:
        return fig
    for ax, tile, t, p, c in zip(axes[:n], tiles, true_labels, predicted, confidence,
                                 strict=True):
        ax.imshow(tile, cmap=IMAGE_CMAP, vmin=lo, vmax=hi)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"true: {class_names[int(t)]}\npredicted: {class_names[int(p)]} "
                     f"({_probability(float(c))})", fontsize=10)
        for spine in ax.spines.values():
            spine.set_edgecolor("#d62728")
    return fig


# ---------------------------------------------------------------- first-layer weights
@_styled
def weight_tiles(
    W: ArrayLike, image_shape: Sequence[int], max_units: int = 64
) -> Figure:
    """The first layer's weights as images: column ``W[:, j]`` of the ``(n_features, n_hidden)``
    matrix, reshaped to ``image_shape``, is the pixel pattern hidden unit ``j`` responds to.

    Shows the first ``max_units`` units. Each tile is divided by its own ``max |w|`` so
    that weak and strong units are equally readable; the diverging colormap is centred at
    zero (red: the pixel raises the unit's input, blue: lowers it, white: ignored).
    """
    weights = np.asarray(W, dtype=np.float64)
    h, w = (int(s) for s in image_shape)
    if weights.ndim != 2 or weights.shape[0] != h * w:
        raise ValueError(
            f"first-layer weights have shape {weights.shape}, expected ({h * w}, n_hidden) "
            f"for {h}x{w} images"
        )
    n_hidden = weights.shape[1]
    n = min(max_units, n_hidden)
    tiles = weights[:, :n].T.reshape(n, h, w)
    scale = np.abs(tiles).reshape(n, -1).max(axis=1)
    tiles = tiles / np.where(scale > 0, scale, 1.0)[:, None, None]
    columns = max(1, math.ceil(math.sqrt(n)))
    mosaic = _mosaic(tiles, columns, pad=max(1, h // 14))
    height = 6.4 * mosaic.shape[0] / mosaic.shape[1]
    fig = Figure(figsize=(8.4, max(3.0, height + 0.7)), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(mosaic, cmap=_cmap(WEIGHT_CMAP, SEPARATOR_COLOR), vmin=-1.0, vmax=1.0)
    shown = f"all {n_hidden}" if n == n_hidden else f"the first {n} of {n_hidden}"
    ax.set_title(f"First-layer weights: {shown} hidden units, one {h}x{w} tile each")
    ax.set_xticks([])
    ax.set_yticks([])
    colorbar = fig.colorbar(image, ax=ax, shrink=0.7, pad=0.02, ticks=[-1, 0, 1])
    colorbar.ax.set_yticklabels(["-max|w|", "0", "+max|w|"])
    colorbar.set_label("weight, per tile scaled to its own max |w|")
    return fig


# ------------------------------------------------------------------- training samples
@_styled
def training_samples(
    images: ArrayLike,
    labels: Sequence[int] | NDArray[np.integer],
    class_names: Sequence[str],
    image_shape: Sequence[int],
    per_class: int = 10,
    value_range: tuple[float, float] | None = None,
) -> Figure:
    """Example images, one row per class (labelled with the class name), the first
    ``per_class`` images of that class in the given order."""
    tiles = _as_images(images, image_shape)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(tiles):
        raise ValueError(f"{len(tiles)} images but {len(labels)} labels")
    k = len(class_names)
    h, w = tiles.shape[1:]
    lo, hi = _value_range(tiles, value_range)
    grid = np.full((k * per_class, h, w), np.nan)
    for c in range(k):
        members = np.flatnonzero(labels == c)[:per_class]
        grid[c * per_class : c * per_class + len(members)] = tiles[members]
    pad = max(1, h // 14)
    mosaic = _mosaic(grid, per_class, pad)
    height = 8.0 * mosaic.shape[0] / mosaic.shape[1]
    fig = Figure(figsize=(9.5, max(3.0, height + 1.0)), layout="constrained")
    ax = fig.subplots()
    ax.imshow(mosaic, cmap=_cmap(IMAGE_CMAP, SEPARATOR_COLOR), vmin=lo, vmax=hi)
    ax.set_title(f"Training images: {per_class} random examples per class, one row per class")
    ax.set_xticks([])
    ax.set_yticks([pad + c * (h + pad) + (h - 1) / 2 for c in range(k)],
                  labels=list(class_names))
    ax.tick_params(axis="y", length=0)
    ax.set_ylabel("class")
    return fig


@_styled
def augmentation_variants(grid: ArrayLike, labels: Sequence[str],
                          value_range: tuple[float, float] | None = None) -> Figure:
    """Rows of ``grid`` ``(n, 1 + k, h, w)``: an image, then ``k`` distortions of it;
    each row labelled with ``labels[i]``."""
    tiles = np.asarray(grid, dtype=np.float64)
    n, per_row, h, w = tiles.shape
    if len(labels) != n:
        raise ValueError(f"{n} rows of images but {len(labels)} labels")
    lo, hi = _value_range(tiles.reshape(-1, h, w), value_range)
    pad = max(1, h // 14)
    mosaic = _mosaic(tiles.reshape(-1, h, w), per_row, pad)
    height = 8.0 * mosaic.shape[0] / mosaic.shape[1]
    fig = Figure(figsize=(8.0, max(3.0, height + 1.0)), layout="constrained")
    ax = fig.subplots()
    ax.imshow(mosaic, cmap=_cmap(IMAGE_CMAP, SEPARATOR_COLOR), vmin=lo, vmax=hi)
    ax.set_title("Augmentation: each training image (left), then distortions of it")
    ax.set_xticks([pad + (h - 1) / 2 + j * (w + pad) for j in range(per_row)],
                  labels=["original", *[str(j) for j in range(1, per_row)]])
    ax.set_yticks([pad + i * (h + pad) + (h - 1) / 2 for i in range(n)], labels=list(labels))
    ax.tick_params(length=0)
    ax.set_ylabel("class")
    return fig


@_styled
def explanation(image: ArrayLike, saliency: ArrayLike, runner_up_saliency: ArrayLike,
                hidden: ArrayLike, answer: str, runner_up: str, probabilities: tuple[float, float]
                ) -> Figure:
    """Why this answer: the image the network saw; the saliency maps of the answer and of the
    runner-up (red: brighter ink here raises that class's logit, blue: lowers it; both on one
    scale); the first hidden layer's activations (which units fire)."""
    img = np.asarray(image, dtype=np.float64)
    maps = [np.asarray(m, dtype=np.float64) for m in (saliency, runner_up_saliency)]
    scale = max(float(np.abs(m).max()) for m in maps) or 1.0
    units = np.asarray(hidden, dtype=np.float64)
    fig = Figure(figsize=(14, 4.0), layout="constrained")
    axes = fig.subplots(1, 4, width_ratios=[1, 1, 1, 1.6])
    axes[0].imshow(img, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("what the network sees", fontsize=11)
    for ax, m, role, name, p in zip(axes[1:3], maps, ("answer", "runner-up"),
                                    (answer, runner_up), probabilities, strict=True):
        shown = ax.imshow(m, cmap=_cmap(WEIGHT_CMAP, SEPARATOR_COLOR), vmin=-scale, vmax=scale)
        ax.set_title(f"{role} {name} ({p:.1%}):\nd logit / d pixel", fontsize=11)
    fig.colorbar(shown, ax=axes[1:3], shrink=0.8, label="gradient")
    for ax in axes[:3]:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[3].bar(np.arange(len(units)), units, width=1.0, color=SERIES_COLORS["training"])
    active = int(np.count_nonzero(units > 0))
    axes[3].set_title(f"first hidden layer: {active} of {len(units)} units fire", fontsize=11)
    axes[3].set_xlabel("hidden unit")
    axes[3].set_ylabel("activation")
    return fig


# ------------------------------------------------------------------ robustness curves
def _signed(value: float, _pos: int | None = None) -> str:
    """A tick as a signed number: ``+2``, ``0``, ``-1`` (with a true minus sign, as
    Matplotlib's own ticks)."""
    return f"{value:+g}".replace("-", "\N{MINUS SIGN}") if value else "0"


@_styled
def damage_curves(curves: Mapping[str, Mapping[str, Any]], undamaged_accuracy: float,
                  sample_size: int, n_test: int, n_classes: int | None = None) -> Figure:
    """Accuracy against the level of each kind of damage, one panel per kind.

    ``curves`` maps a kind to ``{"title", "unit", "levels", "accuracy"}`` (as
    :func:`digitnet.robustness.robustness_curves` returns them); ``undamaged_accuracy`` (on
    the same ``sample_size`` of ``n_test`` test images) is drawn as a dotted line in every
    panel, and chance (``1 / n_classes``) as a grey one. The legend sits below the panels.
    """
    kinds = list(curves)
    fig = Figure(figsize=(max(6.0, 4.3 * len(kinds)), 4.6), layout="constrained")
    of = "all" if sample_size >= n_test else f"a seeded sample of {sample_size:,} of"
    fig.suptitle(f"Accuracy on damaged test images ({of} {n_test:,} test images)")
    if not kinds:
        _message(fig.subplots(), "no damage measured")
        return fig
    axes = fig.subplots(1, len(kinds), sharey=True, squeeze=False).ravel()
    for ax, kind in zip(axes, kinds, strict=True):
        curve = curves[kind]
        levels = [float(v) for v in curve["levels"]]
        ax.plot(levels, [float(a) for a in curve["accuracy"]], marker="o", markersize=5,
                linewidth=2, color=SERIES_COLORS["training"], label="accuracy when damaged")
        ax.axhline(undamaged_accuracy, color="0.25", linestyle=":", linewidth=1.5,
                   label=f"undamaged, same images ({100 * undamaged_accuracy:.2f} %)")
        if n_classes:
            ax.axhline(1 / n_classes, color="0.6", linestyle="--", linewidth=1,
                       label=f"chance ({100 / n_classes:.0f} %)")
        ax.set_title(str(curve["title"]))
        ax.set_xlabel(str(curve["unit"]))
        ax.set_xticks(levels)
        if kind == "thickness":
            ax.xaxis.set_major_formatter(FuncFormatter(_signed))
        ax.grid(True, alpha=0.3)
    axes[0].set_ylim(0.0, 1.02)
    axes[0].set_ylabel("accuracy")
    axes[0].yaxis.set_major_formatter(PercentFormatter(1.0))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
    return fig


# --------------------------------------------------------------------- coverage curve
@_styled
def coverage_curve(rows: Sequence[Mapping[str, Any]],
                   marked: Sequence[float] = (0.5, 0.9, 0.99)) -> Figure:
    """Accuracy on the answered images against coverage (the share answered), as the
    confidence threshold rises from 0 (answer everything: right end) to its highest value.

    ``rows`` are ``{"threshold", "coverage", "accuracy"}`` (as
    :func:`digitnet.robustness.coverage_accuracy` returns them; ``accuracy`` ``None`` where
    nothing is answered). The thresholds of ``marked`` found in ``rows`` are marked and
    labelled on the curve.
    """
    fig = Figure(figsize=(9.5, 5.4), layout="constrained")
    ax = fig.subplots()
    ax.set_title("Answer only when confident: accuracy against coverage (test set)")
    points = [(float(r["threshold"]), float(r["coverage"]), float(r["accuracy"]))
              for r in rows if r.get("accuracy") is not None]
    if not points:
        _message(ax, "no threshold answers any image")
        return fig
    thresholds, coverage, accuracy = (np.array(v) for v in zip(*points, strict=True))
    ax.plot(coverage, accuracy, marker="o", markersize=3, linewidth=2,
            color=SERIES_COLORS["training"], label="thresholds 0 to "
            f"{thresholds.max():g}")
    first = int(np.argmin(thresholds))
    ax.plot(coverage[first], accuracy[first], "s", markersize=8, color="0.3",
            label=f"threshold {thresholds[first]:g}: answer all")
    for t in marked:
        hits = np.flatnonzero(np.isclose(thresholds, t))
        if not len(hits):
            continue
        i = int(hits[0])
        ax.plot(coverage[i], accuracy[i], "o", markersize=9, color=SERIES_COLORS["validation"])
        ax.annotate(f"threshold {t:g}: answers {100 * coverage[i]:.1f} %,\n"
                    f"{100 * accuracy[i]:.2f} % of them right",
                    (coverage[i], accuracy[i]), xytext=(-12, -10), textcoords="offset points",
                    ha="right", va="top", fontsize=9.5, color="#1a1a1a")
    span_x = max(float(coverage.max() - coverage.min()), 0.01)
    ax.set_xlim(coverage.min() - 0.35 * span_x, min(1.0 + 0.05 * span_x, 1.05))
    low = float(accuracy.min())
    span_y = max(float(accuracy.max()) - low, 0.005)
    ax.set_ylim(low - 0.35 * span_y, min(1.0 + 0.08 * span_y, 1.05))
    ax.set_xlabel("coverage: share of the test images answered")
    ax.set_ylabel("accuracy on the answered images")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    return fig


# ------------------------------------------------------------------------ points maps
def _class_colors(k: int) -> list[Any]:
    cmap = mpl.colormaps["tab10" if k <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(k)]


def _grid_columns(n: int) -> int:
    """Panels per row: 2 x 2 for four, else rows of up to three."""
    return 2 if n == 4 else min(n, 3)


@_styled
def points_map(
    panels: Sequence[tuple[str, ArrayLike]],
    labels: Sequence[int] | NDArray[np.integer],
    predicted: Sequence[int] | NDArray[np.integer],
    class_names: Sequence[str],
    method: str = "PCA",
    max_outlined: int = 30,
) -> Figure:
    """The same images as points in each layer: one panel per ``(title, points (n, 2))``.

    Points are coloured by their true class (``labels``); up to ``max_outlined`` of the
    images whose ``predicted`` class is wrong are outlined in black. ``method`` names the
    projection (``"PCA"`` keeps distances, so both axes of a panel share one scale;
    ``"t-SNE"``'s distances between clusters mean little). The axes carry no ticks: the
    coordinates mean nothing by themselves. The class legend sits to the right of the panels.
    """
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    if len(labels) != len(predicted):
        raise ValueError(f"{len(labels)} labels but {len(predicted)} predictions")
    n = len(panels)
    columns = max(1, _grid_columns(n))
    rows = max(1, math.ceil(n / columns))
    fig = Figure(figsize=(4.6 * columns + 1.9, 4.3 * rows + 0.8), layout="constrained")
    wrong = np.flatnonzero(labels != predicted)
    outlined = wrong[:max_outlined]
    shown = f"all {len(wrong)}" if len(outlined) == len(wrong) else \
        f"{len(outlined)} of {len(wrong)}"
    fig.suptitle(f"The test images as points, layer by layer ({method}; {len(labels):,} "
                 f"images, {shown} misclassified outlined)")
    axes = _panel_grid(fig, n, rows, columns, "no layers")
    if axes is None:
        return fig
    colors = _class_colors(len(class_names))
    for ax, (title, values) in zip(axes, panels, strict=False):
        points = np.asarray(values, dtype=np.float64)
        if points.shape != (len(labels), 2):
            raise ValueError(f"panel {title!r}: points have shape {points.shape}, "
                             f"expected ({len(labels)}, 2)")
        for c, name in enumerate(class_names):
            members = labels == c
            ax.scatter(points[members, 0], points[members, 1], s=9, color=colors[c],
                       alpha=0.75, linewidths=0, label=name)
        ax.scatter(points[outlined, 0], points[outlined, 1], s=60, facecolors="none",
                   edgecolors="black", linewidths=1.2, label="misclassified")
        ax.set_title(title, fontsize=12)
        # No ticks: a projection's coordinates mean nothing by themselves (and tick labels
        # are what makes the layout of many panels slow).
        ax.set_xticks([])
        ax.set_yticks([])
        if method == "PCA":
            ax.set_aspect("equal", adjustable="datalim")
            ax.set_xlabel("principal component 1")
            ax.set_ylabel("principal component 2")
        else:
            ax.set_xlabel(f"{method} 1")
            ax.set_ylabel(f"{method} 2")
    handles, names = axes[0].get_legend_handles_labels()
    legend = fig.legend(handles, names, loc="outside right center", title="true class",
                        frameon=False, markerscale=1.6)
    for handle in legend.legend_handles:
        if handle is not None and hasattr(handle, "set_alpha"):
            handle.set_alpha(1.0)
    return fig
