// The bridge's WebSocket (/api/ws): room events and call signaling share it.
// Protocol (hub/messages.go): the first message is {"type":"auth","token"};
// the hub answers {"v":1,"type":"ack","event":"auth.ok",...} or closes with
// 4401. Published events arrive as {"v":1,"type":"event","event","payload"}.
// Every other message (joined, offer, answer, candidate, participant,
// status, error, privacy) is signaling for the call.

/** Close codes of the hub (hub/messages.go). */
export const CloseUnauthorized = 4401;
export const CloseSlowClient = 4408;
export const CloseBadMessages = 4400;

/** Backoff tunables: the first retry waits firstDelayMs, doubling up to maxDelayMs. */
export const firstDelayMs = 1000;
export const maxDelayMs = 30000;
// A connection that stayed up this long resets the backoff.
const stableAfterMs = 10000;
// How long the socket may take to open and answer the auth message.
const connectTimeoutMs = 10000;

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
  /** @param {() => string} getToken returns the token to authenticate with. */
  constructor(getToken) {
    super();
    this.getToken = getToken;
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
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let ws;
    this.setState('connecting');
    try {
      ws = new WebSocket(`${scheme}//${location.host}/api/ws`);
    } catch (err) {
      this.scheduleRetry(String(err && err.message || err));
      return;
    }
    this.ws = ws;
    this.ack = null;
    this.connectTimer = setTimeout(() => {
      if (this.ws === ws && this.state === 'connecting') ws.close(4000, 'auth timeout');
    }, connectTimeoutMs);
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: 'auth', token: this.getToken() }));
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
