"""Training on a GPU (digitnet.devices): the same code on CuPy arrays.

Every test here runs twice: on ``fakecupy`` (NumPy underneath, CuPy's refusal to mix device
and host arrays on top: it runs everywhere, so CI covers the GPU code path) and on the real
CuPy with a CUDA GPU (marked ``gpu``; skipped with the reason where either is missing). A
GPU's float64 arithmetic rounds differently from the CPU's BLAS, so against real CuPy the
results agree to 1e-9 relative rather than bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fakecupy
import numpy as np
import pytest
from helpers import blobs, numerical_gradient, relative_error

from digitnet import devices, engine
from digitnet.cli import main
from digitnet.config import TrainConfig
from digitnet.data.preprocessing import MinMaxScaler
from digitnet.estimator import DigitNetClassifier
from digitnet.model_io import load_model
from digitnet.network import MLP
from digitnet.training import fit

FAKE = {"cupy": "fakecupy", "fakecupy": "fakecupy"}


def _real_gpu_problem() -> str | None:
    try:
        devices.array_module("gpu")
    except devices.DeviceError as error:
        return str(error)
    return None


@pytest.fixture(params=["fake", pytest.param("cupy", marks=pytest.mark.gpu)])
def gpu(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The GPU module in use and how closely its results must match the CPU's."""
    if request.param == "fake":
        monkeypatch.setattr(devices, "ARRAY_MODULES", dict(FAKE))
        return {"xp": fakecupy, "exact": True}
    problem = _real_gpu_problem()
    if problem is not None:
        pytest.skip(f"no GPU to test on: {problem}")
    return {"xp": devices.array_module("gpu"), "exact": False}


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "ARRAY_MODULES", dict(FAKE))


def _same(a: list[np.ndarray], b: list[np.ndarray], exact: bool) -> None:
    for p, q in zip(a, b, strict=True):
        assert type(p) is np.ndarray and type(q) is np.ndarray
        if exact:
            np.testing.assert_array_equal(p, q)
        else:
            np.testing.assert_allclose(p, q, rtol=1e-9, atol=1e-12)


def _data() -> tuple[Any, Any, MinMaxScaler]:
    x, y = blobs(60, n_classes=4, n_features=36, seed=5)
    return x, y, MinMaxScaler.fit(x)


# ------------------------------------------------------------------- the stand-in itself
def test_the_stand_in_refuses_what_cupy_refuses() -> None:
    device = fakecupy.asarray(np.ones((2, 3)))
    with pytest.raises(TypeError, match="Unsupported type"):
        _ = device * np.ones((2, 3))
    with pytest.raises(TypeError, match="Unsupported type"):
        _ = device[np.array([0, 1])]
    with pytest.raises(TypeError, match="mode"):
        np.take(device, fakecupy.arange(2), axis=0, mode="clip")
    assert type(device * 2.0) is fakecupy.ndarray and float(device.sum()) == 6.0
    element = device[0, 1]  # as in CuPy, a 0-d view: it follows the array
    device[0, 1] = 5.0
    assert element.ndim == 0 and float(element) == 5.0
    assert type(fakecupy.asnumpy(device)) is np.ndarray


def test_numpy_arrays_never_import_cupy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "ARRAY_MODULES", {"cupy": "no_such_module_xyz"})
    assert devices.get_array_module(np.ones(2), 3.0) is np
    assert devices.device_of(np.ones(2)) == "cpu"
    assert devices.to_host(a := np.ones(2)) is a


# ------------------------------------------------------------------------- the math
def test_a_network_moves_to_the_gpu_and_back_exactly(gpu: dict[str, Any]) -> None:
    net = MLP(36, (16, 8), 4, dtype="float64", seed=3)
    before = net.get_state()
    net.to("gpu")
    assert net.device == "gpu" and net.xp is gpu["xp"]
    assert all(devices.device_of(p) == "gpu" for p in net.parameters() + net.gradients())
    x = np.random.default_rng(0).normal(size=(10, 36))
    on_gpu = net.predict_proba(x)  # NumPy in, NumPy out, computed on the GPU
    net.to("cpu")
    assert type(on_gpu) is np.ndarray
    _same(net.get_state(), before, exact=True)
    _same([net.predict_proba(x)], [on_gpu], gpu["exact"])


def test_backpropagation_on_the_gpu_matches_finite_differences(gpu: dict[str, Any]) -> None:
    xp = gpu["xp"]
    rng = np.random.default_rng(3)
    net = MLP(6, (7, 5), 3, activation="tanh", dtype="float64", seed=11).to("gpu")
    for layer in net.dense:
        layer.b[...] = xp.asarray(rng.normal(scale=0.3, size=layer.b.shape))
    x = xp.asarray(rng.normal(size=(8, 6)))
    labels = xp.asarray(rng.integers(0, 3, size=8))
    net.loss_and_gradients(x, labels)
    analytic = [g.copy() for g in net.gradients()]
    for param, grad in zip(net.parameters(), analytic, strict=True):
        error = relative_error(grad, numerical_gradient(
            lambda: net.loss_and_gradients(x, labels)[0], param))
        assert error < 1e-7


@pytest.mark.parametrize("engine_name", ["textbook", "fast"])
@pytest.mark.parametrize("recipe", [
    {"optimizer": "adam"},
    {"optimizer": "nesterov", "weight_decay": 1e-3, "label_smoothing": 0.1, "ema": 0.9,
     "max_norm": 2.0, "augment": "affine", "schedule": "cosine", "warmup_epochs": 0.5},
])
def test_training_on_the_gpu_gives_the_cpu_weights(
    gpu: dict[str, Any], engine_name: str, recipe: dict[str, Any]
) -> None:
    x, y, scaler = _data()
    factory = engine.trainer_factory(engine_name)
    outcomes = []
    for device in ("cpu", "gpu"):
        config = TrainConfig(hidden=(16, 8), epochs=3, batch_size=32, lr=0.01, dtype="float64",
                             device=device, **recipe)
        net = MLP(36, (16, 8), 4, dtype="float64", seed=1)
        where: list[str] = []
        result = fit(net, x[:200], y[:200], scaler, config, x[200:], y[200:], engine=factory,
                     on_epoch_end=lambda record, net=net, where=where: where.append(net.device))
        assert where == [device] * 3  # it trained there...
        assert net.device == "cpu"  # ...and came back
        outcomes.append((net.get_state(), [(r.train_loss, r.val_loss) for r in result.history]))
    (cpu_weights, cpu_losses), (gpu_weights, gpu_losses) = outcomes
    _same(gpu_weights, cpu_weights, gpu["exact"])
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=0 if gpu["exact"] else 1e-9)


def test_dropout_on_the_gpu_draws_its_own_reproducible_masks(gpu: dict[str, Any]) -> None:
    x, y, scaler = _data()
    runs = {}
    for name, device in (("cpu", "cpu"), ("gpu", "gpu"), ("gpu again", "gpu")):
        config = TrainConfig(hidden=(16,), epochs=2, batch_size=32, dtype="float64",
                             device=device, dropout=0.3, validation_fraction=0.0)
        net = MLP(36, (16,), 4, dtype="float64", seed=2, dropout=0.3)
        fit(net, x, y, scaler, config)
        runs[name] = net.get_state()
    _same(runs["gpu again"], runs["gpu"], exact=True)
    assert not np.array_equal(runs["gpu"][0], runs["cpu"][0])  # CuPy's numbers, not NumPy's


def test_checkpoints_from_the_gpu_hold_numpy_and_resume_to_the_same_weights(
    gpu: dict[str, Any],
) -> None:
    x, y, scaler = _data()
    config = TrainConfig(hidden=(16, 8), epochs=3, batch_size=32, dtype="float64", device="gpu",
                         ema=0.9, validation_fraction=0.0)
    states: list[dict[str, Any]] = []
    whole = MLP(36, (16, 8), 4, dtype="float64", seed=4)
    fit(whole, x, y, scaler, config, checkpoint=states.append, engine=engine.make_trainer)
    first = states[0]
    arrays = [*first["network"], *first["optimizer"]["state"], *first["average"]["average"]]
    assert arrays and all(type(a) is np.ndarray for a in arrays)
    resumed = MLP(36, (16, 8), 4, dtype="float64", seed=4)
    fit(resumed, x, y, scaler, config, resume_from=first, engine=engine.make_trainer)
    _same(resumed.get_state(), whole.get_state(), gpu["exact"])


def test_the_estimator_trains_on_the_gpu(gpu: dict[str, Any]) -> None:
    x, y, _ = _data()
    x = x.astype(np.float64) / 255
    common = {"hidden_layer_sizes": (16,), "max_iter": 3, "random_state": 0}
    on_cpu = DigitNetClassifier(**common).fit(x, y)
    on_gpu = DigitNetClassifier(**common, device="gpu").fit(x, y)
    _same([on_gpu.predict_proba(x)], [on_cpu.predict_proba(x)], gpu["exact"])
    assert all(type(w) is np.ndarray for w in on_gpu.coefs_)
    part_cpu = DigitNetClassifier(**common).partial_fit(x, y, classes=np.unique(y))
    part_gpu = DigitNetClassifier(**common, device="gpu").partial_fit(x, y, classes=np.unique(y))
    part_cpu.partial_fit(x, y)
    part_gpu.partial_fit(x, y)
    _same(part_gpu.coefs_, part_cpu.coefs_, gpu["exact"])


def test_train_device_gpu_saves_a_model_a_cpu_reads(
    gpu: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = {}
    for device in ("cpu", "gpu"):
        out = tmp_path / device
        code = main(["train", "--dataset", "digits", "--epochs", "2", "--dtype", "float64",
                     "--device", device, "--out", str(out), "--no-progress", "--no-plots"])
        assert code == 0, capsys.readouterr().err
        runs[device] = out
    metrics = {d: json.loads((out / "metrics.json").read_text()) for d, out in runs.items()}
    assert metrics["gpu"]["config"]["device"] == "gpu"
    model = load_model(runs["gpu"])  # read on the CPU, as any model
    assert model.network.device == "cpu"
    _same(model.network.get_state(), load_model(runs["cpu"]).network.get_state(), gpu["exact"])
    if gpu["exact"]:
        assert metrics["gpu"]["test_accuracy"] == metrics["cpu"]["test_accuracy"]


# ------------------------------------------------------------------------ when it cannot
def _train_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["train", "--dataset", "digits", "--epochs", "1", "--device", "gpu",
                 "--out", str(tmp_path / "run"), "--no-progress"])
    return code, capsys.readouterr().err


def test_no_cupy_is_one_line_before_any_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(devices, "ARRAY_MODULES", {"cupy": "no_such_module_xyz"})
    code, err = _train_gpu(tmp_path, capsys)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "needs CuPy" in err and "pip install 'digitnet[gpu]'" in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(devices.DeviceError, match="needs CuPy"):
        DigitNetClassifier(device="gpu", max_iter=1).fit(np.eye(4), [0, 1, 0, 1])


@pytest.mark.parametrize("failure", ["no device", "driver error"])
def test_cupy_without_a_gpu_is_one_line(
    fake_gpu: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], failure: str,
) -> None:
    def count() -> int:
        if failure == "driver error":
            raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is "
                               "insufficient for CUDA runtime version")
        return 0

    monkeypatch.setattr(fakecupy.cuda.runtime, "getDeviceCount", count)
    code, err = _train_gpu(tmp_path, capsys)
    assert code == 2 and err.count("\n") == 1
    assert "cannot use a CUDA GPU (cudaErrorInsufficientDriver" in err if failure == \
        "driver error" else "found no CUDA GPU" in err
    assert not (tmp_path / "run").exists()


def test_an_unknown_device_is_refused() -> None:
    with pytest.raises(ValueError, match="device must be one of cpu, gpu"):
        TrainConfig(device="tpu")
    with pytest.raises(ValueError, match="device must be one of cpu, gpu"):
        DigitNetClassifier(device="tpu").fit(np.eye(4), [0, 1, 0, 1])
