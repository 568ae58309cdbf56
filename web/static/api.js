// REST calls to the bridge that served this page. Every failure becomes an
// ApiError whose message is fit to show to a person.

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

// request does one fetch with a timeout and turns network failures and
// gateway errors (502-504 from a proxy in front of the bridge) into
// UnreachableError.
async function request(path, { method = 'GET', token = '', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
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
export async function devAuthAvailable() {
  const res = await request('/.well-known/jwks.json');
  return res.status === 200;
}

/** devToken asks the bridge's development sign-in for a token for name. */
export async function devToken(name) {
  const res = await request('/api/dev/token', { method: 'POST', body: { name } });
  if (!res.ok) throw await failure(res, 'Sign-in');
  const body = await res.json();
  if (!body || typeof body.token !== 'string' || !body.token) {
    throw new ApiError(res.status, 'bad_answer', 'The bridge answered without a token');
  }
  return body;
}

/**
 * listRooms returns [{channelId,name,guildId,userLimit,members:[{userId,name}]}];
 * the hub answers {"rooms":[...]} (hub/rest.go).
 */
export async function listRooms(token) {
  const res = await request('/api/rooms', { token });
  if (!res.ok) throw await failure(res, 'Loading rooms');
  const body = await res.json();
  const rooms = Array.isArray(body) ? body : body && body.rooms;
  return Array.isArray(rooms) ? rooms : [];
}

/** createRoom creates a room; a 400 carries the offending field. */
export async function createRoom(token, name, userLimit) {
  const res = await request('/api/create-room', { method: 'POST', token, body: { name, userLimit } });
  if (res.status !== 201 && !res.ok) throw await failure(res, 'Creating the room');
  return res.json();
}

/** endRoom ends (deletes) a room. */
export async function endRoom(token, channelId) {
  const res = await request(`/api/end-room/${encodeURIComponent(channelId)}`, { method: 'DELETE', token });
  if (res.status !== 204 && !res.ok) throw await failure(res, 'Ending the room');
}
