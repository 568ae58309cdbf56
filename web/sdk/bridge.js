// @voicebridge/sdk: the browser SDK of the voice bridge. One ES module, no
// dependencies, no build step: an app's page imports it from the bridge
// (`/sdk/bridge.js`) or from the npm package, then signs in with its own
// token, lists, creates and ends rooms, follows events and joins calls.
//
// It speaks protocol version 1 (docs/protocol.md; every message in
// protocol.schema.json beside this file). The bridge's own page is built
// on it.
//
// The browser is the POLITE peer of perfect negotiation (WebRTC 1.0 §10.7,
// "Perfect negotiation example"): it offers whenever its own tracks change,
// and when the server's offer collides with its own it rolls its offer back
// and answers. The server (impolite) ignores a colliding browser offer.

/** The protocol version this SDK speaks; the package's major version. */
export const protocolVersion = 1;
/** The package version (package.json). */
export const version = '1.0.0';

// ------------------------------------------------------------------ REST


/** ApiError is a REST failure: HTTP status, the server's code and field. */
export class ApiError extends Error {
  constructor(status, code, message, field = '') {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** UnreachableError means the request never got an HTTP answer. */
export class UnreachableError extends Error {
  constructor(cause) {
    super("Can't reach the bridge");
    this.name = 'UnreachableError';
    this.cause = cause;
  }
}

const requestTimeoutMs = 10000;

// apiURL resolves path against the bridge's base URL ('' = this page's origin).
function apiURL(base, path) {
  return base ? new URL(path, base).href : path;
}

// request does one fetch with a timeout and turns network failures and
// gateway errors (502-504 from a proxy in front of the bridge) into
// UnreachableError.
async function request(base, path, { method = 'GET', token = '', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(apiURL(base, path), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      signal: AbortSignal.timeout(requestTimeoutMs),
    });
  } catch (err) {
    throw new UnreachableError(err);
  }
  if (res.status >= 502 && res.status <= 504) throw new UnreachableError(new Error(`HTTP ${res.status}`));
  return res;
}

// failure reads the server's {"error":{code,field,message}} body.
async function failure(res, what) {
  let code = '';
  let field = '';
  let message = '';
  try {
    const body = await res.json();
    if (body && body.error) {
      code = String(body.error.code || '');
      field = String(body.error.field || '');
      message = String(body.error.message || '');
    }
  } catch {
    // Not JSON: fall back to the status below.
  }
  if (!message) message = `${what} failed (HTTP ${res.status})`;
  return new ApiError(res.status, code, message, field);
}

/**
 * devAuthAvailable reports whether the bridge runs development sign-in:
 * it publishes its key set at /.well-known/jwks.json only then.
 */
export async function devAuthAvailable(base = '') {
  const res = await request(base, '/.well-known/jwks.json');
  // Read the body to its end: a response left unread is cancelled, which
  // shows as an aborted request in the browser's network log.
  await res.arrayBuffer().catch(() => {});
  return res.status === 200;
}

/**
 * devToken asks the bridge's development sign-in for a token for name;
 * guilds, when given, go into its guilds claim (the Discord servers it
 * allows).
 */
export async function devToken(name, base = '', guilds = undefined) {
  const res = await request(base, '/api/dev/token', { method: 'POST', body: Array.isArray(guilds) ? { name, guilds } : { name } });
  if (!res.ok) throw await failure(res, 'Sign-in');
  const body = await res.json();
  if (!body || typeof body.token !== 'string' || !body.token) {
    throw new ApiError(res.status, 'bad_answer', 'The bridge answered without a token');
  }
  return body;
}

/**
 * listRooms returns [{channelId,name,guildId,userLimit,members:[{userId,name}]}]
 * of every Discord server the token allows, or of guildId alone; the hub
 * answers {"rooms":[...]} (hub/rest.go).
 */
export async function listRooms(token, base = '', guildId = '') {
  const path = guildId ? `/api/rooms?guildId=${encodeURIComponent(guildId)}` : '/api/rooms';
  const res = await request(base, path, { token });
  if (!res.ok) throw await failure(res, 'Loading rooms');
  const body = await res.json();
  const rooms = Array.isArray(body) ? body : body && body.rooms;
  return Array.isArray(rooms) ? rooms : [];
}

/**
 * createRoom creates a room in the Discord server guildId (which may be
 * left out when the token allows one); a 400 carries the offending field.
 */
export async function createRoom(token, name, userLimit, base = '', guildId = '') {
  const body = guildId ? { name, userLimit, guildId } : { name, userLimit };
  const res = await request(base, '/api/create-room', { method: 'POST', token, body });
  if (res.status !== 201 && !res.ok) throw await failure(res, 'Creating the room');
  return res.json();
}

/** endRoom ends (deletes) a room. */
export async function endRoom(token, channelId, base = '') {
  const res = await request(base, `/api/end-room/${encodeURIComponent(channelId)}`, { method: 'DELETE', token });
  if (res.status !== 204 && !res.ok) throw await failure(res, 'Ending the room');
}

// ------------------------------------------------------------------- hub


/** Close codes of the hub (docs/protocol.md, Close codes). */
export const CloseUnauthorized = 4401;
export const CloseSlowClient = 4408;
export const CloseBadMessages = 4400;

/** Backoff tunables: the first retry waits firstDelayMs, doubling up to maxDelayMs. */
export const firstDelayMs = 1000;
export const maxDelayMs = 30000;
// A connection that stayed up this long resets the backoff.
const stableAfterMs = 10000;
// How long the socket may take to open and answer the auth message.
const socketTimeoutMs = 10000;

/** backoffDelay is the wait before retry number attempt (0-based), with ±20 % jitter. */
export function backoffDelay(attempt) {
  const base = Math.min(maxDelayMs, firstDelayMs * 2 ** Math.min(attempt, 16));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/**
 * Hub keeps one authenticated socket open, reconnecting with capped
 * exponential backoff. Listen for:
 *   state        {state: 'connecting'|'open'|'retrying'|'closed', retryAt, attempt, reason}
 *   ready        {ack}            after every successful auth (re-read state then)
 *   event        {event, payload} a published event
 *   signal       {msg}            a call signaling message
 *   unauthorized {reason}         the token was refused or expired; no more retries
 */
export class Hub extends EventTarget {
  /**
   * @param {() => string|Promise<string>} getToken returns the token to authenticate with; called for every connection.
   * @param {string} base the bridge's base URL ('' = this page's origin).
   */
  constructor(getToken, base = '') {
    super();
    this.getToken = getToken;
    this.base = base;
    this.ws = null;
    this.state = 'idle';
    this.attempt = 0;
    this.timer = 0;
    this.connectTimer = 0;
    this.openedAt = 0;
    this.stopped = true;
    this.ack = null;
    this.lastReason = '';
  }

  /** start connects, and keeps reconnecting until stop. */
  start() {
    this.stopped = false;
    this.attempt = 0;
    this.connect();
  }

  /** stop closes the socket and ends reconnection. */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.connectTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000, 'bye'); } catch { /* already closed */ }
    }
    this.setState('closed');
  }

  /** retryNow skips the current backoff wait. */
  retryNow() {
    if (this.stopped || this.state !== 'retrying') return;
    clearTimeout(this.timer);
    this.connect();
  }

  /** send sends one JSON message; false if the socket is not authenticated. */
  send(msg) {
    if (this.state !== 'open' || !this.ws) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /** reauth sends a fresh token (same user) to extend the connection. */
  reauth(token) {
    if (this.state === 'open' && this.ws) this.ws.send(JSON.stringify({ type: 'auth', token }));
  }

  setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, attempt: this.attempt, ...extra } }));
  }

  connect() {
    clearTimeout(this.timer);
    let ws;
    this.setState('connecting');
    try {
      const u = new URL('/api/ws', this.base || location.href);
      u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
      ws = new WebSocket(u.href);
    } catch (err) {
      this.scheduleRetry(String(err && err.message || err));
      return;
    }
    this.ws = ws;
    this.ack = null;
    this.connectTimer = setTimeout(() => {
      if (this.ws === ws && this.state === 'connecting') ws.close(4000, 'auth timeout');
    }, socketTimeoutMs);
    ws.onopen = async () => {
      let token;
      try {
        token = await this.getToken();
      } catch (err) {
        if (this.ws === ws) ws.close(4000, `no token: ${err && err.message || err}`);
        return;
      }
      if (this.ws === ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'auth', token }));
    };
    ws.onmessage = (e) => this.onMessage(ws, e);
    ws.onclose = (e) => this.onClose(ws, e);
    ws.onerror = () => { /* onclose follows with the details */ };
  }

  onMessage(ws, e) {
    if (this.ws !== ws) return;
    let msg;
    try {
      msg = JSON.parse(e.data);
    } catch {
      return;
    }
    if (!msg || typeof msg.type !== 'string') return;
    if (msg.type === 'ack' && msg.event === 'auth.ok') {
      clearTimeout(this.connectTimer);
      const first = this.state !== 'open';
      this.ack = msg;
      this.openedAt = Date.now();
      if (first) {
        this.setState('open');
        this.dispatchEvent(new CustomEvent('ready', { detail: { ack: msg } }));
      }
      return;
    }
    if (msg.type === 'event' && msg.v === 1) {
      this.dispatchEvent(new CustomEvent('event', { detail: { event: msg.event, payload: msg.payload || {}, ts: msg.ts } }));
      return;
    }
    if (msg.type === 'pong') return;
    this.dispatchEvent(new CustomEvent('signal', { detail: { msg } }));
  }

  onClose(ws, e) {
    if (this.ws !== ws) return;
    clearTimeout(this.connectTimer);
    this.ws = null;
    const wasOpen = this.state === 'open';
    if (this.stopped) {
      this.setState('closed');
      return;
    }
    if (e.code === CloseUnauthorized) {
      this.stopped = true;
      this.setState('closed', { reason: e.reason });
      this.dispatchEvent(new CustomEvent('unauthorized', { detail: { reason: e.reason || '' } }));
      return;
    }
    if (wasOpen && Date.now() - this.openedAt > stableAfterMs) this.attempt = 0;
    // A slow-client close only means events were missed: reconnect at once.
    this.scheduleRetry(e.reason || `connection closed (code ${e.code})`, e.code === CloseSlowClient ? 0 : undefined);
  }

  scheduleRetry(reason, delay) {
    const wait = delay ?? backoffDelay(this.attempt);
    this.attempt++;
    this.lastReason = reason;
    this.setState('retrying', { retryAt: Date.now() + wait, reason });
    this.timer = setTimeout(() => this.connect(), wait);
  }
}

// --------------------------------------------------------------- devices


/** getLocalMedia asks for the chosen microphone and camera ('' = default, 'none' = without). */
export async function getLocalMedia(micId, camId) {
  const audio = micId === 'none' ? false : (micId ? { deviceId: { exact: micId } } : true);
  const video = camId === 'none' ? false
    : { ...(camId ? { deviceId: { exact: camId } } : {}), width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 } };
  if (!audio && !video) return new MediaStream();
  return navigator.mediaDevices.getUserMedia({ audio, video });
}

/** getCamera opens just the camera again (after it was turned off). */
export async function getCamera(camId) {
  const s = await getLocalMedia('none', camId || '');
  return s.getVideoTracks()[0] || null;
}

/** listDevices returns the microphones and cameras; labels need permission first. */
export async function listDevices() {
  const all = await navigator.mediaDevices.enumerateDevices();
  const mics = all.filter((d) => d.kind === 'audioinput');
  const cams = all.filter((d) => d.kind === 'videoinput');
  return { mics, cams };
}

/** mediaErrorText says in words why the browser refused the devices. */
export function mediaErrorText(err) {
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'The browser did not allow the microphone or camera. Allow them for this site and try again.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'That microphone or camera is not connected any more. Pick another one.';
    case 'NotReadableError':
    case 'AbortError':
      return 'The microphone or camera is in use by another program, or failed to start.';
    case 'TypeError':
      return 'This page needs a secure address (https:// or localhost) to use a microphone or camera.';
    default:
      return `The microphone or camera could not be opened (${(err && err.message) || err}).`;
  }
}

/**
 * LevelMeter reads the level of an audio track through an AnalyserNode, as
 * a 0..1 RMS value of the latest 2048 samples.
 */
export class LevelMeter {
  /** @param {AudioContext} ctx @param {MediaStreamTrack} track */
  constructor(ctx, track) {
    this.source = ctx.createMediaStreamSource(new MediaStream([track]));
    this.analyser = ctx.createAnalyser();
    this.analyser.fftSize = 2048;
    this.buf = new Float32Array(this.analyser.fftSize);
    this.source.connect(this.analyser);
  }

  level() {
    this.analyser.getFloatTimeDomainData(this.buf);
    let sum = 0;
    for (const v of this.buf) sum += v * v;
    return Math.sqrt(sum / this.buf.length);
  }

  close() {
    try { this.source.disconnect(); } catch { /* already */ }
  }
}

// ------------------------------------------------------------------ call

// Error codes (docs/protocol.md, Errors in a call) after which the server has dropped this
// browser from the room.
const fatalCodes = new Set(['room_ended', 'unknown_room', 'session_replaced', 'ice_failed', 'closed',
  'internal', 'bad_sdp', 'not_joined']);

// An audio level (0..1, as getStats' audioLevel) above this counts as speech.
const speakingLevel = 0.02;
// Speech stays shown this long after the level dropped.
const speakingHoldMs = 600;
// How often levels and statistics are read.
const pollMs = 250;
// How many signaling steps window.__bridge shows.
const maxTrace = 200;
// At most this many signaling messages are kept from before "joined".
const maxEarly = 64;
// How long to wait for the server's first offer before offering our tracks.
const serverOfferWaitMs = 2000;
// How long the media connection may take to come up before the call joins
// again, and how many times it does so before giving up.
const connectTimeoutMs = 10000;
const maxConnectAttempts = 3;
// How long ICE may stay disconnected before the call asks for an ICE restart.
const restartAfterMs = 4000;

/**
 * Call emits:
 *   state        {state: 'joining'|'connecting'|'connected'|'reconnecting'|'ended', message}
 *   participants {}   the participant list, a stream or a speaking state changed
 *   discord      {discord, message}
 *   privacy      {code}
 *   notice       {message}   a problem that did not end the call
 *   ended        {code, message, retry}
 */
export class Call extends EventTarget {
  /**
   * @param {object} o
   * @param {import('./hub.js').Hub} o.hub
   * @param {string} o.roomId
   * @param {MediaStream} o.local the microphone and camera, owned by the call from now on
   * @param {string} o.camId the camera to reopen after "camera off"
   * @param {boolean} o.muted start muted
   * @param {{id:string,name:string}} o.me
   * @param {AudioContext} o.audioCtx
   * @param {boolean} [o.playAudio] play every remote participant's audio itself, at setVolume's volume
   */
  constructor({ hub, roomId, local, camId, muted, me, audioCtx, playAudio = false }) {
    super();
    this.playAudio = playAudio;
    this.volumes = new Map(); // participant id -> 0..1
    this.players = new Map(); // stream id -> HTMLAudioElement (playAudio only)
    this.onNetworkChange = () => this.networkChanged();
    this.hub = hub;
    this.roomId = roomId;
    this.local = local;
    this.camId = camId;
    this.muted = muted;
    this.cameraOn = local.getVideoTracks().length > 0;
    this.me = me;
    this.audioCtx = audioCtx;

    this.state = 'idle';
    this.selfId = '';
    this.selfServer = null;
    this.participants = new Map(); // id -> participant (media.Participant)
    this.streams = new Map(); // stream id -> MediaStream
    this.levels = new Map(); // stream id or 'self' -> {level, speakingUntil}
    this.discord = { discord: '', message: '' };
    this.privacyCode = '';
    this.pc = null;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.queue = Promise.resolve();
    this.early = []; // signaling that came before "joined"
    this.trace = [];
    this.poll = 0;
    this.restartTimer = 0;
    this.lastStats = null;
    this.ended = false;
    this.meter = null;
    this.applyMute();
    const mic = local.getAudioTracks()[0];
    if (mic && audioCtx) this.meter = new LevelMeter(audioCtx, mic);
  }

  /** join asks the server for the room; media follows the "joined" answer. */
  join() {
    this.setState('joining');
    if (!this.send({ type: 'join', roomId: this.roomId })) {
      this.setState('reconnecting', 'Waiting for the connection to the bridge…');
    }
    clearInterval(this.poll);
    this.poll = setInterval(() => this.tick(), pollMs);
    if (!this.watchingNetwork) {
      this.watchingNetwork = true;
      window.addEventListener('online', this.onNetworkChange);
      if (navigator.connection) navigator.connection.addEventListener('change', this.onNetworkChange);
    }
  }

  // networkChanged restarts ICE: the addresses the connection uses may be
  // gone (a new Wi-Fi, a VPN, a laptop waking up).
  networkChanged() {
    if (this.ended || !this.pc) return;
    this.note('network changed: restarting ICE');
    this.restartIce();
  }

  /** restartIce asks the bridge for an offer with new ICE credentials. */
  restartIce() {
    if (this.ended) return false;
    return this.send({ type: 'restart-ice', roomId: this.roomId });
  }

  /** setVolume sets how loud a participant plays, 0..1 (with playAudio, or read by volume()). */
  setVolume(participantId, volume) {
    const v = Math.min(1, Math.max(0, Number(volume)));
    this.volumes.set(participantId, v);
    const p = this.participants.get(participantId);
    const s = p && this.streamFor(p);
    const player = s && this.players.get(s.id);
    if (player) player.volume = v;
  }

  /** volume is a participant's volume, 0..1 (1 unless set). */
  volume(participantId) {
    return this.volumes.get(participantId) ?? 1;
  }

  /**
   * list is everyone in the call but this browser: media's participant
   * (id, userId, name, kind 'browser'|'discord', muted, camera, speaking,
   * tracks) with its remote stream, whether it speaks now (the server's
   * word or the level heard) and its volume.
   */
  list() {
    return [...this.participants.values()].map((p) => {
      const stream = this.streamFor(p);
      return { ...p, stream, speaking: !!p.speaking || this.speaking(stream ? stream.id : p.id), volume: this.volume(p.id) };
    });
  }

  // play keeps one audio player per remote stream (playAudio only).
  play() {
    if (!this.playAudio) return;
    const want = new Map();
    for (const p of this.participants.values()) {
      const s = this.streamFor(p);
      if (s && s.getAudioTracks().length) want.set(s.id, { s, id: p.id });
    }
    for (const [id, a] of this.players) {
      if (!want.has(id)) {
        a.srcObject = null;
        this.players.delete(id);
      }
    }
    for (const [id, { s, id: pid }] of want) {
      if (this.players.has(id)) continue;
      const a = new Audio();
      a.autoplay = true;
      a.srcObject = s;
      a.volume = this.volume(pid);
      a.play().catch(() => { /* autoplay needs a user gesture first */ });
      this.players.set(id, a);
    }
  }

  /** rejoin starts over with a new connection: after a dropped hub socket, or Retry. */
  rejoin() {
    if (this.ended) return;
    this.closePeer();
    this.early = [];
    this.participants.clear();
    this.streams.clear();
    this.emit('participants');
    this.join();
  }

  /** leave tells the server and releases everything. */
  leave() {
    if (this.ended) return;
    this.send({ type: 'leave', roomId: this.roomId });
    this.finish('left', 'You left the call.', false);
  }

  /** end stops the call for a reason the app learned elsewhere (a room.deleted event). */
  end(code, message, retry = false) {
    this.finish(code, message, retry);
  }

  /** setMuted mutes or unmutes the microphone. */
  setMuted(muted) {
    this.muted = muted;
    this.applyMute();
    this.send({ type: 'mute', roomId: this.roomId, muted });
    this.emit('participants');
  }

  applyMute() {
    for (const t of this.local.getAudioTracks()) t.enabled = !this.muted;
  }

  /** setCamera turns the camera off (releasing the device) or on again. */
  async setCamera(on) {
    if (on === this.cameraOn) return;
    if (!on) {
      for (const t of this.local.getVideoTracks()) {
        t.stop();
        this.local.removeTrack(t);
      }
      const sender = this.videoSender();
      if (sender) await sender.replaceTrack(null);
      this.cameraOn = false;
    } else {
      const track = await getCamera(this.camId);
      if (!track) throw new Error('no camera');
      this.local.addTrack(track);
      const sender = this.videoSender();
      if (sender) {
        await sender.replaceTrack(track);
      } else if (this.pc) {
        publish(this.pc, track, this.local); // renegotiates
      }
      this.cameraOn = true;
    }
    this.send({ type: 'camera', roomId: this.roomId, on: this.cameraOn });
    this.emit('participants');
  }

  videoSender() {
    if (!this.pc) return null;
    return this.pc.getTransceivers().find((t) => t.sender && t.receiver.track.kind === 'video' &&
      (t.direction === 'sendrecv' || t.direction === 'sendonly'))?.sender || null;
  }

  /** handleSignal takes one signaling message; they are applied in order. */
  handleSignal(msg) {
    if (this.ended) return;
    this.note(`in ${msg.type}${msg.error ? ` ${msg.error.code}` : ''}`);
    this.queue = this.queue.then(() => this.apply(msg)).catch((err) => {
      this.emit('notice', { message: `Call setup hit a problem: ${err.message || err}` });
    });
  }

  async apply(msg) {
    if (this.ended) return;
    if (msg.roomId && msg.roomId !== this.roomId) return;
    if (!this.pc && (msg.type === 'offer' || msg.type === 'answer' || msg.type === 'candidate')) {
      // The server may offer its tracks before "joined" arrives: keep the
      // offer and its candidates until the connection exists.
      if (this.early.length < maxEarly) this.early.push(msg);
      return;
    }
    switch (msg.type) {
      case 'joined': {
        this.onJoined(msg);
        const early = this.early;
        this.early = [];
        for (const m of early) await this.apply(m);
        break;
      }
      case 'offer':
      case 'answer':
        await this.onDescription(msg.type, msg.sdp);
        break;
      case 'candidate':
        await this.onCandidate(msg.candidate);
        break;
      case 'participant':
        this.onParticipant(msg.event, msg.participant);
        break;
      case 'status':
        this.discord = { discord: msg.discord || '', message: msg.message || '' };
        this.emit('discord', this.discord);
        break;
      case 'privacy':
      case 'dave':
        this.privacyCode = String(msg.code || '');
        this.emit('privacy', { code: this.privacyCode });
        break;
      case 'error':
        this.onError(msg.error || {}, msg.v === 1);
        break;
      default:
        break;
    }
  }

  onJoined(msg) {
    this.closePeer();
    this.selfId = msg.self || '';
    this.participants.clear();
    for (const p of msg.participants || []) if (p.id !== this.selfId) this.participants.set(p.id, p);
    this.iceServers = Array.isArray(msg.iceServers) ? msg.iceServers : [];
    // The call's privacy code as the server knows it now; "privacy"
    // messages carry its changes.
    this.privacyCode = String(msg.privacyCode || '');
    this.emit('privacy', { code: this.privacyCode });
    // When others already publish, the server's offer is on its way:
    // answer it before offering our own tracks, so the two offers do not
    // cross. Otherwise we offer at once.
    const expectOffer = [...this.participants.values()].some((p) => (p.tracks || []).length > 0);
    this.newPeer(!expectOffer);
    this.send({ type: 'mute', roomId: this.roomId, muted: this.muted });
    this.send({ type: 'camera', roomId: this.roomId, on: this.cameraOn });
    this.setState('connecting');
    this.emit('participants');
    clearTimeout(this.connectTimer);
    this.connectTimer = setTimeout(() => this.connectTimedOut(), connectTimeoutMs);
  }

  // newPeer replaces the RTCPeerConnection with a fresh one; our tracks
  // are added now (addNow) or after the server's first offer.
  newPeer(addNow) {
    this.closePeer();
    this.streams.clear();
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.pc = pc;
    this.everConnected = false;
    this.localCandidates = 0;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.localAdded = false;
    pc.onnegotiationneeded = () => this.negotiate(pc);
    pc.onicecandidate = ({ candidate }) => {
      if (candidate && this.pc === pc) {
        this.localCandidates++;
        this.send({ type: 'candidate', roomId: this.roomId, candidate: candidate.toJSON() });
      }
    };
    pc.ontrack = (e) => this.onTrack(e);
    pc.onicegatheringstatechange = () => this.note(`ice gathering ${pc.iceGatheringState}`);
    pc.oniceconnectionstatechange = () => this.note(`ice ${pc.iceConnectionState}`);
    pc.onsignalingstatechange = () => this.note(`signaling ${pc.signalingState}`);
    pc.onconnectionstatechange = () => this.onConnectionState(pc);
    if (addNow) {
      this.addLocalTracks(pc);
    } else {
      this.addTimer = setTimeout(() => this.addLocalTracks(pc), serverOfferWaitMs);
    }
    return pc;
  }

  // connectTimedOut starts over when the media connection never came up.
  connectTimedOut() {
    if (this.ended || this.everConnected) return;
    this.connectAttempts = (this.connectAttempts || 0) + 1;
    if (this.connectAttempts >= maxConnectAttempts) {
      this.finish('ice_failed', errorText('ice_failed'), true);
      return;
    }
    this.note('media did not connect in time: joining again');
    this.rejoin();
  }

  addLocalTracks(pc) {
    clearTimeout(this.addTimer);
    if (this.pc !== pc || this.localAdded) return;
    this.localAdded = true;
    for (const t of this.local.getTracks()) publish(pc, t, this.local);
    // Receive even when not sending, so the server has a section to add tracks to.
    if (!this.local.getAudioTracks().length) pc.addTransceiver('audio', { direction: 'recvonly' });
  }

  async negotiate(pc) {
    if (this.pc !== pc) return;
    try {
      this.makingOffer = true;
      await pc.setLocalDescription();
      if (this.pc === pc && pc.localDescription && pc.localDescription.type === 'offer') {
        this.send({ type: 'offer', roomId: this.roomId, sdp: pc.localDescription.sdp });
      }
    } catch (err) {
      this.emit('notice', { message: `Could not start the media negotiation: ${err.message || err}` });
    } finally {
      this.makingOffer = false;
    }
  }

  async onDescription(type, sdp) {
    let pc = this.pc;
    if (!pc || !sdp) return;
    if (type === 'answer' && pc.signalingState !== 'have-local-offer') return; // answer to an offer we rolled back
    // The polite peer never ignores an offer. On a collision (we are making
    // or have made our own offer) setRemoteDescription rolls ours back
    // first: the implicit rollback of WebRTC 1.0 §4.4.1.6, done in the same
    // operation so that no new offer of ours can slip in between.
    this.ignoreOffer = false;
    const collision = type === 'offer' && (this.makingOffer || pc.signalingState !== 'stable');
    if (collision && !pc.currentRemoteDescription) {
      // Chromium rolls back a first offer whose ICE gathering had begun but
      // then gathers nothing more, and the connection stays "new". While
      // nothing was ever agreed with the server, nothing is lost by
      // starting with a fresh connection: the server ignored our offer and
      // waits for the answer to its own. (Later, the server knows our ICE
      // and DTLS identity, so a collision rolls back as usual.)
      this.note('collision on the first offer: answering on a fresh connection');
      pc = this.newPeer(false);
    } else if (collision) {
      this.note('collision: rolling back our offer');
    }
    await pc.setRemoteDescription({ type, sdp });
    if (type === 'offer') {
      await pc.setLocalDescription();
      this.send({ type: 'answer', roomId: this.roomId, sdp: pc.localDescription.sdp });
      this.addLocalTracks(pc);
    }
  }

  async onCandidate(candidate) {
    const pc = this.pc;
    if (!pc || !candidate) return;
    try {
      await pc.addIceCandidate(candidate);
    } catch (err) {
      if (!this.ignoreOffer) throw err;
    }
  }

  onTrack(e) {
    const stream = e.streams[0] || new MediaStream([e.track]);
    const known = this.streams.get(stream.id);
    if (!known) {
      this.streams.set(stream.id, stream);
      stream.addEventListener('removetrack', () => {
        if (stream.getTracks().length === 0) this.streams.delete(stream.id);
        this.emit('participants');
      });
    }
    e.track.addEventListener('unmute', () => this.emit('participants'));
    this.emit('participants');
  }

  onParticipant(event, p) {
    if (!p || !p.id) return;
    if (p.id === this.selfId) {
      // The server's view of me: whether I am the speaker forwarded to Discord.
      this.selfServer = p;
      this.emit('participants');
      return;
    }
    if (event === 'left') {
      this.participants.delete(p.id);
      for (const t of p.tracks || []) this.streams.delete(t.streamId);
      this.streams.delete(p.id);
    } else {
      this.participants.set(p.id, p);
    }
    this.emit('participants');
  }

  onError(err, fromHub) {
    const code = String(err.code || '');
    if (fromHub && code === 'unknown_type') {
      this.finish('no_media', 'This bridge cannot take calls right now: its media service is not running.', true);
      return;
    }
    if (fatalCodes.has(code)) {
      this.finish(code, errorText(code, err.message), code !== 'room_ended' && code !== 'unknown_room');
      return;
    }
    this.emit('notice', { message: errorText(code, err.message) });
  }

  onConnectionState(pc) {
    if (this.pc !== pc || this.ended) return;
    switch (pc.connectionState) {
      case 'connected':
        this.everConnected = true;
        this.connectAttempts = 0;
        clearTimeout(this.connectTimer);
        clearTimeout(this.restartTimer);
        this.restartTimer = 0;
        this.setState('connected');
        break;
      case 'disconnected':
      case 'failed':
        this.setState('reconnecting', 'The media connection dropped; reconnecting…');
        if (!this.restartTimer) {
          const wait = pc.connectionState === 'failed' ? 0 : restartAfterMs;
          this.restartTimer = setTimeout(() => {
            this.restartTimer = 0;
            if (this.pc === pc && pc.connectionState !== 'connected') {
              this.send({ type: 'restart-ice', roomId: this.roomId });
            }
          }, wait);
        }
        break;
      default:
        break;
    }
  }

  // note keeps the last signaling steps for window.__bridge (debugging).
  note(what) {
    this.trace.push(`${Math.round(performance.now())} ${what}`);
    if (this.trace.length > maxTrace) this.trace.shift();
  }

  send(msg) {
    this.note(`out ${msg.type}`);
    return this.hub.send(msg);
  }

  setState(state, message = '') {
    this.state = state;
    this.emit('state', { state, message });
  }

  emit(name, detail = {}) {
    if (name === 'participants') this.play();
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  closePeer() {
    clearTimeout(this.addTimer);
    clearTimeout(this.restartTimer);
    this.restartTimer = 0;
    if (this.pc) {
      const pc = this.pc;
      this.pc = null;
      pc.onnegotiationneeded = pc.onicecandidate = pc.ontrack = pc.onconnectionstatechange = null;
      pc.onicegatheringstatechange = pc.oniceconnectionstatechange = pc.onsignalingstatechange = null;
      pc.close();
    }
  }

  finish(code, message, retry) {
    if (this.ended) return;
    this.ended = true;
    window.removeEventListener('online', this.onNetworkChange);
    if (navigator.connection) navigator.connection.removeEventListener('change', this.onNetworkChange);
    for (const a of this.players.values()) a.srcObject = null;
    this.players.clear();
    clearInterval(this.poll);
    clearTimeout(this.connectTimer);
    this.closePeer();
    if (this.meter) this.meter.close();
    for (const t of this.local.getTracks()) t.stop();
    this.state = 'ended';
    this.emit('state', { state: 'ended', message });
    this.emit('ended', { code, message, retry });
  }

  /** stats reads the connection's statistics now (null before "joined"). */
  async stats() {
    if (!this.pc) return null;
    const s = summarize(await this.pc.getStats(), this);
    s.connectionState = this.pc.connectionState;
    s.signalingState = this.pc.signalingState;
    return s;
  }

  /** streamFor finds the remote stream of a participant. */
  streamFor(p) {
    for (const t of p.tracks || []) {
      const s = this.streams.get(t.streamId);
      if (s) return s;
    }
    return this.streams.get(p.id) || null;
  }

  /** speaking reports whether a participant (or 'self') is speaking now. */
  speaking(key) {
    const l = this.levels.get(key);
    return !!l && l.speakingUntil > performance.now();
  }

  // tick reads the microphone level and the statistics of the call.
  async tick() {
    const now = performance.now();
    let changed = false;
    const mark = (key, level) => {
      const prev = this.levels.get(key) || { level: 0, speakingUntil: 0 };
      const was = prev.speakingUntil > now;
      const next = { level, speakingUntil: level > speakingLevel ? now + speakingHoldMs : prev.speakingUntil };
      this.levels.set(key, next);
      if (was !== next.speakingUntil > now) changed = true;
    };
    if (this.meter) mark('self', this.muted ? 0 : this.meter.level() * 1.4);
    const pc = this.pc;
    if (pc) {
      try {
        const report = await pc.getStats();
        this.lastStats = summarize(report, this);
        if (this.lastStats.path !== this.path) {
          this.path = this.lastStats.path;
          this.emit('path', { path: this.path });
        }
        for (const s of this.lastStats.inbound) {
          if (s.kind === 'audio' && s.streamId) mark(s.streamId, s.audioLevel || 0);
        }
      } catch {
        // The connection closed between the check and the call.
      }
    }
    if (changed) this.emit('participants');
  }
}

// Header extensions the server uses (media/engine.go and pion's default
// interceptors) or that keep their meaning when forwarded.
const wantedExtensions = new Set([
  'urn:ietf:params:rtp-hdrext:ssrc-audio-level',
  'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time',
  'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01',
  'urn:ietf:params:rtp-hdrext:sdes:mid',
  'urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id',
  'urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id',
  'urn:3gpp:video-orientation',
]);

// publish sends a local track on a transceiver of its own, send-only.
// With addTrack, a section either side created for receiving would be
// shared: the browser would send on a section the server created for a
// Discord user, and the server would send a Discord user's video on the
// section of this page's camera. Chromium then may leave such a received
// track muted although its packets decode, and the page shows no video.
function publish(pc, track, stream) {
  trimHeaderExtensions(pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] }));
}

// trimHeaderExtensions stops offering the header extensions the server
// ignores on a new transceiver. Chromium gives a new m-section its default
// extension ids and keeps them even when the server already took one of
// those ids for another extension in the BUNDLE group (the server numbers
// transport-cc 5, Chromium's default for playout-delay), and then refuses
// its own offer. Offering only what the server uses avoids the clash.
function trimHeaderExtensions(t) {
  if (!t || typeof t.getHeaderExtensionsToNegotiate !== 'function') return;
  const exts = t.getHeaderExtensionsToNegotiate().map((e) => (
    wantedExtensions.has(e.uri) || e.direction === 'stopped' ? e : { ...e, direction: 'stopped' }));
  try {
    t.setHeaderExtensionsToNegotiate(exts);
  } catch {
    // Mandatory extensions cannot be stopped; the defaults then stay.
  }
}

// summarize turns a getStats report into what the page and tests read.
function summarize(report, call) {
  const out = { inbound: [], outbound: [], transport: null };
  const trackStream = new Map();
  for (const [id, s] of call.streams) for (const t of s.getTracks()) trackStream.set(t.id, id);
  report.forEach((s) => {
    if (s.type === 'inbound-rtp') {
      out.inbound.push({
        kind: s.kind,
        trackId: s.trackIdentifier || '',
        streamId: trackStream.get(s.trackIdentifier) || '',
        packetsReceived: s.packetsReceived || 0,
        packetsLost: s.packetsLost || 0,
        bytesReceived: s.bytesReceived || 0,
        audioLevel: s.audioLevel || 0,
        totalAudioEnergy: s.totalAudioEnergy || 0,
        framesDecoded: s.framesDecoded || 0,
        frameWidth: s.frameWidth || 0,
        frameHeight: s.frameHeight || 0,
      });
    } else if (s.type === 'outbound-rtp') {
      out.outbound.push({
        kind: s.kind,
        packetsSent: s.packetsSent || 0,
        bytesSent: s.bytesSent || 0,
        framesEncoded: s.framesEncoded || 0,
      });
    } else if (s.type === 'transport') {
      out.transport = { dtlsState: s.dtlsState || '', iceState: s.iceState || '', pair: s.selectedCandidatePairId || '' };
    }
  });
  out.path = mediaPath(report, out.transport && out.transport.pair);
  return out;
}

// mediaPath names the way the call's media takes, from the selected
// candidate pair's local candidate: '' before one is selected.
function mediaPath(report, pairId) {
  const pair = pairId && report.get(pairId);
  const local = pair && report.get(pair.localCandidateId);
  if (!local) return '';
  if (local.candidateType === 'relay') return `relayed through TURN (${local.relayProtocol || local.protocol || 'udp'})`;
  return local.protocol === 'tcp' ? 'direct TCP' : 'direct UDP';
}

/** errorText says what a media error code means for the person in the call. */
export function errorText(code, detail = '') {
  switch (code) {
    case 'room_ended':
      return 'This room was ended.';
    case 'unknown_room':
      return 'This room does not exist any more.';
    case 'session_replaced':
      return 'You joined this room from another tab or device, so this one was disconnected.';
    case 'ice_failed':
      return 'The media connection to the bridge failed: neither UDP nor TCP got through. If your network blocks them, '
        + 'the bridge\'s operator must open its media ports (ICE_UDP_PORT over UDP, ICE_TCP_PORT over TCP) or turn on TURN (TURN_PORT or ICE_SERVERS).';
    case 'closed':
      return 'The bridge is restarting or shutting down.';
    case 'busy':
      return 'The bridge is busy; some call setup messages were dropped.';
    case 'bad_sdp':
    case 'internal':
      return `The call could not be set up${detail ? ` (${detail})` : ''}.`;
    default:
      return detail || `Something went wrong (${code || 'unknown error'}).`;
  }
}

// ---------------------------------------------------------------- Bridge

/**
 * Bridge is the SDK's front door: one bridge, one user, one socket, at
 * most one call at a time.
 *
 * Events (CustomEvent, detail):
 *   state        {state: 'connecting'|'open'|'retrying'|'closed', attempt, retryAt, reason}
 *   ready        {ack}              signed in (again): re-read rooms now
 *   event        {event, payload, ts} every published event; also dispatched under its own name
 *                                   ('room.created', 'room.deleted', 'voice.joined', 'voice.left',
 *                                   'participant.joined', 'participant.left', 'speaking', 'mute', 'camera')
 *   unauthorized {reason}           the token was refused or expired: no more retries
 */
export class Bridge extends EventTarget {
  /**
   * @param {object} o
   * @param {string} [o.url] the bridge's base URL, e.g. 'https://bridge.example.com' ('' = this page's origin)
   * @param {string|(() => string|Promise<string>)} o.token the app's token, or a function that returns a fresh one (called for each connection and REST call)
   */
  constructor({ url = '', token } = {}) {
    super();
    if (!token) throw new TypeError('Bridge needs a token (a string or a function returning one)');
    this.url = url ? new URL(url, location.href).origin : '';
    this.tokenSource = token;
    this.hub = null;
    this.call = null;
    this.me = { userId: '', name: '' };
  }

  /** token resolves the current token. */
  async token() {
    return typeof this.tokenSource === 'function' ? this.tokenSource() : this.tokenSource;
  }

  /** setToken replaces the token (or its function) and extends the open socket with it. */
  async setToken(token) {
    this.tokenSource = token;
    if (this.hub) this.hub.reauth(await this.token());
  }

  /**
   * listRooms returns [{channelId, name, guildId, userLimit, members: [{userId, name, bot}]}]
   * of every Discord server the token allows, or of guildId alone.
   */
  async listRooms({ guildId = '' } = {}) {
    return listRooms(await this.token(), this.url, guildId);
  }

  /**
   * createRoom creates a room; an ApiError with field names a bad name,
   * userLimit or guildId (the Discord server, needed when the token allows
   * several: the ack's guilds).
   */
  async createRoom(name, { userLimit = 0, guildId = '' } = {}) {
    return createRoom(await this.token(), name, userLimit, this.url, guildId);
  }

  /** endRoom ends (deletes) a room; its call's browsers are told room_ended. */
  async endRoom(channelId) {
    return endRoom(await this.token(), channelId, this.url);
  }

  /** state is the socket's state: 'idle', 'connecting', 'open', 'retrying' or 'closed'. */
  get state() {
    return this.hub ? this.hub.state : 'idle';
  }

  /**
   * connect opens the socket and keeps it open (reconnecting with capped
   * backoff) until disconnect. It resolves with the ack once signed in, and
   * rejects with an Error whose code is 'unauthorized' if the token is refused.
   */
  connect() {
    if (this.hub) return this.ready || Promise.resolve(this.hub.ack);
    const hub = new Hub(() => this.token(), this.url);
    this.hub = hub;
    this.ready = new Promise((resolve, reject) => {
      hub.addEventListener('ready', (e) => resolve(e.detail.ack), { once: true });
      hub.addEventListener('unauthorized', (e) => {
        const err = new Error(`the bridge refused the token${e.detail.reason ? `: ${e.detail.reason}` : ''}`);
        err.code = 'unauthorized';
        reject(err);
      }, { once: true });
    });
    this.ready.catch(() => { /* also told through the unauthorized event */ });
    hub.addEventListener('state', (e) => {
      if (e.detail.state === 'retrying' && this.call && !this.call.ended) {
        this.call.setState('reconnecting', 'Lost the connection to the bridge');
      }
      this.emit('state', e.detail);
    });
    hub.addEventListener('ready', (e) => {
      const { ack } = e.detail;
      this.me = { userId: ack.userId || '', name: ack.name || '' };
      this.emit('ready', { ack });
      // The call did not survive the socket: join again (docs/protocol.md, Ordering and delivery).
      if (this.call && !this.call.ended && this.call.state !== 'idle') this.call.rejoin();
    });
    hub.addEventListener('event', (e) => {
      const { event, payload } = e.detail;
      if (event === 'room.deleted' && this.call && !this.call.ended && this.call.roomId === payload.channelId) {
        this.call.end('room_ended', errorText('room_ended'));
      }
      this.emit('event', e.detail);
      this.emit(event, payload);
    });
    hub.addEventListener('signal', (e) => { if (this.call) this.call.handleSignal(e.detail.msg); });
    hub.addEventListener('unauthorized', (e) => {
      if (this.call) this.call.end('unauthorized', 'The bridge refused the token.');
      this.emit('unauthorized', e.detail);
    });
    hub.start();
    return this.ready;
  }

  /** disconnect leaves any call and closes the socket. */
  disconnect() {
    if (this.call) this.call.leave();
    this.call = null;
    if (this.hub) this.hub.stop();
    this.hub = null;
    this.ready = null;
  }

  /**
   * join joins a room's call with the given devices and returns the Call.
   * The call is under way when its state becomes 'connected'.
   *
   * @param {string} roomId the room's channel id
   * @param {object} [o]
   * @param {string} [o.microphone] a deviceId, '' for the default, 'none' for none
   * @param {string} [o.camera] a deviceId, '' for the default, 'none' for none (the default)
   * @param {MediaStream} [o.stream] use these tracks instead of opening devices (the call owns them)
   * @param {boolean} [o.muted] start muted
   * @param {boolean} [o.playAudio] play the others' audio (default true); false to attach streams yourself
   */
  async join(roomId, { microphone = '', camera = 'none', stream, muted = false, playAudio = true } = {}) {
    if (!this.hub) this.connect();
    if (this.call && !this.call.ended) this.call.leave();
    const local = stream || await getLocalMedia(microphone, camera);
    const camId = camera === 'none' ? '' : camera;
    const ctx = typeof AudioContext === 'function' ? (this.audioCtx ||= new AudioContext()) : null;
    const call = new Call({ hub: this.hub, roomId, local, camId, muted, me: this.me, audioCtx: ctx, playAudio });
    this.call = call;
    call.addEventListener('ended', () => { if (this.call === call) this.call = null; }, { once: true });
    call.join();
    return call;
  }

  emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }
}
