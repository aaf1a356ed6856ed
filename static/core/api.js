// The REST API of docs/PROTOCOL.md, as the web client uses it. No DOM: fetch only.
// Every call answers the decoded JSON or throws an ApiError with the status and the
// server's message.

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    Object.assign(this, { status, code, retryAfter });
  }
}

// createApi binds the calls to a token getter (jwt mode) or a user getter (open mode).
export function createApi({ fetch = globalThis.fetch, token = () => null, user = () => null } = {}) {
  async function call(method, path, body) {
    const headers = {};
    const t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    else if (user()) path += (path.includes('?') ? '&' : '?') + 'user=' + encodeURIComponent(user());
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, { method, headers, cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new ApiError(0, 'network', 'The server cannot be reached. Try again.');
    }
    let data = null;
    if (res.status !== 204) { try { data = await res.json(); } catch { data = null; } }
    if (!res.ok) {
      throw new ApiError(res.status, data?.error?.code || 'error', data?.error?.message || `the server answered ${res.status}`,
        res.headers.get('Retry-After'));
    }
    return data;
  }
  const conv = (id) => '/api/conversations/' + encodeURIComponent(id);
  return {
    call,
    mode: () => call('GET', '/api/auth/mode'),
    me: () => call('GET', '/api/auth/me'),
    register: (username, password) => call('POST', '/api/auth/register', { username, password }),
    login: (username, password) => call('POST', '/api/auth/login', { username, password }),
    conversations: () => call('GET', '/api/conversations'),
    conversation: (id) => call('GET', conv(id)),
    createGroup: (name, members) => call('POST', '/api/conversations', { kind: 'group', name, members }),
    patchConversation: (id, change) => call('PATCH', conv(id), change),
    deleteMessage: (id) => call('DELETE', '/api/messages/' + encodeURIComponent(id)),
    searchUsers: (q, limit = 20) => call('GET', `/api/users/search?q=${encodeURIComponent(q)}&limit=${limit}`),
  };
}

// authMessage is what the login form shows for a failed register or login.
export function authMessage(err) {
  switch (err.status) {
    case 0: return err.message;
    case 401: return 'Wrong user name or password.';
    case 409: return 'That user name is taken: log in, or pick another.';
    case 429: return `Too many attempts. Try again in ${err.retryAfter || 'a few'} s.`;
    default: {
      const m = err.message || '';
      return m ? m.charAt(0).toUpperCase() + m.slice(1) + '.' : `The server answered ${err.status}.`;
    }
  }
}
