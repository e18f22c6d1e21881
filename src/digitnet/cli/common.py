"""Arguments and helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import sys

DATASETS = ("mnist", "fashion-mnist", "digits")


def add_data_arguments(parser: argparse.ArgumentParser, for_model: bool = False) -> None:
    """``--dataset`` and ``--data-dir``; with ``for_model`` the data set defaults to the model's."""
    default = "the model's own" if for_model else "mnist"
    parser.add_argument(
        "--dataset", choices=DATASETS, default=None if for_model else "mnist",
        help=f"data set (default: {default}; 'digits' is bundled with scikit-learn and works "
        "offline)",
    )
    parser.add_argument(
        "--data-dir", metavar="DIR",
        help="folder with the four IDX files (gzipped or not); default: $DIGITNET_DATA_DIR, "
        "then the cache, then a download",
    )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def progress_enabled(args: argparse.Namespace) -> bool:
    """Progress bars unless ``--quiet``/``--no-progress`` or output is not a terminal."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


def info(message: str) -> None:
    """Print a status line without breaking an active progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)


def load_data(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from digitnet.data import load_dataset

    return load_dataset(args.dataset, args.data_dir, progress=progress_enabled(args))
