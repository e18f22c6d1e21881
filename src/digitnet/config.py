"""Training configuration: every choice that decides how a network is trained."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

DTYPE_NAMES = ("float32", "float64")


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

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        checks = [
            (len(self.hidden) >= 1, "hidden: at least one hidden layer is needed"),
            (all(h >= 1 for h in self.hidden), "hidden: layer sizes must be positive"),
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.lr > 0, "lr must be positive"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (0 <= self.validation_fraction < 1, "validation_fraction must be in [0, 1)"),
            (self.patience >= 0, "patience must be >= 0"),
            (self.dtype in DTYPE_NAMES, f"dtype must be one of {', '.join(DTYPE_NAMES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


# Per-data-set changes to the defaults above. The small 8x8 ``digits`` set (about 1,300
# training images) needs many more, smaller steps than MNIST's 55,000 images.
RECIPES: dict[str, dict[str, Any]] = {
    "mnist": {},
    "fashion-mnist": {},
    "digits": {"hidden": (128, 64), "epochs": 30, "batch_size": 32, "lr": 4e-3},
}


def recipe(dataset: str, **overrides: Any) -> TrainConfig:
    """The default configuration for ``dataset``, with ``overrides`` applied on top."""
    names = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    return TrainConfig(**{**RECIPES.get(dataset, {}), **overrides})
