// The page: record (AudioWorklet -> PCM -> WAV) or drop a file, POST it to /v1/transcribe, show the words, and
// highlight the one being played. While recording, the same PCM streams to /v1/stream for live partial text.
const $ = (id) => document.getElementById(id);
const player = $("player");
const state = { modelRate: 16000, streaming: "none", recording: null, words: [], busy: false };

function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.className = kind || "";
}

async function init() {
  try {
    const r = await fetch("healthz");
    const h = await r.json();
    const m = h.model;
    state.modelRate = m.sample_rate;
    state.streaming = h.streaming;
    const kind = m.bidirectional ? "bidirectional" : "forward-only";
    const live = { exact: "live text", segmented: "text after each pause", none: "no streaming" }[h.streaming];
    // What a forward-only model's look-ahead layer adds to the delay of live text (lookahead_frames frames).
    const wait = h.streaming === "exact" ? ` \u00b7 look-ahead ${m.lookahead_ms || 0} ms` : "";
    $("model").textContent = `${m.layers}\u00d7${m.cell.toUpperCase()}-${m.hidden_size} ${kind} \u00b7 ${live}` +
      `${wait} \u00b7 up to ${h.limits.max_duration} s, ${h.limits.max_upload_mb} MB`;
    $("card").textContent = m.card_summary || "no model card";
    $("record").disabled = false;
    setStatus("Ready: record, or drop a file.", "ready");
    document.body.dataset.ready = "1";
  } catch (e) {
    setStatus(`Cannot reach the server: ${e}`, "error");
  }
}

// --- recording --------------------------------------------------------------------------------------------

async function startRecording() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.AudioWorkletNode) {
    setStatus("The microphone needs a secure page (http://127.0.0.1 or https) in a current browser; " +
              "a dropped file still works.", "error");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  } catch (e) {
    setStatus(`No microphone: ${e.message || e}`, "error");
    return;
  }
  let ctx;
  try {
    ctx = new AudioContext({ sampleRate: state.modelRate });  // the browser resamples the microphone for us
  } catch {
    ctx = new AudioContext();  // the server resamples instead
  }
  await ctx.audioWorklet.addModule("worklet.js");
  const source = ctx.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(ctx, "pcm-capture");
  const mute = ctx.createGain();
  mute.gain.value = 0;  // pulled through the graph, never heard (no feedback)
  source.connect(node).connect(mute).connect(ctx.destination);
  const rec = { stream, ctx, source, node, chunks: [], samples: 0, sent: 0, rate: ctx.sampleRate, ws: null };
  node.port.onmessage = (ev) => addChunk(rec, ev.data);
  if (state.streaming !== "none") rec.ws = openStream(rec);
  state.recording = rec;
  $("record").disabled = true;
  $("stop").disabled = false;
  document.body.dataset.recording = "1";
  setStatus("Recording\u2026 press Stop when done.", "busy");
}

function addChunk(rec, pcm) {
  if (pcm.length) {
    rec.chunks.push(pcm);
    rec.samples += pcm.length;
  }
  const seconds = rec.samples / rec.rate;
  $("recorded").textContent = `${seconds.toFixed(1)} s`;
  document.body.dataset.recordedSeconds = seconds.toFixed(2);
  sendPending(rec);
}

async function stopRecording() {
  const rec = state.recording;
  if (!rec) return;
  state.recording = null;
  $("stop").disabled = true;
  delete document.body.dataset.recording;
  // Ask the worklet for its last partial buffer before the graph is torn down.
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, 500);
    rec.node.port.onmessage = (ev) => { addChunk(rec, ev.data); clearTimeout(timer); resolve(); };
    rec.node.port.postMessage("flush");
  });
  rec.source.disconnect();
  rec.node.disconnect();
  rec.stream.getTracks().forEach((t) => t.stop());
  await rec.ctx.close();
  if (rec.ws) {
    rec.ending = true;
    if (rec.ws.readyState === WebSocket.OPEN) {
      sendPending(rec);
      rec.ws.send(JSON.stringify({ type: "end" }));
    }
  }
  $("record").disabled = false;
  if (!rec.samples) {
    setStatus("Nothing was recorded.", "error");
    return;
  }
  await transcribe(new File([encodeWav(rec.chunks, rec.rate)], "recording.wav", { type: "audio/wav" }));
}

// --- live stream --------------------------------------------------------------------------------------------

function openStream(rec) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  // endpoint_ms: the server closes a segment after this long a pause; each closed one becomes a line.
  const ws = new WebSocket(`${proto}//${location.host}/v1/stream?rate=${rec.rate}&encoding=s16le&endpoint_ms=800`);
  ws.binaryType = "arraybuffer";
  const partial = $("partial");
  const segments = $("segments");
  const live = $("live");
  partial.textContent = "";
  segments.replaceChildren();
  delete live.dataset.final;
  $("stream-note").textContent = "";
  $("live").hidden = false;
  ws.onopen = () => {
    sendPending(rec);
    if (rec.ending) ws.send(JSON.stringify({ type: "end" }));
  };
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === "ready") {
      $("stream-note").textContent = m.mode === "segmented"
        ? "This model is bidirectional: text appears a segment at a time, after each pause."
        : "Text appears as you speak.";
    } else if (m.type === "partial") {
      partial.textContent = m.open !== undefined ? m.open : m.text;  // the open segment's text, live
    } else if (m.type === "segment") {
      partial.textContent = "";
      if (m.text) {
        const li = document.createElement("li");
        li.textContent = m.text;
        li.title = `${m.start.toFixed(2)}\u2013${m.end.toFixed(2)} s (closed: ${m.reason})`;
        segments.append(li);
      }
    } else if (m.type === "final") {
      partial.textContent = "";
      live.dataset.text = m.text;
      live.dataset.final = "1";
      if (m.stopped) $("stream-note").textContent = `Stream stopped: ${m.stopped}.`;
    } else if (m.type === "error") {
      $("stream-note").textContent = `Stream: ${m.message}`;
    }
  };
  ws.onerror = () => { $("stream-note").textContent = "The live stream failed; the recording is still sent whole."; };
  return ws;
}

function sendPending(rec) {
  if (!rec.ws || rec.ws.readyState !== WebSocket.OPEN) return;
  for (; rec.sent < rec.chunks.length; rec.sent++) rec.ws.send(toS16(rec.chunks[rec.sent]).buffer);
}

// --- files and results --------------------------------------------------------------------------------------

async function transcribe(file) {
  if (state.busy) return;
  state.busy = true;
  const box = $("transcript");
  delete box.dataset.done;
  setStatus(`Transcribing ${file.name} (${(file.size / 1024).toFixed(0)} KB)\u2026`, "busy");
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(file);
  player.hidden = false;
  const body = new FormData();
  body.append("file", file, file.name);
  try {
    const r = await fetch("v1/transcribe?format=json", { method: "POST", body });
    if (!r.ok) {
      let detail = r.statusText;
      try { detail = (await r.json()).detail; } catch { /* not JSON */ }
      const retry = r.headers.get("Retry-After");
      setStatus(`Error ${r.status}: ${detail}${retry ? ` (retry in ${retry} s)` : ""}`, "error");
      box.dataset.error = String(r.status);
      return;
    }
    const result = await r.json();
    showResult(result);
    setStatus(`Done: ${result.duration.toFixed(2)} s of audio.`, "done");
  } catch (e) {
    setStatus(`Request failed: ${e}`, "error");
  } finally {
    state.busy = false;
  }
}

function showResult(result) {
  const box = $("transcript");
  box.replaceChildren();
  box.classList.remove("empty");
  delete box.dataset.error;
  state.words = [];
  for (const seg of result.segments || []) {
    if (!seg.words || !seg.words.length) {
      box.append(`${seg.text} `);
      continue;
    }
    for (const w of seg.words) {
      const span = document.createElement("span");
      span.className = w.confidence < 0.5 ? "word low" : "word";
      span.textContent = w.word;
      span.title = `${w.start.toFixed(2)}\u2013${w.end.toFixed(2)} s, confidence ${w.confidence.toFixed(2)}`;
      span.dataset.start = w.start;
      span.dataset.end = w.end;
      span.addEventListener("click", () => { player.currentTime = w.start; player.play(); });
      box.append(span, " ");
      state.words.push({ start: w.start, end: w.end, span });
    }
  }
  if (!result.text) {
    box.textContent = "(no speech recognised)";
    box.classList.add("empty");
  }
  box.dataset.text = result.text;
  box.dataset.done = "1";
  $("meta").textContent = state.words.length
    ? "Click a word to play from there; the word being played is highlighted."
    : "";
}

function highlight() {
  const t = player.currentTime;
  for (const w of state.words) w.span.classList.toggle("current", t >= w.start && t < w.end);
}

function followPlayback() {
  highlight();
  if (!player.paused) requestAnimationFrame(followPlayback);
}

// --- audio encoding ------------------------------------------------------------------------------------------

function toS16(pcm) {
  const out = new Int16Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) {
    const s = Math.max(-1, Math.min(1, pcm[i]));
    out[i] = s < 0 ? s * 32768 : s * 32767;
  }
  return out;
}

function encodeWav(chunks, rate) {
  const n = chunks.reduce((a, c) => a + c.length, 0);
  const view = new DataView(new ArrayBuffer(44 + 2 * n));
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * n, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, 2 * n, true);
  let offset = 44;
  for (const c of chunks) {
    for (const s of toS16(c)) { view.setInt16(offset, s, true); offset += 2; }
  }
  return view.buffer;
}

// --- wiring ----------------------------------------------------------------------------------------------------

$("record").addEventListener("click", () => startRecording().catch((e) => setStatus(`Recording failed: ${e}`, "error")));
$("stop").addEventListener("click", () => stopRecording());
$("file").addEventListener("change", (ev) => { if (ev.target.files[0]) transcribe(ev.target.files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  if (ev.dataTransfer.files[0]) transcribe(ev.dataTransfer.files[0]);
});
player.addEventListener("play", followPlayback);
player.addEventListener("seeked", highlight);
player.addEventListener("timeupdate", highlight);
init();
