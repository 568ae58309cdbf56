'use strict';
// A DAVE peer driven over stdin/stdout by voice/dave's interop test.
//
// Protocol: one JSON request per line on stdin, {"id": n, "cmd": "...", ...};
// one JSON response per line on stdout, {"id": n, "ok": true, ...} or
// {"id": n, "ok": false, "error": "..."}. Binary values are base64 strings.
// The peer exits when stdin closes or on {"cmd": "quit"}.

const readline = require('node:readline');
const davey = require('@snazzah/davey');

let session = null;

const b64 = (buf) => (buf ? Buffer.from(buf).toString('base64') : undefined);
const bin = (s) => Buffer.from(s || '', 'base64');

function need() {
  if (!session) throw new Error('no session: send init first');
  return session;
}

const handlers = {
  version() {
    return { version: davey.VERSION, protocol: davey.DAVE_PROTOCOL_VERSION };
  },
  init(req) {
    session = new davey.DAVESession(req.protocolVersion, req.userId, req.channelId);
    return {};
  },
  // reinit starts a new group membership (a new voice session, op 24 with
  // epoch 1, or recovery after op 31) keeping the process's session object.
  reinit(req) {
    if (session) session.reinit(req.protocolVersion, req.userId, req.channelId);
    else session = new davey.DAVESession(req.protocolVersion, req.userId, req.channelId);
    return {};
  },
  reset() {
    need().reset();
    return {};
  },
  setExternalSender(req) {
    need().setExternalSender(bin(req.data));
    return {};
  },
  keyPackage() {
    return { data: b64(need().getSerializedKeyPackage()) };
  },
  processProposals(req) {
    const res = need().processProposals(req.opType, bin(req.data), req.recognized || []);
    return { commit: b64(res.commit), welcome: b64(res.welcome) };
  },
  processCommit(req) {
    need().processCommit(bin(req.data));
    return {};
  },
  processWelcome(req) {
    need().processWelcome(bin(req.data));
    return {};
  },
  encryptOpus(req) {
    return { data: b64(need().encryptOpus(bin(req.data))) };
  },
  decrypt(req) {
    return { data: b64(need().decrypt(req.userId, davey.MediaType.AUDIO, bin(req.data))) };
  },
  setPassthrough(req) {
    need().setPassthroughMode(req.enabled, req.expiry);
    return {};
  },
  state() {
    const s = need();
    return {
      ready: s.ready,
      status: s.status,
      epoch: s.epoch === null || s.epoch === undefined ? null : Number(s.epoch),
      protocolVersion: s.protocolVersion,
      privacyCode: s.voicePrivacyCode,
      epochAuthenticator: b64(s.getEpochAuthenticator()),
      userIds: s.getUserIds(),
    };
  },
  async verificationCode(req) {
    return { code: await need().getVerificationCode(req.userId) };
  },
};

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
// Requests are answered strictly in order, even the asynchronous ones.
let chain = Promise.resolve();
rl.on('line', (line) => {
  chain = chain.then(async () => {
    let req;
    try {
      req = JSON.parse(line);
    } catch (err) {
      reply({ id: -1, ok: false, error: `bad request line: ${err.message}` });
      return;
    }
    if (req.cmd === 'quit') {
      reply({ id: req.id, ok: true });
      rl.close();
      return;
    }
    const h = handlers[req.cmd];
    if (!h) {
      reply({ id: req.id, ok: false, error: `unknown command ${req.cmd}` });
      return;
    }
    try {
      reply({ id: req.id, ok: true, ...(await h(req)) });
    } catch (err) {
      reply({ id: req.id, ok: false, error: String(err && err.message ? err.message : err) });
    }
  });
});
rl.on('close', () => {
  chain.then(() => process.exit(0));
});
