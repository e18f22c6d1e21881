"""Figures and report.html: every file written, PNGs that decode, a page that shows the metrics."""

from __future__ import annotations

import base64
import html
import json
import shutil
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from digitnet import plots
from digitnet.cli import main
from digitnet.data.datasets import Dataset, load_dataset
from digitnet.experiment import METRICS_FILE, MODEL_FILE, train_run
from digitnet.metrics import classification_report
from digitnet.model_io import TrainedModel
from digitnet.report import (
    FIGURE_FILES,
    OPTIONAL_FIGURE_FILES,
    REPORT_FILE,
    ROBUSTNESS_FILE,
    ReportError,
    format_percent,
    format_score,
    most_confident_mistakes,
    samples_per_class,
    write_report,
)
from digitnet.training import TrainConfig

SMALL = TrainConfig(hidden=(32,), epochs=3, batch_size=64, lr=5e-3, seed=0)


@dataclass
class Run:
    folder: Path
    model: TrainedModel
    metrics: dict[str, Any]
    dataset: Dataset


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory, digits: Dataset) -> Run:
    """A small network trained on the 8x8 digits, with its report written."""
    folder = tmp_path_factory.mktemp("run")
    outcome = train_run(digits, SMALL, folder)
    write_report(folder, outcome.model, outcome.metrics, digits)
    return Run(folder, outcome.model, outcome.metrics, digits)


class PageParser(HTMLParser):
    """Collects image sources, link targets, tables (by id, as rows of cell texts) and <pre>."""

    def __init__(self) -> None:
        super().__init__()
        self.img_src: list[str] = []
        self.hrefs: list[str] = []
        self.tags: set[str] = set()
        self.tables: dict[str, list[list[str]]] = {}
        self.pre: dict[str, str] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._pre: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "img":
            self.img_src.append(a.get("src") or "")
        elif tag == "a" and a.get("href"):
            self.hrefs.append(a["href"] or "")
        elif tag == "table":
            self._table = a.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "pre":
            self._pre = a.get("id") or "pre"
            self.pre[self._pre] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "pre":
            self._pre = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._pre is not None:
            self.pre[self._pre] += data


def parse_page(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def rows_by_first_cell(table: list[list[str]]) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in table if row}


# --------------------------------------------------------------------------- files
def test_every_figure_and_the_page_are_written(digits_run: Run) -> None:
    for name in (*FIGURE_FILES, ROBUSTNESS_FILE, REPORT_FILE, MODEL_FILE, METRICS_FILE):
        assert (digits_run.folder / name).is_file(), name
    assert len(FIGURE_FILES) == 9
    for name in ("robustness.png", "coverage.png", "points_map.png"):
        assert name in FIGURE_FILES
    for name in OPTIONAL_FIGURE_FILES:  # t-SNE only with --tsne
        assert not (digits_run.folder / name).exists()
    leftovers = [p.name for p in digits_run.folder.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_pngs_decode_with_sensible_dimensions(digits_run: Run) -> None:
    for name in FIGURE_FILES:
        with Image.open(digits_run.folder / name) as image:
            assert image.format == "PNG", name
            width, height = image.size
            pixels = np.asarray(image.convert("L"), dtype=np.float64)
        assert 500 <= width <= 2000, (name, image.size)
        assert 300 <= height <= 2000, (name, image.size)
        assert pixels.std() > 5, f"{name} looks blank"


def test_page_embeds_and_links_every_figure(digits_run: Run) -> None:
    page = parse_page(digits_run.folder / REPORT_FILE)
    embedded = [base64.b64decode(src.split(",", 1)[1]) for src in page.img_src]
    for name in FIGURE_FILES:
        assert name in page.hrefs, f"report.html does not link {name}"
        assert (digits_run.folder / name).read_bytes() in embedded, f"{name} is not embedded"
    assert len(page.img_src) == len(FIGURE_FILES)


def test_page_is_self_contained(digits_run: Run) -> None:
    page = parse_page(digits_run.folder / REPORT_FILE)
    assert all(src.startswith("data:image/png;base64,") for src in page.img_src)
    assert not page.tags & {"script", "link", "iframe"}
    external = [h for h in page.hrefs if "://" in h]
    assert external == []


def test_page_shows_the_metrics_of_metrics_json(digits_run: Run) -> None:
    metrics = json.loads((digits_run.folder / METRICS_FILE).read_text())
    page = parse_page(digits_run.folder / REPORT_FILE)

    overall = rows_by_first_cell(page.tables["summary-metrics"])
    assert overall["accuracy"] == [format_score(metrics["test_accuracy"])]
    assert overall["loss (cross-entropy)"] == [format_score(metrics["test_loss"])]

    averages = rows_by_first_cell(page.tables["average-metrics"])
    for key, label in (("precision", "precision"), ("recall", "recall"), ("f1", "F1")):
        assert averages[label] == [format_score(metrics[f"{key}_macro"]),
                                   format_score(metrics[f"{key}_weighted"])]

    per_class = rows_by_first_cell(page.tables["per-class-metrics"])
    assert [k for k in per_class if k != "class"] == metrics["class_names"]
    for name, row in metrics["per_class"].items():
        assert per_class[name] == [format_score(row["precision"]), format_score(row["recall"]),
                                   format_score(row["f1"]), f"{row['support']:,}"]

    assert html.unescape(page.pre["classification-report"]) == classification_report(metrics)
    config = rows_by_first_cell(page.tables["training-config"])
    assert config["hidden"] == ["32"]
    assert config["epochs"] == ["3"]
    history = page.tables["history"]
    assert len(history) == 1 + metrics["epochs_run"]


def test_the_numbers_differ_between_runs(digits_run: Run, tmp_path: Path) -> None:
    """The page shows *this* run's metrics: change them and the page changes."""
    metrics = json.loads(json.dumps(digits_run.metrics))
    metrics["test_accuracy"] = 0.123456
    metrics["f1_macro"] = 0.654321
    write_report(tmp_path, digits_run.model, metrics, digits_run.dataset)
    page = parse_page(tmp_path / REPORT_FILE)
    assert rows_by_first_cell(page.tables["summary-metrics"])["accuracy"] == ["0.1235"]
    assert rows_by_first_cell(page.tables["average-metrics"])["F1"][0] == "0.6543"


def test_robustness_json_holds_the_curves(digits_run: Run) -> None:
    numbers = json.loads((digits_run.folder / ROBUSTNESS_FILE).read_text())
    damage, coverage = numbers["damage"], numbers["coverage"]
    n_test = len(digits_run.dataset.y_test)
    assert damage["n_test"] == coverage["n_test"] == n_test
    assert damage["sample_size"] == n_test  # 360 digits: fewer than the sample size
    assert damage["undamaged_accuracy"] == digits_run.metrics["test_accuracy"]
    assert set(damage["curves"]) == {"noise", "rotation", "thickness"}
    for curve in damage["curves"].values():
        assert len(curve["levels"]) == len(curve["accuracy"]) >= 5
        assert curve["accuracy"][curve["levels"].index(0)] == damage["undamaged_accuracy"]
    first = coverage["rows"][0]
    assert first["threshold"] == 0 and first["coverage"] == 1.0
    assert first["accuracy"] == digits_run.metrics["test_accuracy"]


def test_page_shows_the_robustness_tables(digits_run: Run) -> None:
    numbers = json.loads((digits_run.folder / ROBUSTNESS_FILE).read_text())
    page = parse_page(digits_run.folder / REPORT_FILE)
    for kind, curve in numbers["damage"]["curves"].items():
        table = page.tables[f"robustness-{kind}"]
        assert [row[1] for row in table[1:]] == [format_percent(a) for a in curve["accuracy"]]
    thickness = [row[0] for row in page.tables["robustness-thickness"][1:]]
    assert thickness == ["-1", "0", "+1", "+2", "+3"]
    coverage = rows_by_first_cell(page.tables["coverage"])
    assert list(coverage)[1:] == ["0", "0.5", "0.9", "0.99", "0.999"]
    rows = {r["threshold"]: r for r in numbers["coverage"]["rows"]}
    n = numbers["coverage"]["n_test"]
    for key, row in coverage.items():
        if key == "threshold":
            continue
        record = rows[float(key)]
        assert row[0] == format_percent(record["coverage"])
        assert row[1] == f"{round(record['coverage'] * n):,} of {n:,}"
    assert coverage["0"][2] == format_percent(digits_run.metrics["test_accuracy"])
    text = (digits_run.folder / REPORT_FILE).read_text(encoding="utf-8")
    assert "Measured on all 360 test images" in text  # the caption names the sample
    assert "{damage_sample}" not in text and "{points_sample}" not in text


def test_report_refuses_a_different_data_set(digits_run: Run, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    other = Dataset("other", rng.integers(0, 255, (50, 784), dtype=np.uint8),
                    np.arange(50) % 10, rng.integers(0, 255, (20, 784), dtype=np.uint8),
                    np.arange(20) % 10, digits_run.dataset.class_names, (28, 28), "synthetic")
    with pytest.raises(ReportError, match="64 features"):
        write_report(tmp_path, digits_run.model, digits_run.metrics, other)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- CLI
def test_report_command_regenerates_the_figures(
    digits_run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(digits_run.folder, folder)
    for name in (*FIGURE_FILES, REPORT_FILE):
        (folder / name).unlink()
    # No --dataset: the data set is taken from metrics.json (digits needs no download).
    assert main(["report", str(folder), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert str(folder / REPORT_FILE) in out
    for name in (*FIGURE_FILES, REPORT_FILE):
        assert (folder / name).is_file(), name
    page = parse_page(folder / REPORT_FILE)
    per_class = rows_by_first_cell(page.tables["per-class-metrics"])
    assert per_class["0"][0] == format_score(digits_run.metrics["per_class"]["0"]["precision"])


def test_report_tsne_adds_its_figure(
    digits_run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(digits_run.folder, folder)
    assert main(["report", str(folder), "--tsne", "--no-progress"]) == 0
    assert f"drew {len(FIGURE_FILES) + 1} figures" in capsys.readouterr().err
    tsne = folder / OPTIONAL_FIGURE_FILES[0]
    with Image.open(tsne) as image:
        assert image.format == "PNG" and image.size[0] >= 600
    page = parse_page(folder / REPORT_FILE)
    embedded = [base64.b64decode(src.split(",", 1)[1]) for src in page.img_src]
    assert len(page.img_src) == len(FIGURE_FILES) + 1
    assert tsne.read_bytes() in embedded and tsne.name in page.hrefs
    # Redrawn without --tsne: the t-SNE map goes, so the folder holds what the page shows.
    assert main(["report", str(folder), "--no-progress"]) == 0
    assert not tsne.exists()
    assert len(parse_page(folder / REPORT_FILE).img_src) == len(FIGURE_FILES)


def test_an_augmented_run_shows_its_augmentation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from digitnet.augment import AUGMENTERS, variants
    from digitnet.report import AUGMENT_FIGURE, AUGMENT_VARIANTS

    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--hidden", "16",
                 "--augment", "affine", "--out", str(out), "--no-progress"]) == 0
    figure = out / AUGMENT_FIGURE.filename
    with Image.open(figure) as image:
        assert image.format == "PNG" and image.size[0] >= 600
    page = parse_page(out / REPORT_FILE)
    assert figure.name in page.hrefs and len(page.img_src) == len(FIGURE_FILES) + 1
    # the figure shows the library's distortions of one training image per class
    digits = load_dataset("digits")
    first = samples_per_class(digits.y_train, 1, seed=0)
    augmenter = AUGMENTERS["affine"]
    assert augmenter is not None
    grid = variants(digits.x_train[first], augmenter.scaled_for((8, 8)), AUGMENT_VARIANTS,
                    seed=0, image_shape=digits.image_shape)
    assert grid.shape == (10, AUGMENT_VARIANTS + 1, 8, 8)
    assert (grid[:, 0] == digits.x_train[first].reshape(10, 8, 8)).all()
    assert not (grid[:, 1] == grid[:, 0]).all()
    # the same folder trained again without augmentation: the figure goes
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "16",
                 "--out", str(out), "--force", "--no-progress"]) == 0
    assert not figure.exists()
    capsys.readouterr()


def test_train_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "16",
                 "--out", str(out), "--no-progress"]) == 0
    assert f"report: {out / REPORT_FILE}" in capsys.readouterr().out
    for name in (*FIGURE_FILES, ROBUSTNESS_FILE, REPORT_FILE):
        assert (out / name).is_file(), name


def test_train_no_plots_writes_no_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "16",
                 "--out", str(out), "--no-progress", "--no-plots"]) == 0
    assert "report:" not in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [METRICS_FILE, MODEL_FILE]
    # Over a run with a report: --force --no-plots removes its figures and numbers.
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "16",
                 "--out", str(out), "--no-progress", "--force"]) == 0
    (out / OPTIONAL_FIGURE_FILES[0]).write_bytes(b"an earlier t-SNE map")
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "16",
                 "--out", str(out), "--no-progress", "--no-plots", "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [METRICS_FILE, MODEL_FILE]


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("digitnet report: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def test_missing_run_dir_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    assert main(["report", str(missing)]) == 2
    _one_line_error(capsys, str(missing), "run folder not found")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "metrics.json: not found"),
        ("{not json", "not readable JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"test_accuracy": 0.5}', "lacks test_loss"),
    ],
)
def test_bad_metrics_file_is_a_one_line_error(
    digits_run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    content: str | None, needle: str,
) -> None:
    shutil.copy(digits_run.folder / MODEL_FILE, tmp_path / MODEL_FILE)
    if content is not None:
        (tmp_path / METRICS_FILE).write_text(content)
    assert main(["report", str(tmp_path), "--dataset", "digits"]) == 2
    _one_line_error(capsys, needle)
    assert not (tmp_path / REPORT_FILE).exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("confusion_matrix", "x"),
        ("confusion_matrix", [[1, 2], [3, 4]]),
        ("per_class", 5),
        ("test_accuracy", "NaN"),
        ("test_accuracy", 1.5),
        ("class_names", ["only one"]),
        ("history", [{"epoch": "a"}]),
        ("train_seconds", "z"),
        ("n_samples", -3),
        ("config", [1]),
    ],
)
def test_a_tampered_metrics_field_is_a_one_line_error(
    digits_run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str,
    value: object,
) -> None:
    shutil.copy(digits_run.folder / MODEL_FILE, tmp_path / MODEL_FILE)
    metrics = json.loads((digits_run.folder / METRICS_FILE).read_text())
    metrics[field] = float("nan") if value == "NaN" else value
    (tmp_path / METRICS_FILE).write_text(json.dumps(metrics))  # NaN as JSON's NaN token
    assert main(["report", str(tmp_path), "--dataset", "digits"]) == 2
    _one_line_error(capsys, str(tmp_path / METRICS_FILE), field)
    assert not (tmp_path / REPORT_FILE).exists()


def test_missing_model_is_a_one_line_error(
    digits_run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(digits_run.folder / METRICS_FILE, tmp_path / METRICS_FILE)
    assert main(["report", str(tmp_path), "--dataset", "digits"]) == 2
    _one_line_error(capsys, "model.npz", "not found")


# ----------------------------------------------------------------------- selection
def test_most_confident_mistakes_come_first() -> None:
    proba = np.array([
        [0.9, 0.1, 0.0],   # 0: correct
        [0.6, 0.4, 0.0],   # 1: wrong (true 1), confidence 0.6
        [0.0, 0.05, 0.95],  # 2: wrong (true 0), confidence 0.95
        [0.2, 0.7, 0.1],   # 3: correct
        [0.1, 0.1, 0.8],   # 4: wrong (true 1), confidence 0.8
    ])
    y_true = np.array([0, 1, 0, 1, 1])
    assert most_confident_mistakes(proba, y_true, 10).tolist() == [2, 4, 1]
    assert most_confident_mistakes(proba, y_true, 2).tolist() == [2, 4]
    assert most_confident_mistakes(proba, np.argmax(proba, axis=1), 5).tolist() == []


def test_samples_per_class_groups_by_class_and_is_seeded() -> None:
    labels = np.array([0, 1, 2, 0, 1, 0, 0, 2, 0, 1])
    chosen = samples_per_class(labels, 3, seed=1)
    assert labels[chosen].tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert len(set(chosen.tolist())) == len(chosen)
    assert np.array_equal(chosen, samples_per_class(labels, 3, seed=1))


# -------------------------------------------------------------------- plot functions
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _texts(fig: Any) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_learning_curves_without_validation_or_epochs() -> None:
    history = [{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5 + 0.1 * e,
                "val_loss": None, "val_accuracy": None} for e in (1, 2, 3)]
    fig = plots.learning_curves(history, best_epoch=3)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["training"]
    assert fig.axes[0].get_yscale() == "log"
    for record in history:
        record["val_loss"], record["val_accuracy"] = 1.5, 0.6
    fig = plots.learning_curves(history, best_epoch=2)
    labels = [line.get_label() for line in fig.axes[1].get_lines()]
    assert labels == ["training", "validation", "best epoch (2, weights kept)"]
    empty = plots.learning_curves([])
    assert "no completed epoch" in _texts(empty)
    plots.save_png(empty)


def test_confusion_matrix_annotates_nonzero_cells_in_both_panels() -> None:
    cm = np.array([[5, 0, 1], [0, 4, 0], [2, 0, 3]])
    fig = plots.confusion_matrix(cm, ["a", "b", "c"])
    texts = _texts(fig)
    counts, shares = texts[: np.count_nonzero(cm)], texts[np.count_nonzero(cm):]
    assert counts == ["5", "1", "4", "2", "3"]
    assert shares == ["83.3", "16.7", "100", "40.0", "60.0"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="expected \\(2, 2\\)"):
        plots.confusion_matrix(cm, ["a", "b"])


def test_per_class_scores_draw_three_bars_per_class() -> None:
    per_class = {n: {"precision": 0.95, "recall": 0.97, "f1": 0.96, "support": 10}
                 for n in FASHION_NAMES}
    fig = plots.per_class_scores(per_class)
    assert len(fig.axes[0].patches) == 3 * len(FASHION_NAMES)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(FASHION_NAMES)
    low, high = fig.axes[0].get_ylim()
    assert 0.0 < low < 0.95 and high == 1.0


def test_gallery_titles_name_true_and_predicted_classes_in_order() -> None:
    images = np.arange(3 * 12, dtype=np.uint8).reshape(3, 12)
    fig = plots.misclassified_gallery(images, [0, 9, 5], [7, 8, 6], [0.991, 0.5, 0.99996],
                                      FASHION_NAMES, (3, 4), n_errors=3, n_total=100)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["true: T-shirt/top\npredicted: Sneaker (99.1 %)",
                      "true: Ankle boot\npredicted: Bag (50.0 %)",
                      "true: Sandal\npredicted: Shirt (> 99.99 %)"]
    assert "3 of 100 test images misclassified" in fig.get_suptitle()
    assert fig.axes[0].images[0].get_array().shape == (3, 4)
    with pytest.raises(ValueError, match="expected 5x5 = 25"):
        plots.misclassified_gallery(images, [0, 1, 2], [1, 2, 3], [1, 1, 1], FASHION_NAMES,
                                    (5, 5))
    none = plots.misclassified_gallery(np.zeros((0, 12)), [], [], [], FASHION_NAMES, (3, 4))
    assert "no misclassified images" in _texts(none)


def test_weight_tiles_show_each_unit_centred_at_zero() -> None:
    rng = np.random.default_rng(0)
    W = rng.normal(size=(6 * 4, 10))
    fig = plots.weight_tiles(W, (6, 4), max_units=64)
    mosaic = np.ma.getdata(fig.axes[0].images[0].get_array())
    pad = 1
    # 10 units -> 4 columns, 3 rows of 6x4 tiles with one pixel between them.
    assert mosaic.shape == (3 * (6 + pad) + pad, 4 * (4 + pad) + pad)
    first = mosaic[pad : pad + 6, pad : pad + 4]
    np.testing.assert_allclose(first, W[:, 0].reshape(6, 4) / np.abs(W[:, 0]).max())
    norm = fig.axes[0].images[0].norm
    assert (norm.vmin, norm.vmax) == (-1.0, 1.0)
    assert "all 10 hidden units" in fig.axes[0].get_title()
    many = plots.weight_tiles(rng.normal(size=(24, 100)), (6, 4), max_units=64)
    assert "first 64 of 100" in many.axes[0].get_title()
    with pytest.raises(ValueError, match="expected \\(784, n_hidden\\)"):
        plots.weight_tiles(W, (28, 28))


def test_training_samples_have_one_labelled_row_per_class() -> None:
    labels = np.array([0, 1, 2, 1, 0, 2, 2])
    images = np.repeat(labels[:, None] * 100, 16, axis=1)
    fig = plots.training_samples(images, labels, ["zero", "one", "two"], (4, 4), per_class=2)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["zero", "one", "two"]
    mosaic = np.ma.getdata(ax.images[0].get_array())
    # Row of class "two" holds only images whose pixels are 200.
    row = mosaic[1 + 2 * 5 : 1 + 2 * 5 + 4]
    assert np.nanmin(row) == np.nanmax(row) == 200


def test_damage_curves_draw_one_panel_per_kind_with_the_undamaged_line() -> None:
    curves = {
        "noise": {"title": "Gaussian noise", "unit": "std", "levels": [0.0, 0.5],
                  "accuracy": [0.9, 0.4]},
        "thickness": {"title": "Stroke thickness", "unit": "pixels", "levels": [-1, 0, 2],
                      "accuracy": [0.7, 0.9, 0.5]},
    }
    fig = plots.damage_curves(curves, 0.9, sample_size=100, n_test=500, n_classes=10)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["Gaussian noise", "Stroke thickness"]
    assert all(ax.get_xlabel() for ax in axes) and axes[0].get_ylabel() == "accuracy"
    line = axes[1].get_lines()[0]
    assert list(line.get_xdata()) == [-1, 0, 2] and list(line.get_ydata()) == [0.7, 0.9, 0.5]
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert labels == ["accuracy when damaged", "undamaged, same images (90.00 %)",
                      "chance (10 %)"]
    assert "sample of 100 of 500" in fig.get_suptitle()
    assert "all 500" in plots.damage_curves(curves, 0.9, 500, 500).get_suptitle()
    plots.save_png(fig)


def test_coverage_curve_marks_the_chosen_thresholds() -> None:
    rows = [{"threshold": t, "coverage": c, "accuracy": a} for t, c, a in
            ((0.0, 1.0, 0.95), (0.5, 0.97, 0.97), (0.9, 0.9, 0.99), (0.99, 0.8, 1.0),
             (0.999, 0.0, None))]
    fig = plots.coverage_curve(rows, marked=(0.5, 0.9, 0.99))
    ax = fig.axes[0]
    curve = ax.get_lines()[0]
    assert list(curve.get_xdata()) == [1.0, 0.97, 0.9, 0.8]  # the unanswered row is left out
    notes = [t.get_text() for t in ax.texts]
    assert [n.split(":")[0] for n in notes] == ["threshold 0.5", "threshold 0.9",
                                                "threshold 0.99"]
    assert "answers 90.0 %" in notes[1] and "99.00 % of them right" in notes[1]
    assert ax.get_xlabel().startswith("coverage") and ax.get_ylabel().startswith("accuracy")
    empty = plots.coverage_curve([{"threshold": 1.0, "coverage": 0.0, "accuracy": None}])
    assert "no threshold answers any image" in _texts(empty)


def test_points_map_colours_classes_and_outlines_mistakes() -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 4
    predicted = labels.copy()
    predicted[[3, 7, 11]] = 0
    panels = [(f"layer {i}", rng.normal(size=(40, 2))) for i in range(3)]
    fig = plots.points_map(panels, labels, predicted, ["a", "b", "c", "d"], max_outlined=2)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in titled] == ["layer 0", "layer 1", "layer 2"]
    rings = titled[0].collections[-1]
    assert len(rings.get_offsets()) == 2  # max_outlined of the 3 mistakes
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["a", "b", "c", "d", "misclassified"]
    assert "2 of 3 misclassified outlined" in fig.get_suptitle()
    assert titled[0].get_xlabel() == "principal component 1"
    tsne = plots.points_map(panels, labels, predicted, ["a", "b", "c", "d"], method="t-SNE")
    assert tsne.axes[0].get_xlabel() == "t-SNE 1"
    with pytest.raises(ValueError, match="expected \\(40, 2\\)"):
        plots.points_map([("bad", np.zeros((39, 2)))], labels, predicted, ["a", "b", "c", "d"])


# -------------------------------------------------------------------- real MNIST
@pytest.mark.mnist
def test_report_on_real_mnist(mnist: Dataset, tmp_path: Path) -> None:
    subset = Dataset("mnist", mnist.x_train[:3000], mnist.y_train[:3000], mnist.x_test[:1000],
                     mnist.y_test[:1000], mnist.class_names, mnist.image_shape, mnist.source)
    outcome = train_run(subset, TrainConfig(hidden=(64,), epochs=2, seed=0), tmp_path)
    page = write_report(tmp_path, outcome.model, outcome.metrics, subset)
    parsed = parse_page(page)
    assert len(parsed.img_src) == len(FIGURE_FILES)
    with Image.open(tmp_path / "first_layer_weights.png") as image:
        assert image.size[0] >= 600 and image.size[1] >= 600
    accuracy = rows_by_first_cell(parsed.tables["summary-metrics"])["accuracy"]
    assert accuracy == [format_score(outcome.metrics["test_accuracy"])]


def _a_few_figures() -> dict[str, Any]:
    cm = np.array([[5, 1, 0], [0, 6, 1], [2, 0, 4]])
    scores = {c: {"precision": 0.8, "recall": 0.7, "f1": 0.75, "support": 7} for c in "abc"}
    return {"cm.png": plots.confusion_matrix(cm, list("abc")),
            "scores.png": plots.per_class_scores(scores),
            "curves.png": plots.learning_curves(
                [{"epoch": e, "loss": 1 / e, "accuracy": 1 - 0.1 / e, "val_loss": 1.1 / e,
                  "val_accuracy": 1 - 0.12 / e, "lr": 1e-3} for e in range(1, 5)], 4)}


def test_figures_rendered_at_once_are_the_bytes_rendered_one_by_one() -> None:
    one_by_one = {name: plots.save_png(fig) for name, fig in _a_few_figures().items()}
    at_once = plots.save_pngs(_a_few_figures(), workers=3)
    assert list(at_once) == list(one_by_one) and at_once == one_by_one


def test_figures_are_rendered_here_from_a_thread_other_than_the_main_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    def no_fork(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("forked from a server's thread")

    monkeypatch.setattr(plots, "ProcessPoolExecutor", no_fork)
    out: dict[str, bytes] = {}
    thread = threading.Thread(target=lambda: out.update(plots.save_pngs(_a_few_figures())))
    thread.start()
    thread.join()
    assert sorted(out) == ["cm.png", "curves.png", "scores.png"]
    assert all(png.startswith(b"\x89PNG") for png in out.values())


def _killed_renderer(name: str) -> bytes:
    import os

    os._exit(9)  # as the kernel's OOM killer would end it


def test_a_renderer_that_is_killed_leaves_the_rendering_to_this_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plots, "_render", _killed_renderer)  # the forked renderers see it
    one_by_one = {name: plots.save_png(fig) for name, fig in _a_few_figures().items()}
    assert plots.save_pngs(_a_few_figures(), workers=2) == one_by_one
