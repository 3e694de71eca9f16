// The zvonok demo page: a video call built only on the SDK (/sdk/zvonok.js).
// Development mode: pick a user id; the page asks the server to make that user a member
// (POST /dev/join) and to sign a token (POST /dev/token). Production mode: paste a token.
import { ZvonokCall, callUrl } from "/sdk/zvonok.js";

const DEBUG = new URLSearchParams(location.search).has("debug");
// ?simulcast=0 publishes the camera as one encoding (the SDK's `simulcast` option).
const SIMULCAST = new URLSearchParams(location.search).get("simulcast") !== "0";
// ?codec=vp9 (or vp8, h264) publishes video in that codec if the room allows (the SDK's
// `videoCodec` option; vp9 in Chromium: one encoding with spatial layers, SVC).
const CODEC = new URLSearchParams(location.search).get("codec") || undefined;
const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));

const ERROR_TEXT = {
  "connect-failed": "Could not connect: the token was refused, you are not a member of this " +
    "chat/group, or the server is down.",
  "join-timeout": "The server did not answer; try again.",
  "media-denied": "Camera/microphone permission was denied. You are in the call and can " +
    "hear and see the others; allow access in the browser's site settings to be seen and heard.",
  "media-unavailable": "No usable camera/microphone: ",
  "session-taken": "This session id belongs to another user.",
  "room-full": "The call is full.",
  "replaced": "This call was opened again in another tab or device.",
  "reconnect-timeout": "Connection lost and could not be restored. Join again.",
  "negotiation-failed": "Media negotiation failed: ",
  "worker-lost": "The server process carrying this call restarted; reconnecting…",
  "node-draining": "This server is going down for maintenance; reconnecting…",
};

/** @type {{call: ZvonokCall|null, mode: string, tiles: Map<string, any>, audio: Map<string, HTMLAudioElement>}} */
const demo = { call: null, mode: "prod", tiles: new Map(), audio: new Map(), unavailable: new Set(),
  paused: new Set() };
/** @type {any} */ (window).zvonokDemo = demo;

// ---------------------------------------------------------------- messages

/** @param {string} text @param {"error"|"warn"|"info"} level @param {string} [key] */
function show(text, level = "error", key = "") {
  if (key) clear(key);
  const el = document.createElement("div");
  el.className = `message ${level}`;
  el.dataset.key = key;
  el.textContent = text;
  const close = document.createElement("button");
  close.type = "button";
  close.textContent = "dismiss";
  close.onclick = () => el.remove();
  el.append(close);
  $("messages").append(el);
  if (level === "info") setTimeout(() => el.remove(), 6000);
}

/** @param {string} key */
function clear(key) {
  for (const el of $("messages").querySelectorAll(`[data-key="${key}"]`)) el.remove();
}

/** @param {string} code @param {string} message */
function errorText(code, message) {
  const known = ERROR_TEXT[/** @type {keyof typeof ERROR_TEXT} */ (code)];
  if (!known) return `${message} (${code})`;
  return known.endsWith(": ") ? known + message : known;
}

/** @param {string} state @param {string} [text] */
function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text ?? state;
}

// ---------------------------------------------------------------- tiles

/** @param {string} key @param {string} label @param {string[]} classes */
function tile(key, label, classes = []) {
  let t = demo.tiles.get(key);
  if (t) return t;
  const node = $("tile-template").content.firstElementChild.cloneNode(true);
  node.classList.add("no-video", ...classes);
  node.dataset.key = key;
  node.querySelector(".name").textContent = label;
  node.querySelector(".placeholder").textContent = (label[0] ?? "?").toUpperCase();
  t = { node, video: node.querySelector("video"), trackId: null, unobserve: null };
  demo.tiles.set(key, t);
  $("grid").append(node);
  return t;
}

/** @param {string} key */
function removeTile(key) {
  const t = demo.tiles.get(key);
  if (!t) return;
  t.unobserve?.();
  t.video.srcObject = null;
  t.node.remove();
  demo.tiles.delete(key);
}

/** @param {any} t @param {boolean} on */
function setUnavailable(t, on) {
  if (!t) return;
  t.node.classList.toggle("unavailable", on);
  placeholder(t);
}

/** The server holds this video back for a weak downlink (`trackpaused`). @param {any} t @param {boolean} on */
function setPaused(t, on) {
  if (!t) return;
  t.node.classList.toggle("paused", on);
  if (on) setFlag(t, "cam-off", false);
  placeholder(t);
}

/** The tile's placeholder: why there is no picture, else the user's initial. @param {any} t */
function placeholder(t) {
  t.node.querySelector(".placeholder").textContent = t.node.classList.contains("unavailable")
    ? "video not available in this browser"
    : t.node.classList.contains("paused") ? "video paused: weak connection"
      : (t.node.querySelector(".name").textContent[0] ?? "?").toUpperCase();
}

/** @param {any} t @param {MediaStreamTrack|null} track @param {string|null} trackId */
function showVideo(t, track, trackId) {
  if (t.trackId !== trackId || !track) {
    t.unobserve?.();
    t.unobserve = null;
  }
  t.trackId = trackId;
  t.node.classList.toggle("paused", trackId !== null && demo.paused.has(trackId));
  setUnavailable(t, trackId !== null && demo.unavailable.has(trackId));
  // A received video: the server is told the tile's size and whether it is on screen, so a
  // small or hidden tile costs a small layer or nothing (adaptive stream).
  const remote = trackId !== null && !trackId.startsWith("local");
  if (track && remote && !t.unobserve && demo.call) {
    t.unobserve = demo.call.observeVideo(trackId, t.video);
  }
  t.video.srcObject = track ? new MediaStream([track]) : null;
  t.node.classList.toggle("no-video", !track);
  t.node.dataset.trackId = trackId ?? "";
  if (track) t.video.play().catch(() => {});
}

/** @param {any} t @param {string} flag @param {boolean} on */
function setFlag(t, flag, on) {
  if (t) t.node.querySelector(`.${flag}`).hidden = !on;
}

// ---------------------------------------------------------------- call events

/** @param {ZvonokCall} call */
function wire(call) {
  call.addEventListener("participantjoined", (/** @type {any} */ e) => {
    const t = tile(e.sessionId, e.userId);
    t.node.dataset.sessionId = e.sessionId;
    t.node.dataset.userId = e.userId;
    if (!e.existing) show(`${e.userId} joined`, "info", `p-${e.sessionId}`);
  });
  call.addEventListener("participantleft", (/** @type {any} */ e) => {
    for (const [key, t] of [...demo.tiles]) {
      if (key === e.sessionId || t.node.dataset.owner === e.sessionId) removeTile(key);
    }
    const why = e.reason === "leave" ? "left" : `left (${e.reason})`;
    show(`${e.userId} ${why}`, "info", `p-${e.sessionId}`);
  });
  call.addEventListener("track", (/** @type {any} */ e) => onTrack(e));
  call.addEventListener("trackunavailable", (/** @type {any} */ e) => {
    // Codec steering found no codec of this camera that this browser decodes (docs/media.md).
    if (e.unavailable) demo.unavailable.add(e.trackId);
    else demo.unavailable.delete(e.trackId);
    const t = [...demo.tiles.values()].find((x) => x.trackId === e.trackId);
    setUnavailable(t, e.unavailable);
    if (e.unavailable) setFlag(t, "cam-off", false);
  });
  call.addEventListener("trackended", (/** @type {any} */ e) => onTrackEnded(e));
  call.addEventListener("trackpaused", (/** @type {any} */ e) => {
    // Only the server's own pauses (weak downlink); ours (an unseen tile) need no words.
    const paused = e.paused && e.reason !== "subscriber";
    if (paused) demo.paused.add(e.trackId);
    else demo.paused.delete(e.trackId);
    setPaused([...demo.tiles.values()].find((x) => x.trackId === e.trackId), paused);
  });
  call.addEventListener("speakers", (/** @type {any} */ e) => {
    // The loudest speaker's tile is highlighted (its camera tile; "local" when it is us).
    const loudest = e.speakers[0]?.sessionId ?? null;
    for (const [key, t] of demo.tiles) {
      const session = key === "local" ? call.sessionId : key;
      t.node.classList.toggle("speaking", loudest !== null && session === loudest);
    }
  });
  call.addEventListener("mute", (/** @type {any} */ e) => {
    if (e.local) return;
    if (e.kind === "audio") setFlag(demo.tiles.get(e.sessionId), "mic-off", e.muted);
    else {
      const t = [...demo.tiles.values()].find((x) => x.trackId === e.trackId);
      if (t) t.node.classList.toggle("no-video", e.muted);
      const why = t && !t.node.classList.contains("screen") && !t.node.classList.contains("unavailable")
        && !t.node.classList.contains("paused");
      if (t) setFlag(t, "cam-off", e.muted && Boolean(why));
    }
  });
  call.addEventListener("quality", (/** @type {any} */ e) => {
    if (DEBUG) console.debug("zvonok demo: quality", JSON.stringify(e.detail));
    $("quality").hidden = false;
    $("quality").querySelector(".dot").dataset.level = e.level;
    const rtt = e.rtt === null ? "–" : `${e.rtt} ms`;
    const via = e.path ? ` · via ${{ udp: "UDP", tcp: "TCP", relay: "relay" }[e.path]}` : "";
    $("quality").querySelector(".text").textContent =
      `${e.level} · rtt ${rtt} · loss ${(e.loss * 100).toFixed(1)}% · ` +
      `in ${kbps(e.bitrateIn)} · out ${kbps(e.bitrateOut)}${via}`;
    const local = demo.tiles.get("local");
    if (local) local.node.querySelector(".q").dataset.level = e.level;
    for (const [sessionId, q] of Object.entries(e.participants)) {
      const t = demo.tiles.get(sessionId);
      if (t) {
        t.node.querySelector(".q").dataset.level = /** @type {any} */ (q).level;
        t.node.querySelector(".q").title = `${kbps(/** @type {any} */ (q).bitrateIn)}`;
      }
    }
  });
  call.addEventListener("connectionstatechange", (/** @type {any} */ e) => {
    if (call.state === "joined") setStatus("joined", `in call · ${e.state}`);
  });
  call.addEventListener("reconnecting", (/** @type {any} */ e) => {
    setStatus("reconnecting", "reconnecting…");
    show(`Connection lost, retrying (attempt ${e.attempt}, in ${(e.delay / 1000).toFixed(1)} s)…`,
      "warn", "reconnect");
  });
  call.addEventListener("reconnected", (/** @type {any} */ e) => {
    clear("reconnect");
    setStatus("joined", `in call · ${call.connectionState}`);
    show(e.resumed ? "Reconnected." : "Reconnected (the call was restarted).", "info", "reconnect");
  });
  call.addEventListener("failed", (/** @type {any} */ e) => {
    show(errorText(e.code, e.message), "error", "reconnect");
    endCall("failed");
  });
  call.addEventListener("error", (/** @type {any} */ e) => {
    // the reconnect messages say the rest
    if (e.code === "shutdown" || e.code === "node-draining") return;
    show(errorText(e.code, e.message), e.fromServer ? "warn" : "error", `e-${e.code}`);
  });
}

/** @param {number} bps */
function kbps(bps) {
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mb/s` : `${Math.round(bps / 1000)} kb/s`;
}

/** @param {any} e */
function onTrack(e) {
  if (e.kind === "audio") {
    const audio = new Audio();
    audio.autoplay = true;
    audio.srcObject = new MediaStream([e.track]);
    audio.dataset.trackId = e.trackId;
    audio.play().catch(() => show("Click anywhere to hear the others.", "warn", "autoplay"));
    demo.audio.set(e.trackId, audio);
    setFlag(demo.tiles.get(e.sessionId), "mic-off", false);
    return;
  }
  let t = tile(e.sessionId, e.userId);
  t.node.dataset.sessionId = e.sessionId;
  t.node.dataset.userId = e.userId;
  if (t.trackId && t.trackId !== e.trackId) {
    // The participant's tile shows its camera; another video track is a screen share.
    t = tile(`screen-${e.trackId}`, `${e.userId} (screen)`, ["screen"]);
    t.node.dataset.owner = e.sessionId;
    t.node.dataset.sessionId = e.sessionId;
    t.node.dataset.userId = e.userId;
  }
  showVideo(t, e.track, e.trackId);
}

/** @param {any} e */
function onTrackEnded(e) {
  const audio = demo.audio.get(e.trackId);
  if (audio) {
    audio.srcObject = null;
    demo.audio.delete(e.trackId);
    return;
  }
  for (const [key, t] of [...demo.tiles]) {
    if (t.trackId !== e.trackId) continue;
    if (key.startsWith("screen-")) removeTile(key);
    else showVideo(t, null, null);
  }
}

// ---------------------------------------------------------------- joining

async function postJson(/** @type {string} */ path, /** @type {object} */ body) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(data.message ?? `${path} answered ${response.status}`);
  }
  return data;
}

/** @param {SubmitEvent} event */
async function onJoin(event) {
  event.preventDefault();
  $("join").disabled = true;
  $("messages").replaceChildren();
  const kind = $("kind").value;
  const roomId = $("room-id").value.trim();
  try {
    let token = $("token").value.trim();
    let userId = "";
    if (demo.mode === "dev") {
      userId = $("user-id").value.trim();
      setStatus("joining", "joining…");
      try {
        await postJson("/dev/join", { userId, kind, roomId });
      } catch (error) {
        show(`Cannot join ${kind} ${roomId}: ${/** @type {Error} */ (error).message}`);
        throw error;
      }
      try {
        token = (await postJson("/dev/token", { userId })).token;
      } catch (error) {
        show(`No development token: ${/** @type {Error} */ (error).message}`);
        throw error;
      }
    }
    await startCall(kind, roomId, token, userId);
  } catch (error) {
    setStatus("idle", "not in a call");
    $("join").disabled = false;
  }
}

/** @param {string} kind @param {string} roomId @param {string} token @param {string} userId */
async function startCall(kind, roomId, token, userId) {
  const call = new ZvonokCall({ url: callUrl(/** @type {any} */ (kind), roomId), token, roomId,
    debug: DEBUG, simulcast: SIMULCAST, videoCodec: /** @type {any} */ (CODEC) });
  demo.call = call;
  wire(call);
  setStatus("joining", "joining…");
  await call.join();
  $("join-form").hidden = true;
  $("call").hidden = false;
  setStatus("joined", `in ${kind} ${roomId} as ${call.userId ?? userId}`);
  const me = tile("local", `${call.userId ?? userId} (you)`, ["local"]);
  me.node.dataset.sessionId = call.sessionId;
  const audio = $("with-audio").checked;
  const video = $("with-video").checked;
  if (audio || video) {
    try {
      await call.publish({ audio, video });
    } catch {
      // The `error` event has told the user; the call goes on receive-only.
    }
  }
  const camera = call.localStream.getVideoTracks()[0] ?? null;
  showVideo(me, camera, camera ? "local" : null);
  $("mute-audio").disabled = !call.localStream.getAudioTracks().length;
  $("mute-video").disabled = !camera;
}

/** @param {string} state */
function endCall(state) {
  for (const key of [...demo.tiles.keys()]) removeTile(key);
  demo.paused.clear();
  for (const audio of demo.audio.values()) audio.srcObject = null;
  demo.audio.clear();
  demo.call = null;
  $("call").hidden = true;
  $("join-form").hidden = false;
  $("join").disabled = false;
  $("quality").hidden = true;
  for (const id of ["mute-audio", "mute-video", "share"]) $(id).setAttribute("aria-pressed", "false");
  $("mute-audio").textContent = "Mute mic";
  $("mute-video").textContent = "Camera off";
  $("share").textContent = "Share screen";
  setStatus(state === "failed" ? "failed" : "idle", state === "failed" ? "call failed" : "not in a call");
}

// ---------------------------------------------------------------- controls

function toggleMute(/** @type {"audio"|"video"} */ kind) {
  const call = demo.call;
  if (!call) return;
  const muted = !call.isMuted(kind);
  call.setMuted(kind, muted);
  const button = $(kind === "audio" ? "mute-audio" : "mute-video");
  button.setAttribute("aria-pressed", String(muted));
  if (kind === "audio") button.textContent = muted ? "Unmute mic" : "Mute mic";
  else {
    button.textContent = muted ? "Camera on" : "Camera off";
    const me = demo.tiles.get("local");
    if (me) me.node.classList.toggle("no-video", muted);
    setFlag(me, "cam-off", muted);
  }
  if (kind === "audio") setFlag(demo.tiles.get("local"), "mic-off", muted);
}

async function toggleShare() {
  const call = demo.call;
  if (!call) return;
  const button = $("share");
  if (call.screenStream) {
    call.stopScreenShare();
  } else {
    try {
      const track = await call.startScreenShare();
      const t = tile("local-screen", "your screen", ["screen"]);
      showVideo(t, track, "local-screen");
      track.addEventListener("ended", () => {
        removeTile("local-screen");
        button.setAttribute("aria-pressed", "false");
        button.textContent = "Share screen";
      });
    } catch {
      return; // `error` event shown
    }
  }
  const sharing = Boolean(call.screenStream);
  if (!sharing) removeTile("local-screen");
  button.setAttribute("aria-pressed", String(sharing));
  button.textContent = sharing ? "Stop sharing" : "Share screen";
}

async function onLeave() {
  const call = demo.call;
  if (call) await call.leave();
  endCall("idle");
}

// ---------------------------------------------------------------- start

async function init() {
  try {
    const config = await (await fetch("/demo/config")).json();
    demo.mode = config.mode;
  } catch {
    demo.mode = "prod";
  }
  $("mode").textContent = demo.mode === "dev" ? "development mode" : "production";
  $("dev-fields").hidden = demo.mode !== "dev";
  $("prod-fields").hidden = demo.mode === "dev";
  $("user-id").required = demo.mode === "dev";
  $("token").required = demo.mode !== "dev";
  const params = new URLSearchParams(location.search);
  $("user-id").value = params.get("user") ?? `user-${Math.floor(Math.random() * 1000)}`;
  if (params.get("kind")) $("kind").value = params.get("kind");
  if (params.get("room")) $("room-id").value = params.get("room");
  if (!window.RTCPeerConnection) show("This browser has no WebRTC; calls cannot work here.");
  $("join-form").addEventListener("submit", onJoin);
  $("mute-audio").addEventListener("click", () => toggleMute("audio"));
  $("mute-video").addEventListener("click", () => toggleMute("video"));
  $("share").addEventListener("click", toggleShare);
  $("leave").addEventListener("click", onLeave);
  document.addEventListener("click", () => {
    for (const audio of demo.audio.values()) audio.play().catch(() => {});
    clear("autoplay");
  });
  window.addEventListener("pagehide", () => demo.call?.leave());
  if (params.has("join")) $("join-form").requestSubmit(); // ?user=..&room=..&join joins at once
}

init();
