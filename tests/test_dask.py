"""A hyperparameter search on a real Dask cluster gives the local search's results.

The cluster is a ``dask.distributed.LocalCluster`` with two worker *processes* on
127.0.0.1: the estimator is pickled to them, trained there, and only scores come back,
exactly as with a remote cluster (which differs only in the scheduler address).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
from dask.distributed import Client, LocalCluster, get_task_stream
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

from digitnet.estimator import DigitNetClassifier

pytestmark = pytest.mark.slow

GRID = {"hidden_layer_sizes": [(8,), (32,)], "learning_rate_init": [1e-3, 1e-2]}
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Two single-threaded worker processes on 127.0.0.1, 1 GiB of memory each."""
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None, memory_limit="1GiB")
    try:
        yield cluster
    finally:
        cluster.close()


def test_grid_search_on_dask_cluster_equals_local_run(cluster: LocalCluster) -> None:
    X, y = load_digits(return_X_y=True)
    X, y = X[:900], y[:900]
    estimator = DigitNetClassifier(max_iter=5, random_state=0)
    local = GridSearchCV(estimator, GRID, cv=3, n_jobs=1).fit(X, y)

    with Client(cluster) as client, get_task_stream(client) as tasks:
        workers = set(client.scheduler_info()["workers"])
        assert len(workers) == 2
        with joblib.parallel_config(backend="dask"):
            remote = GridSearchCV(estimator, GRID, cv=3, n_jobs=-1).fit(X, y)

    # The fits ran on the cluster's workers (the task stream names who ran what) ...
    used = {record["worker"] for record in tasks.data}
    assert used and used <= workers
    # ... and gave exactly the local results: training is deterministic given random_state.
    np.testing.assert_array_equal(remote.cv_results_["mean_test_score"],
                                  local.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(remote.cv_results_["split0_test_score"],
                                  local.cv_results_["split0_test_score"])
    assert remote.best_params_ == local.best_params_
    np.testing.assert_array_equal(remote.predict(X), local.predict(X))


def test_distributed_example_connects_to_an_existing_scheduler(cluster: LocalCluster) -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "distributed_search.py"),
         "--scheduler", cluster.scheduler_address],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr
    assert f"2 workers at {cluster.scheduler_address}" in run.stdout
    assert "best cross-validated accuracy" in run.stdout
