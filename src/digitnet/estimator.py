"""``DigitNetClassifier``: digitnet's network as a scikit-learn estimator.

The estimator is a thin adapter. It validates inputs the scikit-learn way, maps arbitrary
class labels onto the output units ``0 .. K-1`` (``classes_[k]`` is the label of unit
``k``), and hands the work to the project's own code: :class:`digitnet.network.MLP` is the
model, :func:`digitnet.training.fit` trains it in :meth:`DigitNetClassifier.fit`, and
:meth:`DigitNetClassifier.partial_fit` runs one epoch of the same mini-batch step
(:func:`digitnet.training.train_epoch`, which ``fit`` runs too) with the optimizer's
state kept between calls. Both use the fast engine (:mod:`digitnet.engine`) unless
``engine="textbook"``. Models move to and from the command line's ``model.npz`` files
(:mod:`digitnet.model_io`) through :meth:`DigitNetClassifier.save` and
:meth:`DigitNetClassifier.load`.

Inputs are used as they are (no scaling, as in scikit-learn's ``MLPClassifier``): put a
scaler in front in a ``Pipeline``. A model loaded from a file keeps the file's min-max
scaling ``x' = (x - lo) / (hi - lo)`` in :attr:`DigitNetClassifier.scaler_`, so it reads
the same raw inputs as the command line; a freshly fitted estimator's scaler is the
identity ``lo = 0, hi = 1``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import numbers
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from digitnet.config import (
    ACTIVATION_NAMES,
    DEVICES,
    DTYPE_NAMES,
    ENGINES,
    OPTIMIZERS,
    SCHEDULES,
    is_finite_number,
    is_int,
)
from digitnet.data.preprocessing import MinMaxScaler, stratified_split
from digitnet.engine import trainer_factory
from digitnet.layers import log_softmax
from digitnet.model_io import TrainedModel, load_model, save_model
from digitnet.network import DTYPES, MLP
from digitnet.training import (
    AfterStep,
    Diverged,
    TrainConfig,
    fit,
    host_copy,
    on_device,
    train_epoch,
)

IDENTITY = MinMaxScaler(0.0, 1.0)
"""``x' = (x - 0) / (1 - 0) = x``: the scaling of an estimator trained on its inputs as given."""

_INPUT_DTYPES = (np.float64, np.float32)
_PREDICT_BATCH = 4096

# Estimator parameter -> TrainConfig field (the command line's names), both directions.
_PARAM_TO_CONFIG = {
    "hidden_layer_sizes": "hidden",
    "activation": "activation",
    "solver": "optimizer",
    "learning_rate_init": "lr",
    "lr_schedule": "schedule",
    "batch_size": "batch_size",
    "max_iter": "epochs",
    "alpha": "weight_decay",
    "momentum": "momentum",
    "dtype": "dtype",
    "dropout": "dropout",
    "label_smoothing": "label_smoothing",
    "max_norm": "max_norm",
}


class DigitNetClassifier(ClassifierMixin, BaseEstimator):
    """Multi-layer perceptron classifier (digitnet's NumPy network) with scikit-learn's API.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(256, 128)
        Units per hidden layer (at least one layer).
    activation : {"relu", "leaky_relu", "sigmoid", "tanh"}, default="relu"
        Hidden-layer non-linearity; the output layer is always softmax.
    solver : {"adam", "sgd", "momentum", "nesterov"}, default="adam"
        The optimizer (:func:`digitnet.optimizers.make_optimizer`).
    learning_rate_init : float, default=1e-3
        (Peak) learning rate ``η``.
    lr_schedule : {"constant", "step", "cosine", "onecycle"}, default="constant"
        Learning rate over the ``max_iter`` epochs of :meth:`fit`
        (:func:`digitnet.optimizers.learning_rate`); :meth:`partial_fit` always uses
        ``learning_rate_init``.
    batch_size : int, default=128
        Samples per mini-batch (capped at the number of training samples).
    max_iter : int, default=20
        Epochs (passes over the training data) per :meth:`fit`. Training runs all of them
        unless ``early_stopping`` stops it.
    alpha : float, default=0.0
        L2 weight decay ``λ``: adds ``λ·W`` to the gradient of every weight matrix
        (not the biases), i.e. ``(λ/2)·||W||²`` to the loss.
    momentum : float, default=0.9
        Momentum coefficient for ``solver="momentum"`` and ``"nesterov"``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified), keep the
        weights of the epoch with the lowest validation loss, and stop after
        ``n_iter_no_change`` epochs without a lower one.
    validation_fraction : float, default=0.1
        Share of the training data held out when ``early_stopping``.
    n_iter_no_change : int, default=10
        Patience of early stopping, in epochs.
    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialization, the shuffling and the validation split. An int
        gives identical results on every fit (an int ``s`` trains as ``--seed s`` does).
    warm_start : bool, default=False
        When fitted already, :meth:`fit` continues from the current weights instead of
        starting afresh (same classes, features and architecture required).
    dtype : {"float64", "float32"}, default="float64"
        Floating-point type of the weights and computations; float32 is about twice as
        fast (the command line's default), float64 matches scikit-learn's precision.
    verbose : bool, default=False
        Print one line per epoch.
    engine : {"fast", "textbook"}, default="fast"
        How the training step runs (:mod:`digitnet.engine`, or the plain
        :class:`digitnet.training.TextbookTrainer`); the same step either way.
    dropout : float in [0, 1), default=0.0
        Inverted dropout after every hidden layer while training
        (:class:`digitnet.layers.Dropout`); predictions are unchanged by it.
    label_smoothing : float in [0, 1), default=0.0
        Train towards ``(1 - ε)`` one-hot ``+ ε / K`` instead of one-hot targets.
    max_norm : float, default=0.0
        After every step, each unit's incoming weight vector is kept within this norm
        (0: no constraint; :func:`digitnet.regularizers.max_norm`).
    device : {"cpu", "gpu"}, default="cpu"
        Where training runs: NumPy, or the same code on CuPy arrays on a CUDA GPU
        (:mod:`digitnet.devices`; needs ``pip install 'digitnet[gpu]'``). The fitted
        network is kept in NumPy arrays either way, so predictions, pickles and saved models
        do not need a GPU.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels; output unit ``k`` stands for ``classes_[k]``.
    n_features_in_ : int
        Number of input features seen by :meth:`fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when fitted on a data frame with string column names.
    network_ : digitnet.network.MLP
        The trained network.
    scaler_ : digitnet.data.preprocessing.MinMaxScaler
        Scaling applied to inputs before the network (identity unless loaded from a file).
    class_names_ : tuple of str
        Class names written to model files (``str`` of each class label by default).
    loss_curve_ : list of float
        Mean training cross-entropy of each epoch (without the weight-decay term).
    validation_scores_ : list of float or None
        Validation accuracy of each epoch of the last :meth:`fit` when ``early_stopping``.
    best_validation_score_ : float or None
        Validation accuracy of the kept epoch when ``early_stopping``.
    n_iter_ : int
        Epochs run so far (over all :meth:`fit` and :meth:`partial_fit` calls that
        continued the same network).
    """

    # Fitted state (set by fit, partial_fit or from_trained_model; declared for type checkers).
    classes_: NDArray[Any]
    class_names_: tuple[str, ...]
    n_features_in_: int
    network_: MLP
    scaler_: MinMaxScaler
    loss_curve_: list[float]
    validation_scores_: list[float] | None
    best_validation_score_: float | None
    n_iter_: int
    _seed: int
    _optimizer_state: dict[str, Any] | None
    _batch_rng: np.random.Generator
    _origin: dict[str, Any]

    def __init__(
        self,
        hidden_layer_sizes: int | Sequence[int] = (256, 128),
        activation: str = "relu",
        solver: str = "adam",
        learning_rate_init: float = 1e-3,
        lr_schedule: str = "constant",
        batch_size: int = 128,
        max_iter: int = 20,
        alpha: float = 0.0,
        momentum: float = 0.9,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        random_state: int | np.random.RandomState | None = None,
        warm_start: bool = False,
        dtype: str = "float64",
        verbose: bool = False,
        engine: str = "fast",
        dropout: float = 0.0,
        label_smoothing: float = 0.0,
        max_norm: float = 0.0,
        device: str = "cpu",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.lr_schedule = lr_schedule
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.alpha = alpha
        self.momentum = momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.warm_start = warm_start
        self.dtype = dtype
        self.verbose = verbose
        self.engine = engine
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.max_norm = max_norm
        self.device = device

    # ------------------------------------------------------------------ training
    def fit(self, X: Any, y: Any) -> DigitNetClassifier:
        """Train on ``X`` (n_samples, n_features) and labels ``y`` (n_samples,).

        Runs :func:`digitnet.training.fit` for ``max_iter`` epochs (fewer with
        ``early_stopping``). With ``warm_start`` and a fitted network, training continues
        from its weights with a fresh optimizer; otherwise the network starts afresh.
        """
        config = self._train_config(seed=0)
        warm = bool(self.warm_start) and hasattr(self, "network_")
        X, y = validate_data(self, X, y, reset=not warm, dtype=_INPUT_DTYPES)
        check_classification_targets(y)
        classes, y_enc = np.unique(y, return_inverse=True)
        seed = _seed_from(self.random_state)
        config.seed = seed

        if warm:
            if not np.array_equal(classes, self.classes_):
                raise ValueError(
                    f"warm_start needs the classes of the previous fit {self.classes_.tolist()}"
                    f" in y, got {classes.tolist()}"
                )
            self._check_architecture()
            # Train a copy: if this fit fails, the fitted network is left as it was.
            network = _copy_network(self.network_)
            self._origin.pop("info", None)  # its metrics describe the weights before this fit
        else:
            self._start(classes, X.shape[1], seed)
            network = self.network_
        self._seed = seed
        self._optimizer_state = None  # partial_fit after fit starts a fresh optimizer

        x_val = y_val = None
        x_tr, y_tr = X, y_enc
        if self.early_stopping:
            train_idx, val_idx = stratified_split(y_enc, self.validation_fraction, seed)
            if len(val_idx) > 0:
                x_tr, y_tr = X[train_idx], y_enc[train_idx]
                x_val, y_val = X[val_idx], y_enc[val_idx]
        log = print if self.verbose else None
        result = fit(network, x_tr, y_tr, self.scaler_, config, x_val, y_val, log=log,
                     engine=trainer_factory(self.engine))

        if result.interrupted:
            warnings.warn("training interrupted (Ctrl-C): keeping the best weights so far",
                          UserWarning, stacklevel=2)
        if result.diverged is not None:
            kept = (f"keeping epoch {result.best_epoch}'s weights" if result.best_epoch
                    else "the weights are the initial ones")
            warnings.warn(f"{result.diverged}; {kept}: lower learning_rate_init",
                          ConvergenceWarning, stacklevel=2)
        self.network_ = network
        self.loss_curve_ = [*self.loss_curve_, *(r.train_loss for r in result.history)]
        self.n_iter_ += result.epochs_run
        if x_val is not None:
            self.validation_scores_ = [float(r.val_accuracy or 0.0) for r in result.history]
            self.best_validation_score_ = self.validation_scores_[result.best_epoch - 1]
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> DigitNetClassifier:
        """One epoch of mini-batch training on ``X, y``, continuing the current network.

        ``classes`` (every label that will ever occur) is required on the first call, as
        the network's output layer has one unit per class. The optimizer (and Adam's
        moment estimates) carries over from call to call; the learning rate is
        ``learning_rate_init`` throughout.
        """
        config = self._train_config(seed=0)  # validates the hyperparameters
        first = not hasattr(self, "classes_")
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
        elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(
                f"classes={unique_labels(classes).tolist()} differs from the classes of the "
                f"previous calls {self.classes_.tolist()}"
            )
        X, y = validate_data(self, X, y, reset=first, dtype=_INPUT_DTYPES)
        check_classification_targets(y)
        if first:
            seed = _seed_from(self.random_state)
            self._seed = seed
            self._start(unique_labels(classes), X.shape[1], seed)
        else:
            self._origin.pop("info", None)  # its metrics describe the weights before this call
        y_enc = self._encode(y)

        if getattr(self, "_optimizer_state", None) is None:
            # The shuffling stream of digitnet.training.fit: k calls on a fresh estimator
            # visit the samples in the order of fit with max_iter=k.
            self._batch_rng = np.random.default_rng(np.random.SeedSequence([self._seed, 1]))
        before = self.network_.get_state()
        try:
            with on_device(self.network_, config.device):  # and back to the CPU after
                trainer: Any = trainer_factory(self.engine)(
                    self.network_, config, X, y_enc, self.scaler_, self._batch_rng)
                if getattr(self, "_optimizer_state", None) is not None:
                    trainer.load_state_dict(self._optimizer_state)
                with trainer:
                    after = AfterStep(self.network_, config)
                    loss, _, _ = train_epoch(trainer, lambda t: float(self.learning_rate_init),
                                             after_step=after if after else None)
                    state = host_copy(trainer.state_dict())
        except Diverged as error:  # back to the weights (and optimizer) before this call
            self.network_.set_state(before)
            warnings.warn(f"training diverged: {error} (learning rate "
                          f"{self.learning_rate_init:g}); keeping the weights from before this "
                          f"call: lower learning_rate_init", ConvergenceWarning, stacklevel=2)
            return self
        self._optimizer_state = state
        self.loss_curve_.append(loss)
        self.n_iter_ += 1
        if self.verbose:
            print(f"partial_fit epoch {self.n_iter_}  loss {self.loss_curve_[-1]:.4f}")
        return self

    # ---------------------------------------------------------------- prediction
    def predict_proba(self, X: Any) -> NDArray[np.floating]:
        """Class probabilities ``softmax(z)``, shape (n_samples, n_classes), columns in
        the order of ``classes_``."""
        x = self._network_input(X)
        return self.network_.predict_proba(x, _PREDICT_BATCH)

    def predict_log_proba(self, X: Any) -> NDArray[np.floating]:
        """``log softmax(z)``, computed stably from the logits (finite where
        ``log(predict_proba(X))`` would underflow to ``-inf``)."""
        x = self._network_input(X)
        out = np.empty((x.shape[0], self.network_.n_classes), dtype=x.dtype)
        for start in range(0, x.shape[0], _PREDICT_BATCH):
            out[start : start + _PREDICT_BATCH] = log_softmax(
                self.network_.forward(x[start : start + _PREDICT_BATCH])
            )
        return out

    def predict(self, X: Any) -> NDArray[Any]:
        """The most probable class label per sample, shape (n_samples,)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    @property
    def coefs_(self) -> list[NDArray[np.floating]]:
        """Weight matrices ``W_l`` of shape (fan_in, fan_out), layer by layer."""
        return [layer.W for layer in self.network_.dense]

    @property
    def intercepts_(self) -> list[NDArray[np.floating]]:
        """Bias vectors ``b_l`` of shape (fan_out,), layer by layer."""
        return [layer.b for layer in self.network_.dense]

    # ------------------------------------------------------- model files (CLI)
    def to_trained_model(self) -> TrainedModel:
        """The fitted estimator as a :class:`~digitnet.model_io.TrainedModel` (a copy)."""
        check_is_fitted(self)
        origin = getattr(self, "_origin", {})
        n = self.n_features_in_
        side = math.isqrt(n)
        image_shape = origin.get("image_shape") or ((side, side) if side * side == n else (n,))
        info = dict(origin.get("info", {}))
        info["config"] = self._train_config(seed=getattr(self, "_seed", 0)).to_dict()
        info["epochs_run"] = self.n_iter_
        info["estimator"] = {
            "class": type(self).__name__,
            "params": _json_safe(self.get_params()),
            "classes": self.classes_.tolist(),
            "loss_curve": [float(v) for v in self.loss_curve_],
        }
        if hasattr(self, "feature_names_in_"):
            info["estimator"]["feature_names"] = [str(n) for n in self.feature_names_in_]
        return TrainedModel(
            network=_copy_network(self.network_),
            scaler=self.scaler_,
            class_names=tuple(self.class_names_),
            image_shape=tuple(image_shape),
            dataset=origin.get("dataset", "unknown"),
            info=info,
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted estimator as a ``model.npz`` that ``digitnet evaluate`` reads."""
        return save_model(self.to_trained_model(), path)

    @classmethod
    def from_trained_model(cls, model: TrainedModel) -> DigitNetClassifier:
        """A fitted estimator holding a copy of ``model``'s network and scaling.

        Files written by the estimator restore its parameters and class labels exactly.
        Files written by ``digitnet train`` map their training configuration onto the
        parameters, and their classes are the label indices ``0 .. K-1`` that digitnet's
        data sets use (the names stay in ``class_names_``).
        """
        network = model.network
        info = model.info or {}
        saved = info.get("estimator") if isinstance(info.get("estimator"), dict) else None
        params: dict[str, Any] = {}
        if saved is not None:
            valid = cls().get_params()
            params = {k: v for k, v in saved.get("params", {}).items() if k in valid}
        elif isinstance(info.get("config"), dict):
            params = _params_from_config(info["config"])
        params.update(hidden_layer_sizes=tuple(network.hidden), activation=network.activation,
                      dtype=network.dtype)
        est = cls(**params)

        classes = np.arange(network.n_classes)
        if saved is not None and len(saved.get("classes", [])) == network.n_classes:
            classes = np.asarray(saved["classes"])
        est.classes_ = classes
        est.class_names_ = tuple(model.class_names)
        est.n_features_in_ = network.n_inputs
        names = saved.get("feature_names") if saved is not None else None
        if (isinstance(names, list) and len(names) == network.n_inputs
                and all(isinstance(n, str) for n in names)):
            est.feature_names_in_ = np.asarray(names, dtype=object)
        est.network_ = _copy_network(network)
        est.scaler_ = model.scaler
        curve = saved.get("loss_curve", []) if saved is not None else []
        est.loss_curve_ = [float(v) for v in curve]
        est.n_iter_ = int(info.get("epochs_run", len(est.loss_curve_)))
        est.validation_scores_ = None
        est.best_validation_score_ = None
        config = info.get("config")
        est._seed = int(config.get("seed", 0)) if isinstance(config, dict) else 0
        est._optimizer_state = None
        est._origin = {"image_shape": list(model.image_shape), "dataset": model.dataset,
                       "info": {k: v for k, v in info.items() if k != "estimator"}}
        return est

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DigitNetClassifier:
        """Read a ``model.npz`` (from ``digitnet train`` or :meth:`save`) as a fitted estimator."""
        return cls.from_trained_model(load_model(path))

    # ------------------------------------------------------------------ helpers
    def _train_config(self, seed: int) -> TrainConfig:
        """The hyperparameters as a :class:`TrainConfig`, validated (``ValueError`` if bad)."""
        sizes = self.hidden_layer_sizes
        hidden: Any = (sizes,) if isinstance(sizes, numbers.Integral) else sizes
        if not isinstance(hidden, (str, bytes)):
            # Any array-like of ints, as scikit-learn's MLP takes (a list, an array...).
            with contextlib.suppress(TypeError, ValueError):
                hidden = tuple(np.asarray(hidden).reshape(-1).tolist())
        checks = [
            (isinstance(hidden, Sequence) and len(hidden) >= 1
             and all(is_int(h, 1) for h in hidden),
             f"hidden_layer_sizes must be one or more positive ints, got {hidden!r}"),
            (self.activation in ACTIVATION_NAMES,
             f"activation must be one of {', '.join(ACTIVATION_NAMES)}, "
             f"got {self.activation!r}"),
            (self.solver in OPTIMIZERS,
             f"solver must be one of {', '.join(OPTIMIZERS)}, got {self.solver!r}"),
            (self.lr_schedule in SCHEDULES,
             f"lr_schedule must be one of {', '.join(SCHEDULES)}, got {self.lr_schedule!r}"),
            (self.dtype in DTYPE_NAMES,
             f"dtype must be one of {', '.join(DTYPE_NAMES)}, got {self.dtype!r}"),
            (self.engine in ENGINES,
             f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}"),
            (self.device in DEVICES,
             f"device must be one of {', '.join(DEVICES)}, got {self.device!r}"),
            (is_finite_number(self.learning_rate_init) and self.learning_rate_init > 0,
             f"learning_rate_init must be a positive number, got {self.learning_rate_init!r}"),
            (is_int(self.batch_size, 1),
             f"batch_size must be a positive int, got {self.batch_size!r}"),
            (is_int(self.max_iter, 1),
             f"max_iter must be a positive int, got {self.max_iter!r}"),
            (is_finite_number(self.alpha) and self.alpha >= 0,
             f"alpha must be a number >= 0, got {self.alpha!r}"),
            (is_finite_number(self.momentum) and 0 <= self.momentum < 1,
             f"momentum must be in [0, 1), got {self.momentum!r}"),
            (is_finite_number(self.validation_fraction) and 0 < self.validation_fraction < 1,
             f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}"),
            (is_int(self.n_iter_no_change, 1),
             f"n_iter_no_change must be a positive int, got {self.n_iter_no_change!r}"),
            (is_finite_number(self.dropout) and 0 <= self.dropout < 1,
             f"dropout must be in [0, 1), got {self.dropout!r}"),
            (is_finite_number(self.label_smoothing) and 0 <= self.label_smoothing < 1,
             f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}"),
            (is_finite_number(self.max_norm) and self.max_norm >= 0,
             f"max_norm must be a number >= 0, got {self.max_norm!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return TrainConfig(
            hidden=tuple(int(h) for h in hidden), activation=self.activation,
            epochs=int(self.max_iter), batch_size=int(self.batch_size),
            lr=float(self.learning_rate_init), optimizer=self.solver,
            momentum=float(self.momentum), weight_decay=float(self.alpha),
            schedule=self.lr_schedule,
            validation_fraction=float(self.validation_fraction) if self.early_stopping else 0.0,
            patience=int(self.n_iter_no_change) if self.early_stopping else 0,
            seed=seed, dtype=self.dtype, dropout=float(self.dropout),
            label_smoothing=float(self.label_smoothing), max_norm=float(self.max_norm),
            device=self.device,
        )

    def _start(self, classes: NDArray[Any], n_features: int, seed: int) -> None:
        """Fresh fitted state: a new network for ``classes`` and no history."""
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 classes to train, got 1 class "
                f"({classes[0]!r})"
            )
        config = self._train_config(seed)
        self.classes_ = classes
        self.class_names_ = tuple(str(c) for c in classes)
        self.network_ = MLP(n_features, config.hidden, len(classes), config.activation,
                            config.dtype, seed, config.dropout)
        self.scaler_ = IDENTITY
        self.loss_curve_ = []
        self.n_iter_ = 0
        self.validation_scores_ = None
        self.best_validation_score_ = None
        self._optimizer_state = None
        self._origin = {}

    def _check_architecture(self) -> None:
        config = self._train_config(seed=0)
        net = self.network_
        if (net.hidden, net.activation, net.dtype, net.dropout) != (
                config.hidden, config.activation, config.dtype, config.dropout):
            raise ValueError(
                f"warm_start cannot change the network: fitted {net.describe()} "
                f"({net.dtype}), parameters ask for hidden_layer_sizes={config.hidden}, "
                f"activation={config.activation!r}, dtype={config.dtype!r}"
            )

    def _encode(self, y: NDArray[Any]) -> NDArray[np.intp]:
        """Output-unit index of each label; ``ValueError`` for labels not in ``classes_``."""
        idx = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
        unknown = self.classes_[idx] != y
        if np.any(unknown):
            raise ValueError(
                f"y contains labels that are not in classes_ {self.classes_.tolist()}: "
                f"{np.unique(np.asarray(y)[unknown]).tolist()}"
            )
        return idx.astype(np.intp)

    def _network_input(self, X: Any) -> NDArray[np.floating]:
        """Validated ``X`` scaled by ``scaler_`` into the network's dtype."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=_INPUT_DTYPES)
        return self.scaler_.transform(X, DTYPES[self.network_.dtype])


def _seed_from(random_state: Any) -> int:
    """A seed int from ``random_state``: the int itself, else one drawn from the generator."""
    rng = check_random_state(random_state)  # validates ints too
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return int(rng.randint(np.iinfo(np.int32).max))


def _copy_network(network: MLP) -> MLP:
    """An independent copy of ``network``."""
    return copy.deepcopy(network)


def _json_safe(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with tuples as lists and anything JSON cannot hold (a RandomState) as None."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, np.generic):
            value = value.item()
        try:
            json.dumps(value)
        except TypeError:
            value = None
        out[key] = value
    return out


def _params_from_config(config: dict[str, Any]) -> dict[str, Any]:
    """Estimator parameters from a saved :class:`TrainConfig` dictionary (``digitnet train``)."""
    params = {p: config[c] for p, c in _PARAM_TO_CONFIG.items() if c in config}
    patience = config.get("patience", 0)
    fraction = config.get("validation_fraction", 0.0)
    if patience and 0 < fraction < 1:
        params.update(early_stopping=True, n_iter_no_change=patience,
                      validation_fraction=fraction)
    if "seed" in config:
        params["random_state"] = config["seed"]
    return params
