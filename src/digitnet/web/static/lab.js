// digitnet lab page: watches the run the server trains (server-sent events from
// /api/lab/events, each a snapshot of LabSession.snapshot), draws its curves and pictures
// with its own small canvas code, and sends the learner's controls and changes
// (/api/lab/control, /api/lab/settings, /api/lab/start, ...). The server does all the
// computing; the page never trains anything itself.

const $ = (id) => document.getElementById(id);
const LAYER_COLOURS = ["#2f6fed", "#f79009", "#12b76a", "#9e77ed", "#ee46bc", "#667085"];
const SLOW_STEPS = [0, 0.01, 0.03, 0.1, 0.3, 1, 2]; // seconds after every step
const LOG_ROWS = 12; // changes shown in the log table
const SETUP_FIELDS = ["dataset", "subset", "hidden", "activation", "init_scale", "optimizer",
  "lr", "momentum", "weight_decay", "dropout", "batch_size", "epochs", "augment", "seed",
  "engine"];
const NUMBER_FIELDS = new Set(["subset", "init_scale", "lr", "momentum", "weight_decay",
  "dropout", "batch_size", "epochs", "seed"]);
const LIVE_FIELDS = ["lr", "momentum", "weight_decay", "dropout", "batch_size", "augment"];
const SETTING_NAMES = { lr: "learning rate", momentum: "momentum", weight_decay: "L2 weight decay",
  dropout: "dropout", batch_size: "batch size", augment: "augmentation" };

let options = null; // GET /api/lab/options
let snap = { state: "none" }; // the last snapshot shown
let source = null;
let busy = false; // a control request is on its way
window.labRenders = 0;

// ------------------------------------------------------------------- requests
async function request(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, init);
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = { error: `the server answered ${response.status}` };
  }
  if (!response.ok) throw new Error(data && data.error ? data.error : `error ${response.status}`);
  return data;
}

function say(text, error = false) {
  const el = $("message");
  el.textContent = text;
  el.classList.toggle("error", error);
}

// Run a request; with `block`, the control buttons wait for it (a settings change does not
// block them: the click on Pause that ends typing in a field must still pause).
async function act(work, block = true) {
  if (block) {
    busy = true;
    updateButtons();
  }
  try {
    const result = await work();
    if (result && result.state) render(result, false);
    return result;
  } catch (err) {
    say(err.message, true);
    return null;
  } finally {
    if (block) {
      busy = false;
      updateButtons();
    }
  }
}

const lastSent = {}; // setting -> the value last asked for (a field's change fires once more on blur)

async function sendSetting(name, value) {
  if (lastSent[name] === value && snap.pending && name in snap.pending) return true;
  const input = $(`live-${name}`);
  if (input) input.classList.add("changed");
  const r = await act(() => request("/api/lab/settings", { setting: name, value }), false);
  if (r) lastSent[name] = value;
  return r !== null;
}

// -------------------------------------------------------------------- formats
function fmt(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(digits - 1).replace("e+", "e");
  return Number(v.toPrecision(digits)).toString();
}
const pct = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)}%`);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

function bytes(b64) {
  const raw = atob(b64);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

// --------------------------------------------------------------------- charts
function niceTicks(lo, hi, count = 5) {
  const span = hi - lo || 1;
  const step0 = span / count;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0) || mag * 10;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(t);
  return ticks;
}

// A chart's canvas sized to the pixels it covers on the screen: its width in the page
// times the device's pixel ratio, its height from the aspect of its width and height
// attributes. Lines and labels stay sharp, and the labels keep their size (11 px) where the
// page makes the chart narrower (a phone). Returns the context, drawing in CSS pixels.
function fitCanvas(canvas) {
  if (!canvas.dataset.aspect) canvas.dataset.aspect = String(canvas.height / canvas.width);
  const W = canvas.clientWidth || canvas.width; // 0 while not laid out
  const H = Math.round(W * Number(canvas.dataset.aspect));
  const ratio = Math.min(Math.max(window.devicePixelRatio || 1, 1), 3);
  const pw = Math.round(W * ratio);
  const ph = Math.round(H * ratio);
  if (canvas.width !== pw || canvas.height !== ph) {
    canvas.width = pw;
    canvas.height = ph;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(pw / W, 0, 0, ph / H, 0, 0);
  return { ctx, W, H };
}

// Line chart: series [{x, y, colour, width, dash, dots}], x from 0 to xMax, y linear or log.
function drawChart(canvas, series, opts = {}) {
  const { ctx, W, H } = fitCanvas(canvas);
  const m = { left: 52, right: 12, top: 10, bottom: 26 };
  ctx.clearRect(0, 0, W, H);
  ctx.font = "11px system-ui, sans-serif";
  const ys = [];
  let xMax = opts.xMax || 1;
  for (const s of series) {
    s.y.forEach((v, i) => {
      if (v !== null && Number.isFinite(v) && (!opts.log || v > 0)) ys.push(v);
      if (s.x[i] > xMax) xMax = s.x[i];
    });
  }
  let lo = opts.yMin !== undefined ? opts.yMin : Math.min(...ys);
  let hi = opts.yMax !== undefined ? opts.yMax : Math.max(...ys);
  if (!ys.length) {
    lo = opts.log ? 0.01 : 0;
    hi = opts.log ? 10 : 1;
  }
  if (opts.log) {
    lo = Math.log10(Math.max(lo, 1e-12));
    hi = Math.log10(Math.max(hi, 1e-12));
    if (hi - lo < 1) { const c = (hi + lo) / 2; lo = c - 0.5; hi = c + 0.5; }
    lo = Math.floor(lo * 2) / 2;
    hi = Math.ceil(hi * 2) / 2;
  } else if (hi - lo < 1e-9) {
    hi = lo + 1;
  }
  const px = (x) => m.left + (x / xMax) * (W - m.left - m.right);
  const py = (y) => {
    const v = opts.log ? Math.log10(Math.max(y, 1e-300)) : y;
    return H - m.bottom - ((v - lo) / (hi - lo)) * (H - m.top - m.bottom);
  };
  // grid and axes
  ctx.strokeStyle = "#eaecf0";
  ctx.fillStyle = "#667085";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const yticks = opts.log
    ? Array.from({ length: Math.floor(hi) - Math.ceil(lo) + 1 }, (_, i) => 10 ** (Math.ceil(lo) + i))
    : niceTicks(lo, hi, 4);
  for (const t of yticks) {
    const y = py(t);
    ctx.beginPath(); ctx.moveTo(m.left, y); ctx.lineTo(W - m.right, y); ctx.stroke();
    ctx.fillText(opts.percent ? `${Math.round(100 * t)}%` : fmt(t, 2), m.left - 4, y);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of niceTicks(0, xMax, 5)) {
    const x = px(t);
    ctx.beginPath(); ctx.moveTo(x, m.top); ctx.lineTo(x, H - m.bottom); ctx.stroke();
    ctx.fillText(fmt(t, 3), x, H - m.bottom + 8);
  }
  ctx.textAlign = "right"; // in the corner below the y labels, clear of the x ticks
  ctx.fillText(opts.xLabel || "step", m.left - 14, H - m.bottom + 8);
  for (const g of opts.guides || []) {
    if (opts.log ? Math.log10(g) < lo || Math.log10(g) > hi : g < lo || g > hi) continue;
    ctx.save();
    ctx.setLineDash([5, 4]);
    ctx.strokeStyle = "#667085";
    ctx.beginPath(); ctx.moveTo(m.left, py(g)); ctx.lineTo(W - m.right, py(g)); ctx.stroke();
    ctx.restore();
  }
  // the series, broken where a value is missing
  ctx.save();
  ctx.beginPath();
  ctx.rect(m.left, m.top - 2, W - m.left - m.right, H - m.top - m.bottom + 4);
  ctx.clip();
  for (const s of series) {
    ctx.strokeStyle = s.colour;
    ctx.fillStyle = s.colour;
    ctx.lineWidth = s.width || 1.5;
    ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    let open = false;
    s.y.forEach((v, i) => {
      const ok = v !== null && Number.isFinite(v) && (!opts.log || v > 0);
      if (!ok) { open = false; return; }
      const x = px(s.x[i]);
      const y = py(v);
      if (open) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      open = true;
    });
    ctx.stroke();
    if (s.dots) {
      s.y.forEach((v, i) => {
        if (v === null || !Number.isFinite(v) || (opts.log && v <= 0)) return;
        ctx.beginPath(); ctx.arc(px(s.x[i]), py(v), 2.5, 0, 2 * Math.PI); ctx.fill();
      });
    }
  }
  ctx.restore();
  canvas.dataset.points = String(series.reduce((n, s) => n + s.y.filter((v) => v !== null).length, 0));
}

function drawHistogram(canvas, h, colour) {
  const { ctx, W, H } = fitCanvas(canvas);
  const m = { left: 8, right: 8, top: 8, bottom: 22 };
  ctx.clearRect(0, 0, W, H);
  const n = h.now.length;
  const top = Math.max(...h.start, ...h.now, 1e-9);
  const bw = (W - m.left - m.right) / n;
  const y = (v) => H - m.bottom - (v / top) * (H - m.top - m.bottom);
  ctx.fillStyle = "rgba(152, 162, 179, 0.55)";
  h.start.forEach((v, i) => ctx.fillRect(m.left + i * bw, y(v), bw, H - m.bottom - y(v)));
  ctx.strokeStyle = colour;
  ctx.lineWidth = 2;
  ctx.beginPath();
  h.now.forEach((v, i) => {
    const x0 = m.left + i * bw;
    if (i === 0) ctx.moveTo(x0, y(v)); else ctx.lineTo(x0, y(v));
    ctx.lineTo(x0 + bw, y(v));
  });
  ctx.stroke();
  ctx.fillStyle = "#667085";
  ctx.font = "11px system-ui, sans-serif";
  ctx.textBaseline = "top";
  const lim = h.edges[h.edges.length - 1];
  ctx.textAlign = "left"; ctx.fillText(`-${fmt(lim, 2)}`, m.left, H - m.bottom + 4);
  ctx.textAlign = "center"; ctx.fillText("0", W / 2, H - m.bottom + 4);
  ctx.textAlign = "right"; ctx.fillText(fmt(lim, 2), W - m.right, H - m.bottom + 4);
}

// Tiles of signed weights (uint8, 128 = 0): red excites, blue inhibits.
function drawTiles(canvas, tiles) {
  const [n, h, w] = tiles.shape;
  const data = bytes(tiles.data);
  const cols = Math.ceil(Math.sqrt(n));
  const rows = Math.ceil(n / cols);
  const gap = 1;
  const image = new ImageData(cols * (w + gap) + gap, rows * (h + gap) + gap);
  image.data.fill(255);
  for (let t = 0; t < n; t++) {
    const ox = gap + (t % cols) * (w + gap);
    const oy = gap + Math.floor(t / cols) * (h + gap);
    for (let i = 0; i < h * w; i++) {
      const v = (data[t * h * w + i] - 128) / 127;
      const k = 4 * ((oy + Math.floor(i / w)) * image.width + ox + (i % w));
      const fade = Math.round(255 * (1 - Math.abs(v)));
      image.data[k] = v >= 0 ? 255 : fade;
      image.data[k + 1] = fade;
      image.data[k + 2] = v >= 0 ? fade : 255;
      image.data[k + 3] = 255;
    }
  }
  blit(canvas, image);
  canvas.dataset.units = String(n);
}

// Rows of grey images (white ink on black, as the network sees them).
function drawImages(canvas, rowsOfImages, shape, max) {
  const [n, h, w] = shape;
  const gap = 2;
  const image = new ImageData(n * (w + gap) + gap, rowsOfImages.length * (h + gap) + gap);
  image.data.fill(255);
  rowsOfImages.forEach((b64, r) => {
    const data = bytes(b64);
    for (let t = 0; t < n; t++) {
      for (let i = 0; i < h * w; i++) {
        const g = Math.round(255 * Math.min(data[t * h * w + i] / max, 1));
        const k = 4 * ((gap + r * (h + gap) + Math.floor(i / w)) * image.width
          + gap + t * (w + gap) + (i % w));
        image.data[k] = g; image.data[k + 1] = g; image.data[k + 2] = g; image.data[k + 3] = 255;
      }
    }
  });
  blit(canvas, image);
}

function blit(canvas, image) {
  const off = document.createElement("canvas");
  off.width = image.width;
  off.height = image.height;
  off.getContext("2d").putImageData(image, 0, 0);
  // whole pixels, about 400 wide: the page's CSS stretches the canvas, pixelated
  const scale = Math.max(1, Math.round(400 / image.width));
  canvas.width = image.width * scale;
  canvas.height = image.height * scale;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(off, 0, 0, image.width * scale, image.height * scale);
}

// -------------------------------------------------------------------- render
function render(s, full = true) {
  // A request's answer can arrive after events newer than it (the run went on meanwhile):
  // showing it would put an older state back on screen until the run changes again.
  if (s.run !== undefined && s.run === snap.run && s.version < snap.version) return;
  if (full || s.state === "none") snap = s;
  else snap = { ...snap, ...s };
  s = snap;
  window.labSnapshot = s;
  window.labRenders += 1;
  const badge = $("state");
  badge.dataset.state = s.state;
  badge.dataset.steps = String(s.steps || 0);
  badge.textContent = s.state === "none" ? "no run yet" : s.state;
  if (s.state === "none") {
    updateButtons();
    return;
  }
  const speed = s.train_seconds > 0 ? ` · ${fmt(s.steps / s.train_seconds, 3)} steps/s` : "";
  $("where").textContent = `epoch ${s.epoch}/${s.planned_epochs} · step ${s.steps} `
    + `(${s.steps_per_epoch} per epoch) · ${s.n_train} training images · ${s.network} · `
    + `${fmt(s.train_seconds, 3)} s of training${speed}`;
  const progress = s.state === "done" ? 1 : s.epoch_progress;
  $("progress-fill").style.width = `${Math.min(100, 100 * progress)}%`;
  if (s.message) say(s.message, s.state === "diverged" || s.state === "failed");
  else if (!$("message").classList.contains("error")) say("");
  updateButtons();
  renderCurves(s);
  renderLive(s);
  renderHints(s);
  if (s.measures) renderLayers(s);
  if (s.histograms) renderHistograms(s);
  if (s.tiles) drawTiles($("tiles"), s.tiles);
  if (s.preview) renderPreview(s);
  renderGradcheck(s.gradient_check);
}

function renderCurves(s) {
  const b = s.batches;
  const hx = s.history.map((r) => r.step); // validation: at the epoch's end
  // the training loss and accuracy of an epoch are means over its batches: at its middle
  const mid = s.history.map((r, i) => (r.step + (i ? s.history[i - 1].step : 0)) / 2);
  const per = b.per_point > 1 ? ` (means of ${b.per_point} batches)` : "";
  drawChart($("chart-loss"), [
    { x: b.step, y: b.loss, colour: "#98a2b3", width: 1 },
    { x: mid, y: s.history.map((r) => r.train_loss), colour: "#1f77b4", width: 2, dots: true },
    { x: hx, y: s.history.map((r) => r.val_loss), colour: "#d62728", width: 2, dots: true },
  ], { log: $("loss-log").checked, xMax: Math.max(s.steps, 1) });
  drawChart($("chart-accuracy"), [
    { x: b.step, y: b.accuracy, colour: "#98a2b3", width: 1 },
    { x: mid, y: s.history.map((r) => r.train_accuracy), colour: "#1f77b4", width: 2, dots: true },
    { x: hx, y: s.history.map((r) => r.val_accuracy), colour: "#d62728", width: 2, dots: true },
  ], { yMin: 0, yMax: 1, percent: true, xMax: Math.max(s.steps, 1) });
  $("chart-loss").dataset.epochs = String(s.history.length);
  const last = s.history[s.history.length - 1];
  const epochText = last
    ? ` · epoch ${last.epoch}: training loss ${fmt(last.train_loss)}, accuracy ${pct(last.train_accuracy)}`
      + (last.val_loss !== null ? `; validation loss ${fmt(last.val_loss)}, accuracy ${pct(last.val_accuracy)}` : "")
    : "";
  $("numbers").textContent = `last mini-batch: loss ${fmt(b.last_loss)}, accuracy ${pct(b.last_accuracy)}${per}${epochText}`;
}

function renderLive(s) {
  const form = $("live");
  for (const name of LIVE_FIELDS) {
    const input = $(`live-${name}`);
    if (document.activeElement !== input && !input.classList.contains("changed")) {
      input.value = s.settings[name];
    }
    input.disabled = ["stopped", "diverged", "failed"].includes(s.state);
  }
  const usesMomentum = ["momentum", "nesterov"].includes(s.config.optimizer);
  $("live-momentum").disabled ||= !usesMomentum;
  $("live-momentum").title = usesMomentum ? "" : `${s.config.optimizer} has no momentum`;
  form.dataset.lr = String(s.settings.lr);
  const pending = Object.entries(s.pending || {});
  $("pending").textContent = pending.length
    ? `Waiting to take effect: ${pending.map(([k, v]) => `${SETTING_NAMES[k]} ${v}`).join(", ")}`
    : "";
  for (const name of LIVE_FIELDS) {
    if (!(name in (s.pending || {}))) $(`live-${name}`).classList.remove("changed");
  }
  const body = $("changes").tBodies[0];
  const shown = s.changes.slice(-LOG_ROWS).reverse(); // the latest first
  body.replaceChildren(...shown.map((c) => el("tr",
    { "data-setting": c.setting, "data-step": String(c.step) },
    el("td", {}, String(c.step)), el("td", {}, String(c.epoch)),
    el("td", {}, SETTING_NAMES[c.setting] || c.setting),
    el("td", {}, String(typeof c.old === "number" ? fmt(c.old, 4) : c.old)),
    el("td", {}, String(typeof c.new === "number" ? fmt(c.new, 4) : c.new)))));
  if (!s.changes.length) {
    body.append(el("tr", {}, el("td", { colSpan: 5, className: "note" }, "No changes yet.")));
  } else if (s.changes.length > LOG_ROWS) {
    body.append(el("tr", {}, el("td", { colSpan: 5, className: "note" },
      `… and ${s.changes.length - LOG_ROWS} earlier changes (all saved with the run)`)));
  }
  $("changes").dataset.count = String(s.changes.length);
}

function renderHints(s) {
  const box = $("hints");
  box.dataset.ids = s.hints.map((h) => h.id).join(" ");
  if (!s.hints.length) {
    box.replaceChildren(el("p", { className: "note" }, "Nothing looks wrong so far."));
    return;
  }
  box.replaceChildren(...s.hints.map((h) => el("div", { class: `hint ${h.level}`, "data-id": h.id },
    el("h3", {}, h.title), el("p", { className: "why" }, h.why),
    el("div", { className: "fixes" }, ...h.fixes.map((f) => {
      const button = el("button", { type: "button", className: "secondary small" }, f.label);
      button.addEventListener("click", () => applyFix(f));
      return button;
    })))));
}

async function applyFix(fix) {
  if (fix.restart) {
    const config = { ...snap.config, ...fix.restart };
    fillSetup(config);
    await startRun(config);
    return;
  }
  await sendSetting(fix.setting, fix.value);
}

function renderLayers(s) {
  const m = s.measures;
  const series = (rows) => rows.map((y, i) => ({ x: m.step, y, colour: LAYER_COLOURS[i % LAYER_COLOURS.length], width: 1.6 }));
  drawChart($("chart-grad"), series(m.grad_norm), { log: true, xMax: Math.max(s.steps, 1) });
  drawChart($("chart-ratio"), series(m.update_ratio), { log: true, guides: [1e-3], xMax: Math.max(s.steps, 1) });
  drawChart($("chart-dead"), series(m.inactive), { yMin: 0, yMax: 1, percent: true, xMax: Math.max(s.steps, 1) });
  const activation = s.config.activation;
  $("dead-caption").textContent = {
    relu: "Dead ReLU units per hidden layer: output 0 for every image of a batch (no gradient flows through them).",
    leaky_relu: "Inactive units per hidden layer: negative for every image of a batch (leaky ReLU still lets 1 % of the gradient through).",
    sigmoid: "Saturated units per hidden layer: below 0.01 or above 0.99 for every image of a batch (the derivative is then under 0.01).",
    tanh: "Saturated units per hidden layer: |output| above 0.99 for every image of a batch.",
  }[activation] || "";
  const sizes = s.layer_sizes;
  $("layer-keys").replaceChildren(...sizes.slice(1).map((size, i) => {
    const span = el("span", { className: "key" }, `layer ${i + 1} (${sizes[i]}→${size}${i === sizes.length - 2 ? ", output" : ""})`);
    span.style.setProperty("--colour", LAYER_COLOURS[i % LAYER_COLOURS.length]);
    return span;
  }));
}

function renderHistograms(s) {
  const box = $("histograms");
  while (box.children.length < s.histograms.length) {
    box.append(el("figure", {}, el("canvas", { width: 280, height: 140 }), el("figcaption")));
  }
  while (box.children.length > s.histograms.length) box.lastChild.remove();
  s.histograms.forEach((h, i) => {
    const fig = box.children[i];
    drawHistogram(fig.querySelector("canvas"), h, LAYER_COLOURS[i % LAYER_COLOURS.length]);
    const shape = `${s.layer_sizes[i]}×${s.layer_sizes[i + 1]}`;
    fig.querySelector("figcaption").textContent = `layer ${i + 1} (${shape}): spread ${fmt(h.std_start)} → ${fmt(h.std_now)}`
      + (h.non_finite ? ` · ${h.non_finite} not finite!` : "");
  });
  box.dataset.layers = String(s.histograms.length);
}

function renderPreview(s) {
  const p = s.preview;
  const canvas = $("augment");
  let rows = [p.original];
  let caption;
  if (p.augmented) {
    rows.push(p.augmented);
    caption = `Top: ${p.shape[0]} training images; below: the ${p.augment} distortions this epoch trains on (fresh every epoch).`;
  } else {
    rows = [p.original, p.samples.affine, p.samples.elastic];
    caption = "Augmentation is off: the network trains on the originals (top row). Below: "
      + "what affine (middle row) and elastic (bottom row) augmentation would make of them "
      + "this epoch.";
  }
  drawImages(canvas, rows, p.shape, p.max);
  canvas.dataset.kind = p.augmented ? p.augment : "none";
  $("augment-caption").textContent = caption;
}

function renderGradcheck(g) {
  const table = $("gradcheck");
  if (!g) return;
  if (table.dataset.step === String(g.step) && table.dataset.ok === String(g.ok)) return;
  const cell = (v) => el("td", { className: v < g.tolerance ? "ok" : "bad" }, v.toExponential(1));
  table.tBodies[0].replaceChildren(...g.layers.map((r) => el("tr", {},
    el("td", {}, `layer ${r.layer}`), el("td", {}, r.shape.join("×")), cell(r.W), cell(r.b),
    el("td", { className: r.ok ? "ok" : "bad", title: r.ok ? "agrees" : "differs" },
      r.ok ? "✓" : "✗"))));
  table.dataset.ok = String(g.ok);
  table.dataset.step = String(g.step);
  const e = (v) => v.toExponential(0);
  $("gradcheck-note").textContent = `Relative error ‖analytic − numeric‖ / (‖analytic‖ + ‖numeric‖) `
    + `at step ${g.step}, on ${g.batch} images, ε = ${e(g.eps)}: `
    + (g.ok ? `every one is below ${e(g.tolerance)}: backpropagation computes the gradient.`
      : `some are above ${e(g.tolerance)} (with ReLU a finite difference may straddle a kink; check again).`);
}

// ---------------------------------------------------------------- buttons
function updateButtons() {
  const st = snap.state;
  const over = ["none", "stopped", "diverged", "failed"].includes(st);
  const waiting = ["ready", "paused", "done"].includes(st);
  $("btn-resume").disabled = busy || st === "running";
  $("btn-resume").textContent = over ? "▶ Start" : "▶ Run";
  $("btn-pause").disabled = busy || st !== "running";
  $("btn-epoch").disabled = busy || !(over || waiting || st === "running");
  $("btn-step").disabled = busy || !(over || waiting);
  $("btn-stop").disabled = busy || over;
  $("btn-gradcheck").disabled = busy || st === "none";
  $("btn-save").disabled = busy || st === "none" || !snap.steps;
}

async function control(action, extra = {}) {
  const st = snap.state;
  if (["none", "stopped", "diverged", "failed"].includes(st) && action !== "slow") {
    // nothing to go on with: a new run from the set-up form, in this mode
    await startRun(readSetup(), action === "resume" ? null : action);
    return;
  }
  await act(() => request("/api/lab/control", { action, ...extra }));
}

async function startRun(config, then = null) {
  say("");
  const delay = SLOW_STEPS[Number($("slow").value)];
  const result = await act(() => request("/api/lab/start", { config, paused: then !== null, delay }));
  if (result && then) await act(() => request("/api/lab/control", { action: then }));
  if (result) $("saved").textContent = "";
}

// -------------------------------------------------------------- set-up form
function fillSelect(select, values) {
  select.replaceChildren(...values.map((v) => el("option", { value: v }, v)));
}

function fillSetup(config) {
  const form = $("setup");
  for (const name of SETUP_FIELDS) {
    const input = form.elements[name];
    if (!input || !(name in config)) continue;
    input.value = Array.isArray(config[name]) ? config[name].join(" ") : config[name];
  }
  form.dataset.config = JSON.stringify(config);
}

function readSetup() {
  const form = $("setup");
  const base = JSON.parse(form.dataset.config || "{}");
  const config = { ...base };
  for (const name of SETUP_FIELDS) {
    const input = form.elements[name];
    if (!input) continue;
    if (name === "hidden") config.hidden = input.value.split(/[\s,]+/).filter(Boolean).map(Number);
    else if (NUMBER_FIELDS.has(name)) config[name] = Number(input.value);
    else config[name] = input.value;
  }
  return config;
}

function renderExperiments() {
  const list = $("experiments");
  list.replaceChildren(...options.experiments.map((e) => {
    const button = el("button", { type: "button", className: "secondary small" }, "Set up and start");
    button.dataset.experiment = e.id;
    button.addEventListener("click", async () => {
      const config = { ...options.defaults[e.config.dataset || "digits"], ...e.config };
      fillSetup(config);
      await startRun(readSetup());
      window.scrollTo({ top: 0, behavior: "smooth" });
    });
    const item = el("li", { "data-id": e.id }, el("h3", {}, e.title),
      el("p", {}, el("span", { className: "label" }, "Do: "), e.steps),
      el("p", {}, el("span", { className: "label" }, "Look at: "), e.look),
      el("p", {}, el("span", { className: "label" }, "You should see: "), e.expect));
    if (e.command) item.append(el("p", {}, el("span", { className: "label" }, "From the command line: "), el("code", {}, e.command)));
    item.append(button);
    return item;
  }));
}

// ------------------------------------------------------------------- wiring
function connect() {
  if (!window.EventSource) { // a browser without server-sent events: ask twice a second
    setInterval(async () => render(await request("/api/lab/state")), 500);
    return;
  }
  source = new EventSource("/api/lab/events");
  // a snapshot without the pictures keeps the last ones on screen
  source.addEventListener("state", (ev) => render(JSON.parse(ev.data), false));
}

async function init() {
  options = await request("/api/lab/options");
  const form = $("setup");
  fillSelect(form.elements.dataset, options.datasets.map((d) => d.name));
  fillSelect(form.elements.activation, options.choices.activation);
  fillSelect(form.elements.optimizer, options.choices.optimizer);
  fillSelect(form.elements.augment, options.choices.augment);
  fillSelect(form.elements.engine, options.choices.engine);
  fillSelect($("live-augment"), options.choices.augment);
  fillSetup(options.defaults.digits);
  form.elements.dataset.addEventListener("change", () => fillSetup(options.defaults[form.elements.dataset.value]));
  $("btn-defaults").addEventListener("click", () => fillSetup(options.defaults[form.elements.dataset.value]));
  $("setup-note").textContent = `The bundled digits set always works; MNIST and Fashion-MNIST `
    + `are loaded from this computer, never downloaded. Runs are saved in ${options.runs_dir}/.`;
  form.addEventListener("submit", (ev) => { ev.preventDefault(); startRun(readSetup()); });
  renderExperiments();

  $("btn-resume").addEventListener("click", () => control("resume"));
  $("btn-pause").addEventListener("click", () => control("pause"));
  $("btn-epoch").addEventListener("click", () => control("epoch"));
  $("btn-step").addEventListener("click", () => control("step"));
  $("btn-stop").addEventListener("click", () => control("stop"));
  $("slow").addEventListener("input", () => {
    const delay = SLOW_STEPS[Number($("slow").value)];
    $("slow-value").textContent = delay ? `${delay * 1000} ms/step` : "off";
    if (!["none", "stopped", "diverged", "failed"].includes(snap.state)) control("slow", { delay });
  });
  $("loss-log").addEventListener("change", () => render(snap));
  let resizing = false; // the charts follow the page's width (a phone turned, a window resized)
  window.addEventListener("resize", () => {
    if (resizing || snap.state === "none") return;
    resizing = true;
    requestAnimationFrame(() => { resizing = false; render(snap); });
  });
  $("btn-gradcheck").addEventListener("click", async () => {
    const g = await act(() => request("/api/lab/gradient-check", {}));
    if (g) renderGradcheck(g);
  });
  $("btn-save").addEventListener("click", async () => {
    say("Saving the model and drawing its report…");
    const r = await act(() => request("/api/lab/save", {}));
    if (r) {
      say("");
      const out = $("saved");
      out.dataset.folder = r.folder;
      out.replaceChildren(`Saved step ${r.steps} in ${r.folder} (test accuracy ${pct(r.test_accuracy)}). Open it in the drawing page: `,
        el("code", {}, r.serve), "; train it again, bit for bit: ", el("code", {}, r.replay), ".");
    }
  });
  for (const name of LIVE_FIELDS) {
    const input = $(`live-${name}`);
    input.addEventListener("input", () => input.classList.add("changed"));
    input.addEventListener("change", async () => {
      const value = name === "augment" ? input.value : Number(input.value);
      if (!(await sendSetting(name, value))) input.classList.remove("changed");
    });
  }
  render(await request("/api/lab/state"));
  connect();
}

init().catch((err) => say(`The lab could not start: ${err.message}`, true));
