"""``digitnet lab``: watch a network learn, live in the browser, and steer it; or replay a
saved lab run."""

from __future__ import annotations

import argparse
from typing import Any

from digitnet.cli.serve import add_server_arguments, allowed_hosts, open_socket, run_server


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "lab", help="watch a network learn, live in the browser, and steer it",
        description="Serve the live training lab: a page that trains a network (on digits, "
        "MNIST or Fashion-MNIST) with the same code as `digitnet train` and shows it learn: "
        "the loss per batch and per epoch, gradient norms, dead units, weight histograms, "
        "what the first layer's units look for; pause, +1 epoch, slow motion; change the "
        "learning rate, momentum, L2, dropout, batch size and augmentation while it "
        "trains; hints with a fix; a gradient check; guided experiments. Saves runs that "
        "`digitnet serve` opens. Stop with Ctrl-C.",
    )
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder with MNIST or Fashion-MNIST (IDX files); default: "
                   "$DIGITNET_DATA_DIR, then the cache (never a download; the bundled "
                   "digits set always works)")
    p.add_argument("--runs-dir", default="runs", metavar="DIR",
                   help="where the page saves runs (default: runs)")
    add_server_arguments(p, port=8001)
    p.add_argument("--replay", metavar="RUN_DIR",
                   help="instead of serving: train a saved lab run again from its lab.json "
                   "(configuration and change log) and check that the weights are its "
                   "model.npz's, bit for bit (exit code 1 if not)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.replay:
        return replay(args)
    from digitnet.web.lab import Lab, create_lab_app
    from digitnet.web.server import make_server

    sock = open_socket(args.host, args.port)
    lab = Lab(args.data_dir, args.runs_dir)
    app = create_lab_app(lab, allowed_hosts=allowed_hosts(args.host))
    server = make_server(app, args.log_level, access_log=args.log_level in ("info", "debug"),
                         request_timeout=args.request_timeout,
                         max_connections=args.max_connections)
    server.config.timeout_graceful_shutdown = 2  # event streams would otherwise hold it up
    handle_exit = server.handle_exit

    def stop(sig: int, frame: Any) -> None:
        lab.close()  # the training thread and the event streams end now
        handle_exit(sig, frame)

    server.handle_exit = stop  # type: ignore[method-assign]
    try:
        run_server(server, sock, "lab", args.host)
    finally:
        lab.close()
    return 0


def replay(args: argparse.Namespace) -> int:
    import numpy as np

    from digitnet.lab import load_record
    from digitnet.lab import replay as replay_run
    from digitnet.model_io import load_model
    from digitnet.runs import MODEL_FILE

    record = load_record(args.replay)
    session = replay_run(record, data_dir=args.data_dir)
    saved = load_model(f"{args.replay}/{MODEL_FILE}").network.get_state()
    mine = session.network.get_state()
    same = len(saved) == len(mine) and all(
        a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(saved, mine, strict=True))
    print(f"replayed {session.steps} steps ({len(record['changes'])} changes) in "
          f"{session.train_seconds:.2f}s: the weights are "
          f"{'identical to' if same else 'NOT identical to'} {args.replay}/{MODEL_FILE}")
    return 0 if same else 1
