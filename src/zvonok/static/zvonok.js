// zvonok.js: the browser SDK of zvonok (a WebRTC SFU with WebSocket signaling).
//
// Owns the client side of docs/protocol.md: one WebSocket and one RTCPeerConnection per call,
// W3C perfect negotiation as the POLITE peer (the server is impolite), trickle ICE both ways
// with remote candidates buffered until a remote description is set, the `tracks` map that names
// the owner of every received track, reconnection with the same sessionId (resume, ICE restart
// or rebuild), remote mute detection from RTP, a 2 s connection-quality sample, and adaptive
// media: the camera published in 3 simulcast encodings, the server's `publish-layers` turning
// them on and off (RTCRtpSender.setParameters), the receiver's wishes per track (`track-settings`,
// from each video element's size and visibility), `track-paused` and `speakers` as events, and
// codec steering's backup stream: on the server's `publish-backup`, a second, low-resolution
// encoding of a published video in another codec (a clone of the track on a send-only
// transceiver of its own), stopped when the server says so.
// A dependency-free ES module with JSDoc types; no build step. It talks to nothing but the
// WebSocket URL it is given (and the media server that URL's signaling names).

const SESSION_ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** @type {Required<ReconnectOptions>} */
const RECONNECT_DEFAULTS = { minDelay: 500, maxDelay: 8000, timeout: 60000 };
const STATS_INTERVAL = 2000;
/** Jitter-buffer help for a receive-only browser (see `_tuneJitterBuffers`): round trips below
 * JITTER_RTT_MIN_MS need none; the target is the round trip + JITTER_EXTRA_MS, at most
 * JITTER_MAX_MS, released JITTER_RELEASE_MS after the last retransmission request. */
const JITTER_RTT_MIN_MS = 40;
const JITTER_EXTRA_MS = 20;
const JITTER_MAX_MS = 400;
const JITTER_RELEASE_MS = 10000;
const JOIN_TIMEOUT = 15000;
const ICE_DISCONNECT_GRACE = 2000;
const ICE_RESTART_MIN_GAP = 5000;
// Join errors after which trying again cannot help (`session-taken` is handled apart: the SDK
// picks a fresh sessionId and joins again).
const FATAL_JOIN_ERRORS = new Set([
  "session-taken", "room-full", "too-many-sessions", "room-mismatch", "bad-message",
]);
// How many fresh sessionIds join() tries after `session-taken` before giving up.
const SESSION_TAKEN_RETRIES = 3;
// The camera's simulcast encodings, lowest first (the order of a=simulcast:send in the offer;
// Chromium and Firefox ESR accept the same sendEncodings), used from this capture width up.
// Capped bitrates: the low layer with audio fits a 300 kbit/s downlink with room to spare
// (Chromium would give 320x180 up to 200 kbit/s), the ladder 150 / 500 / 1500 kbit/s.
const SIMULCAST_LAYERS = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1500000 },
];
const SIMULCAST_MIN_WIDTH = 640;
// With `videoCodec: "vp9"` a Chromium camera goes out as one VP9 encoding with 3 spatial and 3
// temporal layers (SVC, RFC 9628; spatial layers predicted from the one below only at
// keyframes) instead of 3 simulcast encodings; the server forwards each subscriber the layers
// it can take. Firefox does not encode VP9 SVC: it keeps simulcast.
const SVC_MODE = "L3T3_KEY";
// What `publish({video: true})` asks the camera for (a simulcast ladder of 1280/640/320 px).
const CAMERA_DEFAULT = { width: { ideal: 1280 }, height: { ideal: 720 } };
// `track-settings` goes out at most this often (ms), carrying every wish changed meanwhile.
const TRACK_SETTINGS_GAP = 500;
const TRACK_SETTINGS_MAX = 64;
// A backup stream (`publish-backup`) is sent at most this wide (scaleResolutionDownBy) and fast.
const BACKUP_WIDTH = 320;
const BACKUP_MAX_BITRATE = 200000;

/**
 * @typedef {object} ReconnectOptions
 * @property {number} [minDelay]  first backoff delay in ms (default 500)
 * @property {number} [maxDelay]  backoff ceiling in ms (default 8000)
 * @property {number} [timeout]   give up (event `failed`) after this many ms (default 60000)
 *
 * @typedef {object} ZvonokCallOptions
 * @property {string} url          ws(s)://host/api/v1/{chat|group}/{id}/call (or a path on this host)
 * @property {string} [token]      the JWT; sent as the `access_token` query parameter
 * @property {number|string} roomId  the chat/group id, echoed in every message
 * @property {string} [sessionId]  1-64 of [A-Za-z0-9_.-]; generated when absent, kept for resume
 * @property {RTCIceServer[]} [iceServers]  default: the `iceServers` of the server's `joined`
 * @property {ReconnectOptions} [reconnect]
 * @property {number} [statsInterval]  ms between `quality` events (default 2000; 0 disables)
 * @property {boolean} [simulcast]  publish the camera in 3 encodings (q/h/f) when it is at least
 *   640 px wide (default true); false: one encoding
 * @property {"vp8"|"vp9"|"h264"} [videoCodec]  the codec this client prefers to publish video in
 *   (put first with setCodecPreferences; the server follows a publisher's order unless a
 *   subscriber cannot decode it); default: the server's order (VP8). "vp9" in Chromium publishes
 *   the camera as one encoding with spatial and temporal layers (`scalabilityMode` L3T3_KEY)
 *   instead of simulcast, when `simulcast` is on
 * @property {boolean} [debug]     log signaling to the console
 *
 * @typedef {object} RemoteTrackInfo
 * @property {string} trackId     the server's id of the forwarded track
 * @property {string} mid
 * @property {"audio"|"video"} kind
 * @property {string} sessionId   the publisher's session
 * @property {string} userId      the publisher's user
 * @property {MediaStreamTrack} track
 * @property {MediaStream[]} streams
 * @property {boolean} muted
 * @property {boolean} paused      the server holds this video back (`track-paused`, weak downlink)
 *
 * @typedef {object} TrackSettings
 * @property {boolean} [paused]    do not send this video at all
 * @property {number} [maxWidth]   the largest width worth sending (device pixels)
 * @property {number} [maxHeight]
 *
 * @typedef {object} Speaker
 * @property {string} sessionId
 * @property {string} userId
 * @property {number} level        0..1
 *
 * @typedef {object} Participant
 * @property {string} sessionId
 * @property {string} userId
 * @property {Map<string, MediaStreamTrack>} tracks  trackId -> the received track
 */

/** An error with a machine-readable `code` (the protocol's codes plus the SDK's own). */
export class ZvonokError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {object} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message);
    this.name = "ZvonokError";
    /** @type {string} */
    this.code = code;
    Object.assign(this, extra);
  }
}

/** An event whose fields are both properties of the event (like RTCTrackEvent) and `detail`. */
export class ZvonokEvent extends Event {
  /**
   * @param {string} type
   * @param {Record<string, any>} [init]
   */
  constructor(type, init = {}) {
    super(type);
    /** @type {Record<string, any>} */
    this.detail = init;
    for (const [key, value] of Object.entries(init)) {
      if (!(key in Event.prototype)) /** @type {any} */ (this)[key] = value;
    }
  }
}

/**
 * Whether this browser encodes VP9 with spatial layers in one encoding (Chromium; Firefox does
 * not, and ignores `scalabilityMode`): its sender capabilities list the mode, or, where
 * capabilities carry no modes, it is not Firefox.
 */
function svcSupported() {
  const codecs = globalThis.RTCRtpSender?.getCapabilities?.("video")?.codecs ?? [];
  const vp9 = codecs.filter((c) => c.mimeType.toLowerCase() === "video/vp9");
  if (!vp9.length) return false;
  const modes = vp9.flatMap((c) => /** @type {any} */ (c).scalabilityModes ?? []);
  if (modes.length) return modes.includes(SVC_MODE);
  return !/firefox/i.test(globalThis.navigator?.userAgent ?? "");
}

/** @returns {string} a random session id (works outside secure contexts too) */
export function newSessionId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return "s-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The WebSocket URL of a call on the server that served this page (or on `base`).
 * @param {"chat"|"group"} kind
 * @param {string|number} roomId
 * @param {string} [base]  an http(s) or ws(s) origin; default `location.href`
 */
export function callUrl(kind, roomId, base) {
  const url = new URL(`/api/v1/${kind}/${encodeURIComponent(String(roomId))}/call`,
    base ?? location.href);
  url.protocol = url.protocol === "https:" || url.protocol === "wss:" ? "wss:" : "ws:";
  return url.toString();
}

/**
 * One call: one signaling WebSocket and one RTCPeerConnection to the SFU.
 *
 * Events: joined, participantjoined, participantleft, track, trackended, connectionstatechange,
 * reconnecting, reconnected, failed, error, quality, mute, trackunavailable, trackpaused,
 * speakers, publishlayers, publishbackup, serverstats.
 */
export class ZvonokCall extends EventTarget {
  /** @param {ZvonokCallOptions} options */
  constructor(options) {
    super();
    if (!options || !options.url) throw new ZvonokError("bad-options", "url is required");
    if (options.roomId === undefined || options.roomId === null || options.roomId === "") {
      throw new ZvonokError("bad-options", "roomId is required");
    }
    const sessionId = options.sessionId ?? newSessionId();
    if (!SESSION_ID_RE.test(sessionId)) {
      throw new ZvonokError("bad-options", "sessionId must be 1-64 of [A-Za-z0-9_.-]");
    }
    this._url = options.url;
    this._token = options.token ?? null;
    this.roomId = options.roomId;
    this.sessionId = sessionId;
    /** @type {string|null} */
    this.userId = null;
    this._iceServersOption = options.iceServers ?? null;
    /** @type {RTCIceServer[]} */
    this.iceServers = [];
    this._reconnectOptions = { ...RECONNECT_DEFAULTS, ...(options.reconnect ?? {}) };
    this._statsInterval = options.statsInterval ?? STATS_INTERVAL;
    /** @type {number|null} when the video receivers last asked for a retransmission (ms) */
    this._nackedAt = null;
    /** @type {number|null} the jitter-buffer target (ms) the SDK set on video receivers, or null */
    this.jitterBufferTarget = null;
    this._debug = Boolean(options.debug);
    this._simulcast = options.simulcast ?? true;
    const codec = options.videoCodec ?? null;
    if (codec !== null && !["vp8", "vp9", "h264"].includes(String(codec).toLowerCase())) {
      throw new ZvonokError("bad-options", "videoCodec is one of vp8, vp9, h264");
    }
    this._videoCodec = codec === null ? null : String(codec).toLowerCase();
    /** "new" | "connecting" | "joined" | "reconnecting" | "closed" | "failed" */
    this.state = "new";
    /** the server's view of this session's connection (its `state` messages) */
    this.serverState = "new";
    /** @type {Map<string, Participant>} */
    this.participants = new Map();
    /** the published camera/microphone tracks (a stable object: tracks are swapped inside it) */
    this.localStream = new MediaStream();
    /** @type {MediaStream|null} */
    this.screenStream = null;

    /** @type {WebSocket|null} */
    this._ws = null;
    /** @type {RTCPeerConnection|null} */
    this._pc = null;
    /** @type {{resolve: (v: any) => void, reject: (e: any) => void, timer: any}|null} */
    this._pendingJoin = null;
    /** @type {Promise<void>} */
    this._chain = Promise.resolve();
    /** @type {RTCIceCandidateInit[]} */
    this._pendingIce = [];
    this._needOffer = false;
    this._reofferAfterServerOffer = false;
    this._expectGlare = false;
    this._answeredFirst = false;
    /** mid -> the server's description of the track it sends there */
    this._trackMap = new Map();
    /** @type {Map<string, RemoteTrackInfo>} trackId -> received track */
    this._remote = new Map();
    /** @type {Set<string>} sessions that left (their late tracks are ignored) */
    this._departed = new Set();
    /** @type {{audio: LocalSlot|null, video: LocalSlot|null, screen: LocalSlot|null}} */
    this._local = { audio: null, video: null, screen: null };
    this._muted = { audio: false, video: false };
    /** @type {{started: number, attempt: number, timer: any}|null} */
    this._reconnect = null;
    this._iceTimer = null;
    this._lastIceRestart = 0;
    this._statsTimer = null;
    /** @type {{at: number, bytesIn: number, bytesOut: number, recv: number, lost: number,
     *   tracks: Map<string, {bytes: number, recv: number, lost: number}>}|null} */
    this._lastSample = null;
    this._lastEmittedState = "";
    this._leaving = false;
    this._lastEmittedServer = "";
    /** @type {Speaker[]} loudest first, from the server's `speakers` */
    this.speakers = [];
    /** @type {Map<string, TrackSettings>} trackId -> this client's wish (`track-settings`) */
    this._wishes = new Map();
    /** @type {Set<string>} trackIds whose wish the server has not been told yet */
    this._wishesDirty = new Set();
    this._wishesTimer = null;
    this._wishesSentAt = 0;
    // An older server answers `track-settings` with `error` (unknown type): stop sending it on
    // that connection (a run of bad messages would make the server close the socket).
    this._wishesRefused = false;
    /** @type {Map<string, string>} published trackId -> mid (from the server's `stats`) */
    this._publishedMids = new Map();
    /** @type {Map<RTCRtpSender, Promise<void>>} setParameters calls, one at a time per sender */
    this._layerChains = new Map();
    /** @type {WeakSet<RTCRtpSender>} senders created with the simulcast encodings */
    this._simulcastSenders = new WeakSet();
    /** @type {Map<string, BackupStream>} mid of a published video -> its backup stream */
    this._backups = new Map();
  }

  // ------------------------------------------------------------------ public API

  /**
   * Open the WebSocket (token in `access_token`) and send `join`.
   * @returns {Promise<{sessionId: string, userId: string, room: string, resumed: boolean,
   *   participants: {sessionId: string, userId: string}[], iceServers: RTCIceServer[]}>}
   */
  async join() {
    if (this.state !== "new") throw new ZvonokError("bad-state", `join() in state ${this.state}`);
    this.state = "connecting";
    try {
      for (let attempt = 0; ; attempt += 1) {
        try {
          return await this._openSocket();
        } catch (error) {
          if (asZvonokError(error).code !== "session-taken" || attempt >= SESSION_TAKEN_RETRIES
            || this.state !== "connecting") throw error;
          this._freshSessionId();
        }
      }
    } catch (error) {
      const err = asZvonokError(error);
      if (this.state === "connecting") {
        this._shutdown("closed");
        this._emitError(err.code, err.message, { fatal: true });
      }
      throw err;
    }
  }

  /**
   * Publish the camera and/or microphone (getUserMedia), or the tracks of a given stream.
   * @param {{audio?: boolean|MediaTrackConstraints, video?: boolean|MediaTrackConstraints}
   *   | MediaStream} [what]
   * @returns {Promise<MediaStream>} the local stream
   */
  async publish(what = { audio: true, video: true }) {
    this._assertOpen();
    let stream;
    let owned = false;
    if (what instanceof MediaStream) {
      stream = what;
    } else {
      const constraints = { ...what };
      if (constraints.video === true) constraints.video = CAMERA_DEFAULT;
      stream = await this._getMedia(() => navigator.mediaDevices.getUserMedia(constraints));
      owned = true;
    }
    for (const track of stream.getTracks()) {
      const kind = /** @type {"audio"|"video"} */ (track.kind);
      const old = this._local[kind];
      if (old) this._replaceLocal(kind, old, track, owned);
      else this._addLocal(kind, track, owned);
    }
    return this.localStream;
  }

  /**
   * Mute or unmute the microphone ("audio") or turn the camera off/on ("video"). The track is
   * disabled AND detached from its sender, so no RTP flows and the others' `mute` events fire.
   * @param {"audio"|"video"} kind
   * @param {boolean} muted
   */
  setMuted(kind, muted) {
    if (kind !== "audio" && kind !== "video") throw new ZvonokError("bad-argument", "kind?");
    this._muted[kind] = Boolean(muted);
    const slot = this._local[kind];
    if (slot) {
      slot.track.enabled = !muted;
      if (slot.sender) this._setSenderTrack(slot.sender, muted ? null : slot.track);
      for (const backup of this._backups.values()) {
        if (backup.slot !== slot) continue;
        backup.track.enabled = !muted;
        this._setSenderTrack(backup.transceiver.sender, muted ? null : backup.track);
      }
    }
    this._emit("mute", { local: true, kind, muted: Boolean(muted), sessionId: this.sessionId,
      userId: this.userId, track: slot?.track ?? null });
  }

  /** @param {"audio"|"video"} kind */
  isMuted(kind) {
    return this._muted[kind];
  }

  /**
   * Switch the camera or microphone to another device without renegotiation (replaceTrack).
   * @param {"audioinput"|"videoinput"} deviceKind
   * @param {string} deviceId
   */
  async switchDevice(deviceKind, deviceId) {
    this._assertOpen();
    const kind = deviceKind === "audioinput" ? "audio" : deviceKind === "videoinput" ? "video" : null;
    if (!kind) throw new ZvonokError("bad-argument", "deviceKind is audioinput or videoinput");
    const stream = await this._getMedia(() => navigator.mediaDevices.getUserMedia(
      { [kind]: { deviceId: { exact: deviceId } } }));
    const track = stream.getTracks()[0];
    const old = this._local[kind];
    if (old) this._replaceLocal(kind, old, track, true);
    else this._addLocal(kind, track, true);
    return track;
  }

  /**
   * Share the screen (getDisplayMedia, or the first video track of `options.stream`) as an extra
   * video track; its own offer publishes it.
   * @param {{stream?: MediaStream}} [options]
   * @returns {Promise<MediaStreamTrack>}
   */
  async startScreenShare(options = {}) {
    this._assertOpen();
    if (this._local.screen) return this._local.screen.track;
    const owned = !options.stream;
    const stream = options.stream ?? await this._getMedia(
      () => navigator.mediaDevices.getDisplayMedia({ video: true, audio: false }));
    const track = stream.getVideoTracks()[0];
    if (!track) throw new ZvonokError("media-unavailable", "the stream has no video track");
    if ("contentHint" in track) track.contentHint = "detail";
    this.screenStream = new MediaStream([track]);
    /** @type {LocalSlot} */
    const slot = { track, owned, sender: null, stream: this.screenStream };
    this._local.screen = slot;
    track.addEventListener("ended", () => {
      if (this._local.screen === slot) this.stopScreenShare();
    });
    if (this._pc) slot.sender = this._pc.addTrack(track, this.screenStream);
    return track;
  }

  /** Stop sharing the screen (removeTrack; a new offer unpublishes it). */
  stopScreenShare() {
    const slot = this._local.screen;
    if (!slot) return;
    this._local.screen = null;
    this.screenStream = null;
    for (const [mid, backup] of [...this._backups]) {
      if (backup.slot === slot) this._stopBackup(mid);
    }
    if (slot.sender && this._pc && this._pc.signalingState !== "closed") {
      try {
        this._pc.removeTrack(slot.sender);
      } catch (error) {
        this._log("removeTrack failed", error);
      }
    }
    if (slot.owned) slot.track.stop();
  }

  /** Leave the call: `leave` to the server, then close everything. */
  async leave() {
    if (this.state === "closed" || this.state === "failed" || this._leaving) return;
    const ws = this._ws;
    if (ws && ws.readyState === WebSocket.OPEN && this.state === "joined") {
      // The server answers `leave` by closing the socket; wait for that (at most 1 s) before
      // closing the connection, so the others are told "leave", not that the media dropped.
      this._leaving = true;
      this._send("leave", null);
      await new Promise((resolve) => {
        ws.addEventListener("close", resolve);
        setTimeout(resolve, 1000);
      });
    }
    this._shutdown("closed");
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, "leave");
  }

  /**
   * Tell the server what this client wants of a received video track (`track-settings`):
   * `{paused: true}` stops it, `{maxWidth, maxHeight}` (device pixels) caps the layer it gets;
   * `null` (or `{}`) lifts every limit. Sent once joined, at most twice a second, changes only.
   * @param {string} trackId
   * @param {TrackSettings|null} settings
   */
  setTrackSettings(trackId, settings) {
    if (typeof trackId !== "string" || !trackId) throw new ZvonokError("bad-argument", "trackId?");
    /** @type {TrackSettings} */
    const wish = {};
    if (settings?.paused) wish.paused = true;
    for (const key of /** @type {const} */ (["maxWidth", "maxHeight"])) {
      const value = settings?.[key];
      if (typeof value === "number" && Number.isFinite(value) && value > 0) {
        wish[key] = Math.max(1, Math.round(value));
      }
    }
    const old = this._wishes.get(trackId);
    if (old && sameWish(old, wish)) return;
    if (!old && Object.keys(wish).length === 0) return;
    this._wishes.set(trackId, wish);
    this._wishesDirty.add(trackId);
    this._scheduleWishes();
  }

  /**
   * Adaptive stream for apps: keep the server told how large `element` (the <video> showing
   * the received track `trackId`) is on screen (its size x devicePixelRatio, by ResizeObserver)
   * and whether it is visible at all (IntersectionObserver, the page's visibility): an unseen
   * video is paused, a small one gets a smaller simulcast layer. Returns a function that stops
   * observing and lifts the limits.
   * @param {string} trackId
   * @param {HTMLElement} element
   * @returns {() => void}
   */
  observeVideo(trackId, element) {
    const state = { width: 0, height: 0, visible: true, sized: false };
    const update = () => {
      if (!state.sized) return;
      const shown = state.visible && document.visibilityState !== "hidden"
        && state.width > 0 && state.height > 0;
      const ratio = globalThis.devicePixelRatio || 1;
      this.setTrackSettings(trackId, shown
        ? { maxWidth: state.width * ratio, maxHeight: state.height * ratio }
        : { paused: true });
    };
    const resize = typeof ResizeObserver === "function" ? new ResizeObserver((entries) => {
      const box = entries[entries.length - 1].contentRect;
      state.width = box.width;
      state.height = box.height;
      state.sized = true;
      update();
    }) : null;
    const intersect = typeof IntersectionObserver === "function"
      ? new IntersectionObserver((entries) => {
        state.visible = entries[entries.length - 1].isIntersecting;
        update();
      }) : null;
    resize?.observe(element);
    intersect?.observe(element);
    document.addEventListener("visibilitychange", update);
    return () => {
      resize?.disconnect();
      intersect?.disconnect();
      document.removeEventListener("visibilitychange", update);
      if (this._remote.has(trackId)) this.setTrackSettings(trackId, null);
    };
  }

  /** The connection state of the RTCPeerConnection ("new" before joining). */
  get connectionState() {
    return this._pc ? pcState(this._pc) : this.state === "closed" ? "closed" : "new";
  }

  /** @returns {RemoteTrackInfo[]} every track received now */
  get remoteTracks() {
    return [...this._remote.values()];
  }

  /** The RTCPeerConnection (for diagnostics; do not negotiate on it). */
  get peerConnection() {
    return this._pc;
  }

  /** @returns {Promise<RTCStatsReport|null>} */
  async getStats() {
    return this._pc ? this._pc.getStats() : null;
  }

  // ------------------------------------------------------------------ socket

  /** Open a socket and join; resolves with the `joined` payload. */
  _openSocket() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this._socketUrl());
      } catch (error) {
        reject(new ZvonokError("connect-failed", `bad URL: ${error}`));
        return;
      }
      this._ws = ws;
      let opened = false;
      const timer = setTimeout(() => {
        if (this._pendingJoin?.timer !== timer) return;
        this._pendingJoin = null;
        reject(new ZvonokError("join-timeout", "the server did not answer join"));
        ws.close(1000, "join timeout");
      }, JOIN_TIMEOUT);
      this._pendingJoin = { resolve, reject, timer };
      ws.onopen = () => {
        opened = true;
        this._sendOn(ws, "join", null);
      };
      ws.onmessage = (event) => {
        if (ws === this._ws) this._onFrame(event.data);
      };
      ws.onerror = () => {};
      ws.onclose = (event) => this._onSocketClose(ws, event, opened);
    });
  }

  _socketUrl() {
    const url = new URL(this._url, location.href);
    if (url.protocol === "http:") url.protocol = "ws:";
    if (url.protocol === "https:") url.protocol = "wss:";
    if (this._token) url.searchParams.set("access_token", this._token);
    return url.toString();
  }

  /**
   * @param {WebSocket} ws
   * @param {CloseEvent} event
   * @param {boolean} opened
   */
  _onSocketClose(ws, event, opened) {
    if (ws !== this._ws) return;
    this._ws = null;
    if (this._leaving) return;
    this._log("socket closed", event.code, event.reason);
    const pending = this._pendingJoin;
    if (pending) {
      this._pendingJoin = null;
      clearTimeout(pending.timer);
      pending.reject(opened
        ? new ZvonokError("closed", `the server closed the connection (${event.code})`,
          { closeCode: event.code })
        : new ZvonokError("connect-failed",
          "could not connect: token refused, not a member, or server down",
          { closeCode: event.code }));
      return;
    }
    if (this.state !== "joined") return;
    if (event.code === 4001) {
      this._fail("replaced", "this session was resumed on another connection");
      return;
    }
    if (event.code === 4003 || event.code === 4004) {
      // An operator ended this session (kick) or the call (room closed): never rejoin by itself.
      const kicked = event.code === 4003;
      this._fail(kicked ? "kicked" : "room-closed",
        kicked ? "removed from the call by an operator" : "the call was closed by an operator");
      return;
    }
    this._startReconnect(`socket closed (${event.code})`);
  }

  /** @param {string} type @param {any} payload */
  _send(type, payload) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      this._log("not sent (socket down):", type);
      return false;
    }
    this._sendOn(ws, type, payload);
    return true;
  }

  /** @param {WebSocket} ws @param {string} type @param {any} payload */
  _sendOn(ws, type, payload) {
    const message = { type, roomId: this.roomId, sessionId: this.sessionId };
    if (payload !== null && payload !== undefined) message.payload = payload;
    this._log("->", type, payload?.sdp ?? "");
    ws.send(JSON.stringify(message));
  }

  /** @param {any} data */
  _onFrame(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (!message || typeof message !== "object" || typeof message.type !== "string") return;
    let payload = message.payload;
    if (typeof payload === "string") {
      try {
        payload = JSON.parse(payload);
      } catch {
        return;
      }
    }
    payload = payload ?? {};
    this._log("<-", message.type, typeof payload.sdp === "string" ? payload.sdp : "");
    switch (message.type) {
      case "joined": return this._onJoined(payload);
      case "participant-joined": return this._onParticipantJoined(payload, false);
      case "participant-left": return this._onParticipantLeft(payload);
      case "tracks": return this._onTracks(payload);
      case "offer":
      case "answer":
        return this._enqueue((pc) => this._onDescription(pc, payload));
      case "ice": return this._enqueue((pc) => this._onRemoteCandidate(pc, payload));
      case "state": return this._onServerState(payload);
      case "error": return this._onServerError(payload);
      case "track-unavailable": return this._onTrackUnavailable(payload);
      case "track-paused": return this._onTrackPaused(payload);
      case "publish-layers": return this._onPublishLayers(payload);
      case "publish-backup": return this._onPublishBackup(payload);
      case "speakers": return this._onSpeakers(payload);
      case "stats": return this._onServerStats(payload);
      default: return undefined;
    }
  }

  // ------------------------------------------------------------------ room events

  /** @param {any} payload */
  _onJoined(payload) {
    const pending = this._pendingJoin;
    if (!pending) return;
    this._pendingJoin = null;
    clearTimeout(pending.timer);
    this.userId = payload.userId ?? this.userId;
    this.iceServers = this._iceServersOption ?? payload.iceServers ?? [];
    const wasReconnecting = this._reconnect !== null;
    this._syncRoster(payload.participants ?? []);
    const resumed = Boolean(payload.resumed) && this._pc !== null;
    this.state = "joined";
    this._wishesRefused = false;
    if (wasReconnecting) {
      clearTimeout(this._reconnect?.timer);
      this._reconnect = null;
      if (resumed) this._afterResume();
      else this._rebuildPeerConnection();
    } else {
      this._createPeerConnection();
    }
    const info = {
      sessionId: this.sessionId, userId: this.userId, room: payload.room,
      participants: payload.participants ?? [], iceServers: this.iceServers, resumed,
    };
    if (wasReconnecting) this._emit("reconnected", info);
    else this._emit("joined", info);
    this._emitConnectionState();
    pending.resolve(info);
    // A new socket: the server (maybe a fresh session) hears every wish again.
    for (const trackId of this._wishes.keys()) this._wishesDirty.add(trackId);
    this._scheduleWishes();
  }

  /** @param {{sessionId: string, userId: string}[]} roster */
  _syncRoster(roster) {
    const present = new Set(roster.map((p) => p.sessionId));
    for (const [sessionId, p] of this.participants) {
      if (!present.has(sessionId)) {
        this._onParticipantLeft({ sessionId, userId: p.userId, reason: "disconnect" });
      }
    }
    for (const p of roster) this._onParticipantJoined(p, true);
  }

  /** @param {any} payload @param {boolean} existing */
  _onParticipantJoined(payload, existing) {
    const { sessionId, userId } = payload;
    if (typeof sessionId !== "string" || this.participants.has(sessionId)) return;
    this._departed.delete(sessionId);
    this.participants.set(sessionId, { sessionId, userId, tracks: new Map() });
    this._emit("participantjoined", { sessionId, userId, existing });
  }

  /** @param {any} payload */
  _onParticipantLeft(payload) {
    const { sessionId, reason } = payload;
    // A renegotiation still in flight may name its tracks: forget them, and ignore them.
    for (const [mid, entry] of this._trackMap) {
      if (entry.sessionId === sessionId) this._trackMap.delete(mid);
    }
    this._departed.add(sessionId);
    if (this._departed.size > 256) this._departed.delete(this._departed.values().next().value);
    const participant = this.participants.get(sessionId);
    if (!participant) return;
    for (const info of [...this._remote.values()]) {
      if (info.sessionId === sessionId) this._endRemote(info, "participant-left");
    }
    this.participants.delete(sessionId);
    this._emit("participantleft", { sessionId, userId: participant.userId, reason });
  }

  /** @param {any} payload */
  _onTracks(payload) {
    const list = Array.isArray(payload.tracks) ? payload.tracks : [];
    this._trackMap = new Map(list.map((t) => [String(t.mid), t]));
    const ids = new Set(list.map((t) => t.trackId));
    for (const info of [...this._remote.values()]) {
      if (!ids.has(info.trackId)) this._endRemote(info, "unpublished");
    }
  }

  /** @param {any} payload */
  _onServerState(payload) {
    if (typeof payload.state !== "string") return;
    this.serverState = payload.state;
    this._emitConnectionState();
  }

  /** @param {any} payload */
  _onServerError(payload) {
    const code = String(payload.code ?? "unknown");
    const message = String(payload.message ?? code);
    const pending = this._pendingJoin;
    if (pending && (payload.ref === "join" || code === "shutdown")) {
      this._pendingJoin = null;
      clearTimeout(pending.timer);
      const retryAfterMs = Number(payload.retryAfterMs) || 0; // e.g. cluster-unavailable
      const fatal = FATAL_JOIN_ERRORS.has(code);
      pending.reject(new ZvonokError(code, message, { fatal, retryAfterMs }));
      if (this._ws) this._ws.close(1000, "join refused");
      return;
    }
    if (payload.ref === "track-settings") {
      // A server without adaptive stream (or one that found fault with ours): stop sending it
      // on this connection; media flows as before.
      this._wishesRefused = true;
      this._log("track-settings refused:", code, message);
      return;
    }
    if (code === "glare") {
      // The server's offer travels ahead of this error, so normally it has been answered by
      // now and ours is already being made again (see _onDescription). If ours is still
      // pending, withdraw it and offer again after answering the server's offer.
      this._enqueue(async (pc) => {
        if (this._expectGlare) {
          this._expectGlare = false;
        } else if (pc.signalingState === "have-local-offer") {
          await pc.setLocalDescription({ type: "rollback" });
          this._reofferAfterServerOffer = true;
        }
      });
      return;
    }
    if (code === "media-failed") {
      // The server ended the session (its media failed) and closes the socket with 4002; the
      // reconnect that follows joins a fresh session with the same sessionId.
      this._log("media failed; the server ended the session", message);
      return;
    }
    if (code === "not-joined" && this.state === "joined" && this._ws) {
      // The server ended this session (e.g. its media failed): join again on a new socket.
      this._ws.close(4000, "rejoin");
      return;
    }
    this._emitError(code, message, { ref: payload.ref ?? null, fromServer: true });
  }

  // ------------------------------------------------------------------ peer connection

  _createPeerConnection() {
    // bundlePolicy stays "balanced" (the default): with "max-bundle" Firefox offers every
    // m-line but the first with port 0 and a=bundle-only. The server's answer bundles anyway.
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, rtcpMuxPolicy: "require" });
    this._pc = pc;
    this._pendingIce = [];
    this._needOffer = false;
    this._reofferAfterServerOffer = false;
    this._expectGlare = false;
    this._answeredFirst = false;
    this._layerChains = new Map();
    this._publishedMids = new Map();
    for (const backup of this._backups.values()) backup.track.stop(); // the old connection's
    this._backups = new Map();
    pc.onnegotiationneeded = () => this._enqueue((p) => this._makeOffer(p));
    pc.onicecandidate = (event) => this._onLocalCandidate(pc, event.candidate);
    pc.ontrack = (event) => this._onTrack(pc, event);
    pc.oniceconnectionstatechange = () => this._onIceState(pc);
    pc.onconnectionstatechange = () => {
      if (pc === this._pc) this._emitConnectionState();
    };
    for (const kind of /** @type {const} */ (["audio", "video", "screen"])) {
      const slot = this._local[kind];
      if (!slot) continue;
      const stream = kind === "screen" ? /** @type {MediaStream} */ (slot.stream) : this.localStream;
      slot.sender = this._addSender(pc, kind, slot.track, stream);
      if (kind !== "screen" && this._muted[kind]) this._setSenderTrack(slot.sender, null);
    }
    this._startStats();
    return pc;
  }

  /** resumed: false: the server has a fresh session; start over with a new connection. */
  _rebuildPeerConnection() {
    for (const info of [...this._remote.values()]) this._endRemote(info, "reset");
    this._trackMap = new Map();
    const old = this._pc;
    this._pc = null;
    if (old) old.close();
    this._createPeerConnection();
  }

  /** resumed: true: recover a negotiation cut by the drop, restart ICE if it broke. */
  _afterResume() {
    this._enqueue(async (pc) => {
      if (pc.signalingState === "have-local-offer") {
        await pc.setLocalDescription({ type: "rollback" });
        this._needOffer = true;
      }
      if (["disconnected", "failed"].includes(pc.iceConnectionState)) this._restartIce(pc);
      this._afterStable(pc);
    });
  }

  /**
   * Run negotiation steps one at a time, on the connection current when they run.
   * @param {(pc: RTCPeerConnection) => any} step
   */
  _enqueue(step) {
    const pc = this._pc;
    this._chain = this._chain.then(async () => {
      if (!pc || pc !== this._pc || pc.signalingState === "closed") return;
      try {
        await step(pc);
      } catch (error) {
        if (pc !== this._pc) return;
        this._log("negotiation step failed", error);
        this._emitError("negotiation-failed", String(error?.message ?? error));
      }
    });
  }

  /** @param {RTCPeerConnection} pc */
  async _makeOffer(pc) {
    // The server always offers first after `join`; offering only after answering it avoids
    // a first-round collision (where the server, not yet described, would answer ours).
    if (pc.signalingState !== "stable" || !this._socketReady() || !this._answeredFirst) {
      this._needOffer = true;
      return;
    }
    this._needOffer = false;
    await pc.setLocalDescription();
    const local = pc.localDescription;
    if (pc.signalingState !== "have-local-offer" || !local) return;
    this._send("offer", { type: "offer", sdp: unbundleOnly(local.sdp) });
  }

  /** @param {RTCPeerConnection} pc @param {any} payload */
  async _onDescription(pc, payload) {
    if (typeof payload.sdp !== "string") return;
    if (payload.type === "offer") {
      // Polite: an incoming offer always wins; setRemoteDescription rolls ours back, and the
      // server (impolite) refuses ours with `glare`, so ours is made again once stable.
      const collision = pc.signalingState === "have-local-offer";
      if (collision) {
        this._needOffer = true;
        this._expectGlare = true;
      }
      try {
        await pc.setRemoteDescription({ type: "offer", sdp: payload.sdp });
      } catch (error) {
        if (!collision || pc.signalingState !== "have-local-offer") throw error;
        await pc.setLocalDescription({ type: "rollback" }); // no implicit rollback here
        await pc.setRemoteDescription({ type: "offer", sdp: payload.sdp });
      }
      await this._flushCandidates(pc);
      await pc.setLocalDescription();
      const local = pc.localDescription;
      if (local) this._send("answer", { type: "answer", sdp: unbundleOnly(local.sdp) });
      this._answeredFirst = true;
      if (this._reofferAfterServerOffer) {
        this._reofferAfterServerOffer = false;
        this._needOffer = true;
      }
    } else if (payload.type === "answer") {
      if (pc.signalingState !== "have-local-offer") return;
      await pc.setRemoteDescription({ type: "answer", sdp: payload.sdp });
      await this._flushCandidates(pc);
      this._afterSimulcastAnswer(pc);
    }
    this._afterStable(pc);
  }

  /** @param {RTCPeerConnection} pc */
  _afterStable(pc) {
    if (pc.signalingState !== "stable") return;
    this._reconcileTracks(pc);
    if (this._needOffer && this._socketReady()) {
      this._needOffer = false;
      this._enqueue((p) => this._makeOffer(p));
    }
  }

  _socketReady() {
    return this.state === "joined" && this._ws?.readyState === WebSocket.OPEN;
  }

  /** @param {RTCPeerConnection} pc @param {any} payload */
  async _onRemoteCandidate(pc, payload) {
    /** @type {RTCIceCandidateInit} */
    const init = {
      candidate: typeof payload.candidate === "string" ? payload.candidate : "",
      sdpMid: payload.sdpMid ?? null,
      sdpMLineIndex: payload.sdpMLineIndex ?? null,
    };
    if (payload.usernameFragment) init.usernameFragment = payload.usernameFragment;
    if (init.sdpMid === null && init.sdpMLineIndex === null) init.sdpMLineIndex = 0;
    if (!pc.remoteDescription) {
      if (this._pendingIce.length < 200) this._pendingIce.push(init);
      return;
    }
    await this._addCandidate(pc, init);
  }

  /** @param {RTCPeerConnection} pc */
  async _flushCandidates(pc) {
    const pending = this._pendingIce;
    this._pendingIce = [];
    for (const init of pending) await this._addCandidate(pc, init);
  }

  /** @param {RTCPeerConnection} pc @param {RTCIceCandidateInit} init */
  async _addCandidate(pc, init) {
    try {
      await pc.addIceCandidate(init);
    } catch (error) {
      // An end-of-candidates marker or a candidate of a previous ICE generation: harmless.
      this._log("remote candidate not added", init.candidate, error);
    }
  }

  /** @param {RTCPeerConnection} pc @param {RTCIceCandidate|null} candidate */
  _onLocalCandidate(pc, candidate) {
    if (pc !== this._pc) return;
    if (candidate === null) {
      this._send("ice", { candidate: "", sdpMid: null, sdpMLineIndex: null });
      return;
    }
    if (!candidate.candidate) return;
    this._send("ice", {
      candidate: candidate.candidate, sdpMid: candidate.sdpMid,
      sdpMLineIndex: candidate.sdpMLineIndex, usernameFragment: candidate.usernameFragment,
    });
  }

  /** @param {RTCPeerConnection} pc */
  _onIceState(pc) {
    if (pc !== this._pc) return;
    const state = pc.iceConnectionState;
    clearTimeout(this._iceTimer);
    if (state === "failed") this._restartIce(pc);
    else if (state === "disconnected") {
      this._iceTimer = setTimeout(() => {
        if (pc === this._pc && pc.iceConnectionState === "disconnected") this._restartIce(pc);
      }, ICE_DISCONNECT_GRACE);
    }
    this._emitConnectionState();
  }

  /** ICE restart: new credentials in our own offer (only while the socket is up). */
  /** @param {RTCPeerConnection} pc */
  _restartIce(pc) {
    if (!this._socketReady()) return; // the resume after reconnecting checks ICE again
    const now = Date.now();
    if (now - this._lastIceRestart < ICE_RESTART_MIN_GAP) {
      clearTimeout(this._iceTimer);
      this._iceTimer = setTimeout(() => this._onIceState(pc), ICE_RESTART_MIN_GAP);
      return;
    }
    this._lastIceRestart = now;
    this._log("ICE restart");
    pc.restartIce();
  }

  // ------------------------------------------------------------------ remote tracks

  /** @param {RTCPeerConnection} pc @param {RTCTrackEvent} event */
  _onTrack(pc, event) {
    if (pc !== this._pc) return;
    const mid = event.transceiver?.mid ?? null;
    this._adoptRemote(event.track, event.streams, mid);
  }

  /** Tracks the browser did not announce with `track` (a recycled m-line, a rebuilt stream). */
  /** @param {RTCPeerConnection} pc */
  _reconcileTracks(pc) {
    for (const transceiver of pc.getTransceivers()) {
      const dir = transceiver.currentDirection;
      if (dir !== "recvonly" && dir !== "sendrecv") continue;
      const entry = transceiver.mid === null ? null : this._trackMap.get(transceiver.mid);
      if (entry && !this._remote.has(entry.trackId)) {
        const track = transceiver.receiver.track;
        this._adoptRemote(track, [new MediaStream([track])], transceiver.mid);
      }
    }
  }

  /**
   * Name a received track's owner (by mid, else by stream id = publisher sessionId); emit `track`.
   * @param {MediaStreamTrack} track @param {readonly MediaStream[]} streams @param {string|null} mid
   */
  _adoptRemote(track, streams, mid) {
    const entry = mid === null ? undefined : this._trackMap.get(mid);
    const sessionId = entry?.sessionId ?? streams[0]?.id ?? null;
    if (!sessionId || sessionId === this.sessionId || this._departed.has(sessionId)) return;
    const trackId = entry?.trackId ?? `${sessionId}/${mid ?? track.id}`;
    const existing = this._remote.get(trackId);
    if (existing && existing.track === track) return;
    if (existing) this._endRemote(existing, "replaced");
    for (const other of [...this._remote.values()]) {
      if (other.track === track) this._endRemote(other, "replaced"); // a recycled m-line
    }
    const userId = entry?.userId ?? this.participants.get(sessionId)?.userId ?? "";
    const kind = /** @type {"audio"|"video"} */ (track.kind);
    /** @type {RemoteTrackInfo} */
    const info = { trackId, mid: mid ?? "", kind, sessionId, userId, track,
      streams: [...streams], muted: track.muted, paused: false };
    this._remote.set(trackId, info);
    let participant = this.participants.get(sessionId);
    if (!participant) {
      participant = { sessionId, userId, tracks: new Map() };
      this.participants.set(sessionId, participant);
      this._emit("participantjoined", { sessionId, userId, existing: false });
    }
    participant.tracks.set(trackId, track);
    track.onmute = () => this._setRemoteMuted(info, true, "track");
    track.onunmute = () => this._setRemoteMuted(info, false, "track");
    track.onended = () => this._endRemote(info, "ended");
    this._emit("track", { track, streams: info.streams, userId, sessionId, kind, trackId,
      mid: info.mid, muted: info.muted });
  }

  /** @param {RemoteTrackInfo} info @param {string} reason */
  _endRemote(info, reason) {
    if (this._remote.get(info.trackId) !== info) return;
    this._remote.delete(info.trackId);
    this._wishes.delete(info.trackId);
    this._wishesDirty.delete(info.trackId);
    this.participants.get(info.sessionId)?.tracks.delete(info.trackId);
    info.track.onmute = info.track.onunmute = info.track.onended = null;
    this._emit("trackended", { track: info.track, trackId: info.trackId, kind: info.kind,
      sessionId: info.sessionId, userId: info.userId, reason });
  }

  /**
   * The server says this browser cannot decode a received track (or now can again): codec
   * steering found no codec of the publisher that it accepts (docs/protocol.md).
   * @param {any} payload
   */
  _onTrackUnavailable(payload) {
    if (typeof payload.trackId !== "string") return;
    this._emit("trackunavailable", { trackId: payload.trackId, kind: payload.kind,
      sessionId: payload.sessionId, userId: payload.userId, unavailable: Boolean(payload.unavailable),
      reason: payload.reason ?? null, codecs: Array.isArray(payload.codecs) ? payload.codecs : [] });
  }

  /**
   * The server holds a received video back (its downlink estimate is below the lowest layer,
   * reason `bandwidth`) or sends it again (`paused: false`): docs/protocol.md `track-paused`.
   * @param {any} payload
   */
  _onTrackPaused(payload) {
    if (typeof payload.trackId !== "string") return;
    const paused = Boolean(payload.paused);
    const info = this._remote.get(payload.trackId);
    if (info) info.paused = paused;
    this._emit("trackpaused", { trackId: payload.trackId, kind: payload.kind ?? info?.kind ?? null,
      sessionId: payload.sessionId ?? info?.sessionId ?? null,
      userId: payload.userId ?? info?.userId ?? null, paused,
      reason: typeof payload.reason === "string" ? payload.reason : null,
      track: info?.track ?? null });
  }

  /**
   * Dynacast: the server says which simulcast layers of a published track anyone wants; the
   * others are turned off (`encodings[i].active`, by rid) so the uplink carries only those.
   * @param {any} payload
   */
  _onPublishLayers(payload) {
    if (!Array.isArray(payload.layers)) return;
    /** @type {Map<string, boolean>} */
    const wanted = new Map();
    for (const layer of payload.layers) {
      if (layer && typeof layer.rid === "string") wanted.set(layer.rid, Boolean(layer.active));
    }
    const sender = this._publishedSender(payload.trackId, payload.mid, wanted);
    if (!sender) {
      this._log("publish-layers for an unknown track", payload.trackId);
      return;
    }
    this._changeEncodings(sender, (encodings) => {
      let changed = false;
      for (const encoding of encodings) {
        const active = encoding.rid === undefined ? undefined : wanted.get(encoding.rid);
        if (active !== undefined && encoding.active !== active) {
          encoding.active = active;
          changed = true;
        }
      }
      return changed;
    });
    this._emit("publishlayers", { trackId: payload.trackId ?? null,
      layers: [...wanted].map(([rid, active]) => ({ rid, active })) });
  }

  /**
   * The sender of one of our published tracks: by `mid` when the server names it, else by the
   * trackId -> mid of the server's `stats`, else the one sender whose encodings carry these rids.
   * @param {unknown} trackId @param {unknown} mid @param {Map<string, boolean>} rids
   * @returns {RTCRtpSender|null}
   */
  _publishedSender(trackId, mid, rids) {
    const pc = this._pc;
    if (!pc) return null;
    const wantedMid = typeof mid === "string" ? mid
      : typeof trackId === "string" ? this._publishedMids.get(trackId) : undefined;
    const transceivers = pc.getTransceivers().filter((t) => t.sender.track !== null
      || (t.direction === "sendonly" || t.direction === "sendrecv"));
    if (wantedMid !== undefined) {
      const found = transceivers.find((t) => t.mid === wantedMid);
      if (found) return found.sender;
    }
    const layered = transceivers.filter((t) => {
      const encodings = t.sender.getParameters().encodings ?? [];
      return encodings.some((e) => e.rid !== undefined && rids.has(e.rid));
    });
    return layered.length === 1 ? layered[0].sender : null;
  }

  /**
   * Codec steering's backup stream (docs/protocol.md `publish-backup`): some subscribers cannot
   * decode the codec a published video goes out in, so the server asks for a second encoding
   * of it in `codec`, at most `BACKUP_WIDTH` px wide: a clone of the track on a send-only
   * transceiver of its own, in the same stream (the server ties it to the track by its msid),
   * limited to that codec with setCodecPreferences. `active: false` stops and removes it.
   * @param {any} payload
   */
  _onPublishBackup(payload) {
    if (typeof payload.mid !== "string" || typeof payload.codec !== "string") return;
    const { mid, codec } = payload;
    const active = Boolean(payload.active);
    const current = this._backups.get(mid);
    if (current && (!active || current.codec.toLowerCase() !== codec.toLowerCase())) {
      this._stopBackup(mid);
    }
    if (active && !this._backups.has(mid)) this._startBackup(mid, codec);
    this._emit("publishbackup", { trackId: payload.trackId ?? null, mid, codec,
      active: this._backups.has(mid) });
  }

  /** @param {string} mid @param {string} codec */
  _startBackup(mid, codec) {
    const pc = this._pc;
    if (!pc || pc.signalingState === "closed") return;
    const source = pc.getTransceivers().find((t) => t.mid === mid);
    const slot = source ? Object.values(this._local).find((s) => s?.sender === source.sender)
      : undefined;
    const caps = globalThis.RTCRtpReceiver?.getCapabilities?.("video")?.codecs ?? [];
    const picked = caps.filter((c) => c.mimeType.toLowerCase() === codec.toLowerCase());
    if (!source || !slot || slot.track.kind !== "video" || !picked.length
      || typeof source.setCodecPreferences !== "function") {
      this._log("cannot send a backup stream of mid", mid, "in", codec);
      return;
    }
    const rtx = caps.filter((c) => c.mimeType.toLowerCase() === "video/rtx");
    const track = slot.track.clone();
    const width = slot.track.getSettings().width
      ?? /** @type {any} */ (slot.track).canvas?.width ?? BACKUP_WIDTH;
    const transceiver = pc.addTransceiver(track, {
      direction: "sendonly", streams: slot.stream ? [slot.stream] : [],
      sendEncodings: [{ scaleResolutionDownBy: Math.max(1, width / BACKUP_WIDTH),
        maxBitrate: BACKUP_MAX_BITRATE }],
    });
    transceiver.setCodecPreferences([...picked, ...rtx]);
    const muted = slot === this._local.video && this._muted.video;
    if (muted) this._setSenderTrack(transceiver.sender, null);
    this._backups.set(mid, { codec, transceiver, track, slot });
    this._log("backup stream of mid", mid, "in", codec);
  }

  /** @param {string} mid */
  _stopBackup(mid) {
    const backup = this._backups.get(mid);
    if (!backup) return;
    this._backups.delete(mid);
    backup.track.stop();
    if (this._pc && this._pc.signalingState !== "closed") {
      try {
        backup.transceiver.stop(); // the next offer removes its m-line
      } catch (error) {
        this._log("stopping a backup stream failed", error);
      }
    }
  }

  /** `speakers`: the loudest participants, loudest first (empty: nobody speaks). @param {any} payload */
  _onSpeakers(payload) {
    const list = Array.isArray(payload.speakers) ? payload.speakers : [];
    this.speakers = list.filter((s) => s && typeof s.sessionId === "string").map((s) => ({
      sessionId: s.sessionId, userId: String(s.userId ?? ""),
      level: typeof s.level === "number" ? s.level : 0 }));
    this._emit("speakers", { speakers: this.speakers });
  }

  /** The server's `stats`: learn our published trackIds; pass it on. @param {any} payload */
  _onServerStats(payload) {
    const published = Array.isArray(payload.published) ? payload.published : [];
    this._publishedMids = new Map(published
      .filter((t) => t && typeof t.trackId === "string" && typeof t.mid === "string")
      .map((t) => [t.trackId, t.mid]));
    this._emit("serverstats", { ...payload });
  }

  _scheduleWishes() {
    if (this._wishesTimer || this._wishesDirty.size === 0) return;
    const wait = Math.max(0, this._wishesSentAt + TRACK_SETTINGS_GAP - Date.now());
    this._wishesTimer = setTimeout(() => {
      this._wishesTimer = null;
      this._flushWishes();
    }, wait);
  }

  /** Send the changed wishes (`track-settings`), at most `TRACK_SETTINGS_MAX` per message. */
  _flushWishes() {
    if (!this._socketReady() || this._wishesRefused) return; // the next `joined` sends them
    const tracks = [];
    for (const trackId of this._wishesDirty) {
      if (tracks.length >= TRACK_SETTINGS_MAX) break;
      this._wishesDirty.delete(trackId);
      const wish = this._wishes.get(trackId);
      if (!wish) continue;
      tracks.push({ trackId, ...wish });
      if (Object.keys(wish).length === 0) this._wishes.delete(trackId); // "no limit" told once
    }
    if (tracks.length === 0) return;
    this._wishesSentAt = Date.now();
    this._send("track-settings", { tracks });
    this._scheduleWishes();
  }

  /** @param {RemoteTrackInfo} info @param {boolean} muted @param {string} source */
  _setRemoteMuted(info, muted, source) {
    if (info.muted === muted || this._remote.get(info.trackId) !== info) return;
    info.muted = muted;
    this._emit("mute", { local: false, kind: info.kind, muted, sessionId: info.sessionId,
      userId: info.userId, trackId: info.trackId, track: info.track, source });
  }

  // ------------------------------------------------------------------ local media

  /**
   * @param {() => Promise<MediaStream>} get
   * @returns {Promise<MediaStream>}
   */
  async _getMedia(get) {
    if (!navigator.mediaDevices) {
      const err = new ZvonokError("media-unavailable",
        "no camera/microphone API here: the page needs https:// or http://localhost");
      this._emitError(err.code, err.message);
      throw err;
    }
    try {
      return await get();
    } catch (error) {
      const name = /** @type {any} */ (error)?.name;
      const err = name === "NotAllowedError" || name === "SecurityError"
        ? new ZvonokError("media-denied", "camera/microphone/screen permission was denied")
        : new ZvonokError("media-unavailable", `no usable device: ${name ?? error}`);
      this._emitError(err.code, err.message);
      throw err;
    }
  }

  /** @param {"audio"|"video"} kind @param {MediaStreamTrack} track @param {boolean} owned */
  _addLocal(kind, track, owned) {
    track.enabled = !this._muted[kind];
    /** @type {LocalSlot} */
    const slot = { track, owned, sender: null, stream: this.localStream };
    this._local[kind] = slot;
    this.localStream.addTrack(track);
    if (this._pc && this._pc.signalingState !== "closed") {
      slot.sender = this._addSender(this._pc, kind, track, this.localStream);
      if (this._muted[kind]) this._setSenderTrack(slot.sender, null);
    }
  }

  /**
   * The camera goes out in simulcast (`SIMULCAST_LAYERS`, a send-only transceiver of its own:
   * encodings can only be given to addTransceiver, and only an offer of ours can carry
   * a=simulcast) when it is at least 640 px wide and the `simulcast` option is on; everything
   * else with addTrack, as one encoding.
   * @param {RTCPeerConnection} pc @param {"audio"|"video"|"screen"} kind
   * @param {MediaStreamTrack} track @param {MediaStream} stream
   * @returns {RTCRtpSender}
   */
  _addSender(pc, kind, track, stream) {
    // A canvas capture may report no size in its settings (Firefox): its canvas has one.
    const width = kind === "video"
      ? track.getSettings().width ?? /** @type {any} */ (track).canvas?.width ?? 0 : 0;
    const codec = kind === "video" ? this._videoCodec : null;
    /** @type {RTCRtpSender} */
    let sender;
    if (!this._simulcast || width < SIMULCAST_MIN_WIDTH) {
      sender = pc.addTrack(track, stream);
    } else if (codec === "vp9" && svcSupported()) {
      sender = pc.addTransceiver(track, { direction: "sendonly", streams: [stream],
        sendEncodings: [{ scalabilityMode: SVC_MODE, active: true }] }).sender;
    } else {
      const sendEncodings = SIMULCAST_LAYERS.map((layer) => ({ ...layer, active: true }));
      sender = pc.addTransceiver(track, { direction: "sendonly", streams: [stream],
        sendEncodings }).sender;
      this._simulcastSenders.add(sender);
    }
    if (codec !== null) this._preferCodec(pc, sender, codec);
    return sender;
  }

  /**
   * Put `codec` first in the video codecs of `sender`'s transceiver (setCodecPreferences),
   * the others kept after it, so that the next offer or answer lists it first.
   * @param {RTCPeerConnection} pc @param {RTCRtpSender} sender @param {string} codec
   */
  _preferCodec(pc, sender, codec) {
    const transceiver = pc.getTransceivers().find((t) => t.sender === sender);
    const caps = globalThis.RTCRtpReceiver?.getCapabilities?.("video")?.codecs ?? [];
    const mime = `video/${codec}`;
    const first = caps.filter((c) => c.mimeType.toLowerCase() === mime);
    if (!transceiver || !first.length || !transceiver.setCodecPreferences) return;
    try {
      transceiver.setCodecPreferences([...first,
        ...caps.filter((c) => c.mimeType.toLowerCase() !== mime)]);
    } catch (err) {
      this._log("cannot prefer", codec, err);
    }
  }

  /**
   * A server that does not take simulcast answers without a=simulcast, and the browser keeps
   * only the first (lowest) encoding, still scaled down by 4: send it full size instead.
   * @param {RTCPeerConnection} pc
   */
  _afterSimulcastAnswer(pc) {
    for (const sender of pc.getSenders()) {
      if (!this._simulcastSenders.has(sender)) continue;
      if ((sender.getParameters().encodings ?? []).length !== 1) continue;
      this._simulcastSenders.delete(sender);
      this._log("the server took one encoding of the camera: sending it full size");
      this._changeEncodings(sender, (encodings) => {
        if (encodings.length !== 1 || (encodings[0].scaleResolutionDownBy ?? 1) === 1) return false;
        encodings[0].scaleResolutionDownBy = 1;
        return true;
      });
    }
  }

  /**
   * getParameters -> `change` -> setParameters (when it says it changed something), one call
   * at a time per sender (a setParameters must follow its own getParameters).
   * @param {RTCRtpSender} sender
   * @param {(encodings: RTCRtpEncodingParameters[]) => boolean} change
   */
  _changeEncodings(sender, change) {
    const previous = this._layerChains.get(sender) ?? Promise.resolve();
    const next = previous.then(async () => {
      const params = sender.getParameters();
      if (change(params.encodings ?? [])) await sender.setParameters(params);
    }).catch((error) => this._log("setParameters failed", error));
    this._layerChains.set(sender, next);
  }

  /**
   * @param {"audio"|"video"} kind @param {LocalSlot} slot
   * @param {MediaStreamTrack} track @param {boolean} owned
   */
  _replaceLocal(kind, slot, track, owned) {
    const old = slot.track;
    track.enabled = !this._muted[kind];
    this.localStream.removeTrack(old);
    this.localStream.addTrack(track);
    slot.track = track;
    if (slot.sender && !this._muted[kind]) this._setSenderTrack(slot.sender, track);
    for (const backup of this._backups.values()) {
      if (backup.slot !== slot) continue;
      backup.track.stop();
      backup.track = track.clone();
      if (!this._muted[kind]) this._setSenderTrack(backup.transceiver.sender, backup.track);
    }
    if (slot.owned && old !== track) old.stop();
    slot.owned = owned;
  }

  /** @param {RTCRtpSender} sender @param {MediaStreamTrack|null} track */
  _setSenderTrack(sender, track) {
    sender.replaceTrack(track).catch((error) => this._log("replaceTrack failed", error));
  }

  _assertOpen() {
    if (this.state === "closed" || this.state === "failed") {
      throw new ZvonokError("bad-state", `the call is ${this.state}`);
    }
  }

  // ------------------------------------------------------------------ reconnect

  /** @param {string} reason */
  _startReconnect(reason) {
    if (this._reconnect) return;
    this.state = "reconnecting";
    this._reconnect = { started: Date.now(), attempt: 0, timer: null };
    this._emitConnectionState();
    this._scheduleReconnect(reason);
  }

  /** @param {string} reason @param {number} [notBefore] ms the server asked to wait (retryAfterMs) */
  _scheduleReconnect(reason, notBefore = 0) {
    const r = this._reconnect;
    if (!r || this.state !== "reconnecting") return;
    const { minDelay, maxDelay, timeout } = this._reconnectOptions;
    const left = timeout - (Date.now() - r.started);
    if (left <= 0) {
      this._fail("reconnect-timeout", "could not reconnect; giving up");
      return;
    }
    const base = Math.min(maxDelay, minDelay * 2 ** r.attempt);
    const jittered = Math.round(Math.max(base, notBefore) * (0.75 + Math.random() * 0.5));
    const delay = Math.min(left, Math.max(jittered, notBefore));
    r.attempt += 1;
    this._emit("reconnecting", { attempt: r.attempt, delay, reason });
    r.timer = setTimeout(() => this._attemptReconnect(), delay);
  }

  async _attemptReconnect() {
    if (this.state !== "reconnecting") return;
    try {
      await this._openSocket();
    } catch (error) {
      if (this.state !== "reconnecting") return;
      const err = asZvonokError(error);
      if (err.code === "session-taken") {
        // Our session ended long ago and someone else holds its id: start a fresh session.
        this._freshSessionId();
        this._scheduleReconnect(err.message);
        return;
      }
      if (/** @type {any} */ (err).fatal) {
        this._fail(err.code, err.message);
        return;
      }
      this._scheduleReconnect(err.message, Number(/** @type {any} */ (err).retryAfterMs) || 0);
    }
  }

  /** `session-taken`: the id is someone else's; continue under a new one. */
  _freshSessionId() {
    const old = this.sessionId;
    this.sessionId = newSessionId();
    this._log("sessionId", old, "is taken; using", this.sessionId);
  }

  /** @param {string} code @param {string} message */
  _fail(code, message) {
    if (this.state === "closed" || this.state === "failed") return;
    this._shutdown("failed");
    if (this._ws) this._ws.close(1000, "failed");
    this._emit("failed", { code, message });
  }

  /** Release everything; `state` is "closed" (left) or "failed". */
  /** @param {"closed"|"failed"} state */
  _shutdown(state) {
    this.state = state;
    if (this._reconnect) clearTimeout(this._reconnect.timer);
    this._reconnect = null;
    clearTimeout(this._iceTimer);
    clearTimeout(this._wishesTimer);
    this._wishesTimer = null;
    this._stopStats();
    const pending = this._pendingJoin;
    this._pendingJoin = null;
    if (pending) {
      clearTimeout(pending.timer);
      pending.reject(new ZvonokError("closed", "the call was closed"));
    }
    for (const info of [...this._remote.values()]) this._endRemote(info, state === "closed" ? "left" : "failed");
    const pc = this._pc;
    this._pc = null;
    if (pc) pc.close();
    for (const slot of Object.values(this._local)) {
      if (slot?.owned) slot.track.stop();
    }
    for (const backup of this._backups.values()) backup.track.stop();
    this._backups = new Map();
    this._local = { audio: null, video: null, screen: null };
    this.screenStream = null;
    this.participants.clear();
    this._emitConnectionState();
  }

  // ------------------------------------------------------------------ quality

  _startStats() {
    this._stopStats();
    this._lastSample = null;
    if (this._statsInterval > 0) {
      this._statsTimer = setInterval(() => this._sample(), this._statsInterval);
    }
  }

  _stopStats() {
    if (this._statsTimer) clearInterval(this._statsTimer);
    this._statsTimer = null;
  }

  async _sample() {
    const pc = this._pc;
    if (!pc) return;
    let report;
    try {
      report = await pc.getStats();
    } catch {
      return;
    }
    if (pc !== this._pc) return;
    const now = performance.now();
    const sample = readStats(report, this._remote);
    const last = this._lastSample;
    this._lastSample = { at: now, ...sample };
    if (!last) return;
    const seconds = Math.max(0.001, (now - last.at) / 1000);
    const recv = sample.recv - last.recv;
    const lost = Math.max(0, sample.lost - last.lost);
    const inboundLoss = recv + lost > 0 ? lost / (recv + lost) : 0;
    const loss = Math.max(inboundLoss, sample.remoteLoss);
    const bitrateIn = Math.max(0, Math.round((sample.bytesIn - last.bytesIn) * 8 / seconds));
    const bitrateOut = Math.max(0, Math.round((sample.bytesOut - last.bytesOut) * 8 / seconds));
    const rtt = sample.rtt;
    this._tuneJitterBuffers(pc, rtt, sample.videoNacks - last.videoNacks, now);
    const connected = pcState(pc) === "connected";
    /** @type {Record<string, {userId: string, bitrateIn: number, loss: number, level: string}>} */
    const perParticipant = {};
    for (const [trackId, current] of sample.tracks) {
      const info = this._remote.get(trackId);
      const before = last.tracks.get(trackId);
      if (!info || !before) continue;
      const tRecv = current.recv - before.recv;
      const tLost = Math.max(0, current.lost - before.lost);
      this._setRemoteMuted(info, tRecv === 0, "rtp");
      const entry = perParticipant[info.sessionId] ??=
        { userId: info.userId, bitrateIn: 0, loss: 0, level: "good", recv: 0, lost: 0 };
      entry.bitrateIn += Math.max(0, Math.round((current.bytes - before.bytes) * 8 / seconds));
      entry.recv += tRecv;
      entry.lost += tLost;
    }
    for (const entry of Object.values(perParticipant)) {
      const e = /** @type {any} */ (entry);
      e.loss = e.recv + e.lost > 0 ? e.lost / (e.recv + e.lost) : 0;
      e.level = qualityLevel(connected, rtt, e.loss);
      delete e.recv;
      delete e.lost;
    }
    this._emit("quality", {
      bitrateIn, bitrateOut, rtt, loss, level: qualityLevel(connected, rtt, loss),
      path: sample.path, participants: perParticipant,
    });
  }

  /**
   * A browser that only receives learns no round trip from RTCP (it sends no media, so there is
   * no sender report to answer, and Chrome negotiates no RTCP XR), so its jitter buffer does not
   * wait for retransmissions: behind 100 ms and 2 % loss Chromium dropped frames it had asked to
   * be resent (22-27 fps instead of 30). While the video receivers asked for retransmissions
   * within the last JITTER_RELEASE_MS, and the ICE round trip is at least JITTER_RTT_MIN_MS, each
   * video receiver holds frames for one round trip more (`jitterBufferTarget`, capped at
   * JITTER_MAX_MS); after that the browser decides alone again. Runs with the stats sampling
   * (`statsInterval`).
   * @param {RTCPeerConnection} pc @param {number|null} rtt @param {number} nacks @param {number} now
   */
  _tuneJitterBuffers(pc, rtt, nacks, now) {
    if (nacks > 0 && rtt !== null && rtt >= JITTER_RTT_MIN_MS) this._nackedAt = now;
    const hold = rtt !== null && this._nackedAt !== null && now - this._nackedAt < JITTER_RELEASE_MS;
    const target = hold && rtt !== null ? Math.min(JITTER_MAX_MS, rtt + JITTER_EXTRA_MS) : null;
    for (const receiver of pc.getReceivers()) {
      const r = /** @type {any} */ (receiver);
      if (receiver.track?.kind !== "video" || !("jitterBufferTarget" in r)) continue;
      const current = r.jitterBufferTarget;
      if (target === null ? current === null : current !== null && Math.abs(current - target) < 10) {
        continue;
      }
      try {
        r.jitterBufferTarget = target;
      } catch {
        // an older browser with the attribute but a narrower range: leave it to the browser
      }
    }
    this.jitterBufferTarget = target;
  }

  // ------------------------------------------------------------------ events

  _emitConnectionState() {
    const state = this.state === "reconnecting" ? "reconnecting" : this.connectionState;
    if (state === this._lastEmittedState && this.serverState === this._lastEmittedServer) return;
    this._lastEmittedState = state;
    this._lastEmittedServer = this.serverState;
    this._emit("connectionstatechange", { state, serverState: this.serverState,
      iceConnectionState: this._pc?.iceConnectionState ?? "closed" });
  }

  /** @param {string} code @param {string} message @param {Record<string, any>} [extra] */
  _emitError(code, message, extra = {}) {
    this._emit("error", { code, message, ...extra });
  }

  /** @param {string} type @param {Record<string, any>} init */
  _emit(type, init) {
    try {
      this.dispatchEvent(new ZvonokEvent(type, init));
    } catch (error) {
      console.error(`zvonok: a '${type}' listener threw`, error);
    }
  }

  /** @param {...any} args */
  _log(...args) {
    if (this._debug) console.debug("zvonok:", ...args);
  }
}

/**
 * @typedef {object} LocalSlot
 * @property {MediaStreamTrack} track
 * @property {boolean} owned     captured by the SDK (stopped on leave)
 * @property {RTCRtpSender|null} sender
 * @property {MediaStream|null} stream
 *
 * @typedef {object} BackupStream
 * @property {string} codec      the mime type the server asked for
 * @property {RTCRtpTransceiver} transceiver
 * @property {MediaStreamTrack} track  the clone it sends
 * @property {LocalSlot} slot    the published track it backs
 */

/**
 * Firefox offers bundled m-lines as `port 0` + `a=bundle-only` (RFC 8843 section 6), which a
 * server may read as rejected m-lines. Sent as ordinary bundled m-lines instead (port 9, the
 * placeholder of trickle ICE): the same meaning, since the offer bundles them all. The local
 * description is untouched.
 * @param {string} sdp
 */
export function unbundleOnly(sdp) {
  if (!sdp.includes("a=bundle-only")) return sdp;
  return sdp.split(/\r\n(?=m=)/).map((section) => {
    if (!section.startsWith("m=") || !/\r\na=bundle-only\r\n/.test(section + "\r\n")) {
      return section;
    }
    return section.replace(/^(m=\S+) 0 /, "$1 9 ").replace(/\r\na=bundle-only(?=\r\n|$)/, "");
  }).join("\r\n");
}

/** @param {TrackSettings} a @param {TrackSettings} b */
function sameWish(a, b) {
  return Boolean(a.paused) === Boolean(b.paused) && a.maxWidth === b.maxWidth
    && a.maxHeight === b.maxHeight;
}

/** @param {unknown} error @returns {ZvonokError} */
function asZvonokError(error) {
  if (error instanceof ZvonokError) return error;
  return new ZvonokError("internal", String(/** @type {any} */ (error)?.message ?? error));
}

/** connectionState, or a mapping of iceConnectionState where the former is missing. */
/** @param {RTCPeerConnection} pc */
function pcState(pc) {
  if (pc.connectionState) return pc.connectionState;
  const ice = pc.iceConnectionState;
  return ice === "completed" ? "connected" : ice === "checking" ? "connecting" : ice;
}

/**
 * @param {boolean} connected @param {number|null} rtt ms @param {number} loss 0..1
 * @returns {"good"|"fair"|"poor"}
 */
export function qualityLevel(connected, rtt, loss) {
  if (!connected || loss > 0.08 || (rtt !== null && rtt > 500)) return "poor";
  if (loss > 0.02 || (rtt !== null && rtt > 250)) return "fair";
  return "good";
}

/**
 * The counters the quality sample needs from one getStats() report.
 * @param {RTCStatsReport} report
 * @param {Map<string, RemoteTrackInfo>} remote
 */
function readStats(report, remote) {
  const byTrackId = new Map();
  const byMid = new Map();
  for (const info of remote.values()) {
    byTrackId.set(info.track.id, info.trackId);
    byMid.set(info.mid, info.trackId);
  }
  let bytesIn = 0;
  let bytesOut = 0;
  let recv = 0;
  let lost = 0;
  let videoNacks = 0;
  let remoteLoss = 0;
  /** @type {number|null} */
  let rtt = null;
  /** @type {number|null} */
  let remoteRtt = null;
  let selectedPair = null;
  /** @type {Map<string, {bytes: number, recv: number, lost: number}>} */
  const tracks = new Map();
  /** @type {any[]} */
  const pairs = [];
  report.forEach((/** @type {any} */ s) => {
    if (s.type === "inbound-rtp") {
      bytesIn += s.bytesReceived ?? 0;
      recv += s.packetsReceived ?? 0;
      lost += Math.max(0, s.packetsLost ?? 0);
      if (s.kind === "video") videoNacks += s.nackCount ?? 0;
      const id = byTrackId.get(s.trackIdentifier) ?? byMid.get(s.mid);
      if (id) {
        const t = tracks.get(id) ?? { bytes: 0, recv: 0, lost: 0 };
        t.bytes += s.bytesReceived ?? 0;
        t.recv += s.packetsReceived ?? 0;
        t.lost += Math.max(0, s.packetsLost ?? 0);
        tracks.set(id, t);
      }
    } else if (s.type === "outbound-rtp") {
      bytesOut += s.bytesSent ?? 0;
    } else if (s.type === "remote-inbound-rtp") {
      remoteLoss = Math.max(remoteLoss, s.fractionLost ?? 0);
      if (typeof s.roundTripTime === "number") remoteRtt = s.roundTripTime * 1000;
    } else if (s.type === "transport" && s.selectedCandidatePairId) {
      selectedPair = s.selectedCandidatePairId;
    } else if (s.type === "candidate-pair") {
      pairs.push(s);
    }
  });
  const pair = pairs.find((p) => p.id === selectedPair)
    ?? pairs.find((p) => p.selected)
    ?? pairs.find((p) => p.nominated && p.state === "succeeded");
  if (pair && typeof pair.currentRoundTripTime === "number") rtt = pair.currentRoundTripTime * 1000;
  if (rtt === null) rtt = remoteRtt;
  if (rtt !== null) rtt = Math.round(rtt);
  return {
    bytesIn, bytesOut, recv, lost, videoNacks, remoteLoss, rtt, tracks,
    path: callPath(report, pair),
  };
}

/**
 * The path the call took, from the selected pair's local candidate: "relay" (through a TURN
 * server, whatever the transport to it), "tcp" (ICE-TCP to the server), "udp"; null before a
 * pair is selected.
 * @param {RTCStatsReport} report @param {any} pair
 * @returns {"udp"|"tcp"|"relay"|null}
 */
export function callPath(report, pair) {
  const local = pair ? report.get(pair.localCandidateId) : undefined;
  if (!local) return null;
  if (local.candidateType === "relay") return "relay";
  return local.protocol === "tcp" ? "tcp" : "udp";
}
