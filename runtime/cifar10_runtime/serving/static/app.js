// The try-it page: one image in (chosen, dropped or pasted), the model's top 5 out.
// Talks only to this server: GET v1/metadata once, POST v1/predict per image.
"use strict";

const $ = (id) => document.getElementById(id);
const view = {
  file: $("file"), drop: $("drop"), status: $("status"), error: $("error"),
  result: $("result"), top1: $("top1"), top1Pct: $("top1-pct"), top5: $("top5"),
  seen: $("seen"), original: $("original"), originalFigure: $("original-figure"),
  fileInfo: $("file-info"), version: $("version"), modelFacts: $("model-facts"),
  classes: $("classes"), resultVersion: $("result-version"), latency: $("latency"),
  roundTrip: $("round-trip"),
};
let topK = 5;
let latest = 0; // only the newest request may paint its answer

function percent(p) {
  const value = p * 100;
  if (value > 0 && value < 0.1) return "<0.1%";
  return `${value.toFixed(1)}%`;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function oneLine(text) {
  return String(text).replace(/\s+/g, " ").trim();
}

async function loadMetadata() {
  try {
    const response = await fetch("v1/metadata", { headers: { Accept: "application/json" } });
    const info = await response.json();
    if (!response.ok) throw new Error(info.error || `HTTP ${response.status}`);
    topK = Math.min(5, info.class_names.length);
    view.version.textContent = info.model_version;
    view.classes.textContent = `Classes: ${info.class_names.join(", ")}.`;
    view.modelFacts.textContent = accuracyText(info.metrics || {});
  } catch (err) {
    view.version.textContent = "unknown";
    showError(`could not read v1/metadata: ${oneLine(err.message)}`);
  }
}

function accuracyText(metrics) {
  const accuracy = metrics.test_accuracy ?? metrics.accuracy;
  if (typeof accuracy !== "number") return "";
  const count = metrics.test_images ?? metrics.count;
  const on = count ? ` on ${count}${metrics.synthetic ? " synthetic" : ""} test images` : "";
  return `· accuracy ${percent(accuracy)}${on}`;
}

function showError(message) {
  view.error.textContent = oneLine(message);
  view.error.hidden = false;
}

async function classify(file) {
  if (!file) return;
  const mine = ++latest;
  const name = file.name || "pasted image";
  view.error.hidden = true;
  view.top1.textContent = ""; // never leave the previous answer readable as this one's
  view.top1Pct.textContent = "";
  view.status.textContent = `Classifying ${name}…`;
  document.body.classList.add("busy");
  const original = createImageBitmap(file).catch(() => null); // preview only; may not decode
  const form = new FormData();
  form.append("image", file, name); // multipart, so server errors name the file
  const started = performance.now();
  let response;
  let answer = null;
  try {
    response = await fetch(`v1/predict?top_k=${topK}&include_input=1`, { method: "POST", body: form });
    answer = await response.json().catch(() => null);
  } catch (err) {
    if (mine === latest) fail(name, `could not reach the server: ${oneLine(err.message)}`);
    return;
  }
  if (mine !== latest) return;
  if (!response.ok || !answer || !Array.isArray(answer.predictions)) {
    const reason = answer && answer.error ? answer.error : `HTTP ${response.status} ${response.statusText}`;
    fail(name, reason);
    return;
  }
  const roundTrip = performance.now() - started;
  show(answer, response, file, name, roundTrip);
  const bitmap = await original;
  if (mine === latest) drawOriginal(bitmap);
  else if (bitmap) bitmap.close();
}

function fail(name, message) {
  document.body.classList.remove("busy");
  view.result.hidden = true;
  view.top1.textContent = "";
  view.status.textContent = `Could not classify ${name}.`;
  showError(message);
  view.file.value = ""; // choosing the same file again must fire "change"
}

function show(answer, response, file, name, roundTrip) {
  const prediction = answer.predictions[0];
  view.top1.textContent = prediction.label;
  view.top1Pct.textContent = percent(prediction.probability);
  view.top5.replaceChildren(...prediction.top_k.map(bar));
  drawSeen(prediction.input_rgb);
  view.resultVersion.textContent = answer.model_version;
  view.version.textContent = answer.model_version;
  view.latency.textContent = serverTiming(response) ?? "not reported";
  view.roundTrip.textContent = `${roundTrip.toFixed(1)} ms`;
  view.fileInfo.textContent = `${name}, ${bytes(file.size)}`;
  view.result.hidden = false;
  document.body.classList.remove("busy");
  view.status.textContent = `${name}: ${prediction.label}, ${percent(prediction.probability)}.`;
  view.file.value = "";
}

function bar(score, rank) {
  const item = document.createElement("li");
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = score.label;
  const track = document.createElement("span");
  track.className = "track";
  track.setAttribute("aria-hidden", "true");
  const fill = document.createElement("span");
  fill.className = rank === 0 ? "fill best" : "fill";
  fill.style.width = `${Math.max(0, Math.min(100, score.probability * 100))}%`;
  track.append(fill);
  const value = document.createElement("span");
  value.className = "value";
  value.textContent = percent(score.probability);
  item.append(label, track, value);
  return item;
}

function serverTiming(response) {
  // "predict;dur=0.812" (Server-Timing, set by /v1/predict)
  const header = response.headers.get("Server-Timing") || "";
  const match = /dur=([0-9.]+)/.exec(header);
  if (!match) return null;
  const batch = response.headers.get("X-Batch-Size");
  const shared = batch && batch !== "1" ? ` (batched with ${batch - 1} other)` : "";
  return `${Number(match[1]).toFixed(2)} ms${shared}`;
}

function drawSeen(b64) {
  const context = view.seen.getContext("2d");
  if (!b64) {
    context.clearRect(0, 0, 32, 32);
    return;
  }
  const raw = atob(b64);
  const pixels = context.createImageData(32, 32);
  for (let i = 0, j = 0; i < raw.length; i += 3, j += 4) {
    pixels.data[j] = raw.charCodeAt(i);
    pixels.data[j + 1] = raw.charCodeAt(i + 1);
    pixels.data[j + 2] = raw.charCodeAt(i + 2);
    pixels.data[j + 3] = 255;
  }
  context.putImageData(pixels, 0, 0);
}

function drawOriginal(bitmap) {
  view.originalFigure.hidden = !bitmap;
  if (!bitmap) return;
  const canvas = view.original;
  const context = canvas.getContext("2d");
  const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
  const w = bitmap.width * scale;
  const h = bitmap.height * scale;
  context.clearRect(0, 0, canvas.width, canvas.height);
  // Enlarged small images keep their pixels visible, as the model's view does.
  context.imageSmoothingEnabled = scale < 1;
  context.imageSmoothingQuality = "high";
  context.drawImage(bitmap, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
  bitmap.close();
}

function firstFile(list) {
  const files = Array.from(list || []);
  return files.find((f) => f.type.startsWith("image/")) || files[0];
}

view.file.addEventListener("change", () => classify(view.file.files[0]));

// The whole page is a drop target, so a near miss still counts.
let dragDepth = 0;
document.addEventListener("dragenter", (event) => {
  event.preventDefault();
  dragDepth += 1;
  view.drop.classList.add("over");
});
document.addEventListener("dragover", (event) => event.preventDefault());
document.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) view.drop.classList.remove("over");
});
document.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  view.drop.classList.remove("over");
  const file = firstFile(event.dataTransfer && event.dataTransfer.files);
  if (file) classify(file);
  else showError("nothing to classify in what was dropped: drop an image file.");
});
document.addEventListener("paste", (event) => {
  const file = firstFile(event.clipboardData && event.clipboardData.files);
  if (!file) return; // plain text pastes are left alone
  event.preventDefault();
  classify(file);
});

loadMetadata();
