// One call in one room: the signaling of package media (media/signaling.go)
// over the hub socket, and the RTCPeerConnection behind it.
//
// The browser is the POLITE peer of perfect negotiation (WebRTC 1.0 §10.7,
// "Perfect negotiation example"): it offers whenever its own tracks change,
// and when the server's offer collides with its own it rolls its offer back
// and answers. The server (impolite) ignores a colliding browser offer.

import { getCamera, LevelMeter } from './media.js';

// Error codes (media/errors.go) after which the server has dropped this
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
   */
  constructor({ hub, roomId, local, camId, muted, me, audioCtx }) {
    super();
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
        trimHeaderExtensions(this.pc, this.pc.addTrack(track, this.local)); // renegotiates
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
    for (const t of this.local.getTracks()) trimHeaderExtensions(pc, pc.addTrack(t, this.local));
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

// trimHeaderExtensions stops offering the header extensions the server
// ignores on a new transceiver. Chromium gives a new m-section its default
// extension ids and keeps them even when the server already took one of
// those ids for another extension in the BUNDLE group (the server numbers
// transport-cc 5, Chromium's default for playout-delay), and then refuses
// its own offer. Offering only what the server uses avoids the clash.
function trimHeaderExtensions(pc, sender) {
  const t = pc.getTransceivers().find((x) => x.sender === sender);
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
