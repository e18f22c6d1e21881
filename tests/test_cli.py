"""The ``digitnet`` command line: help, train/evaluate on the bundled digits, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import closed_port_url, synthetic_idx, write_idx_folder

from digitnet.cli import main
from digitnet.engine.optimizers import Optimizer  # digitnet train runs the fast engine

REQUIRED_KEYS = (
    "test_accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
    "recall_weighted", "f1_weighted", "per_class", "confusion_matrix", "train_seconds",
    "epochs_run", "history", "config",
)
HISTORY_KEYS = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}

# Figures are another command's job (``digitnet report``); these tests skip drawing them.
FAST = ["--no-progress", "--no-plots"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``digitnet ARGV`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: --help and usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *names: str) -> None:
    """Non-zero exit, exactly one error line naming ``names``, and no traceback."""
    assert code != 0
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1, err
    for name in names:
        assert name in error_lines[0], error_lines[0]


def console_script() -> str:
    script = Path(sys.executable).with_name("digitnet")
    found = str(script) if script.exists() else shutil.which("digitnet")
    assert found, "the digitnet console script is not installed (pip install -e .)"
    return found


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short training run on the bundled digits, shared by the tests below."""
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", "--dataset", "digits", "--epochs", "3", "--out", str(out), *FAST])
    assert code == 0
    return out


# ---------------------------------------------------------------------------- help


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "train" in out and "evaluate" in out
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0
    for option in ("--epochs", "--hidden", "--optimizer", "--data-dir", "--dataset", "--seed"):
        assert option in out
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("digitnet ")


def test_console_script_help_and_error() -> None:
    script = console_script()
    done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "evaluate" in done.stdout
    missing = "/nonexistent/digitnet-data"
    done = subprocess.run(
        [script, "train", "--data-dir", missing, "--epochs", "1", *FAST],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert missing in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("preset", "expected"), [(None, "20"), ("7", "7")])
def test_the_command_lets_openblas_threads_sleep_before_numpy_loads(
    preset: str | None, expected: str
) -> None:
    """OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, when NumPy loads it: the command sets it
    (unless the user did) before anything imports NumPy (see digitnet.cli)."""
    code = ("import os, sys\nfrom digitnet.cli import main\ntry:\n    main(['--version'])\n"
            "except SystemExit:\n    pass\n"
            "print('numpy' in sys.modules, os.environ['OPENBLAS_THREAD_TIMEOUT'])")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if preset is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = preset
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60, check=True)
    assert done.stdout.split()[-2:] == ["False", expected]


# ------------------------------------------------------------------ train/evaluate


def test_train_writes_model_and_metrics(digits_run: Path) -> None:
    assert (digits_run / "model.npz").is_file()
    metrics = json.loads((digits_run / "metrics.json").read_text())
    for key in REQUIRED_KEYS:
        assert key in metrics, key
    assert metrics["config"]["seed"] == 0 and metrics["seed"] == 0
    assert metrics["config"]["epochs"] == 3 and metrics["epochs_run"] == 3
    assert metrics["train_seconds"] > 0
    assert len(metrics["history"]) == 3
    for epoch, record in enumerate(metrics["history"], start=1):
        assert set(record) >= HISTORY_KEYS
        assert record["epoch"] == epoch
        assert all(isinstance(record[k], float) for k in HISTORY_KEYS - {"epoch"})
    assert sorted(metrics["per_class"]) == [str(d) for d in range(10)]
    for row in metrics["per_class"].values():
        assert set(row) == {"precision", "recall", "f1", "support"}
    cm = np.array(metrics["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 360
    assert metrics["test_accuracy"] == pytest.approx(np.trace(cm) / 360)
    assert [r["support"] for r in metrics["per_class"].values()] == cm.sum(axis=1).tolist()
    assert metrics["test_accuracy"] > 0.8  # 3 epochs on 8x8 digits are plenty for this


def test_train_prints_a_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "train", "--dataset", "digits", "--epochs", "1",
                         "--hidden", "16", "--out", str(tmp_path / "r"), *FAST)
    assert code == 0, err
    assert "macro avg" in out and "weighted avg" in out and "test accuracy" in out
    assert "epoch 1/1" in err  # progress lines go to stderr, results to stdout


def test_evaluate_reproduces_the_test_accuracy(
    capsys: pytest.CaptureFixture[str], digits_run: Path
) -> None:
    saved = json.loads((digits_run / "metrics.json").read_text())
    code, out, err = run(capsys, "evaluate", "--model", str(digits_run), "--json",
                         "--dataset", "digits")
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["test_accuracy"] == saved["test_accuracy"]
    assert metrics["confusion_matrix"] == saved["confusion_matrix"]
    assert metrics["f1_macro"] == saved["f1_macro"]


def test_evaluate_text_output_and_dataset_from_the_model(
    capsys: pytest.CaptureFixture[str], digits_run: Path
) -> None:
    code, out, err = run(capsys, "evaluate", "--model", str(digits_run / "model.npz"))
    assert code == 0, err
    assert "on digits (360 test images)" in out
    assert "true \\ pred" in out and "macro avg" in out


def test_train_with_every_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_dir = tmp_path / "r"
    code, _, err = run(
        capsys, "train", "--dataset", "digits", "--hidden", "32", "16", "--activation", "tanh",
        "--epochs", "2", "--batch-size", "64", "--lr", "0.05", "--optimizer", "nesterov",
        "--momentum", "0.8", "--weight-decay", "1e-4", "--schedule", "cosine",
        "--warmup-epochs", "0.5", "--validation-fraction", "0.2", "--patience", "3",
        "--seed", "7", "--dtype", "float64", "--dropout", "0.25", "--input-dropout", "0.1",
        "--label-smoothing", "0.05", "--max-norm", "3.5", "--ema", "0.99", "--augment", "affine",
        "--keep", "last", "--init-scale", "0.5", "--device", "cpu", "--out", str(out_dir),
        *FAST,
    )
    assert code == 0, err
    config = json.loads((out_dir / "metrics.json").read_text())["config"]
    assert config == {
        "hidden": [32, 16], "activation": "tanh", "epochs": 2, "batch_size": 64, "lr": 0.05,
        "optimizer": "nesterov", "momentum": 0.8, "weight_decay": 1e-4, "schedule": "cosine",
        "warmup_epochs": 0.5, "validation_fraction": 0.2, "patience": 3, "seed": 7,
        "dtype": "float64", "dropout": 0.25, "input_dropout": 0.1, "label_smoothing": 0.05,
        "max_norm": 3.5, "ema": 0.99, "augment": "affine", "keep": "last", "init_scale": 0.5,
        "device": "cpu",
    }
    from digitnet.model_io import load_model

    network = load_model(out_dir).network
    assert (network.dropout, network.input_dropout) == (0.25, 0.1)


# ---------------------------------------------------------------------- bad input


def test_nonexistent_data_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    code, _, err = run(capsys, "train", "--data-dir", str(missing), *FAST)
    assert code == 2
    assert_one_line_error(code, err, str(missing), "does not exist")


def test_folder_without_the_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "train", "--data-dir", str(tmp_path), "--out",
                       str(tmp_path / "r"), *FAST)
    assert_one_line_error(code, err, str(tmp_path), "train-images-idx3-ubyte")
    assert not (tmp_path / "r").exists()


def test_corrupt_model_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip file")
    code, _, err = run(capsys, "evaluate", "--model", str(bad), "--dataset", "digits")
    assert_one_line_error(code, err, str(bad))
    code, _, err = run(capsys, "evaluate", "--model", str(tmp_path / "none.npz"))
    assert_one_line_error(code, err, "none.npz", "not found")


def test_model_and_data_set_that_do_not_fit(
    capsys: pytest.CaptureFixture[str], digits_run: Path, tmp_path: Path
) -> None:
    folder = write_idx_folder(tmp_path / "mnist", synthetic_idx(shape=(28, 28)))
    code, _, err = run(capsys, "evaluate", "--model", str(digits_run), "--dataset", "mnist",
                       "--data-dir", str(folder))
    assert_one_line_error(code, err, "64 features", "784")


def test_no_network_and_no_data(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import dataclasses
    import urllib.error

    from digitnet.data.datasets import IDX_DATASETS, MNIST

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("sklearn.datasets._openml.urlopen", no_network)
    monkeypatch.setitem(IDX_DATASETS, "mnist",
                        dataclasses.replace(MNIST, mirrors=(closed_port_url(),)))
    code, out, err = run(capsys, "train", "--epochs", "1", "--out", str(tmp_path / "r"), *FAST)
    assert code == 2 and out == ""
    assert_one_line_error(code, err, "could not download mnist", "--data-dir",
                          "DIGITNET_DATA_DIR", "--dataset digits")


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--epochs", "0"], ["--epochs", "0"]),
        (["--hidden", "abc"], ["--hidden", "abc"]),
        (["--hidden", "64", "-3"], ["--hidden"]),
        (["--lr", "-1"], ["--lr"]),
        (["--lr", "nan"], ["--lr"]),
        (["--batch-size", "1.5"], ["--batch-size", "1.5"]),
        (["--validation-fraction", "1"], ["--validation-fraction"]),
        (["--optimizer", "rmsprop"], ["--optimizer", "rmsprop"]),
        (["--dataset", "emnist"], ["--dataset", "emnist"]),
    ],
)
def test_bad_arguments(capsys: pytest.CaptureFixture[str], argv: list[str],
                       names: list[str]) -> None:
    code, out, err = run(capsys, "train", *argv, *FAST)
    assert code == 2
    assert_one_line_error(code, err, *names)
    assert out == ""


def test_ctrl_c_during_training_still_writes_the_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    original, calls = Optimizer.step, {"n": 0}

    def step(opt: Optimizer, lr: float | None = None) -> None:
        calls["n"] += 1
        if calls["n"] > 15:  # in the second epoch (11 batches of 128 per epoch)
            raise KeyboardInterrupt
        original(opt, lr)

    monkeypatch.setattr(Optimizer, "step", step)
    out_dir = tmp_path / "r"
    code, out, err = run(capsys, "train", "--dataset", "digits", "--epochs", "5",
                         "--batch-size", "128", "--out", str(out_dir), *FAST)
    assert code == 0, err
    assert "(interrupted)" in out and "interrupted" in err
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["interrupted"] is True and metrics["epochs_run"] == 1
    assert (out_dir / "model.npz").is_file()


def test_ctrl_c_outside_training(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("digitnet.cli.common.load_data", interrupted)
    code, _, err = run(capsys, "train", "--dataset", "digits", *FAST)
    assert code == 130
    assert err.strip() == "digitnet train: interrupted"
