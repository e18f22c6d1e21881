"""Training configuration: every choice that decides how a network is trained."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

# Every choice an option offers, here once: the command line's choices, the estimator's
# checks and TrainConfig's validation all read these (tests keep them equal to the
# registries in activations.py and optimizers.py).
ACTIVATION_NAMES = ("relu", "leaky_relu", "sigmoid", "tanh")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
DTYPE_NAMES = ("float32", "float64")
ENGINES = ("fast", "textbook")
AUGMENTATIONS = ("none", "affine", "elastic")  # digitnet.augment.AUGMENTERS
DEVICES = ("cpu", "gpu")  # where training runs: NumPy, or CuPy (digitnet.devices)
KEEP = ("best", "last")  # which epoch's weights a run keeps: lowest validation loss, or last


@dataclass
class TrainConfig:
    """Everything that decides how a network is trained (saved with every run).

    The defaults are digitnet's default recipe for MNIST: 784-256-128-10 ReLU, Adam with a
    one-cycle learning rate peaking at 5e-3, batch 256, 5 epochs (at least 98.0 % test
    accuracy; see the README for measured figures). This module imports no NumPy, so the
    command line can show these defaults in ``--help`` without loading it.
    """

    hidden: tuple[int, ...] = (256, 128)
    activation: str = "relu"
    epochs: int = 5
    batch_size: int = 256
    lr: float = 5e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "onecycle"
    warmup_epochs: float = 0.0
    validation_fraction: float = 1 / 12
    patience: int = 0
    seed: int = 0
    dtype: str = "float32"
    dropout: float = 0.0
    input_dropout: float = 0.0
    label_smoothing: float = 0.0
    max_norm: float = 0.0
    ema: float = 0.0
    augment: str = "none"
    keep: str = "best"
    init_scale: float = 1.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        for message in self.problems():
            raise ValueError(message)

    def problems(self) -> list[str]:
        """What is wrong with these settings, one message per problem (empty: all fine)."""
        checks = [
            (len(self.hidden) >= 1, "hidden: at least one hidden layer is needed"),
            (all(h >= 1 for h in self.hidden), "hidden: layer sizes must be positive"),
            (self.activation in ACTIVATION_NAMES,
             f"activation must be one of {', '.join(ACTIVATION_NAMES)}, got {self.activation!r}"),
            (is_int(self.epochs) and self.epochs >= 1, "epochs must be an integer >= 1"),
            (is_int(self.batch_size) and self.batch_size >= 1,
             "batch_size must be an integer >= 1"),
            (is_finite_number(self.lr) and self.lr > 0, "lr must be a positive number"),
            (self.optimizer in OPTIMIZERS,
             f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"),
            (is_finite_number(self.momentum) and 0 <= self.momentum < 1,
             "momentum must be in [0, 1)"),
            (is_finite_number(self.weight_decay) and self.weight_decay >= 0,
             "weight_decay must be a number >= 0"),
            (self.schedule in SCHEDULES,
             f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (is_finite_number(self.warmup_epochs) and 0 <= self.warmup_epochs <= self.epochs,
             "warmup_epochs must be between 0 and the number of epochs"),
            (is_finite_number(self.validation_fraction) and 0 <= self.validation_fraction < 1,
             "validation_fraction must be in [0, 1)"),
            (is_int(self.patience) and self.patience >= 0, "patience must be an integer >= 0"),
            (is_int(self.seed), "seed must be an integer"),
            (self.dtype in DTYPE_NAMES, f"dtype must be one of {', '.join(DTYPE_NAMES)}"),
            (is_finite_number(self.dropout) and 0 <= self.dropout < 1,
             "dropout must be in [0, 1)"),
            (is_finite_number(self.input_dropout) and 0 <= self.input_dropout < 1,
             "input_dropout must be in [0, 1)"),
            (is_finite_number(self.label_smoothing) and 0 <= self.label_smoothing < 1,
             "label_smoothing must be in [0, 1)"),
            (is_finite_number(self.max_norm) and self.max_norm >= 0,
             "max_norm must be a number >= 0 (0: no constraint)"),
            (is_finite_number(self.ema) and 0 <= self.ema < 1,
             "ema must be in [0, 1) (0: no weight averaging)"),
            (self.augment in AUGMENTATIONS,
             f"augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}"),
            (self.keep in KEEP, f"keep must be one of {', '.join(KEEP)}, got {self.keep!r}"),
            (is_finite_number(self.init_scale) and self.init_scale > 0,
             "init_scale must be a positive number"),
            (self.device in DEVICES,
             f"device must be one of {', '.join(DEVICES)}, got {self.device!r}"),
        ]
        return [message for ok, message in checks if not ok]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


# Per-data-set changes to the defaults above. The small 8x8 ``digits`` set (about 1,300
# training images) needs many more, smaller steps than MNIST's 55,000 images.
RECIPES: dict[str, dict[str, Any]] = {
    # MNIST: the plain recipe trained twice as long on lightly distorted digits
    # (random shifts, rotations, scaling, shear), with label smoothing and averaged weights;
    # chosen on the validation split (docs/DEVELOPMENT.md, "Issue 14").
    "mnist": {"epochs": 10, "augment": "affine", "label_smoothing": 0.1, "ema": 0.999,
              "keep": "last"},
    "fashion-mnist": {},
    "digits": {"hidden": (128, 64), "epochs": 30, "batch_size": 32, "lr": 4e-3},
}


# Named recipes for MNIST-sized digits (28x28), chosen on the validation split (README
# "Results" has the measured test accuracy and time of each). A preset replaces the data
# set's defaults; options given beside it replace the preset's.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "plain": ("TrainConfig's own defaults, no regularization: the recipe the speed "
              "benchmarks run (and MNIST's default until 2026-12-01)", {}),
    "fast": ("98 % in as little time as possible", {
        "hidden": (256, 128), "epochs": 4, "batch_size": 256, "lr": 5e-3,
    }),
    "best": ("the most accurate: 99.3 %+ in under 20 minutes on 2 cores", {
        "hidden": (1024, 1024), "epochs": 150, "lr": 3e-3, "augment": "elastic",
        "ema": 0.999, "label_smoothing": 0.1, "keep": "last",
    }),
}


def recipe(dataset: str, preset: str | None = None, **overrides: Any) -> TrainConfig:
    """The default configuration for ``dataset`` (or the ``preset`` of :data:`PRESETS`),
    with ``overrides`` applied on top."""
    names = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of: {', '.join(PRESETS)}")
    base = PRESETS[preset][1] if preset is not None else RECIPES.get(dataset, {})
    return TrainConfig(**{**base, **overrides})


def is_int(value: Any, low: int | None = None, high: int | None = None) -> bool:
    """An integer (not a bool), within ``low`` and ``high`` when given. One check for every
    option, model file and metrics file that digitnet reads."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        return False
    number = int(value)
    return (low is None or number >= low) and (high is None or number <= high)


def is_finite_number(value: Any) -> bool:
    """A real number (not a bool), neither NaN nor infinite."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
