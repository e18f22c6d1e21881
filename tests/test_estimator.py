"""DigitNetClassifier: scikit-learn's estimator checks, the ecosystem, and model-file interop."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from digitnet.cli import main as cli_main
from digitnet.data.datasets import load_digits_dataset
from digitnet.estimator import DigitNetClassifier
from digitnet.model_io import load_model

# Small networks keep scikit-learn's ~55 checks per instance fast. The second instance
# covers the other code paths: float32, Nesterov momentum, a schedule, early stopping.
CHECKED = [
    DigitNetClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, batch_size=32,
                       max_iter=30),
    DigitNetClassifier(hidden_layer_sizes=(16, 8), activation="tanh", solver="nesterov",
                       learning_rate_init=0.05, lr_schedule="cosine", batch_size=16,
                       max_iter=40, early_stopping=True, validation_fraction=0.2,
                       n_iter_no_change=5, dtype="float32"),
]


def expected_failed_checks(estimator: DigitNetClassifier) -> dict[str, str]:
    """Checks that cannot pass, with the reason. There are none: every check passes.

    (``check_array_api_input`` is skipped by scikit-learn itself unless SCIPY_ARRAY_API
    is set; the network is NumPy-only, and the estimator does not claim array-API support.)
    """
    return {}


@parametrize_with_checks(CHECKED, expected_failed_checks=expected_failed_checks)
def test_sklearn_estimator_checks(estimator: DigitNetClassifier, check: Any) -> None:
    check(estimator)


# ----------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (values 0-16), split 75/25 stratified."""
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    return X_tr, X_te, y_tr, y_te


def small(**params: Any) -> DigitNetClassifier:
    """A quick network for the digits tests."""
    defaults: dict[str, Any] = {"hidden_layer_sizes": (32,), "max_iter": 15,
                                "learning_rate_init": 0.01, "random_state": 0}
    return DigitNetClassifier(**{**defaults, **params})


# --------------------------------------------------------------------------- the API
def test_learns_digits(digits: Any) -> None:
    X_tr, X_te, y_tr, y_te = digits
    est = small().fit(X_tr, y_tr)
    assert est.score(X_te, y_te) > 0.9
    assert est.n_features_in_ == 64
    assert list(est.classes_) == list(range(10))
    assert est.n_iter_ == 15 and len(est.loss_curve_) == 15
    assert est.loss_curve_[-1] < est.loss_curve_[0] / 5
    assert est.validation_scores_ is None and est.best_validation_score_ is None
    assert [w.shape for w in est.coefs_] == [(64, 32), (32, 10)]
    assert [b.shape for b in est.intercepts_] == [(32,), (10,)]


def test_default_network_is_the_cli_default_architecture() -> None:
    est = DigitNetClassifier().fit(np.random.default_rng(0).random((40, 784)), np.arange(40) % 10)
    assert est.network_.layer_sizes == [784, 256, 128, 10]


def test_arbitrary_labels_and_feature_counts() -> None:
    X, y_int = make_classification(n_samples=240, n_features=5, n_informative=4,
                                   n_redundant=0, n_classes=3, random_state=0)
    labels = np.array(["cat", "dog", "emu"])
    est = small(max_iter=40).fit(X, labels[y_int])
    assert list(est.classes_) == ["cat", "dog", "emu"]
    assert est.n_features_in_ == 5
    assert set(est.predict(X)) <= set(labels)
    assert est.score(X, labels[y_int]) > 0.8

    weird = np.array([-7, 3, 1000])
    est = small(max_iter=40).fit(X, weird[y_int])
    assert list(est.classes_) == [-7, 3, 1000]
    np.testing.assert_array_equal(est.predict(X), weird[est.predict_proba(X).argmax(axis=1)])

    with pytest.raises(ValueError, match="5 features"):
        est.predict(X[:, :4])


def test_binary_uses_two_softmax_outputs() -> None:
    X, y = make_classification(n_samples=120, n_features=4, random_state=1)
    est = small(max_iter=30).fit(X, np.where(y == 1, "yes", "no"))
    proba = est.predict_proba(X)
    assert proba.shape == (120, 2) and est.network_.n_classes == 2
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert est.score(X, np.where(y == 1, "yes", "no")) > 0.8


def test_one_class_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least 2 classes"):
        small().fit(np.ones((5, 3)), [4, 4, 4, 4, 4])


def test_predict_log_proba_is_log_of_predict_proba(digits: Any) -> None:
    X_tr, X_te, y_tr, _ = digits
    est = small(max_iter=5).fit(X_tr, y_tr)
    log_p = est.predict_log_proba(X_te)
    assert np.all(np.isfinite(log_p))
    np.testing.assert_allclose(np.exp(log_p), est.predict_proba(X_te), rtol=1e-10, atol=1e-12)


def test_random_state_decides_everything(digits: Any) -> None:
    X_tr, X_te, y_tr, _ = digits
    a = small(max_iter=3).fit(X_tr, y_tr).predict_proba(X_te)
    b = small(max_iter=3).fit(X_tr, y_tr).predict_proba(X_te)
    c = small(max_iter=3, random_state=1).fit(X_tr, y_tr).predict_proba(X_te)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # A RandomState is drawn from, as in scikit-learn: two fits from one stream differ.
    est = small(max_iter=1, random_state=np.random.RandomState(0))
    first = est.fit(X_tr, y_tr).predict_proba(X_te)
    assert not np.allclose(first, est.fit(X_tr, y_tr).predict_proba(X_te))


def test_float32_and_float64_agree(digits: Any) -> None:
    X_tr, X_te, y_tr, _ = digits
    p64 = small(max_iter=3).fit(X_tr, y_tr).predict_proba(X_te)
    p32 = small(max_iter=3, dtype="float32").fit(X_tr, y_tr).predict_proba(X_te)
    assert p32.dtype == np.float32 and p64.dtype == np.float64
    np.testing.assert_allclose(p32, p64, atol=2e-3)


def test_early_stopping(digits: Any) -> None:
    X_tr, _, y_tr, _ = digits
    est = small(max_iter=200, learning_rate_init=0.05, early_stopping=True,
                n_iter_no_change=3).fit(X_tr, y_tr)
    assert est.n_iter_ < 200  # stopped
    assert est.validation_scores_ is not None
    assert len(est.validation_scores_) == est.n_iter_ == len(est.loss_curve_)
    assert est.best_validation_score_ in est.validation_scores_
    assert est.best_validation_score_ > 0.9
    # The validation samples were held out: about 10 % of each class.
    assert all(0.0 <= s <= 1.0 for s in est.validation_scores_)


def test_warm_start_continues_and_survives_pickling(digits: Any) -> None:
    X_tr, X_te, y_tr, _ = digits
    est = small(max_iter=3, warm_start=True).fit(X_tr, y_tr)
    once = est.predict_proba(X_te)
    revived = pickle.loads(pickle.dumps(est))
    est.fit(X_tr, y_tr)
    assert est.n_iter_ == 6 and len(est.loss_curve_) == 6
    assert not np.allclose(once, est.predict_proba(X_te))  # trained further
    revived.fit(X_tr, y_tr)  # a pickled estimator trains on exactly as the original
    np.testing.assert_array_equal(revived.predict_proba(X_te), est.predict_proba(X_te))
    # Without warm_start, fit starts afresh: the same as the first 3 epochs.
    est.set_params(warm_start=False).fit(X_tr, y_tr)
    np.testing.assert_array_equal(est.predict_proba(X_te), once)


def test_warm_start_refuses_a_different_problem(digits: Any) -> None:
    X_tr, _, y_tr, _ = digits
    est = small(max_iter=1, warm_start=True).fit(X_tr, y_tr)
    with pytest.raises(ValueError, match="classes"):
        est.fit(X_tr[y_tr < 5], y_tr[y_tr < 5])
    with pytest.raises(ValueError, match="network"):
        est.set_params(hidden_layer_sizes=(8,)).fit(X_tr, y_tr)


@pytest.mark.parametrize("engine", ["fast", "textbook"])
@pytest.mark.parametrize("solver", ["adam", "momentum"])
def test_partial_fit_is_fit_one_epoch_at_a_time(digits: Any, engine: str, solver: str) -> None:
    """k partial_fit calls == fit with max_iter=k: same epoch function, same shuffling,
    and the optimizer's state (Adam's moments, the velocity) carried from call to call."""
    X_tr, X_te, y_tr, _ = digits
    est = small(max_iter=3, engine=engine, solver=solver)
    for _ in range(3):
        est.partial_fit(X_tr, y_tr, classes=np.arange(10))
    full = small(max_iter=3, engine=engine, solver=solver).fit(X_tr, y_tr)
    np.testing.assert_allclose(est.predict_proba(X_te), full.predict_proba(X_te),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(est.loss_curve_, full.loss_curve_, rtol=1e-9)
    assert est.n_iter_ == 3


def test_partial_fit_classes_rules(digits: Any) -> None:
    X_tr, _, y_tr, _ = digits
    est = small()
    with pytest.raises(ValueError, match="classes must be passed"):
        est.partial_fit(X_tr, y_tr)
    # A batch may hold only some of the classes announced up front.
    est.partial_fit(X_tr[y_tr < 3], y_tr[y_tr < 3], classes=np.arange(10))
    assert list(est.classes_) == list(range(10))
    with pytest.raises(ValueError, match="not in classes_"):
        est.partial_fit(X_tr[:5], np.full(5, 11))
    with pytest.raises(ValueError, match="differs"):
        est.partial_fit(X_tr, y_tr, classes=np.arange(11))


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"hidden_layer_sizes": ()}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": (8, 0)}, "hidden_layer_sizes"),
        ({"activation": "softplus"}, "activation"),
        ({"solver": "lbfgs"}, "solver"),
        ({"lr_schedule": "invscaling"}, "lr_schedule"),
        ({"learning_rate_init": 0.0}, "learning_rate_init"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_iter": 2.5}, "max_iter"),
        ({"alpha": -1.0}, "alpha"),
        ({"momentum": 1.0}, "momentum"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"n_iter_no_change": 0}, "n_iter_no_change"),
        ({"dtype": "float16"}, "dtype"),
    ],
)
def test_bad_hyperparameters_name_themselves(params: dict[str, Any], name: str) -> None:
    est = DigitNetClassifier(**params)  # constructing never validates (scikit-learn rule)
    with pytest.raises(ValueError, match=name):
        est.fit(np.eye(4), [0, 1, 0, 1])


def test_dataframe_input_records_feature_names() -> None:
    import pandas as pd  # in the test extra
    X, y = make_classification(n_samples=60, n_features=3, n_informative=3, n_redundant=0,
                               random_state=0)
    frame = pd.DataFrame(X, columns=["height", "width", "depth"])
    est = small(max_iter=2).fit(frame, y)
    assert list(est.feature_names_in_) == ["height", "width", "depth"]
    with pytest.warns(UserWarning, match="feature names"):
        unnamed = est.predict(frame.to_numpy())
    np.testing.assert_array_equal(est.predict(frame), unnamed)


def test_lazy_export() -> None:
    import digitnet

    assert digitnet.DigitNetClassifier is DigitNetClassifier


# -------------------------------------------------------------------- the ecosystem
def test_pipeline_with_scaling(digits: Any) -> None:
    X_tr, X_te, y_tr, y_te = digits
    pipe = Pipeline([("scale", StandardScaler()), ("net", small())]).fit(X_tr, y_tr)
    assert pipe.score(X_te, y_te) > 0.93
    assert pipe.named_steps["net"].n_features_in_ == 64


def test_cross_val_score(digits: Any) -> None:
    X_tr, _, y_tr, _ = digits
    scores = cross_val_score(small(max_iter=8), X_tr, y_tr, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85


def test_grid_search_in_two_processes_equals_one(digits: Any) -> None:
    X_tr, _, y_tr, _ = digits
    grid = {"hidden_layer_sizes": [(8,), (32,)], "learning_rate_init": [1e-3, 1e-2]}
    parallel = GridSearchCV(small(max_iter=5), grid, cv=3, n_jobs=2).fit(X_tr, y_tr)
    serial = GridSearchCV(small(max_iter=5), grid, cv=3, n_jobs=1).fit(X_tr, y_tr)
    np.testing.assert_array_equal(parallel.cv_results_["mean_test_score"],
                                  serial.cv_results_["mean_test_score"])
    assert parallel.best_params_ == serial.best_params_
    # The search does discriminate: the wide, fast-learning network wins.
    assert parallel.best_params_ == {"hidden_layer_sizes": (32,), "learning_rate_init": 1e-2}
    assert parallel.best_estimator_.n_iter_ == 5


def test_clone_keeps_params_not_state(digits: Any) -> None:
    X_tr, _, y_tr, _ = digits
    est = small(max_iter=1).fit(X_tr, y_tr)
    fresh = clone(est)
    assert fresh.get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        fresh.predict(X_tr)
    with pytest.raises(NotFittedError):
        fresh.save("never.npz")


# -------------------------------------------------------- model files (CLI interop)
def _cli(*argv: str) -> None:
    assert cli_main(list(argv)) == 0


def test_cli_model_loads_predicts_and_saves_back(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _cli("train", "--dataset", "digits", "--epochs", "2", "--hidden", "32",
         "--out", str(tmp_path / "run"), "--no-progress")
    model = load_model(tmp_path / "run" / "model.npz")
    data = load_digits_dataset()

    est = DigitNetClassifier.load(tmp_path / "run" / "model.npz")
    assert est.network_.layer_sizes == [64, 32, 10]
    assert list(est.classes_) == list(range(10))  # digitnet's label indices
    assert est.class_names_ == model.class_names
    assert (est.scaler_.lo, est.scaler_.hi) == (model.scaler.lo, model.scaler.hi)
    assert est.get_params()["max_iter"] == 2 and est.get_params()["lr_schedule"] == "onecycle"
    # Same raw (0-16) input, same predictions as the command line's model.
    np.testing.assert_array_equal(est.predict(data.x_test), model.predict(data.x_test))
    np.testing.assert_allclose(est.predict_proba(data.x_test), model.predict_proba(data.x_test),
                               rtol=1e-6, atol=1e-7)

    est.save(tmp_path / "back" / "model.npz")
    capsys.readouterr()
    _cli("evaluate", "--model", str(tmp_path / "back"), "--json", "--no-progress")
    again = json.loads(capsys.readouterr().out)
    original = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert again["test_accuracy"] == original["test_accuracy"]
    assert again["test_accuracy"] == est.score(data.x_test, data.y_test)

    # The loaded model keeps training on the same raw inputs (its scaling stays).
    before = est.score(data.x_train, data.y_train)
    for _ in range(5):
        est.partial_fit(data.x_train, data.y_train)
    assert est.scaler_ == model.scaler
    assert est.score(data.x_train, data.y_train) > before
    assert "test_accuracy" not in est.to_trained_model().info  # no stale metrics


def test_estimator_model_round_trip_and_cli_evaluate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = load_digits_dataset()
    labels = np.array(["zero", "one", "two", "three", "four",
                       "five", "six", "seven", "eight", "nine"])
    est = small(max_iter=10, dtype="float32").fit(data.x_train, labels[data.y_train])
    path = est.save(tmp_path / "model.npz")

    back = DigitNetClassifier.load(path)
    assert list(back.classes_) == sorted(labels)
    assert back.get_params() == est.get_params()
    np.testing.assert_array_equal(back.predict(data.x_test), est.predict(data.x_test))
    np.testing.assert_array_equal(back.predict_proba(data.x_test), est.predict_proba(data.x_test))
    assert back.loss_curve_ == pytest.approx(est.loss_curve_)

    # digitnet evaluate reads it; trained on integer labels it scores as the estimator does.
    numeric = small(max_iter=10, dtype="float32").fit(data.x_train, data.y_train)
    numeric.save(tmp_path / "numeric.npz")
    capsys.readouterr()
    _cli("evaluate", "--model", str(tmp_path / "numeric.npz"), "--dataset", "digits", "--json",
         "--no-progress")
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["test_accuracy"] == pytest.approx(numeric.score(data.x_test, data.y_test))
    saved = load_model(tmp_path / "numeric.npz")
    assert saved.image_shape == (8, 8)
    assert (saved.scaler.lo, saved.scaler.hi) == (0.0, 1.0)  # identity: inputs used as given
    assert saved.info["config"]["hidden"] == [32] and saved.info["epochs_run"] == 10


# ------------------------------------------------------------------------- examples
@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "expected"),
    [("pipeline_scaling.py", "StandardScaler     test accuracy"),
     ("grid_search.py", "test accuracy of the refitted best pipeline")],
)
def test_examples_run(script: str, expected: str) -> None:
    examples = Path(__file__).resolve().parent.parent / "examples"
    run = subprocess.run([sys.executable, str(examples / script)], capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    assert expected in run.stdout


def test_the_engines_agree_and_a_bad_engine_is_refused(digits: Any) -> None:
    X_tr, X_te, y_tr, _ = digits
    fast = small(max_iter=3).fit(X_tr, y_tr)
    textbook = small(max_iter=3, engine="textbook").fit(X_tr, y_tr)
    np.testing.assert_allclose(fast.predict_proba(X_te), textbook.predict_proba(X_te),
                               rtol=1e-7, atol=1e-10)
    with pytest.raises(ValueError, match="engine must be one of"):
        small(engine="gpu").fit(X_tr, y_tr)


def test_feature_names_survive_save_and_load(tmp_path: Any) -> None:
    import pandas as pd

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.random((60, 4)), columns=["w", "x", "y", "z"])
    y = np.arange(60) % 3
    est = small(hidden_layer_sizes=(8,), max_iter=2).fit(X, y)
    loaded = DigitNetClassifier.load(est.save(tmp_path / "model.npz"))
    assert loaded.feature_names_in_.tolist() == ["w", "x", "y", "z"]
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    with pytest.raises(ValueError, match="feature names"):  # scikit-learn's own check
        loaded.predict(X.rename(columns={"w": "v"}))


@pytest.mark.parametrize("sizes", [np.array([8, 4]), [8, 4], range(8, 10), np.int64(6)])
def test_hidden_layer_sizes_take_array_likes_as_scikit_learn_does(sizes: Any) -> None:
    X, y = np.random.default_rng(0).random((40, 5)), np.arange(40) % 2
    est = small(hidden_layer_sizes=sizes, max_iter=1).fit(X, y)
    expected = [int(sizes)] if np.ndim(sizes) == 0 else [int(s) for s in sizes]
    assert list(est.network_.hidden) == expected


def test_regularization_parameters_train_as_the_command_line_does(digits: Any) -> None:
    from digitnet.config import TrainConfig
    from digitnet.network import MLP
    from digitnet.training import fit

    X, _, y, _ = digits
    params = dict(hidden_layer_sizes=(16,), max_iter=3, batch_size=64, random_state=0,
                  dropout=0.2, label_smoothing=0.1, max_norm=1.5)
    clf = DigitNetClassifier(**params).fit(X, y)
    assert len(clf.network_.dropouts) == 1 and clf.network_.dropout == 0.2
    for layer in clf.network_.dense:
        assert (np.linalg.norm(layer.W, axis=0) <= 1.5 + 1e-9).all()
    # the same as digitnet.training.fit with the same settings
    config = TrainConfig(hidden=(16,), epochs=3, batch_size=64, lr=1e-3, schedule="constant",
                         validation_fraction=0.0, dtype="float64", dropout=0.2,
                         label_smoothing=0.1, max_norm=1.5)
    net = MLP(X.shape[1], (16,), 10, dtype="float64", seed=0, dropout=0.2)
    from digitnet.engine import make_trainer
    from digitnet.estimator import IDENTITY

    fit(net, X, np.unique(y, return_inverse=True)[1], IDENTITY, config, engine=make_trainer)
    for a, b in zip(clf.network_.get_state(), net.get_state(), strict=True):
        np.testing.assert_array_equal(a, b)
    plain = DigitNetClassifier(hidden_layer_sizes=(16,), max_iter=3, batch_size=64,
                               random_state=0).fit(X, y)
    assert not np.array_equal(plain.network_.dense[0].W, clf.network_.dense[0].W)
    again = DigitNetClassifier(**params).partial_fit(X, y, classes=np.unique(y))
    for layer in again.network_.dense:
        assert (np.linalg.norm(layer.W, axis=0) <= 1.5 + 1e-9).all()
    assert clone(clf).get_params()["dropout"] == 0.2
    with pytest.raises(ValueError, match="dropout must be in"):
        DigitNetClassifier(dropout=1.0).fit(X, y)
