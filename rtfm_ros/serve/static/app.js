// rtfm serve: keys and mouse move this tab's camera; the server renders the latest pose and
// streams frames back; the map shows every frame in the shared memory as a frustum.
"use strict";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
const query = token ? "?token=" + encodeURIComponent(token) : "";
const view = $("view"), vctx = view.getContext("2d");
const map = $("map"), mctx = map.getContext("2d");
const COLOURS = ["#2ca02c", "#1f77b4", "#ff7f0e"];  // seed, observed, generated (server order)
const MOVE = { KeyW: [1, 0, 0], ArrowUp: [1, 0, 0], KeyS: [-1, 0, 0], ArrowDown: [-1, 0, 0],
               KeyA: [0, 1, 0], KeyD: [0, -1, 0], KeyE: [0, 0, 1], KeyQ: [0, 0, -1] };
const TURN = { ArrowLeft: 1, ArrowRight: -1 };
const SPEED = 0.8, TURN_RATE = 1.5, LOOK = 0.005, MAX_PITCH = 85 * Math.PI / 180, MAX_COORD = 1e4;

const cam = { pos: [0, 0, 1], yaw: 0, pitch: 0, fov: 90 };
const keys = new Set();
let seq = 0, dirty = false, lastTick = performance.now(), lastMap = 0, mapRows = [], pending = null;
const MAP_EVERY_MS = 100;  // the map redraws at most 10 times a second: it costs the browser more than the view
const drawnAt = [];
// What the page shows, for people and for the browser tests and benchmark.
const rtfm = window.rtfm = { framesDrawn: 0, lastHeader: null, latencies: [], renderMs: [], notices: [], closed: null, mapResets: 0,
                             mapRows: () => mapRows.length, seqSent: () => seq, pose: () => JSON.parse(JSON.stringify(cam)) };

const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws" + query);
ws.binaryType = "arraybuffer";
const send = (msg) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); };
const sendPose = () => { seq += 1; send({ type: "pose", seq, pos: cam.pos, yaw: cam.yaw, pitch: cam.pitch }); };
const sendSettings = () => send({ type: "settings", depth: $("depth").checked, remember: $("remember").checked,
                                  format: $("png").checked ? "png" : "jpeg" });

function notice(text, level) {
  $("notice").textContent = text;
  $("notice").className = level || "";
  rtfm.notices.push({ text, level });
}

function goToStart(start) {
  Object.assign(cam, { pos: start.pos.slice(), yaw: start.yaw, pitch: start.pitch });
  sendPose();
}

ws.onopen = () => { $("status").textContent = "connected"; };
ws.onclose = (e) => {
  rtfm.closed = { code: e.code, reason: e.reason };
  $("status").textContent = `disconnected (${e.code}${e.reason ? ": " + e.reason : ""}); reload to reconnect`;
  $("status").className = "bad";
};
ws.onmessage = (e) => {
  if (typeof e.data !== "string") { showFrame(e.data); return; }
  const msg = JSON.parse(e.data);
  if (msg.type === "hello") {
    view.width = msg.width; view.height = msg.height; cam.fov = msg.fov;
    $("seedfov").value = msg.seed_fov;
    $("save").disabled = !msg.can_save;
    $("save").title = msg.can_save ? "save to " + msg.save_name : "start rtfm serve with --save FILE to save";
    sendSettings();
    goToStart(msg.start);
  } else if (msg.type === "start") {
    goToStart(msg.start);
  } else if (msg.type === "map") {
    mapRows = msg.reset ? msg.rows : mapRows.concat(msg.rows);
    if (msg.reset) rtfm.mapResets += 1;  // a new world (seeded, reset or opened) replaced the map
    dirty = true;
  } else if (msg.type === "notice") {
    notice(msg.text, msg.level);
  }
};

async function showFrame(buf) {
  const n = new DataView(buf).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
  const bitmap = await createImageBitmap(new Blob([new Uint8Array(buf, 4 + n)], { type: header.mime }));
  if (rtfm.lastHeader && header.seq < rtfm.lastHeader.seq) { bitmap.close(); return; }
  vctx.drawImage(bitmap, 0, 0, view.width, view.height);
  bitmap.close();
  rtfm.framesDrawn += 1;
  rtfm.lastHeader = header;
  rtfm.renderMs.push(header.ms);
  if (rtfm.renderMs.length > 200) rtfm.renderMs.shift();
  const now = performance.now();
  drawnAt.push(now);
  while (drawnAt.length && drawnAt[0] < now - 1000) drawnAt.shift();
  $("render").textContent = header.ms.toFixed(1) + " ms";
  $("frames").textContent = header.frames;
  $("fps").textContent = drawnAt.length;
  if (pending && pending.seq !== null && header.seq >= pending.seq) {
    const t0 = pending.t0;
    pending = null;
    requestAnimationFrame(() => {  // the frame is on screen with the next paint
      const ms = performance.now() - t0;
      rtfm.latencies.push(ms);
      $("latency").textContent = ms.toFixed(0) + " ms";
    });
  }
}

function tick(now) {
  const dt = Math.min(0.1, (now - lastTick) / 1000);
  lastTick = now;
  const fast = keys.has("ShiftLeft") || keys.has("ShiftRight") ? 3 : 1;
  let moved = false;
  for (const k of keys) {
    if (TURN[k]) { cam.yaw += TURN[k] * TURN_RATE * dt * fast; moved = true; }
    const m = MOVE[k];
    if (!m) continue;
    const s = SPEED * dt * fast, c = Math.cos(cam.yaw), n = Math.sin(cam.yaw);
    cam.pos[0] += s * (m[0] * c - m[1] * n);
    cam.pos[1] += s * (m[0] * n + m[1] * c);
    cam.pos[2] += s * m[2];
    cam.pos = cam.pos.map((v) => Math.max(-MAX_COORD, Math.min(MAX_COORD, v)));  // the server's bound
    moved = true;
  }
  if (moved || drag.moved) {
    drag.moved = false;
    sendPose();
    if (pending && pending.seq === null) pending.seq = seq;
    dirty = true;
  }
  if (drawnAt.length && drawnAt[drawnAt.length - 1] < now - 1000) { drawnAt.length = 0; $("fps").textContent = 0; }
  if (dirty && now - lastMap >= MAP_EVERY_MS) { drawMap(); dirty = false; lastMap = now; }
  requestAnimationFrame(tick);
}

const keyName = (e) => e.code || e.key;
window.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement && !["checkbox", "file"].includes(e.target.type)) return;  // typing a number
  const k = keyName(e);
  if (!(k in MOVE || k in TURN || k.startsWith("Shift"))) return;
  e.preventDefault();
  if (!e.repeat && !keys.has(k) && !k.startsWith("Shift")) pending = { t0: e.timeStamp, seq: null };
  keys.add(k);
});
window.addEventListener("keyup", (e) => keys.delete(keyName(e)));
window.addEventListener("blur", () => keys.clear());

const drag = { on: false, x: 0, y: 0, moved: false };
view.addEventListener("pointerdown", (e) => { Object.assign(drag, { on: true, x: e.clientX, y: e.clientY }); view.setPointerCapture(e.pointerId); });
view.addEventListener("pointerup", () => { drag.on = false; });
view.addEventListener("pointermove", (e) => {
  if (!drag.on) return;
  cam.yaw -= (e.clientX - drag.x) * LOOK;
  cam.pitch = Math.max(-MAX_PITCH, Math.min(MAX_PITCH, cam.pitch - (e.clientY - drag.y) * LOOK));
  Object.assign(drag, { x: e.clientX, y: e.clientY, moved: true });
});

function drawMap() {
  const xs = mapRows.map((r) => r[0]).concat([cam.pos[0]]), ys = mapRows.map((r) => r[1]).concat([cam.pos[1]]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const span = Math.max(x1 - x0, y1 - y0, 1), reach = 0.12 * span;
  const scale = (map.width - 40) / (span + 2 * reach);
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const px = (x, y) => [map.width / 2 + (x - cx) * scale, map.height / 2 - (y - cy) * scale];
  const frustum = (x, y, heading, half, colour, fill) => {
    const p = px(x, y), a = px(x + reach * Math.cos(heading + half), y + reach * Math.sin(heading + half));
    const b = px(x + reach * Math.cos(heading - half), y + reach * Math.sin(heading - half));
    mctx.beginPath(); mctx.moveTo(...p); mctx.lineTo(...a); mctx.lineTo(...b); mctx.closePath();
    mctx.strokeStyle = colour;
    if (fill) { mctx.fillStyle = colour; mctx.globalAlpha = 0.35; mctx.fill(); mctx.globalAlpha = 1; }
    mctx.stroke();
  };
  mctx.clearRect(0, 0, map.width, map.height);
  mctx.lineWidth = 1;
  for (const [x, y, heading, half, src] of mapRows) frustum(x, y, heading, half, COLOURS[src] || "#888", false);
  mctx.lineWidth = 2.5;
  frustum(cam.pos[0], cam.pos[1], cam.yaw, (cam.fov / 2) * Math.PI / 180, "#d62728", true);
}

for (const id of ["depth", "remember", "png"]) $(id).addEventListener("change", sendSettings);
$("save").addEventListener("click", () => send({ type: "save" }));
$("reset").addEventListener("click", () => send({ type: "reset" }));
$("seed").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = new FormData();
  for (const f of $("photos").files) form.append("photo", f, f.name);
  if ($("transforms").files.length) form.append("transforms", $("transforms").files[0], "transforms.json");
  form.append("fov", $("seedfov").value);
  notice("uploading...");
  try {
    const res = await fetch("/api/seed" + query, { method: "POST", body: form });
    const text = await res.text();
    let body;
    try { body = JSON.parse(text); } catch { body = { error: text }; }
    if (res.ok) notice(`seeded a new world with ${body.frames} frames`, "info");
    else notice(`seeding refused (${res.status}): ${body.error}`, "error");
  } catch (err) {
    notice(`upload failed: ${err}`, "error");
  }
});
requestAnimationFrame(tick);
