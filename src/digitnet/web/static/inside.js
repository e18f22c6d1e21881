// digitnet drawing page, the inside view: every unit's output for the drawing, one unit's
// arithmetic, the saliency maps, the softmax step by step, and the test set as points.
// The learner's changes (units switched off, bias shifts, pruning, temperature) are kept
// here as `edits` and sent with every request; the server applies them to a copy of the
// network (digitnet.inside), computes everything, and the page only draws what it gets.

const CLASS_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const TOP_SHOWN = 8;

const $ = (id) => document.getElementById(id);
const fixed = (v, n = 3) => (Number.isFinite(v) ? v.toFixed(n) : String(v));
const signed = (v, n = 1) => `${v >= 0 ? "+" : "−"}${Math.abs(v).toFixed(n)}`;

async function postJSON(url, payload) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
  });
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

// Draw values as a diverging red (positive) / blue (negative) image, |v| / scale as strength.
function drawDiverging(canvas, values, shape) {
  const [h, w] = shape;
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(w, h);
  const scale = Math.max(1e-12, ...values.map(Math.abs));
  values.forEach((v, i) => {
    const t = Math.min(1, Math.abs(v) / scale);
    const other = Math.round(255 * (1 - t));
    image.data.set(v >= 0 ? [255, other, other, 255] : [other, other, 255, 255], 4 * i);
  });
  ctx.putImageData(image, 0, 0);
}

function drawGrey(canvas, bytes, offset, shape) {
  const [h, w] = shape;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i += 1) {
    const v = bytes[offset + i];
    image.data.set([v, v, v, 255], 4 * i);
  }
  ctx.putImageData(image, 0, 0);
}

function cell(tag, text, className) {
  const el = document.createElement(tag);
  el.textContent = text;
  if (className) el.className = className;
  return el;
}

function row(...cells) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  return tr;
}

export function createInside(info, onChange) {
  const sizes = info.layer_sizes; // [inputs, hidden..., classes]
  const nDense = sizes.length - 1;
  const inputShape = info.input_shape;
  const state = {
    off: new Set(), // "layer:unit"
    bias: new Map(), // "layer:unit" -> shift
    prune: 0,
    temperature: 1,
    unit: null, // [layer, unit]
  };
  const cells = []; // cells[layer][unit]
  let last = null; // the last answer shown
  let points = null;
  let pointsImages = null;
  let pointsLayer = sizes.length - 2; // the last hidden layer
  let scoresTimer = null;
  let pointsTimer = null;
  let scoresAsked = 0;

  const layerName = (layer) =>
    layer === nDense - 1 ? "Output layer" : `Hidden layer ${layer + 1}`;

  // --------------------------------------------------------------- edits
  function edits() {
    return {
      off: [...state.off].map((k) => k.split(":").map(Number)),
      bias: [...state.bias].filter(([, v]) => v !== 0)
        .map(([k, v]) => [...k.split(":").map(Number), v]),
      prune: state.prune,
      temperature: state.temperature,
    };
  }

  function editsChanged() {
    const e = edits();
    const parts = [];
    if (e.off.length) parts.push(`${e.off.length} unit${e.off.length > 1 ? "s" : ""} switched off`);
    if (e.bias.length) parts.push(`${e.bias.length} bias${e.bias.length > 1 ? "es" : ""} shifted`);
    if (e.prune) parts.push(`${Math.round(100 * e.prune)} % of the weights pruned`);
    if (e.temperature !== 1) parts.push(`temperature ${e.temperature.toFixed(2)}`);
    $("edits-summary").textContent = parts.length ? `Changes: ${parts.join(", ")}.` : "No changes: this is the network as saved.";
    $("inside").dataset.edits = JSON.stringify(e);
    for (let layer = 0; layer < nDense - 1; layer += 1) {
      cells[layer].forEach((el, unit) => el.classList.toggle("off", state.off.has(`${layer}:${unit}`)));
    }
    onChange();
    clearTimeout(scoresTimer);
    scoresTimer = setTimeout(loadScores, 150);
    clearTimeout(pointsTimer);
    pointsTimer = setTimeout(loadPoints, 400);
  }

  // --------------------------------------------------------------- layers
  function buildLayers() {
    const box = $("layers");
    box.replaceChildren();
    for (let layer = 0; layer < nDense; layer += 1) {
      const n = sizes[layer + 1];
      const output = layer === nDense - 1;
      const block = document.createElement("div");
      block.className = output ? "layer output" : "layer";
      const title = cell("h3", `${layerName(layer)} · ${n} units${output ? "" : ` (${info.activation})`}`);
      const count = cell("span", "", "count");
      count.id = `active-${layer}`;
      title.append(" ", count);
      const grid = document.createElement("div");
      grid.className = "units";
      grid.style.gridTemplateColumns = `repeat(${output ? n : Math.min(16, n)}, 1fr)`;
      cells[layer] = [];
      for (let unit = 0; unit < n; unit += 1) {
        const el = document.createElement("button");
        el.type = "button";
        el.className = "unit";
        el.dataset.layer = String(layer);
        el.dataset.unit = String(unit);
        el.title = output ? `class ${info.class_names[unit]}` : `unit ${unit}`;
        if (output) el.textContent = info.class_names[unit];
        el.addEventListener("click", () => selectUnit(layer, unit));
        cells[layer].push(el);
        grid.append(el);
      }
      block.append(title, grid);
      box.append(block);
    }
  }

  function shade(values, layer, probabilities) {
    const top = Math.max(1e-12, ...values.map(Math.abs));
    values.forEach((v, unit) => {
      const el = cells[layer][unit];
      const t = probabilities ? v : Math.min(1, Math.abs(v) / top);
      el.style.setProperty("--level", t.toFixed(3));
      el.classList.toggle("negative", v < 0);
    });
  }

  function selectUnit(layer, unit) {
    if (state.unit) cells[state.unit[0]][state.unit[1]].classList.remove("selected");
    state.unit = [layer, unit];
    cells[layer][unit].classList.add("selected");
    const key = `${layer}:${unit}`;
    $("unit-off").checked = state.off.has(key);
    $("unit-off").disabled = layer === nDense - 1;
    $("unit-off-label").hidden = layer === nDense - 1;
    $("unit-bias").value = String(state.bias.get(key) || 0);
    $("unit-bias-value").textContent = signed(state.bias.get(key) || 0);
    onChange();
  }

  // ----------------------------------------------------------------- unit
  function renderUnit(u, emptyInput) {
    if (!u) {
      $("unit-view").hidden = true;
      $("unit-empty").hidden = false;
      return;
    }
    $("unit-view").hidden = false;
    $("unit-empty").hidden = true;
    const output = u.kind === "output";
    $("unit-name").textContent = output
      ? `${layerName(u.layer)} · class ${info.class_names[u.unit]}`
      : `${layerName(u.layer)} · unit ${u.unit}${u.switched_off ? " (switched off)" : ""}`;
    const canvas = $("unit-weights");
    if (u.layer === 0) {
      drawDiverging(canvas, u.weights, inputShape);
      $("unit-weights-caption").textContent = `Its ${u.n_inputs} incoming weights, one per pixel: red pixels excite it, blue ones inhibit it.`;
    } else {
      const cols = Math.ceil(Math.sqrt(u.n_inputs));
      const padded = u.weights.concat(Array(cols * Math.ceil(u.n_inputs / cols) - u.n_inputs).fill(0));
      drawDiverging(canvas, padded, [Math.ceil(u.n_inputs / cols), cols]);
      $("unit-weights-caption").textContent = `Its ${u.n_inputs} incoming weights, one per unit of ${layerName(u.layer - 1).toLowerCase()}, in order (row by row).`;
    }
    const table = $("unit-math");
    const source = u.layer === 0 ? "pixel" : "unit";
    const head = row(cell("th", "input"), cell("th", "a"), cell("th", "× w"), cell("th", "= a·w"));
    const lines = u.terms.slice(0, TOP_SHOWN).map((t) => row(
      cell("td", `${source} ${t.input}`), cell("td", fixed(t.a)), cell("td", fixed(t.w)),
      cell("td", fixed(t.product)),
    ));
    const rest = u.n_inputs - Math.min(TOP_SHOWN, u.terms.length);
    const f = output ? "softmax" : u.activation;
    const summary = [
      row(cell("td", `… and ${rest} more terms (largest |a·w| shown)`, "span3"), cell("td", "")),
      row(cell("td", "Σ a·w, all terms", "span3"), cell("td", fixed(u.sum_of_products))),
      row(cell("td", `+ bias b${u.bias_shift ? ` (shifted ${signed(u.bias_shift)})` : ""}`, "span3"), cell("td", fixed(u.bias))),
      row(cell("td", "= weighted sum z", "span3"), cell("td", fixed(u.z), "strong")),
      row(cell("td", output ? "p = softmax(z / T) for this class" : `output ${f}(z)`, "span3"),
        cell("td", fixed(u.output, 4), "strong")),
    ];
    if (u.switched_off) {
      summary.push(row(cell("td", "switched off: the next layer receives", "span3"),
        cell("td", fixed(u.passed_on, 4), "strong")));
    }
    summary.forEach((tr) => tr.firstChild.setAttribute("colspan", "3"));
    table.replaceChildren(head, ...lines, ...summary);
    table.dataset.z = String(u.z);
    table.dataset.output = String(u.output);
    $("unit-card").dataset.emptyInput = emptyInput ? "yes" : "no";
    if (emptyInput) {
      table.caption = null;
      const c = table.createCaption();
      c.textContent = "For an empty drawing (draw a digit to follow your own):";
    }
  }

  // ----------------------------------------------------------- saliency etc.
  function renderExplanation(body) {
    const e = body.explanation;
    drawDiverging($("saliency-top"), e.saliency.flat(), inputShape);
    drawDiverging($("saliency-second"), e.runner_up_saliency.flat(), inputShape);
    $("saliency-top-caption").textContent = `towards ${e.predicted} (the answer)`;
    $("saliency-second-caption").textContent = `towards ${e.runner_up} (the runner-up)`;
    $("active-units").textContent = e.active_units
      .map((n, l) => `${layerName(l)}: ${n} of ${sizes[l + 1]} units active`).join(" · ");
    e.hidden.forEach((values, layer) => {
      shade(values, layer, false);
      $(`active-${layer}`).textContent = `${e.active_units[layer]} active`;
    });
    shade(body.probabilities, nDense - 1, true);
  }

  function renderSoftmax(s) {
    const head = row(...["class", "z", `z / ${s.temperature.toFixed(2)}`, "− max", "exp", "p"]
      .map((t) => cell("th", t)));
    const top = s.probabilities.indexOf(Math.max(...s.probabilities));
    const lines = s.logits.map((z, k) => {
      const tr = row(cell("td", info.class_names[k]), cell("td", fixed(z, 2)),
        cell("td", fixed(s.scaled[k], 2)), cell("td", fixed(s.shifted[k], 2)),
        cell("td", s.exp[k] >= 0.01 ? s.exp[k].toFixed(3) : s.exp[k].toExponential(1)),
        cell("td", fixed(s.probabilities[k], 3)));
      if (k === top) tr.className = "top";
      return tr;
    });
    const sum = row(cell("td", "sum"), cell("td", ""), cell("td", ""), cell("td", ""),
      cell("td", s.sum.toFixed(3)), cell("td", "1"));
    $("softmax").replaceChildren(head, ...lines, sum);
  }

  function render(body) {
    last = body;
    renderExplanation(body);
    renderSoftmax(body.softmax);
    renderUnit(body.unit, false);
    $("inside").dataset.version = String(Number($("inside").dataset.version || 0) + 1);
  }

  // Without a drawing the unit's weights and its arithmetic for an empty input still show.
  async function renderWithoutDrawing() {
    last = null;
    for (let layer = 0; layer < nDense; layer += 1) {
      cells[layer].forEach((el) => el.style.setProperty("--level", "0"));
      $(`active-${layer}`).textContent = "";
    }
    $("softmax").replaceChildren();
    $("active-units").textContent = "";
    for (const id of ["saliency-top", "saliency-second"]) {
      const c = $(id);
      c.getContext("2d").clearRect(0, 0, c.width, c.height);
    }
    if (!state.unit) {
      renderUnit(null);
      return;
    }
    try {
      const body = await postJSON("/api/inspect", {
        pixels: Array(inputShape[0] * inputShape[1]).fill(0), edits: edits(), unit: state.unit,
      });
      if (last === null) renderUnit(body.unit, true);
    } catch (err) {
      $("unit-empty").textContent = err.message;
    }
  }

  // ---------------------------------------------------------------- scores
  async function loadScores() {
    const el = $("scores");
    if (info.test_set === null) {
      el.textContent = `Test accuracy under your changes: not available (${info.test_set_missing}).`;
      return;
    }
    const asked = (scoresAsked += 1);
    el.dataset.state = "busy";
    try {
      const s = await postJSON("/api/scores", { edits: edits() });
      if (asked !== scoresAsked) return;
      const before = 100 * s.original.accuracy;
      const after = 100 * s.edited.accuracy;
      const diff = after - before;
      el.replaceChildren(
        `Test accuracy (${s.test_set}): as saved ${before.toFixed(2)} %, with your changes `,
        cell("strong", `${after.toFixed(2)} %`),
        ` (${diff >= 0 ? "+" : "−"}${Math.abs(diff).toFixed(2)} points); test loss ${s.edited.loss.toFixed(4)}.`,
      );
      el.dataset.accuracy = String(s.edited.accuracy);
      el.dataset.edits = JSON.stringify(s.edits);
      el.dataset.state = "ready";
    } catch (err) {
      el.textContent = `Test accuracy: ${err.message}`;
      el.dataset.state = "error";
    }
  }

  // ---------------------------------------------------------------- points
  function buildPointsControls() {
    const box = $("points-layers");
    const names = ["input", ...sizes.slice(1, -1).map((_, l) => `hidden ${l + 1}`), "output"];
    box.replaceChildren(...names.map((name, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "secondary";
      b.textContent = name;
      b.dataset.layer = String(i);
      b.addEventListener("click", () => {
        pointsLayer = i;
        drawPoints();
      });
      return b;
    }));
    $("points-legend").replaceChildren(...info.class_names.map((name, k) => {
      const li = cell("li", name);
      li.style.setProperty("--colour", CLASS_COLOURS[k % CLASS_COLOURS.length]);
      return li;
    }));
  }

  async function loadPoints() {
    if (info.test_set === null) {
      $("points-note").textContent = `The points map needs the model's test set: ${info.test_set_missing}.`;
      return;
    }
    try {
      const [p, images] = await Promise.all([
        postJSON("/api/points", { edits: edits() }),
        pointsImages ? Promise.resolve(null) : fetch("/api/points/images").then((r) => r.json()),
      ]);
      if (images) {
        const raw = atob(images.pixels);
        const bytes = new Uint8Array(raw.length);
        for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
        pointsImages = { shape: images.shape, bytes };
      }
      points = p;
      drawPoints();
    } catch (err) {
      $("points-note").textContent = `Points map: ${err.message}`;
    }
  }

  function pointsGeometry() {
    const canvas = $("points");
    const xy = points.layers[pointsLayer].points;
    const xs = xy.map((q) => q[0]);
    const ys = xy.map((q) => q[1]);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const pad = 12;
    const sx = (canvas.width - 2 * pad) / Math.max(1e-12, x1 - x0);
    const sy = (canvas.height - 2 * pad) / Math.max(1e-12, y1 - y0);
    return xy.map(([x, y]) => [pad + (x - x0) * sx, canvas.height - pad - (y - y0) * sy]);
  }

  function drawPoints() {
    if (!points) return;
    const canvas = $("points");
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const at = pointsGeometry();
    at.forEach(([x, y], i) => {
      const colour = CLASS_COLOURS[points.labels[i] % CLASS_COLOURS.length];
      ctx.beginPath();
      ctx.arc(x, y, 3, 0, 2 * Math.PI);
      if (points.labels[i] === points.predicted[i]) {
        ctx.fillStyle = colour;
        ctx.globalAlpha = 0.75;
        ctx.fill();
      } else {
        ctx.globalAlpha = 1;
        ctx.strokeStyle = colour;
        ctx.lineWidth = 1.5;
        ctx.arc(x, y, 5, 0, 2 * Math.PI);
        ctx.stroke();
      }
    });
    ctx.globalAlpha = 1;
    for (const b of $("points-layers").children) {
      b.classList.toggle("active", Number(b.dataset.layer) === pointsLayer);
    }
    const wrong = points.labels.filter((y, i) => y !== points.predicted[i]).length;
    $("points-note").textContent = `${points.n} test images, placed by the first two principal components (PCA) of ${points.layers[pointsLayer].name}, coloured by their true class; the ${wrong} rings are images the network (with your changes) gets wrong. Hover a dot to see the image.`;
    canvas.dataset.layer = String(pointsLayer);
    canvas.dataset.drawn = String(points.n);
  }

  function hoverPoints(ev) {
    const tip = $("points-tip");
    if (!points || !pointsImages) return;
    const canvas = $("points");
    const rect = canvas.getBoundingClientRect();
    const x = ((ev.clientX - rect.left) * canvas.width) / rect.width;
    const y = ((ev.clientY - rect.top) * canvas.height) / rect.height;
    let best = -1;
    let bestD = 64; // within 8 canvas pixels
    pointsGeometry().forEach(([px, py], i) => {
      const d = (px - x) ** 2 + (py - y) ** 2;
      if (d < bestD) {
        bestD = d;
        best = i;
      }
    });
    if (best < 0) {
      tip.hidden = true;
      return;
    }
    const [, h, w] = pointsImages.shape;
    drawGrey($("points-tip-image"), pointsImages.bytes, best * h * w, [h, w]);
    const truth = info.class_names[points.labels[best]];
    const guess = info.class_names[points.predicted[best]];
    $("points-tip-text").textContent = truth === guess ? `${truth}, answered right`
      : `true ${truth}, answered ${guess}`;
    tip.hidden = false;
    tip.style.left = `${ev.clientX - rect.left + 14}px`;
    tip.style.top = `${ev.clientY - rect.top + 14}px`;
    tip.dataset.index = String(best);
  }

  // --------------------------------------------------------------- controls
  function wireControls() {
    $("prune").addEventListener("input", (ev) => {
      state.prune = Number(ev.target.value) / 100;
      $("prune-value").textContent = `${ev.target.value} %`;
      editsChanged();
    });
    $("temperature").addEventListener("input", (ev) => {
      state.temperature = 10 ** Number(ev.target.value); // 0.1 .. 10 on a log scale
      $("temperature-value").textContent = state.temperature.toFixed(2);
      editsChanged();
    });
    $("unit-off").addEventListener("change", (ev) => {
      if (!state.unit) return;
      const key = state.unit.join(":");
      if (ev.target.checked) state.off.add(key);
      else state.off.delete(key);
      editsChanged();
    });
    $("unit-bias").addEventListener("input", (ev) => {
      if (!state.unit) return;
      const v = Number(ev.target.value);
      state.bias.set(state.unit.join(":"), v);
      $("unit-bias-value").textContent = signed(v);
      editsChanged();
    });
    $("reset-edits").addEventListener("click", () => {
      state.off.clear();
      state.bias.clear();
      state.prune = 0;
      state.temperature = 1;
      $("prune").value = "0";
      $("prune-value").textContent = "0 %";
      $("temperature").value = "0";
      $("temperature-value").textContent = "1.00";
      $("unit-off").checked = false;
      $("unit-bias").value = "0";
      $("unit-bias-value").textContent = signed(0);
      editsChanged();
    });
    $("download-model").addEventListener("click", async () => {
      const response = await fetch("/api/edited-model", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ edits: edits() }),
      });
      if (!response.ok) return;
      const link = document.createElement("a");
      link.href = URL.createObjectURL(await response.blob());
      link.download = "model-edited.npz";
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 1000);
    });
    $("points").addEventListener("pointermove", hoverPoints);
    $("points").addEventListener("pointerleave", () => {
      $("points-tip").hidden = true;
    });
  }

  buildLayers();
  buildPointsControls();
  wireControls();
  editsChanged();
  return {
    request: () => ({ edits: edits(), ...(state.unit ? { unit: state.unit } : {}) }),
    render,
    renderWithoutDrawing,
  };
}
