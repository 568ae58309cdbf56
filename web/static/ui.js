// Small DOM helpers and the words the page shows for states.

/** $ finds one element by id; a missing id is a bug in index.html. */
export function $(id) {
  const e = document.getElementById(id);
  if (!e) throw new Error(`index.html has no #${id}`);
  return e;
}

/** el makes an element with attributes and children (strings become text). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

const views = ['loading', 'offline', 'signin', 'rooms', 'prejoin', 'call'];

/** showView shows one view and moves focus to its heading for keyboard and screen reader users. */
export function showView(name, { focus = true } = {}) {
  for (const v of views) $(`view-${v}`).hidden = v !== name;
  document.body.dataset.view = name;
  if (focus) {
    const h = $(`view-${name}`).querySelector('h1');
    if (h) {
      h.tabIndex = -1;
      h.focus({ preventScroll: false });
    }
  }
}

/** announce says text to screen readers (polite, or assertive when urgent). */
export function announce(text, urgent = false) {
  const region = $(urgent ? 'live-urgent' : 'live');
  region.textContent = '';
  // A fresh text node makes screen readers repeat an identical message.
  requestAnimationFrame(() => { region.textContent = text; });
}

/** setError shows or hides (empty text) an error paragraph. */
export function setError(id, text) {
  const e = $(id);
  e.textContent = text || '';
  e.hidden = !text;
}

/** fieldError marks an input invalid with a message next to it. */
export function fieldError(input, errorId, text) {
  setError(errorId, text);
  if (text) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

/**
 * initials makes an avatar's letters from a name's words: the first and
 * the last word ("Ada Lovelace" is AL); what is in brackets describes the
 * person and is left out ("Ada (talks)" is A).
 */
export function initials(name) {
  const bare = String(name || '').replace(/\([^)]*\)|\[[^\]]*\]/g, ' ');
  let words = bare.split(/[^\p{L}\p{N}]+/u).filter(Boolean);
  if (!words.length) words = String(name || '').split(/[^\p{L}\p{N}]+/u).filter(Boolean);
  if (!words.length) return '?';
  const pick = words.length > 1 ? [words[0], words[words.length - 1]] : [words[0]];
  return pick.map((w) => Array.from(w)[0].toUpperCase()).join('');
}

/** hue picks a stable avatar colour for a user id (FNV-1a, so ids that differ in one digit differ in colour). */
export function hue(id) {
  let h = 0x811c9dc5;
  for (const c of String(id)) h = Math.imul(h ^ c.codePointAt(0), 0x01000193) >>> 0;
  return h % 360;
}

/** hubStateText describes the hub socket in words. */
export function hubStateText(state, secondsLeft) {
  switch (state) {
    case 'open':
      return 'Connected';
    case 'connecting':
      return 'Connecting…';
    case 'retrying':
      return `Reconnecting in ${secondsLeft}s…`;
    default:
      return 'Offline';
  }
}

/** callStateText describes the media connection in words. */
export function callStateText(state) {
  return {
    joining: 'Joining…',
    connecting: 'Connecting media…',
    connected: 'Connected',
    reconnecting: 'Reconnecting…',
    ended: 'Call ended',
    idle: 'Joining…',
  }[state] || '';
}

/** discordText describes the Discord side of the room in neutral words: what is happening and when it changes. */
export function discordText(discord, message) {
  switch (discord) {
    case 'connecting':
      return 'Connecting this room to Discord…';
    case 'connected':
      return 'Discord connected';
    case 'reconnecting':
      return 'Reconnecting to Discord. People in the browser hear each other meanwhile.';
    case 'unavailable':
      if (/another room|busy|in use/i.test(message || '')) {
        return "The bridge's Discord bot is in another room right now, so Discord members can't hear this one yet. "
          + 'It comes here when that room is free; people in the browser hear each other meanwhile.';
      }
      return `Discord is not connected to this room at the moment${message ? ` (${message})` : ''}. `
        + 'The bridge keeps trying; people in the browser hear each other meanwhile.';
    default:
      return message || '';
  }
}

/**
 * offeredAddrs lists the host:port (and protocol) of the ICE candidates in
 * an SDP: the addresses the bridge offers for media.
 */
export function offeredAddrs(sdp) {
  const out = [];
  for (const line of String(sdp || '').split(/\r?\n/)) {
    const m = /^a=candidate:\S+ \d+ (\S+) \d+ (\S+) (\d+) typ (\S+)/.exec(line);
    if (!m) continue;
    const host = m[2].includes(':') ? `[${m[2]}]` : m[2];
    const a = `${host}:${m[3]} (${m[1].toLowerCase()}${m[4] === 'relay' ? ', relay' : ''})`;
    if (!out.includes(a)) out.push(a);
  }
  return out;
}

// Tile layout: the gap between tiles and the aspect ratios a tile may take
// (the video inside keeps its own, letterboxed).
const tileGap = 10;
const minAspect = 3 / 4;
const maxAspect = 16 / 9;

/**
 * layoutTiles places n tiles in a stage of rect.w × rect.h: the grid whose
 * tiles come out largest, centred, the last row centred too. With
 * speaker >= 0 (speaker view) that tile takes the stage above a strip of
 * the others. Returns [{x, y, w, h}] in tile order.
 */
export function layoutTiles(rect, n, { speaker = -1 } = {}) {
  const W = Math.max(0, rect.w);
  const H = Math.max(0, rect.h);
  if (n === 0) return [];
  if (speaker >= 0 && n > 1) return speakerLayout(W, H, n, speaker);
  return gridLayout(0, 0, W, H, n);
}

function gridLayout(x0, y0, W, H, n) {
  let best = null;
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    let w = (W - (cols - 1) * tileGap) / cols;
    let h = (H - (rows - 1) * tileGap) / rows;
    if (w <= 0 || h <= 0) continue;
    if (w / h > maxAspect) w = h * maxAspect;
    if (w / h < minAspect) h = w / minAspect;
    if (!best || w * h > best.w * best.h) best = { cols, rows, w, h };
  }
  if (!best) return Array.from({ length: n }, () => ({ x: x0, y: y0, w: 0, h: 0 }));
  const { cols, rows, w, h } = best;
  const top = y0 + (H - (rows * h + (rows - 1) * tileGap)) / 2;
  const out = [];
  for (let i = 0; i < n; i++) {
    const row = Math.floor(i / cols);
    const inRow = row === rows - 1 ? n - row * cols : cols;
    const left = x0 + (W - (inRow * w + (inRow - 1) * tileGap)) / 2;
    out.push({ x: Math.round(left + (i % cols) * (w + tileGap)), y: Math.round(top + row * (h + tileGap)), w: Math.floor(w), h: Math.floor(h) });
  }
  return out;
}

function speakerLayout(W, H, n, speaker) {
  const others = n - 1;
  let sh = Math.min(160, Math.max(72, H * 0.2));
  let sw = sh * maxAspect;
  if (others * sw + (others - 1) * tileGap > W) {
    sw = (W - (others - 1) * tileGap) / others;
    sh = Math.max(48, Math.min(sh, sw / minAspect));
  }
  const mainH = H - sh - tileGap;
  const out = new Array(n);
  out[speaker] = { x: 0, y: 0, w: Math.floor(W), h: Math.floor(mainH) };
  const left = (W - (others * sw + (others - 1) * tileGap)) / 2;
  let k = 0;
  for (let i = 0; i < n; i++) {
    if (i === speaker) continue;
    out[i] = { x: Math.round(left + k * (sw + tileGap)), y: Math.round(mainH + tileGap), w: Math.floor(sw), h: Math.floor(sh) };
    k++;
  }
  return out;
}
