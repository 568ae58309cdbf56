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

/** initials makes an avatar's letters from a name. */
export function initials(name) {
  const parts = String(name || '?').split(/[^\p{L}\p{N}]+/u).filter(Boolean);
  const letters = parts.slice(0, 2).map((p) => Array.from(p)[0].toUpperCase());
  return letters.join('') || '?';
}

/** hue picks a stable avatar colour for a user id. */
export function hue(id) {
  let h = 0;
  for (const c of String(id)) h = (h * 31 + c.codePointAt(0)) % 360;
  return h;
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
  }[state] || '';
}

/** discordText describes the Discord side of the room in words. */
export function discordText(discord, message) {
  switch (discord) {
    case 'connecting':
      return 'Connecting to Discord…';
    case 'connected':
      return 'Discord connected';
    case 'reconnecting':
      return 'Reconnecting to Discord…';
    case 'unavailable':
      return `Discord unavailable${message ? `: ${message}` : ''}. People in the browser can still hear each other.`;
    default:
      return message || '';
  }
}
