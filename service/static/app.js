// The FaceCloak page: submit photos to /v1/protect, poll /v1/jobs/{id}, show the results.
// Uses the public API only; the API key lives in this page's memory while it is open.

import { el, renderResult } from "./compare.js";
import { errorWords } from "./words.js";

const FINAL = new Set(["succeeded", "failed", "canceled"]);
const ITEM_FINAL = new Set(["protected", "no_face", "failed", "canceled"]);
const STATUS_WORDS = {
  queued: "waiting",
  running: "protecting",
  protected: "protected",
  no_face: "no face found: not changed",
  failed: "failed",
  canceled: "canceled",
};

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, error) {
    super(errorWords(status, error));
    this.status = status;
    this.code = (error && error.code) || "http_error";
  }
}

async function api(path, key, init = {}) {
  const headers = { "X-API-Key": key, ...(init.headers || {}) };
  const response = await fetch(path, { ...init, headers });
  if (!response.ok) {
    let error = null;
    try { error = (await response.json()).error; } catch { /* not JSON */ }
    throw new ApiError(response.status, error);
  }
  return response;
}

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = `message ${kind}`;
  box.hidden = !text;
}

function itemRow(item) {
  const p = item.progress || { done: 0, total: 0, unit: "steps" };
  const finished = ITEM_FINAL.has(item.status);
  const row = el("li", { class: `item ${item.status}`, id: `item-${item.index}` });
  const label = `${item.filename}: ${STATUS_WORDS[item.status] || item.status}`;
  const bar = el("progress", { max: String(p.total || 1), "aria-label": `Progress of ${item.filename}` });
  bar.value = finished ? (p.total || 1) : p.done;
  if (!finished && !p.total) bar.removeAttribute("value"); // not started: indeterminate
  const detail = p.total && !finished ? ` (${p.done} of ${p.total} ${p.unit})` : "";
  row.append(el("span", { class: "label", text: label + detail }), bar);
  if (item.error) row.append(el("span", { class: "item-error", text: item.error.message }));
  return row;
}

function showProgress(job) {
  $("progress-section").hidden = false;
  const done = job.progress.photos_done;
  $("job-status").textContent =
    `Job ${STATUS_WORDS[job.status] || job.status}: ${done} of ${job.progress.photos_total} photo(s) done.`;
  $("items").replaceChildren(...job.items.map(itemRow));
}

async function poll(jobId, key) {
  for (;;) {
    const response = await api(`/v1/jobs/${jobId}`, key);
    const job = await response.json();
    showProgress(job);
    if (FINAL.has(job.status)) return job;
    const hint = Number(response.headers.get("Retry-After")) || 1;
    await new Promise((r) => setTimeout(r, Math.min(2, Math.max(0.5, hint)) * 1000));
  }
}

async function showResults(job, key, files) {
  const list = $("result-list");
  list.replaceChildren();
  $("results").hidden = false;
  for (const item of job.items) {
    if (!item.result_url) continue;
    const blob = await (await api(item.result_url, key)).blob();
    const file = files[item.index];
    const beforeUrl = file ? URL.createObjectURL(file) : null;
    list.append(await renderResult(item, beforeUrl, blob));
  }
  if (!list.children.length) {
    list.append(el("p", { text: "No photo was protected." }));
  }
  list.setAttribute("data-ready", "true");
}

async function submit(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  const files = Array.from($("photos").files);
  showMessage("");
  if (!key) return showMessage("Enter your API key.");
  if (!files.length) return showMessage("Choose at least one photo.");
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  form.append("strength", $("preset").value);
  if ($("steps").value) form.append("steps", $("steps").value);
  const button = $("submit");
  button.disabled = true;
  $("results").hidden = true;
  $("result-list").removeAttribute("data-ready");
  try {
    const response = await api("/v1/protect", key, { method: "POST", body: form });
    const job = await response.json();
    showProgress(job);
    const done = await poll(job.id, key);
    if (done.status !== "succeeded") {
      showMessage((done.error && done.error.message) || `The job ${done.status}.`);
    } else {
      showMessage("Done: your protected photos are below.", "ok");
    }
    await showResults(done, key, files);
  } catch (err) {
    showMessage(err.message);
  } finally {
    button.disabled = false;
  }
}

$("protect-form").addEventListener("submit", submit);
