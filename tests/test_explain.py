"""Saliency maps against finite differences; hidden activations; the CLI and the API."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from digitnet.explain import explain, forward_with_activations, saliency
from digitnet.network import MLP


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_saliency_is_the_gradient_of_the_logit(activation: str) -> None:
    net = MLP(12, (9, 7), 4, activation=activation, dtype="float64", seed=3)
    x = np.random.default_rng(0).random((2, 12))
    h = 1e-6
    for cls in range(4):
        analytic = saliency(net, x.copy(), cls)
        numeric = np.empty_like(x)
        for j in range(12):
            up, down = x.copy(), x.copy()
            up[:, j] += h
            down[:, j] -= h
            numeric[:, j] = (net.forward(up)[:, cls] - net.forward(down)[:, cls]) / (2 * h)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)
    assert not net.dense[0].needs_input_grad  # training's shortcut is back in place


def test_an_explanation_names_the_answer_and_the_runner_up() -> None:
    net = MLP(16, (8,), 3, dtype="float64", seed=1)
    x = np.random.default_rng(2).random(16)
    weights = net.get_state()
    e = explain(net, x, (4, 4), input_scale=2.0)
    proba = net.predict_proba(x[None])[0]
    assert e.predicted == proba.argmax() and e.runner_up == np.argsort(proba)[-2]
    np.testing.assert_allclose(e.saliency.ravel(), 2.0 * saliency(net, x[None], e.predicted)[0])
    assert e.saliency.shape == (4, 4) and len(e.hidden) == 1 and e.hidden[0].shape == (8,)
    _, hidden = forward_with_activations(net, x[None])
    np.testing.assert_array_equal(e.hidden[0], hidden[0][0])
    for a, b in zip(net.get_state(), weights, strict=True):
        np.testing.assert_array_equal(a, b)  # explaining changes no weight


def _drawing(path: Any) -> Any:
    from PIL import Image, ImageDraw

    image = Image.new("L", (120, 120), 255)
    ImageDraw.Draw(image).line([(20, 20), (100, 20), (50, 110)], fill=0, width=10)
    image.save(path)
    return path


def test_predict_explain_writes_a_picture_beside_the_image(
    model_path: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from PIL import Image

    from digitnet.cli import main

    image = _drawing(tmp_path / "seven.png")
    assert main(["predict", "--model", str(model_path), "--explain", str(image)]) == 0
    picture = tmp_path / "seven.png.explain.png"
    assert f"explanation: {picture}" in capsys.readouterr().out
    with Image.open(picture) as png:
        assert png.format == "PNG" and png.size[0] > png.size[1] > 200
    assert main(["predict", "--model", str(model_path), "--explain", "--json",
                 str(image)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["explanation"] == str(picture)


def test_the_api_explains_on_request(model: Any) -> None:
    pytest.importorskip("httpx")
    import warnings

    import numpy as np

    with warnings.catch_warnings():  # as in test_server: Starlette would rather have httpx2
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from starlette.testclient import TestClient

    from digitnet.predict import predict_preprocessed
    from digitnet.web import create_app

    client = TestClient(create_app(model))
    h, w = model.image_shape
    pixels = np.zeros((h, w))
    pixels[h // 4 : 3 * h // 4, w // 2] = 255
    plain = client.post("/api/predict", json={"pixels": pixels.ravel().tolist()}).json()
    assert "explanation" not in plain
    body = client.post("/api/predict", json={"pixels": pixels.ravel().tolist(),
                                             "explain": True}).json()
    e = body["explanation"]
    assert e["predicted"] == body["prediction"] and e["runner_up"] != e["predicted"]
    assert np.array(e["saliency"]).shape == (h, w)
    assert len(e["hidden"]) == len(model.network.hidden)
    pred = predict_preprocessed(model, pixels / 255, "pixels")
    expected = saliency(model.network, pred.network_input.reshape(1, -1).astype(np.float64),
                        pred.index)[0].reshape(h, w)
    np.testing.assert_allclose(e["saliency"], expected, atol=2e-6, rtol=1e-4)
    bad = client.post("/api/predict", json={"pixels": pixels.ravel().tolist(),
                                            "explain": "yes"})
    assert bad.status_code == 400 and "'explain' must be true or false" in bad.json()["error"]
