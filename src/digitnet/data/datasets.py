"""The data sets digitnet trains on, and where each is found.

``load_dataset(name)`` returns a :class:`Dataset` of raw uint8 images (flattened to rows)
and integer labels, with the standard train/test split. Preprocessing (scaling to [0, 1],
one-hot labels, the validation split) is :mod:`digitnet.data.preprocessing`'s job.

For the IDX data sets (``mnist``, ``fashion-mnist``) the sources are tried in this order:

1. a folder given as ``data_dir`` (``--data-dir``) or in ``DIGITNET_DATA_DIR``, holding the four
   IDX files, gzipped or not (also looked for in a sub-folder named after the data set);
2. a system folder where a distribution installs the data (Debian's ``dataset-fashion-mnist``);
3. the user's cache (``~/.cache/digitnet/<name>`` or the platform's equivalent; override with
   ``DIGITNET_CACHE_DIR``) from an earlier download;
4. a download, first from OpenML through scikit-learn, then from IDX mirrors.

``digits`` is scikit-learn's bundled 8x8 digits: it needs no network at all.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from digitnet.data import download
from digitnet.data.idx import md5_of, read_bytes, read_pair
from digitnet.errors import DataError, DownloadError

DATA_DIR_ENV = "DIGITNET_DATA_DIR"
CACHE_DIR_ENV = "DIGITNET_CACHE_DIR"

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

DIGIT_NAMES = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class IdxDatasetSpec:
    """Where and how to find an MNIST-format data set, and how to check it.

    ``md5`` holds the MD5 of each file's *uncompressed* content.
    """

    name: str
    title: str
    class_names: tuple[str, ...]
    md5: dict[str, str]
    mirrors: tuple[str, ...]
    openml_name: str | None = None
    openml_version: int = 1
    system_dirs: tuple[str, ...] = ()
    n_train: int = 60_000
    n_test: int = 10_000
    image_shape: tuple[int, int] = (28, 28)
    files: dict[str, str] = field(default_factory=lambda: dict(IDX_FILES))

    @staticmethod
    def ndim(key: str) -> int:
        """Dimensions of an IDX file: 3 for images, 1 for labels."""
        return 3 if key.endswith("images") else 1


MNIST = IdxDatasetSpec(
    name="mnist",
    title="MNIST handwritten digits",
    class_names=DIGIT_NAMES,
    md5={
        "train_images": "6bbc9ace898e44ae57da46a324031adb",
        "train_labels": "a25bea736e30d166cdddb491f175f624",
        "test_images": "2646ac647ad5339dbf082846283269ea",
        "test_labels": "27ae3e4e09519cfbb04c329615203637",
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    openml_name="mnist_784",
)

FASHION_MNIST = IdxDatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST (Zalando)",
    class_names=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    md5={
        "train_images": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train_labels": "9018921c3c673c538a1fc5bad174d6f9",
        "test_images": "8181f5470baa50b63fa0f6fddb340f0a",
        "test_labels": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    openml_name="Fashion-MNIST",
    system_dirs=("/usr/share/datasets/fashion-mnist",),
)

IDX_DATASETS = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}
DATASET_NAMES = ("mnist", "fashion-mnist", "digits")


@dataclass
class Dataset:
    """A classification data set with its standard train/test split.

    ``x_*`` are raw pixel values as uint8 rows ``(n, n_features)``; ``y_*`` integer class
    indices ``(n,)``; ``image_shape`` turns a row back into a picture.
    """

    name: str
    x_train: NDArray[np.uint8]
    y_train: NDArray[np.int64]
    x_test: NDArray[np.uint8]
    y_test: NDArray[np.int64]
    class_names: tuple[str, ...]
    image_shape: tuple[int, int]
    source: str

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def cache_root() -> Path:
    """``$DIGITNET_CACHE_DIR``, else the platform's user cache folder for digitnet."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("digitnet", appauthor=False))


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _complete_folder(spec: IdxDatasetSpec, folder: Path) -> dict[str, Path] | None:
    """The four files of ``spec`` in ``folder`` or ``folder/<name>``, or None if any is missing."""
    for candidate in (folder / spec.name, folder):
        found = {key: _find_file(candidate, stem) for key, stem in spec.files.items()}
        if all(found.values()):
            return {k: v for k, v in found.items() if v is not None}
    return None


def _other_dataset(spec: IdxDatasetSpec, files: dict[str, Path]) -> str | None:
    """The name of the *other* known data set these files are, or None.

    Only the test labels are hashed (they are small); unknown files (subsets, synthetic
    data) are None, since only a match with a different data set's checksum counts.
    """
    digest = md5_of(read_bytes(files["test_labels"]))
    for other in IDX_DATASETS.values():
        if other.name != spec.name and other.md5.get("test_labels") == digest:
            return other.name
    return None


def _check_identity(spec: IdxDatasetSpec, files: dict[str, Path]) -> None:
    """Refuse a folder that holds another known data set (e.g. MNIST given for Fashion-MNIST)."""
    other = _other_dataset(spec, files)
    if other is not None:
        raise DataError(
            f"{files['test_labels']}: these are the {other} files, "
            f"not {spec.name} (use --dataset {other} or another --data-dir)"
        )


def _read_folder(spec: IdxDatasetSpec, files: dict[str, Path], source: str) -> Dataset:
    _check_identity(spec, files)
    n_classes = len(spec.class_names)
    x_train, y_train = read_pair(files["train_images"], files["train_labels"], n_classes)
    x_test, y_test = read_pair(files["test_images"], files["test_labels"], n_classes)
    for path, images in ((files["train_images"], x_train), (files["test_images"], x_test)):
        if images.shape[1:] != spec.image_shape or images.shape[0] == 0:
            raise DataError(
                f"{path}: expected {spec.image_shape[0]}x{spec.image_shape[1]} images, "
                f"got {images.shape[0]} of {images.shape[1]}x{images.shape[2]}"
            )
    return Dataset(
        name=spec.name,
        x_train=x_train.reshape(len(x_train), -1),
        y_train=y_train.astype(np.int64),
        x_test=x_test.reshape(len(x_test), -1),
        y_test=y_test.astype(np.int64),
        class_names=spec.class_names,
        image_shape=spec.image_shape,
        source=source,
    )


def offline_hint(spec: IdxDatasetSpec) -> str:
    """What to tell a user who has no network."""
    return (
        f"to work offline, put the four {spec.title} IDX files "
        f"({', '.join(f + '.gz' for f in spec.files.values())}) in a folder and pass "
        f"--data-dir DIR or set {DATA_DIR_ENV}=DIR; `digitnet train --dataset digits` "
        "works with no download at all"
    )


def load_idx_dataset(
    spec: IdxDatasetSpec,
    data_dir: str | os.PathLike[str] | None = None,
    download_ok: bool = True,
    progress: bool = True,
    mirrors: Sequence[str] | None = None,
    budget_seconds: float = download.DEFAULT_BUDGET_SECONDS,
) -> Dataset:
    """Load an IDX data set from the first source that has it (see the module docstring)."""
    explicit = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    if explicit is not None:
        folder = Path(explicit).expanduser()
        how = "--data-dir" if data_dir is not None else DATA_DIR_ENV
        if not folder.is_dir():
            raise DataError(f"{folder}: data folder ({how}) does not exist")
        # DIGITNET_DATA_DIR usually points at MNIST; another data set may live elsewhere.
        env_for_other = data_dir is None and spec.name != MNIST.name
        files = _complete_folder(spec, folder)
        if files is not None and not (env_for_other and _other_dataset(spec, files)):
            return _read_folder(spec, files, str(folder))
        if files is None and not env_for_other:
            missing = [s for s in spec.files.values() if _find_file(folder, s) is None]
            raise DataError(
                f"{folder}: data folder ({how}) lacks {', '.join(missing)} "
                f"(plain or .gz) for {spec.name}"
            )

    for system_dir in spec.system_dirs:
        files = _complete_folder(spec, Path(system_dir))
        if files is not None:
            return _read_folder(spec, files, system_dir)

    cache = cache_root() / spec.name
    files = _complete_folder(spec, cache)
    if files is not None:
        return _read_folder(spec, files, str(cache))

    if not download_ok:
        raise DownloadError(f"{spec.name} not found locally; {offline_hint(spec)}")
    deadline = download.Deadline(budget_seconds)
    errors = []
    try:
        download.download_from_openml(spec, cache, deadline, progress)
    except DownloadError as exc:
        errors.append(str(exc))
        try:
            download.download_from_mirrors(
                spec, cache, spec.mirrors if mirrors is None else mirrors, deadline, progress
            )
        except DownloadError as exc2:
            errors.append(str(exc2))
            # The first reason of each route (OpenML, mirrors): a checksum mismatch on a
            # mirror must not hide behind the OpenML error.
            reasons = "; ".join(error.split(";")[0] for error in errors)
            raise DownloadError(
                f"could not download {spec.name} ({reasons}); {offline_hint(spec)}"
            ) from None
    files = _complete_folder(spec, cache)
    if files is None:  # pragma: no cover - a download that reported success left files
        raise DownloadError(f"{cache}: download finished but files are missing")
    return _read_folder(spec, files, f"downloaded to {cache}")


def load_digits_dataset(test_size: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, values 0-16), split stratified, seeded."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.uint8)
    y = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=seed
    )
    return Dataset(
        name="digits",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=DIGIT_NAMES,
        image_shape=(8, 8),
        source="sklearn.datasets.load_digits (bundled)",
    )


def load_dataset(
    name: str = "mnist",
    data_dir: str | os.PathLike[str] | None = None,
    download_ok: bool = True,
    progress: bool = True,
) -> Dataset:
    """Load ``mnist``, ``fashion-mnist`` or ``digits`` with its standard train/test split."""
    if name == "digits":
        return load_digits_dataset()
    try:
        spec = IDX_DATASETS[name]
    except KeyError:
        raise DataError(
            f"unknown data set {name!r}; expected one of: {', '.join(DATASET_NAMES)}"
        ) from None
    return load_idx_dataset(spec, data_dir, download_ok, progress)
