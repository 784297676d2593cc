// vae explore: the page's behaviour. Every picture comes from the server (/api/...); this file
// holds the latent the sliders show and asks for its decoding, one request at a time.
"use strict";

// matplotlib's tab10, the colours of `visualize latent-map`.
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const FRAMES = 10;
const SLIDER_SPAN = 4; // the sliders cover the prior's mean +- 4 standard deviations

const $ = (id) => document.getElementById(id);
// label: the class a conditional model decodes as (the class picker's index; null for others).
const state = { model: null, z: [], label: null, a: null, b: null, map: null, chosenPoint: null, statusDone: false };

// --- talking to the server ----------------------------------------------------------------

function showMessage(text) {
  $("message").textContent = text || "";
  $("message").hidden = !text;
}

async function api(path, body, raw) {
  const options = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": raw ? "application/octet-stream" : "application/json" },
    body: raw ? body : JSON.stringify(body),
  };
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    showMessage("the explorer does not answer (was it stopped?)");
    return null;
  }
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    showMessage(data.error || `${response.status} ${response.statusText}`);
    return null;
  }
  showMessage("");
  return data;
}

// Calls of `send` coalesce: while one request runs, only the latest arguments wait, so a
// dragged slider never queues up stale decodes.
function latestOnly(send) {
  let running = false;
  let waiting = null;
  return function request(...args) {
    waiting = args;
    if (running) return;
    running = true;
    (async () => {
      while (waiting !== null) {
        const next = waiting;
        waiting = null;
        await send(...next);
      }
      running = false;
    })();
  };
}

// --- the class of a conditional model ----------------------------------------------------------

// A request's body with the picker's class, for a model that takes one.
function withLabel(body) {
  return state.label === null ? body : { ...body, label: state.label };
}

function className(label) {
  const names = state.model.classes;
  return names.length && label !== null && label < names.length ? names[label] : String(label);
}

function buildClassPicker(classes) {
  if (!classes.length) return;
  $("class").replaceChildren(...classes.map((name, index) => {
    const option = document.createElement("option");
    option.value = index;
    option.textContent = name === String(index) ? name : `${index} ${name}`;
    return option;
  }));
  $("class-box").hidden = false;
  state.label = 0;
  $("class").addEventListener("change", () => {
    state.label = Number($("class").value);
    decodeCurrent();
    if (state.a && state.b) drawPath();
  });
}

function setClass(label) {
  if (state.label === null || label === null || label === undefined) return;
  state.label = label;
  $("class").value = label;
}

// --- the latent and its sliders -------------------------------------------------------------

function sliderRange(d) {
  const mean = state.model.mean[d];
  const std = state.model.std[d] || 1;
  return { min: mean - SLIDER_SPAN * std, max: mean + SLIDER_SPAN * std, step: std / 100 };
}

function makeSlider(d, label) {
  const row = document.createElement("label");
  row.className = "slider";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = label;
  const input = document.createElement("input");
  const range = sliderRange(d);
  Object.assign(input, { type: "range", min: range.min, max: range.max, step: range.step });
  input.dataset.dim = d;
  input.setAttribute("aria-label", `latent dimension z${d}`);
  const value = document.createElement("output");
  input.addEventListener("input", () => {
    state.z[d] = Number(input.value);
    value.textContent = state.z[d].toFixed(2);
    decodeCurrent();
  });
  row.append(name, input, value);
  return row;
}

// In a hierarchy each slider says which group it moves, g1 the top (the page's header says so),
// as the server names the groups; other models' sliders are z0, z1, ...
function groupOf(d) {
  const group = (state.model.code_groups || [])[d];
  return group === undefined ? "" : ` g${group}`;
}

function buildSliders(order, inactive, importance) {
  const unit = klRanked() ? "KL" : "var";
  const label = (d) => {
    const name = `z${d}${groupOf(d)}`;
    return importance ? `${name} ${unit} ${importance[d].toFixed(2)}` : name;
  };
  $("sliders").replaceChildren(...order.map((d) => makeSlider(d, label(d))));
  $("inactive-sliders").replaceChildren(...inactive.map((d) => makeSlider(d, label(d))));
  $("inactive-box").hidden = inactive.length === 0;
  $("inactive-summary").textContent = `${inactive.length} inactive dimension${inactive.length === 1 ? "" : "s"} (barely used by the encoder)`;
  showLatent();
}

function showLatent() {
  for (const input of document.querySelectorAll("input[data-dim]")) {
    const value = state.z[Number(input.dataset.dim)];
    input.value = value; // the browser clamps it to the slider's range
    input.nextElementSibling.textContent = value.toFixed(2);
  }
}

function setLatent(z, image) {
  state.z = z.slice();
  showLatent();
  if (image) $("decoded").src = image;
  else decodeCurrent();
}

// Whether the server ranks the dimensions by their KL (a Gaussian posterior, the standard prior).
function klRanked() {
  return state.model.prior === "standard" && ["vae", "cvae"].includes(state.model.model_type);
}

const decodeCurrent = latestOnly(async () => {
  const answer = await api("/api/decode", withLabel({ z: state.z.slice() }));
  if (answer) $("decoded").src = answer.image;
});

// --- sample and reset -------------------------------------------------------------------------

async function sample() {
  const temperature = Number($("temperature").value);
  const seed = Math.floor(Math.random() * 2 ** 32);
  const answer = await api("/api/sample", withLabel({ seed, temperature }));
  if (answer) setLatent(answer.z, answer.image);
}

// --- encode -----------------------------------------------------------------------------------

function unmarkStrip() {
  for (const img of $("strip").children) img.classList.remove("chosen");
}

function showEncoded(answer) {
  if (!answer) return;
  setClass(answer.class);
  $("original").src = answer.original;
  $("reconstruction").src = answer.reconstruction;
  setLatent(answer.z, answer.reconstruction);
}

async function loadStrip() {
  const answer = await api("/api/test-images");
  if (!answer) return;
  $("strip").replaceChildren(...answer.images.map((item) => {
    const img = document.createElement("img");
    img.src = item.image;
    img.alt = item.label === null ? `test image ${item.index}` : `test image ${item.index}, label ${className(item.label)}`;
    img.title = img.alt;
    img.dataset.index = item.index;
    img.addEventListener("click", async () => {
      unmarkStrip();
      img.classList.add("chosen");
      $("upload-warning").hidden = true;
      showEncoded(await api("/api/encode/test", { index: item.index }));
    });
    return img;
  }));
}

async function upload() {
  const file = $("upload").files[0];
  if (!file) return;
  if (file.size > state.model.max_upload_bytes) {
    showMessage(`${file.name} is larger than the ${state.model.max_upload_bytes.toLocaleString()}-byte limit`);
    return;
  }
  unmarkStrip();
  // The Invert box is the commands' --invert; the server says when an upload looks inverted.
  const invert = $("invert").checked ? 1 : 0;
  // A conditional model encodes the upload as the picker's class.
  const label = state.label === null ? "" : `&label=${state.label}`;
  const answer = await api(`/api/encode/upload?invert=${invert}${label}`, file, true);
  $("upload-warning").textContent = answer && answer.warning ? answer.warning : "";
  $("upload-warning").hidden = !(answer && answer.warning);
  showEncoded(answer);
}

// --- interpolate ------------------------------------------------------------------------------

function setEnd(which) {
  state[which] = state.z.slice();
  $(`thumb-${which}`).src = $("decoded").src;
  if (state.a && state.b) drawPath();
}

async function drawPath() {
  const t = Array.from({ length: FRAMES }, (_, i) => i / (FRAMES - 1));
  const answer = await api("/api/interpolate", withLabel({ a: state.a, b: state.b, t }));
  if (!answer) return;
  $("t").disabled = false;
  $("frames").replaceChildren(...answer.images.map((image, i) => {
    const img = document.createElement("img");
    img.src = image;
    img.alt = `frame ${i + 1} of ${FRAMES}`;
    img.addEventListener("click", () => {
      $("t").value = t[i];
      setLatent(answer.z[i], image);
    });
    return img;
  }));
}

const moveAlongPath = latestOnly(async (t) => {
  const answer = await api("/api/interpolate", withLabel({ a: state.a, b: state.b, t: [t] }));
  if (answer) setLatent(answer.z[0], answer.images[0]);
});

// --- latent map -------------------------------------------------------------------------------

const MAP_MARGIN = 12;

function mapScale() {
  const canvas = $("map");
  const xs = state.map.points.map((p) => p[0]);
  const ys = state.map.points.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const width = canvas.width - 2 * MAP_MARGIN;
  const height = canvas.height - 2 * MAP_MARGIN;
  return (p) => [
    MAP_MARGIN + ((p[0] - x0) / (x1 - x0 || 1)) * width,
    MAP_MARGIN + (1 - (p[1] - y0) / (y1 - y0 || 1)) * height,
  ];
}

function drawMap() {
  const canvas = $("map");
  const context = canvas.getContext("2d");
  const place = mapScale();
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.globalAlpha = 0.55;
  state.map.points.forEach((p, i) => {
    const label = state.map.labels ? state.map.labels[i] : null;
    context.fillStyle = label === null ? "#1f77b4" : COLOURS[((label % 10) + 10) % 10];
    const [x, y] = place(p);
    context.fillRect(x - 1, y - 1, 2.2, 2.2);
  });
  context.globalAlpha = 1;
  if (state.chosenPoint !== null) {
    const [x, y] = place(state.map.points[state.chosenPoint]);
    context.strokeStyle = "#000";
    context.lineWidth = 2;
    context.beginPath();
    context.arc(x, y, 6, 0, 2 * Math.PI);
    context.stroke();
  }
}

async function loadMap() {
  const answer = await api("/api/map");
  if (!answer) return;
  state.map = answer;
  $("map-title").textContent = `${answer.title}. Click a point to decode it.`;
  const labels = [...new Set(answer.labels || [])].sort((x, y) => x - y);
  $("legend").replaceChildren(...labels.map((label) => {
    const item = document.createElement("span");
    item.textContent = className(label);
    item.style.setProperty("--dot", COLOURS[((label % 10) + 10) % 10]);
    return item;
  }));
  drawMap();
}

async function clickMap(event) {
  if (!state.map) return;
  const canvas = $("map");
  const box = canvas.getBoundingClientRect();
  const x = (event.clientX - box.left) * (canvas.width / box.width);
  const y = (event.clientY - box.top) * (canvas.height / box.height);
  const place = mapScale();
  let best = 0;
  let bestDistance = Infinity;
  state.map.points.forEach((p, i) => {
    const [px, py] = place(p);
    const distance = (px - x) ** 2 + (py - y) ** 2;
    if (distance < bestDistance) [best, bestDistance] = [i, distance];
  });
  state.chosenPoint = best;
  drawMap();
  unmarkStrip();
  showEncoded(await api("/api/map/point", { index: best }));
}

// --- what has loaded ------------------------------------------------------------------------

function describe(feature) {
  if (feature.state === "ready") return "";
  if (feature.state === "loading") return "loading\u2026";
  return `not available: ${feature.reason}`;
}

async function pollStatus() {
  const answer = await api("/api/status");
  if (!answer) {
    setTimeout(pollStatus, 2000);
    return;
  }
  const { encoder, test_images: images, latent_map: map } = answer.features;
  const encoderReady = encoder.state === "ready";
  const imagesReady = images.state === "ready";
  $("upload").disabled = !encoderReady;
  $("set-a").disabled = !encoderReady;
  $("set-b").disabled = !encoderReady;
  $("encode-state").textContent = encoderReady ? (imagesReady ? "" : `(test images ${describe(images)})`) : describe(encoder);
  $("interpolate-state").textContent = describe(encoder);
  $("map-state").textContent = describe(map);
  const loading = encoder.state === "loading" || images.state === "loading";
  $("status").textContent = loading ? "loading the encoder and the test images\u2026" : "";
  if (imagesReady) {
    buildSliders(answer.order, answer.inactive, answer.importance);
    $("order-note").textContent = `Most informative first, as visualize traverse orders them (${klRanked() ? "average KL in nats" : "variance of the posterior means"}).`;
    await Promise.all([loadStrip(), map.state === "ready" ? loadMap() : null]);
  }
  if (loading) setTimeout(pollStatus, 400);
  else {
    state.statusDone = true;
    document.body.dataset.ready = "true";
  }
}

// --- start ------------------------------------------------------------------------------------

async function start() {
  const model = await api("/api/model");
  if (!model) return;
  state.model = model;
  const kinds = {
    ae: "autoencoder",
    cvae: `conditional VAE, ${model.prior} prior, ${model.classes.length} classes`,
    hvae: `hierarchical VAE, ${model.latent_groups} groups drawn top-down (g1, the top, to g${model.latent_groups}), ${model.prior} prior on g1`,
  };
  const kind = kinds[model.model_type] || `VAE, ${model.prior} prior`;
  $("model-line").textContent = `${model.checkpoint}: ${kind}, ${model.latent_dim}-dimensional latent, ${model.channels}\u00d7${model.height}\u00d7${model.width} images`;
  const all = Array.from({ length: model.latent_dim }, (_, d) => d);
  $("order-note").textContent = "In index order until the encoder has ranked them.";
  state.z = model.mean.slice();
  buildClassPicker(model.classes);
  buildSliders(all, [], null);
  decodeCurrent();
  $("sample").addEventListener("click", sample);
  $("reset").addEventListener("click", () => setLatent(state.model.mean));
  $("temperature").addEventListener("input", () => {
    $("temperature-value").textContent = Number($("temperature").value).toFixed(2);
  });
  $("upload").addEventListener("change", upload);
  $("invert").addEventListener("change", upload);
  $("set-a").addEventListener("click", () => setEnd("a"));
  $("set-b").addEventListener("click", () => setEnd("b"));
  $("t").addEventListener("input", () => moveAlongPath(Number($("t").value)));
  $("map").addEventListener("click", clickMap);
  document.body.dataset.usable = "true";
  pollStatus();
}

start();
