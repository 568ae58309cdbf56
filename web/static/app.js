// The page: sign in, rooms, device check and the call, and what moves
// between them. State lives in S; the views in index.html are shown one at
// a time by showView.

import * as api from './api.js';
import { Hub, backoffDelay } from './hub.js';
import { Call, errorText } from './call.js';
import { getLocalMedia, listDevices, mediaErrorText, LevelMeter } from './media.js';
import {
  $, el, showView, announce, setError, fieldError, initials, hue,
  hubStateText, callStateText, discordText, layoutTiles, offeredAddrs,
} from './ui.js';

const tokenKey = 'bridge.token';
const devNameKey = 'bridge.devName';
// A dev token is renewed this long before it expires.
const renewBeforeMs = 60000;
// Room names and user limits as the REST API accepts them.
const maxRoomName = 100;
const maxUserLimit = 99;

const S = {
  token: sessionStorage.getItem(tokenKey) || '',
  devName: sessionStorage.getItem(devNameKey) || '',
  dev: false,
  // guilds are the Discord servers the token allows; guild the one shown.
  guilds: [],
  guild: '',
  me: { userId: '', name: '' },
  hub: null,
  rooms: new Map(), // channelId -> room with members [{userId,name}] and browsers Map(id -> name)
  view: 'loading',
  call: null,
  callRoom: null,
  prejoin: null, // {room, stream, meter, timer}
  audioCtx: null,
  offline: null, // {attempt, retryAt, timer, tick, retry}
  renewTimer: 0,
  hubTick: 0,
  // lastCall is the call to go back to after the bridge restarts:
  // {roomId, name, micId, camId, muted}; cleared when the person leaves.
  lastCall: null,
  resuming: false,
  lostAt: 0, // when the hub socket last went down (0: it is up)
  speakerView: false,
  speaker: '', // participant id of the tile speaker view enlarges
};

// ---------------------------------------------------------------- theme

const themeKey = 'bridge.theme';
const darkQuery = matchMedia('(prefers-color-scheme: dark)');

// applyTheme follows the system unless the toggle picked a theme.
function applyTheme() {
  const picked = localStorage.getItem(themeKey);
  const dark = picked ? picked === 'dark' : darkQuery.matches;
  if (picked) document.documentElement.dataset.theme = picked;
  else delete document.documentElement.dataset.theme;
  const b = $('theme-toggle');
  b.setAttribute('aria-pressed', String(dark));
}
darkQuery.addEventListener('change', applyTheme);
$('theme-toggle').addEventListener('click', () => {
  const dark = $('theme-toggle').getAttribute('aria-pressed') !== 'true';
  localStorage.setItem(themeKey, dark ? 'dark' : 'light');
  applyTheme();
});
applyTheme();

// ---------------------------------------------------------------- views

// sentence makes a server message read as a sentence next to a field.
function sentence(msg) {
  const m = String(msg || '').trim();
  if (!m) return '';
  return m[0].toUpperCase() + m.slice(1) + (/[.!?]$/.test(m) ? '' : '.');
}

function go(view, opts) {
  S.view = view;
  showView(view, opts);
}

// ------------------------------------------------- unreachable and retry

// offline shows "Can't reach the bridge, retrying in Ns…" and calls retry
// when the wait is over or the Retry button is pressed. wait is the delay
// before the next automatic try.
function offline(retry, attempt, wait, detail = '') {
  clearOffline();
  const o = { attempt, retry, retryAt: Date.now() + wait, timer: 0, tick: 0 };
  S.offline = o;
  const render = () => {
    const left = Math.max(0, Math.ceil((o.retryAt - Date.now()) / 1000));
    $('offline-text').textContent = left > 0
      ? `Can't reach the bridge, retrying in ${left}s…`
      : "Can't reach the bridge, retrying now…";
  };
  render();
  $('offline-detail').textContent = detail;
  $('view-offline').dataset.attempt = String(attempt);
  o.tick = setInterval(render, 250);
  o.timer = setTimeout(() => { clearOffline(); retry(); }, wait);
  if (S.view !== 'offline') {
    go('offline');
    announce("Can't reach the bridge. Retrying automatically.", true);
  }
}

function clearOffline() {
  if (!S.offline) return;
  clearTimeout(S.offline.timer);
  clearInterval(S.offline.tick);
  S.offline = null;
}

$('offline-retry').addEventListener('click', () => {
  const o = S.offline;
  if (!o) return;
  clearOffline();
  $('offline-text').textContent = "Can't reach the bridge, retrying now…";
  o.retry();
});

// ----------------------------------------------------------------- boot

// takeFragmentToken moves a #token=... from the address into sessionStorage
// and removes it from the address bar and history.
function takeFragmentToken() {
  const frag = new URLSearchParams(location.hash.replace(/^#/, ''));
  // An invite link (#room=<id>) opens that room's join screen after sign-in.
  const room = frag.get('room');
  if (room) {
    S.inviteRoom = room;
    history.replaceState(null, '', location.pathname + location.search);
  }
  const t = frag.get('token');
  if (t === null) return;
  history.replaceState(null, '', location.pathname + location.search);
  if (t.trim()) {
    S.token = t.trim();
    S.devName = '';
    sessionStorage.setItem(tokenKey, S.token);
    sessionStorage.removeItem(devNameKey);
  }
}

async function boot(attempt = 0) {
  try {
    S.dev = await api.devAuthAvailable();
  } catch (err) {
    if (err instanceof api.UnreachableError) {
      offline(() => boot(attempt + 1), attempt + 1, backoffDelay(attempt));
      return;
    }
    throw err;
  }
  if (S.token) {
    await enter(S.token);
  } else {
    signIn('');
  }
}

// signIn shows the sign-in view with an optional error in words, and the
// server's own words behind a "Details" disclosure.
function signIn(error, detail = '') {
  $('dev-form').hidden = !S.dev;
  $('token-form').hidden = S.dev;
  $('signin-error-text').textContent = error || '';
  $('signin-error').hidden = !error;
  $('signin-error-detail').textContent = detail;
  $('signin-error-more').hidden = !detail;
  $('who').hidden = true;
  $('signout').hidden = true;
  $('hub-state').hidden = true;
  go('signin', { focus: !error });
  const first = S.dev ? $('dev-name') : $('token-input');
  if (S.dev && S.devName) first.value = S.devName;
  first.focus();
  if (error) announce(error, true);
}

function forgetToken() {
  S.token = '';
  S.devName = '';
  clearTimeout(S.renewTimer);
  sessionStorage.removeItem(tokenKey);
  sessionStorage.removeItem(devNameKey);
}

// enter checks the token against the REST API and opens the rooms view.
async function enter(token, attempt = 0) {
  let rooms;
  try {
    rooms = await api.listRooms(token);
  } catch (err) {
    if (err instanceof api.UnreachableError) {
      offline(() => enter(token, attempt + 1), attempt + 1, backoffDelay(attempt));
      return;
    }
    if ((err.status === 401 || err.status === 403) && S.devName && await renewDevToken()) {
      await enter(S.token);
      return;
    }
    if (err.status === 401 || err.status === 403) {
      forgetToken();
      signIn('This sign-in link is not valid. Ask for a new one, or sign in again.', err.message);
      return;
    }
    forgetToken();
    signIn('Signing in failed.', err.message);
    return;
  }
  clearOffline();
  S.token = token;
  sessionStorage.setItem(tokenKey, token);
  setRooms(rooms);
  go('rooms');
  startHub();
  const invited = S.inviteRoom && S.rooms.get(S.inviteRoom);
  S.inviteRoom = '';
  if (invited) openPrejoin(invited);
}

$('dev-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const input = $('dev-name');
  const name = input.value.trim();
  $('signin-error').hidden = true;
  if (!name) {
    fieldError(input, 'dev-name-error', 'Enter a name.');
    input.focus();
    return;
  }
  fieldError(input, 'dev-name-error', '');
  const button = e.submitter || e.target.querySelector('button');
  button.disabled = true;
  try {
    const t = await api.devToken(name);
    S.devName = name;
    sessionStorage.setItem(devNameKey, name);
    scheduleRenew(t.expiresAt);
    await enter(t.token);
  } catch (err) {
    if (err instanceof api.UnreachableError) {
      offline(() => boot(1), 1, backoffDelay(0));
    } else if (err.field === 'name') {
      fieldError(input, 'dev-name-error', sentence(err.message));
      input.focus();
    } else {
      signIn('Signing in failed.', err.message);
    }
  } finally {
    button.disabled = false;
  }
});

$('token-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const input = $('token-input');
  const token = input.value.trim();
  if (!token) {
    fieldError(input, 'token-error', 'Paste your access token.');
    input.focus();
    return;
  }
  fieldError(input, 'token-error', '');
  input.value = '';
  await enter(token);
});

$('signout').addEventListener('click', () => {
  endCall();
  closePrejoin();
  stopHub();
  forgetToken();
  signIn('');
  announce('Signed out.');
});

// scheduleRenew gets a new dev token a minute before this one expires and
// hands it to the open socket, so a long call is not cut off.
function scheduleRenew(expiresAt) {
  clearTimeout(S.renewTimer);
  if (!expiresAt || !S.devName) return;
  const wait = Math.max(5000, expiresAt * 1000 - Date.now() - renewBeforeMs);
  S.renewTimer = setTimeout(async () => {
    try {
      const t = await api.devToken(S.devName);
      S.token = t.token;
      sessionStorage.setItem(tokenKey, t.token);
      if (S.hub) S.hub.reauth(t.token);
      scheduleRenew(t.expiresAt);
    } catch {
      scheduleRenew(Date.now() / 1000 + 90); // try again in half a minute
    }
  }, wait);
}

// renewDevToken gets a new dev token for the same name: after the bridge
// restarted with another signing key the old one is refused, and the page
// carries on without asking the person to sign in again.
async function renewDevToken() {
  if (!S.dev || !S.devName) return false;
  try {
    const t = await api.devToken(S.devName);
    S.token = t.token;
    sessionStorage.setItem(tokenKey, t.token);
    scheduleRenew(t.expiresAt);
    return true;
  } catch {
    return false;
  }
}

// ------------------------------------------------------------------ hub

function startHub() {
  stopHub();
  const hub = new Hub(() => S.token);
  S.hub = hub;
  hub.addEventListener('state', (e) => onHubState(e.detail));
  hub.addEventListener('ready', (e) => onHubReady(e.detail.ack));
  hub.addEventListener('event', (e) => onHubEvent(e.detail.event, e.detail.payload));
  hub.addEventListener('signal', (e) => { if (S.call) S.call.handleSignal(e.detail.msg); });
  hub.addEventListener('unauthorized', async (e) => {
    if (S.hub === hub && await renewDevToken()) {
      hub.start(); // the same socket object: the call keeps its hub
      return;
    }
    endCall();
    closePrejoin();
    stopHub();
    forgetToken();
    signIn('Your session expired or the bridge no longer accepts this sign-in. Sign in again.', e.detail.reason || '');
  });
  hub.start();
}

function stopHub() {
  clearInterval(S.hubTick);
  if (S.hub) S.hub.stop();
  S.hub = null;
}

// How long the page speaks of a restart before it says the bridge
// cannot be reached.
const unreachableAfterMs = 30000;

function onHubState({ state, retryAt, attempt }) {
  const pill = $('hub-state');
  // In a call the call's indicator says it all: one indicator, not two.
  pill.hidden = S.view === 'call';
  pill.dataset.state = state;
  clearInterval(S.hubTick);
  if (state === 'open') S.lostAt = 0;
  else if (state === 'retrying' && !S.lostAt) S.lostAt = Date.now();
  const render = () => {
    const left = retryAt ? Math.max(0, Math.ceil((retryAt - Date.now()) / 1000)) : 0;
    pill.textContent = hubStateText(state, left);
    renderConn();
    const inCall = (S.call && !S.call.ended) || S.resuming;
    if (!inCall || state !== 'retrying') return;
    // A bridge that stays away has stopped, not restarted: say so plainly
    // (the socket keeps trying in the background, and Try again tries now).
    if (Date.now() - S.lostAt >= unreachableAfterMs) {
      showCallNotice('The bridge cannot be reached. It may have stopped; this page keeps trying in the background.',
        { retry: true, retryLabel: 'Try again', urgent: true });
      $('view-call').dataset.unreachable = 'true';
    } else if (S.call && !S.call.ended) {
      showCallNotice(`Lost the connection to the bridge. Reconnecting in ${left}s…`, { retry: true, retryLabel: 'Reconnect now' });
    }
  };
  render();
  if (S.call && !S.call.ended) renderTiles();
  if (state === 'retrying') {
    S.hubTick = setInterval(render, 250);
    if (S.call && !S.call.ended) S.call.setState('reconnecting', 'Lost the connection to the bridge');
    // Out of a call, a socket that cannot come back means the bridge is gone.
    if (!S.call && attempt >= 2 && (S.view === 'rooms' || S.view === 'offline')) {
      offline(() => S.hub && S.hub.retryNow(), attempt, retryAt - Date.now());
    }
  }
}

async function onHubReady(ack) {
  S.me = { userId: ack.userId || '', name: ack.name || S.devName || '', admin: ack.admin === true };
  setGuilds(Array.isArray(ack.guilds) && ack.guilds.length ? ack.guilds : [ack.guildId].filter(Boolean),
    Array.isArray(ack.servers) ? ack.servers : []);
  $('who').textContent = S.me.name ? `Signed in as ${S.me.name}` : 'Signed in';
  $('who').hidden = false;
  $('signout').hidden = false;
  if (S.devName && ack.expiresAt) scheduleRenew(ack.expiresAt);
  if (S.view === 'offline') {
    clearOffline();
    go('rooms');
    announce('Connected to the bridge again.');
  }
  // Events may have been missed while the socket was down: read the list again.
  try {
    setRooms(await api.listRooms(S.token));
  } catch (err) {
    setError('rooms-error', `Could not load the rooms: ${err.message}`);
  }
  if (S.call && !S.call.ended) {
    hideCallNotice();
    S.call.rejoin();
  } else if (S.resuming) {
    resumeCall();
  }
}

function onHubEvent(event, p) {
  switch (event) {
    case 'room.created':
      if (!S.rooms.has(p.channelId)) {
        S.rooms.set(p.channelId, { ...p, members: [], browsers: new Map() });
        renderRooms();
      }
      break;
    case 'room.deleted': {
      const room = S.rooms.get(p.channelId);
      S.rooms.delete(p.channelId);
      renderRooms();
      if (S.call && S.call.roomId === p.channelId) {
        S.call.end('room_ended', errorText('room_ended'));
      } else if (S.prejoin && S.prejoin.room.channelId === p.channelId) {
        closePrejoin();
        go('rooms');
        setError('rooms-error', `The room "${room ? room.name : p.name}" was ended.`);
      }
      if (room && S.view === 'rooms') announce(`Room ${room.name} was ended.`);
      break;
    }
    case 'voice.joined':
    case 'voice.left': {
      for (const r of S.rooms.values()) r.members = r.members.filter((m) => m.userId !== p.userId);
      const r = S.rooms.get(p.channelId);
      if (r && event === 'voice.joined') r.members.push({ userId: p.userId, name: p.username || p.userId, bot: !!p.bot });
      if (S.call && S.call.roomId === p.channelId) renderTiles();
      renderRooms();
      if (S.call) renderTiles();
      break;
    }
    case 'participant.joined':
    case 'participant.left': {
      const r = S.rooms.get(p.roomId);
      const part = p.participant || {};
      if (r && part.kind === 'browser') {
        if (event === 'participant.joined') r.browsers.set(part.id, part.name || part.userId);
        else r.browsers.delete(part.id);
        renderRooms();
      }
      break;
    }
    default:
      break;
  }
}

// ---------------------------------------------------------------- rooms

// setGuilds takes the Discord servers the token allows (the ack's guilds,
// named by its servers): with several, the picker shows and the rooms are
// the chosen server's. A server whose name the bridge does not know yet is
// shown by its place and id.
function setGuilds(guilds, servers) {
  S.guilds = guilds;
  if (!guilds.includes(S.guild)) S.guild = guilds[0] || '';
  const names = new Map((servers || []).filter((s) => s && s.id && s.name).map((s) => [s.id, s.name]));
  const label = (g, i) => names.get(g) || `Server ${i + 1} (${g})`;
  const picker = $('guild-picker');
  picker.replaceChildren(...guilds.map((g, i) => el('option', { value: g, text: label(g, i) })));
  picker.value = S.guild;
  $('guild-field').hidden = guilds.length < 2;
}

$('guild-picker').addEventListener('change', (e) => {
  S.guild = e.target.value;
  renderRooms();
  const opt = e.target.selectedOptions[0];
  announce(`Showing the rooms of ${opt ? opt.textContent : 'server ' + (e.target.selectedIndex + 1)}.`);
});

// inGuild: with one server every room is shown; with several, the chosen one's.
function inGuild(r) {
  return !S.guilds || S.guilds.length < 2 || !r.guildId || r.guildId === S.guild;
}

function setRooms(list) {
  const old = S.rooms;
  S.rooms = new Map();
  for (const r of list) {
    const prev = old.get(r.channelId);
    // The snapshot lists the browsers in each call; events add to it later.
    const browsers = new Map((r.participants || []).map((b) => [b.id, b.name || b.userId]));
    S.rooms.set(r.channelId, { ...r, members: r.members || [], browsers: r.participants ? browsers : (prev ? prev.browsers : browsers) });
  }
  setError('rooms-error', '');
  renderRooms();
}

function renderRooms() {
  const list = $('room-list');
  const rooms = [...S.rooms.values()].filter(inGuild).sort((a, b) => a.name.localeCompare(b.name));
  $('rooms-empty').hidden = rooms.length > 0;
  $('rooms-count').textContent = rooms.length === 1 ? '1 room' : `${rooms.length} rooms`;
  const keep = new Set();
  for (const r of rooms) {
    keep.add(r.channelId);
    let li = list.querySelector(`li[data-room-id="${CSS.escape(r.channelId)}"]`);
    if (!li) {
      li = el('li', { class: 'room', 'data-testid': 'room-item', 'data-room-id': r.channelId });
      list.append(li);
    }
    // The bridge's own bot is the way in, not a person in the room.
    const members = r.members.filter((m) => !m.bot);
    const people = [...members.map((m) => m.name), ...r.browsers.values()];
    const count = people.length;
    const limit = r.userLimit > 0 ? `${count} / ${r.userLimit}` : `${count}`;
    const full = r.userLimit > 0 && r.members.length >= r.userLimit;
    li.replaceChildren(
      el('div', { class: 'room-main' },
        el('h2', { class: 'room-name', 'data-testid': 'room-name', text: r.name }),
        el('p', { class: 'room-people muted small', 'data-testid': 'room-people' },
          el('span', { class: 'count', 'aria-label': `${count} ${count === 1 ? 'person' : 'people'} in the room`, text: `${limit} ` }),
          people.length ? people.join(', ') : 'Nobody here yet')),
      el('div', { class: 'room-actions' },
        el('button', {
          type: 'button', class: 'btn btn-primary', 'data-testid': 'room-join', disabled: full,
          'aria-label': `Join ${r.name}`, text: full ? 'Full' : 'Join', onclick: () => openPrejoin(r),
        }),
        // End only for those the bridge lets end it: its creator, or an admin.
        r.canEnd || S.me.admin ? el('button', {
          type: 'button', class: 'btn btn-quiet', 'data-testid': 'room-end',
          'aria-label': `End ${r.name}`, text: 'End', onclick: () => confirmEnd(r),
        }) : null));
    list.append(li); // keeps the sorted order
  }
  for (const li of [...list.children]) if (!keep.has(li.dataset.roomId)) li.remove();
}

// A field's error goes as soon as its value is valid again.
$('create-name').addEventListener('input', (e) => {
  const name = e.target.value.trim();
  if (name && Array.from(name).length <= maxRoomName) fieldError(e.target, 'create-name-error', '');
});
$('create-limit').addEventListener('input', (e) => {
  const t = e.target.value.trim();
  const n = t === '' ? 0 : Number(t);
  if (Number.isInteger(n) && n >= 0 && n <= maxUserLimit) fieldError(e.target, 'create-limit-error', '');
});

$('create-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const nameInput = $('create-name');
  const limitInput = $('create-limit');
  const name = nameInput.value.trim();
  const limitText = limitInput.value.trim();
  const limit = limitText === '' ? 0 : Number(limitText);
  fieldError(nameInput, 'create-name-error', '');
  fieldError(limitInput, 'create-limit-error', '');
  setError('create-error', '');
  let bad = false;
  if (!name) {
    fieldError(nameInput, 'create-name-error', 'Enter a name for the room.');
    bad = true;
  } else if (Array.from(name).length > maxRoomName) {
    fieldError(nameInput, 'create-name-error', `Use at most ${maxRoomName} characters.`);
    bad = true;
  }
  if (!Number.isInteger(limit) || limit < 0 || limit > maxUserLimit) {
    fieldError(limitInput, 'create-limit-error', `Enter a whole number from 0 to ${maxUserLimit}.`);
    bad = true;
  }
  if (bad) {
    (nameInput.getAttribute('aria-invalid') ? nameInput : limitInput).focus();
    return;
  }
  const button = e.submitter || e.target.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const room = await api.createRoom(S.token, name, limit, '', S.guilds && S.guilds.length > 1 ? S.guild : '');
    if (room && room.channelId) {
      // The room.created event may have come first, without canEnd.
      const prev = S.rooms.get(room.channelId);
      S.rooms.set(room.channelId, prev ? { ...prev, canEnd: room.canEnd } : { ...room, members: [], browsers: new Map() });
      renderRooms();
    }
    nameInput.value = '';
    limitInput.value = '0';
    announce(`Room ${name} created.`);
  } catch (err) {
    if (err.status === 401) {
      signIn('Your session expired or the token was refused. Sign in again.');
      return;
    }
    if (err.field === 'name') {
      fieldError(nameInput, 'create-name-error', sentence(err.message));
      nameInput.focus();
    } else if (err.field === 'userLimit') {
      fieldError(limitInput, 'create-limit-error', sentence(err.message));
      limitInput.focus();
    } else {
      setError('create-error', err instanceof api.UnreachableError
        ? "Can't reach the bridge. Check the connection and try again."
        : `Could not create the room: ${err.message}`);
    }
  } finally {
    button.disabled = false;
  }
});

// confirmEnd asks before ending a room for everyone.
function confirmEnd(room) {
  const dialog = $('confirm');
  $('confirm-title').textContent = `End "${room.name}"?`;
  $('confirm-text').textContent = 'Everyone in the room, in the browser and on Discord, will be disconnected and the room deleted.';
  dialog.querySelector('[data-testid=confirm-ok]').textContent = 'End room';
  const opener = document.activeElement;
  dialog.returnValue = '';
  dialog.addEventListener('close', async () => {
    if (opener && opener.isConnected) opener.focus();
    if (dialog.returnValue !== 'ok') return;
    try {
      await api.endRoom(S.token, room.channelId);
      S.rooms.delete(room.channelId);
      renderRooms();
      announce(`Room ${room.name} ended.`);
      if (S.call && S.call.roomId === room.channelId) {
        S.lastCall = null;
        S.call.end('room_ended', 'You ended this room for everyone.');
      } else {
        $('create-name').focus();
      }
    } catch (err) {
      const text = err.status === 403 ? `Only the room's creator or an admin can end "${room.name}".` : `Could not end "${room.name}": ${err.message}`;
      if (S.view === 'call') showCallNotice(text);
      else setError('rooms-error', text);
    }
  }, { once: true });
  dialog.showModal();
}

// -------------------------------------------------------- device check

function audioCtx() {
  if (!S.audioCtx) S.audioCtx = new AudioContext();
  if (S.audioCtx.state === 'suspended') S.audioCtx.resume();
  return S.audioCtx;
}

async function openPrejoin(room) {
  closePrejoin();
  S.prejoin = { room, stream: null, meter: null, timer: 0, notes: { mic: '', cam: '' } };
  $('prejoin-room').textContent = room.name;
  setError('prejoin-error', '');
  $('prejoin-join').disabled = true;
  go('prejoin');
  audioCtx();
  await previewDevices('', '');
}

// openDevices opens the chosen microphone and camera; when the pair fails
// it tries each alone, so a blocked camera still joins with audio and a
// missing microphone still joins with video. notes says what is missing
// and why: {mic, cam} each '', 'off', 'blocked', 'missing' or 'failed'.
async function openDevices(micId, camId) {
  const why = (err) => {
    const n = err && err.name;
    if (n === 'NotAllowedError' || n === 'SecurityError') return 'blocked';
    if (n === 'NotFoundError' || n === 'OverconstrainedError') return 'missing';
    return 'failed';
  };
  const notes = { mic: micId === 'none' ? 'off' : '', cam: camId === 'none' ? 'off' : '' };
  try {
    return { stream: await getLocalMedia(micId, camId), notes, error: null };
  } catch (err) {
    if (micId === 'none' || camId === 'none') {
      notes[micId === 'none' ? 'cam' : 'mic'] = why(err);
      return { stream: new MediaStream(), notes, error: err };
    }
    let first = err;
    try {
      const stream = await getLocalMedia(micId, 'none');
      notes.cam = why(err);
      return { stream, notes, error: null };
    } catch (micErr) {
      first = micErr;
      notes.mic = why(micErr);
    }
    try {
      const stream = await getLocalMedia('none', camId);
      return { stream, notes, error: null };
    } catch (camErr) {
      notes.cam = why(camErr);
    }
    return { stream: new MediaStream(), notes, error: first };
  }
}

// devicesText says in words which device the call goes without.
function devicesText(notes, error) {
  const parts = [];
  if (notes.cam === 'blocked') parts.push('Camera blocked: the browser did not allow it, so you join with audio only. Allow the camera for this site to turn it on.');
  else if (notes.cam === 'missing') parts.push('No camera found: you join with audio only.');
  else if (notes.cam === 'failed') parts.push('The camera could not start (another program may use it): you join with audio only.');
  if (notes.mic === 'blocked') parts.push('Microphone blocked: the browser did not allow it, so others will not hear you. Allow the microphone for this site to talk.');
  else if (notes.mic === 'missing') parts.push('No microphone found: you join with your camera, and others will not hear you.');
  else if (notes.mic === 'failed') parts.push('The microphone could not start (another program may use it): others will not hear you.');
  if (error && !parts.length) parts.push(mediaErrorText(error));
  return parts.join(' ');
}

// previewDevices opens the chosen devices, fills the pickers (labels are
// only known after permission) and shows the preview and level.
async function previewDevices(micId, camId) {
  const pj = S.prejoin;
  if (!pj) return;
  stopPreview();
  const { stream, notes, error } = await openDevices(micId, camId);
  if (S.prejoin !== pj) {
    for (const t of stream.getTracks()) t.stop();
    return;
  }
  pj.stream = stream;
  pj.notes = notes;
  const noDevice = !stream.getTracks().length && micId !== 'none' && camId !== 'none';
  setError('prejoin-error', noDevice ? `${mediaErrorText(error)} You can still join to listen and watch.` : '');
  setNote('prejoin-note', noDevice ? '' : devicesText(notes, error));
  let devices = { mics: [], cams: [] };
  try {
    devices = await listDevices();
  } catch {
    // Pickers stay with the defaults.
  }
  const mic = pj.stream.getAudioTracks()[0];
  const cam = pj.stream.getVideoTracks()[0];
  fillPicker($('mic-select'), devices.mics, mic ? mic.getSettings().deviceId : 'none', 'microphone');
  fillPicker($('cam-select'), devices.cams, cam ? cam.getSettings().deviceId : 'none', 'camera');
  const video = $('prejoin-video');
  video.srcObject = cam ? new MediaStream([cam]) : null;
  video.hidden = !cam;
  $('prejoin-video-off').hidden = !!cam;
  $('prejoin-video-off').textContent = notes.cam === 'blocked' ? 'Camera blocked' : 'Camera off';
  $('prejoin-muted').disabled = !mic;
  if (mic) {
    pj.meter = new LevelMeter(audioCtx(), mic);
    const bar = $('prejoin-meter');
    pj.timer = setInterval(() => {
      const v = Math.min(100, Math.round(pj.meter.level() * 400));
      bar.firstElementChild.style.setProperty('width', `${v}%`);
      bar.setAttribute('aria-valuenow', String(v));
    }, 100);
  }
  $('prejoin-join').disabled = false;
}

// setNote shows or hides an informational line.
function setNote(id, text) {
  $(id).textContent = text || '';
  $(id).hidden = !text;
}

function fillPicker(select, devices, current, what) {
  const opts = devices.map((d, i) => el('option', { value: d.deviceId, text: d.label || `${what} ${i + 1}` }));
  opts.push(el('option', { value: 'none', text: `No ${what}` }));
  select.replaceChildren(...opts);
  select.value = devices.some((d) => d.deviceId === current) ? current : (current === 'none' ? 'none' : (devices[0]?.deviceId || 'none'));
}

function stopPreview() {
  const pj = S.prejoin;
  if (!pj) return;
  clearInterval(pj.timer);
  if (pj.meter) pj.meter.close();
  if (pj.stream) for (const t of pj.stream.getTracks()) t.stop();
  pj.stream = null;
  pj.meter = null;
}

function closePrejoin() {
  stopPreview();
  S.prejoin = null;
  $('prejoin-video').srcObject = null;
}

for (const id of ['mic-select', 'cam-select']) {
  $(id).addEventListener('change', () => previewDevices($('mic-select').value, $('cam-select').value));
}

$('prejoin-back').addEventListener('click', () => {
  closePrejoin();
  go('rooms');
});

$('prejoin-join').addEventListener('click', () => {
  const pj = S.prejoin;
  if (!pj || !pj.stream) return;
  clearInterval(pj.timer);
  if (pj.meter) pj.meter.close();
  const stream = pj.stream;
  pj.stream = null; // the call owns it now
  const camId = stream.getVideoTracks().length ? $('cam-select').value : 'none';
  S.prejoin = null;
  startCall(pj.room, stream, camId === 'none' ? '' : camId, $('prejoin-muted').checked, pj.notes);
});

// ----------------------------------------------------------------- call

function startCall(room, stream, camId, muted, notes = { mic: '', cam: '' }) {
  endCall();
  S.callRoom = room;
  // End room only for those the bridge lets end it: its creator, or an admin.
  const known = S.rooms.get(room.channelId);
  $('btn-end').hidden = !((known && known.canEnd) || room.canEnd || (S.me && S.me.admin));
  const mic = stream.getAudioTracks()[0];
  S.lastCall = {
    roomId: room.channelId, name: room.name, muted, notes,
    micId: mic ? mic.getSettings().deviceId || '' : 'none', camId: camId || 'none',
  };
  S.resuming = false;
  const call = new Call({
    hub: S.hub, roomId: room.channelId, local: stream, camId, muted: muted || !mic, me: S.me, audioCtx: audioCtx(),
  });
  S.call = call;
  S.speaker = '';
  $('call-title').textContent = room.name;
  $('tiles').replaceChildren();
  $('privacy').hidden = true;
  closePrivacy();
  $('discord-state').hidden = true;
  $('call-offers').hidden = true;
  hideCallNotice();
  $('call-controls').hidden = false;
  $('hub-state').hidden = true;
  setControls(true);
  const note = devicesText(notes, null);
  if (note) showCallNotice(note, { info: true });
  call.addEventListener('state', (e) => {
    renderConn();
    showOffers();
    if (e.detail.state === 'connected') {
      if (!note || $('call-notice-text').textContent !== note) hideCallNotice();
      announce(`Connected to ${room.name}.`);
    }
  });
  call.addEventListener('participants', () => renderTiles());
  call.addEventListener('discord', (e) => {
    const d = $('discord-state');
    const text = e.detail.discord === 'connected' ? '' : discordText(e.detail.discord, e.detail.message);
    d.hidden = !text;
    d.dataset.state = e.detail.discord;
    d.textContent = text;
    if (text) announce(text);
  });
  call.addEventListener('privacy', (e) => {
    $('privacy').hidden = !e.detail.code;
    // Shown the way Discord shows it: six groups of five digits.
    $('privacy-code').textContent = (e.detail.code.match(/.{1,5}/g) || []).join(' ');
  });
  call.addEventListener('path', (e) => {
    const p = $('call-path');
    p.hidden = !e.detail.path;
    p.textContent = `Media: ${e.detail.path}`;
  });
  call.addEventListener('notice', (e) => showCallNotice(e.detail.message, { retry: false }));
  call.addEventListener('ended', (e) => onCallEnded(e.detail));
  go('call');
  call.join();
  renderTiles();
  renderConn();
}

function endCall() {
  if (S.call) {
    S.call.leave();
    S.call = null;
  }
  $('tiles').replaceChildren();
}

// renderConn is the one connection indicator of the call: the socket to
// the bridge and the media connection, in one word.
function renderConn() {
  const pill = $('call-state');
  const call = S.call;
  if (!call) return;
  let state = call.ended ? 'ended' : call.state;
  if (!call.ended && S.hub && S.hub.state === 'retrying') state = 'reconnecting';
  pill.dataset.state = state;
  pill.textContent = callStateText(state);
}

// showOffers says which addresses the bridge offers for media (its ICE
// candidates in the answer), so a failed connection can be told apart:
// an address the browser cannot reach points at ICE_PUBLIC_IP.
function showOffers() {
  const call = S.call;
  const sdp = call && call.pc && call.pc.remoteDescription ? call.pc.remoteDescription.sdp : '';
  const addrs = offeredAddrs(sdp);
  if (!addrs.length) return;
  const o = $('call-offers');
  o.textContent = `Bridge offers ${addrs.join(', ')}`;
  o.hidden = false;
  S.offers = addrs;
}

// resumeCall goes back into the call the bridge dropped when it restarted:
// the same room (by id, or by name when the restarted bridge made it anew),
// the same devices.
async function resumeCall() {
  const last = S.lastCall;
  S.resuming = false;
  if (!last || !S.hub || S.hub.state !== 'open') return;
  const room = S.rooms.get(last.roomId) || [...S.rooms.values()].find((r) => r.name === last.name);
  if (!room) {
    showCallNotice(`The room "${last.name}" is gone since the bridge restarted.`, { back: true });
    return;
  }
  showCallNotice('The bridge restarted. Getting you back into the call…', { info: true });
  const { stream } = await openDevices(last.micId, last.camId);
  if (S.call && !S.call.ended) {
    for (const t of stream.getTracks()) t.stop();
    return;
  }
  startCall(room, stream, last.camId === 'none' ? '' : last.camId, last.muted, last.notes);
}

function onCallEnded({ code, message, retry }) {
  setControls(false);
  $('call-controls').hidden = true;
  $('discord-state').hidden = true;
  $('privacy').hidden = true;
  closePrivacy();
  $('alone').hidden = true;
  $('tiles').replaceChildren();
  renderConn();
  if (code === 'left') return;
  // A restart of the bridge: its socket closes ('closed'), or the call
  // comes back to a room the restarted bridge no longer knows.
  if (S.lastCall && (code === 'closed' || code === 'unknown_room' || code === 'not_joined')) {
    showCallNotice(code === 'closed'
      ? 'The bridge is restarting. You will be back in the call as soon as it is up again.'
      : 'The bridge restarted. Getting you back into the call…', { info: true });
    S.resuming = true;
    if (S.hub && S.hub.state === 'open') {
      api.listRooms(S.token).then((rooms) => { setRooms(rooms); resumeCall(); }).catch(() => resumeCall());
    }
    return;
  }
  if (code === 'room_ended') S.lastCall = null;
  let text = message;
  let detail = '';
  if (code === 'ice_failed') {
    const offers = S.offers && S.offers.length ? S.offers.join(', ') : 'no address';
    text = `${message} The bridge offered ${offers}; if your browser cannot reach that, the operator sets ICE_PUBLIC_IP to the address browsers reach the bridge at.`;
  } else if (code === 'internal' || code === 'bad_sdp') {
    text = 'The call could not be set up.';
    detail = message;
  }
  showCallNotice(text, { retry, back: true, urgent: true, detail });
  $('view-call').dataset.ended = code;
}

function showCallNotice(text, { retry = false, back = false, urgent = false, retryLabel = 'Try again', info = false, detail = '' } = {}) {
  const n = $('call-notice');
  const changed = n.hidden || $('call-notice-text').textContent !== text;
  delete $('view-call').dataset.unreachable;
  n.hidden = false;
  n.className = `notice ${back ? 'notice-error' : info ? 'notice-info' : 'notice-warn'}`;
  $('call-notice-text').textContent = text;
  $('call-notice-detail').textContent = detail;
  $('call-notice-more').hidden = !detail;
  $('call-retry').hidden = !retry;
  $('call-retry').textContent = retryLabel;
  $('call-back').hidden = !back;
  if (changed && !/in \d+s…$/.test(text)) announce(text, urgent);
  if (back && changed) ($('call-retry').hidden ? $('call-back') : $('call-retry')).focus();
  layout();
}

function hideCallNotice() {
  $('call-notice').hidden = true;
  delete $('view-call').dataset.ended;
  delete $('view-call').dataset.unreachable;
  layout();
}

$('call-retry').addEventListener('click', async () => {
  const call = S.call;
  if (S.hub && S.hub.state === 'retrying') {
    S.hub.retryNow();
    return;
  }
  // Already trying to reach the bridge, to go back into the call: wait.
  if (S.hub && S.hub.state === 'connecting' && (S.resuming || (call && !call.ended))) return;
  if (call && !call.ended) {
    hideCallNotice();
    call.rejoin();
    return;
  }
  // The call ended: go through the device check again for the same room.
  const room = S.callRoom && S.rooms.get(S.callRoom.channelId);
  S.call = null;
  if (room) openPrejoin(room);
  else go('rooms');
});

$('call-back').addEventListener('click', () => {
  S.call = null;
  S.lastCall = null;
  hideCallNotice();
  go('rooms');
});

function setControls(on) {
  for (const id of ['btn-mute', 'btn-camera', 'btn-leave', 'btn-end']) $(id).disabled = !on;
  if (!on) return;
  const call = S.call;
  updateMuteButton(call.muted);
  updateCameraButton(call.cameraOn);
  $('btn-camera').disabled = !call.camId && !call.cameraOn;
  // Without a microphone there is nothing to mute.
  const hasMic = call.local.getAudioTracks().length > 0;
  $('btn-mute').disabled = !hasMic;
  if (!hasMic) $('btn-mute').querySelector('.label').textContent = 'No microphone';
}

// The buttons keep one label and say their state with aria-pressed only:
// "Mute, pressed" is muted, "Camera, pressed" would be ambiguous, so the
// camera button is "Turn camera off/on" with no pressed state.
function updateMuteButton(muted) {
  const b = $('btn-mute');
  b.setAttribute('aria-pressed', String(muted));
  b.querySelector('.label').textContent = 'Mute';
  b.querySelector('.icon').className = `icon ${muted ? 'icon-mic-off' : 'icon-mic'}`;
  b.classList.toggle('off', muted);
}

function updateCameraButton(on) {
  const b = $('btn-camera');
  b.removeAttribute('aria-pressed');
  b.querySelector('.label').textContent = on ? 'Turn camera off' : 'Turn camera on';
  b.querySelector('.icon').className = `icon ${on ? 'icon-cam' : 'icon-cam-off'}`;
  b.classList.toggle('off', !on);
}

$('btn-mute').addEventListener('click', () => {
  if (!S.call) return;
  S.call.setMuted(!S.call.muted);
  updateMuteButton(S.call.muted);
  if (S.lastCall) S.lastCall.muted = S.call.muted;
  announce(S.call.muted ? 'Microphone muted.' : 'Microphone on.');
});

$('btn-camera').addEventListener('click', async () => {
  const call = S.call;
  if (!call) return;
  const b = $('btn-camera');
  b.disabled = true;
  try {
    await call.setCamera(!call.cameraOn);
    announce(call.cameraOn ? 'Camera on.' : 'Camera off.');
  } catch (err) {
    showCallNotice(mediaErrorText(err));
  } finally {
    b.disabled = call.ended;
    updateCameraButton(call.cameraOn);
  }
});

$('btn-leave').addEventListener('click', () => {
  S.lastCall = null;
  endCall();
  go('rooms');
  announce('You left the call.');
});

// End room: the bridge decides who may (the hub answers 403 otherwise).
$('btn-end').addEventListener('click', () => {
  const room = S.callRoom;
  if (room) confirmEnd(room);
});

$('btn-layout').addEventListener('click', () => {
  S.speakerView = !S.speakerView;
  $('btn-layout').setAttribute('aria-pressed', String(S.speakerView));
  layout();
  announce(S.speakerView ? 'Speaker view: the person talking is shown large.' : 'Grid view.');
});

// ------------------------------------------------------- privacy popover

function closePrivacy() {
  $('privacy-pop').hidden = true;
  $('privacy').setAttribute('aria-expanded', 'false');
}

$('privacy').addEventListener('click', () => {
  const open = $('privacy-pop').hidden;
  $('privacy-pop').hidden = !open;
  $('privacy').setAttribute('aria-expanded', String(open));
  if (open) $('privacy-copy').focus();
});

$('privacy-copy').addEventListener('click', async () => {
  const code = $('privacy-code').textContent;
  try {
    await navigator.clipboard.writeText(code);
    $('privacy-copy').textContent = 'Copied';
    announce('Privacy code copied.');
  } catch {
    $('privacy-copy').textContent = 'Select the code to copy it';
  }
  setTimeout(() => { $('privacy-copy').textContent = 'Copy code'; }, 2000);
});

document.addEventListener('keydown', (e) => {
  if (e.key !== 'Escape') return;
  if (!$('privacy-pop').hidden) {
    closePrivacy();
    $('privacy').focus();
  }
  for (const b of document.querySelectorAll('.tile-menu-btn[aria-expanded=true]')) {
    b.setAttribute('aria-expanded', 'false');
    b.nextElementSibling.hidden = true;
    b.focus();
  }
});

document.addEventListener('click', (e) => {
  if (!$('privacy-pop').hidden && !e.target.closest('.pop-wrap')) closePrivacy();
  for (const b of document.querySelectorAll('.tile-menu-btn[aria-expanded=true]')) {
    if (!b.parentElement.contains(e.target)) {
      b.setAttribute('aria-expanded', 'false');
      b.nextElementSibling.hidden = true;
    }
  }
});

// ------------------------------------------------------------ invite link

// The link opens the room's join screen (#room=<id>) after sign-in.
function inviteLink(room) {
  return `${location.origin}${location.pathname}#room=${encodeURIComponent(room.channelId)}`;
}

$('copy-invite').addEventListener('click', async () => {
  const room = S.callRoom;
  if (!room) return;
  const b = $('copy-invite');
  try {
    await navigator.clipboard.writeText(inviteLink(room));
    b.textContent = 'Link copied';
    announce('Invite link copied.');
  } catch {
    b.textContent = inviteLink(room);
  }
  setTimeout(() => { b.textContent = 'Copy invite link'; }, 2500);
});

// ------------------------------------------------------------------ tiles

// tileModels lists the people of the call: me, then media's participants,
// then Discord members of the channel media has no track for yet.
function tileModels() {
  const call = S.call;
  if (!call || call.ended) return [];
  const out = [{
    id: call.selfId || 'self', self: true, name: S.me.name || 'You', kind: 'browser',
    muted: call.muted, camera: call.cameraOn, speaking: call.speaking('self'),
    stream: call.local, userId: S.me.userId, noMic: call.local.getAudioTracks().length === 0,
  }];
  // Without the bridge nobody's speaking is known: no ring stays lit.
  const live = !S.hub || S.hub.state === 'open';
  const seen = new Set();
  const ps = [...call.participants.values()].sort((a, b) => (a.kind === b.kind ? a.name.localeCompare(b.name) : a.kind === 'browser' ? -1 : 1));
  for (const p of ps) {
    seen.add(p.userId);
    const stream = call.streamFor(p);
    const key = stream ? stream.id : p.id;
    out.push({
      id: p.id, name: p.name || p.userId, kind: p.kind, muted: p.muted,
      camera: p.kind === 'discord' ? true : p.camera, speaking: live && (!!p.speaking || call.speaking(key)),
      stream, userId: p.userId,
    });
  }
  const room = S.rooms.get(call.roomId);
  for (const m of room ? room.members : []) {
    // The bridge's own bot is the way in, not a person in the call.
    if (seen.has(m.userId) || m.bot) continue;
    out.push({ id: `member-${m.userId}`, name: m.name, kind: 'discord', muted: false, camera: false, speaking: false, stream: null, userId: m.userId });
  }
  return out;
}

function renderTiles() {
  const list = $('tiles');
  const models = tileModels();
  const keep = new Set();
  list.dataset.count = String(models.length);
  for (const m of models) {
    keep.add(m.id);
    let li = [...list.children].find((c) => c.dataset.participantId === m.id);
    if (!li) {
      li = $('tile-template').content.firstElementChild.cloneNode(true);
      li.dataset.participantId = m.id;
      const slider = li.querySelector('input[type=range]');
      const n = list.children.length + Math.floor(Math.random() * 1e9);
      slider.id = `vol-${n}`;
      li.querySelector('.tile-volume label').htmlFor = slider.id;
      const menuBtn = li.querySelector('.tile-menu-btn');
      menuBtn.setAttribute('aria-controls', `volpop-${n}`);
      li.querySelector('.tile-volume').id = `volpop-${n}`;
      menuBtn.addEventListener('click', () => {
        const open = menuBtn.getAttribute('aria-expanded') !== 'true';
        menuBtn.setAttribute('aria-expanded', String(open));
        menuBtn.nextElementSibling.hidden = !open;
        if (open) slider.focus();
      });
      slider.addEventListener('input', () => {
        if (S.call) S.call.setVolume(m.id, Number(slider.value) / 100);
        li.querySelector('audio').volume = Number(slider.value) / 100;
        slider.setAttribute('aria-valuetext', `${slider.value}%`);
      });
    }
    list.append(li);
    updateTile(li, m);
  }
  for (const li of [...list.children]) {
    if (!keep.has(li.dataset.participantId)) {
      for (const media of li.querySelectorAll('audio,video')) media.srcObject = null;
      li.remove();
    }
  }
  // Speaker view follows the last person heard (not oneself).
  const talking = models.find((m) => m.speaking && !m.muted && !m.self);
  if (talking) S.speaker = talking.id;
  if (!models.some((m) => m.id === S.speaker)) S.speaker = '';
  $('alone').hidden = models.length !== 1 || !S.call || S.call.state !== 'connected';
  layout();
}

function updateTile(li, m) {
  li.dataset.kind = m.kind;
  li.dataset.self = String(!!m.self);
  li.dataset.speaking = String(!!m.speaking && !m.muted);
  li.dataset.muted = String(!!m.muted);
  li.dataset.camera = String(!!m.camera);
  li.dataset.userId = m.userId || '';
  if (m.stream) li.dataset.streamId = m.stream.id;
  const name = m.self ? `${m.name} (you)` : m.name;
  li.querySelector('.tile-name').textContent = name;
  const badges = [];
  const said = [];
  if (m.kind === 'discord') {
    badges.push(el('span', { class: 'badge badge-discord', text: 'Discord' }));
    said.push('on Discord');
  }
  if (m.muted || m.noMic) {
    const what = m.noMic ? 'No microphone' : 'Muted';
    badges.push(el('span', { class: 'badge badge-muted', title: what },
      el('span', { class: 'icon icon-mic-off', 'aria-hidden': 'true' }), el('span', { class: 'sr-only', text: what })));
    said.push(what.toLowerCase());
  }
  if (m.self && S.lastCall && S.lastCall.notes.cam === 'blocked') {
    badges.push(el('span', { class: 'badge badge-camoff', title: 'Camera blocked' },
      el('span', { class: 'icon icon-cam-off', 'aria-hidden': 'true' }), el('span', { class: 'sr-only', text: 'Camera blocked' })));
    said.push('camera blocked');
  } else if (m.kind === 'browser' && !m.camera) {
    said.push('camera off');
  }
  if (m.speaking && !m.muted) said.push('speaking');
  li.querySelector('.tile-tags').replaceChildren(...badges);
  li.setAttribute('aria-label', [name, ...said].join(', '));
  const avatar = li.querySelector('.avatar');
  avatar.textContent = initials(m.name);
  avatar.style.setProperty('--hue', String(hue(m.userId || m.id)));

  const video = li.querySelector('video');
  const hasVideo = !!m.stream && m.stream.getVideoTracks().some((t) => t.readyState === 'live' && !t.muted) && m.camera;
  if (hasVideo) {
    if (video.srcObject !== m.stream) video.srcObject = m.stream;
  } else if (video.srcObject) {
    video.srcObject = null;
  }
  video.hidden = !hasVideo;
  li.dataset.video = String(hasVideo);
  video.setAttribute('aria-label', `Video of ${m.name}`);

  const audio = li.querySelector('audio');
  const menu = li.querySelector('.tile-menu');
  // Volume only for those one hears: not oneself, not a video-only member.
  // A track that never carried a packet stays muted (a camera-only member).
  const hasAudio = !m.self && !!m.stream && m.stream.getAudioTracks().some((t) => t.readyState === 'live' && !t.muted);
  if (hasAudio) {
    if (audio.srcObject !== m.stream) {
      audio.srcObject = m.stream;
      audio.volume = S.call ? S.call.volume(m.id) : 1;
      audio.play().catch(() => { /* autoplay blocked until a click; the join click normally allows it */ });
    }
  } else if (audio.srcObject) {
    audio.srcObject = null;
  }
  menu.hidden = !hasAudio;
  menu.querySelector('.tile-menu-btn').setAttribute('aria-label', `Volume of ${m.name}`);
  menu.querySelector('label').textContent = `Volume of ${m.name}`;
}

// layout places the tiles in the stage: the grid that makes them largest
// for this window and this many people, or in speaker view the person
// talking large with the others in a strip.
function layout() {
  const stage = $('stage');
  const top = document.querySelector('.topbar');
  const topH = top ? `${top.offsetHeight}px` : '';
  if (topH && document.documentElement.style.getPropertyValue('--topbar-h') !== topH) {
    document.documentElement.style.setProperty('--topbar-h', topH);
  }
  if (S.view !== 'call') return;
  const tiles = [...$('tiles').children];
  const rect = { w: stage.clientWidth, h: stage.clientHeight };
  const main = S.speakerView ? tiles.findIndex((li) => li.dataset.participantId === S.speaker) : -1;
  const boxes = layoutTiles(rect, tiles.length, { speaker: S.speakerView ? Math.max(0, main) : -1 });
  tiles.forEach((li, i) => {
    const b = boxes[i];
    li.style.setProperty('left', `${b.x}px`);
    li.style.setProperty('top', `${b.y}px`);
    li.style.setProperty('width', `${b.w}px`);
    li.style.setProperty('height', `${b.h}px`);
    li.dataset.main = String(S.speakerView && i === Math.max(0, main));
  });
  // What the tiles were placed for: tests wait for it to match the stage.
  stage.dataset.layout = `${rect.w}x${rect.h}:${tiles.length}:${S.speakerView ? S.speaker : 'grid'}`;
}

// Placed in the next frame: laying out inside the observer's callback
// would resize what it observes.
let layoutFrame = 0;
new ResizeObserver(() => {
  cancelAnimationFrame(layoutFrame);
  layoutFrame = requestAnimationFrame(() => layout());
}).observe($('stage'));

// ---------------------------------------------------------- debug hook

// Problems the page itself ran into (script errors, refused promises,
// Content-Security-Policy violations), kept for window.__bridge.
const pageErrors = [];
function pageError(text) {
  if (pageErrors.length < 50) pageErrors.push(String(text).slice(0, 300));
}
window.addEventListener('error', (e) => pageError(`error: ${e.message}`));
window.addEventListener('unhandledrejection', (e) => pageError(`unhandled rejection: ${e.reason && e.reason.message || e.reason}`));
document.addEventListener('securitypolicyviolation', (e) => pageError(`CSP blocked ${e.blockedURI || 'inline'} (${e.violatedDirective})`));

// window.__bridge lets tests and curious people look at the call. It holds
// no token and no function that could reach one.
Object.defineProperty(window, '__bridge', {
  value: Object.freeze({
    get view() { return S.view; },
    get hubState() { return S.hub ? S.hub.state : 'idle'; },
    get pc() { return S.call ? S.call.pc : null; },
    get errors() { return [...pageErrors]; },
    state() {
      const call = S.call;
      return {
        view: S.view,
        hub: S.hub ? S.hub.state : 'idle',
        me: { ...S.me },
        rooms: [...S.rooms.values()].map((r) => ({ channelId: r.channelId, name: r.name, userLimit: r.userLimit, members: r.members.map((m) => ({ ...m })) })),
        call: call ? {
          roomId: call.roomId, state: call.state, ended: call.ended, self: call.selfId,
          muted: call.muted, camera: call.cameraOn, discord: { ...call.discord }, privacyCode: call.privacyCode,
          participants: [...call.participants.values()].map((p) => JSON.parse(JSON.stringify(p))),
          streams: [...call.streams.keys()],
          trace: [...call.trace],
          pc: call.pc ? {
            connectionState: call.pc.connectionState,
            iceConnectionState: call.pc.iceConnectionState,
            signalingState: call.pc.signalingState,
          } : null,
        } : null,
      };
    },
    // lastStats is the summary of getStats() the call read last (every 250 ms).
    get lastStats() { return S.call && S.call.lastStats ? JSON.parse(JSON.stringify(S.call.lastStats)) : null; },
    async stats() { return S.call ? S.call.stats() : null; },
  }),
});

takeFragmentToken();
boot().catch((err) => {
  go('signin');
  setError('signin-error', `The page could not start: ${err.message || err}`);
});
