"""Watch it learn: the live training lab behind ``digitnet lab`` (issue 17).

A :class:`LabSession` trains one network in its own thread with the library code that
``digitnet train`` runs: the same trainers (the fast engine's, as
:func:`digitnet.engine.make_trainer` picks it: the two-process
:class:`~digitnet.engine.split.SplitTrainer` for MNIST-sized layers, else the one-process
:class:`~digitnet.engine.flat.FusedTrainer`; or :class:`digitnet.training.TextbookTrainer`),
the same epoch loop (:func:`digitnet.training.train_epoch`, with its divergence guard
:func:`digitnet.training.check_loss`), the same :class:`~digitnet.training.AfterStep`
(label smoothing, max-norm) and :class:`~digitnet.training.EpochImages` (augmentation),
the same validation split. Without changes, a lab run ends with the very weights
:func:`digitnet.training.fit` gives for its configuration (a test checks it bit for bit).

Around that loop the lab adds:

* **controls** between two steps: pause, resume, "+1 epoch" (train to the end of the
  epoch, then pause), "+1 step", slow motion (a delay after every step) and stop;
* **settings changed while it trains** (:data:`LIVE_SETTINGS`): the learning rate,
  momentum, L2 weight decay, dropout and the batch size from the next step on (momentum and
  weight decay in both processes of the split engine; a new batch size gets a new trainer,
  the one ``digitnet train`` would pick for it, which serves the rest of the epoch's
  order in the new size); augmentation from the next epoch on (fresh images). Every change
  is logged as ``(step, epoch, setting, old, new)`` (:class:`Change`), so the configuration
  and the log replay the run bit for bit (:func:`replay`);
* **live statistics**: every mini-batch's loss and accuracy; every ``stats_every`` steps
  (the step then runs as its two halves, ``loss_and_gradients`` and the update:
  ``optimizer.step``, or the split engine's ``update`` in both processes; which is what the
  trainers' ``step`` does) each layer's gradient norm, the size of its
  update relative to its weights, and the share of inactive units (ReLU: output 0 for the
  whole batch, or for a fixed probe of 64 training images when batches have fewer than 32); per
  epoch the training and validation loss and accuracy. On request
  (:meth:`LabSession.snapshot`): weight histograms now against the start, the first layer's
  weights as images, the augmented images the network is trained on;
* **hints** (:func:`hints`): simple rules over those numbers (a loss that explodes, many
  dead units, vanishing gradients, updates far too small or too large, overfitting), each
  with a fix (a settings change, or a new run with other settings) and why;
* a **gradient check** of the current network on demand (:func:`gradient_check`): its
  backpropagation against central finite differences, per layer, in float64;
* **saving** (:meth:`LabSession.save`): ``model.npz``, ``metrics.json`` and the report, as
  ``digitnet train`` writes them, plus ``lab.json`` (configuration and change log).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import itertools
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet.augment import AUGMENTERS
from digitnet.config import AUGMENTATIONS, TrainConfig, is_finite_number, is_int
from digitnet.data.datasets import Dataset
from digitnet.data.preprocessing import MinMaxScaler
from digitnet.errors import DigitnetError
from digitnet.forking import FORK_GATE
from digitnet.gradcheck import numerical_gradient, relative_error
from digitnet.layers import ActivationLayer, Dropout
from digitnet.network import DTYPES, MLP
from digitnet.optimizers import learning_rate
from digitnet.training import (
    AfterStep,
    Diverged,
    EpochImages,
    EpochRecord,
    TextbookTrainer,
    check_loss,
    train_epoch,
)

Array = NDArray[np.floating]

LAB_FILE = "lab.json"  # in a saved lab run: configuration, change log, steps
LAB_FORMAT = "digitnet-lab"
LAB_ENGINES = ("fast", "textbook")
LAB_DATASETS = ("digits", "mnist", "fashion-mnist")

# Settings a learner may change while the network trains, and when a change takes effect.
LIVE_SETTINGS: dict[str, str] = {
    "lr": "step",
    "momentum": "step",
    "weight_decay": "step",
    "dropout": "step",
    "batch_size": "step",
    "augment": "epoch",
}
MAX_DROPOUT = 0.9
MAX_LR = 100.0
# A network built with this dropout rate gets its Dropout layers; the lab then sets their
# rate to the configuration's (0 passes every value through, bit for bit like no layer).
_PLACEHOLDER_DROPOUT = 0.5
SERIES_POINTS = 600  # at most this many points per curve in a snapshot
TILES = 64  # first-layer units drawn as images
HISTOGRAM_BINS = 41
HISTOGRAM_SAMPLE = 20_000  # weights per layer at most in a histogram
PREVIEW_IMAGES = 8
GRADCHECK_TOLERANCE = 1e-6
# A unit is called inactive when it is for every image of a batch: for batches of fewer
# images than MIN_BATCH_FOR_INACTIVE, a fixed probe of PROBE_IMAGES training images is used
# instead (a unit may be silent for a few images and yet alive), every PROBE_EVERY
# measurements, in chunks of PROBE_CHUNK.
MIN_BATCH_FOR_INACTIVE = 32
PROBE_IMAGES = 64
PROBE_EVERY = 4
# The first layer's gradient norm below this share of the last layer's: vanishing gradients
# (healthy networks here: 0.3-1.5; sigmoid with a 0.01 initialization: 1e-5 at the start).
VANISHING_RATIO = 0.03
PROBE_CHUNK = 32


class LabError(DigitnetError):
    """A lab request that cannot be done (a bad setting, a control out of turn)."""


# ------------------------------------------------------------------------ configuration
@dataclass
class LabConfig:
    """A lab run's starting point: the data set, the share of it, the network and how it
    trains (``train``, a :class:`~digitnet.config.TrainConfig`).

    ``subset``: training images used (0: every image of the training split; drawn
    stratified and seeded, after the validation images are set aside as ``digitnet
    train`` does). ``engine``: ``"fast"`` (the fast engine's trainer as ``digitnet train``
    picks it: :func:`digitnet.engine.make_trainer`) or ``"textbook"``. ``stats_every``:
    every how many steps the per-layer statistics are measured.
    """

    dataset: str = "digits"
    subset: int = 0
    engine: str = "fast"
    stats_every: int = 20
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        for message in self.problems():
            raise LabError(message)

    def problems(self) -> list[str]:
        t = self.train
        checks = [
            (self.dataset in LAB_DATASETS,
             f"dataset must be one of {', '.join(LAB_DATASETS)}, got {self.dataset!r}"),
            (is_int(self.subset, 0), "subset must be a number of images >= 0 (0: all)"),
            (t.init_scale <= 1000, "init_scale must be at most 1000"),
            (self.engine in LAB_ENGINES,
             f"engine must be one of {', '.join(LAB_ENGINES)}, got {self.engine!r}"),
            (is_int(self.stats_every, 1), "stats_every must be a number of steps >= 1"),
            (t.ema == 0, "ema: the lab shows and trains the weights themselves; weight "
                         "averaging is digitnet train's (--ema)"),
            (t.patience == 0, "patience: the lab does not stop early (you do)"),
            (t.keep == "last", "keep: the lab keeps the weights it has now (keep 'last')"),
            (t.dropout <= MAX_DROPOUT, f"dropout must be at most {MAX_DROPOUT}"),
        ]
        return [message for ok, message in checks if not ok]

    def to_dict(self) -> dict[str, Any]:
        """One flat object: the lab's own fields and every training option."""
        return {"dataset": self.dataset, "subset": self.subset, "engine": self.engine,
                "stats_every": self.stats_every, **self.train.to_dict()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LabConfig:
        """The configuration of :meth:`to_dict`'s object; options left out take the data
        set's recipe (:func:`lab_defaults`). Unknown keys are refused."""
        values = dict(values)
        lab_keys = {f.name for f in fields(cls)} - {"train"}
        train_keys = {f.name for f in fields(TrainConfig)}
        unknown = set(values) - lab_keys - train_keys
        if unknown:
            raise LabError(f"unknown lab setting(s): {', '.join(sorted(unknown))}")
        dataset = values.get("dataset", "digits")
        if dataset not in LAB_DATASETS:
            raise LabError(f"dataset must be one of {', '.join(LAB_DATASETS)}, got {dataset!r}")
        lab = {k: values[k] for k in lab_keys if k in values}
        train = {k: values[k] for k in train_keys if k in values}
        if "hidden" in train and isinstance(train["hidden"], (list, tuple)):
            train["hidden"] = tuple(train["hidden"])
        try:
            return cls(**lab, train=lab_defaults(dataset, **train))
        except (TypeError, ValueError) as exc:
            raise LabError(str(exc)) from None


def lab_defaults(dataset: str, **overrides: Any) -> TrainConfig:
    """The lab's starting recipe for ``dataset``: ``digitnet train``'s for digits
    (:data:`digitnet.config.RECIPES`), the ``plain`` preset for MNIST and Fashion-MNIST,
    with a constant learning rate (a rate changed by hand
    is then the rate used) and the last weights kept (``keep="last"``: what the lab shows
    is what it saves), with ``overrides`` on top."""
    from digitnet.config import recipe

    # MNIST's default recipe averages the weights (ema) of 15 augmented epochs: the lab
    # starts from the plain one (TrainConfig's own defaults), which it can show as it is
    preset = None if dataset == "digits" else "plain"
    return recipe(dataset, preset, **{"schedule": "constant", "keep": "last", **overrides})


def build_network(config: LabConfig, n_inputs: int, n_classes: int) -> MLP:
    """The lab's network: as ``digitnet train`` builds it for ``config.train`` (its
    ``init_scale`` included), and always with its hidden Dropout layers, at the
    configuration's rate (0 passes values through: the same bits as no layer), so that
    dropout can be switched on while it trains."""
    t = config.train
    network = MLP(n_inputs, t.hidden, n_classes, t.activation, t.dtype, t.seed,
                  dropout=_PLACEHOLDER_DROPOUT, input_dropout=t.input_dropout,
                  init_scale=t.init_scale)
    for layer in hidden_dropouts(network):
        layer.p = float(t.dropout)
    network.dropout = float(t.dropout)
    return network


def hidden_dropouts(network: MLP) -> list[Dropout]:
    """The Dropout layers after the hidden layers (not the one on the input pixels)."""
    first = network.layers[0] if network.layers else None
    return [d for d in network.dropouts if d is not first]


def subset_indices(y: NDArray[np.integer], n: int, seed: int) -> NDArray[np.intp]:
    """``n`` indices into ``y``, stratified (each class in proportion) and seeded, ascending."""
    if n <= 0 or n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 3]))
    order = rng.permutation(len(y))
    labels = np.asarray(y)[order]
    rank = np.empty(len(order))
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        rank[members] = (np.arange(len(members)) + 0.5) / len(members)
    chosen = order[np.argsort(rank, kind="stable")[:n]]
    return np.sort(chosen)


# --------------------------------------------------------------------------- change log
@dataclass(frozen=True)
class Change:
    """One setting changed during a run: from step ``step + 1`` on (``step`` steps were
    done), in epoch ``epoch``; ``at`` says where: after a step (``"step"``) or at the start
    of an epoch (``"epoch_start"``, before its images and batches are made)."""

    step: int
    epoch: int
    setting: str
    old: Any
    new: Any
    at: str = "step"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Change:
        try:
            change = cls(int(d["step"]), int(d["epoch"]), str(d["setting"]), d["old"],
                         d["new"], str(d.get("at", "step")))
        except (KeyError, TypeError, ValueError) as exc:
            raise LabError(f"a change log entry is unreadable ({exc})") from None
        if change.setting not in LIVE_SETTINGS or change.at not in ("step", "epoch_start"):
            raise LabError(f"a change log entry names an unknown setting or moment: {d}")
        return change


def check_setting(setting: str, value: Any, optimizer: str, n_train: int) -> Any:
    """``value`` for ``setting``, checked (and converted: a whole number for the batch
    size, a float for the rates); :class:`LabError` naming the problem otherwise."""
    if setting not in LIVE_SETTINGS:
        raise LabError(f"{setting!r} cannot be changed while training; the live settings "
                       f"are {', '.join(LIVE_SETTINGS)}")
    if setting == "augment":
        if value not in AUGMENTATIONS:
            raise LabError(f"augment must be one of {', '.join(AUGMENTATIONS)}")
        return value
    if setting == "batch_size":
        if not is_int(value, 1):
            raise LabError("batch_size must be a whole number >= 1")
        return min(int(value), n_train)
    if not is_finite_number(value):
        raise LabError(f"{setting} must be a number")
    number = float(value)
    if setting == "lr" and not 0 < number <= MAX_LR:
        raise LabError(f"lr must be a number in (0, {MAX_LR:g}]")
    if setting == "momentum":
        if optimizer not in ("momentum", "nesterov"):
            raise LabError(f"momentum applies to the optimizers momentum and nesterov, "
                           f"not {optimizer}")
        if not 0 <= number < 1:
            raise LabError("momentum must be in [0, 1)")
    if setting == "weight_decay" and not 0 <= number <= 1:
        raise LabError("weight_decay must be in [0, 1]")
    if setting == "dropout" and not 0 <= number <= MAX_DROPOUT:
        raise LabError(f"dropout must be in [0, {MAX_DROPOUT}]")
    return number


# ---------------------------------------------------------------------------- session
class _Stopped(Exception):
    """Raised inside the epoch loop to end the run between two steps."""

    def __init__(self, outcome: str = "stopped") -> None:
        super().__init__(outcome)
        self.outcome = outcome


class _EpochBatches:
    """The mini-batches :func:`train_epoch` iterates: the epoch's order, drawn as
    :meth:`digitnet.batches.BatchLoader.epoch` draws it (so, without changes, the same
    batches), served by the trainer's loader in its batch size. After a change of batch size
    (a new trainer) the rest of that order is served by the new trainer's loader, in the new
    size."""

    def __init__(self, session: LabSession) -> None:
        self.session = session

    def epoch(self) -> Iterator[tuple[Array, NDArray[np.intp]]]:
        session = self.session
        loader = session.trainer.batches
        order = loader.rng.permutation(len(loader.x))
        done = 0
        while done < len(order):
            loader = session.trainer.batches
            size = loader.batch_size
            batches = [order[start:start + size] for start in range(done, len(order), size)]
            for xb, yb in loader.serve(batches):
                done += len(yb)
                yield xb, yb
                if session.trainer.batches is not loader:  # a new batch size, a new trainer
                    break


class _Stepper:
    """What :func:`train_epoch` sees as the trainer: the session's mini-batches and its
    step (which measures the statistics every ``stats_every`` steps)."""

    def __init__(self, session: LabSession) -> None:
        self.session = session
        self.batches: Any = _EpochBatches(session)  # what train_epoch uses of a BatchLoader

    def __enter__(self) -> _Stepper:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def step(self, x: Array, y: NDArray[np.integer], lr: float) -> tuple[float, int]:
        return self.session._step(x, y, lr)

    def evaluate(self, x: NDArray[np.uint8], y: NDArray[np.integer]) -> tuple[float, float]:
        return self.session.trainer.evaluate(x, y)

    def state_dict(self) -> dict[str, Any]:
        return self.session.trainer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.session.trainer.load_state_dict(state)


@dataclass
class Measure:
    """The statistics of one measured step (before its update was applied): per Dense layer
    the norms of ``dL/dW`` and ``dL/db``, the update's size relative to the weights
    ``||ΔW|| / ||W||``, and per hidden layer the share of inactive units."""

    step: int
    epoch: int
    grad_norm: list[float]
    bias_grad_norm: list[float]
    update_ratio: list[float]
    inactive: list[float]


def active_units(activation: str, a: Array) -> NDArray[np.bool_]:
    """Which units (columns of ``a``, one layer's outputs for a batch) are active for at
    least one sample: ReLU and leaky ReLU output > 0 (else no gradient, or a 0.01 one),
    sigmoid inside (0.01, 0.99) and tanh inside (-0.99, 0.99) (outside they saturate: their
    derivative is under 0.01)."""
    if activation in ("relu", "leaky_relu"):
        active = a > 0
    elif activation == "sigmoid":
        active = (a > 0.01) & (a < 0.99)
    else:
        active = np.abs(a) < 0.99
    return np.asarray(active.any(axis=0), dtype=np.bool_)


def inactive_share(activation: str, a: Array) -> float:
    """The share of units inactive for every sample of the batch ``a``
    (:func:`active_units`)."""
    if a.size == 0:
        return 0.0
    return float(1.0 - active_units(activation, a).mean())


_RUN_IDS = itertools.count(1)


class LabSession:
    """One lab run of ``config`` on ``dataset``, in its own thread (:meth:`start`) or in
    the caller's (:meth:`run`).

    Controls (any thread, take effect between two steps): :meth:`pause`, :meth:`resume`,
    :meth:`run_epoch`, :meth:`run_step`, :meth:`set_delay`, :meth:`stop`. Settings:
    :meth:`change`. Observing: :meth:`snapshot`, :meth:`facts`, :meth:`gradient_check`;
    :meth:`save` writes a run folder. ``schedule``: changes to apply at their logged steps
    instead of the learner's (what :func:`replay` passes).
    """

    def __init__(self, config: LabConfig, dataset: Dataset,
                 schedule: Iterable[Change] | None = None) -> None:
        from digitnet.experiment import split_for_training

        if dataset.name != config.dataset:
            raise LabError(f"the configuration is for {config.dataset}, the data set is "
                           f"{dataset.name}")
        self.config, self.dataset = config, dataset
        t = config.train
        self.scaler = MinMaxScaler.fit(dataset.x_train)  # the whole training set, as train_run
        x_tr, y_tr, x_val, y_val = split_for_training(dataset, t)
        if config.subset:
            keep = subset_indices(y_tr, config.subset, t.seed)
            x_tr, y_tr = x_tr[keep], y_tr[keep]
        self.x_train, self.y_train, self.x_val, self.y_val = x_tr, y_tr, x_val, y_val
        self.network = build_network(config, dataset.n_features, dataset.n_classes)
        self.rng = np.random.default_rng(np.random.SeedSequence([t.seed, 1]))  # as fit's
        self.trainer: Any = self._new_trainer(t)
        self._rebuild = False  # a change needs a new trainer (batch size, augmentation)
        self.after = AfterStep(self.network, t)
        self.settings: dict[str, Any] = {
            "lr": float(t.lr), "momentum": float(t.momentum),
            "weight_decay": float(t.weight_decay), "dropout": float(t.dropout),
            "batch_size": min(int(t.batch_size), len(x_tr)), "augment": t.augment}
        self._images = self._epoch_images(t.augment)
        self._augmented = False  # whether the loader holds distorted images now
        self.steps_per_epoch = len(self.trainer.batches)
        self.total_steps = self.steps_per_epoch * t.epochs
        self.warmup = int(t.warmup_epochs * self.steps_per_epoch)
        self.initial_state = self.network.get_state()
        self._good_state: list[Array] | None = None  # the last complete epoch's weights
        self._stepper = _Stepper(self)
        self._stats_every = config.stats_every
        self.run_id = next(_RUN_IDS)  # the page tells a new run's snapshots from an old one's
        self._lock = threading.Lock()  # held while a step changes the weights
        self._cond = threading.Condition()  # controls, pending changes
        self._mode = "pause"  # run | pause | epoch | step | stop
        self._delay = 0.0
        self._pending: list[tuple[str, Any]] = []
        self._schedule = sorted(schedule or [], key=lambda c: c.step)
        self._until: int | None = None
        self._thread: threading.Thread | None = None
        self.started = False
        self.finished = False  # the run is over (stopped, diverged, failed)
        self.outcome: str | None = None  # stopped | diverged | failed, once finished
        self.message = ""
        self.steps = 0
        self.epochs_done = 0
        self.epoch_seen = 0  # samples of the current epoch trained so far
        self.changes: list[Change] = []
        self.history: list[EpochRecord] = []
        self.epoch_steps: list[int] = []  # steps done at the end of each epoch
        self._history_dicts: list[dict[str, Any]] = []  # the history as the page gets it
        self.batch_loss: list[float] = []
        self.batch_accuracy: list[float] = []
        self.measures: list[Measure] = []
        self._clock: tuple[float, float | None] | None = None  # (start, end) of _run
        self._waited = 0.0  # seconds _run spent waiting (paused, slow motion)
        self._wait_began: float | None = None
        self.last_gradient_check: dict[str, Any] | None = None
        self._samples: tuple[int, dict[str, str]] | None = None  # augmentation previews
        self._probe: Array | None = None  # images for the inactive units of small batches
        self._probe_result: list[float] | None = None
        self._before: list[Array] | None = None  # the weights before a measured update
        self.version = 0  # bumped whenever something a snapshot shows has changed
        self._activations = [layer for layer in self.network.layers
                             if isinstance(layer, ActivationLayer)]

    # ------------------------------------------------------------------ controls
    def start(self) -> None:
        """Start training in a background thread (it runs until paused or stopped)."""
        with self._cond:
            if self.started:
                raise LabError("this run has started already")
            self.started = True
            self._mode = "run"
            self._thread = threading.Thread(target=self._run, name="digitnet-lab",
                                            daemon=True)
            self._thread.start()

    def run(self, until_steps: int | None = None) -> None:
        """Train in this thread: until ``until_steps`` steps are done (past the planned
        epochs if need be), or without it until the planned epochs are done."""
        with self._cond:
            if self.started:
                raise LabError("this run has started already")
            self.started = True
            self._mode = "run"
            self._until = until_steps
        self._run(blocking=True)

    def _control(self, mode: str) -> None:
        with self._cond:
            if self.finished:
                raise LabError(f"the run is over ({self.outcome}); start a new one")
            if not self.started:
                self.started = True
                self._mode = mode
                self._thread = threading.Thread(target=self._run, name="digitnet-lab",
                                                daemon=True)
                self._thread.start()
            else:
                self._mode = mode
                self._waiting = False  # it wakes up: no longer idle
            self._cond.notify_all()
        self.version += 1

    def pause(self) -> None:
        """Pause after the current step."""
        with self._cond:
            if self.finished or not self.started:
                return
            if self._mode != "stop":
                self._mode = "pause"
            self._cond.notify_all()
        self.version += 1

    def resume(self) -> None:
        """Go on training (after the planned epochs: one more epoch at a time)."""
        self._control("epoch" if self.done else "run")

    def run_epoch(self) -> None:
        """Train to the end of the current epoch (a whole one between epochs), then pause."""
        self._control("epoch")

    def run_step(self) -> None:
        """Train one mini-batch, then pause."""
        self._control("step")

    def set_delay(self, seconds: float) -> None:
        """Slow motion: wait ``seconds`` (0-5) after every step; 0 is full speed."""
        if not is_finite_number(seconds) or not 0 <= seconds <= 5:
            raise LabError("the slow-motion delay must be 0-5 seconds")
        with self._cond:
            self._delay = float(seconds)
            self._cond.notify_all()
        self.version += 1

    def stop(self) -> None:
        """End the run after the current step (for good)."""
        with self._cond:
            if not self.started:
                self.started = self.finished = True
                self.outcome = "stopped"
                self.message = "stopped before it started"
            self._mode = "stop"
            self._waiting = False  # it wakes up to end
            self._cond.notify_all()
        self.version += 1

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the training thread to end; whether it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until the thread is paused between two steps or has ended."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self.finished or (self.started and self._waiting)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    _waiting = False  # the thread is waiting for a control (paused, done)

    @property
    def train_seconds(self) -> float:
        """Seconds spent training so far (the loop with its validation, as ``digitnet
        train``'s ``train_seconds``): pauses and slow-motion delays not counted."""
        if self._clock is None:
            return 0.0
        start, end = self._clock
        now = time.perf_counter() if end is None else end
        waiting = self._wait_began
        return now - start - self._waited - (now - waiting if waiting is not None and end is None
                                              else 0.0)

    @property
    def delay(self) -> float:
        return self._delay

    @property
    def done(self) -> bool:
        """The planned epochs are done (the run waits; "+1 epoch" goes on)."""
        return self.epochs_done >= self.config.train.epochs

    @property
    def state(self) -> str:
        """``ready``, ``running``, ``paused``, ``done``, ``stopped``, ``diverged`` or
        ``failed``."""
        if self.finished:
            return self.outcome or "stopped"
        if not self.started:
            return "ready"
        if self._waiting:
            return "done" if self.done and self.epoch_seen == 0 else "paused"
        return "running"

    def change(self, setting: str, value: Any) -> Any:
        """Ask for ``setting`` to become ``value``: from the next step (``lr``,
        ``momentum``, ``weight_decay``, ``dropout``, ``batch_size``) or the next epoch
        (``augment``); logged when it takes effect. Returns the checked value."""
        value = check_setting(setting, value, self.config.train.optimizer, len(self.x_train))
        with self._cond:
            if self.finished:
                raise LabError(f"the run is over ({self.outcome}); start a new one")
            self._pending = [(s, v) for s, v in self._pending if s != setting]
            self._pending.append((setting, value))
            self._cond.notify_all()
        self.version += 1
        return value

    @property
    def pending(self) -> dict[str, Any]:
        """Changes asked for and not yet in effect."""
        with self._cond:
            return dict(self._pending)

    # ------------------------------------------------------------------- the loop
    def _run(self, blocking: bool = False) -> None:
        self._clock = (time.perf_counter(), None)
        self._waited = 0.0
        epoch = 0
        try:
            with contextlib.ExitStack() as stack:
                self.trainer.__enter__()
                # the trainer of the moment: a change of batch size brings a new one
                stack.callback(lambda: self.trainer.__exit__(None, None, None))
                while True:
                    self._between_epochs()
                    epoch = self.epochs_done + 1
                    self._apply_changes(epoch_start=True)
                    self._begin_epoch(epoch)
                    epoch_start = time.perf_counter()
                    waited_before = self._waited
                    loss, acc, lr = train_epoch(
                        self._stepper, self._lr_at, self.steps, self._on_step,
                        self.after if self.after else None)
                    record = EpochRecord(epoch, loss, acc, None, None, lr, 0.0)
                    if self.x_val is not None and self.y_val is not None and len(self.x_val):
                        with self._lock, FORK_GATE.computing():
                            record.val_loss, record.val_accuracy = self.trainer.evaluate(
                                self.x_val, self.y_val)
                        check_loss(record.val_loss, "the validation")
                    record.seconds = (time.perf_counter() - epoch_start
                                      - (self._waited - waited_before))
                    with self._lock:
                        self._good_state = self.network.get_state()
                        self.history.append(record)
                        self.epoch_steps.append(self.steps)
                        self._history_dicts.append(_shown(record, self.steps))
                        self.epochs_done = epoch
                        self.epoch_seen = 0
                    self.version += 1
        except _Stopped as stop:
            what = ("the planned epochs are done" if stop.outcome == "done"
                    else "stopped")
            self._finish(stop.outcome, f"{what} after {self.steps} steps "
                         f"({self.epochs_done} complete epochs)")
        except Diverged as error:
            back = (f"the weights of epoch {self.epochs_done}" if self._good_state is not None
                    else "the initial weights")
            with self._lock:
                self.network.set_state(self._good_state or self.initial_state)
            lr = self.settings["lr"]
            self._finish("diverged", f"training diverged in epoch {epoch}, step {self.steps}: "
                         f"{error} (learning rate {lr:g}). The divergence guard "
                         f"(digitnet.training.check_loss) stopped the run and put back "
                         f"{back}; start again with a lower learning rate")
        except Exception as error:  # a bug must not pass silently in a background thread
            self._finish("failed", f"training failed: {type(error).__name__}: {error}")
            if blocking:
                raise
        finally:
            self._clock = (self._clock[0], time.perf_counter())
            self.version += 1

    def _finish(self, outcome: str, message: str) -> None:
        with self._cond:
            self.finished = True
            self.outcome, self.message = outcome, message
            self._cond.notify_all()

    def _lr_at(self, t: int) -> float:
        return learning_rate(self.config.train.schedule, self.settings["lr"], t,
                             self.total_steps, self.warmup)

    def _new_trainer(self, config: TrainConfig) -> Any:
        """The trainer ``digitnet train`` runs for ``config``: the fast engine's
        (:func:`digitnet.engine.make_trainer`) or the textbook one."""
        args = (self.network, config, self.x_train, self.y_train, self.scaler, self.rng)
        if self.config.engine != "fast":
            return TextbookTrainer(*args)
        from digitnet.engine import make_trainer
        from digitnet.engine.split import SplitTrainer, helper_can_run

        trainer = make_trainer(*args)
        if isinstance(trainer, SplitTrainer):
            # The lab's thread is the only one here that trains: it may fork the helper
            # (helper_can_run's main-thread rule is for processes with several such threads).
            trainer.use_helper = helper_can_run(any_thread=True)
        return trainer

    def _replace_trainer(self) -> None:
        """A new trainer for the batch size and augmentation now in effect, going on where
        the old one stopped: the network's weights, the optimizer's state and step count,
        the live settings and (mid-epoch) this epoch's images. The caller holds the lock."""
        old, s = self.trainer, self.settings
        state = old.state_dict()
        images = old.batches.x
        had_velocity = bool(getattr(old.optimizer, "velocity", None))
        old.__exit__(None, None, None)
        config = dataclasses.replace(
            self.config.train, batch_size=s["batch_size"], augment=s["augment"], lr=s["lr"],
            momentum=s["momentum"], weight_decay=s["weight_decay"])
        self.trainer = new = self._new_trainer(config)
        new.__enter__()
        if had_velocity:
            self._ensure_velocity()
        new.load_state_dict(state)
        if self._augmented and s["augment"] != "none":
            new.batches.replace_images(images)
        else:
            self._augmented = False  # the new loader holds the original images
        self.steps_per_epoch = len(new.batches)
        t = self.config.train
        left = 0
        if self.epochs_done < t.epochs:  # the rest of this epoch, then the planned ones
            left = (-(-(len(self.x_train) - self.epoch_seen) // new.batches.batch_size)
                    + (t.epochs - self.epochs_done - 1) * self.steps_per_epoch)
        self.total_steps = self.steps + left

    def _ensure_velocity(self) -> None:
        """Momentum's velocity for an SGD optimizer built without momentum (zeros; in the
        trainer's state vectors where it has them, so that its state carries it)."""
        optimizer = self.trainer.optimizer
        if optimizer.velocity:
            return
        vectors = getattr(self.trainer, "state_vectors", None)
        optimizer.velocity = (list(vectors) if vectors else
                              [np.zeros_like(p) for p in optimizer.params])

    def _rest(self) -> None:
        """Before a wait (paused, slow motion): the split engine's helper sleeps."""
        rest = getattr(self.trainer, "rest", None)
        if rest is not None:
            rest()

    def _epoch_images(self, kind: str) -> EpochImages | None:
        augmenter = AUGMENTERS[kind]
        if augmenter is None:
            return None
        t = self.config.train
        return EpochImages(augmenter, self.x_train, t.seed, t.epochs)

    def _begin_epoch(self, epoch: int) -> None:
        """This epoch's images: fresh distortions with augmentation, else the originals."""
        if self._images is not None:
            self._rest()  # the split's helper has nothing to do meanwhile
            with FORK_GATE.computing():
                images = self._images(epoch)
            with self._lock:
                self.trainer.batches.replace_images(images)
            self._augmented = True
        elif self._augmented:
            with self._lock:
                self.trainer.batches.replace_images(self.x_train)
            self._augmented = False

    def _between_epochs(self) -> None:
        """Where the loop waits between two epochs: after "+1 epoch", at the planned end."""
        with self._cond:
            if self._until is not None:
                if self.steps >= self._until:
                    raise _Stopped
            elif self.done and self._thread is None:  # run() in the caller's thread
                raise _Stopped("done")
            if self.history and self._mode == "epoch":
                self._mode = "pause"
            if self.done and self._mode == "run" and self._until is None:
                self._mode = "pause"
        self._pause_point(after_step=False)

    def _pause_point(self, after_step: bool) -> None:
        """Wait while paused (after a step: also for "+1 step" and slow motion); raise
        :class:`_Stopped` when asked to stop."""
        with self._cond:
            if after_step and self._mode == "step":
                self._mode = "pause"
            if after_step and self._mode == "run" and self._delay > 0:
                self._rest()
                began = self._wait_began = time.perf_counter()
                self._cond.wait(self._delay)
                self._waited += time.perf_counter() - began
                self._wait_began = None
            if self._mode == "pause":
                self._rest()
                began = self._wait_began = time.perf_counter()
                self._waiting = True
                self.version += 1
                self._cond.notify_all()
                while self._mode == "pause":
                    self._cond.wait()
                self._waiting = False
                self._waited += time.perf_counter() - began
                self._wait_began = None
            if self._mode == "stop":
                raise _Stopped

    def _on_step(self, seen: int, loss: float, accuracy: float) -> None:
        """After every step (``train_epoch``'s ``on_step``): changes, controls, the clock."""
        self.epoch_seen = seen
        if self._pending or self._schedule:
            self._apply_changes(epoch_start=False)
        if self._until is not None and self.steps >= self._until:
            raise _Stopped
        if self._mode != "run" or self._delay:
            self._pause_point(after_step=True)
            if self._pending:
                self._apply_changes(epoch_start=False)
        self.version += 1

    def _apply_changes(self, epoch_start: bool) -> None:
        """Put the changes due now into effect and log them: the learner's pending ones
        (per-epoch settings only at an epoch's start), or the schedule's of this step."""
        at = "epoch_start" if epoch_start else "step"
        with self._cond:
            if self._schedule:
                if self._schedule[0].step != self.steps:
                    return
                due = [c for c in self._schedule if c.step == self.steps and c.at == at]
                self._schedule = [c for c in self._schedule if c not in due]
                todo = [(c.setting, c.new) for c in due]
            else:
                todo = [(s, v) for s, v in self._pending
                        if epoch_start or LIVE_SETTINGS[s] == "step"]
                self._pending = [(s, v) for s, v in self._pending if (s, v) not in todo]
        if not todo:
            return
        epoch = self.epochs_done + 1
        for setting, value in todo:
            old = self.settings[setting]
            if value == old:
                continue
            with self._lock:
                self._set(setting, value)
            self.changes.append(Change(self.steps, epoch, setting, old, value, at))
        if self._rebuild:
            with self._lock:
                self._replace_trainer()
            self._rebuild = False
        self.version += 1

    def _set(self, setting: str, value: Any) -> None:
        """Put one setting into effect (the caller holds the lock)."""
        optimizer = self.trainer.optimizer
        self.settings[setting] = value
        if setting == "lr":
            optimizer.lr = value
        elif setting in ("momentum", "weight_decay"):
            if setting == "momentum" and value:  # built without momentum: start from 0
                self._ensure_velocity()
            both = getattr(self.trainer, "set_optimizer_setting", None)
            if both is not None:  # the split engine: here and in its helper process
                both(setting, value)
            else:
                setattr(optimizer, setting, value)
        elif setting == "dropout":
            for layer in hidden_dropouts(self.network):
                layer.p = value
            self.network.dropout = value
        elif setting == "batch_size":
            self._rebuild = True  # once the changes of this moment are all in
        elif setting == "augment":
            self._images = self._epoch_images(value)
            self._rebuild = True  # the split engine shares augmented images from the start

    def _step(self, x: Array, y: NDArray[np.integer], lr: float) -> tuple[float, int]:
        """One training step; every ``stats_every`` steps measured on the way."""
        with self._lock, FORK_GATE.computing():
            if self.steps % self._stats_every:
                loss, n_correct = self.trainer.step(x, y, lr)
            else:  # the trainer's step in its two halves, with the measurements between
                loss, n_correct = self._measured_step(x, y, lr)
                skip = getattr(self.trainer, "skip_timing", None)
                if skip is not None:  # the next step's time would include the measuring
                    skip()
            self.steps += 1
        self.batch_loss.append(loss)
        self.batch_accuracy.append(n_correct / len(y))
        return loss, n_correct

    def _measured_step(self, x: Array, y: NDArray[np.integer], lr: float) -> tuple[float, int]:
        network = self.network
        if self._before is None:  # buffers for the weights before the update, kept
            self._before = [np.empty_like(layer.W) for layer in network.dense]
        for layer, w in zip(network.dense, self._before, strict=True):
            np.copyto(w, layer.W)
        loss, n_correct = network.loss_and_gradients(x, y)
        grads = [_norm(layer.grad_W) for layer in network.dense]
        bias_grads = [_norm(layer.grad_b) for layer in network.dense]
        if len(x) >= MIN_BATCH_FOR_INACTIVE:  # the batch's outputs, as backpropagation saw them
            inactive = [inactive_share(network.activation, layer._a)
                        for layer in self._activations if layer._a is not None]
        update = getattr(self.trainer, "update", None)  # the split engine's, both processes
        if update is not None:
            self.trainer.skip_timing()  # this step's time includes the measuring
            update(lr)
        else:
            self.trainer.optimizer.step(lr)
        if len(x) < MIN_BATCH_FOR_INACTIVE:  # too few images to call a unit dead: a probe
            if self._probe_result is None or len(self.measures) % PROBE_EVERY == 0:
                self._probe_result = self._probe_inactive()
            inactive = self._probe_result
        ratios = []
        for layer, w in zip(network.dense, self._before, strict=True):
            size = _norm(w)
            np.subtract(layer.W, w, out=w)  # the update, in the buffer (refilled next time)
            change = _norm(w)
            ratios.append(change / size if size > 0 else change)
        self.measures.append(Measure(self.steps, self.epochs_done + 1, grads, bias_grads,
                                     ratios, inactive))
        return loss, n_correct

    def _probe_inactive(self) -> list[float]:
        """Inactive shares over the probe images (a forward pass, dropout off as always
        outside ``loss_and_gradients``; it draws nothing at random)."""
        if self._probe is None:
            self._probe = self.scaler.transform(self.x_train[:PROBE_IMAGES],
                                                DTYPES[self.network.dtype])
        alive: list[NDArray[np.bool_]] = []
        # in chunks as small as training's batches: a larger product would wake BLAS's
        # second thread, which waits for a time slice when the machine is busy
        for start in range(0, len(self._probe), PROBE_CHUNK):
            self.network.forward(self._probe[start:start + PROBE_CHUNK].copy())
            masks = [active_units(self.network.activation, layer._a)
                     for layer in self._activations if layer._a is not None]
            alive = masks if not alive else [a | m for a, m in zip(alive, masks, strict=True)]
        return [float(1.0 - a.mean()) for a in alive]

    # ---------------------------------------------------------------- observing
    def weights(self) -> list[Array]:
        """A copy of every ``W`` and ``b`` now (between two steps)."""
        with self._lock:
            return self.network.get_state()

    def facts(self) -> dict[str, Any]:
        """What the hint rules read (:func:`hints`): a plain, JSON-ready dictionary."""
        last = self.measures[-3:]
        history = list(self._history_dicts)
        return {
            "state": self.state,
            "diverged": self.message if self.outcome == "diverged" else None,
            "steps": self.steps,
            "n_classes": self.dataset.n_classes,
            "recent_losses": self.batch_loss[-20:],
            "first_losses": self.batch_loss[:5],
            "grad_norm": last[-1].grad_norm if last else [],
            "update_ratio": last[-1].update_ratio if last else [],
            "inactive": [max(values) for values in zip(*(m.inactive for m in last), strict=True)],
            "measured_steps": len(self.measures),
            "history": history,
            "activation": self.network.activation,
            "init_scale": self.config.train.init_scale,
            "optimizer": self.config.train.optimizer,
            "has_validation": self.x_val is not None and len(self.x_val) > 0,
            **{k: v for k, v in self.settings.items()},
        }

    def snapshot(self, full: bool = True) -> dict[str, Any]:
        """Everything the page shows, JSON-ready. ``full``: with the pictures (weight
        histograms, first-layer tiles, augmentation preview), which cost a little more."""
        version = self.version
        with self._lock:
            weights = [layer.W.copy() for layer in self.network.dense] if full else []
            trained = self.trainer.batches.x[:PREVIEW_IMAGES].copy() if full else None
            n = len(self.batch_loss)
            losses = np.asarray(self.batch_loss[:n], dtype=np.float64)
            accs = np.asarray(self.batch_accuracy[:n], dtype=np.float64)
            measures = list(self.measures)
            history = list(self._history_dicts)
            changes = [c.to_dict() for c in self.changes]
        facts = self.facts()
        out: dict[str, Any] = {
            "run": self.run_id,
            "version": version,
            "state": self.state,
            "message": self.message,
            "config": self.config.to_dict(),
            "network": self.network.describe(),
            "layer_sizes": self.network.layer_sizes,
            "n_parameters": self.network.n_parameters,
            "n_train": len(self.x_train),
            "n_validation": 0 if self.x_val is None else len(self.x_val),
            "settings": dict(self.settings),
            "pending": self.pending,
            "delay": self._delay,
            "changes": changes,
            "steps": self.steps,
            "epoch": self.epochs_done + (0 if self.epoch_seen == 0 else 1),
            "epochs_done": self.epochs_done,
            "epoch_progress": self.epoch_seen / max(len(self.x_train), 1),
            "steps_per_epoch": self.steps_per_epoch,
            "planned_epochs": self.config.train.epochs,
            "train_seconds": round(self.train_seconds, 3),
            "batches": _series(losses, accs),
            "measures": _measure_series(measures),
            "history": history,
            "hints": hints(facts),
            "gradient_check": self.last_gradient_check,
        }
        if full:
            out["histograms"] = [weight_histogram(w0, w) for w0, w in
                                 zip(self.initial_state[::2], weights, strict=True)]
            out["tiles"] = first_layer_tiles(weights[0], self.dataset.image_shape)
            with FORK_GATE.computing():  # the previews' distortions use BLAS
                out["preview"] = self._preview(trained)
        return out

    def _preview(self, trained: NDArray[np.uint8] | None) -> dict[str, Any]:
        shape = self.dataset.image_shape
        original = self.x_train[:PREVIEW_IMAGES]
        preview: dict[str, Any] = {"shape": [len(original), *shape],
                                   "max": float(self.scaler.hi),
                                   "original": _b64(original), "augment": self.settings[
                                       "augment"], "augmented": None, "samples": {}}
        if trained is not None and self._augmented:
            preview["augmented"] = _b64(trained)
        epoch = self.epochs_done + 1
        if self._samples is None or self._samples[0] != epoch:
            samples = {}
            for kind, augmenter in AUGMENTERS.items():
                if augmenter is not None:  # what this epoch's training images would be
                    scaled = augmenter.scaled_for(shape)
                    samples[kind] = _b64(scaled.epoch(original, self.config.train.seed, epoch,
                                                      image_shape=shape))
            self._samples = (epoch, samples)
        preview["samples"] = self._samples[1]
        return preview

    def gradient_check(self, n_images: int = 8, entries: int = 24,
                       eps: float = 1e-6) -> dict[str, Any]:
        """The current network's backpropagation against central finite differences
        (:func:`gradient_check`), on ``n_images`` training images; kept for the page."""
        with self._lock:
            state = self.network.get_state()
        x = self.scaler.transform(self.x_train[:n_images], np.float64)
        y = self.y_train[:n_images]
        with FORK_GATE.computing():
            result = gradient_check(self.network, state, x, y, entries=entries, eps=eps,
                                    smoothing=self.network.loss.smoothing)
        result["step"] = self.steps
        self.last_gradient_check = result
        self.version += 1
        return result

    # -------------------------------------------------------------------- saving
    def record(self, steps: int | None = None,
               changes: Sequence[Change] | None = None) -> dict[str, Any]:
        """``lab.json``'s content: what :func:`replay` needs to train the same weights."""
        return {"format": LAB_FORMAT, "format_version": 1, "config": self.config.to_dict(),
                "changes": [c.to_dict() for c in (self.changes if changes is None
                                                  else changes)],
                "steps": self.steps if steps is None else steps,
                "epochs_done": self.epochs_done, "outcome": self.outcome}

    def save(self, folder: str | os.PathLike[str], report: bool = True,
             force: bool = False) -> Path:
        """Write the network as it is now into the run folder ``folder``, as ``digitnet
        train`` does (``model.npz``, ``metrics.json``, and with ``report`` the figures and
        ``report.html``), plus ``lab.json``. Training may go on meanwhile."""
        from digitnet.experiment import environment, evaluate_model
        from digitnet.fileio import atomic_write_json
        from digitnet.model_io import TrainedModel
        from digitnet.runs import claim_run_dir, write_run

        with self._lock:  # weights, steps and log of one moment
            state = self.network.get_state()
            steps, changes = self.steps, list(self.changes)
            history = [dataclasses.asdict(r) for r in self.history]
            settings = dict(self.settings)
        t = self.config.train
        network = MLP(self.network.n_inputs, t.hidden, self.network.n_classes, t.activation,
                      t.dtype, t.seed, dropout=settings["dropout"],
                      input_dropout=t.input_dropout, init_scale=t.init_scale)
        network.set_state(state)
        if not all(np.isfinite(p).all() for p in state):
            raise LabError("the network's weights are not finite: nothing to save")
        dataset = self.dataset
        model = TrainedModel(network, self.scaler, dataset.class_names, dataset.image_shape,
                             dataset.name)
        proba = np.empty((len(dataset.x_test), dataset.n_classes), DTYPES[network.dtype])
        # the gate, not the lock: a fork (the training thread's, which may hold the lock)
        # waits for these products
        with FORK_GATE.computing():
            test = evaluate_model(model, dataset, proba)
        lab = self.record(steps, changes)
        model.info = {"test_accuracy": test["test_accuracy"], "f1_macro": test["f1_macro"],
                      "config": t.to_dict(), "epochs_run": len(history), "lab": True}
        metrics: dict[str, Any] = {
            **test,
            "train_seconds": self.train_seconds,
            "epochs_run": len(history),
            "best_epoch": len(history),
            "stopped_early": False,
            "interrupted": self.outcome == "stopped",
            "diverged": self.message if self.outcome == "diverged" else None,
            "history": history,
            "config": t.to_dict(),
            "engine": self.config.engine,
            "engine_info": {"lab": True},
            "seed": t.seed,
            "dataset": {"name": dataset.name, "source": dataset.source,
                        "n_train": len(self.x_train),
                        "n_validation": 0 if self.x_val is None else len(self.x_val),
                        "n_test": len(dataset.x_test)},
            "architecture": network.describe(),
            "layer_sizes": network.layer_sizes,
            "n_parameters": network.n_parameters,
            "environment": environment(),
            "lab": {**lab, "settings_at_save": settings},
        }
        with claim_run_dir(folder, force=force) as path:
            write_run(path, model, metrics)
            atomic_write_json(path / LAB_FILE, lab)
            if report:
                from digitnet.report import write_report

                with FORK_GATE.computing():
                    write_report(path, model, metrics, dataset, proba)
        return Path(folder)


# ------------------------------------------------------------------------- statistics
def _shown(record: EpochRecord, step: int) -> dict[str, Any]:
    """An epoch's record as the page gets it: numbers to 5 significant digits, the step."""
    d: dict[str, Any] = {k: float(f"{v:.5g}") if isinstance(v, float) else v
                         for k, v in dataclasses.asdict(record).items()}
    d["step"] = step
    return d


def _norm(a: Array) -> float:
    """``||a||`` (Frobenius): one dot product, cheaper than ``np.linalg.norm`` for these."""
    flat = a.reshape(-1)
    return math.sqrt(float(np.dot(flat, flat)))


def _block_means(values: NDArray[np.float64], points: int
                 ) -> tuple[list[int], list[float | None]]:
    """``values`` averaged over consecutive blocks so that at most ``points`` remain; the
    step (1-based, the block's last) of each."""
    n = len(values)
    if n == 0:
        return [], []
    block = max(1, math.ceil(n / points))
    m = n // block * block
    means = values[:m].reshape(-1, block).mean(axis=1) if m else np.empty(0)
    steps = list(range(block, m + 1, block))
    if m < n:
        means = np.append(means, values[m:].mean())
        steps.append(n)
    return steps, _finite_list(means)


def _finite_list(values: NDArray[np.floating], digits: int = 4) -> list[float | None]:
    """``values`` to ``digits`` significant digits (for a chart; JSON then writes them
    short) as a list of floats, ``None`` where they are not finite; in NumPy, not Python."""
    a = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(a)
    rounded = a.copy()
    nonzero = finite & (a != 0)
    if nonzero.any():
        exponent = np.clip(np.floor(np.log10(np.abs(a[nonzero]))), -290, 290)
        scale = 10.0 ** (digits - 1 - exponent)
        rounded[nonzero] = np.round(a[nonzero] * scale) / scale
    out: list[float | None] = rounded.tolist()
    for i in np.flatnonzero(~finite):
        out[int(i)] = None
    return out


def _finite(v: float) -> float | None:
    """JSON has no NaN or infinity: ``None`` for them."""
    return float(v) if math.isfinite(v) else None


def _series(losses: NDArray[np.float64], accs: NDArray[np.float64]) -> dict[str, Any]:
    steps, loss = _block_means(losses, SERIES_POINTS)
    _, acc = _block_means(accs, SERIES_POINTS)
    return {"step": steps, "loss": loss, "accuracy": acc,
            "per_point": max(1, math.ceil(len(losses) / SERIES_POINTS)) if len(losses) else 1,
            "last_loss": _finite(losses[-1]) if len(losses) else None,
            "last_accuracy": _finite(accs[-1]) if len(accs) else None}


def _measure_series(measures: Sequence[Measure]) -> dict[str, Any]:
    if len(measures) > SERIES_POINTS:
        pick = np.linspace(0, len(measures) - 1, SERIES_POINTS).round().astype(int)
        measures = [measures[i] for i in pick]

    def columns(rows: list[list[float]]) -> list[list[float | None]]:
        width = max((len(r) for r in rows), default=0)
        if not rows or any(len(r) != width for r in rows):
            return [[_finite(r[i]) if i < len(r) else None for r in rows] for i in range(width)]
        return [_finite_list(column) for column in np.asarray(rows, dtype=np.float64).T]

    return {"step": [m.step + 1 for m in measures],
            "grad_norm": columns([m.grad_norm for m in measures]),
            "update_ratio": columns([m.update_ratio for m in measures]),
            "inactive": columns([m.inactive for m in measures])}


def weight_histogram(start: Array, now: Array, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """Histograms of one layer's weights at the start and now, over the same bins
    (symmetric around 0, wide enough for both); shares of the weights per bin."""
    # a large layer's histogram from a fixed, evenly spread sample of its weights: the
    # shares are the same to the eye, and the page asks four times a second
    stride = max(1, math.ceil(now.size / HISTOGRAM_SAMPLE))
    both = [a.reshape(-1)[::stride] for a in (start, now)]
    both = [a[np.isfinite(a)] for a in both]
    limit = max((float(np.abs(a).max()) for a in both if a.size), default=1.0) or 1.0
    edges = np.linspace(-limit, limit, bins + 1)
    # equal bins given by their count and range: NumPy's fast path (edges would sort)
    counts = [np.histogram(a, bins, (-limit, limit))[0] / max(a.size, 1) for a in both]
    return {"edges": [float(e) for e in edges], "start": counts[0].tolist(),
            "now": counts[1].tolist(), "std_start": float(np.std(both[0])) if both[0].size
            else 0.0, "std_now": float(np.std(both[1])) if both[1].size else 0.0,
            "non_finite": int(now.size - np.isfinite(now).sum())}


def first_layer_tiles(W: Array, image_shape: Sequence[int], n: int = TILES) -> dict[str, Any]:
    """The incoming weights of the first ``n`` first-layer units as images: each scaled by
    its own largest magnitude to -127..127 and stored as ``128 + value`` (uint8, base64):
    above 128 a pixel excites the unit, below it inhibits it."""
    units = min(n, W.shape[1])
    tiles = np.nan_to_num(W[:, :units].T.astype(np.float64))
    peak = np.abs(tiles).max(axis=1, keepdims=True)
    peak[peak == 0] = 1.0
    scaled = np.round(128 + 127 * tiles / peak).astype(np.uint8)
    return {"shape": [units, *image_shape], "data": _b64(scaled)}


def _b64(images: NDArray[Any]) -> str:
    return base64.b64encode(np.ascontiguousarray(images, dtype=np.uint8).tobytes()).decode()


# ----------------------------------------------------------------------- gradient check
def gradient_check(network: MLP, state: Sequence[Array], x: Array, y: NDArray[np.integer],
                   entries: int = 24, eps: float = 1e-6, seed: int = 0,
                   smoothing: float = 0.0) -> dict[str, Any]:
    """Backpropagation against central finite differences, per Dense layer: a float64 copy
    of ``network`` (with the weights ``state``, no dropout: the check needs a loss that
    draws nothing at random) computes ``dL/dW`` and ``dL/db`` on the batch ``x, y``; for
    ``entries`` randomly chosen entries of each ``W`` (and up to ``entries`` of each ``b``)
    the numeric derivative ``(L(θ + eps) - L(θ - eps)) / (2 eps)`` is taken too. The
    relative error ``||analytic - numeric|| / (||analytic|| + ||numeric||)`` over those
    entries is typically 1e-10-1e-8 when backpropagation is right, and of order 1 when it is
    not (a ReLU's kink that a difference happens to straddle can make one entry disagree)."""
    copy = MLP(network.n_inputs, network.hidden, network.n_classes, network.activation,
               "float64", network.seed)
    copy.set_state([np.asarray(p, dtype=np.float64) for p in state])
    copy.loss.smoothing = smoothing
    x = np.asarray(x, dtype=np.float64)

    def loss() -> float:
        return copy.loss.forward(copy.forward(x), y)

    copy.loss_and_gradients(x, y)
    analytic = [g.copy() for g in copy.gradients()]
    rng = np.random.default_rng(seed)
    layers = []
    for i, dense in enumerate(copy.dense):
        row: dict[str, Any] = {"layer": i + 1, "shape": list(dense.W.shape)}
        for name, param, grad in (("W", dense.W, analytic[2 * i]),
                                  ("b", dense.b, analytic[2 * i + 1])):
            picked = rng.choice(param.size, size=min(entries, param.size), replace=False)
            numeric = numerical_gradient(loss, param, eps, picked)
            a = grad.reshape(-1)[picked]
            row[name] = relative_error(a, numeric)
            row[f"{name}_checked"] = len(picked)
            row[f"{name}_largest_gradient"] = float(np.abs(a).max()) if len(a) else 0.0
        row["error"] = max(row["W"], row["b"])
        row["ok"] = bool(row["error"] < GRADCHECK_TOLERANCE)
        layers.append(row)
    return {"layers": layers, "batch": len(x), "eps": eps, "tolerance": GRADCHECK_TOLERANCE,
            "ok": all(r["ok"] for r in layers), "loss": float(loss())}


# -------------------------------------------------------------------------------- hints
@dataclass(frozen=True)
class Hint:
    """What a rule noticed (``title``), why it matters and what to do (``why``), and the
    fixes: each ``{"label", "setting", "value"}`` (a live change) or ``{"label",
    "restart": {...}}`` (a new run with these settings changed)."""

    id: str
    level: str  # "problem" or "advice"
    title: str
    why: str
    fixes: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["fixes"] = list(self.fixes)
        return d


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _live(label: str, setting: str, value: Any) -> dict[str, Any]:
    return {"label": label, "setting": setting, "value": value}


def _restart(label: str, **settings: Any) -> dict[str, Any]:
    return {"label": label, "restart": settings}


def rule_diverged(f: Mapping[str, Any]) -> Hint | None:
    """The divergence guard stopped the run."""
    if not f.get("diverged"):
        return None
    lr = float(f["lr"])
    return Hint("diverged", "problem", "The loss exploded: the run was stopped",
                "Each step moved the weights so far that the loss grew instead of shrinking; "
                "the weights then grew with it until the numbers overflowed. A learning rate "
                "about ten times smaller takes steps the loss surface can follow.",
                (_restart(f"Start again with learning rate {_fmt(lr / 10)}", lr=lr / 10),))


def rule_loss_rising(f: Mapping[str, Any]) -> Hint | None:
    """Still running, but the recent batch losses are worse than guessing."""
    recent = [v for v in f.get("recent_losses", []) if v is not None]
    if f.get("diverged") or f.get("steps", 0) < 10 or len(recent) < 5:
        return None
    chance = math.log(f["n_classes"])
    mean = sum(recent) / len(recent) if all(math.isfinite(v) for v in recent) else math.inf
    if mean <= 1.5 * chance:
        return None
    lr = float(f["lr"])
    return Hint("loss-rising", "problem",
                f"The loss ({_fmt(mean)}) is worse than guessing ({_fmt(chance)})",
                f"A network that guesses uniformly among {f['n_classes']} classes has a loss of "
                f"ln {f['n_classes']} = {chance:.2f}. Above that, the steps overshoot: the "
                "learning rate is too high for this network. If the loss passes 100 nats "
                "the divergence guard stops the run.",
                (_live(f"Lower the learning rate to {_fmt(lr / 10)}", "lr", lr / 10),))


def rule_dead_units(f: Mapping[str, Any]) -> Hint | None:
    """Many ReLU units output 0 for whole batches."""
    if f.get("activation") != "relu" or f.get("measured_steps", 0) < 3:
        return None
    inactive = f.get("inactive") or []
    worst = max(inactive, default=0.0)
    if worst < 0.4:
        return None
    layer = inactive.index(worst) + 1
    fixes = [_restart("Start again with leaky ReLU", activation="leaky_relu")]
    if f.get("init_scale", 1.0) > 1.5:
        fixes.insert(0, _restart("Start again with the standard (He) initialization",
                                 init_scale=1.0))
    else:
        fixes.append(_restart(f"Start again with learning rate {_fmt(float(f['lr']) / 10)}",
                              lr=float(f["lr"]) / 10))
    return Hint("dead-units", "problem",
                f"{worst:.0%} of hidden layer {layer}'s units are dead",
                "A ReLU unit whose weighted sum is negative for every image outputs 0 and gets "
                "a gradient of 0: it no longer learns, and usually never comes back. Huge "
                "initial weights or steps that are too large push units there. Leaky ReLU keeps "
                "a small slope below 0, so such units still learn.", tuple(fixes))


def rule_vanishing(f: Mapping[str, Any]) -> Hint | None:
    """The first layer's gradients are tiny next to the last layer's."""
    grads = f.get("grad_norm") or []
    if len(grads) < 2 or f.get("measured_steps", 0) < 2 or not all(
            g is not None and math.isfinite(g) for g in grads):
        return None
    first, last = grads[0], grads[-1]
    if last <= 0 or first / last >= VANISHING_RATIO:
        return None
    fixes = [_restart("Start again with ReLU and the standard (He) initialization",
                      activation="relu", init_scale=1.0)]
    if f.get("init_scale", 1.0) < 0.5:
        fixes.append(_restart("Start again with the standard initialization",
                              init_scale=1.0))
    return Hint("vanishing-gradients", "problem",
                f"Vanishing gradients: the first layer's are {first / last:.1e} of the last's",
                "Backpropagation multiplies the error signal, layer by layer, by the weights and "
                "by the activation's derivative. With small weights, or a sigmoid (whose "
                "derivative is at most 1/4), it shrinks at every layer, so the first layers "
                "hardly learn. He or Glorot initialization keeps its size from layer to layer; "
                "ReLU's derivative is 1 where it is active.", tuple(fixes))


def rule_updates(f: Mapping[str, Any]) -> Hint | None:
    """Updates far too small or too large relative to the weights."""
    ratios = [r for r in f.get("update_ratio") or [] if r is not None and math.isfinite(r)]
    if not ratios or f.get("measured_steps", 0) < 3 or f.get("diverged"):
        return None
    lr = float(f["lr"])
    typical = sorted(ratios)[len(ratios) // 2]  # the median layer: one tiny layer is no rule
    grads = [g for g in f.get("grad_norm") or [] if g is not None]
    if typical > 0.1:
        return Hint("updates-large", "problem",
                    f"Each step changes the weights by {typical:.0%} (median layer)",
                    "A useful rule of thumb: a step should change a layer's weights by about "
                    "a thousandth (update / weight ratio ~1e-3). Steps of a tenth or more "
                    "rewrite the network faster than it can learn and often end in a "
                    "diverging loss.",
                    (_live(f"Lower the learning rate to {_fmt(lr / 10)}", "lr", lr / 10),))
    # (a network whose units all died has updates of 0, but a larger rate will not help it)
    if max(ratios) < 1e-5 and f.get("steps", 0) >= 50 and grads and min(grads) > 0:
        return Hint("updates-tiny", "advice",
                    f"The steps are tiny: at most {max(ratios):.1e} of the weights",
                    "With updates a hundred times below the rule of thumb (~1e-3 of the "
                    "weights per step) training crawls. A larger learning rate learns faster.",
                    (_live(f"Raise the learning rate to {_fmt(lr * 10)}", "lr", lr * 10),))
    return None


def rule_overfitting(f: Mapping[str, Any]) -> Hint | None:
    """Training accuracy far above validation, validation loss rising."""
    history = [r for r in f.get("history", []) if r.get("val_loss") is not None]
    if len(history) < 3:
        return None
    last = history[-1]
    gap = last["train_accuracy"] - last["val_accuracy"]
    best = min(range(len(history)), key=lambda i: history[i]["val_loss"])
    rising = best <= len(history) - 3 and last["val_loss"] > 1.05 * history[best]["val_loss"]
    if gap < 0.03 or not rising:
        return None
    fixes = []
    if f.get("dropout", 0.0) < 0.2:
        fixes.append(_live("Turn dropout on (0.3)", "dropout", 0.3))
    if f.get("augment", "none") == "none":
        fixes.append(_live("Turn augmentation on (affine)", "augment", "affine"))
    if f.get("weight_decay", 0.0) == 0:
        fixes.append(_live("Add L2 weight decay (1e-4)", "weight_decay", 1e-4))
    return Hint("overfitting", "problem",
                f"Overfitting: training accuracy {last['train_accuracy']:.1%}, validation "
                f"{last['val_accuracy']:.1%}, and the validation loss is rising",
                f"The validation loss was lowest in epoch {history[best]['epoch']} and has risen "
                "since: the network now learns the training images themselves (their noise "
                "included) rather than what makes a digit. Dropout, augmented images and weight "
                "decay make memorizing harder; more training images help most.", tuple(fixes))


RULES: tuple[Callable[[Mapping[str, Any]], Hint | None], ...] = (
    rule_diverged, rule_loss_rising, rule_updates, rule_dead_units, rule_vanishing,
    rule_overfitting,
)


def hints(f: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every rule's hint for the facts ``f`` (:meth:`LabSession.facts`), problems first."""
    found = [h for h in (rule(f) for rule in RULES) if h is not None]
    found.sort(key=lambda h: h.level != "problem")
    return [h.to_dict() for h in found]


# -------------------------------------------------------------------------- experiments
@dataclass(frozen=True)
class Experiment:
    """A guided experiment: a run to start (``config``), what to do while it trains
    (``steps``), what to look at and what one should see, and the ``digitnet train``
    command that reproduces it (``None`` where the lab-only part is the point)."""

    id: str
    title: str
    config: dict[str, Any]
    steps: str
    look: str
    expect: str
    command: str | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        "lr-too-high", "A learning rate far too high",
        {"dataset": "digits", "optimizer": "sgd", "lr": 5.0},
        "Start it and watch the first steps.",
        "The loss per batch, and the hints.",
        "Within a few steps the loss jumps far above ln 10 = 2.3 (guessing), then becomes "
        "enormous or NaN: the divergence guard stops the run and says so. Start again with "
        "the hint's fix (a learning rate ten times smaller) and the loss falls instead.",
        "digitnet train --dataset digits --optimizer sgd --lr 5 --schedule constant"),
    Experiment(
        "sigmoid-tiny-init", "Sigmoid with a tiny initialization (vanishing signal)",
        {"dataset": "digits", "activation": "sigmoid", "init_scale": 0.01, "optimizer": "sgd",
         "lr": 0.5, "epochs": 10},
        "Start it; compare the gradient norms of the layers.",
        "Gradient norms per layer (log scale), the loss per batch, the first-layer tiles.",
        "The first layer's gradients are thousands of times smaller than the last layer's "
        "(a sigmoid's derivative is at most 1/4, and tiny weights shrink the signal further at "
        "every layer): the loss sits at ln 10 = 2.3 for a long time and the first-layer tiles "
        "stay noise. The hint proposes ReLU with He initialization: there the first layer "
        "learns from the first epoch.",
        "digitnet train --dataset digits --activation sigmoid --init-scale 0.01 "
        "--optimizer sgd --lr 0.5 --schedule constant --epochs 10"),
    Experiment(
        "relu-huge-init", "ReLU with a huge initialization (dead units)",
        {"dataset": "digits", "activation": "relu", "init_scale": 3.0, "optimizer": "momentum",
         "lr": 0.05, "epochs": 10},
        "Start it; watch the dead units and the loss.",
        "Dead (inactive) units per layer, the loss per batch, the weight histograms.",
        "The first loss is about 45 (the logits are scaled up layer after layer: 3 x 3 x 3), "
        "the gradients are as huge, and the first steps push most units' weighted sums below "
        "0 for every image: the share of dead units jumps to 60-80 % and stays there, and "
        "those units never learn again (the others still do: accuracy is fine, with a "
        "quarter of the network). The fix, the standard He initialization, keeps nearly "
        "every unit alive (about 15 % idle for a batch).",
        "digitnet train --dataset digits --init-scale 3 --optimizer momentum --lr 0.05 "
        "--schedule constant --epochs 10"),
    Experiment(
        "batch-1-vs-256", "Batch size 1 against 256 (stochastic against mini-batch descent)",
        {"dataset": "digits", "optimizer": "sgd", "lr": 0.01, "batch_size": 1, "epochs": 5},
        "Start it with batch size 1, watch an epoch, then set the batch size to 256 (from the "
        "next step on) and raise the learning rate to 0.3.",
        "The loss per batch (its noise), steps per epoch, the time per epoch.",
        "With batch size 1 every step follows one image: the loss per batch jumps all over the "
        "place, an epoch is 1,317 steps and slow, yet the loss falls within one epoch. At 256 "
        "an epoch is 6 steps, each the average of 256 images: a smooth curve, fast epochs, "
        "but much less progress per epoch, and a larger learning rate suits it.",
        "digitnet train --dataset digits --optimizer sgd --lr 0.01 --schedule constant "
        "--batch-size 1 --epochs 5  (and --batch-size 256 --lr 0.3)"),
    Experiment(
        "dropout", "Dropout on and off",
        {"dataset": "digits", "subset": 300, "epochs": 60},
        "Train on only 300 images; when the hint says the network overfits, turn dropout on "
        "(0.5), and off again.",
        "Training against validation accuracy and loss per epoch; the hints.",
        "Without dropout the training accuracy reaches 100 % and the validation loss starts "
        "to rise: the network memorizes its 300 images. With dropout the training accuracy "
        "drops below 100 % (every step trains a random half of the units) and the gap to the "
        "validation accuracy narrows.",
        "digitnet train --dataset digits --dropout 0.5  (the lab's 300-image subset has no "
        "command-line option)"),
    Experiment(
        "augmentation", "Augmentation on and off",
        {"dataset": "digits", "subset": 300, "epochs": 60},
        "Train on 300 images; switch augmentation to affine (from the next epoch on), look at "
        "the preview, then switch it off again.",
        "The augmentation preview, training against validation accuracy.",
        "The preview shows what the network now trains on: every epoch, fresh shifts, "
        "rotations, zooms and slants of the same images. Training accuracy falls a little "
        "(the images are harder), validation accuracy rises or holds while the "
        "validation loss stops rising: the network learns what stays the same under them.",
        "digitnet train --dataset digits --augment affine"),
    Experiment(
        "gradient-check", "Is backpropagation right? The gradient check",
        {"dataset": "digits", "epochs": 5},
        "Start it, pause at any moment and press Gradient check.",
        "The relative error per layer.",
        "For every layer the gradient backpropagation computed and the one measured by "
        "nudging weights (finite differences) agree to about 1e-9: the chain rule, "
        "implemented layer by layer, is right at this very point of training.",
        None),
)


# ---------------------------------------------------------------------------- replaying
def load_record(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """A saved lab run's ``lab.json`` (configuration, change log, steps)."""
    path = Path(run_dir) / LAB_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabError(f"{path}: not found (a lab run saved by `digitnet lab` has one)"
                       ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabError(f"{path}: unreadable ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != LAB_FORMAT:
        raise LabError(f"{path}: not a digitnet lab record")
    return record


def replay(record: Mapping[str, Any] | str | os.PathLike[str],
           dataset: Dataset | None = None, data_dir: str | os.PathLike[str] | None = None
           ) -> LabSession:
    """Train a saved lab run again from its configuration and change log (``lab.json``, or
    its folder), in this thread, to the same number of steps: the same seed gives the same
    weights bit for bit. ``dataset``: the run's data set (else loaded, never downloaded)."""
    if not isinstance(record, Mapping):
        record = load_record(record)
    try:
        config = LabConfig.from_dict(record["config"])
        changes = [Change.from_dict(c) for c in record["changes"]]
        steps = int(record["steps"])
    except (KeyError, TypeError, ValueError) as exc:
        raise LabError(f"the lab record is unreadable ({exc})") from None
    if dataset is None:
        from digitnet.data import load_dataset

        dataset = load_dataset(config.dataset, data_dir, download_ok=False, progress=False)
    session = LabSession(config, dataset, schedule=changes)
    session.run(until_steps=steps)
    if session.outcome == "failed":
        raise LabError(session.message)
    return session
