// mekit serve: the page. Vanilla JS, no build step, no external URL.
// Routes: #/ (upload, camera, history) and #/analyses/ID (progress, then results).
// Text from the server is always set with textContent, never parsed as HTML.
"use strict";

const API = "/api/analyses";
const POLL_MS = 700;
// analyze_video's stages, in order: the bar shows the whole analysis, not one stage.
const STAGES = ["spotting", "recognising", "rendering", "report"];
const EMOTION_COLOURS = {
  happiness: "#2e9d5b", positive: "#2e9d5b", happy: "#2e9d5b",
  surprise: "#e0a100", surprised: "#e0a100",
  disgust: "#7b5ea7", repression: "#5a7d9a", fear: "#d35400",
  anger: "#c0392b", angry: "#c0392b", negative: "#c0392b",
  sadness: "#2f6db5", sad: "#2f6db5", contempt: "#8d6e63",
  others: "#7f8c8d", other: "#7f8c8d", neutral: "#95a5a6",
};
const FALLBACK_COLOURS = ["#1abc9c", "#e84393", "#6c5ce7", "#00a8cc", "#b8860b", "#34495e"];
const FILE_LABELS = {
  json: "Analysis (JSON)", csv: "Timeline (CSV)", timeline_png: "Timeline (PNG)",
  mp4: "Annotated video (MP4)", html: "Report (HTML)",
};

const $ = (id) => document.getElementById(id);
let pollTimer = null;
let currentId = null;
let chosenFile = null;
let recording = null; // {blob, url}
let maxUploadMb = null;

// ---------- small helpers ----------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "style") Object.assign(node.style, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function show(node, visible) { node.classList.toggle("hidden", !visible); }

function fmtTime(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return "–";
  const m = Math.floor(s / 60);
  const rest = s - 60 * m;
  return m ? `${m}:${rest.toFixed(2).padStart(5, "0")}` : `${rest.toFixed(2)} s`;
}

function fmtDate(epoch) {
  return new Date(epoch * 1000).toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
}

function colourOf(emotion, labels) {
  const key = String(emotion || "").toLowerCase();
  if (EMOTION_COLOURS[key]) return EMOTION_COLOURS[key];
  const i = Math.max(0, (labels || []).indexOf(emotion));
  return FALLBACK_COLOURS[i % FALLBACK_COLOURS.length];
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body = null;
  if (response.status !== 204) {
    try { body = await response.json(); } catch (_) { body = null; }
  }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : `HTTP ${response.status}`;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return body;
}

// ---------- routing ----------
function route() {
  clearTimeout(pollTimer);
  pollTimer = null;
  const match = location.hash.match(/^#\/analyses\/([A-Za-z0-9_-]{16})$/);
  show($("view-home"), !match);
  show($("view-analysis"), !!match);
  if (match) openAnalysis(match[1]);
  else { currentId = null; loadHistory(); }
}

// ---------- health ----------
async function loadHealth() {
  const badge = $("health");
  try {
    const h = await api("/api/health");
    badge.textContent = h.worker_alive ? "ready" : "worker stopped";
    badge.className = "health " + (h.worker_alive ? "ok" : "bad");
    $("version").textContent = `mekit ${h.version}`;
    maxUploadMb = h.max_upload_mb;
    $("limits").textContent = `MP4, MOV, AVI, MKV, WebM or M4V · up to ${h.max_upload_mb} MB`;
  } catch (e) {
    badge.textContent = "unreachable";
    badge.className = "health bad";
  }
}

// ---------- history ----------
async function loadHistory() {
  const box = $("history");
  let jobs;
  try {
    jobs = (await api(API)).analyses;
  } catch (e) {
    box.replaceChildren(el("p", { class: "empty", text: `History unavailable: ${e.message}` }));
    return;
  }
  if (!jobs.length) {
    box.replaceChildren(el("p", { class: "empty", text: "No analyses yet." }));
    return;
  }
  const rows = jobs.map((j) => {
    const status = el("td", {}, el("span", { class: `badge ${j.status}`, text: j.status }));
    if (j.status === "failed" && j.error) status.append(el("span", { class: "reason", text: j.error }));
    if (j.status === "running") status.append(` ${j.stage} ${Math.round(100 * j.progress)}%`);
    return el("tr", { "data-id": j.id },
      el("td", { class: "name", text: j.filename }),
      el("td", { text: fmtDate(j.created) }),
      status,
      el("td", { text: j.n_events === null ? "–" : String(j.n_events) }),
      el("td", { text: j.duration_s === null ? "–" : fmtTime(j.duration_s) }),
      el("td", { class: "actions" },
        el("button", { class: "small open", type: "button", text: "Open",
          onclick: () => { location.hash = `#/analyses/${j.id}`; } }),
        el("button", { class: "small danger delete", type: "button",
          text: j.status === "running" || j.status === "queued" ? "Stop & delete" : "Delete",
          onclick: () => deleteAnalysis(j) })));
  });
  box.replaceChildren(el("table", {},
    el("thead", {}, el("tr", {}, ...["Video", "Uploaded", "Status", "Events", "Duration", ""]
      .map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows)));
}

async function deleteAnalysis(job) {
  const stop = job.status === "running" || job.status === "queued" ? "Stop and delete" : "Delete";
  if (!confirm(`${stop} the analysis of "${job.filename}" and all its files?`)) return;
  try {
    await api(`${API}/${job.id}`, { method: "DELETE" });
  } catch (e) {
    alert(`Could not delete: ${e.message}`);
  }
  loadHistory();
}

// ---------- upload ----------
function choose(file) {
  chosenFile = file || null;
  $("chosen").textContent = file ? `${file.name} · ${(file.size / 2 ** 20).toFixed(1)} MB` : "";
  $("upload-btn").disabled = !file;
}

function upload(file, name) {
  const status = $("upload-status");
  const fill = $("upload-fill");
  show(status, true);
  show($("upload-error"), false);
  $("upload-stage").textContent = `Uploading ${name}…`;
  fill.style.width = "0%";
  if (maxUploadMb && file.size > maxUploadMb * 2 ** 20) {
    uploadFailed(`the file is larger than the limit of ${maxUploadMb} MB`);
    return;
  }
  const form = new FormData();
  form.append("file", file, name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", API);
  xhr.responseType = "json";
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) fill.style.width = `${(100 * e.loaded) / e.total}%`;
  };
  xhr.onload = () => {
    const body = xhr.response || {};
    if (xhr.status === 202) {
      show(status, false);
      location.hash = `#/analyses/${body.id}`;
    } else {
      uploadFailed(body.detail || `HTTP ${xhr.status}`);
    }
  };
  xhr.onerror = () => uploadFailed("the server could not be reached");
  xhr.send(form);
}

function uploadFailed(message) {
  $("upload-stage").textContent = "Upload refused";
  const box = $("upload-error");
  box.textContent = typeof message === "string" ? message : JSON.stringify(message);
  show(box, true);
}

function setUpUpload() {
  const zone = $("dropzone");
  $("file-input").addEventListener("change", (e) => choose(e.target.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.remove("over"); });
  }
  zone.addEventListener("drop", (e) => choose(e.dataTransfer.files[0]));
  $("upload-btn").addEventListener("click", () => chosenFile && upload(chosenFile, chosenFile.name));
}

// ---------- camera ----------
function setUpCamera() {
  const video = $("camera");
  const msg = $("cam-msg");
  let stream = null;
  let recorder = null;
  let chunks = [];
  let started = 0;
  let tick = null;

  $("cam-start").addEventListener("click", async () => {
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      msg.textContent = "This browser cannot record video here (it needs a secure origin).";
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
        audio: false,
      });
    } catch (e) {
      msg.textContent = `No camera: ${e.message}`;
      return;
    }
    video.srcObject = stream;
    video.controls = false;
    await video.play();
    $("cam-start").disabled = true;
    $("rec-start").disabled = false;
    msg.textContent = "Camera on. Press Record, make your expression, then Stop.";
  });

  $("rec-start").addEventListener("click", () => {
    const types = ["video/webm;codecs=vp9", "video/webm;codecs=vp8", "video/webm"];
    const mimeType = types.find((t) => MediaRecorder.isTypeSupported(t)) || "";
    recorder = new MediaRecorder(stream, mimeType ? { mimeType } : {});
    chunks = [];
    recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
    recorder.onstop = () => {
      clearInterval(tick);
      show($("rec-badge"), false);
      const blob = new Blob(chunks, { type: "video/webm" });
      if (recording) URL.revokeObjectURL(recording.url);
      recording = { blob, url: URL.createObjectURL(blob) };
      video.srcObject = null;
      video.src = recording.url;
      video.controls = true;
      $("rec-upload").disabled = false;
      $("rec-start").disabled = false;
      msg.textContent = `Recorded ${((Date.now() - started) / 1000).toFixed(1)} s. ` +
        "Analyse it, or record again.";
    };
    if (!video.srcObject) { video.src = ""; video.srcObject = stream; video.controls = false; video.play(); }
    recorder.start(500);
    started = Date.now();
    show($("rec-badge"), true);
    tick = setInterval(() => {
      const s = Math.floor((Date.now() - started) / 1000);
      $("rec-time").textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
    }, 250);
    $("rec-start").disabled = true;
    $("rec-stop").disabled = false;
    $("rec-upload").disabled = true;
  });

  $("rec-stop").addEventListener("click", () => {
    if (recorder && recorder.state !== "inactive") recorder.stop();
    $("rec-stop").disabled = true;
  });

  $("rec-upload").addEventListener("click", () => {
    if (!recording) return;
    const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
    upload(recording.blob, `camera-${stamp}.webm`);
  });
}

// ---------- one analysis ----------
async function openAnalysis(id) {
  const fresh = id !== currentId;
  currentId = id;
  if (fresh) {
    $("a-title").textContent = "Analysis";
    $("a-meta").textContent = "";
    show($("a-results"), false);
    show($("a-error"), false);
    show($("a-progress"), false);
  }
  let job;
  try {
    job = await api(`${API}/${id}`);
  } catch (e) {
    if (id !== currentId) return;
    $("a-error").textContent = `This analysis cannot be shown: ${e.message}`;
    show($("a-error"), true);
    return;
  }
  if (id !== currentId) return; // navigated away meanwhile
  $("a-title").textContent = job.filename;
  $("a-meta").textContent = `Uploaded ${fmtDate(job.created)}`;
  if (job.status === "queued" || job.status === "running") {
    show($("a-progress"), true);
    const step = STAGES.indexOf(job.stage);
    let overall = 0;
    if (job.status === "queued") {
      $("a-stage").textContent = "Waiting for the worker…";
      $("a-percent").textContent = "";
    } else if (step >= 0) {
      overall = (step + job.progress) / STAGES.length;
      $("a-stage").textContent = `Step ${step + 1} of ${STAGES.length}: ${job.stage}`;
      $("a-percent").textContent = `${Math.round(100 * job.progress)}%`;
    } else {
      $("a-stage").textContent = job.stage || "starting";
      $("a-percent").textContent = "";
    }
    $("a-fill").style.width = `${100 * overall}%`;
    pollTimer = setTimeout(() => openAnalysis(id), POLL_MS);
    return;
  }
  show($("a-progress"), false);
  if (job.status === "failed") {
    const box = $("a-error");
    box.replaceChildren(el("strong", { text: "The analysis failed" }),
      job.stage ? ` (during “${job.stage}”)` : "", ": ", job.error || "no reason given");
    show(box, true);
    return;
  }
  if (!job.result) {
    $("a-error").textContent = "The analysis finished but its results are missing.";
    show($("a-error"), true);
    return;
  }
  renderResults(job);
}

function renderResults(job) {
  const r = job.result;
  const urls = job.file_urls;
  const labels = (r.model && r.model.labels) || [];
  const events = r.events || [];
  $("a-meta").textContent = [
    `${fmtTime(r.duration_s)}`, `${r.fps.toFixed(r.fps % 1 ? 2 : 0)} fps`,
    `${r.width}×${r.height}`, `${events.length} event${events.length === 1 ? "" : "s"}`,
    `model ${r.model ? r.model.name : "?"}`, `analysed in ${Number(r.seconds).toFixed(1)} s`,
  ].join(" · ");

  const banner = $("demo-banner");
  if (r.model && r.model.demo) {
    banner.replaceChildren(el("strong", { text: "Demo model. " }),
      "This emotion model was trained on synthetic data; it is not a real-world emotion model. " +
      "Its labels illustrate the pipeline and say nothing about a real person's feelings." +
      (r.model.trained_on ? ` (trained on: ${r.model.trained_on})` : ""));
  }
  show(banner, !!(r.model && r.model.demo));
  const warnings = $("a-warnings");
  warnings.replaceChildren(...(r.warnings || []).map((w) => el("li", { text: w })));
  show(warnings, (r.warnings || []).length > 0);

  const player = $("player");
  const msg = $("player-msg");
  show(msg, false);
  player.onerror = () => {
    msg.textContent = "This browser cannot play the annotated video; download it below.";
    show(msg, true);
  };
  show(player, !!urls.mp4);
  if (urls.mp4) player.src = urls.mp4;
  else {
    player.removeAttribute("src");
    msg.textContent = "No annotated video was written for this analysis (see the warnings).";
    show(msg, true);
  }
  renderTimeline(r, events, labels, player);
  renderEvents(events, labels, urls, player);
  renderDownloads(urls, r.files || {});
  show($("a-results"), true);
}

function renderTimeline(r, events, labels, player) {
  const timeline = $("timeline");
  const cursor = $("cursor");
  const duration = r.duration_s || (r.n_frames / r.fps) || 1;
  timeline.replaceChildren(cursor);
  for (const ev of events) {
    const left = (100 * ev.onset_s) / duration;
    const width = (100 * Math.max(ev.offset_s - ev.onset_s, 0)) / duration;
    timeline.append(el("button", {
      class: `marker ${ev.kind}`, type: "button", "data-index": ev.index,
      "data-onset": ev.onset_s,
      title: `#${ev.index} ${ev.kind} · ${ev.emotion} · ${fmtTime(ev.onset_s)}–${fmtTime(ev.offset_s)}`,
      "aria-label": `event ${ev.index}: ${ev.emotion} at ${fmtTime(ev.onset_s)}`,
      style: { left: `${left}%`, width: `${width}%`, backgroundColor: colourOf(ev.emotion, labels) },
      onclick: (e) => { e.stopPropagation(); seekTo(ev, player); },
    }));
  }
  timeline.onclick = (e) => {
    const box = timeline.getBoundingClientRect();
    player.currentTime = Math.max(0, Math.min(1, (e.clientX - box.left) / box.width)) * duration;
  };
  const ticks = 5;
  $("axis").replaceChildren(...Array.from({ length: ticks + 1 }, (_, i) =>
    el("span", { style: { left: `${(100 * i) / ticks}%` }, text: fmtTime((duration * i) / ticks) })));
  const seen = [...new Set(events.map((e) => e.emotion))];
  $("legend").replaceChildren(...seen.map((emotion) => el("span", {},
    el("span", { class: "swatch", style: { background: colourOf(emotion, labels) } }), emotion)),
  el("span", {}, el("span", { class: "swatch kind" }), "micro"),
  el("span", {}, el("span", { class: "swatch kind macro" }), "macro"));

  const update = () => {
    const t = player.currentTime || 0;
    cursor.style.left = `${Math.min(100, (100 * t) / duration)}%`;
    for (const ev of events) {
      const on = t >= ev.onset_s && t <= ev.offset_s;
      document.querySelectorAll(`[data-index="${ev.index}"]`).forEach((n) => n.classList.toggle("active", on));
    }
  };
  let frame = null;
  const loop = () => { update(); frame = player.paused ? null : requestAnimationFrame(loop); };
  player.ontimeupdate = update;
  player.onseeked = update;
  player.onplay = () => { if (!frame) frame = requestAnimationFrame(loop); };
  update();
}

function seekTo(ev, player) {
  player.currentTime = ev.onset_s;
  document.querySelectorAll(".event.active, .marker.active").forEach((n) => n.classList.remove("active"));
  document.querySelectorAll(`[data-index="${ev.index}"]`).forEach((n) => n.classList.add("active"));
}

function renderEvents(events, labels, urls, player) {
  show($("no-events"), events.length === 0);
  $("events").replaceChildren(...events.map((ev) => {
    const colour = colourOf(ev.emotion, labels);
    const probs = Object.entries(ev.probabilities || {});
    const order = labels.length ? labels.filter((l) => ev.probabilities && l in ev.probabilities) : probs.map(([l]) => l);
    const key = String(ev.index).padStart(2, "0");
    const maps = [[`event_${key}_motion`, "motion map"], [`event_${key}_explain`, "explanation map"]]
      .filter(([k]) => urls[k])
      .map(([k, caption]) => el("figure", {},
        el("a", { href: urls[k], target: "_blank", rel: "noopener" },
          el("img", { src: urls[k], alt: `${caption} of event ${ev.index}`, loading: "lazy" })),
        el("figcaption", { text: caption })));
    return el("article", { class: "event", "data-index": ev.index, style: { borderLeftColor: colour } },
      el("div", { class: "event-head" },
        el("span", { class: "emotion", text: ev.emotion }),
        el("span", { text: `#${ev.index} · ${ev.kind}` }),
        el("span", { class: "when",
          text: `${fmtTime(ev.onset_s)} – ${fmtTime(ev.offset_s)} (apex ${fmtTime(ev.apex_s)}) · ` +
            `frames ${ev.onset}–${ev.offset} · score ${Number(ev.score).toFixed(2)}` }),
        el("button", { class: "small seek", type: "button", text: "▶ Play from onset",
          onclick: () => { seekTo(ev, player); player.play().catch(() => {}); } })),
      el("div", { class: "event-body" },
        el("div", { class: "probs" }, ...order.flatMap((label) => {
          const p = ev.probabilities[label];
          return [
            el("span", { class: "label", text: label }),
            el("div", { class: "track" }, el("div", {
              style: { width: `${100 * p}%`, background: label === ev.emotion ? colour : "#b4bccb" } })),
            el("span", { class: "value", text: `${(100 * p).toFixed(0)}%` }),
          ];
        })),
        el("div", { class: "maps" }, ...maps)),
      el("div", { class: "aus" }, el("span", { class: "label", text: "Action units: " }),
        (ev.aus || []).length
          ? (ev.aus || []).map((a) => `AU${a.au} ${a.name} ${(100 * a.probability).toFixed(0)}% ` +
              `(${a.region}${a.side && a.side !== "both" ? `, ${a.side}` : ""})`).join("; ")
          : "none found"));
  }));
}

function renderDownloads(urls, files) {
  const links = Object.keys(files).filter((k) => urls[k]).map((k) =>
    el("a", { href: `${urls[k]}?download=true`, download: "", text: FILE_LABELS[k] || files[k] }));
  $("downloads").replaceChildren(...links);
}

// ---------- start ----------
document.addEventListener("DOMContentLoaded", () => {
  setUpUpload();
  setUpCamera();
  loadHealth();
  window.addEventListener("hashchange", route);
  route();
});
