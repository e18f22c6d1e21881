"""``--out``: checked before any work, never mixed with another run, never left half-made."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from digitnet.cli import main
from digitnet.runs import LOCK_FILE, METRICS_FILE, MODEL_FILE, RunDirError, claim_run_dir

FAST = ["--dataset", "digits", "--epochs", "2", "--no-progress", "--no-plots"]


def _train(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["train", *FAST, *argv])
    return code, capsys.readouterr().err


@pytest.fixture
def no_data_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal must come before any work: loading the data fails the test."""
    def fail(args: object) -> None:
        pytest.fail("the data was loaded before --out was checked")

    monkeypatch.setattr("digitnet.cli.common.load_data", fail)


def _one_line(err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), lines[0]


@pytest.mark.usefixtures("no_data_loading")
def test_an_out_that_is_a_file_is_refused_first(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    code, err = _train(capsys, "--out", str(target))
    assert code == 2
    _one_line(err, str(target), "not a folder")
    code, err = _train(capsys, "--out", str(target / "run"))
    assert code == 2
    _one_line(err, str(target / "run"), "cannot write")


@pytest.mark.usefixtures("no_data_loading")
def test_a_run_folder_in_use_is_refused(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    with open(folder / LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another digitnet run holds it
        code, err = _train(capsys, "--out", str(folder))
    assert code == 2
    _one_line(err, str(folder), "another digitnet run")


def test_an_existing_run_is_kept_unless_forced(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    folder = tmp_path / "run"
    assert _train(capsys, "--out", str(folder))[0] == 0
    first = (folder / MODEL_FILE).read_bytes()
    code, err = _train(capsys, "--out", str(folder), "--seed", "1")
    assert code == 2
    _one_line(err, str(folder), "already holds a run", "--force")
    assert (folder / MODEL_FILE).read_bytes() == first
    assert _train(capsys, "--out", str(folder), "--seed", "1", "--force")[0] == 0
    assert (folder / MODEL_FILE).read_bytes() != first
    assert sorted(p.name for p in folder.iterdir()) == [METRICS_FILE, MODEL_FILE]


def test_a_forced_run_without_figures_removes_the_old_ones(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--no-progress", "--out",
                 str(folder)]) == 0
    assert (folder / "report.html").exists()
    assert _train(capsys, "--out", str(folder), "--force")[0] == 0
    assert sorted(p.name for p in folder.iterdir()) == [METRICS_FILE, MODEL_FILE]


def test_a_run_that_writes_nothing_leaves_no_folder(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "run"
    with pytest.raises(RuntimeError), claim_run_dir(folder):
        assert folder.is_dir()
        raise RuntimeError("training failed")
    assert not folder.exists()
    existing = tmp_path / "kept"
    existing.mkdir()
    with claim_run_dir(existing):
        pass
    assert existing.is_dir() and not any(existing.iterdir())  # not ours to remove


def test_the_lock_is_held_during_the_run_and_released_after(tmp_path: Path) -> None:
    with claim_run_dir(tmp_path / "run") as folder:
        for _ in range(2):  # a refused claim leaves the holder's lock alone
            with pytest.raises(RunDirError, match="another digitnet run"), claim_run_dir(folder):
                pass
            assert (folder / LOCK_FILE).exists()
        (folder / MODEL_FILE).write_bytes(b"x")
    assert not (folder / LOCK_FILE).exists()
    with claim_run_dir(folder, force=True):
        pass
