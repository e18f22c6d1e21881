"""``digitnet`` command line: a thin layer over the library.

Each sub-command lives in its own module with two functions: ``register(subparsers)``
adds its arguments, ``run(args)`` does the work. Modules import NumPy and friends only
inside ``run``, so ``digitnet --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

# Sub-command name -> module (in this package) that implements it.
COMMANDS = {
    "train": "train",
    "evaluate": "evaluate",
    "predict": "predict",
    "serve": "serve",
    "report": "report",
    "lab": "lab",
}

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# After a multi-threaded product, OpenBLAS's idle threads spin for about 0.1 s (2^28 cycles)
# before they sleep, taking a core from whatever runs next (the first epoch of the split
# engine lost up to 0.2 s to it until its helper stopped starting a thread pool of its own;
# see digitnet.engine.split). 2^20 cycles (well under a millisecond) keeps them spinning
# between the products of one step, not longer. OpenBLAS reads the variable when NumPy loads
# it, so it is set before any sub-command imports NumPy; a value already in the environment
# wins.
OPENBLAS_THREAD_TIMEOUT = "20"


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are a single line on stderr (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from digitnet import __version__

    parser = OneLineErrorParser(
        prog="digitnet",
        description="Handwritten-digit classification with a from-scratch NumPy neural network.",
    )
    parser.add_argument("--version", action="version", version=f"digitnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS.values():
        module = importlib.import_module(f"digitnet.cli.{module_name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``digitnet`` console script; returns the exit code."""
    from digitnet.errors import DigitnetError

    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or EXIT_OK)
    except DigitnetError as exc:
        print(f"digitnet {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:  # invalid option combinations found by the library
        print(f"digitnet {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"digitnet {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
