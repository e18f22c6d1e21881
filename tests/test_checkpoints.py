"""Checkpoints: written whole at the end of every epoch, a killed run resumes to the same
weights bit for bit, and nothing a later command trips over is left behind."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import blobs

from digitnet.cli import main
from digitnet.data.preprocessing import MinMaxScaler
from digitnet.engine import make_trainer, split
from digitnet.network import MLP
from digitnet.runs import CHECKPOINT_FILE, LOCK_FILE, RunDirError, load_checkpoint
from digitnet.training import TrainConfig, fit

TRAIN = ["train", "--dataset", "digits", "--epochs", "150", "--no-plots", "--no-progress"]


def _weights(path: Path) -> list[np.ndarray]:
    with np.load(path / "model.npz") as archive:
        return [archive[k] for k in sorted(archive.files) if k != "metadata"]


@pytest.mark.parametrize("engine", [None, make_trainer])
@pytest.mark.parametrize("validation", [0.25, 0.0])
def test_resuming_from_any_epoch_gives_the_same_weights(
    engine: object, validation: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(split, "MIN_SPLIT_WORK", 0)  # the fast engine's split too
    x, y = blobs(60, n_classes=3, n_features=12, seed=4)
    scaler = MinMaxScaler.fit(x)
    config = TrainConfig(hidden=(16, 8), epochs=6, batch_size=16, lr=0.01,
                         validation_fraction=0)
    x_val, y_val = (x[:40], y[:40]) if validation else (None, None)
    states: list[dict] = []
    whole = MLP(12, (16, 8), 3, seed=3)
    fit(whole, x, y, scaler, config, x_val, y_val, engine=engine,  # type: ignore[arg-type]
        checkpoint=states.append)
    assert [s["epoch"] for s in states] == list(range(1, 7))
    for state in states[:-1]:
        resumed = MLP(12, (16, 8), 3, seed=99)  # other initial weights: all come from the state
        result = fit(resumed, x, y, scaler, config, x_val, y_val, engine=engine,  # type: ignore[arg-type]
                     resume_from=state)
        assert result.epochs_run == 6 and len(result.history) == 6
        for a, b in zip(resumed.get_state(), whole.get_state(), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_completed_run_keeps_no_checkpoint_an_interrupted_one_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    done = tmp_path / "done"
    assert main([*TRAIN[:4], "3", *TRAIN[5:], "--out", str(done)]) == 0
    assert not (done / CHECKPOINT_FILE).exists()
    from digitnet.engine.optimizers import Optimizer

    calls = {"n": 0}
    original = Optimizer.step

    def step(opt: Optimizer, lr: float | None = None) -> None:
        calls["n"] += 1
        if calls["n"] > 42 * 2 + 10:  # in the third epoch (42 steps an epoch)
            raise KeyboardInterrupt
        original(opt, lr)

    monkeypatch.setattr(Optimizer, "step", step)
    stopped = tmp_path / "stopped"
    assert main([*TRAIN[:4], "5", *TRAIN[5:], "--out", str(stopped)]) == 0
    state, about = load_checkpoint(stopped)
    assert state["epoch"] == 2 and about["config"]["epochs"] == 5
    monkeypatch.undo()
    assert main(["train", "--resume", str(stopped), "--no-progress", "--no-plots"]) == 0
    assert not (stopped / CHECKPOINT_FILE).exists()
    metrics = json.loads((stopped / "metrics.json").read_text())
    assert metrics["epochs_run"] == 5 and not metrics["interrupted"]
    reference = tmp_path / "reference"
    assert main([*TRAIN[:4], "5", *TRAIN[5:], "--out", str(reference)]) == 0
    for a, b in zip(_weights(stopped), _weights(reference), strict=True):
        np.testing.assert_array_equal(a, b)
    capsys.readouterr()


def test_resume_refuses_what_does_not_fit(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--resume", str(tmp_path), "--no-progress"]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path), "--lr", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "its own settings; leave out --lr" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "--resume", str(tmp_path), "--preset", "fast"]) == 2
    assert "leave out --preset" in capsys.readouterr().err
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"PK\x03\x04 not really")
    assert main(["train", "--resume", str(tmp_path), "--no-progress"]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err
    with pytest.raises(RunDirError):
        load_checkpoint(tmp_path)


@pytest.mark.slow
def test_a_run_killed_at_random_moments_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """SIGKILL a real training process at random moments, resume each time: the checkpoint
    is always readable, no half-written file is left, and the end is bit-identical to an
    uninterrupted run."""
    command = [sys.executable, "-m", "digitnet"]
    reference = tmp_path / "reference"
    subprocess.run([*command, *TRAIN, "--out", str(reference)], check=True,
                   capture_output=True)
    run = tmp_path / "run"
    rng = random.Random(0)
    kills = 0
    args = [*TRAIN, "--out", str(run)]
    for _ in range(6):
        process = subprocess.Popen([*command, *args], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.8, 2.0))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        process.wait()
        leftovers = [p.name for p in run.iterdir()] if run.exists() else []
        visible = [n for n in leftovers if not n.startswith(".")]
        hidden = [n for n in leftovers if n.startswith(".")]
        assert set(visible) <= {"model.npz", "metrics.json", CHECKPOINT_FILE}
        # The lock (released by the kernel) and a temporary file of an interrupted write
        # (removed by the next run): what later commands read is never half-written.
        assert all(n == LOCK_FILE or n.endswith(".tmp") for n in hidden)
        if (run / "model.npz").exists() and not (run / CHECKPOINT_FILE).exists():
            break  # it finished
        if (run / CHECKPOINT_FILE).exists():
            load_checkpoint(run)  # whole, whenever it was killed
            args = ["train", "--resume", str(run), "--no-plots", "--no-progress"]
        else:  # killed before its first epoch ended: nothing to resume, start again
            args = [*TRAIN, "--out", str(run), "--force"]
    else:
        subprocess.run([*command, *args], check=True, capture_output=True)
    assert kills >= 1
    for a, b in zip(_weights(run), _weights(reference), strict=True):
        np.testing.assert_array_equal(a, b)
