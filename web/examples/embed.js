// An app's page on its own origin that embeds a bridge call with the SDK.
//
// The app's backend creates the room (REST, server to server) and gives
// this page the bridge's address, a token for the user and the room id;
// here they come in the address's fragment:
//   embed.html#bridge=https://bridge.example.com&room=<channelId>&token=<JWT>
// The bridge must list this page's origin in ALLOWED_ORIGINS, for example
//   ALLOWED_ORIGINS=https://app.example.com

const params = new URLSearchParams(location.hash.slice(1));
const bridgeURL = params.get('bridge') || '';
const roomId = params.get('room') || '';
const token = params.get('token') || '';
history.replaceState(null, '', location.pathname); // the token does not stay in the address bar

const $ = (id) => document.getElementById(id);

async function main() {
  // The SDK comes from the bridge itself, so page and bridge speak the same version.
  const { Bridge, errorText } = await import(`${bridgeURL}/sdk/bridge.js`);
  const bridge = new Bridge({ url: bridgeURL, token });
  window.example = { bridge, call: null };
  bridge.addEventListener('state', (e) => {
    if (e.detail.state === 'retrying') $('state').textContent = `Can't reach the call service, retrying (${e.detail.reason || 'no answer'})…`;
  });
  bridge.addEventListener('unauthorized', () => { $('state').textContent = 'Your session ended. Reload the page.'; });

  const call = await bridge.join(roomId, { microphone: '', camera: 'none' });
  window.example.call = call;
  call.addEventListener('state', (e) => { $('state').textContent = `Call: ${e.detail.state}`; });
  call.addEventListener('privacy', (e) => {
    $('privacy').hidden = !e.detail.code;
    $('privacy').textContent = `Privacy code: ${(e.detail.code.match(/.{1,5}/g) || []).join(' ')}`;
  });
  call.addEventListener('participants', () => {
    $('people').replaceChildren(...call.list().map((p) => {
      const li = document.createElement('li');
      li.dataset.participant = p.id;
      li.dataset.speaking = String(p.speaking && !p.muted);
      li.textContent = `${p.name}${p.kind === 'discord' ? ' (Discord)' : ''}${p.muted ? ', muted' : ''}`;
      return li;
    }));
  });
  call.addEventListener('ended', (e) => {
    $('state').textContent = e.detail.code === 'left' ? 'You left the call.' : errorText(e.detail.code, e.detail.message);
    $('mute').disabled = $('leave').disabled = true;
  });
  $('mute').disabled = $('leave').disabled = false;
  $('mute').addEventListener('click', () => {
    call.setMuted(!call.muted);
    $('mute').textContent = call.muted ? 'Unmute' : 'Mute';
  });
  $('leave').addEventListener('click', () => call.leave());
}

main().catch((err) => { $('state').textContent = `The call could not start: ${err.message || err}`; });
