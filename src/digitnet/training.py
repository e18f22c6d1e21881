"""Mini-batch training with validation, early stopping and a clean Ctrl-C.

One epoch visits every training sample once, in a fresh seeded random order, in batches
of ``batch_size``. For each batch ``(x, y)`` (:meth:`TextbookTrainer.step`)::

    L, dL/dθ = network.loss_and_gradients(x, y)       forward + backward
    θ       ← optimizer.step(lr(t))                   one descent step

and, when the configuration asks for them (:class:`AfterStep`), a max-norm constraint on
the weights and an update of their running average (:mod:`digitnet.regularizers`).
Dropout is a layer of the network, label smoothing a setting of its loss. With data
augmentation every epoch trains on fresh distortions of the training images
(:class:`EpochImages`, :mod:`digitnet.augment`).

``batch_size=1`` is stochastic gradient descent, ``batch_size=n`` full-batch gradient
descent, anything between mini-batch gradient descent.

:func:`fit` runs this textbook step. A faster engine that computes the same step another
way (:mod:`digitnet.engine`, which ``digitnet train`` uses) is passed in explicitly as
``fit(..., engine=...)``; nothing here depends on it. With ``config.device == "gpu"`` the
same step runs on CuPy arrays (:mod:`digitnet.devices`): ``fit`` moves the network and the
training set to the GPU for the training and the network back at the end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from digitnet.augment import AUGMENTERS, Augmenter
from digitnet.batches import BatchLoader
from digitnet.config import TrainConfig
from digitnet.data.preprocessing import MinMaxScaler
from digitnet.devices import generator_state, to_host
from digitnet.inference import evaluate_loss_accuracy
from digitnet.network import DTYPES, MLP
from digitnet.optimizers import learning_rate, load_state_dict, make_optimizer, state_dict
from digitnet.regularizers import WeightAverage, max_norm


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
    diverged: str | None = None  # why training stopped on a loss gone wrong (see fit)
    train_seconds: float = 0.0
    trainer_info: dict[str, Any] = field(default_factory=dict)  # what the trainer did, if it says

    def history_dicts(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.history]


class Trainer(Protocol):
    """What :func:`fit` needs of a trainer: the shuffled mini-batches, one training step,
    the validation, and ``with trainer:`` around the epochs (for set-up and clean-up)."""

    batches: BatchLoader

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> Any: ...

    def step(self, x: NDArray[np.floating], y: NDArray[np.integer], lr: float
             ) -> tuple[float, int]: ...

    def evaluate(self, x: NDArray[np.uint8], y: NDArray[np.integer]) -> tuple[float, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


TrainerFactory = Callable[
    [MLP, TrainConfig, NDArray[np.uint8], NDArray[np.integer], MinMaxScaler,
     np.random.Generator],
    Trainer,
]


class TextbookTrainer:
    """One training step as the textbook has it: forward and backward through
    ``network.loss_and_gradients``, then one optimizer step over every ``W`` and ``b``.

    ``batches`` (:class:`~digitnet.batches.BatchLoader`) yields the shuffled mini-batches
    of ``(x, y)`` from the uint8 images ``x`` scaled by ``scaler``, in the order ``rng``
    draws.
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
        self.optimizer = make_optimizer(
            config.optimizer, network.parameters(), network.gradients(), config.lr,
            config.weight_decay, config.momentum, decayed=network.decayed(),
        )
        buffer = network.xp.empty((min(config.batch_size, len(x)), network.n_inputs),
                                  dtype=DTYPES[network.dtype])  # on the network's device
        self.batches = BatchLoader(x, y, scaler, buffer, rng)

    def __enter__(self) -> TextbookTrainer:
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

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's step count and state arrays (copies), for a later trainer."""
        return state_dict([self.optimizer], self.optimizer.state_arrays())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s ``state``."""
        load_state_dict([self.optimizer], self.optimizer.state_arrays(), state)


class AfterStep:
    """What follows every descent step, whatever the engine: the max-norm constraint
    (``config.max_norm > 0``) and the weight average (``config.ema > 0``). Also sets the
    loss's label smoothing (``config.label_smoothing``) for the training."""

    def __init__(self, network: MLP, config: TrainConfig) -> None:
        self.network = network
        self.max_norm = config.max_norm
        network.loss.smoothing = config.label_smoothing
        self.average = WeightAverage(network.parameters(), config.ema) if config.ema else None

    def __call__(self) -> None:
        if self.max_norm:
            max_norm(self.network, self.max_norm)
        if self.average is not None:
            self.average.update(self.network.parameters())

    def __bool__(self) -> bool:
        return bool(self.max_norm) or self.average is not None


class EpochImages:
    """The training images of every epoch, freshly distorted (:meth:`Augmenter.epoch`):
    ``images(epoch)``. They depend only on the seed and the epoch, so a resumed run sees the
    same ones. Computed here, when asked; the fast engine computes the next epoch's in
    another process while this one trains (``trainer.prefetch_images``)."""

    def __init__(self, augmenter: Augmenter, x: NDArray[np.uint8], seed: int,
                 epochs: int) -> None:
        side = math.isqrt(x.shape[1])  # square images (MNIST 28x28, digits 8x8)
        self.augmenter = augmenter.scaled_for((side, side))
        self.x, self.seed, self.epochs = x, int(seed), epochs

    def __call__(self, epoch: int) -> NDArray[np.uint8]:
        return self.augmenter.epoch(self.x, self.seed, epoch)

    def part(self, epoch: int, start: int, stop: int) -> NDArray[np.uint8]:
        """Images ``start:stop`` of ``images(epoch)``, the same bits, computing only those."""
        return self.augmenter.epoch(self.x[start:stop], self.seed, epoch, start=start)


# A mean cross-entropy above this many nats gives the true class a probability below e^-100:
# training that gets there has diverged (a learning rate far too high), and does not return.
DIVERGED_LOSS = 100.0


class Diverged(Exception):
    """The loss of a training step (or of the validation) is not finite or exploded."""

    def __init__(self, what: str, loss: float) -> None:
        super().__init__(f"{what} loss became {loss:.4g}")
        self.loss = loss


def check_loss(loss: float, what: str = "the training") -> None:
    """Raise :class:`Diverged` unless ``loss`` is a number at most :data:`DIVERGED_LOSS`."""
    if not loss <= DIVERGED_LOSS:  # also true for NaN
        raise Diverged(what, loss)


def train_epoch(
    trainer: Trainer,
    lr_at: Callable[[int], float],
    first_step: int = 0,
    on_step: Callable[[int, float, float], None] | None = None,
    after_step: Callable[[], None] | None = None,
) -> tuple[float, float, float]:
    """One pass over ``trainer.batches``: a training step per mini-batch, the ``t``-th with
    learning rate ``lr_at(t)`` (``t`` counts from ``first_step``). After each step
    ``after_step()`` (an :class:`AfterStep`), then
    ``on_step(samples_seen, mean_loss, accuracy)`` is called. Returns the epoch's mean loss,
    its accuracy (both over the mini-batches as they were trained) and the last rate.
    Raises :class:`Diverged` after a step whose loss is not finite or exploded."""
    loss_sum, correct, seen, lr = 0.0, 0, 0, lr_at(first_step)
    for t, (xb, yb) in enumerate(trainer.batches.epoch(), start=first_step):
        lr = lr_at(t)
        loss, n_correct = trainer.step(xb, yb, lr)
        check_loss(loss)
        if after_step is not None:
            after_step()
        loss_sum += loss * len(yb)
        correct += n_correct
        seen += len(yb)
        if on_step is not None:
            on_step(seen, loss_sum / seen, correct / seen)
    return loss_sum / max(seen, 1), correct / max(seen, 1), lr


@contextmanager
def on_device(network: MLP, device: str) -> Iterator[MLP]:
    """Inside the block ``network`` lives on ``device``; after it, where it was before."""
    home = network.device
    network.to(device)
    try:
        yield network
    finally:
        network.to(home)


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
    on_epoch_end: Callable[[EpochRecord], object] | None = None,
    engine: TrainerFactory | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
    resume_from: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``network`` in place with mini-batch gradient descent.

    With validation data, each epoch ends with a validation loss/accuracy; the weights of
    the epoch with the lowest validation loss are restored at the end (``config.keep ==
    "best"``; ``"last"`` keeps the last epoch's, for a schedule meant to run to its end), and
    with ``config.patience > 0`` training stops after that many epochs without improvement.
    Ctrl-C (``KeyboardInterrupt``) ends training after the current batch and keeps the
    best weights so far; ``result.interrupted`` says so. A loss that is not finite or
    explodes (above :data:`DIVERGED_LOSS`, in a step or the validation) stops training at
    once: the network gets back the weights of the best (or, without validation, the last)
    complete epoch, or its initial weights, and ``result.diverged`` says what happened
    (``result.best_epoch`` is 0 when no epoch was good). ``on_epoch_end(record)`` is called
    after each epoch's validation (the network holds that epoch's weights then: with weight
    averaging, the averaged ones); when it returns true, training stops there.

    ``engine`` builds the trainer, as ``engine(network, config, x_train, y_train, scaler,
    rng)``; by default the :class:`TextbookTrainer`. ``digitnet.engine.make_trainer`` is
    the fast one (same step, regrouped; see :mod:`digitnet.engine`).

    ``checkpoint(state)`` is called at the end of every epoch with everything needed to go
    on from there (:func:`training_state`: weights, the best weights so far, the optimizer's
    state, the shuffling generator's state, the history); ``resume_from=state`` starts from
    such a state, and then ends with the same weights, bit for bit, as the run that was not
    interrupted (same data, configuration and engine).

    With ``config.device == "gpu"`` the network trains on the GPU (the training images are
    copied there once) and is back on its own device when ``fit`` returns; the states given
    to ``checkpoint`` hold NumPy arrays either way.
    """
    with on_device(network, config.device):
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1]))
        trainer = (engine or TextbookTrainer)(network, config, x_train, y_train, scaler, rng)
        after = AfterStep(network, config)
        average = after.average
        augmenter = AUGMENTERS[config.augment]
        images: Callable[[int], NDArray[np.uint8]] | None = None
        if augmenter is not None:
            images = EpochImages(augmenter, x_train, config.seed, config.epochs)
            prefetch = getattr(trainer, "prefetch_images", None)
            if callable(prefetch):
                images = prefetch(images)
        steps_per_epoch = len(trainer.batches)
        total_steps = steps_per_epoch * config.epochs
        warmup = int(config.warmup_epochs * steps_per_epoch)
        has_val = x_val is not None and y_val is not None and len(x_val) > 0

        def lr_at(t: int) -> float:
            return learning_rate(config.schedule, config.lr, t, total_steps, warmup)

        result = TrainResult()
        best_loss, best_state, best_loss_epoch = np.inf, None, 0
        first_epoch = 1
        if resume_from is not None:
            network.set_state(resume_from["network"])
            trainer.load_state_dict(resume_from["optimizer"])
            rng.bit_generator.state = resume_from["rng"]
            if resume_from.get("dropout_rng") is not None:
                network.dropout_rng.bit_generator.state = resume_from["dropout_rng"]
            if average is not None:
                average.load_state_dict(resume_from["average"])
            result.history = [EpochRecord(**r) for r in resume_from["history"]]
            result.epochs_run = first_epoch = int(resume_from["epoch"])
            first_epoch += 1
            result.best_epoch = int(resume_from["best_epoch"])
            best_loss = float(resume_from["best_loss"])
            best_loss_epoch = int(resume_from.get("best_loss_epoch", result.best_epoch))
            best_state = resume_from["best"]
        initial_state = network.get_state()
        bar = _make_bar(total_steps, progress)
        started = time.perf_counter()
        epoch = 0
        try:
            with trainer:
                for epoch in range(first_epoch, config.epochs + 1):
                    epoch_start = time.perf_counter()
                    if images is not None:
                        trainer.batches.replace_images(images(epoch))

                    def show(seen: int, loss: float, acc: float, epoch: int = epoch) -> None:
                        if bar is not None:
                            bar.update(1)
                            if bar.n % 20 == 0 or seen == len(x_train):
                                bar.set_postfix(epoch=epoch, loss=f"{loss:.4f}", acc=f"{acc:.4f}",
                                                refresh=False)

                    loss, acc, lr = train_epoch(trainer, lr_at, (epoch - 1) * steps_per_epoch,
                                                show if bar is not None else None,
                                                after if after else None)
                    record = EpochRecord(epoch, loss, acc, None, None, lr,
                                         time.perf_counter() - epoch_start)
                    # With weight averaging, the averaged weights are validated and kept.
                    with average.swapped_in(network) if average is not None else nullcontext():
                        if has_val:
                            assert x_val is not None and y_val is not None
                            record.val_loss, record.val_accuracy = trainer.evaluate(x_val, y_val)
                            check_loss(record.val_loss, "the validation")
                        epoch_state = network.get_state()
                        result.history.append(record)
                        result.epochs_run = epoch
                        if log is not None:
                            log(_epoch_line(record, config.epochs))
                        stop = on_epoch_end is not None and bool(on_epoch_end(record))
                    if record.val_loss is not None and record.val_loss < best_loss:
                        best_loss, best_loss_epoch = record.val_loss, epoch
                        if config.keep == "best":  # the weights of the lowest validation loss
                            best_state, result.best_epoch = epoch_state, epoch
                    elif (record.val_loss is not None and config.patience
                            and epoch - best_loss_epoch >= config.patience):
                        result.stopped_early = True
                        if log is not None:
                            log(f"early stopping: no better validation loss for "
                                f"{config.patience} epochs (best: epoch {best_loss_epoch})")
                        if config.keep == "last":
                            best_state, result.best_epoch = epoch_state, epoch
                        break
                    if record.val_loss is None or config.keep == "last":
                        best_state, result.best_epoch = epoch_state, epoch
                    if checkpoint is not None:
                        state = training_state(network, trainer, rng, result, best_state,
                                               best_loss, average)
                        state["best_loss_epoch"] = best_loss_epoch
                        checkpoint(state)
                    if stop:  # the caller has seen enough (a benchmark's target reached)
                        result.stopped_early = True
                        break
        except KeyboardInterrupt:
            result.interrupted = True
            if log is not None:
                log("interrupted: keeping the best model so far")
        except Diverged as error:
            result.diverged = (f"training diverged in epoch {epoch}: {error} "
                               f"(learning rate {config.lr:g})")
            if log is not None:
                log(result.diverged)
        finally:
            if bar is not None:
                bar.close()
        result.train_seconds = time.perf_counter() - started
        info = getattr(trainer, "info", None)
        if callable(info):
            result.trainer_info = info()
        # After Ctrl-C or a divergence the weights have moved on from every complete epoch.
        stopped = result.interrupted or result.diverged is not None
        if best_state is not None and (result.best_epoch != result.epochs_run or stopped
                                       or average is not None):
            network.set_state(best_state)
        elif result.diverged is not None:  # no good epoch: back to the start, never to NaN
            network.set_state(initial_state)
            result.best_epoch = 0
        return result


def training_state(network: MLP, trainer: Trainer, rng: np.random.Generator,
                   result: TrainResult, best_state: list[NDArray[np.floating]] | None,
                   best_loss: float, average: WeightAverage | None = None) -> dict[str, Any]:
    """Everything :func:`fit` needs to go on after epoch ``result.epochs_run`` (copies, as
    NumPy arrays wherever the network trains). On a GPU the dropout masks' generator has no
    state to save: a resumed GPU run with dropout draws new masks."""
    return host_copy({
        "dropout_rng": generator_state(network.dropouts[0].rng) if network.dropouts else None,
        "average": None if average is None else average.state_dict(),
        "epoch": result.epochs_run,
        "network": network.get_state(),
        "best": None if best_state is None else [a.copy() for a in best_state],
        "best_epoch": result.best_epoch,
        "best_loss": float(best_loss),
        "optimizer": trainer.state_dict(),
        "rng": rng.bit_generator.state,
        "history": result.history_dicts(),
    })


def host_copy(state: Any) -> Any:
    """``state`` (nested dicts and lists) with every GPU array replaced by a NumPy copy."""
    if isinstance(state, dict):
        return {key: host_copy(value) for key, value in state.items()}
    if isinstance(state, list):
        return [host_copy(value) for value in state]
    return state if isinstance(state, (str, int, float, bool, type(None))) else to_host(state)


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
