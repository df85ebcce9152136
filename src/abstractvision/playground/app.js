// abstractvision playground: plain JavaScript, no dependencies, talks to this server's own API.
"use strict";

const COMMON = ["negative_prompt", "width", "height", "steps", "guidance_scale", "seed"];
const FIELDS = {
  text_to_image: ["prompt", ...COMMON, "n"],
  image_to_image: ["prompt", "image", "mask", "strength", ...COMMON, "n"],
  image_upscale: ["image", "prompt", "negative_prompt", "scale", "steps", "guidance_scale", "seed"],
  multi_view_image: ["prompt", "image", "angles", "strength", ...COMMON],
  text_to_video: ["prompt", ...COMMON, "num_frames", "fps", "n"],
  image_to_video: ["image", "prompt", ...COMMON, "num_frames", "fps", "n"],
};
const NUMBERS = ["width", "height", "steps", "guidance_scale", "seed", "n", "strength", "scale", "num_frames", "fps"];
const INTEGERS = new Set(["width", "height", "steps", "seed", "n", "num_frames", "fps"]);
const TERMINAL = new Set(["completed", "failed", "cancelled"]);

const $ = (id) => document.getElementById(id);
const state = { models: [], job: null, abort: null, blobUrls: [], logCount: 0 };
// the newest live preview, painted at most once per frame (a slow machine skips, never queues)
const preview = { latest: null, scheduled: false };

// -- HTTP ------------------------------------------------------------------------------

function authHeaders(extra = {}) {
  const key = $("api-key").value.trim();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: authHeaders(options.headers || {}) });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) message = `${response.status}: ${body.error.message}`;
    } catch (_) { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response;
}

async function blobUrl(url) {
  const response = await api(url);
  const blob = await response.blob();
  const href = URL.createObjectURL(blob);
  state.blobUrls.push(href);
  return { href, type: blob.type };
}

function fileToDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// -- UI helpers ------------------------------------------------------------------------

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

// Each line carries its own number (not the list marker, which a narrow margin cut to its
// last digit) and keeps it when older lines scroll out of the 60 kept.
function logEvent(text) {
  state.logCount += 1;
  const item = document.createElement("li");
  const number = document.createElement("span");
  number.className = "n";
  number.textContent = `${state.logCount}.`;
  item.append(number, ` ${text}`);
  $("events").appendChild(item);
  while ($("events").children.length > 60) $("events").firstChild.remove();
  $("events").scrollTop = $("events").scrollHeight;
}

function mediaCard(href, type, caption, filename) {
  const card = $("media-card").content.firstElementChild.cloneNode(true);
  const holder = card.querySelector(".media");
  let media;
  if (type.startsWith("video/")) {
    media = document.createElement("video");
    media.controls = true;
    media.loop = true;
    media.muted = true;
    media.autoplay = true;
  } else {
    media = document.createElement("img");
    media.alt = caption;
  }
  media.src = href;
  holder.appendChild(media);
  card.querySelector(".caption").textContent = caption;
  const link = card.querySelector(".download");
  link.href = href;
  link.download = filename;
  return card;
}

function extensionFor(type) {
  return { "image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif", "video/mp4": ".mp4", "video/webm": ".webm" }[type] || ".bin";
}

// -- models and tasks ------------------------------------------------------------------

async function loadServer() {
  try {
    const health = await (await fetch("/healthz")).json();
    $("server-info").textContent = `v${health.version} · serving ${health.models.join(", ")}`;
  } catch (error) {
    $("server-info").textContent = `server unreachable: ${error.message}`;
  }
  await refreshModels();
  refreshArtifacts();
}

function loadedLabel(model) {
  if (model.loaded === true) return "loaded";
  if (model.loaded === false) return "not loaded";
  return "remote";
}

// The picker: every served model by name, with its tasks and whether its weights are loaded.
async function refreshModels() {
  try {
    const body = await (await api("/v1/models")).json();
    state.models = body.data.filter((m) => m.served);
    const select = $("model");
    const previous = select.value;
    select.replaceChildren();
    for (const model of state.models) {
      const tasks = model.tasks || model.capabilities || [];
      const option = new Option(`${model.id} · ${loadedLabel(model)}`, model.id);
      option.title = `${model.id} (${model.backend || "backend"}): ${tasks.join(", ")}${model.description ? ` · ${model.description}` : ""}`;
      select.add(option);
    }
    if ([...select.options].some((o) => o.value === previous)) select.value = previous;
    updateTasks();
  } catch (error) {
    setStatus(error.status === 401 ? "This server needs an API key (top right)." : error.message, true);
  }
}

function updateTasks() {
  const model = state.models.find((m) => m.id === $("model").value);
  $("model-info").textContent = model
    ? `${model.id} · ${model.backend || "backend"} · ${loadedLabel(model)} · runs ${(model.tasks || model.capabilities || []).map((t) => t.replaceAll("_", " ")).join(", ")}`
    : "";
  // what the operator says about the model (serve --demo: its outputs are noise), shown as a notice
  $("model-note").textContent = model && model.description ? model.description : "";
  $("model-note").classList.toggle("hidden", !(model && model.description));
  $("model").title = model ? model.id : "";
  const select = $("task");
  const previous = select.value;
  select.replaceChildren();
  for (const task of (model ? model.capabilities : [])) select.add(new Option(task.replaceAll("_", " "), task));
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
  updateFields();
}

function updateFields() {
  const fields = new Set(FIELDS[$("task").value] || []);
  for (const element of document.querySelectorAll("[data-show]")) {
    element.classList.toggle("hidden", !fields.has(element.dataset.show));
  }
}

async function previewInputs() {
  const holder = $("input-preview");
  holder.replaceChildren();
  for (const id of ["image", "mask"]) {
    const file = $(id).files[0];
    if (!file) continue;
    const img = document.createElement("img");
    img.className = "small";
    img.alt = id;
    img.src = URL.createObjectURL(file);
    holder.appendChild(img);
  }
}

// -- generation ------------------------------------------------------------------------

async function buildBody() {
  const task = $("task").value;
  const fields = new Set(FIELDS[task] || []);
  const body = { task, model: $("model").value || null };
  if (fields.has("prompt") && $("prompt").value.trim()) body.prompt = $("prompt").value;
  if (fields.has("negative_prompt") && $("negative_prompt").value.trim()) body.negative_prompt = $("negative_prompt").value;
  for (const name of NUMBERS) {
    if (!fields.has(name)) continue;
    const raw = $(name).value.trim();
    if (raw === "") continue;
    const value = Number(raw);
    if (!Number.isFinite(value)) throw new Error(`${name} must be a number`);
    body[name] = INTEGERS.has(name) ? Math.trunc(value) : value;
  }
  if (body.n === 1) delete body.n;
  if (fields.has("angles")) {
    body.angles = $("angles").value.split(",").map((s) => s.trim()).filter(Boolean);
  }
  if (fields.has("image") && $("image").files[0]) {
    const key = task === "multi_view_image" ? "reference_image" : "image";
    body[key] = await fileToDataUrl($("image").files[0]);
  }
  if (fields.has("mask") && $("mask").files[0]) body.mask = await fileToDataUrl($("mask").files[0]);
  if ($("live-previews").checked) body.preview_every = 1;
  return body;
}

async function generate(event) {
  event.preventDefault();
  $("events").replaceChildren();
  state.logCount = 0;
  $("results").replaceChildren();
  $("progress").value = 0;
  preview.latest = null;
  $("preview").classList.add("hidden");
  let job;
  try {
    const body = await buildBody();
    setStatus("submitting…");
    job = await (await api("/v1/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    })).json();
  } catch (error) {
    setStatus(error.message, true);
    return;
  }
  state.job = job;
  $("generate").disabled = true;
  $("cancel").disabled = false;
  setStatus(`${job.status} · ${job.id}`);
  try {
    await follow(job.id);
  } catch (error) {
    logEvent(`stream interrupted (${error.message}); polling`);
    await poll(job.id);
  } finally {
    $("generate").disabled = false;
    $("cancel").disabled = true;
    state.abort = null;
  }
}

function onStatus(data) {
  $("progress").value = data.progress || 0;
  setStatus(`${data.status} · ${data.id}`, data.status === "failed");
  if (TERMINAL.has(data.status)) finished(data);
}

function onProgress(data) {
  if (typeof data.progress === "number") $("progress").value = data.progress;
  else if (data.step && data.total_steps) $("progress").value = data.step / data.total_steps;
  const step = data.step ? ` ${data.step}/${data.total_steps || "?"}` : "";
  const text = `${data.phase}${step}${data.message ? ` · ${data.message}` : ""}`;
  logEvent(text);
  setStatus(`in_progress · ${text}`);
}

function onPreview(data) {
  preview.latest = data;
  if (preview.scheduled) return;
  preview.scheduled = true;
  requestAnimationFrame(() => {
    preview.scheduled = false;
    const shown = preview.latest;
    if (!shown || !state.job) return;
    $("preview-image").src = `data:${shown.mime_type};base64,${shown.b64_json}`;
    const frame = shown.frame != null ? ` · frame ${shown.frame}` : "";
    const step = shown.step ? `step ${shown.step}/${shown.total_steps || "?"}` : "preview";
    $("preview-caption").textContent = `${step}${frame} · ${shown.decoder}`;
    $("preview").classList.remove("hidden");
  });
}

// Server-sent events read with fetch (EventSource cannot send the Authorization header).
async function follow(jobId) {
  state.abort = new AbortController();
  const response = await api(`/v1/jobs/${jobId}/events`, { signal: state.abort.signal });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let done = false;
  while (!done) {
    const chunk = await reader.read();
    if (chunk.done) break;
    buffer += decoder.decode(chunk.value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (!data) continue;
      const payload = JSON.parse(data);
      if (name === "progress") onProgress(payload);
      if (name === "preview") onPreview(payload);
      if (name === "status") {
        onStatus(payload);
        if (TERMINAL.has(payload.status)) done = true;
      }
    }
  }
}

async function poll(jobId) {
  for (;;) {
    const job = await (await api(`/v1/jobs/${jobId}`)).json();
    onStatus(job);
    if (TERMINAL.has(job.status)) return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function finished(data) {
  refreshModels(); // a job may have loaded (or unloaded) a model
  if (data.status === "failed") {
    setStatus(`failed: ${data.error ? data.error.message : "unknown error"}`, true);
    return;
  }
  if (data.status === "cancelled") {
    setStatus("cancelled");
    return;
  }
  setStatus(`completed · ${data.results.length} result(s)`);
  $("progress").value = 1;
  preview.latest = null;
  $("preview").classList.add("hidden"); // the result replaces the live preview
  for (const [index, ref] of data.results.entries()) {
    const { href, type } = await blobUrl(ref.url);
    const seed = ref.metadata && ref.metadata.seed != null ? `seed ${ref.metadata.seed}` : `#${index + 1}`;
    $("results").appendChild(mediaCard(href, type, seed, `${data.id}-${index}${extensionFor(type)}`));
  }
  refreshArtifacts();
}

async function cancel() {
  if (!state.job) return;
  try {
    await api(`/v1/jobs/${state.job.id}/cancel`, { method: "POST" });
    logEvent("cancel requested");
  } catch (error) {
    logEvent(`cancel: ${error.message}`);
  }
}

// -- artifacts browser -----------------------------------------------------------------

async function refreshArtifacts() {
  const holder = $("artifacts");
  try {
    const body = await (await api("/v1/artifacts?limit=24")).json();
    holder.replaceChildren();
    for (const item of body.data) {
      const { href, type } = await blobUrl(item.url);
      const when = item.created_at ? item.created_at.slice(11, 19) : "";
      holder.appendChild(mediaCard(href, type, `${item.task || ""} ${when}`, `${item.id.slice(0, 16)}${extensionFor(type)}`));
    }
    if (!body.data.length) holder.textContent = "nothing yet";
  } catch (error) {
    holder.textContent = error.message;
  }
}

// -- wiring ----------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = sessionStorage.getItem("abstractvision-api-key") || "";
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem("abstractvision-api-key", $("api-key").value.trim());
    loadServer();
  });
  $("model").addEventListener("change", updateTasks);
  $("task").addEventListener("change", updateFields);
  $("image").addEventListener("change", previewInputs);
  $("mask").addEventListener("change", previewInputs);
  $("form").addEventListener("submit", generate);
  $("cancel").addEventListener("click", cancel);
  $("refresh-artifacts").addEventListener("click", refreshArtifacts);
  loadServer();
});
