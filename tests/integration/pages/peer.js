// zvonok test peer: a minimal client of docs/protocol.md for the real-client harness
// (tests/integration/harness). Independent of the SDK on purpose: it is the reference the server
// is checked against.
//
// Query parameters: ws (the call URL ws://host/api/v1/{chat|group}/{id}/call), token (sent as the
// access_token query parameter), roomId, sessionId, user, peerId, color (red, green, blue, yellow,
// magenta, cyan, white, black), audio=1/0, video=1/0, mode (answer | offer | early-ice |
// loopback), report (URL to POST the report to every reportMs ms; its JSON answer may carry
// commands), loopbackOnly=1/0 (send only 127.0.0.1 candidates; default 1), audioSource
// (tone | gum), roomIdAs (auto | string | number), iceFromJoined=1 (use the `iceServers` of
// `joined`, e.g. TURN credentials, instead of none: the TURN tests).
//
// mode=answer waits for the server's offer; mode=offer sends its own offer when `joined` arrives
// and holds its candidates until the remote description is set; mode=early-ice sends its offer
// right after `join` and trickles candidates at once; mode=loopback needs no server: it connects
// two RTCPeerConnections inside the page and reports the receiving one (harness self-check).
//
// Negotiation styles of the client matrix (test_negotiation_matrix.py): mode=perfect is W3C/MDN
// perfect negotiation on the polite side (offers on negotiationneeded as soon as `join` is out, a
// colliding server offer is applied with implicit rollback, messages handled as they come, `glare`
// ignored); mode=perfect-explicit is the same with MDN's explicit rollback
// (setLocalDescription({type: "rollback"}) then setRemoteDescription; a description waits for the
// one before it to be applied, else an answer in flight reads as a collision), where the negotiationneeded
// Chrome fires in between makes a second, stale offer go out just before the answer (reproduced
// every time); mode=answer-only never offers; mode=offer-only offers once right after `join`,
// ignores every server offer and never answers. delayJoin, delayOffer, delayAnswer (ms) wait
// before sending `join`, before making the first offer and before making an answer (race hunting).
// Codec steering (test_codec_steering.py): codecFirst (e.g. H264) puts that codec first in this
// peer's own video transceivers' setCodecPreferences, the others after it (so the server may steer
// it to another); recvCodec (e.g. H264) makes its receive-only video transceivers accept that
// codec only. The report carries joinSentAt, each track's firstFrameAt (its <video> loaded a
// frame), the outbound video codec and every `track-unavailable` payload.
"use strict";
(() => {
  const Q = new URLSearchParams(location.search);
  const cfg = {
    ws: Q.get("ws"),
    token: Q.get("token"),
    roomId: Q.get("roomId") || "",
    sessionId: Q.get("sessionId") || "s-" + Math.random().toString(36).slice(2, 10),
    user: Q.get("user") || "",
    peerId: Q.get("peerId") || "",
    color: Q.get("color") || "red",
    audio: Q.get("audio") !== "0",
    video: Q.get("video") !== "0",
    mode: Q.get("mode") || "answer",
    report: Q.get("report"),
    reportMs: Number(Q.get("reportMs") || 500),
    pairStats: Q.get("pairStats") === "1", // report the selected ICE candidate pair (ICE-TCP tests)
    loopbackOnly: Q.get("loopbackOnly") !== "0",
    iceFromJoined: Q.get("iceFromJoined") === "1",
    audioSource: Q.get("audioSource") || "tone",
    roomIdAs: Q.get("roomIdAs") || "auto",
    codec: Q.get("codec") || "", // e.g. "H264" or "VP9": the only video codec this peer sends
    codecFirst: Q.get("codecFirst") || "", // the video codec this peer prefers to send
    recvCodec: Q.get("recvCodec") || "", // the only video codec its receivers accept
    delayJoin: Number(Q.get("delayJoin") || 0),
    delayOffer: Number(Q.get("delayOffer") || 0),
    delayAnswer: Number(Q.get("delayAnswer") || 0),
  };
  const isPerfect = cfg.mode === "perfect" || cfg.mode === "perfect-explicit";
  const wireRoomId =
    cfg.roomIdAs === "string" ? cfg.roomId
      : cfg.roomIdAs === "number" || /^[1-9][0-9]{0,14}$/.test(cfg.roomId) ? Number(cfg.roomId)
        : cfg.roomId;

  // The palette; tests/integration/harness/stats.py holds the same table.
  const PALETTE = {
    red: [255, 0, 0], green: [0, 255, 0], blue: [0, 0, 255], yellow: [255, 255, 0],
    magenta: [255, 0, 255], cyan: [0, 255, 255], white: [255, 255, 255], black: [0, 0, 0],
  };
  const TONES = {
    red: 440, green: 550, blue: 660, yellow: 770, magenta: 880, cyan: 990, white: 1100, black: 1210,
  };

  // ---- log and errors -------------------------------------------------------------------
  const logLines = [];
  const errors = [];
  const text = (x) => (typeof x === "string" ? x : x instanceof Error ? x.message : JSON.stringify(x));
  function log(...args) {
    const line = new Date().toISOString().slice(11, 23) + " " + args.map(text).join(" ");
    logLines.push(line);
    if (logLines.length > 300) logLines.shift();
    console.log(line);
  }
  function fail(where, err) {
    const msg = where + ": " + text(err && err.message ? err.message : err);
    errors.push(msg);
    log("ERROR", msg);
  }
  window.addEventListener("error", (e) => fail("window", e.message));
  window.addEventListener("unhandledrejection", (e) => fail("promise", e.reason));

  // ---- local media ----------------------------------------------------------------------
  function colourSource(color, label) {
    const canvas = document.createElement("canvas");
    canvas.width = 320;
    canvas.height = 240;
    canvas.title = label;
    document.getElementById("local").appendChild(canvas);
    const g = canvas.getContext("2d");
    const rgb = PALETTE[color] || PALETTE.red;
    let n = 0;
    const paint = () => {
      g.fillStyle = `rgb(${rgb.join(",")})`;
      g.fillRect(0, 0, 320, 240);
      g.fillStyle = n++ % 2 ? "#000" : "#fff"; // a changing corner keeps frames flowing
      g.fillRect(0, 0, 8, 8);
    };
    paint();
    const timer = setInterval(paint, 66);
    const stream = canvas.captureStream(15);
    const track = stream.getVideoTracks()[0];
    const stop = () => {
      clearInterval(timer);
      track.stop();
      canvas.remove();
    };
    return { track, stream, stop };
  }

  let audioCtx = null;
  async function audioSource(color) {
    if (cfg.audioSource === "gum") {
      const s = await navigator.mediaDevices.getUserMedia({ audio: true });
      return { track: s.getAudioTracks()[0], stop: () => s.getTracks().forEach((t) => t.stop()) };
    }
    audioCtx = audioCtx || new AudioContext();
    const osc = audioCtx.createOscillator();
    osc.frequency.value = TONES[color] || 440;
    const gain = audioCtx.createGain();
    gain.gain.value = 0.3;
    const dst = audioCtx.createMediaStreamDestination();
    osc.connect(gain).connect(dst);
    osc.start();
    audioCtx.resume().catch((e) => log("AudioContext.resume", e));
    const track = dst.stream.getAudioTracks()[0];
    return { track, stop: () => { osc.stop(); track.stop(); } };
  }

  const local = { stream: new MediaStream(), sources: [], screen: null };

  // ---- state ----------------------------------------------------------------------------
  let ws = null;
  let pc = null;
  let started = false;
  let joined = false;
  let answeredFirst = false;
  let makingOffer = false;
  let wantOffer = false;
  let glareRetry = false;
  let remoteSet = false;
  let left = false;
  let pendingTracks = null; // offer-only: the `tracks` map of the description to come
  let firstOffer = true;
  let offersStarted = 0; // perfect modes: negotiationneeded handlers run so far
  let joinOut = false; // `join` sent on the current socket
  let recovering = false; // media-failed: a new RTCPeerConnection waits for the 4002 close
  let recoveries = 0;
  let queue = Promise.resolve();
  const pendingIce = [];
  const heldIce = [];
  const received = {};
  const sent = {};
  const participants = new Map();
  const leftEvents = [];
  const serverErrors = [];
  const states = [];
  const closes = [];
  const commandResults = {};
  let joinedPayload = null;
  let trackList = [];
  const streamOf = new Map(); // transceiver -> the stream id of its last `track` event
  const records = [];

  const enqueue = (what, fn) => {
    queue = queue.then(fn).catch((e) => fail(what, e));
    return queue;
  };

  // ---- signaling ------------------------------------------------------------------------
  let joinSentAt = null; // the first `join` (Date.now())
  const unavailable = []; // every track-unavailable payload, in order
  function send(type, payload) {
    const msg = { type, roomId: wireRoomId, sessionId: cfg.sessionId };
    if (payload !== undefined) msg.payload = payload;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      log("not sent (socket not open):", type);
      return;
    }
    ws.send(JSON.stringify(msg));
    sent[type] = (sent[type] || 0) + 1;
  }

  function openSocket() {
    const url = new URL(cfg.ws);
    if (cfg.token) url.searchParams.set("access_token", cfg.token);
    joined = false;
    joinOut = false;
    const sock = new WebSocket(url.toString());
    ws = sock;
    sock.onopen = () => {
      log("ws open");
      const join = () => {
        send("join");
        if (joinSentAt === null) joinSentAt = Date.now();
        joinOut = true;
        if (isPerfect && wantOffer) perfectOffer("negotiationneeded, once `join` is out");
        if (cfg.mode === "early-ice" || cfg.mode === "offer-only") {
          enqueue("early offer", () => offerNow(cfg.mode));
        }
      };
      if (cfg.delayJoin > 0) setTimeout(join, cfg.delayJoin);
      else join();
    };
    // MDN's perfect negotiation handles each message as it comes; the other modes one at a time.
    sock.onmessage = (e) =>
      isPerfect ? handle(e.data).catch((x) => fail("handle", x)) : enqueue("handle", () => handle(e.data));
    sock.onclose = (e) => {
      closes.push({ code: e.code, reason: e.reason, at: Date.now() });
      log("ws close", e.code, e.reason);
      if (recovering && e.code === 4002) {
        recovering = false;
        openSocket(); // join again, same sessionId, on the new peer connection
      }
    };
    sock.onerror = () => log("ws error");
  }

  async function handle(data) {
    const m = JSON.parse(data);
    received[m.type] = (received[m.type] || 0) + 1;
    let p = m.payload;
    if (typeof p === "string") p = JSON.parse(p);
    if (m.type !== "ice") log("<-", m.type, m.type === "offer" || m.type === "answer" ? "" : p);
    switch (m.type) {
      case "joined":
        joined = true;
        joinedPayload = p;
        if (cfg.iceFromJoined && pc && pc.signalingState === "stable" && !pc.localDescription) {
          // before the first description: gathering has not started, the servers apply to it
          pc.setConfiguration({ ...pc.getConfiguration(), iceServers: p.iceServers || [] });
          log("iceServers from joined:", (p.iceServers || []).map((x) => x.urls));
        }
        for (const x of p.participants || []) participants.set(x.sessionId, x);
        if (cfg.mode === "offer") await offerNow("after joined");
        else maybeOffer();
        break;
      case "participant-joined":
        participants.set(p.sessionId, p);
        break;
      case "participant-left":
        participants.delete(p.sessionId);
        leftEvents.push(p);
        break;
      case "tracks":
        // offer-only: a map describes the m-lines of the description that follows it, and only
        // the server's answers are ever applied.
        if (cfg.mode === "offer-only") {
          pendingTracks = p.tracks || [];
          // Entries for m-lines we already have apply now: the server filled a vacant m-line
          // (docs/protocol.md) and sends the map with no description after it.
          const ours = new Set(pc.getTransceivers().filter((t) => t.currentDirection).map((t) => t.mid));
          const now = pendingTracks.filter((t) => ours.has(t.mid));
          trackList = [...trackList.filter((t) => !now.some((n) => n.mid === t.mid)), ...now];
        } else trackList = p.tracks || [];
        break;
      case "offer":
        if (isPerfect) {
          await onDescription(p);
          break;
        }
        if (cfg.mode === "offer-only") {
          pendingTracks = null;
          log("offer-only: the server's offer is ignored");
          break;
        }
        await pc.setRemoteDescription(p); // implicit rollback of our own offer on glare
        preferCodec();
        await afterRemoteDescription();
        if (cfg.delayAnswer > 0) await sleep(cfg.delayAnswer);
        await pc.setLocalDescription();
        send("answer", { type: "answer", sdp: pc.localDescription.sdp });
        answeredFirst = true;
        // The browser fires negotiationneeded again if the answer left something unnegotiated.
        wantOffer = glareRetry;
        glareRetry = false;
        maybeOffer();
        break;
      case "answer":
        if (isPerfect) {
          await onDescription(p);
          break;
        }
        if (pendingTracks) [trackList, pendingTracks] = [pendingTracks, null];
        await pc.setRemoteDescription(p);
        await afterRemoteDescription();
        maybeOffer();
        break;
      case "ice":
        await onRemoteIce(p);
        break;
      case "state":
        states.push(p.state);
        break;
      case "track-unavailable":
        unavailable.push(p);
        break;
      case "error":
        serverErrors.push(p);
        if (p.code === "media-failed") recoverFromMediaFailure();
        if (p.code === "glare") {
          wantOffer = true;
          glareRetry = pc.signalingState !== "stable";
          maybeOffer();
        }
        break;
      default:
        log("unknown message type", m.type);
    }
  }

  function preferCodec() {
    preferCodecFirst();
    acceptOnly();
    // Restrict what this peer SENDS to cfg.codec (plus its RTX) on its own video transceivers.
    if (!cfg.codec || !RTCRtpReceiver.getCapabilities) return;
    const all = RTCRtpReceiver.getCapabilities("video").codecs;
    const wanted = "video/" + cfg.codec.toLowerCase();
    const picked = all.filter((c) => c.mimeType.toLowerCase() === wanted);
    const rtx = all.filter((c) => c.mimeType.toLowerCase() === "video/rtx");
    if (!picked.length) return fail("preferCodec", new Error("no " + wanted + " here"));
    for (const t of pc.getTransceivers()) {
      if (t.sender.track && t.sender.track.kind === "video" && t.setCodecPreferences) {
        t.setCodecPreferences([...picked, ...rtx]);
      }
    }
  }

  function preferCodecFirst() {
    // cfg.codecFirst first, every other codec after it, on this peer's own video transceivers.
    if (!cfg.codecFirst || !RTCRtpReceiver.getCapabilities) return;
    const all = RTCRtpReceiver.getCapabilities("video").codecs;
    const wanted = "video/" + cfg.codecFirst.toLowerCase();
    const first = all.filter((c) => c.mimeType.toLowerCase() === wanted);
    if (!first.length) return fail("preferCodecFirst", new Error("no " + wanted + " here"));
    const rest = all.filter((c) => c.mimeType.toLowerCase() !== wanted);
    for (const t of pc.getTransceivers()) {
      if (t.sender.track && t.sender.track.kind === "video" && t.setCodecPreferences) {
        t.setCodecPreferences([...first, ...rest]);
      }
    }
  }

  function acceptOnly() {
    // Receive-only video transceivers accept cfg.recvCodec (plus RTX) only.
    if (!cfg.recvCodec || !RTCRtpReceiver.getCapabilities) return;
    const all = RTCRtpReceiver.getCapabilities("video").codecs;
    const wanted = "video/" + cfg.recvCodec.toLowerCase();
    const picked = all.filter((c) => c.mimeType.toLowerCase() === wanted);
    const rtx = all.filter((c) => c.mimeType.toLowerCase() === "video/rtx");
    if (!picked.length) return fail("acceptOnly", new Error("no " + wanted + " here"));
    for (const t of pc.getTransceivers()) {
      if (!t.sender.track && t.receiver.track.kind === "video" && t.setCodecPreferences && !t.stopped) {
        t.setCodecPreferences([...picked, ...rtx]);
      }
    }
  }

  async function outboundVideoCodec() {
    if (!pc) return null;
    try {
      const stats = await pc.getStats();
      let codecId = null;
      stats.forEach((s) => {
        if (s.type === "outbound-rtp" && s.kind === "video" && s.codecId) codecId = s.codecId;
      });
      const codec = codecId && stats.get(codecId);
      return codec ? codec.mimeType : null;
    } catch (e) {
      log("outbound stats", e);
      return null;
    }
  }

  async function afterRemoteDescription() {
    remoteSet = true;
    while (pendingIce.length) {
      const c = pendingIce.shift();
      await pc.addIceCandidate(c).catch((e) => fail("addIceCandidate (buffered)", e));
    }
    while (heldIce.length) send("ice", heldIce.shift());
  }

  async function onRemoteIce(p) {
    if (!p || !p.candidate) return; // end of candidates: nothing to do against an ICE-lite server
    const c = { candidate: p.candidate, sdpMid: p.sdpMid, sdpMLineIndex: p.sdpMLineIndex };
    if (!pc.remoteDescription) {
      pendingIce.push(c);
      return;
    }
    await pc.addIceCandidate(c).catch((e) => fail("addIceCandidate", e));
  }

  async function offerNow(why) {
    if (makingOffer || left) return;
    makingOffer = true;
    wantOffer = false;
    try {
      preferCodec();
      if (cfg.delayOffer > 0 && firstOffer) await sleep(cfg.delayOffer);
      firstOffer = false;
      await pc.setLocalDescription();
      send("offer", { type: "offer", sdp: pc.localDescription.sdp });
      log("-> offer", why);
    } finally {
      makingOffer = false;
    }
  }

  function maybeOffer() {
    if (isPerfect || cfg.mode === "answer-only" || cfg.mode === "offer-only") return;
    if (!wantOffer || !joined || left || makingOffer || !pc || pc.signalingState !== "stable") return;
    if (cfg.mode === "answer" && !answeredFirst) return;
    enqueue("offer", () => (wantOffer && pc.signalingState === "stable" ? offerNow("negotiation") : null));
  }

  const candidateAddress = (c) => (c.split(" ")[4] || "").toLowerCase();
  const isLoopback = (c) => {
    const a = candidateAddress(c);
    return a.startsWith("127.") || a === "::1";
  };

  function createPc() {
    const conn = new RTCPeerConnection({ iceServers: [] });
    conn.onicecandidate = (e) => {
      const c = e.candidate;
      if (!c || !c.candidate) {
        if (!c) sendIce({ candidate: "" });
        return;
      }
      if (cfg.loopbackOnly && !isLoopback(c.candidate)) return;
      sendIce({ candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex });
    };
    conn.onnegotiationneeded = () => {
      if (isPerfect && joinOut) return void perfectOffer("negotiationneeded");
      wantOffer = true;
      maybeOffer();
    };
    conn.onsignalingstatechange = () => maybeOffer();
    conn.onconnectionstatechange = () => log("connectionState", conn.connectionState);
    conn.oniceconnectionstatechange = () => log("iceConnectionState", conn.iceConnectionState);
    conn.onicegatheringstatechange = () => log("iceGatheringState", conn.iceGatheringState);
    conn.ontrack = (e) => {
      if (e.streams[0]) streamOf.set(e.transceiver, e.streams[0].id);
      log("track", e.track.kind, "mid", e.transceiver.mid, "stream", e.streams[0] && e.streams[0].id);
    };
    return conn;
  }

  // What docs/protocol.md asks of a client after `media-failed` (close 4002 follows): a new
  // RTCPeerConnection with the same tracks, then `join` again with the same sessionId. (The
  // server sends it when ICE never started, e.g. the Chromium defect of the client matrix.)
  function recoverFromMediaFailure() {
    if (recovering || left || !pc) return;
    recovering = true;
    recoveries++;
    [joined, joinOut] = [false, false]; // nothing more on the old socket: the session has ended
    log("media-failed: a new peer connection, then join again");
    for (const r of records) r.superseded = true;
    const old = pc;
    pc = createPc();
    for (const s of local.sources) pc.addTrack(s.track, local.stream);
    if (local.screen) local.screen.sender = pc.addTrack(local.screen.track, local.screen.stream);
    old.close();
    [remoteSet, makingOffer, answeredFirst, glareRetry] = [false, false, false, false];
    pendingIce.length = 0;
    heldIce.length = 0;
    pendingTracks = null;
    trackList = [];
  }

  // ---- perfect negotiation, the polite side (MDN's pattern; mode=perfect | perfect-explicit) --
  async function perfectOffer(why) {
    offersStarted++;
    try {
      if (cfg.delayOffer > 0 && firstOffer) await sleep(cfg.delayOffer);
      firstOffer = false;
      makingOffer = true;
      await pc.setLocalDescription();
      const d = pc.localDescription; // an answer if a server offer was applied meanwhile
      send(d.type, { type: d.type, sdp: d.sdp });
      log("->", d.type, why);
    } catch (e) {
      fail("perfect negotiation: " + why, e);
    } finally {
      makingOffer = false;
    }
  }

  let remoteApplying = Promise.resolve(); // the last setRemoteDescription of onDescription
  async function onDescription(desc) {
    // An explicit rollback judges the collision by signalingState, so a description still being
    // applied must land first: an answer in flight leaves have-local-offer for a few ms, and a
    // server offer arriving then would roll back in stable (InvalidStateError, the offer lost).
    if (cfg.mode === "perfect-explicit") await remoteApplying.catch(() => null);
    const collision = desc.type === "offer" && (makingOffer || pc.signalingState !== "stable");
    if (collision && cfg.mode === "perfect-explicit") {
      const started = offersStarted;
      await pc.setLocalDescription({ type: "rollback" });
      // Our tracks are unnegotiated again: Chrome fires negotiationneeded, and in about half of
      // the tries its handler's offer goes out before the server's offer is applied. Make that
      // happen every time: the stale offer is sent just before our answer.
      await sleep(0);
      const fired = offersStarted > started; // Chrome's own negotiationneeded made it already
      const stale = fired ? null : perfectOffer("stale, right after the rollback");
      await (remoteApplying = pc.setRemoteDescription(desc));
      await stale;
    } else {
      await (remoteApplying = pc.setRemoteDescription(desc)); // implicit rollback on a collision
    }
    await afterRemoteDescription();
    if (desc.type !== "offer") return;
    if (cfg.delayAnswer > 0) await sleep(cfg.delayAnswer);
    await pc.setLocalDescription();
    const d = pc.localDescription;
    send(d.type, { type: d.type, sdp: d.sdp });
    log("->", d.type, collision ? "(after a collision)" : "");
  }

  function sendIce(p) {
    if (cfg.mode === "offer" && !remoteSet) heldIce.push(p);
    else send("ice", p);
  }

  // ---- remote tracks --------------------------------------------------------------------
  function ownerOf(tr) {
    const byMid = trackList.find((t) => t.mid === tr.mid);
    if (byMid) return byMid;
    const track = tr.receiver.track;
    const byId = trackList.find((t) => t.trackId === track.id);
    if (byId) return byId;
    const streamId = streamOf.get(tr) || null;
    const who = streamId ? participants.get(streamId) : null;
    return { sessionId: streamId, userId: who ? who.userId : null, streamId, trackId: track.id };
  }

  const isReceiving = (tr) => tr.currentDirection === "recvonly" || tr.currentDirection === "sendrecv";

  function syncRecords() {
    if (!pc || pc.signalingState === "closed") return;
    for (const tr of pc.getTransceivers()) {
      if (!tr.mid || !tr.receiver.track) continue;
      const latest = records.filter((r) => r.transceiver === tr && !r.superseded).pop();
      if (!isReceiving(tr)) {
        if (latest) latest.pausedSeen = true;
        continue;
      }
      const own = ownerOf(tr);
      if (latest && !latest.pausedSeen && (!own.sessionId || latest.sessionId === own.sessionId)) {
        if (!latest.userId && own.userId) latest.userId = own.userId;
        continue;
      }
      if (latest) latest.superseded = true;
      addRecord(tr, own);
    }
  }

  function addRecord(tr, own) {
    const track = tr.receiver.track;
    const rec = {
      id: records.length, transceiver: tr, track, mid: tr.mid, kind: track.kind,
      sessionId: own.sessionId || null, userId: own.userId || null,
      streamId: own.streamId || streamOf.get(tr) || null, trackId: own.trackId || track.id,
      superseded: false, pausedSeen: false, video: null, audio: null, frozen: null, createdAt: Date.now(),
      lastPackets: -1, lastPacketAt: null, firstFrameAt: null,
    };
    if (track.kind === "video") {
      const v = document.createElement("video");
      v.muted = true;
      v.autoplay = true;
      v.playsInline = true;
      v.srcObject = new MediaStream([track]);
      v.addEventListener("loadeddata", () => { if (rec.firstFrameAt === null) rec.firstFrameAt = Date.now(); });
      document.getElementById("remote").appendChild(v);
      v.play().catch((e) => log("video.play", e));
      rec.video = v;
    } else {
      // Chromium computes a received track's audio level only while something plays it out.
      const a = document.createElement("audio");
      a.autoplay = true;
      a.srcObject = new MediaStream([track]);
      document.getElementById("remote").appendChild(a);
      a.play().catch((e) => log("audio.play", e));
      rec.audio = a;
      rec.analyser = toneAnalyser(track);
    }
    records.push(rec);
    log("remote track", rec.kind, "mid", rec.mid, "from", rec.userId, rec.sessionId);
  }

  // The dominant frequency of a received audio track (stats.py maps it to the sender's tone).
  // Chromium feeds a remote WebRTC track to WebAudio only while a media element plays it (above).
  let rxAudio = null;
  function toneAnalyser(track) {
    rxAudio = rxAudio || new AudioContext();
    rxAudio.resume().catch((e) => log("rx AudioContext.resume", e));
    const analyser = rxAudio.createAnalyser();
    analyser.fftSize = 8192;
    analyser.smoothingTimeConstant = 0;
    rxAudio.createMediaStreamSource(new MediaStream([track])).connect(analyser);
    return analyser;
  }

  function dominantHz(analyser) {
    const bins = new Float32Array(analyser.frequencyBinCount);
    analyser.getFloatFrequencyData(bins);
    const hzPerBin = rxAudio.sampleRate / analyser.fftSize;
    let best = -1;
    for (let i = Math.ceil(100 / hzPerBin); i < Math.min(bins.length, 3000 / hzPerBin); i++) {
      if (best < 0 || bins[i] > bins[best]) best = i;
    }
    return best >= 0 && bins[best] > -80 ? Math.round(best * hzPerBin) : null; // else silence
  }

  const probe = document.createElement("canvas");
  probe.width = probe.height = 16;
  const probeCtx = probe.getContext("2d", { willReadFrequently: true });

  function sampleColour(v) {
    if (!v || !v.videoWidth || !v.videoHeight) return null;
    const w = v.videoWidth;
    const h = v.videoHeight;
    probeCtx.drawImage(v, w / 4, h / 4, w / 2, h / 2, 0, 0, 16, 16);
    const d = probeCtx.getImageData(0, 0, 16, 16).data;
    const sum = [0, 0, 0];
    for (let i = 0; i < d.length; i += 4) for (let k = 0; k < 3; k++) sum[k] += d[i + k];
    return sum.map((s) => Math.round(s / (d.length / 4)));
  }

  function nearestColour(rgb) {
    if (!rgb) return null;
    let best = null;
    let bestD = Infinity;
    for (const [name, ref] of Object.entries(PALETTE)) {
      const dist = ref.reduce((acc, x, i) => acc + (x - rgb[i]) ** 2, 0);
      if (dist < bestD) [best, bestD] = [name, dist];
    }
    return best;
  }

  async function inboundStats(tr) {
    const out = {};
    const stats = await tr.receiver.getStats();
    stats.forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      out.packetsReceived = s.packetsReceived;
      out.bytesReceived = s.bytesReceived;
      out.framesDecoded = s.framesDecoded;
      out.framesReceived = s.framesReceived;
      out.totalAudioEnergy = s.totalAudioEnergy;
      out.audioLevel = s.audioLevel;
      out.codecId = s.codecId;
      if (s.lastPacketReceivedTimestamp !== undefined) {
        const age = s.timestamp - s.lastPacketReceivedTimestamp;
        out.statsPacketAge = age > -1000 && age < 1e7 ? Math.max(0, age) : null;
      }
    });
    stats.forEach((s) => {
      if (s.type === "codec" && s.id === out.codecId) out.codec = s.mimeType;
    });
    return out;
  }

  async function recordReport(r) {
    const tr = r.transceiver;
    const base = {
      id: r.id, trackId: r.trackId, mid: r.mid, kind: r.kind, userId: r.userId,
      sessionId: r.sessionId, streamId: r.streamId, superseded: r.superseded,
      firstFrameAt: r.firstFrameAt,
    };
    if (r.frozen) return { ...r.frozen, ...base, ended: true };
    const receiving = isReceiving(tr) && !r.pausedSeen;
    const now = Date.now();
    let stats = {};
    try {
      stats = await inboundStats(tr);
    } catch (e) {
      log("getStats", e);
    }
    if (stats.packetsReceived !== undefined && stats.packetsReceived !== r.lastPackets) {
      r.lastPackets = stats.packetsReceived;
      r.lastPacketAt = now;
    }
    const rgb = r.video && receiving ? sampleColour(r.video) : null;
    const out = {
      ...base, ...stats,
      readyState: r.track.readyState, muted: r.track.muted, direction: tr.currentDirection,
      receiving, ended: r.superseded || !receiving || r.track.readyState === "ended",
      lastPacketAge: stats.statsPacketAge ?? (r.lastPacketAt === null ? null : now - r.lastPacketAt),
      rgb, colour: nearestColour(rgb),
      toneHz: r.analyser && receiving ? dominantHz(r.analyser) : null,
      width: r.video ? r.video.videoWidth : null, height: r.video ? r.video.videoHeight : null,
    };
    if (r.superseded || r.pausedSeen) {
      r.frozen = out;
      if (r.video) r.video.srcObject = null;
      if (r.audio) r.audio.srcObject = null;
    }
    return out;
  }

  // ---- the report -----------------------------------------------------------------------
  async function selectedPair() {
    if (!pc) return null;
    try {
      const stats = await pc.getStats();
      let pair = null;
      stats.forEach((r) => {
        if (r.type === "transport" && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
      });
      if (!pair) stats.forEach((r) => { if (r.type === "candidate-pair" && r.selected) pair = r; });
      if (!pair) return null;
      const pick = (c) => c && { protocol: c.protocol, tcpType: c.tcpType || null,
                                 address: c.address, port: c.port, type: c.candidateType };
      return { state: pair.state, bytesSent: pair.bytesSent, bytesReceived: pair.bytesReceived,
               local: pick(stats.get(pair.localCandidateId)), remote: pick(stats.get(pair.remoteCandidateId)) };
    } catch (e) {
      log("selected pair", e);
      return null;
    }
  }

  async function report() {
    syncRecords();
    const tracks = [];
    for (const r of records) tracks.push(await recordReport(r));
    return {
      peerId: cfg.peerId, user: cfg.user, sessionId: cfg.sessionId, roomId: cfg.roomId,
      mode: cfg.mode, color: cfg.color, ts: Date.now(), userAgent: navigator.userAgent,
      started, joined, left, joinedPayload,
      wsState: ws ? ["connecting", "open", "closing", "closed"][ws.readyState] : null,
      connectionState: pc ? pc.connectionState : null,
      iceConnectionState: pc ? pc.iceConnectionState : null,
      signalingState: pc ? pc.signalingState : null,
      participants: [...participants.values()], participantLeft: leftEvents,
      messages: { ...received }, sent: { ...sent }, serverErrors, states, closes, errors, recoveries,
      trackMap: trackList, tracks,
      localTracks: local.sources.map((s) => ({ kind: s.track.kind, readyState: s.track.readyState })),
      commands: commandResults, log: logLines.slice(-100),
      selectedPair: cfg.pairStats ? await selectedPair() : null,
      joinSentAt, unavailable, outboundVideoCodec: await outboundVideoCodec(),
    };
  }

  // ---- loopback self-test -----------------------------------------------------------------
  async function loopback() {
    const sender = new RTCPeerConnection({ iceServers: [] });
    pc = new RTCPeerConnection({ iceServers: [] });
    const wire = (from, to) => {
      const early = [];
      from.onicecandidate = (e) => {
        if (!e.candidate || !e.candidate.candidate || !isLoopback(e.candidate.candidate)) return;
        if (to.remoteDescription) to.addIceCandidate(e.candidate).catch((x) => fail("loop ice", x));
        else early.push(e.candidate);
      };
      return async () => {
        for (const c of early.splice(0)) await to.addIceCandidate(c).catch((x) => fail("loop ice", x));
      };
    };
    const flushToReceiver = wire(sender, pc);
    const flushToSender = wire(pc, sender);
    pc.ontrack = (e) => e.streams[0] && streamOf.set(e.transceiver, e.streams[0].id);
    for (const s of local.sources) sender.addTrack(s.track, local.stream);
    const offer = await sender.createOffer();
    await sender.setLocalDescription(offer);
    await pc.setRemoteDescription(offer);
    await flushToReceiver();
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await sender.setRemoteDescription(answer);
    await flushToSender();
    joined = true;
    const self = { sessionId: "loop-" + cfg.sessionId, userId: cfg.user };
    participants.set(self.sessionId, self);
    trackList = pc.getTransceivers().map((t) => ({
      mid: t.mid, kind: t.receiver.track.kind, trackId: t.receiver.track.id,
      streamId: local.stream.id, ...self,
    }));
    window.peer.loopbackSender = sender;
  }

  // ---- commands (Firefox has no driver: they come back in the answer to a report POST) -----
  async function runCommand(c) {
    try {
      const value = await window.peer[c.method](...(c.args || []));
      commandResults[c.id] = { ok: true, value: value === undefined ? null : value };
    } catch (e) {
      commandResults[c.id] = { ok: false, error: text(e.message || e) };
      fail("command " + c.method, e);
    }
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  async function postLoop() {
    for (;;) {
      try {
        const body = JSON.stringify(await report());
        const res = await fetch(cfg.report, { method: "POST", body, headers: { "Content-Type": "text/plain" } });
        const answer = await res.json();
        for (const c of answer.commands || []) await runCommand(c);
      } catch (e) {
        log("report POST failed", e);
      }
      await sleep(cfg.reportMs);
    }
  }

  // ---- the API for tests ----------------------------------------------------------------
  window.peer = {
    cfg,
    report,
    get started() { return started; },
    get pc() { return pc; },
    async addScreenShare(color) {
      if (local.screen) throw new Error("a screen share is already on");
      const src = colourSource(color || "yellow", "screen");
      src.sender = pc.addTrack(src.track, src.stream);
      local.screen = src;
      return true;
    },
    async removeScreenShare() {
      if (!local.screen) throw new Error("no screen share");
      pc.removeTrack(local.screen.sender);
      local.screen.stop();
      local.screen = null;
      return true;
    },
    async leave() {
      send("leave");
      left = true;
      for (const s of local.sources) s.stop();
      if (local.screen) local.screen.stop();
      if (pc) pc.close();
      return true;
    },
    async closeSocket(code) {
      if (ws) ws.close(code || 1000, "test");
      return true;
    },
    async reconnect(iceRestart) {
      if (ws && ws.readyState < WebSocket.CLOSING) ws.close(1000, "reconnect");
      openSocket();
      if (iceRestart) pc.restartIce();
      return true;
    },
    async sendRaw(textFrame) {
      ws.send(textFrame);
      return true;
    },
    // Load another peer.html into this browser (Firefox has no driver to do it): the client
    // matrix reuses one Firefox process for many calls.
    async navigate(url) {
      setTimeout(() => location.assign(url), 0);
      return true;
    },
    // A deliberate fault for the harness self-check: send the first live remote track of each
    // kind back instead of our own camera and tone, as an echoing server would.
    async echo() {
      for (const s of pc.getSenders()) {
        const kind = s.track && s.track.kind;
        const back = records.find((r) => r.kind === kind && !r.superseded && r.track.readyState === "live");
        if (back) await s.replaceTrack(back.track);
      }
      return true;
    },
  };

  async function start() {
    try {
      if (cfg.video) {
        const v = colourSource(cfg.color, "camera");
        local.sources.push(v);
        local.stream.addTrack(v.track);
      }
      if (cfg.audio) {
        const a = await audioSource(cfg.color);
        local.sources.push(a);
        local.stream.addTrack(a.track);
      }
      if (cfg.mode === "loopback") {
        await loopback();
      } else {
        pc = createPc();
        for (const s of local.sources) pc.addTrack(s.track, local.stream);
        openSocket();
      }
      started = true;
      log("started", cfg.mode, cfg.user, cfg.sessionId);
    } catch (e) {
      fail("start", e);
    }
    if (cfg.report) postLoop();
  }
  start();
})();
