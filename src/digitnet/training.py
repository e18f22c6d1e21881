"""Mini-batch training with validation, early stopping and a clean Ctrl-C.

One epoch visits every training sample once, in a fresh seeded random order, in batches
of ``batch_size``. For each batch ``(x, y)``::

    L, dL/dθ = network.loss_and_gradients(x, y)       forward + backward
    θ       ← optimizer.step(lr(t))                   one descent step

``batch_size=1`` is stochastic gradient descent, ``batch_size=n`` full-batch gradient
descent, anything between mini-batch gradient descent.

The batches come from :class:`digitnet.batches.BatchLoader`; networks with a large first
layer train on two cores (:mod:`digitnet.parallel`), with the same arithmetic either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet.batches import BatchLoader
from digitnet.config import TrainConfig
from digitnet.data.preprocessing import MinMaxScaler
from digitnet.inference import evaluate_loss_accuracy
from digitnet.network import DTYPES, MLP
from digitnet.optimizers import Optimizer, learning_rate, make_optimizer
from digitnet.parallel import SplitTrainer, worth_splitting


@dataclass
class EpochRecord:
    """What one epoch did; the history is a list of these."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    lr: float
    seconds: float


@dataclass
class TrainResult:
    """The outcome of :func:`fit` (the network itself is updated in place)."""

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    epochs_run: int = 0
    stopped_early: bool = False
    interrupted: bool = False
    train_seconds: float = 0.0

    def history_dicts(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.history]


def make_network_optimizer(
    network: MLP, name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.9
) -> Optimizer:
    """The optimizer ``name`` over all of ``network``'s parameters at once (its flat vector),
    with weight decay on the weight matrices only."""
    return make_optimizer(
        name,
        [network.flat_parameters],
        [network.flat_gradients],
        lr,
        weight_decay,
        momentum,
        decay_pairs=network.weight_pairs(),
    )


class PlainTrainer:
    """One training step as the textbook has it: forward and backward through
    ``network.loss_and_gradients``, then one optimizer step over all parameters.

    ``batches`` yields the shuffled mini-batches of ``(x, y)``. Like
    :class:`digitnet.parallel.SplitTrainer` (the two-core variant for large layers), it is
    a context manager around the training loop.
    """

    def __init__(
        self,
        network: MLP,
        config: TrainConfig,
        x: NDArray[np.uint8],
        y: NDArray[np.integer],
        scaler: MinMaxScaler,
        rng: np.random.Generator,
    ) -> None:
        self.network = network
        self.optimizer = make_network_optimizer(
            network, config.optimizer, config.lr, config.weight_decay, config.momentum
        )
        buffer = np.empty((min(config.batch_size, len(x)), network.n_inputs),
                          dtype=DTYPES[network.dtype])
        self.batches = BatchLoader(x, y, scaler, buffer, rng)

    def __enter__(self) -> PlainTrainer:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def step(self, x: NDArray[np.floating], y: NDArray[np.integer], lr: float
             ) -> tuple[float, int]:
        """Forward, backward and one descent step; the loss and number of correct answers."""
        loss, n_correct = self.network.loss_and_gradients(x, y)
        self.optimizer.step(lr)
        return loss, n_correct

    def evaluate(self, x: NDArray[np.uint8], y: NDArray[np.integer]) -> tuple[float, float]:
        """Validation loss and accuracy (:func:`evaluate_loss_accuracy`)."""
        return evaluate_loss_accuracy(self.network, x, y, self.batches.scaler)


def make_trainer(
    network: MLP,
    config: TrainConfig,
    x: NDArray[np.uint8],
    y: NDArray[np.integer],
    scaler: MinMaxScaler,
    rng: np.random.Generator,
) -> PlainTrainer | SplitTrainer:
    """The two-core :class:`~digitnet.parallel.SplitTrainer` when the first layer is large
    enough to gain from it (:func:`~digitnet.parallel.worth_splitting`), else the plain one."""
    if worth_splitting(network, min(config.batch_size, len(x))):
        return SplitTrainer(network, config, x, y, scaler, rng)
    return PlainTrainer(network, config, x, y, scaler, rng)


def fit(
    network: MLP,
    x_train: NDArray[np.uint8],
    y_train: NDArray[np.integer],
    scaler: MinMaxScaler,
    config: TrainConfig,
    x_val: NDArray[np.uint8] | None = None,
    y_val: NDArray[np.integer] | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    on_epoch_end: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train ``network`` in place with mini-batch gradient descent.

    With validation data, each epoch ends with a validation loss/accuracy; the weights of
    the epoch with the lowest validation loss are restored at the end, and with
    ``config.patience > 0`` training stops after that many epochs without improvement.
    Ctrl-C (``KeyboardInterrupt``) ends training after the current batch and keeps the
    best weights so far; ``result.interrupted`` says so. ``on_epoch_end(record)`` is called
    after each epoch's validation (the network holds that epoch's weights then).
    """
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1]))
    trainer = make_trainer(network, config, x_train, y_train, scaler, rng)
    steps_per_epoch = len(trainer.batches)
    total_steps = steps_per_epoch * config.epochs
    warmup = int(config.warmup_epochs * steps_per_epoch)
    has_val = x_val is not None and y_val is not None and len(x_val) > 0

    result = TrainResult()
    best_loss, best_state = np.inf, None
    bar = _make_bar(total_steps, progress)
    started = time.perf_counter()
    step = 0
    try:
        with trainer:
            for epoch in range(1, config.epochs + 1):
                epoch_start = time.perf_counter()
                loss_sum, correct, seen = 0.0, 0, 0
                lr = config.lr
                for xb, yb in trainer.batches.epoch():
                    lr = learning_rate(config.schedule, config.lr, step, total_steps, warmup)
                    loss, n_correct = trainer.step(xb, yb, lr)
                    step += 1
                    m = len(yb)
                    loss_sum += loss * m
                    correct += n_correct
                    seen += m
                    if bar is not None:
                        bar.update(1)
                        if step % 20 == 0 or seen == len(x_train):
                            bar.set_postfix(
                                epoch=epoch, loss=f"{loss_sum / seen:.4f}",
                                acc=f"{correct / seen:.4f}", refresh=False,
                            )
                record = EpochRecord(
                    epoch, loss_sum / seen, correct / seen, None, None, lr,
                    time.perf_counter() - epoch_start,
                )
                if has_val:
                    assert x_val is not None and y_val is not None
                    record.val_loss, record.val_accuracy = trainer.evaluate(x_val, y_val)
                result.history.append(record)
                result.epochs_run = epoch
                if log is not None:
                    log(_epoch_line(record, config.epochs))
                if on_epoch_end is not None:
                    on_epoch_end(record)
                if record.val_loss is not None:
                    if record.val_loss < best_loss:
                        best_loss, best_state = record.val_loss, network.get_state()
                        result.best_epoch = epoch
                    elif config.patience and epoch - result.best_epoch >= config.patience:
                        result.stopped_early = True
                        if log is not None:
                            log(f"early stopping: no better validation loss for "
                                f"{config.patience} epochs (best: epoch {result.best_epoch})")
                        break
                else:
                    result.best_epoch = epoch
    except KeyboardInterrupt:
        result.interrupted = True
        if log is not None:
            log("interrupted: keeping the best model so far")
    finally:
        if bar is not None:
            bar.close()
    result.train_seconds = time.perf_counter() - started
    # After Ctrl-C the weights have moved on from every validated epoch: restore the best.
    if best_state is not None and (result.best_epoch != result.epochs_run or result.interrupted):
        network.set_state(best_state)
    return result


def _make_bar(total: int, enabled: bool):  # type: ignore[no-untyped-def]
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="batch", desc="training", dynamic_ncols=True, leave=False)


def _epoch_line(r: EpochRecord, epochs: int) -> str:
    line = (f"epoch {r.epoch:>{len(str(epochs))}}/{epochs}  "
            f"loss {r.train_loss:.4f}  acc {r.train_accuracy:.4f}")
    if r.val_loss is not None and r.val_accuracy is not None:
        line += f"  val_loss {r.val_loss:.4f}  val_acc {r.val_accuracy:.4f}"
    return line + f"  lr {r.lr:.2e}  {r.seconds:.1f}s"
