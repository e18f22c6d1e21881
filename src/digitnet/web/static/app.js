// digitnet drawing page: draw on #pad, send the drawing to /api/inspect as a PNG data URL,
// show the prediction, one bar per class and the preprocessed image the network saw, and
// hand the rest of the answer to the inside view (inside.js).
// The server does all preprocessing, so the page and `digitnet predict` agree exactly.
import { createInside } from "./inside.js";

(() => {
  const pad = document.getElementById("pad");
  // read back often (each stroke, each prediction): keep the canvas in CPU memory
  const ctx = pad.getContext("2d", { willReadFrequently: true });
  const preview = document.getElementById("preview");
  const previewCtx = preview.getContext("2d");
  const result = document.getElementById("result");
  const predictionEl = document.getElementById("prediction");
  const confidenceEl = document.getElementById("confidence");
  const barsEl = document.getElementById("bars");
  const statusEl = document.getElementById("status");

  const PEN_WIDTH = pad.width / 13; // about MNIST's stroke relative to the digit's height
  const DATASET_NAMES = {
    "mnist": "MNIST",
    "fashion-mnist": "Fashion-MNIST",
    "digits": "scikit-learn 8×8 digits",
  };

  let classNames = [];
  let version = 0; // bumped on every change of the drawing
  let clearedAt = 0; // version of the last clear: older answers are stale
  let shown = 0; // version whose prediction is on screen
  let inFlight = false;
  let hasInk = false;
  let stroke = null; // points of the stroke being drawn
  let inside = null; // the inside view, once the model is known
  const changedAt = new Map(); // version -> when it was made (performance.now())
  window.digitnetTimings = []; // ms from a change of the drawing to its answer on screen
  let beforeStroke = null; // the canvas before it, to redraw the stroke as one smooth path

  const percent = (p) => `${(100 * p).toFixed(1)}%`;

  // ------------------------------------------------------------------ drawing
  function blankPaper() {
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.strokeStyle = "#111111";
    ctx.fillStyle = "#111111";
    ctx.lineWidth = PEN_WIDTH;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
  }

  function canvasPoint(ev) {
    // pointer position in canvas pixels (the canvas is scaled by CSS and has a border)
    const rect = pad.getBoundingClientRect();
    return {
      x: ((ev.clientX - rect.left - pad.clientLeft) * pad.width) / pad.clientWidth,
      y: ((ev.clientY - rect.top - pad.clientTop) * pad.height) / pad.clientHeight,
    };
  }

  // Redraw the whole stroke as one path: short segments drawn one by one would overlap
  // their anti-aliased edges and look beaded.
  function drawStroke() {
    ctx.putImageData(beforeStroke, 0, 0);
    ctx.beginPath();
    if (stroke.length === 1) {
      ctx.arc(stroke[0].x, stroke[0].y, PEN_WIDTH / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    ctx.moveTo(stroke[0].x, stroke[0].y);
    for (const p of stroke.slice(1)) ctx.lineTo(p.x, p.y);
    ctx.stroke();
  }

  pad.addEventListener("pointerdown", (ev) => {
    if (ev.pointerType === "mouse" && ev.button !== 0) return;
    ev.preventDefault();
    try {
      pad.setPointerCapture(ev.pointerId); // keep the stroke when the pointer leaves the canvas
    } catch (err) {
      // a synthetic or already released pointer cannot be captured: draw anyway
    }
    beforeStroke = ctx.getImageData(0, 0, pad.width, pad.height);
    stroke = [canvasPoint(ev)];
    drawStroke();
    drawingChanged();
  });

  pad.addEventListener("pointermove", (ev) => {
    if (stroke === null) return;
    const coalesced = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [];
    for (const e of coalesced.length ? coalesced : [ev]) stroke.push(canvasPoint(e));
    drawStroke();
    drawingChanged();
  });

  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
    pad.addEventListener(type, () => {
      stroke = null;
      beforeStroke = null;
    });
  }

  function clearDrawing() {
    stroke = null;
    blankPaper();
    version += 1;
    clearedAt = version;
    shown = version;
    hasInk = false;
    showEmpty();
    if (inside) inside.renderWithoutDrawing();
  }

  document.getElementById("clear").addEventListener("click", clearDrawing);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") clearDrawing();
  });

  // --------------------------------------------------------------- prediction
  function drawingChanged() {
    version += 1;
    changedAt.set(version, performance.now());
    hasInk = true;
    setState();
    requestPrediction();
  }

  // A change in the inside view (an edit, a unit clicked): ask again for the same drawing.
  function insideChanged() {
    if (!inside) return;
    if (!hasInk) {
      inside.renderWithoutDrawing();
      return;
    }
    version += 1;
    setState();
    requestPrediction();
  }

  function setState(state) {
    if (state === undefined) {
      if (!hasInk) state = "empty";
      else state = inFlight || shown !== version ? "busy" : "ready";
    }
    result.dataset.state = state;
    result.dataset.version = String(shown);
  }

  // One request at a time; when it returns and the drawing has changed, ask again.
  async function requestPrediction() {
    if (inFlight || !hasInk || shown === version) return;
    inFlight = true;
    const asked = version;
    let errorText = null;
    try {
      const response = await fetch("/api/inspect", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ image: pad.toDataURL("image/png"), ...(inside ? inside.request() : {}) }),
      });
      const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
      if (asked > clearedAt) {
        if (response.ok) render(body, asked);
        else errorText = body.error || `HTTP ${response.status}`;
      }
    } catch (err) {
      errorText = "cannot reach the digitnet server";
    } finally {
      inFlight = false;
    }
    if (errorText !== null && asked > clearedAt) {
      shown = asked;
      showError(errorText);
    }
    if (hasInk && shown !== version) requestPrediction();
    else if (errorText === null) setState();
  }

  function render(body, asked) {
    if (classNames.length === 0) buildBars(body.class_names);
    predictionEl.textContent = body.prediction;
    predictionEl.classList.toggle("long", body.prediction.length > 2);
    confidenceEl.textContent = `${percent(body.probability)} probability`;
    if (body.unedited && body.unedited.prediction !== body.prediction) {
      confidenceEl.textContent += ` (${body.unedited.prediction} before your changes)`;
    }
    body.probabilities.forEach((p, i) => {
      const item = barsEl.children[i];
      if (!item) return;
      item.querySelector(".fill").style.width = `${(100 * p).toFixed(2)}%`;
      item.querySelector(".pct").textContent = percent(p);
      item.classList.toggle("top", i === body.index);
    });
    drawPreview(body.input.shape, body.input.pixels);
    statusEl.textContent = "";
    statusEl.classList.remove("error");
    shown = asked;
    if (inside) inside.render(body);
    window.digitnetLastResult = body;
    // every change up to `asked` is on screen now: how long did each wait?
    for (const [v, t] of changedAt) {
      if (v <= asked) {
        window.digitnetTimings.push(performance.now() - t);
        changedAt.delete(v);
      }
    }
  }

  function drawPreview(shape, pixels) {
    const [h, w] = shape;
    if (preview.width !== w || preview.height !== h) {
      preview.width = w;
      preview.height = h;
    }
    const image = previewCtx.createImageData(w, h);
    pixels.forEach((v, i) => {
      image.data.set([v, v, v, 255], 4 * i);
    });
    previewCtx.putImageData(image, 0, 0);
  }

  function showEmpty() {
    predictionEl.textContent = "?";
    predictionEl.classList.remove("long");
    confidenceEl.textContent = "Draw a digit to start";
    for (const item of barsEl.children) {
      item.querySelector(".fill").style.width = "0";
      item.querySelector(".pct").textContent = percent(0);
      item.classList.remove("top");
    }
    previewCtx.fillStyle = "#000";
    previewCtx.fillRect(0, 0, preview.width, preview.height);
    statusEl.textContent = "";
    statusEl.classList.remove("error");
    setState();
  }

  function showError(text) {
    statusEl.textContent = text;
    statusEl.classList.add("error");
    setState("error");
  }

  // -------------------------------------------------------------------- model
  function buildBars(names) {
    classNames = names;
    barsEl.replaceChildren(
      ...names.map((name) => {
        const item = document.createElement("li");
        item.dataset.class = name;
        const label = document.createElement("span");
        label.className = "label";
        label.textContent = name;
        const track = document.createElement("span");
        track.className = "track";
        const fill = document.createElement("span");
        fill.className = "fill";
        track.append(fill);
        const pct = document.createElement("span");
        pct.className = "pct";
        pct.textContent = percent(0);
        item.append(label, track, pct);
        return item;
      }),
    );
  }

  async function loadModelInfo() {
    try {
      const response = await fetch("/api/model");
      const info = await response.json();
      buildBars(info.class_names);
      document.getElementById("model-architecture").textContent = info.architecture;
      document.getElementById("model-parameters").textContent =
        info.n_parameters.toLocaleString("en-US");
      document.getElementById("model-dataset").textContent =
        DATASET_NAMES[info.dataset] || info.dataset;
      document.getElementById("model-accuracy").textContent =
        info.test_accuracy === null ? "not recorded" : `${(100 * info.test_accuracy).toFixed(2)}%`;
      const [h, w] = info.input_shape;
      preview.width = w;
      preview.height = h;
      if (h !== 28) {
        document.getElementById("preview-caption").textContent =
          `Your drawing after preprocessing, reduced to the ${h}×${w} pixels this model reads.`;
      }
      showEmpty();
      inside = createInside(info, insideChanged);
      inside.renderWithoutDrawing();
    } catch (err) {
      showError("cannot load the model description from the server");
      console.error(err);
    }
  }

  blankPaper();
  showEmpty();
  loadModelInfo();
})();
