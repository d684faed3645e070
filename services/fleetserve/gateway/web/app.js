// fleetserve's built-in page. Talks only to this server's public API:
//   POST /v2/repository/index, GET /v2, GET /v2/models/{m}, GET /v2/models/stats,
//   GET /v2/models/{m}/rollout, POST /v2/models/{m}[/versions/{v}]/image
"use strict";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 2000;

async function api(path, options) {
  const response = await fetch(path, options);
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = text;
  }
  if (!response.ok) {
    const message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return body;
}

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = !message;
}

// --- models and versions ---

async function loadModels() {
  const index = await api("/v2/repository/index", { method: "POST", body: "{}" });
  const names = [...new Set(index.filter((r) => r.state === "READY").map((r) => r.name))].sort();
  const select = $("model");
  const previous = select.value;
  select.replaceChildren(...names.map((n) => new Option(n, n)));
  if (names.includes(previous)) select.value = previous;
  else if (names.includes("digits")) select.value = "digits";
  await loadVersions();
}

async function loadVersions() {
  const model = $("model").value;
  const select = $("version");
  const previous = select.value;
  const options = [new Option("rollout plan decides", "")];
  if (model) {
    const meta = await api(`/v2/models/${encodeURIComponent(model)}`);
    for (const v of meta.versions) options.push(new Option(`version ${v}`, v));
  }
  select.replaceChildren(...options);
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
}

// --- classifying ---

async function classify(blob, asForm) {
  const model = $("model").value;
  if (!model) {
    showError("no model is ready");
    return;
  }
  const version = $("version").value;
  const k = Math.max(1, Math.min(20, parseInt($("k").value, 10) || 5));
  let url = `/v2/models/${encodeURIComponent(model)}`;
  if (version) url += `/versions/${encodeURIComponent(version)}`;
  url += `/image?k=${k}`;
  const options = { method: "POST" };
  if (asForm) {
    const form = new FormData();
    form.append("image", blob, blob.name || "image");
    options.body = form;
  } else {
    options.body = blob;
    options.headers = { "Content-Type": blob.type || "image/png" };
  }
  const started = performance.now();
  try {
    const answer = await api(url, options);
    showAnswer(answer, performance.now() - started);
    showError("");
  } catch (err) {
    $("answer").hidden = true;
    showError(err.message);
  }
  refreshStatus();
}

function showAnswer(answer, roundTripMs) {
  $("answer-model").textContent = answer.model_name;
  $("answer-version").textContent = answer.model_version;
  $("answer-latency").textContent = `${roundTripMs.toFixed(1)} ms`;
  $("answer-server").textContent = `${answer.time_ms.toFixed(1)} ms`;
  const best = Math.max(...answer.top_k.map((r) => r.score), 1e-9);
  const rows = answer.top_k.map((row) => {
    const li = document.createElement("li");
    li.dataset.label = row.label;
    li.dataset.score = String(row.score);
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = row.label;
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    // probabilities fill their share; other scores are drawn relative to the best one
    const share = best <= 1 && row.score >= 0 ? row.score : row.score / best;
    fill.style.width = `${Math.max(0, Math.min(1, share)) * 100}%`;
    bar.append(fill);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = row.score.toFixed(3);
    li.append(label, bar, score);
    return li;
  });
  $("results").replaceChildren(...rows);
  $("answer").hidden = false;
}

// --- upload: choose or drop ---

function useFile(file) {
  if (!file) return;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  classify(file, true);
}

function setUpUpload() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => useFile(e.target.files[0]));
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    useFile(e.dataTransfer.files[0]);
  });
}

// --- drawing: dark ink on white, sent as PNG ---

function setUpCanvas() {
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const clear = () => {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  };
  clear();
  ctx.lineWidth = 26;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.strokeStyle = "#000";
  let drawing = false;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * canvas.width) / r.width, ((e.clientY - r.top) * canvas.height) / r.height];
  };
  canvas.addEventListener("pointerdown", (e) => {
    drawing = true;
    canvas.setPointerCapture(e.pointerId);
    const [x, y] = at(e);
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x, y);
    ctx.stroke();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const [x, y] = at(e);
    ctx.lineTo(x, y);
    ctx.stroke();
  });
  const end = () => {
    drawing = false;
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  $("clear").addEventListener("click", () => {
    clear();
    $("answer").hidden = true;
  });
  $("classify-drawing").addEventListener("click", () => {
    canvas.toBlob((blob) => classify(blob, false), "image/png");
  });
}

// --- status panel ---

async function refreshStatus() {
  try {
    const [index, stats] = await Promise.all([
      api("/v2/repository/index", { method: "POST", body: "{}" }),
      api("/v2/models/stats"),
    ]);
    const counts = new Map();
    for (const s of stats.model_stats || []) {
      const ok = Number((s.inference_stats && s.inference_stats.success && s.inference_stats.success.count) || 0);
      const failed = Number((s.inference_stats && s.inference_stats.fail && s.inference_stats.fail.count) || 0);
      counts.set(`${s.name}/${s.version}`, [ok, failed]);
    }
    const models = [...new Set(index.filter((r) => r.state === "READY").map((r) => r.name))];
    const plans = new Map();
    await Promise.all(
      models.map(async (m) => {
        try {
          plans.set(m, await api(`/v2/models/${encodeURIComponent(m)}/rollout`));
        } catch (_) {
          // a model that went away between the two calls: no plan to show
        }
      }),
    );
    const rows = index.map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.model = r.name;
      tr.dataset.version = r.version;
      const [ok, failed] = counts.get(`${r.name}/${r.version}`) || [0, 0];
      const cells = [r.name, r.version || "-", r.state, stage(plans.get(r.name), r.version), ok, failed];
      cells.forEach((value, i) => {
        const td = document.createElement("td");
        td.textContent = String(value);
        if (i === 2) td.className = `state-${r.state}`;
        if (i >= 4) td.className = "num";
        if (i === 2 && r.reason) td.title = r.reason;
        tr.append(td);
      });
      return tr;
    });
    $("status-table").replaceChildren(...rows);
    $("status-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    $("status-updated").textContent = `status unavailable: ${err.message}`;
  }
}

function stage(plan, version) {
  if (!plan || !version) return "";
  const v = Number(version);
  if (v === plan.canary) return `canary ${plan.canary_weight}%`;
  if (v === plan.production) return plan.canary === null ? "production 100%" : `production ${100 - plan.canary_weight}%`;
  if (plan.shadows.includes(v)) return "shadow";
  return "";
}

async function start() {
  setUpUpload();
  setUpCanvas();
  $("model").addEventListener("change", () => loadVersions().catch((e) => showError(e.message)));
  try {
    const server = await api("/v2");
    $("server").textContent = `${server.name} ${server.version}`;
    await loadModels();
  } catch (err) {
    showError(err.message);
  }
  await refreshStatus();
  setInterval(refreshStatus, REFRESH_MS);
  document.body.dataset.ready = "true";
}

start();
