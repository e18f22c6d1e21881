"""Training options: one list of choices and one validation, shared by the command line,
the estimator and the library."""

from __future__ import annotations

from typing import Any

import pytest

from digitnet import activations, optimizers
from digitnet.cli import build_parser
from digitnet.config import (
    ACTIVATION_NAMES,
    OPTIMIZERS,
    SCHEDULES,
    TrainConfig,
    recipe,
)


def test_the_choices_are_the_registries() -> None:
    assert tuple(activations.ACTIVATIONS) == ACTIVATION_NAMES
    for name in OPTIMIZERS:
        optimizers.make_optimizer(name, [], [], 0.1)  # every listed name builds
    for name in SCHEDULES:
        optimizers.learning_rate(name, 0.1, 0, 10)


def test_the_command_line_offers_exactly_these_choices() -> None:
    train = build_parser()._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
    choices = {a.dest: tuple(a.choices) for a in train._actions if a.choices}
    assert choices["activation"] == ACTIVATION_NAMES
    assert choices["optimizer"] == OPTIMIZERS
    assert choices["schedule"] == SCHEDULES


@pytest.mark.parametrize(("overrides", "message"), [
    ({"schedule": "bogus"}, "schedule must be one of"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of"),
    ({"activation": "gelu"}, "activation must be one of"),
    ({"dtype": "float16"}, "dtype must be one of"),
    ({"epochs": 0}, "epochs"),
    ({"epochs": 2.5}, "epochs"),
    ({"batch_size": True}, "batch_size"),
    ({"lr": 0.0}, "lr"),
    ({"lr": float("nan")}, "lr"),
    ({"lr": float("inf")}, "lr"),
    ({"momentum": 1.0}, "momentum"),
    ({"weight_decay": -1e-4}, "weight_decay"),
    ({"warmup_epochs": 6.0}, "warmup_epochs"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"patience": -1}, "patience"),
    ({"seed": "0"}, "seed"),
    ({"hidden": ()}, "hidden"),
    ({"hidden": (8, 0)}, "hidden"),
])
def test_bad_settings_are_refused_when_the_config_is_made(overrides: dict[str, Any],
                                                          message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**overrides)


def test_good_settings_are_kept() -> None:
    config = recipe("digits", schedule="cosine", warmup_epochs=2.0, optimizer="nesterov")
    assert config.problems() == []
    assert config.hidden == (128, 64) and config.schedule == "cosine"
    with pytest.raises(ValueError, match="unknown training option"):
        recipe("mnist", learning_rate=0.1)


def test_presets_replace_the_defaults_and_options_replace_the_preset() -> None:
    from digitnet.config import PRESETS, TrainConfig, recipe

    for name, (summary, settings) in PRESETS.items():
        config = recipe("mnist", name)
        assert summary and all(getattr(config, k) == (tuple(v) if k == "hidden" else v)
                               for k, v in settings.items())
        assert recipe("mnist", name, epochs=1).epochs == 1
        unset = {k for k in TrainConfig().to_dict() if k not in settings}
        assert all(getattr(config, k) == getattr(TrainConfig(), k) for k in unset)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        recipe("mnist", "huge")


def test_train_takes_a_preset(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from digitnet.cli import main
    from digitnet.config import PRESETS

    out = tmp_path / "r"
    assert main(["train", "--dataset", "digits", "--preset", "fast", "--hidden", "16",
                 "--out", str(out), "--no-progress", "--no-plots"]) == 0
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["epochs"] == PRESETS["fast"][1]["epochs"] and config["hidden"] == [16]
