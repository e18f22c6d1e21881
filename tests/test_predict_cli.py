"""``digitnet predict``: output formats, exit codes, bad files, and real digits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from trained_models import small_model

from digitnet.cli import main
from digitnet.model_io import load_model, save_model
from digitnet.predict import predict_file

FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def drawing(path: Path, points: list[tuple[int, int]], size: tuple[int, int] = (200, 200),
            mode: str = "RGB") -> Path:
    image = Image.new("L", size, 255)
    ImageDraw.Draw(image).line(points, fill=0, width=14, joint="curve")
    image.convert(mode).save(path)
    return path


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    """Two good drawings and one bad file of each kind."""
    truncated = tmp_path / "truncated.png"
    noise = np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)
    Image.fromarray(noise).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:3000])
    blank = tmp_path / "blank.png"
    Image.new("L", (50, 50), 255).save(blank)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    return {
        "seven": drawing(tmp_path / "seven.png", [(50, 30), (150, 30), (80, 180)]),
        "one": drawing(tmp_path / "one.jpg", [(100, 20), (100, 180)]),
        "truncated": truncated,
        "blank": blank,
        "text": text,
        "missing": tmp_path / "missing.png",
    }


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_the_prediction_and_its_probability(model_path, images, capsys) -> None:
    code, out, err = run_cli(capsys, "--model", model_path, images["seven"], images["one"])
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == 2
    model = load_model(model_path)
    for line, key in zip(lines, ("seven", "one"), strict=True):
        pred = predict_file(model, images[key])
        assert line == f"{images[key]}: {pred.name} ({pred.probability:.1%})"


def test_top_k(model_path, images, capsys) -> None:
    code, out, _ = run_cli(capsys, "--model", model_path, "--top", "3", images["seven"])
    assert code == 0
    path, _, rest = out.strip().partition(": ")
    assert path == str(images["seven"])
    entries = rest.split(", ")
    assert len(entries) == 3
    percents = [float(e.rsplit("(", 1)[1].rstrip("%)")) for e in entries]
    assert percents == sorted(percents, reverse=True)


def test_json_has_all_probabilities(model_path, images, capsys) -> None:
    code, out, _ = run_cli(capsys, "--model", model_path, "--json", "--top", "2",
                           images["seven"], images["blank"])
    assert code == 1
    records = json.loads(out)
    good, bad = records
    model = load_model(model_path)
    assert list(good["probabilities"]) == list(model.class_names)
    assert sum(good["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert good["prediction"] == max(good["probabilities"], key=good["probabilities"].get)
    assert good["probability"] == max(good["probabilities"].values())
    assert good["top"][0]["class"] == good["prediction"] and len(good["top"]) == 2
    assert bad["file"] == str(images["blank"]) and "blank" in bad["error"]


def test_bad_files_get_one_line_each_and_the_others_are_still_predicted(
    model_path, images, capsys
) -> None:
    order = ["truncated", "seven", "blank", "text", "missing", "one"]
    code, out, err = run_cli(capsys, "--model", model_path, *(images[k] for k in order))
    assert code == 1
    assert [line.split(": ")[0] for line in out.splitlines()] == [
        str(images["seven"]), str(images["one"])]
    errors = err.splitlines()
    assert len(errors) == 4 and "Traceback" not in err
    expected = {"truncated": "truncated", "blank": "blank", "text": "not a PNG, JPEG, BMP or GIF",
                "missing": "file not found"}
    for line, (key, reason) in zip(errors, expected.items(), strict=True):
        assert line.startswith(f"digitnet predict: error: {images[key]}: ")
        assert reason in line


def test_usage_errors_exit_2(model_path, images, capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "--model", model_path, "--top", "11", images["seven"])
    assert code == 2 and "--top 11" in err and len(err.splitlines()) == 1
    code, _, err = run_cli(capsys, "--model", tmp_path / "nope.npz", images["seven"])
    assert code == 2 and "model file not found" in err
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--model", str(model_path), "--top", "0", str(images["seven"])])
    assert exc.value.code == 2


def test_run_folder_is_accepted_as_model(model_path, images, capsys) -> None:
    code, out, _ = run_cli(capsys, "--model", model_path.parent, images["seven"])
    assert code == 0 and out.startswith(f"{images['seven']}: ")


def test_show_draws_the_network_input(model_path, images, capsys) -> None:
    code, out, _ = run_cli(capsys, "--model", model_path, "--show", images["one"])
    assert code == 0
    lines = out.splitlines()
    side = load_model(model_path).image_shape[0]
    assert len(lines) == 1 + side
    art = lines[1:]
    assert any(set(row) & set("#%@") for row in art)  # strong ink somewhere
    middle_columns = {len(row) - len(row.lstrip()) for row in art if row.strip()}
    assert max(middle_columns) - min(middle_columns) <= 6  # a vertical stroke stays vertical


def test_class_names_are_printed(model_path, images, capsys, tmp_path) -> None:
    model = load_model(model_path)
    model.class_names = FASHION_NAMES
    renamed = save_model(model, tmp_path / "named.npz")
    code, out, _ = run_cli(capsys, "--model", renamed, "--top", "2", images["seven"])
    assert code == 0
    names = [entry.rsplit(" (", 1)[0] for entry in out.strip().split(": ", 1)[1].split(", ")]
    assert all(name in FASHION_NAMES for name in names)


def test_digits_model_reads_8x8(request, tmp_path_factory, images, capsys) -> None:
    path = small_model(request, tmp_path_factory, "digits")
    assert load_model(path).image_shape == (8, 8)
    code, out, _ = run_cli(capsys, "--model", path, "--json", images["one"])
    assert code == 0 and len(json.loads(out)[0]["probabilities"]) == 10


def test_help_is_fast_to_import() -> None:
    """The predict and serve modules must not import Pillow, NumPy or Starlette up front."""
    code = ("import sys; from digitnet.cli import build_parser; build_parser(); "
            "heavy = ('PIL', 'numpy', 'starlette', 'uvicorn'); "
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.mnist
def test_disguised_mnist_test_images_get_the_same_prediction(
    model_path, mnist, tmp_path, capsys
) -> None:
    """MNIST test digits enlarged, inverted to dark-on-light, moved off-centre on a larger
    page and saved as PNG or JPEG are classified as the model classifies the originals."""
    model = load_model(model_path)
    assert model.dataset == "mnist"
    digits = mnist.x_test[:60].reshape(-1, 28, 28)
    rng = np.random.default_rng(0)
    paths = []
    for i, digit in enumerate(digits):
        side = int(rng.integers(100, 300))
        page = Image.new("L", (side + 200, side + 150), 255)
        big = Image.fromarray(255 - digit).resize((side, side), Image.Resampling.BICUBIC)
        page.paste(big, (int(rng.integers(0, 200)), int(rng.integers(0, 150))))
        path = tmp_path / f"digit{i}.{'png' if i % 2 else 'jpg'}"
        page.convert("RGB").save(path)
        paths.append(path)
    code, out, _ = run_cli(capsys, "--model", model_path, "--json", *paths)
    assert code == 0
    predicted = [record["index"] for record in json.loads(out)]
    original = model.predict(mnist.x_test[:60])
    assert np.mean(np.array(predicted) == original) >= 0.9
    assert np.mean(np.array(predicted) == mnist.y_test[:60]) >= 0.8
