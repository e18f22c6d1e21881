"""The benchmark's own arithmetic and plumbing (not its timings): FLOP counts, picking the
time to accuracy, PyTorch's recipes, the memory probe, and a short run on real MNIST."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import compare
from digitnet.training import TrainConfig


def test_flops_per_epoch_count_forward_weight_and_input_gradients() -> None:
    # 784-128-64-10 on 60,000 samples: forward 2*n*sum(d_in*d_out), weight gradients the
    # same, input gradients for every layer but the first.
    products = 784 * 128 + 128 * 64 + 64 * 10
    expected = 2 * 60_000 * (2 * products + (128 * 64 + 64 * 10))
    assert compare.mlp_flops_per_epoch([784, 128, 64, 10], 60_000) == expected


def test_median_ignores_the_warm_up_epoch() -> None:
    assert compare.median_after_warmup([9.0, 1.0, 3.0, 2.0]) == 2.0


def test_time_to_accuracy_is_the_first_epoch_at_the_target() -> None:
    curve = [(1.0, 0.95), (2.0, 0.9801), (3.0, 0.99)]
    result = compare._tta_result("r", curve)
    assert (result["epochs"], result["seconds"]) == (2, 2.0)
    assert compare._tta_result("r", curve[:1])["seconds"] is None


def test_both_frameworks_run_digitnets_default_recipe_exactly() -> None:
    d = TrainConfig()
    shared = compare.shared_recipes()
    default = compare.Recipe(d.epochs, d.batch_size, d.lr, d.hidden, digitnet_style=True)
    assert default in shared and default.config() == d
    assert len(set(shared)) == len(shared) and {r.batch for r in shared} >= {128, 512}
    assert all(r.digitnet_style for r in shared)
    own = compare.pytorch_own_recipes()
    assert any(r.batch == 128 for r in own)  # the example recipe
    with pytest.raises(AssertionError):
        own[0].config()  # PyTorch's defaults have no digitnet equivalent


def _tta(seconds: float | None) -> dict[str, Any]:
    return {"recipe": "r", "epochs": None if seconds is None else 4, "seconds": seconds,
            "curve": []}


def test_the_ratios_take_digitnets_default_and_the_fastest_pytorch_recipe(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Fake timings by batch size: digitnet fastest at 512, PyTorch at 384; one PyTorch
    # recipe of its own never reaches the target.
    digitnet = {128: 2.0, 256: 1.5, 384: 1.3, 512: 1.2}
    torch = {128: 4.0, 256: 2.5, 384: 1.6, 512: 1.8}
    monkeypatch.setattr(compare, "digitnet_time_to_accuracy",
                        lambda ds, config: _tta(digitnet[config.batch_size]))
    monkeypatch.setattr(compare, "torch_time_to_accuracy", lambda ds, threads, r: _tta(
        torch[r.batch] if r.digitnet_style else (None if r.epochs == 6 else 9.0)))
    monkeypatch.setattr(compare, "shared_recipes", lambda: [
        compare.Recipe(5, b, 1e-3, digitnet_style=True) for b in (128, 384, 512)
    ] + [compare.Recipe(TrainConfig().epochs, 256, TrainConfig().lr, digitnet_style=True)])
    result = compare.time_to_accuracy(None, 2, with_torch=True)  # type: ignore[arg-type]
    assert result["digitnet"]["seconds"] == digitnet[TrainConfig().batch_size]
    assert result["pytorch"]["seconds"] == 1.6
    default = TrainConfig().batch_size  # the same recipe in both frameworks
    assert result["default_ratio"] == pytest.approx(digitnet[default] / torch[default])
    assert result["fastest_ratio"] == pytest.approx(1.2 / 1.6)
    rows = {row["batch"]: row for row in result["shared_recipes"]}
    assert rows[128]["ratio"] == pytest.approx(0.5) and not rows[128]["default"]
    assert [r["seconds"] for r in result["pytorch_own_recipes"]].count(None) == 1
    result["products_floor"] = compare.products_floor(result, [784, 256, 128, 10], 55_000,
                                                      gflops=300.0)
    compare.print_time_to_accuracy(result)
    table = capsys.readouterr().out
    assert "<- digitnet's plain recipe" in table and "not reached" in table
    floor = result["products_floor"]["digitnet"]
    assert f"(4 epochs): {floor['seconds']:.2f} s = {floor['of_fastest_pytorch']:.2f}" in table
    assert f"same recipe in both: {digitnet[default] / torch[default]:.2f}" in table
    assert f"= {1.2 / 1.6:.2f} (goal 0.75)" in table


def test_the_median_run_counts_a_miss_as_the_slowest() -> None:
    runs = [_tta(1.5), _tta(None), _tta(1.2)]
    median = compare.median_run(runs)
    assert median["seconds"] == 1.5 and (median["reached"], median["runs"]) == (2, 3)
    assert median["seconds_by_run"] == [1.5, None, 1.2]
    assert compare.median_run([_tta(None), _tta(1.0), _tta(None)])["seconds"] is None
    assert "not reached 1/3" in compare._seconds(compare.median_run([_tta(None), _tta(1.0),
                                                                     _tta(None)]))


def test_each_shared_recipe_runs_once_per_seed_in_both_frameworks(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, list[tuple[int, int]]] = {"digitnet": [], "pytorch": []}
    turns: list[str] = []

    def digitnet(ds: Any, config: TrainConfig) -> dict[str, Any]:
        seen["digitnet"].append((config.batch_size, config.seed))
        turns.append("digitnet")
        return _tta(1.0 + config.seed)

    def pytorch(ds: Any, threads: int, recipe: compare.Recipe) -> dict[str, Any]:
        if recipe.digitnet_style:
            seen["pytorch"].append((recipe.batch, recipe.seed))
            turns.append("pytorch")
        return _tta(2.0 + recipe.seed)

    monkeypatch.setattr(compare, "digitnet_time_to_accuracy", digitnet)
    monkeypatch.setattr(compare, "torch_time_to_accuracy", pytorch)
    result = compare.time_to_accuracy(None, 2, with_torch=True,  # type: ignore[arg-type]
                                      seeds=(0, 1, 2))
    expected = [(r.batch, seed) for r in compare.shared_recipes() for seed in (0, 1, 2)]
    assert seen["digitnet"] == expected and seen["pytorch"] == expected
    assert turns == ["digitnet", "pytorch"] * len(expected)  # taking turns, seed by seed
    assert result["digitnet"]["seconds"] == 2.0  # the median of 1, 2, 3
    assert result["shared_recipes"][0]["pytorch"]["seconds_by_run"] == [2.0, 3.0, 4.0]


def test_without_pytorch_only_digitnets_column_is_filled(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(compare, "digitnet_time_to_accuracy", lambda ds, config: _tta(1.0))
    result = compare.time_to_accuracy(None, 2, with_torch=False)  # type: ignore[arg-type]
    assert "default_ratio" not in result and result["digitnet"]["seconds"] == 1.0
    compare.print_time_to_accuracy(result)
    assert "PyTorch's own" not in capsys.readouterr().out


def test_memory_probe_sees_a_childs_allocation() -> None:
    # held for 0.3 s: the probe samples every 20 ms, and a loaded machine may delay it
    code = ("import time, numpy as np; a = np.ones(80 * 2**20 // 8); time.sleep(0.3); "
            "print(a.sum())")
    done = subprocess.run([sys.executable, "-m", "benchmarks.child_rss", sys.executable, "-c",
                           code], capture_output=True, text=True, check=True, timeout=60)
    memory = json.loads(done.stdout.strip().splitlines()[-1])
    assert memory["max_rss_mb"] >= 80
    if sys.platform == "linux":
        assert memory["peak_pss_mb"] >= 40  # sampled every 20 ms: may miss the very peak


@pytest.mark.mnist
@pytest.mark.slow
def test_a_short_benchmark_run_writes_its_table_and_json(
    mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    assert compare.main(["--data-dir", str(mnist_dir), "--epochs", "1", "--json", str(out),
                         "--skip", "pytorch", "sklearn", "tta", "memory", "busy"]) == 0
    results = json.loads(out.read_text())
    throughput = results["throughput"]
    assert throughput["digitnet"] > 0 and throughput["digitnet_one_process"] > 0
    assert 0 < results["gemm"]["fraction"] < 1
    assert results["machine"]["OPENBLAS_THREAD_TIMEOUT"] is not None
    assert "1. Epoch throughput" in capsys.readouterr().out


@pytest.mark.mnist
def test_the_step_profile_prints_each_part_and_unwraps_the_methods(
    mnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import profile_step

    originals = [getattr(cls, name) for cls, name, _ in profile_step.TIMED]
    assert profile_step.main(["--data-dir", str(mnist_dir), "--epochs", "1",
                              "--batch-size", "512"]) == 0
    out = capsys.readouterr().out
    assert "batch 512" in out and "adam" in out and "share.forward (product)" in out
    assert [getattr(cls, name) for cls, name, _ in profile_step.TIMED] == originals


def test_the_products_floor_is_the_flops_of_the_epochs_needed_at_the_sgemm_rate() -> None:
    tta = {"digitnet": {"epochs": 4, "seconds": 1.4},
           "fastest_digitnet": {"epochs": 3, "seconds": 1.1},
           "pytorch": {"epochs": 3, "seconds": 1.5}}
    layers = [784, 256, 128, 10]
    floor = compare.products_floor(tta, layers, 55_000, gflops=300.0)
    per_epoch = compare.mlp_flops_per_epoch(layers, 55_000) / 300e9
    assert floor["seconds_per_epoch"] == pytest.approx(per_epoch)
    assert floor["digitnet"]["seconds"] == pytest.approx(4 * per_epoch)
    assert floor["fastest_digitnet"]["of_fastest_pytorch"] == pytest.approx(3 * per_epoch / 1.5)
    # Nothing to say of a recipe that never reached the target, or without PyTorch.
    tta["fastest_digitnet"] = {"epochs": None, "seconds": None}
    del tta["pytorch"]
    floor = compare.products_floor(tta, layers, 55_000, gflops=300.0)
    assert "fastest_digitnet" not in floor and floor["digitnet"]["of_fastest_pytorch"] is None


def test_every_shared_recipe_trains_the_default_network() -> None:
    # products_floor counts the default network's FLOPs for every shared recipe.
    assert {r.hidden for r in compare.shared_recipes()} == {TrainConfig().hidden}


# ------------------------------------------------------------------------ busy machine
def test_cpu_hogs_run_for_the_block_and_are_gone_after() -> None:
    from benchmarks import busy

    with busy.cpu_hogs(2) as hogs:
        assert all(h.poll() is None for h in hogs)
    assert all(h.poll() is not None for h in hogs)


def test_two_at_once_compares_the_slower_together_with_both_apart(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import busy

    seconds = iter([2.0, 2.2, 2.5, 2.6])  # two apart, then two together
    monkeypatch.setattr(busy, "start", lambda kind, data_dir, folder, env=None: (None, ""))
    monkeypatch.setattr(busy, "finish", lambda kind, proc, out: {"seconds": next(seconds)})
    result = busy.two_at_once("digitnet", None, "")
    assert result["one_after_other_seconds"] == pytest.approx(4.2)
    assert result["ratio"] == pytest.approx(2.6 / 4.2)


def test_the_hog_ratio_is_the_engine_over_one_blas_thread(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import busy

    envs: list[Any] = []

    def train(kind: str, data_dir: Any, folder: str, env: Any = None) -> dict[str, Any]:
        envs.append(env)
        return {"seconds": 4.4 if env else 4.0,
                "engine_info": {"steps": {"process": 20, "inline": 1000}}}

    monkeypatch.setattr(busy, "train", train)
    hog = busy.train_beside_a_hog(None, "")
    assert envs == [None, {"OPENBLAS_NUM_THREADS": "1"}]
    assert hog["ratio"] == pytest.approx(4.0 / 4.4)
    busy.print_busy({"cores": 2, "train_beside_a_hog": hog, "thread_scaling": [],
                     "throughput_beside_a_hog": {"digitnet": 0.5, "pytorch": 1.0},
                     "two_at_once": {"digitnet": {"together": [{"seconds": 1.0}] * 2,
                                                  "one_after_other_seconds": 2.0,
                                                  "ratio": 0.5}}})
    out = capsys.readouterr().out
    assert "0.91 x (bound 1.15)" in out and "20 / 1000" in out and "0.50 x PyTorch" in out


@pytest.mark.mnist
@pytest.mark.slow
def test_a_digitnet_train_child_reports_its_training_seconds(
    mnist_dir: Path, tmp_path: Path
) -> None:
    from benchmarks import busy

    result = busy.train("digitnet", str(mnist_dir), str(tmp_path))
    assert result["seconds"] > 0 and result["test_accuracy"] > 0.97
    assert result["engine_info"]["trainer"] == "split"


# -------------------------------------------------------------------- the server's load
@pytest.mark.slow
def test_a_short_load_test_has_no_errors(tmp_path: Path) -> None:
    """The load benchmark's code path, shorter: 400 requests at concurrency 16, with slow
    clients and huge images beside; every ordinary request answered 200."""
    from benchmarks import load

    model = load.digits_model(str(tmp_path))
    result = load.load_test(model, requests=400, concurrency=16, slow=8, request_timeout=1.0)
    assert result["errors"] == 0 and result["ordinary"] == 396
    assert result["huge_image_statuses"] == {422: 4}
    assert result["cut_off"] == 8
    assert result["server_peak_rss_mb"] is None or result["server_peak_rss_mb"] < 500
    assert result["p99_ms"] >= result["p50_ms"] > 0


def test_time_to_99_runs_the_same_recipe_in_both(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The long benchmark's code path, on the 8x8 digits for two epochs (PyTorch when
    installed): both sides train and report their test accuracy after every epoch."""
    from benchmarks import time_to_99

    out = tmp_path / "t.json"
    assert time_to_99.main(["--dataset", "digits", "--epochs", "2", "--hidden", "32",
                            "--target", "0.5", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["config"]["augment"] == "elastic" and report["config"]["epochs"] == 2
    runs = report["idle"]
    for name in ("digitnet", *(("pytorch",) if compare.torch_available() else ())):
        assert 1 <= len(runs[name]["curve"]) <= 2
        assert all(0 <= acc <= 1 for _, acc in runs[name]["curve"])
    assert "time to 50.0%" in capsys.readouterr().out


def test_time_to_99_over_several_seeds_reports_each_and_the_median(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import time_to_99

    out = tmp_path / "t.json"
    assert time_to_99.main(["--dataset", "digits", "--preset", "fast", "--epochs", "6",
                            "--hidden", "32", "--target", "0.5", "--seed", "0", "1", "2",
                            "--no-torch", "--json", str(out)]) == 0
    idle = json.loads(out.read_text())["idle"]
    assert idle["seeds"] == [0, 1, 2] and len(idle["runs"]) == 3
    accuracies = [[acc for _, acc in run["digitnet"]["curve"]] for run in idle["runs"]]
    assert accuracies[0] != accuracies[1]  # each run trained with its own seed
    seconds = [run["digitnet"]["seconds"] for run in idle["runs"]]
    assert idle["digitnet"]["seconds"] == sorted(seconds)[1]  # the median run
    printed = capsys.readouterr().out
    assert "idle, seed 2: time to 50.0%" in printed and "idle, median:" in printed


def test_the_gpu_benchmark_times_digitnet_on_the_gpu_code_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import numpy as np

    from benchmarks import gpu
    from digitnet import devices

    monkeypatch.setattr(devices, "ARRAY_MODULES", {"cupy": "fakecupy", "fakecupy": "fakecupy"})
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (300, 64), dtype=np.uint8), rng.integers(0, 10, 300)
    for engine in ("fast", "textbook"):
        times = gpu.digitnet_epochs(x, y, (16,), 32, 2, "gpu", engine)
        assert len(times) == 2 and all(t > 0 for t in times)
    assert gpu.median_after_warmup([9.0, 1.0, 3.0]) == 2.0
    monkeypatch.setattr(devices, "ARRAY_MODULES", {"cupy": "no_such_module_xyz"})
    with pytest.raises(devices.DeviceError, match="needs CuPy"):
        gpu.main(["--device", "gpu", "--no-torch"])


def test_time_to_99_stops_at_the_target_or_the_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import time_to_99

    monkeypatch.setitem(time_to_99.LIMITS, "seconds", 60.0)
    monkeypatch.setitem(time_to_99.LIMITS, "stop_at_target", True)
    assert time_to_99._done(0.991, 0.99, 10.0) and not time_to_99._done(0.98, 0.99, 10.0)
    assert time_to_99._done(0.98, 0.99, 61.0)
    monkeypatch.setitem(time_to_99.LIMITS, "stop_at_target", False)
    assert not time_to_99._done(0.999, 0.99, 10.0)


def test_the_batch_norm_trials_layer_has_the_gradient_it_claims() -> None:
    import numpy as np
    from helpers import numerical_gradient, relative_error

    from benchmarks.batchnorm import BatchNormMLP

    rng = np.random.default_rng(5)
    net = BatchNormMLP(6, (7, 5), 3, activation="tanh", dtype="float64", seed=2)
    for norm in net.norms:  # away from gamma = 1, beta = 0
        norm.gamma[...] = rng.uniform(0.5, 1.5, norm.gamma.shape)
        norm.beta[...] = rng.normal(scale=0.3, size=norm.beta.shape)
    x, labels = rng.normal(size=(9, 6)), rng.integers(0, 3, size=9)
    net.loss_and_gradients(x, labels)
    analytic = [g.copy() for g in net.gradients()]
    assert len(analytic) == 6 + 4
    for param, grad in zip(net.parameters(), analytic, strict=True):
        numeric = numerical_gradient(lambda: net.loss_and_gradients(x, labels)[0], param)
        if np.abs(numeric).max() < 1e-9:  # a bias before batch norm: no effect, no gradient
            assert np.abs(grad).max() < 1e-9
            continue
        assert relative_error(grad, numeric) < 1e-7
    z = net.dense[0].forward(x)
    net.norms[0].training = True
    out = net.norms[0].forward(z)  # standardized per unit, then scaled and shifted
    np.testing.assert_allclose(out.mean(axis=0), net.norms[0].beta, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), net.norms[0].gamma, rtol=1e-4)
