// genre-id serve: the page. Plain JavaScript, no build step, nothing loaded from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                "#9c755f", "#bab0ac", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"];
let labels = [];
let busy = false;

function colorOf(genre) {
  const i = labels.indexOf(genre);
  return COLORS[(i < 0 ? labels.length : i) % COLORS.length];
}

function pct(p) { return (100 * p).toFixed(p >= 0.1 ? 0 : 1) + "%"; }

function clock(s) {
  const m = Math.floor(s / 60), r = Math.floor(s % 60);
  return m + ":" + String(r).padStart(2, "0");
}

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = !message;
}

function setBusy(on) {
  busy = on;
  $("listen").disabled = on;
  $("file").disabled = on;
  $("choose").classList.toggle("disabled", on);
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function bar(genre, p) {
  const li = el("li", "bar");
  li.append(el("span", "name", genre));
  const track = el("span", "track");
  const fill = el("span", "fill");
  fill.style.width = (100 * p).toFixed(1) + "%";
  fill.style.background = colorOf(genre);
  track.append(fill);
  li.append(track, el("span", "value", pct(p)));
  return li;
}

function topOf(probabilities, k) {
  return Object.entries(probabilities).sort((a, b) => b[1] - a[1]).slice(0, k);
}

function render(report, title) {
  showError("");
  $("result").hidden = false;
  $("result-title").textContent = report.genre + " (" + pct(report.confidence) + ")";
  const sub = el("span", "source", title);
  $("result-title").append(sub);
  const bars = $("bars");
  bars.replaceChildren(...topOf(report.probabilities, 5).map(([g, p]) => bar(g, p)));
  const match = $("match");
  if ("match" in report) {
    match.hidden = false;
    const m = report.match;
    match.textContent = m ? "Song: " + (m.title || m.file) + (m.artist ? " by " + m.artist : "") +
      " (at " + clock(m.offset || 0) + ")" : "Song: not in the store";
  } else {
    match.hidden = true;
  }
  renderTimeline(report);
  renderMembers(report.members || []);
  $("result").scrollIntoView({ block: "nearest" });
}

function describe(seg) {
  return clock(seg.start) + "–" + clock(seg.end) + ": " +
    seg.top.map((t) => t.genre + " " + pct(t.probability)).join(", ");
}

function renderTimeline(report) {
  const segs = report.segments || [];
  const box = $("timeline-box");
  box.hidden = segs.length < 2;
  if (box.hidden) return;
  const total = report.duration || segs[segs.length - 1].end;
  const line = $("timeline");
  const seen = new Set();
  line.replaceChildren(...segs.map((s, i) => {
    const b = el("button", "window");
    b.type = "button";
    b.style.left = (100 * s.start / total) + "%";
    b.style.width = Math.max(0.5, 100 * (s.end - s.start) / total) + "%";
    b.style.background = colorOf(s.genre);
    b.title = describe(s);
    b.setAttribute("aria-label", describe(s));
    b.style.zIndex = String(i);
    const show = () => { $("timeline-info").textContent = describe(s); };
    b.addEventListener("mouseenter", show);
    b.addEventListener("focus", show);
    b.addEventListener("click", show);
    seen.add(s.genre);
    return b;
  }));
  $("tl-end").textContent = clock(total);
  $("legend").replaceChildren(...[...seen].map((g) => {
    const li = el("li");
    const sw = el("span", "swatch");
    sw.style.background = colorOf(g);
    li.append(sw, document.createTextNode(g));
    return li;
  }));
}

function renderMembers(members) {
  const box = $("members-box");
  box.hidden = members.length < 2;
  if (box.hidden) return;
  $("members").replaceChildren(...members.map((m) => {
    const d = el("div", "member");
    d.append(el("h4", "", m.name));
    const ol = el("ol", "bars small");
    ol.append(...topOf(m.probabilities, 3).map(([g, p]) => bar(g, p)));
    d.append(ol);
    return d;
  }));
}

function messageOf(xhr) {
  if (xhr.status === 0) return "The server could not be reached.";
  try {
    const body = JSON.parse(xhr.responseText);
    if (body && body.error) {
      return xhr.status === 503 ? "The server is busy: " + body.error : body.error;
    }
  } catch (e) { /* not JSON */ }
  return "The server answered " + xhr.status + ".";
}

// POST audio (a File or a Blob) and render the answer; progress goes to the file card's bar.
function send(blob, name, statusEl, withProgress) {
  setBusy(true);
  showError("");
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/identify?name=" + encodeURIComponent(name));
  xhr.setRequestHeader("Content-Type", blob.type && /^(audio|video)\//.test(blob.type) ? blob.type
                                                                                       : "application/octet-stream");
  const prog = $("progress");
  if (withProgress) {
    prog.hidden = false;
    prog.value = 0;
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) {
        prog.value = Math.round(100 * e.loaded / e.total);
        statusEl.textContent = "Uploading " + prog.value + "%";
      }
    };
    xhr.upload.onload = () => { prog.value = 100; statusEl.textContent = "Analysing…"; };
  } else {
    statusEl.textContent = "Analysing…";
  }
  xhr.onload = () => {
    setBusy(false);
    prog.hidden = true;
    statusEl.textContent = "";
    if (xhr.status === 200) {
      try { render(JSON.parse(xhr.responseText), name); } catch (e) { showError("The answer could not be read."); }
    } else {
      showError(messageOf(xhr));
    }
  };
  xhr.onerror = () => {
    setBusy(false);
    prog.hidden = true;
    statusEl.textContent = "";
    showError("The upload failed: the server could not be reached, or it closed the connection.");
  };
  xhr.send(blob);
}

// ---- Drop or choose a file
function takeFile(file) {
  if (!file || busy) return;
  send(file, file.name || "upload", $("upload-status"), true);
}

function setupFile() {
  $("file").addEventListener("change", (e) => { takeFile(e.target.files[0]); e.target.value = ""; });
  const drop = $("drop");
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => takeFile(e.dataTransfer.files[0]));
  $("choose").addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); }
  });
}

// ---- Listen: record from the microphone, encode 16-bit mono WAV here, send it
function wav(chunks, rate) {
  const n = chunks.reduce((s, c) => s + c.length, 0);
  const buf = new ArrayBuffer(44 + 2 * n);
  const v = new DataView(buf);
  const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + 2 * n, true); str(8, "WAVE"); str(12, "fmt ");
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, rate, true); v.setUint32(28, 2 * rate, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  str(36, "data"); v.setUint32(40, 2 * n, true);
  let o = 44;
  for (const c of chunks) {
    for (let i = 0; i < c.length; i++, o += 2) {
      const s = Math.max(-1, Math.min(1, c[i]));
      v.setInt16(o, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
  }
  return new Blob([buf], { type: "audio/wav" });
}

async function listen() {
  if (busy) return;
  const seconds = Number($("seconds").value);
  const status = $("countdown");
  showError("");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError("This browser cannot record here (the page must be opened as localhost, 127.0.0.1 or over HTTPS).");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  } catch (e) {
    showError("No microphone: " + (e && e.name === "NotAllowedError" ? "permission was refused." : "none found."));
    return;
  }
  setBusy(true);
  const ctx = new (window.AudioContext || window.webkitAudioContext)();
  await ctx.resume();
  const source = ctx.createMediaStreamSource(stream);
  const proc = ctx.createScriptProcessor(4096, 1, 1);
  const mute = ctx.createGain();
  mute.gain.value = 0;
  const chunks = [];
  const want = Math.round(seconds * ctx.sampleRate);
  let got = 0;
  const fill = $("meter-fill");
  const done = new Promise((resolve) => {
    proc.onaudioprocess = (e) => {
      const data = e.inputBuffer.getChannelData(0);
      let sum = 0;
      for (let i = 0; i < data.length; i++) sum += data[i] * data[i];
      const level = Math.min(100, Math.round(100 * Math.sqrt(sum / data.length) * 4));
      fill.style.width = level + "%";
      $("meter").setAttribute("aria-valuenow", String(level));
      if (got < want) {
        const take = data.subarray(0, Math.min(data.length, want - got));
        chunks.push(new Float32Array(take));
        got += take.length;
        status.textContent = "Listening… " + Math.max(0, Math.ceil((want - got) / ctx.sampleRate)) + " s";
        if (got >= want) resolve();
      }
    };
  });
  source.connect(proc);
  proc.connect(mute);
  mute.connect(ctx.destination);
  status.textContent = "Listening… " + seconds + " s";
  await done;
  source.disconnect();
  proc.disconnect();
  stream.getTracks().forEach((t) => t.stop());
  const rate = ctx.sampleRate;
  await ctx.close();
  fill.style.width = "0%";
  setBusy(false);
  send(wav(chunks, rate), "recording.wav", status, false);
}

async function loadModel() {
  try {
    const r = await fetch("/api/model");
    const m = await r.json();
    labels = m.labels || [];
    $("model-line").textContent = "Model " + m.name + " " + m.version + ": " + labels.join(", ") +
      (m.max_upload_bytes ? ". Files up to " + Math.round(m.max_upload_bytes / 1048576) + " MB." : "");
  } catch (e) {
    $("model-line").textContent = "The model could not be read.";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("listen").addEventListener("click", listen);
  setupFile();
  loadModel();
});
