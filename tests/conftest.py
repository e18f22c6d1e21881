"""Shared fixtures.

Every test runs with an empty, private cache (``DIGITNET_CACHE_DIR``) and without
``DIGITNET_DATA_DIR`` in the environment, so nothing depends on the user's machine.
Tests that need the real MNIST files ask for the ``mnist_dir`` fixture, which reads
``DIGITNET_DATA_DIR`` as it was when pytest started and skips, with the reason, without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_MNIST_DIR = os.environ.get("DIGITNET_DATA_DIR")
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@pytest.fixture(autouse=True)
def _isolated_environment(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("DIGITNET_DATA_DIR", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder with the real MNIST IDX files, from DIGITNET_DATA_DIR; skips without it."""
    if not _MNIST_DIR:
        pytest.skip("real MNIST not available: set DIGITNET_DATA_DIR to a folder of IDX files")
    folder = Path(_MNIST_DIR)
    missing = [
        name for name in MNIST_FILES
        if not (folder / name).is_file() and not (folder / f"{name}.gz").is_file()
    ]
    if missing:
        pytest.skip(f"real MNIST not available: {folder} lacks {', '.join(missing)}")
    return folder


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path):
    """The real MNIST data set (loaded once per test session)."""
    from digitnet.data import load_dataset

    return load_dataset("mnist", mnist_dir, download_ok=False, progress=False)


@pytest.fixture(scope="session")
def model_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained ``model.npz`` (on real MNIST when available, else on digits)."""
    from trained_models import small_model

    return small_model(request, tmp_path_factory)


@pytest.fixture(scope="session")
def model(model_path: Path):  # type: ignore[no-untyped-def]
    """The model behind :func:`model_path`, loaded."""
    from digitnet.model_io import load_model

    return load_model(model_path)
