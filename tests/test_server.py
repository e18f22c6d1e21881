"""The web application of ``digitnet serve``: page, JSON API, limits and errors."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("httpx", reason="httpx (test extra) is needed for Starlette's TestClient")
with warnings.catch_warnings():  # Starlette >= 1.x would rather have httpx2; httpx still works
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient


from helpers import digitnet_command, port_of, served, stop_with_ctrl_c

from digitnet.model_io import TrainedModel
from digitnet.predict import predict_bytes, predict_image, to_model_input
from digitnet.web import create_app
from digitnet.web.app import STATIC_DIR


@pytest.fixture
def client(model: TrainedModel) -> TestClient:
    return TestClient(create_app(model, max_body_bytes=100_000))


def png_bytes(points: list[tuple[int, int]], size: int = 280,
              paper: tuple[int, int, int, int] = (0, 0, 0, 0), fmt: str = "PNG") -> bytes:
    """Black strokes on a transparent canvas (or on ``paper``), encoded as ``fmt``."""
    image = Image.new("RGBA", (size, size), paper)
    if points:
        ImageDraw.Draw(image).line(points, fill=(0, 0, 0, 255), width=20, joint="curve")
    buffer = io.BytesIO()
    (image if fmt == "PNG" else image.convert("RGB")).save(buffer, format=fmt)
    return buffer.getvalue()


def data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


SEVEN = [(70, 50), (210, 50), (110, 240)]


# ------------------------------------------------------------------------------- page


def test_page_and_its_files_are_served_locally(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for ref in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert ref.startswith("/static/"), ref  # nothing from other sites
        assert client.get(ref).status_code == 200
    assert 'id="pad"' in page.text and 'id="preview"' in page.text and 'id="clear"' in page.text


def test_static_files_reference_no_other_site() -> None:
    for path in STATIC_DIR.iterdir():
        if path.suffix in (".html", ".js", ".css"):
            text = path.read_text()
            assert not re.search(r"https?://|//cdn|@import", text), path.name


def test_health(client: TestClient) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_model_description(client: TestClient, model: TrainedModel) -> None:
    info = client.get("/api/model").json()
    assert info["architecture"] == model.network.describe()
    assert info["test_accuracy"] == pytest.approx(model.info["test_accuracy"])
    assert info["class_names"] == list(model.class_names)
    assert info["input_shape"] == list(model.image_shape)
    assert info["n_parameters"] == model.network.n_parameters


# ------------------------------------------------------------------------ predictions


def test_predict_a_png_data_url(client: TestClient, model: TrainedModel) -> None:
    png = png_bytes(SEVEN)
    response = client.post("/api/predict", json={"image": data_url(png)})
    assert response.status_code == 200
    body = response.json()
    expected = predict_bytes(model, png)  # the same pipeline as `digitnet predict`
    np.testing.assert_allclose(body["probabilities"], expected.probabilities, rtol=1e-6)
    assert body["prediction"] == expected.name == body["class_names"][body["index"]]
    assert body["probability"] == max(body["probabilities"])
    assert sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    h, w = model.image_shape
    assert body["input"]["shape"] == [h, w] and len(body["input"]["pixels"]) == h * w
    assert body["input"]["pixels"] == expected.input_pixels().ravel().tolist()
    assert body["polarity"] == "dark-on-light"


def test_predict_a_jpeg_data_url(client: TestClient) -> None:
    jpeg = png_bytes(SEVEN, paper=(255, 255, 255, 255), fmt="JPEG")
    response = client.post("/api/predict", json={"image": data_url(jpeg, "image/jpeg")})
    assert response.status_code == 200
    assert response.json()["polarity"] == "dark-on-light"


def test_predict_pixels_as_the_network_input(client: TestClient, model: TrainedModel) -> None:
    h, w = model.image_shape
    rng = np.random.default_rng(0)
    pixels = np.zeros((h, w))
    pixels[h // 4 : 3 * h // 4, w // 2 - 1 : w // 2 + 1] = 255
    pixels[:2, :2] = rng.integers(0, 256, (2, 2))
    flat = client.post("/api/predict", json={"pixels": pixels.ravel().tolist()}).json()
    rows = client.post("/api/predict", json={"pixels": pixels.tolist()}).json()
    direct = model.predict_proba(to_model_input(pixels / 255, model))[0]
    np.testing.assert_allclose(flat["probabilities"], direct, rtol=1e-6)
    assert rows["probabilities"] == flat["probabilities"]
    assert flat["input"]["pixels"] == pixels.astype(np.uint8).ravel().tolist()


def test_predict_pixels_with_preprocessing(client: TestClient, model: TrainedModel) -> None:
    drawing = np.zeros((60, 40))
    drawing[5:50, 30:34] = 255  # an off-centre bar
    body = client.post("/api/predict", json={"pixels": drawing.tolist(), "preprocess": True})
    assert body.status_code == 200
    expected = predict_image(model, drawing / 255)
    np.testing.assert_allclose(body.json()["probabilities"], expected.probabilities, rtol=1e-6)


@pytest.mark.mnist
def test_mnist_digit_as_pixels_is_classified_as_by_the_model(client, model, mnist) -> None:
    if model.dataset != "mnist":
        pytest.skip("the session's model is not an MNIST model")
    digit = mnist.x_test[0]
    body = client.post("/api/predict", json={"pixels": digit.tolist()}).json()
    assert body["index"] == int(model.predict(digit[None])[0])


# ----------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(("payload", "status", "message"), [
    ([1, 2, 3], 400, "JSON object"),
    ({}, 400, "exactly one of"),
    ({"image": "x", "pixels": [1]}, 400, "exactly one of"),
    ({"image": "x", "colour": "red"}, 400, "unknown field"),
    ({"image": 42}, 400, "data URL"),
    ({"image": "http://example.com/seven.png"}, 400, "data URL"),
    ({"image": "data:text/plain;base64,aGVsbG8="}, 400, "data URL"),
    ({"image": "data:image/png;base64,not base64!!"}, 400, "base64"),
    ({"image": data_url(b"GIF89a but not really")}, 422, "corrupt|truncated|not a"),
    ({"image": data_url(b"plain text")}, 422, "not a PNG, JPEG, BMP or GIF"),
    ({"image": data_url(b"")}, 422, "empty"),
    ({"pixels": [1, 2, 3]}, 400, "must hold"),
    ({"pixels": []}, 400, "non-empty"),
    ({"pixels": "0,0,0"}, 400, "list of numbers"),
    ({"pixels": ["a"] * 784}, 400, "numbers"),
    ({"pixels": [[1, 2], [3]]}, 400, "rows of equal length"),
    ({"pixels": [[[0]]]}, 400, "flat or 2-D"),
    ({"pixels": [300] * 784}, 400, "0-255"),
    ({"pixels": [-1] * 784}, 400, "0-255"),
    ({"pixels": [0] * 784, "preprocess": "yes"}, 400, "true or false"),
    ({"pixels": [0] * 784, "preprocess": True}, 400, "rows"),
    ({"pixels": [[0] * 20] * 20, "preprocess": True}, 422, "blank"),
])
def test_malformed_requests_get_4xx_json(client, payload, status, message) -> None:
    response = client.post("/api/predict", json=payload)
    assert response.status_code == status
    assert re.search(message, response.json()["error"])


def test_blank_canvas_is_422(client: TestClient) -> None:
    response = client.post("/api/predict", json={"image": data_url(png_bytes([]))})
    assert response.status_code == 422 and "blank" in response.json()["error"]


def test_body_that_is_not_json(client: TestClient) -> None:
    for body in (b"not json", b"\xff\xfe\x00", b""):
        response = client.post("/api/predict", content=body,
                               headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert response.json() == {"error": "the request body is not valid JSON"}


def test_oversized_request_is_413(client: TestClient) -> None:
    big = {"image": "data:image/png;base64," + "A" * 200_000}
    response = client.post("/api/predict", json=big)
    assert response.status_code == 413 and "limit of 100000 bytes" in response.json()["error"]


def test_oversized_streamed_request_is_413(client: TestClient) -> None:
    def chunks():  # no Content-Length: the limit must hold while reading
        for _ in range(30):
            yield b"x" * 10_000

    response = client.post("/api/predict", content=chunks())
    assert response.status_code == 413 and "error" in response.json()


def test_wrong_method_and_unknown_path_are_json(client: TestClient) -> None:
    response = client.get("/api/predict")
    assert response.status_code == 405 and "error" in response.json()
    response = client.get("/api/nothing")
    assert response.status_code == 404 and "error" in response.json()


def test_internal_errors_are_500_json_and_the_server_keeps_going(model, monkeypatch) -> None:
    from digitnet.web import service

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(service, "preprocess_bytes", broken)
    client = TestClient(create_app(model), raise_server_exceptions=False)
    response = client.post("/api/predict", json={"image": data_url(png_bytes(SEVEN))})
    assert response.status_code == 500 and response.json() == {"error": "internal server error"}
    assert client.get("/api/health").json() == {"status": "ok"}


def test_unknown_host_header_is_refused(model: TrainedModel) -> None:
    client = TestClient(create_app(model, allowed_hosts=["127.0.0.1"]),
                        base_url="http://127.0.0.1")
    assert client.get("/api/health").status_code == 200
    refused = client.get("/api/health", headers={"host": "attacker.example"})
    assert refused.status_code == 400 and "not accepted" in refused.json()["error"]
    for host in ("127.0.0.1:8000", "127.0.0.1"):
        assert client.get("/api/health", headers={"host": host}).status_code == 200
    assert client.get("/api/health", headers={"host": "127.0.0.1.evil:80"}).status_code == 400


@pytest.mark.parametrize("body", [
    b'{"pixels": [' + b"1" * 5000 + b"]}",  # an integer of 5,000 digits
    b'{"pixels": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # nested 100,000 deep
    b'{"pixels": [' + b"1" + b"0" * 400 + b"]}",  # 1e400: overflows a float
])
def test_pathological_json_is_a_4xx_not_a_500(body: bytes, model: TrainedModel) -> None:
    client = TestClient(create_app(model, max_body_bytes=1_000_000))
    response = client.post("/api/predict", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert "error" in response.json()


def test_a_large_image_is_refused_before_decoding(client: TestClient) -> None:
    """A small PNG claiming 7000x7000 pixels (the server's budget is 2 megapixels)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (7000, 7000), 0).save(buffer, format="PNG", optimize=True)
    assert len(buffer.getvalue()) < 100_000  # compresses to almost nothing
    response = client.post("/api/predict", json={"image": data_url(buffer.getvalue())})
    assert response.status_code == 422
    assert "7000x7000 pixels, over the limit of 2,000,000" in response.json()["error"]


def test_predictions_run_a_few_at_a_time(model: TrainedModel,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from digitnet.web.service import PredictionService

    running, most = [0], [0]
    lock = threading.Lock()
    original = PredictionService.predict_payload

    def slow(self: Any, payload: Any) -> Any:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        try:
            return original(self, payload)
        finally:
            with lock:
                running[0] -= 1

    import httpx

    monkeypatch.setattr(PredictionService, "predict_payload", slow)
    app = create_app(model, max_concurrent=2)
    digit = {"pixels": [0] * model.network.n_inputs}

    async def sixteen_at_once() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            answers = await asyncio.gather(*(http.post("/api/predict", json=digit)
                                             for _ in range(16)))
        return [a.status_code for a in answers]

    assert asyncio.run(sixteen_at_once()) == [200] * 16 and most[0] == 2


# ------------------------------------------------------------------- digitnet serve


def test_serve_command_answers_and_stops_on_ctrl_c(model_path: Path) -> None:
    import httpx

    with served("serve", "--model", str(model_path), "--port", "0") as (process, url):
        assert httpx.get(url + "api/health", timeout=10).json() == {"status": "ok"}
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200 and "<canvas" in page.text
        err = stop_with_ctrl_c(process)
    assert process.returncode == 0
    assert "stopped" in err and "Traceback" not in err


def test_serve_on_a_busy_port_is_a_one_line_error(model_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        process = digitnet_command("serve", "--model", str(model_path), "--port", str(port))
        _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert err.strip().startswith(f"digitnet serve: error: cannot listen on 127.0.0.1:{port}")
    assert len(err.strip().splitlines()) == 1


def test_serve_defaults_to_loopback() -> None:
    from digitnet.cli import build_parser

    args = build_parser().parse_args(["serve", "--model", "m.npz"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)


# ------------------------------------------------------- slow, idle and many clients
def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (recv gives b"")."""
    sock.settimeout(seconds)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_slow_and_idle_clients_are_cut_off(model_path: Path) -> None:
    import httpx

    with served("serve", "--model", str(model_path), "--port", "0",
                "--request-timeout", "1") as (process, url):
        port = port_of(url)
        idle = socket.create_connection(("127.0.0.1", port))
        slow_headers = socket.create_connection(("127.0.0.1", port))
        slow_headers.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never ends
        slow_body = socket.create_connection(("127.0.0.1", port))
        slow_body.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        for sock in (idle, slow_headers, slow_body):
            assert _closed_within(sock, 5.0)
            sock.close()
        # Meanwhile and after, ordinary requests are answered.
        assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=10).status_code == 200
        err = stop_with_ctrl_c(process)
    assert "Traceback" not in err


@pytest.mark.slow
def test_hundreds_of_idle_connections_do_not_stop_the_server(model_path: Path) -> None:
    """With 128 file descriptors, 300 idle connections: the server drops them after the
    request timeout and answers again."""
    import resource

    import httpx

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    idle: list[socket.socket] = []
    with served("serve", "--model", str(model_path), "--port", "0", "--request-timeout", "1",
                preexec_fn=few_descriptors) as (process, url):
        port = port_of(url)
        for _ in range(300):
            try:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
        deadline = time.monotonic() + 20
        answered = False
        while time.monotonic() < deadline and not answered:
            try:
                answered = httpx.get(f"http://127.0.0.1:{port}/api/health",
                                     timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.5)
        assert answered
        for sock in idle:
            sock.close()
        err = stop_with_ctrl_c(process)
    assert "Traceback" not in err


def test_requests_beyond_the_limit_get_a_json_503(model: TrainedModel) -> None:
    import httpx

    from digitnet.web.server import RequestLimit

    gate = asyncio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = RequestLimit(slow_app, 2)

    async def five() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            tasks = [asyncio.create_task(http.get("/")) for _ in range(5)]
            await asyncio.sleep(0.2)
            gate.set()
            return await asyncio.gather(*tasks)

    answers = asyncio.run(five())
    assert sorted(a.status_code for a in answers) == [200, 200, 503, 503, 503]
    busy = next(a for a in answers if a.status_code == 503)
    assert "busy" in busy.json()["error"] and busy.headers["retry-after"] == "1"


def test_a_request_that_is_not_http_gets_a_json_400(model_path: Path) -> None:
    with served("serve", "--model", str(model_path), "--port", "0") as (process, url):
        port = port_of(url)
        for garbage in (b"HELLO THERE\r\n\r\n",
                        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n",
                        # headers that never end, over the 16 kB limit:
                        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 40_000):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(garbage)
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
            assert "not a valid HTTP request" in json.loads(body)["error"]
        err = stop_with_ctrl_c(process)
    assert "Traceback" not in err


# ---------------------------------------------------------------------- inside view

@pytest.fixture
def model_test_set(model: TrainedModel, request: pytest.FixtureRequest) -> Any:
    """The data set the ``model`` fixture was trained on."""
    from digitnet.data import load_dataset

    if model.dataset == "mnist":
        return request.getfixturevalue("mnist")
    return load_dataset(model.dataset)


@pytest.fixture
def inside_client(model: TrainedModel, model_test_set: Any) -> TestClient:
    return TestClient(create_app(model, test_set=model_test_set))


def _seven_pixels(model: TrainedModel) -> list[int]:
    pred = predict_bytes(model, png_bytes(SEVEN, paper=(255, 255, 255, 255)))
    return [int(v) for v in pred.input_pixels().ravel()]


def test_inspect_without_edits_answers_as_predict(inside_client: TestClient,
                                                  model: TrainedModel) -> None:
    drawing = {"image": data_url(png_bytes(SEVEN))}
    plain = inside_client.post("/api/predict", json=drawing).json()
    inside = inside_client.post("/api/inspect", json={**drawing, "unit": [0, 1]}).json()
    assert inside["prediction"] == plain["prediction"] and "unedited" not in inside
    np.testing.assert_allclose(inside["probabilities"], plain["probabilities"], atol=1e-6)
    assert inside["input"] == plain["input"]
    hidden = inside["explanation"]["hidden"]
    assert [len(h) for h in hidden] == list(model.network.hidden)
    assert inside["unit"]["layer"] == 0 and inside["unit"]["unit"] == 1
    assert inside["unit"]["output"] == pytest.approx(hidden[0][1], abs=1e-5)
    assert inside["softmax"]["probabilities"] == pytest.approx(inside["probabilities"])


def test_switching_off_units_changes_the_answer_as_the_library_says(
        inside_client: TestClient, model: TrainedModel) -> None:
    from digitnet.inside import decisive_units

    pixels = _seven_pixels(model)
    x = model.scaler.transform(to_model_input(np.array(pixels).reshape(
        model.image_shape) / 255, model))
    before = inside_client.post("/api/inspect", json={"pixels": pixels}).json()
    found = decisive_units(model.network, x[0])
    assert found is not None, "switching off every unit of the last layer keeps the answer"
    edits, expected = found
    layer = len(model.network.hidden) - 1
    after = inside_client.post("/api/inspect", json={
        "pixels": pixels, "edits": edits.to_json()}).json()
    assert after["index"] == int(expected.argmax()) != before["index"]
    np.testing.assert_allclose(after["probabilities"], expected, atol=1e-6)
    assert after["unedited"]["prediction"] == before["prediction"]
    assert all(after["explanation"]["hidden"][layer][j] == 0 for _, j in edits.off)


def test_scores_of_edited_networks(inside_client: TestClient, model: TrainedModel,
                                   model_test_set: Any) -> None:
    from sklearn.metrics import accuracy_score

    plain = inside_client.post("/api/scores", json={}).json()
    assert plain["edited"] == plain["original"]
    assert plain["original"]["accuracy"] == pytest.approx(accuracy_score(
        model_test_set.y_test, model.predict(model_test_set.x_test)))
    pruned = inside_client.post("/api/scores", json={"edits": {"prune": 0.95}}).json()
    assert pruned["original"] == plain["original"]
    assert pruned["edited"]["accuracy"] < plain["original"]["accuracy"]
    hot = inside_client.post("/api/scores", json={"edits": {"temperature": 5}}).json()
    assert hot["edited"]["accuracy"] == plain["original"]["accuracy"]
    assert hot["edited"]["loss"] != plain["original"]["loss"]


def test_points_map_and_its_images(inside_client: TestClient, model: TrainedModel,
                                   model_test_set: Any) -> None:
    from digitnet.projection import layer_representations, pca_2d, sample_indices

    points = inside_client.post("/api/points", json={}).json()
    idx = sample_indices(len(model_test_set.y_test), 1000, seed=0)
    assert points["n"] == len(idx) and points["labels"] == model_test_set.y_test[idx].tolist()
    assert points["predicted"] == model.predict(model_test_set.x_test[idx]).tolist()
    assert len(points["layers"]) == len(model.network.hidden) + 2
    reps = layer_representations(model.network, model.scaler.transform(model_test_set.x_test[idx]))
    for shown, (name, values) in zip(points["layers"], reps, strict=True):
        assert shown["name"] == name
        np.testing.assert_allclose(shown["points"], pca_2d(values), atol=2e-3)
    images = inside_client.get("/api/points/images").json()
    grey = np.frombuffer(base64.b64decode(images["pixels"]), np.uint8).reshape(images["shape"])
    lo, hi = model.scaler.lo, model.scaler.hi
    raw = model_test_set.x_test[idx].reshape(grey.shape)
    np.testing.assert_allclose(grey, (raw - lo) * 255 / (hi - lo), atol=0.5)


def test_the_edited_model_downloads_and_the_saved_one_is_untouched(
        inside_client: TestClient, model: TrainedModel, model_path: Path,
        tmp_path: Path, model_test_set: Any) -> None:
    from digitnet.inside import Edits, edited_copy, edited_scores
    from digitnet.model_io import load_model

    saved = model_path.read_bytes()
    edits = Edits(off=frozenset({(0, 0), (0, 1)}), prune=0.5)
    answer = inside_client.post("/api/edited-model", json={"edits": edits.to_json()})
    assert answer.status_code == 200
    assert "model-edited.npz" in answer.headers["content-disposition"]
    (tmp_path / "edited.npz").write_bytes(answer.content)
    edited = load_model(tmp_path / "edited.npz")
    for a, b in zip(edited.network.get_state(), edited_copy(model.network, edits).get_state(),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    x = model.scaler.transform(model_test_set.x_test)
    assert edited.info["test_accuracy"] == edited_scores(
        model.network, edits, x, model_test_set.y_test)["accuracy"]
    assert edited.info["edited_from"]["edits"] == edits.to_json()
    assert model_path.read_bytes() == saved


def test_inside_view_without_a_test_set_says_why(client: TestClient) -> None:
    info = client.get("/api/model").json()
    assert info["test_set"] is None and "without a test set" in info["test_set_missing"]
    for url in ("/api/scores", "/api/points"):
        answer = client.post(url, json={})
        assert answer.status_code == 409 and "no test set" in answer.json()["error"]
    assert client.get("/api/points/images").status_code == 409


@pytest.mark.parametrize("payload, message", [
    ({"pixels": [0] * 4, "edits": {"prune": 2}}, "prune: expected a share between 0 and 1"),
    ({"edits": {}}, "give exactly one of"),
    ({"pixels": [0], "unit": [0]}, "'unit' must be [layer, unit]"),
    ({"pixels": [0], "unit": [99, 0]}, "unit: no unit 0 in layer 99"),
    ({"pixels": [0], "edits": {"off": [[0, 100000]]}}, "off: no hidden unit 100000"),
    ({"pixels": [0], "colour": 1}, "unknown field(s): colour"),
])
def test_malformed_inspect_requests(client: TestClient, model: TrainedModel,
                                    payload: dict[str, Any], message: str) -> None:
    if "pixels" in payload:
        payload = {**payload, "pixels": [0] * model.network.n_inputs}
    answer = client.post("/api/inspect", json=payload)
    assert answer.status_code == 400 and message in answer.json()["error"]


def test_serve_finds_the_test_set_or_says_it_is_missing(model: TrainedModel,
                                                        tmp_path: Path) -> None:
    import dataclasses

    from digitnet.cli.serve import load_test_set
    from digitnet.data import load_dataset

    digits = load_dataset("digits")
    net = type(model.network)(64, (8,), 10, seed=0)
    from digitnet.data.preprocessing import MinMaxScaler

    digits_model = dataclasses.replace(model, network=net, dataset="digits",
                                       scaler=MinMaxScaler(0.0, 16.0), image_shape=(8, 8),
                                       class_names=digits.class_names)
    found, note = load_test_set(digits_model, None)
    assert found is not None and note is None and found.name == "digits"
    mnist_model = dataclasses.replace(digits_model, dataset="mnist")
    missing, note = load_test_set(mnist_model, str(tmp_path))
    assert missing is None and note is not None and "mnist is not on this computer" in note
