// The page of `mobilenetv3 export --format web`: the exported model on
// onnxruntime-web (WebAssembly, in this folder; nothing is fetched from
// elsewhere), images prepared as mobilenetv3's Python predictor prepares
// them (preprocess.mjs), results drawn on the picture.
//
// For scripts and tests: `window.mobilenetv3.ready` (a Promise of the
// backend info), `window.mobilenetv3.predict(blobOrUrl)` (the result, also in
// `window.results`), `window.timings` (per image: preprocess_ms (decode_ms
// of it for decoding the file), inference_ms, postprocess_ms) and `window.mobilenetv3.benchmark(n)` (n
// more runs of the last image's input; their inference times in ms).
// `?threads=N` in the URL sets onnxruntime-web's thread count (more than 1
// needs a cross-origin isolated page: serve.py sends the headers).

import * as ort from "./ort/ort.wasm.min.mjs";
import { applyPolicy, rgbaToRgb, toInput } from "./preprocess.mjs";

const $ = (id) => document.getElementById(id);
const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
  "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075"];

window.timings = [];
window.results = null;
let config, labels, session, lastInput = null;

async function start() {
  config = await (await fetch("model.json")).json();
  labels = (await (await fetch("labels.txt")).text()).split("\n").filter((line) => line.length > 0);
  $("title").textContent = config.title;
  document.title = config.title;
  ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
  const threads = new URLSearchParams(location.search).get("threads");
  if (threads !== null) ort.env.wasm.numThreads = Number(threads);
  const started = performance.now();
  session = await ort.InferenceSession.create(config.model, { executionProviders: ["wasm"] });
  const backend = {
    runtime: `onnxruntime-web ${ort.env.versions.web}`, executionProvider: "wasm", simd: true,
    threads: ort.env.wasm.numThreads, crossOriginIsolated: self.crossOriginIsolated,
    hardwareConcurrency: navigator.hardwareConcurrency, load_ms: performance.now() - started,
  };
  window.backend = backend;
  $("status").textContent = `${config.kind}, input ${config.policy.image_size}x${config.policy.image_size}; `
    + `${backend.runtime}, WebAssembly SIMD, ${backend.threads} thread(s)`
    + `${backend.crossOriginIsolated ? "" : " (not cross-origin isolated: serve with serve.py for threads)"}.`;
  return backend;
}

async function decode(source) {
  const blob = typeof source === "string" ? await (await fetch(source)).blob() : source;
  const bitmap = await createImageBitmap(blob, {
    colorSpaceConversion: "none", premultiplyAlpha: "none", imageOrientation: "from-image",
  });
  const canvas = $("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  const pixels = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  return rgbaToRgb(pixels, bitmap.width, bitmap.height);
}

function softmax(values) {
  const max = Math.max(...values);
  const exps = values.map((v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((v) => v / sum);
}

function classify(outputs) {
  let scores = Array.from(outputs[session.outputNames[0]].data);
  if (config.softmax) scores = softmax(scores);
  const order = scores.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, 5);
  const top5 = order.map(([probability, index]) => ({ index, label: labels[index], probability }));
  $("results").innerHTML = "<ol>" + top5.map((r) => `<li><span class="label">${escape(r.label)}</span> `
    + `<span class="probability">${r.probability.toFixed(4)}</span>`
    + `<div class="bar" style="width:${Math.max(2, r.probability * 260)}px"></div></li>`).join("") + "</ol>";
  return { kind: "classifier", top5, probabilities: scores };
}

function detect(outputs, width, height) {
  const size = config.policy.image_size;
  const count = outputs.num_detections.data[0];
  const boxes = outputs.boxes.data, scores = outputs.confidence.data, classes = outputs.labels.data;
  const detections = [];
  for (let i = 0; i < count; i++) {
    const box = [boxes[i * 4] * width / size, boxes[i * 4 + 1] * height / size,
      boxes[i * 4 + 2] * width / size, boxes[i * 4 + 3] * height / size]
      .map((v, j) => Math.min(Math.max(v, 0), j % 2 ? height : width));
    detections.push({ box, score: scores[i], label: classes[i], name: labels[classes[i]] ?? `class ${classes[i]}` });
  }
  const shown = detections.filter((d) => d.score >= config.display_threshold);
  const context = $("canvas").getContext("2d");
  const line = Math.max(2, Math.round(Math.max(width, height) / 200));
  context.font = `${Math.max(12, line * 6)}px system-ui, sans-serif`;
  for (const d of shown) {
    const color = COLORS[d.label % COLORS.length];
    const [x0, y0, x1, y1] = d.box;
    context.lineWidth = line;
    context.strokeStyle = color;
    context.strokeRect(x0, y0, x1 - x0, y1 - y0);
    const text = `${d.name} ${d.score.toFixed(2)}`;
    const textHeight = line * 6 + 4;
    context.fillStyle = color;
    context.fillRect(x0, Math.max(0, y0 - textHeight), context.measureText(text).width + 8, textHeight);
    context.fillStyle = "#fff";
    context.fillText(text, x0 + 4, Math.max(textHeight, y0) - 4);
  }
  $("results").innerHTML = `<p>${detections.length} detection(s); ${shown.length} drawn `
    + `(score at least ${config.display_threshold})</p><ol>`
    + shown.slice(0, 20).map((d) => `<li>${escape(d.name)} ${d.score.toFixed(3)}</li>`).join("") + "</ol>";
  return { kind: "detector", detections };
}

function segment(outputs, width, height) {
  const scores = outputs[session.outputNames[0]];
  const [, rows, cols, classes] = scores.dims;
  const mask = new Int32Array(rows * cols);
  const counts = new Array(classes).fill(0);
  const overlay = new ImageData(cols, rows);
  for (let p = 0; p < rows * cols; p++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (scores.data[p * classes + c] > scores.data[p * classes + best]) best = c;
    mask[p] = best;
    counts[best] += 1;
    if (best !== 0) {
      const hex = COLORS[(best - 1) % COLORS.length];
      overlay.data.set([parseInt(hex.slice(1, 3), 16), parseInt(hex.slice(3, 5), 16), parseInt(hex.slice(5, 7), 16),
        140], p * 4);
    }
  }
  const small = new OffscreenCanvas(cols, rows);
  small.getContext("2d").putImageData(overlay, 0, 0);
  const context = $("canvas").getContext("2d");
  context.imageSmoothingEnabled = false;
  context.drawImage(small, 0, 0, width, height);
  const present = counts.map((n, c) => [n, c]).filter(([n]) => n > 0).sort((a, b) => b[0] - a[0]);
  $("results").innerHTML = "<ol>" + present.map(([n, c]) => `<li>${escape(labels[c] ?? `class ${c}`)}: `
    + `${(100 * n / (rows * cols)).toFixed(1)}% of pixels</li>`).join("") + "</ol>";
  return { kind: "segmenter", mask: Array.from(mask), size: [rows, cols], counts };
}

function escape(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

async function predict(source) {
  await window.mobilenetv3.ready;
  const t0 = performance.now();
  const image = await decode(source);
  const decoded = performance.now();
  const prepared = applyPolicy(image, config.policy);
  const size = config.policy.image_size;
  const data = toInput(prepared, config.rescale?.scale ?? null, config.rescale?.offset ?? null);
  lastInput = new ort.Tensor("float32", data, [1, size, size, 3]);
  const t1 = performance.now();
  const outputs = await session.run({ [config.input]: lastInput });
  const t2 = performance.now();
  const result = config.kind === "classifier" ? classify(outputs)
    : config.kind === "detector" ? detect(outputs, image.width, image.height) : segment(outputs, image.width, image.height);
  const t3 = performance.now();
  const timing = { preprocess_ms: t1 - t0, decode_ms: decoded - t0, inference_ms: t2 - t1, postprocess_ms: t3 - t2 };
  window.timings.push(timing);
  $("timing").textContent = `decode and resize ${timing.preprocess_ms.toFixed(1)} ms, `
    + `inference ${timing.inference_ms.toFixed(1)} ms, drawing ${timing.postprocess_ms.toFixed(1)} ms`;
  result.image_size = [image.height, image.width];
  window.results = result;
  return result;
}

async function benchmark(runs = 20) {
  if (lastInput === null) throw new Error("predict an image first");
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await session.run({ [config.input]: lastInput });
    times.push(performance.now() - t);
  }
  return times;
}

window.mobilenetv3 = { ready: start(), predict, benchmark };
window.mobilenetv3.ready.catch((error) => {
  $("status").innerHTML = `<span class="error">${escape(error.message ?? error)}</span>`;
});

async function run(file) {
  try {
    await predict(file);
  } catch (error) {
    $("results").innerHTML = `<p class="error">${escape(error.message ?? error)}</p>`;
  }
}
$("file").addEventListener("change", (event) => event.target.files[0] && run(event.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files[0]) run(event.dataTransfer.files[0]);
});
