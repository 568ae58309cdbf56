// The page: sign in, rooms, device check and the call, and what moves
// between them. State lives in S; the views in index.html are shown one at
// a time by showView.

import * as api from './api.js';
import { Hub, backoffDelay } from './hub.js';
import { Call, errorText } from './call.js';
import { getLocalMedia, listDevices, mediaErrorText, LevelMeter } from './media.js';
import {
  $, el, showView, announce, setError, fieldError, initials, hue,
  hubStateText, callStateText, discordText,
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
};

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

// signIn shows the sign-in view with an optional error in words.
function signIn(error) {
  $('dev-form').hidden = !S.dev;
  $('token-form').hidden = S.dev;
  setError('signin-error', error);
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
    if (err.status === 401 || err.status === 403) {
      forgetToken();
      signIn(`The bridge refused this sign-in: ${err.message}. Sign in again.`);
      return;
    }
    forgetToken();
    signIn(`Signing in failed: ${err.message}`);
    return;
  }
  clearOffline();
  S.token = token;
  sessionStorage.setItem(tokenKey, token);
  setRooms(rooms);
  go('rooms');
  startHub();
}

$('dev-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const input = $('dev-name');
  const name = input.value.trim();
  setError('signin-error', '');
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
      setError('signin-error', `Signing in failed: ${err.message}`);
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

// ------------------------------------------------------------------ hub

function startHub() {
  stopHub();
  const hub = new Hub(() => S.token);
  S.hub = hub;
  hub.addEventListener('state', (e) => onHubState(e.detail));
  hub.addEventListener('ready', (e) => onHubReady(e.detail.ack));
  hub.addEventListener('event', (e) => onHubEvent(e.detail.event, e.detail.payload));
  hub.addEventListener('signal', (e) => { if (S.call) S.call.handleSignal(e.detail.msg); });
  hub.addEventListener('unauthorized', (e) => {
    endCall();
    closePrejoin();
    stopHub();
    forgetToken();
    signIn(`Your session expired or the token was refused${e.detail.reason ? ` (${e.detail.reason})` : ''}. Sign in again.`);
  });
  hub.start();
}

function stopHub() {
  clearInterval(S.hubTick);
  if (S.hub) S.hub.stop();
  S.hub = null;
}

function onHubState({ state, retryAt, attempt }) {
  const pill = $('hub-state');
  pill.hidden = false;
  pill.dataset.state = state;
  clearInterval(S.hubTick);
  const render = () => {
    const left = retryAt ? Math.max(0, Math.ceil((retryAt - Date.now()) / 1000)) : 0;
    pill.textContent = hubStateText(state, left);
    if (S.call && !S.call.ended && state === 'retrying') {
      showCallNotice(`Lost the connection to the bridge. Reconnecting in ${left}s…`, { retry: true, retryLabel: 'Reconnect now' });
    }
  };
  render();
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

function setRooms(list) {
  const old = S.rooms;
  S.rooms = new Map();
  for (const r of list) {
    const prev = old.get(r.channelId);
    S.rooms.set(r.channelId, { ...r, members: r.members || [], browsers: prev ? prev.browsers : new Map() });
  }
  setError('rooms-error', '');
  renderRooms();
}

function renderRooms() {
  const list = $('room-list');
  const rooms = [...S.rooms.values()].sort((a, b) => a.name.localeCompare(b.name));
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
    const people = [...r.members.map((m) => m.name), ...r.browsers.values()];
    const count = people.length;
    const limit = r.userLimit > 0 ? `${count} / ${r.userLimit}` : `${count}`;
    const full = r.userLimit > 0 && r.members.length >= r.userLimit;
    li.replaceChildren(
      el('div', { class: 'room-main' },
        el('h3', { class: 'room-name', 'data-testid': 'room-name', text: r.name }),
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
    const room = await api.createRoom(S.token, name, limit);
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
      $('create-name').focus();
    } catch (err) {
      setError('rooms-error', `Could not end "${room.name}": ${err.message}`);
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
  S.prejoin = { room, stream: null, meter: null, timer: 0 };
  $('prejoin-room').textContent = room.name;
  setError('prejoin-error', '');
  $('prejoin-join').disabled = true;
  go('prejoin');
  audioCtx();
  await previewDevices('', '');
}

// previewDevices opens the chosen devices, fills the pickers (labels are
// only known after permission) and shows the preview and level.
async function previewDevices(micId, camId) {
  const pj = S.prejoin;
  if (!pj) return;
  stopPreview();
  let stream = null;
  let error = '';
  try {
    stream = await getLocalMedia(micId, camId);
  } catch (err) {
    error = mediaErrorText(err);
    // Without a camera the call still works: try the microphone alone.
    if (camId !== 'none') {
      try {
        stream = await getLocalMedia(micId, 'none');
        camId = 'none';
      } catch {
        stream = null;
      }
    }
  }
  if (S.prejoin !== pj) {
    if (stream) for (const t of stream.getTracks()) t.stop();
    return;
  }
  pj.stream = stream || new MediaStream();
  setError('prejoin-error', error);
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
  const camId = $('cam-select').value;
  S.prejoin = null;
  startCall(pj.room, stream, camId === 'none' ? '' : camId, $('prejoin-muted').checked);
});

// ----------------------------------------------------------------- call

function startCall(room, stream, camId, muted) {
  endCall();
  S.callRoom = room;
  const call = new Call({
    hub: S.hub, roomId: room.channelId, local: stream, camId, muted, me: S.me, audioCtx: audioCtx(),
  });
  S.call = call;
  $('call-title').textContent = room.name;
  $('tiles').replaceChildren();
  $('privacy').hidden = true;
  $('discord-state').hidden = true;
  hideCallNotice();
  $('call-controls').hidden = false;
  setControls(true);
  call.addEventListener('state', (e) => {
    const pill = $('call-state');
    pill.dataset.state = e.detail.state;
    pill.textContent = callStateText(e.detail.state);
    if (e.detail.state === 'connected') {
      hideCallNotice();
      announce(`Connected to ${room.name}.`);
    }
  });
  call.addEventListener('participants', () => renderTiles());
  call.addEventListener('discord', (e) => {
    const d = $('discord-state');
    d.hidden = !e.detail.discord;
    d.dataset.state = e.detail.discord;
    d.textContent = discordText(e.detail.discord, e.detail.message);
    announce(d.textContent);
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
}

function endCall() {
  if (S.call) {
    S.call.leave();
    S.call = null;
  }
  $('tiles').replaceChildren();
}

function onCallEnded({ code, message, retry }) {
  setControls(false);
  $('call-controls').hidden = true;
  $('discord-state').hidden = true;
  $('privacy').hidden = true;
  $('tiles').replaceChildren();
  if (code === 'left') return;
  showCallNotice(message, { retry, back: true, urgent: true });
  $('view-call').dataset.ended = code;
}

function showCallNotice(text, { retry = false, back = false, urgent = false, retryLabel = 'Try again' } = {}) {
  const n = $('call-notice');
  const changed = n.hidden || $('call-notice-text').textContent !== text;
  n.hidden = false;
  n.className = `notice ${back ? 'notice-error' : 'notice-warn'}`;
  $('call-notice-text').textContent = text;
  $('call-retry').hidden = !retry;
  $('call-retry').textContent = retryLabel;
  $('call-back').hidden = !back;
  if (changed && !/in \d+s…$/.test(text)) announce(text, urgent);
  if (back && changed) ($('call-retry').hidden ? $('call-back') : $('call-retry')).focus();
}

function hideCallNotice() {
  $('call-notice').hidden = true;
  delete $('view-call').dataset.ended;
}

$('call-retry').addEventListener('click', async () => {
  const call = S.call;
  if (S.hub && S.hub.state === 'retrying') {
    S.hub.retryNow();
    return;
  }
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
  hideCallNotice();
  go('rooms');
});

function setControls(on) {
  for (const id of ['btn-mute', 'btn-camera', 'btn-leave']) $(id).disabled = !on;
  if (!on) return;
  const call = S.call;
  updateMuteButton(call.muted);
  updateCameraButton(call.cameraOn);
  $('btn-camera').disabled = !call.camId && !call.cameraOn;
}

function updateMuteButton(muted) {
  const b = $('btn-mute');
  b.setAttribute('aria-pressed', String(muted));
  b.querySelector('.label').textContent = muted ? 'Unmute' : 'Mute';
  b.classList.toggle('off', muted);
}

function updateCameraButton(on) {
  const b = $('btn-camera');
  b.setAttribute('aria-pressed', String(!on));
  b.querySelector('.label').textContent = on ? 'Camera off' : 'Camera on';
  b.classList.toggle('off', !on);
}

$('btn-mute').addEventListener('click', () => {
  if (!S.call) return;
  S.call.setMuted(!S.call.muted);
  updateMuteButton(S.call.muted);
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
  endCall();
  go('rooms');
  announce('You left the call.');
});

// tileModels lists the people of the call: me, then media's participants,
// then Discord members of the channel media has no track for yet.
function tileModels() {
  const call = S.call;
  if (!call || call.ended) return [];
  const out = [{
    id: call.selfId || 'self', self: true, name: S.me.name || 'You', kind: 'browser',
    muted: call.muted, camera: call.cameraOn, speaking: call.speaking('self'),
    stream: call.local, userId: S.me.userId,
  }];
  const seen = new Set();
  const ps = [...call.participants.values()].sort((a, b) => (a.kind === b.kind ? a.name.localeCompare(b.name) : a.kind === 'browser' ? -1 : 1));
  for (const p of ps) {
    seen.add(p.userId);
    const stream = call.streamFor(p);
    const key = stream ? stream.id : p.id;
    out.push({
      id: p.id, name: p.name || p.userId, kind: p.kind, muted: p.muted,
      camera: p.kind === 'discord' ? true : p.camera, speaking: !!p.speaking || call.speaking(key),
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
      const sliderId = `vol-${m.id}`;
      slider.id = sliderId;
      li.querySelector('.tile-volume label').htmlFor = sliderId;
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
  const tags = [];
  if (m.kind === 'discord') tags.push('Discord');
  if (m.muted) tags.push('Muted');
  if (m.kind === 'browser' && !m.camera) tags.push('Camera off');
  if (m.speaking && !m.muted) tags.push('Speaking');
  const tagsEl = li.querySelector('.tile-tags');
  tagsEl.replaceChildren(...tags.map((t) => el('span', { class: `tag tag-${t.toLowerCase().replace(/\s+/g, '-')}`, text: t })));
  li.setAttribute('aria-label', [name, ...tags].join(', '));
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
  const volume = li.querySelector('.tile-volume');
  const hasAudio = !m.self && !!m.stream && m.stream.getAudioTracks().length > 0;
  if (hasAudio) {
    if (audio.srcObject !== m.stream) {
      audio.srcObject = m.stream;
      audio.volume = S.call ? S.call.volume(m.id) : 1;
      audio.play().catch(() => { /* autoplay blocked until a click; the join click normally allows it */ });
    }
  } else if (audio.srcObject) {
    audio.srcObject = null;
  }
  volume.hidden = !hasAudio;
  volume.querySelector('label').textContent = `Volume of ${m.name}`;
}

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
