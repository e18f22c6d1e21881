"""The fast engine: the textbook training step, regrouped to run faster on a CPU.

:func:`digitnet.training.fit` runs the textbook step unless it is given another trainer
factory; ``digitnet train`` and :class:`digitnet.DigitNetClassifier` choose this one::

    from digitnet import engine
    fit(network, x, y, scaler, config, engine=engine.make_trainer)

What it changes, never the math (tests keep it equal to the textbook step in float64):

* :mod:`digitnet.engine.flat`: all parameters in one vector while training, so the
  optimizer is a few whole-vector operations (:mod:`digitnet.engine.optimizers`: the same
  updates, fewer passes over memory);
* :mod:`digitnet.engine.split`: for networks with large layers, their weight rows split
  between this process and a helper process, each on its own core(s); the step times
  itself and runs the helper's share here instead whenever the helper does not pay (a busy
  machine), with bit-identical results either way.

Nothing in :mod:`digitnet.training`, :mod:`digitnet.network`, :mod:`digitnet.layers` or
:mod:`digitnet.optimizers` imports this package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet.config import TrainConfig
from digitnet.data.preprocessing import MinMaxScaler
from digitnet.engine.flat import FusedTrainer
from digitnet.engine.split import SplitTrainer, worth_splitting
from digitnet.network import MLP

__all__ = ["FusedTrainer", "SplitTrainer", "make_trainer", "trainer_factory"]


def make_trainer(
    network: MLP,
    config: TrainConfig,
    x: NDArray[np.uint8],
    y: NDArray[np.integer],
    scaler: MinMaxScaler,
    rng: np.random.Generator,
) -> FusedTrainer | SplitTrainer:
    """The fast trainer for ``network``: :class:`SplitTrainer` when its first layer is large
    enough to gain from a second process (:func:`~digitnet.engine.split.worth_splitting`),
    else :class:`FusedTrainer` (always on a GPU: the split is a CPU's way to use two cores)."""
    if network.device == "cpu" and worth_splitting(network, min(config.batch_size, len(x))):
        return SplitTrainer(network, config, x, y, scaler, rng)
    return FusedTrainer(network, config, x, y, scaler, rng)


def trainer_factory(name: str) -> Callable[..., Any]:
    """The trainer factory for an engine name of :data:`digitnet.config.ENGINES`:
    ``"fast"`` (:func:`make_trainer`) or ``"textbook"``
    (:class:`digitnet.training.TextbookTrainer`)."""
    from digitnet.training import TextbookTrainer

    factories: dict[str, Callable[..., Any]] = {"fast": make_trainer,
                                                "textbook": TextbookTrainer}
    if name not in factories:
        raise ValueError(f"unknown engine {name!r}; expected one of: {', '.join(factories)}")
    return factories[name]
