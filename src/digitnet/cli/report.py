"""``digitnet report``: redraw the figures and report.html of a run folder."""

from __future__ import annotations

import argparse
from typing import Any

from digitnet.cli import common


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "report", help="draw the figures and report.html of a training run",
        description="Read model.npz and metrics.json from a run folder written by "
        "`digitnet train` and (re)write its figures (PNG), robustness.json and report.html. "
        "The data set (by default the one the run was trained on) is needed for the gallery "
        "of misclassified test images, the robustness curves, the points maps and the "
        "training samples.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by `digitnet train`")
    common.add_data_arguments(p, for_model=True)
    p.add_argument("--tsne", action="store_true",
                   help="also draw the test images layer by layer with t-SNE "
                   "(points_map_tsne.png; a few seconds per layer)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import time

    from digitnet.report import FIGURE_FILES, OPTIONAL_FIGURE_FILES, load_run, write_report

    model, metrics = load_run(args.run_dir)
    if args.dataset is None:
        saved = (metrics.get("dataset") or {}).get("name", model.dataset)
        args.dataset = saved if saved in common.DATASETS else "mnist"
    dataset = common.load_data(args)
    started = time.perf_counter()
    page = write_report(args.run_dir, model, metrics, dataset, tsne=args.tsne)
    folder = page.parent  # the figures the page shows (write_report removes stale ones)
    count = sum((folder / name).is_file() for name in (*FIGURE_FILES, *OPTIONAL_FIGURE_FILES))
    common.info(f"drew {count} figures in {time.perf_counter() - started:.1f}s")
    print(f"report: {page}")
    return 0
