"""Arguments and helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import TypeVar

DATASETS = ("mnist", "fashion-mnist", "digits")
T = TypeVar("T", int, float)


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


def _number_type(
    convert: Callable[[str], T], accept: Callable[[T], bool], expected: str
) -> Callable[[str], T]:
    """An argparse ``type=`` that parses with ``convert`` and requires ``accept(value)``."""

    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            kind = "a whole number" if convert is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


positive_int = _number_type(int, lambda v: v >= 1, "a number >= 1")
non_negative_int = _number_type(int, lambda v: v >= 0, "a number >= 0")
positive_float = _number_type(float, lambda v: 0 < v < math.inf, "a positive number")
non_negative_float = _number_type(float, lambda v: 0 <= v < math.inf, "a number >= 0")
fraction = _number_type(float, lambda v: 0.0 <= v < 1.0, "a fraction in [0, 1)")
probability = _number_type(float, lambda v: 0.0 <= v <= 1.0, "a probability in [0, 1]")


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
