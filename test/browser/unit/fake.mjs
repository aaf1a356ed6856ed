// A fake environment for core/session.js: a manual clock with timers, a socket that records
// what the client sends, memory storage and a fixed random source.

export class FakeSocket {
  constructor(path) {
    Object.assign(this, { path, readyState: 0, sent: [], closed: null });
  }
  send(data) { this.sent.push(JSON.parse(data)); }
  close(code, reason) { this.closed = { code, reason }; this.readyState = 3; }
  // open completes the handshake; hello is the server's first frame.
  open(hello = { type: 'hello', user: 'alice', server: 'gw-1', session: 's1' }) {
    this.readyState = 1;
    this.onopen?.();
    if (hello) this.receive(hello);
  }
  receive(frame) { this.onmessage?.({ data: JSON.stringify(frame) }); }
  serverClose(code, reason = '') { this.readyState = 3; this.onclose?.({ code, reason }); }
  // take returns and forgets the frames sent so far, of one type when given.
  take(type) {
    const out = type ? this.sent.filter((f) => f.type === type) : this.sent;
    this.sent = type ? this.sent.filter((f) => f.type !== type) : [];
    return out;
  }
}

export function fakeEnv({ random = () => 0.5, viewing = () => true } = {}) {
  let now = 1_000_000;
  let nextId = 1;
  const timers = new Map(); // id -> {at, fn, every}
  const env = {
    sockets: [], regions: new Set(), loggedOutWith: null, fetched: [],
    store: new Map(),
    invalidate: (...r) => r.forEach((x) => x && env.regions.add(x)),
    invalidateAll: () => env.regions.add('all'),
    isViewing: (id) => viewing(id),
    online: () => true,
    openSocket(path) { const ws = new FakeSocket(path); env.sockets.push(ws); return ws; },
    fetch: async (path) => { env.fetched.push(path); throw new Error('offline'); },
    storage: { get: (k) => env.store.get(k) ?? null, set: (k, v) => env.store.set(k, v), remove: (k) => env.store.delete(k) },
    beforeOlderPage: () => {},
    loggedOut: (message) => { env.loggedOutWith = message; },
    now: () => now,
    random,
    setTimeout: (fn, ms) => { const id = nextId++; timers.set(id, { at: now + Math.max(0, ms || 0), fn }); return id; },
    clearTimeout: (id) => timers.delete(id),
    setInterval: (fn, ms) => { const id = nextId++; timers.set(id, { at: now + ms, fn, every: ms }); return id; },
    clearInterval: (id) => timers.delete(id),
    // advance runs every timer due within ms, in time order.
    advance(ms) {
      const end = now + ms;
      for (;;) {
        let next = null;
        for (const [id, t] of timers) if (t.at <= end && (!next || t.at < next[1].at)) next = [id, t];
        if (!next) break;
        const [id, t] = next;
        now = t.at;
        if (t.every) t.at += t.every; else timers.delete(id);
        t.fn();
      }
      now = end;
    },
    // pending lists the delays of the timers still to run.
    pending: () => [...timers.values()].map((t) => t.at - now),
    get socket() { return env.sockets[env.sockets.length - 1]; },
  };
  return env;
}

// msg is a message frame.
export const msg = (conv, seq, from = 'bob', extra = {}) =>
  ({ type: 'message', id: `id-${conv}-${seq}`, conv, seq, from, body: `m${seq}`, ts: 1000 + seq, ...extra });
