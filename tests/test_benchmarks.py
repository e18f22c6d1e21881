"""The benchmark's own arithmetic and plumbing (not its timings): FLOP counts, picking the
time to accuracy, PyTorch's recipes, the memory probe, and a short run on real MNIST."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def test_pytorch_gets_digitnets_default_recipe_exactly() -> None:
    d = TrainConfig()
    recipes = compare.torch_recipes()
    assert compare.TorchRecipe(d.epochs, d.batch_size, d.lr, d.hidden,
                               digitnet_style=True) in recipes
    assert any(r.batch == 128 for r in recipes)  # the example recipe


def test_memory_probe_sees_a_childs_allocation() -> None:
    code = "import numpy as np; a = np.ones(80 * 2**20 // 8); print(a.sum())"
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
                         "--skip", "pytorch", "sklearn", "tta", "memory"]) == 0
    results = json.loads(out.read_text())
    throughput = results["throughput"]
    assert throughput["digitnet"] > 0 and throughput["digitnet_one_process"] > 0
    assert 0 < results["gemm"]["fraction"] < 1
    assert results["machine"]["OPENBLAS_THREAD_TIMEOUT"] is not None
    assert "1. Epoch throughput" in capsys.readouterr().out
