"""The same grid search, run on a Dask cluster through joblib's Dask backend.

Without --scheduler a two-worker LocalCluster is started on this machine; with it, the
search runs on an existing cluster (start one with `dask scheduler` and `dask worker
tcp://HOST:8786` on each machine, all with digitnet installed).

    python examples/distributed_search.py
    python examples/distributed_search.py --scheduler tcp://10.0.0.5:8786
"""

import argparse

import joblib
from dask.distributed import Client, LocalCluster
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from digitnet import DigitNetClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786 "
                        "(default: start a LocalCluster with 2 worker processes)")
    args = parser.parse_args()

    if args.scheduler:
        client = Client(args.scheduler)
    else:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster)
    print(f"cluster: {len(client.scheduler_info()['workers'])} workers at "
          f"{client.scheduler.address}")

    X, y = load_digits(return_X_y=True)
    pipeline = Pipeline([
        ("scale", StandardScaler()),
        ("net", DigitNetClassifier(max_iter=15, random_state=0)),
    ])
    grid = {
        "net__hidden_layer_sizes": [(32,), (128, 64)],
        "net__learning_rate_init": [1e-3, 1e-2],
        "net__alpha": [0.0, 1e-3],
    }
    search = GridSearchCV(pipeline, grid, cv=3, n_jobs=-1)
    try:
        with joblib.parallel_config(backend="dask"):  # every fit becomes a Dask task
            search.fit(X, y)
    finally:
        client.close()
        if not args.scheduler:
            cluster.close()

    print(f"best cross-validated accuracy {search.best_score_:.4f} with {search.best_params_}")


if __name__ == "__main__":
    main()
