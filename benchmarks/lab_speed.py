"""What the live lab costs in training speed (issue 17: at most 10 % slower than the CLI).

Run from the repository root::

    python -m benchmarks.lab_speed [--dataset digits] [--repeats 5] [--json lab-speed.json]
    python -m benchmarks.lab_speed --dataset mnist --data-dir ../shared/data/mnist --subset 10000

For the same settings (the lab's defaults for the data set: ``digitnet train``'s recipe
with a constant learning rate and ``--keep last``), it measures the training time as each
reports it (the loop with its per-epoch validation: ``train_seconds``):

1. ``digitnet train ... --no-plots`` in a child process (``metrics.json``'s
   ``train_seconds``, which includes the checkpoint written at the end of every epoch), with
   the engine ``digitnet train`` picks (``--engine fast``) and with ``--engine textbook``;
   and the same loop in this process without checkpoints (``digitnet.training.fit`` with
   ``digitnet.engine.make_trainer``);
2. :class:`digitnet.lab.LabSession` in this process, run to the end in a thread of its own
   (statistics measured as in the page; nobody watching);
3. the same session behind ``digitnet lab``'s web application, served by uvicorn in this
   process, with a client in another process reading the server-sent event stream all
   along (what the page costs the server: four snapshots a second, one with the pictures).

Besides the wall-clock training time, the CPU seconds of this process (and of its ended
children: the split engine's helper) during training are reported for the in-process
variants: on a machine shared with other work they are the steadier measure. The median of
``--repeats`` runs of each is printed, with the ratios. With
``--subset`` the CLI trains on a data set cut to the same images (the lab's subset), so the
two still train the same thing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")  # as the digitnet command sets it


def cli_seconds(dataset: str, config: dict[str, Any], engine: str,
                data_dir: str | None) -> float:
    flags = ["--dataset", dataset, "--no-plots", "--no-progress", "--engine", engine,
             "--hidden", *map(str, config["hidden"]), "--activation", config["activation"],
             "--epochs", str(config["epochs"]), "--batch-size", str(config["batch_size"]),
             "--lr", str(config["lr"]), "--optimizer", config["optimizer"],
             "--schedule", config["schedule"], "--keep", "last", "--seed", str(config["seed"])]
    if dataset != "digits":  # the lab starts from the plain recipe there (digitnet.lab)
        flags += ["--preset", "plain"]
    if data_dir:
        flags += ["--data-dir", data_dir]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "digitnet", "train", *flags, "--out",
                        f"{tmp}/run"], check=True, capture_output=True, text=True)
        return float(json.loads(Path(tmp, "run", "metrics.json").read_text())["train_seconds"])


CLIENT = """
import sys, httpx
while True:
    try:
        with httpx.stream("GET", sys.argv[1], timeout=30) as stream:
            for line in stream.iter_lines():
                pass
    except httpx.HTTPError:
        pass
"""


def cpu_clock() -> float:
    """CPU seconds of this process and of its children that ended (the engine's helper)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def fit_seconds(config: Any, dataset: Any, engine_name: str) -> tuple[float, float]:
    """``digitnet.training.fit`` in this process: the CLI's loop without its per-epoch
    checkpoint. ``engine_name``: ``"split"`` (``digitnet.engine.make_trainer``, what
    ``digitnet train`` picks) or ``"fused"`` (the fast engine in one process, the lab's)."""
    from digitnet import engine
    from digitnet.data.preprocessing import MinMaxScaler
    from digitnet.engine.flat import FusedTrainer
    from digitnet.experiment import split_for_training
    from digitnet.network import MLP
    from digitnet.training import fit

    t = config.train
    x_tr, y_tr, x_val, y_val = split_for_training(dataset, t)
    network = MLP(dataset.n_features, t.hidden, dataset.n_classes, t.activation, t.dtype,
                  t.seed, t.dropout, t.input_dropout, t.init_scale)
    factory = engine.make_trainer if engine_name == "split" else FusedTrainer
    cpu = cpu_clock()
    result = fit(network, x_tr, y_tr, MinMaxScaler.fit(dataset.x_train), t, x_val, y_val,
                 engine=factory)
    return float(result.train_seconds), cpu_clock() - cpu


def lab_seconds(config: Any, dataset: Any) -> tuple[float, float]:
    from digitnet.lab import LabSession

    session = LabSession(config, dataset)
    cpu = cpu_clock()
    session.start()
    while session.state not in ("done", "stopped", "diverged", "failed"):
        time.sleep(0.005)
    cpu = cpu_clock() - cpu
    session.stop()
    session.join(30)
    return float(session.train_seconds), cpu


def served_seconds(config: Any, dataset: Any) -> tuple[float, float]:
    """The lab run started through the API, with another process reading the event stream
    all along (as a browser would): wall and CPU seconds of this, the server's, process."""
    import httpx
    import uvicorn

    from digitnet.cli.serve import open_socket
    from digitnet.web.lab import Lab, create_lab_app

    lab = Lab(datasets={dataset.name: dataset})
    sock = open_socket("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server = uvicorn.Server(uvicorn.Config(create_lab_app(lab), log_level="warning",
                                           lifespan="off", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    client = subprocess.Popen([sys.executable, "-c", CLIENT, url + "api/lab/events"])
    try:
        time.sleep(1.0)  # the client is connected and idle (no run yet)
        cpu = cpu_clock()
        httpx.post(url + "api/lab/start", json={"config": config.to_dict()}, timeout=60)
        while lab.session.state not in ("done", "stopped", "diverged", "failed"):
            time.sleep(0.005)
        cpu = cpu_clock() - cpu
        seconds = float(lab.session.train_seconds)
    finally:
        client.kill()
        client.wait()
        lab.close()
        server.should_exit = True
        thread.join(10)
        sock.close()
    return seconds, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir")
    parser.add_argument("--subset", type=int, default=0,
                        help="lab only: training images (the CLI then trains on all)")
    parser.add_argument("--epochs", type=int, help="default: the data set's recipe")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)

    from digitnet.data import load_dataset
    from digitnet.lab import LabConfig

    dataset = load_dataset(args.dataset, args.data_dir, download_ok=False, progress=False)
    settings: dict[str, Any] = {"dataset": args.dataset, "subset": args.subset}
    if args.epochs:
        settings["epochs"] = args.epochs
    config = LabConfig.from_dict(settings)
    t = config.train.to_dict()
    runs: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        runs.setdefault(name, []).append(value)

    for _ in range(args.repeats):  # interleaved, so that a change of load hits all alike
        if not args.subset:
            add("cli_fast", cli_seconds(args.dataset, t, "fast", args.data_dir))
            add("cli_textbook", cli_seconds(args.dataset, t, "textbook", args.data_dir))
            for name in ("split", "fused"):
                wall, cpu = fit_seconds(config, dataset, name)
                add(f"fit_{name}", wall)
                add(f"fit_{name}_cpu", cpu)
        for name, measure in (("lab", lab_seconds), ("lab_served", served_seconds)):
            wall, cpu = measure(config, dataset)
            add(name, wall)
            add(f"{name}_cpu", cpu)
    medians = {k: round(statistics.median(v), 4) for k, v in runs.items()}
    report: dict[str, Any] = {"dataset": args.dataset, "config": config.to_dict(),
                              "runs": runs, "median_seconds": medians,
                              "load_average": os.getloadavg()}
    if "fit_fused" in medians:
        for a, b in (("lab", "fit_fused"), ("lab_served", "fit_fused"),
                     ("lab_cpu", "fit_fused_cpu"), ("lab_served_cpu", "fit_fused_cpu"),
                     ("lab", "fit_split"), ("lab", "cli_fast")):
            report[f"{a} / {b}"] = round(medians[a] / medians[b], 3)
    for key, value in report.items():
        if key not in ("config", "runs"):
            print(f"{key}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
