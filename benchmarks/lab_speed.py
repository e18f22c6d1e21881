"""What the live lab costs in training speed (issue 17: at most 10 % slower than the CLI).

Run from the repository root::

    python -m benchmarks.lab_speed --dataset mnist --data-dir ../shared/data/mnist --repeats 5
    python -m benchmarks.lab_speed [--dataset digits] [--variants cli,lab] [--json lab-speed.json]

For the same settings (the lab's defaults for the data set: ``digitnet train``'s recipe
with a constant learning rate and ``--keep last``; MNIST: ``--preset plain``), it measures
the training time as each reports it (the loop with its per-epoch validation:
``train_seconds``), in these variants (``--variants``, default all but ``cli_textbook``):

* ``cli``: ``digitnet train ... --no-plots`` in a child process (``metrics.json``'s
  ``train_seconds``, which includes the checkpoint written at the end of every epoch), with
  the engine ``digitnet train`` picks (``--engine fast``: the two-process split for MNIST);
  ``cli_textbook``: the same with ``--engine textbook``;
* ``fit``: the same loop in this process without checkpoints (``digitnet.training.fit``
  with ``digitnet.engine.make_trainer``);
* ``lab``: :class:`digitnet.lab.LabSession` in this process, run to the end in a thread of
  its own (statistics measured as in the page; nobody watching); it trains with
  ``make_trainer`` too;
* ``lab_served``: the same session behind ``digitnet lab``'s web application, served by
  uvicorn in this process, with a client in another process reading the server-sent event
  stream all along (what the page costs the server: four snapshots a second, one with the
  pictures).

The variants run interleaved, in a rotated order in each of ``--repeats`` rounds, so that a
change of load on a shared machine hits all alike. Printed: per variant the median, the
range and every run; the lab's ratio to ``digitnet train`` as the ratio of the medians and
as the median (and range) of the ratios within a round. For the in-process variants the CPU
seconds of this process and of its ended children (the split engine's helper) are reported
too: on a machine shared with other work they are the steadier measure. With ``--subset``
the lab trains on that many images and only the lab variants run.
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
from collections.abc import Callable
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


def fit_seconds(config: Any, dataset: Any) -> tuple[float, float]:
    """``digitnet.training.fit`` in this process with the engine ``digitnet train`` picks
    (``digitnet.engine.make_trainer``): the CLI's loop without its per-epoch checkpoint."""
    from digitnet import engine
    from digitnet.data.preprocessing import MinMaxScaler
    from digitnet.experiment import split_for_training
    from digitnet.network import MLP
    from digitnet.training import fit

    t = config.train
    x_tr, y_tr, x_val, y_val = split_for_training(dataset, t)
    network = MLP(dataset.n_features, t.hidden, dataset.n_classes, t.activation, t.dtype,
                  t.seed, t.dropout, t.input_dropout, t.init_scale)
    cpu = cpu_clock()
    result = fit(network, x_tr, y_tr, MinMaxScaler.fit(dataset.x_train), t, x_val, y_val,
                 engine=engine.make_trainer)
    return float(result.train_seconds), cpu_clock() - cpu


def lab_seconds(config: Any, dataset: Any) -> tuple[float, float]:
    from digitnet.lab import LabSession

    session = LabSession(config, dataset)
    cpu = cpu_clock()
    session.start()
    while session.state not in ("done", "stopped", "diverged", "failed"):
        time.sleep(0.005)
    session.stop()  # the split engine's helper ends: its CPU time is counted
    session.join(30)
    return float(session.train_seconds), cpu_clock() - cpu


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
        lab.session.stop()  # the split engine's helper ends: its CPU time is counted
        lab.session.join(30)
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


VARIANTS = ("cli", "cli_textbook", "fit", "lab", "lab_served")
DEFAULT_VARIANTS = "cli,fit,lab,lab_served"


def spread(values: list[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "runs": [round(v, 4) for v in values]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir")
    parser.add_argument("--subset", type=int, default=0,
                        help="lab only: training images (the other variants are left out)")
    parser.add_argument("--epochs", type=int, help="default: the data set's recipe")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help=f"comma-separated, of {', '.join(VARIANTS)} "
                        f"(default: {DEFAULT_VARIANTS})")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(sorted(unknown))}")
    if args.subset:
        variants = [v for v in variants if v.startswith("lab")]

    from digitnet.data import load_dataset
    from digitnet.lab import LabConfig

    dataset = load_dataset(args.dataset, args.data_dir, download_ok=False, progress=False)
    settings: dict[str, Any] = {"dataset": args.dataset, "subset": args.subset}
    if args.epochs:
        settings["epochs"] = args.epochs
    config = LabConfig.from_dict(settings)
    t = config.train.to_dict()
    measures: dict[str, Callable[[], tuple[float, float | None]]] = {
        "cli": lambda: (cli_seconds(args.dataset, t, "fast", args.data_dir), None),
        "cli_textbook": lambda: (cli_seconds(args.dataset, t, "textbook", args.data_dir), None),
        "fit": lambda: fit_seconds(config, dataset),
        "lab": lambda: lab_seconds(config, dataset),
        "lab_served": lambda: served_seconds(config, dataset),
    }
    runs: dict[str, list[float]] = {}
    for round_ in range(args.repeats):  # interleaved, each round in another order
        shift = round_ % len(variants)
        for name in variants[shift:] + variants[:shift]:
            wall, cpu = measures[name]()
            runs.setdefault(name, []).append(wall)
            if cpu is not None:
                runs.setdefault(f"{name}_cpu", []).append(cpu)
            print(f"round {round_ + 1}: {name} {wall:.3f} s"
                  + ("" if cpu is None else f" (CPU {cpu:.3f} s)"), file=sys.stderr)
    report: dict[str, Any] = {"dataset": args.dataset, "config": config.to_dict(),
                              "repeats": args.repeats, "seconds": {
                                  k: spread(v) for k, v in runs.items()},
                              "cpu_count": os.cpu_count()}
    medians = {k: statistics.median(v) for k, v in runs.items()}
    ratios: dict[str, Any] = {}
    for a, b in (("lab", "cli"), ("lab_served", "cli"), ("lab", "fit"), ("lab_served", "fit"),
                 ("lab_cpu", "fit_cpu"), ("lab_served_cpu", "fit_cpu"), ("fit", "cli")):
        if a in runs and b in runs:
            paired = [x / y for x, y in zip(runs[a], runs[b], strict=True)]
            ratios[f"{a} / {b}"] = {"of the medians": round(medians[a] / medians[b], 3),
                                    **{k: (round(v, 3) if isinstance(v, float) else
                                           [round(r, 3) for r in v])
                                       for k, v in spread(paired).items()}}
    report["ratios"] = ratios
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    for name, values in report["seconds"].items():
        print(f"{name}: median {values['median']} s (min {values['min']}, max {values['max']})"
              f"; runs {values['runs']}")
    for name, values in ratios.items():
        print(f"{name}: {values['of the medians']} (median of the rounds' ratios "
              f"{values['median']}, range {values['min']}-{values['max']})")
    print(f"load average at the end: {report['load_average_at_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
