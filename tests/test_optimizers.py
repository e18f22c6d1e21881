"""Optimizer updates against their textbook formulas, weight decay, and learning-rate schedules.

Every formula test runs for the textbook optimizers (digitnet.optimizers) and for the fast
engine's regrouped ones (digitnet.engine.optimizers): both must give the same updates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from digitnet import optimizers as textbook
from digitnet.engine import optimizers as fast
from digitnet.engine.optimizers import Adam
from digitnet.optimizers import learning_rate

both = pytest.mark.parametrize("opt", [textbook, fast], ids=["textbook", "fast"])


def _decay_first(opt, params, grads):  # type: ignore[no-untyped-def]
    """Keyword arguments that put weight decay on ``params[0]`` only, in ``opt``'s terms."""
    if opt is textbook:
        return {"decayed": [True] + [False] * (len(params) - 1)}
    return {"decay_pairs": [(params[0], grads[0])]}


def _problem(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=(3, 2)), rng.normal(size=2)]
    grads = [np.zeros_like(p) for p in params]
    return params, grads


def _gradient_sequence(n: int, seed: int = 1) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.normal(size=(3, 2)), rng.normal(size=2)] for _ in range(n)]


def _run(opt_params, opt_grads, optimizer, sequence) -> None:  # type: ignore[no-untyped-def]
    for step_grads in sequence:
        for g, new in zip(opt_grads, step_grads, strict=True):
            g[...] = new
        optimizer.step()


@both
def test_plain_sgd_step(opt) -> None:
    params, grads = _problem()
    before = [p.copy() for p in params]
    optimizer = opt.SGD(params, grads, lr=0.5)
    sequence = _gradient_sequence(3)
    _run(params, grads, optimizer, sequence)
    for i in range(2):
        expected = before[i] - 0.5 * sum(s[i] for s in sequence)
        np.testing.assert_allclose(params[i], expected, rtol=1e-12)
    assert optimizer.t == 3


@pytest.mark.parametrize("nesterov", [False, True])
@both
def test_momentum_matches_formula(opt, nesterov: bool) -> None:
    params, grads = _problem()
    reference = [p.copy() for p in params]
    velocity = [np.zeros_like(p) for p in params]
    lr, mu = 0.1, 0.9
    optimizer = opt.SGD(params, grads, lr=lr, momentum=mu, nesterov=nesterov)
    sequence = _gradient_sequence(5)
    for step_grads in sequence:
        for i, g in enumerate(step_grads):
            velocity[i] = mu * velocity[i] + g
            reference[i] = reference[i] - lr * ((g + mu * velocity[i]) if nesterov else velocity[i])
    _run(params, grads, optimizer, sequence)
    for p, r in zip(params, reference, strict=True):
        np.testing.assert_allclose(p, r, rtol=1e-12)


@both
def test_adam_matches_textbook_update(opt) -> None:
    params, grads = _problem()
    reference = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    optimizer = opt.Adam(params, grads, lr=lr, beta1=b1, beta2=b2, eps=eps)
    sequence = _gradient_sequence(6)
    for t, step_grads in enumerate(sequence, start=1):
        for i, g in enumerate(step_grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            reference[i] = reference[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    _run(params, grads, optimizer, sequence)
    for p, r in zip(params, reference, strict=True):
        np.testing.assert_allclose(p, r, rtol=1e-10)


@both
def test_adam_first_step_moves_every_weight_by_about_lr(opt) -> None:
    params, grads = _problem()
    before = [p.copy() for p in params]
    optimizer = opt.Adam(params, grads, lr=1e-3)
    _run(params, grads, optimizer, _gradient_sequence(1))
    for p, b in zip(params, before, strict=True):
        np.testing.assert_allclose(np.abs(p - b), 1e-3, rtol=1e-4)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam"])
@both
def test_weight_decay_shrinks_weights_but_not_biases(opt, name: str) -> None:
    params, grads = _problem()
    W0, b0 = params[0].copy(), params[1].copy()
    optimizer = opt.make_optimizer(name, params, grads, lr=0.1, weight_decay=0.5,
                                   **_decay_first(opt, params, grads))
    for _ in range(5):
        for g in grads:
            g[...] = 0.0  # no data gradient: only the L2 penalty acts
        optimizer.step()
    np.testing.assert_array_equal(params[1], b0)
    assert np.linalg.norm(params[0]) < 0.9 * np.linalg.norm(W0)
    if name != "adam":  # Adam's normalized steps may overshoot 0 for tiny weights
        # Gradient descent on (λ/2)||W||² pulls every weight toward 0 without flipping it.
        assert np.all(np.sign(params[0]) == np.sign(W0))
        assert np.all(np.abs(params[0]) < np.abs(W0))


@both
def test_weight_decay_adds_lambda_w_to_the_gradient(opt) -> None:
    params, grads = _problem()
    W0, b0 = params[0].copy(), params[1].copy()
    g = _gradient_sequence(1)[0]
    optimizer = opt.SGD(params, grads, lr=0.2, weight_decay=0.3,
                        **_decay_first(opt, params, grads))
    _run(params, grads, optimizer, [g])
    np.testing.assert_allclose(params[0], W0 - 0.2 * (g[0] + 0.3 * W0), rtol=1e-12)
    np.testing.assert_allclose(params[1], b0 - 0.2 * g[1], rtol=1e-12)


@both
def test_step_lr_overrides_base_rate(opt) -> None:
    params, grads = _problem()
    before = params[0].copy()
    optimizer = opt.SGD(params, grads, lr=1.0)
    grads[0][...] = 1.0
    optimizer.step(lr=0.25)
    np.testing.assert_allclose(params[0], before - 0.25)


@both
def test_make_optimizer_builds_the_named_kind(opt) -> None:
    params, grads = _problem()
    sgd = opt.make_optimizer("sgd", params, grads, 0.1)
    assert isinstance(sgd, opt.SGD) and sgd.momentum == 0.0
    mom = opt.make_optimizer("momentum", params, grads, 0.1, momentum=0.8)
    assert isinstance(mom, opt.SGD) and mom.momentum == 0.8 and not mom.nesterov
    nag = opt.make_optimizer("nesterov", params, grads, 0.1)
    assert isinstance(nag, opt.SGD) and nag.nesterov and nag.momentum == 0.9
    assert isinstance(opt.make_optimizer("adam", params, grads, 0.1), opt.Adam)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda opt, p, g: opt.make_optimizer("rmsprop", p, g, 0.1), "'rmsprop'"),
        (lambda opt, p, g: opt.SGD(p, g, lr=0.0), "learning rate must be positive"),
        (lambda opt, p, g: opt.SGD(p, g, lr=0.1, weight_decay=-1.0), "weight decay"),
        (lambda opt, p, g: opt.SGD(p, g, lr=0.1, momentum=1.0), "momentum"),
    ],
)
@both
def test_optimizer_rejects_bad_settings(opt, build, match: str) -> None:  # type: ignore[no-untyped-def]
    params, grads = _problem()
    with pytest.raises(ValueError, match=match):
        build(opt, params, grads)


# ------------------------------------------------------------------------- schedules

TOTAL = 300


def _lrs(schedule: str, base: float = 0.1, warmup: int = 0) -> np.ndarray:
    return np.array([learning_rate(schedule, base, s, TOTAL, warmup) for s in range(TOTAL)])


def test_constant_schedule() -> None:
    np.testing.assert_array_equal(_lrs("constant"), 0.1)


def test_step_schedule_divides_by_ten_each_third() -> None:
    lrs = _lrs("step")
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[TOTAL // 3 - 1] == pytest.approx(0.1)
    assert lrs[TOTAL // 3] == pytest.approx(0.01)
    assert lrs[2 * TOTAL // 3] == pytest.approx(0.001)
    assert lrs[-1] == pytest.approx(0.001)
    assert np.all(np.diff(lrs) <= 0)


def test_cosine_schedule_with_warmup() -> None:
    warmup = 30
    lrs = _lrs("cosine", warmup=warmup)
    assert lrs[0] == pytest.approx(0.1 / warmup)
    np.testing.assert_allclose(lrs[:warmup], 0.1 * np.arange(1, warmup + 1) / warmup)
    assert lrs[warmup] == pytest.approx(0.1)
    mid = warmup + (TOTAL - warmup) // 2
    assert lrs[mid] == pytest.approx(0.05)
    assert lrs[-1] < 1e-5
    assert learning_rate("cosine", 0.1, TOTAL, TOTAL, warmup) == pytest.approx(0.0, abs=1e-15)
    assert np.all(np.diff(lrs[warmup:]) <= 0)


def test_cosine_without_warmup_starts_at_base() -> None:
    lrs = _lrs("cosine")
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[TOTAL // 2] == pytest.approx(0.05)


def test_onecycle_schedule_start_peak_end() -> None:
    base = 2e-3
    lrs = _lrs("onecycle", base)
    peak_step = int(0.3 * TOTAL)
    assert lrs[0] == pytest.approx(base / 25)
    assert lrs[peak_step] == pytest.approx(base)
    assert lrs.max() == pytest.approx(base)
    assert int(lrs.argmax()) == peak_step
    assert np.all(np.diff(lrs[: peak_step + 1]) > 0)
    assert np.all(np.diff(lrs[peak_step:]) < 0)
    assert learning_rate("onecycle", base, TOTAL, TOTAL) == pytest.approx(base / 1e4)
    assert lrs[-1] < base / 1000
    # Halfway through the annealing the rate is halfway between peak and floor.
    half = peak_step + (TOTAL - peak_step) // 2
    assert lrs[half] == pytest.approx(base / 1e4 + (base - base / 1e4) / 2, rel=1e-9)


def test_schedules_never_exceed_the_base_rate_or_go_negative() -> None:
    for schedule in ("constant", "step", "cosine", "onecycle"):
        lrs = _lrs(schedule, 0.5, warmup=10)
        assert np.all(lrs > 0)
        assert lrs.max() <= 0.5 + 1e-15
        assert all(math.isfinite(v) for v in lrs)


def test_unknown_schedule_is_rejected() -> None:
    with pytest.raises(ValueError, match="'linear'"):
        learning_rate("linear", 0.1, 0, 10)


@pytest.mark.parametrize("name", ["adam", "momentum"])
def test_state_of_idle_coordinates_never_becomes_subnormal(name: str) -> None:
    # Coordinate 0 gets one gradient, then none: its moment decays geometrically and, left
    # alone, would become a subnormal float32 (slow on CPUs) after a few hundred steps.
    p = np.zeros(4, dtype=np.float32)
    g = np.zeros(4, dtype=np.float32)
    opt = fast.make_optimizer(name, [p], [g], lr=1e-3)
    g[:] = [1e-3, 0, 1e-3, 0]
    opt.step()
    g[:] = [0, 0, 1e-3, 0]
    tiny = np.finfo(np.float32).tiny
    for _ in range(3000):
        opt.step()
        for state in opt.state_arrays():
            assert not np.any((state != 0) & (np.abs(state) < tiny))
    momentum = opt.state_arrays()[0]  # Adam: first moment; SGD: velocity
    assert momentum[0] == 0  # decayed past 1e-30 (0.9**3000), flushed to exactly zero
    assert momentum[2] != 0  # an active coordinate keeps its state


def test_flush_leaves_values_that_matter() -> None:
    p = np.zeros(3, dtype=np.float32)
    g = np.ones(3, dtype=np.float32)
    opt = Adam([p], [g], lr=1e-3)
    opt.step()
    before = [s.copy() for s in opt.state_arrays()]
    opt.flush_tiny_state()
    assert all(np.array_equal(a, b) for a, b in zip(before, opt.state_arrays(), strict=True))
