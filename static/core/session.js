// The protocol side of the web client: one WebSocket, the state of every conversation,
// frames in and out, the outbox and its retries, sync and gap filling, receipts, history
// paging and reconnects. It never touches the DOM: the page hands it an environment
// (below) and re-renders the regions it names through env.invalidate.
//
// env:
//   invalidate(...regions)   a region of the page changed ('convs', 'messages', 'status', …)
//   invalidateAll()          everything changed (another user)
//   isViewing(id)            the conversation is on screen where the user can see it
//   openSocket(path)         a WebSocket-like object for a same-origin path
//   online()                 false when the browser knows it is offline
//   fetch(path, init)        same-origin HTTP
//   storage                  {get(key), set(key, value), remove(key)}; may throw
//   beforeOlderPage(c)       an older history page of c is about to go in above
//   loggedOut(message, me)   the session ended (logout, or credentials refused)
//   connected()              a hello arrived (optional): time to refresh what REST knows
//   newConversation(c)       c was not known before (optional): a group's name is unknown
//   now(), random(), setTimeout, clearTimeout, setInterval, clearInterval

import { kindOf, peerOf, newCid } from './ids.js';
import * as conv from './conv.js';
import * as outbox from './outbox.js';
import * as backoff from './backoff.js';
import * as sync from './sync.js';

export const PING_MS = 25000;
export const TYPING_SHOW_MS = 5000, TYPING_START_EVERY_MS = 3000;
export const RECEIPT_EVERY_MS = 1000;
export const GAP_DEBOUNCE_MS = 400; // lets briefly reordered deliveries settle before a gap sync
export const SYNC_TIMEOUT_MS = 20000;
export const KEEP_STORED = 100; // messages per conversation kept in storage
export const KEY_USER = 'switchboard:user';
export const KEY_TOKEN = 'switchboard:token';
const OPEN = 1; // WebSocket.OPEN
export const userKey = (user) => 'switchboard:v1:' + user;

// createSession returns the client's protocol state and the operations on it.
export function createSession(env) {
  const { setTimeout, clearTimeout, setInterval, clearInterval } = env;
  const state = {
    me: null, server: null, session: null,
    token: null, // the JWT in jwt auth mode: then ?token= replaces ?user=
    conn: {
      ws: null, ready: false /* hello received */, stopped: true, status: 'offline',
      attempt: 0, failures: 0, timer: 0, retryAt: 0, tick: 0,
      openedAt: 0, lastRx: 0, pingTimer: 0, pingOutstanding: false, rtt: null, drainAt: 0, drainTimer: 0,
    },
    convs: new Map(), // conversation id -> conv (see conv.newConv)
    selected: 'public',
    outbox: new Map(), // cid -> unacknowledged send
    retryTimers: new Map(), // cid -> automatic retry timer
    presence: new Map(), // user -> online
    sync: { inFlight: false, scope: null, timer: 0, gapTimer: 0, unsupported: false },
    unsupported: new Set(), // frame types this server answered "not supported"
    typingOut: { conv: null, lastStart: 0 },
    banners: [],
    saveTimer: 0,
  };

  const invalidate = (...regions) => env.invalidate(...regions);
  const peer = (id) => peerOf(id, state.me);
  const convLabel = (id) => {
    const k = kindOf(id);
    if (k === 'direct') return peer(id);
    if (k === 'group') return state.convs.get(id)?.name || id.slice(2);
    return id;
  };

  // ---- persistence, per user ----
  function loadUser(user) {
    Object.assign(state, { me: user, selected: 'public', convs: new Map(), outbox: new Map(), presence: new Map() });
    ensureConv('public');
    let saved = null;
    try { saved = JSON.parse(env.storage.get(userKey(user)) || 'null'); } catch { saved = null; }
    if (!saved || saved.v !== 1) return;
    for (const [id, s] of Object.entries(saved.convs || {})) {
      const c = ensureConv(id);
      Object.assign(c, { last: s.last || 0, read: s.read || 0, sentRead: s.sentRead || 0, marks: new Map(Object.entries(s.marks || {})) });
      if (s.name) c.name = s.name;
      for (const m of s.msgs || []) conv.insertMessage(c, m);
    }
    for (const e of outbox.restore(saved.outbox)) state.outbox.set(e.cid, e);
    if (state.convs.has(saved.selected)) state.selected = saved.selected;
  }

  function saveNow() {
    clearTimeout(state.saveTimer);
    state.saveTimer = 0;
    if (!state.me) return;
    // Seqs and messages share one key so they never disagree; over quota, keep fewer messages.
    for (const keep of [KEEP_STORED, 10, 0]) {
      const data = { v: 1, selected: state.selected, outbox: [...state.outbox.values()], convs: {} };
      for (const c of state.convs.values()) {
        data.convs[c.id] = { last: c.last, read: c.read, sentRead: c.sentRead, marks: Object.fromEntries(c.marks),
          name: c.name || undefined, msgs: keep ? c.messages.slice(-keep) : [] };
      }
      try { env.storage.set(userKey(state.me), JSON.stringify(data)); return; } catch { /* try smaller */ }
    }
  }

  function scheduleSave() {
    if (!state.saveTimer) state.saveTimer = setTimeout(saveNow, 300);
  }

  // ---- conversations and messages ----
  function ensureConv(id) {
    if (!state.convs.has(id)) {
      state.convs.set(id, conv.newConv(id, env.now()));
      invalidate('convs');
      env.newConversation?.(state.convs.get(id));
      // A direct conversation new to this client: its newest page, then (see onHistory) the
      // peer's marks and whether the peer is online.
      if (kindOf(id) === 'direct' && state.conn.ready) loadHistory(state.convs.get(id), true);
    }
    return state.convs.get(id);
  }

  // loadHistory asks for the page below the oldest message held (newest: the newest page).
  function loadHistory(c, newest) {
    if (state.unsupported.has('history')) { // an older server: the recent window by sync
      if (newest) send({ type: 'sync', since: { [c.id]: 0 }, only: true });
      return;
    }
    const frame = conv.historyFrame(c, newest);
    if (frame && send(frame)) { conv.historyRequested(c, newest); invalidate('older'); }
  }

  function onHistory(f) {
    if (typeof f.conv !== 'string' || !Array.isArray(f.messages)) return;
    const c = ensureConv(f.conv);
    if (!(c.newestPending && !f.before)) env.beforeOlderPage(c);
    if (conv.applyHistoryPage(c, f) && c.kind === 'direct') {
      // Everything up to the newest page is held (older pages load on demand); then the
      // peer's marks, presence and anything newer come by sync (its synced is not needed).
      send({ type: 'sync', since: { [c.id]: c.last }, only: true });
    }
    afterChange(c);
    invalidate('older');
  }

  function afterChange(c) {
    if (conv.hasGap(c)) scheduleGapCheck();
    if (env.isViewing(c.id)) markRead(); else if (c.kind !== 'public') queueReceipt(c);
    invalidate('convs', c.id === state.selected && 'messages');
    scheduleSave();
  }

  // select makes id the conversation on screen.
  function select(id) {
    if (state.selected !== id) typingStop();
    ensureConv(id);
    state.selected = id;
    markRead();
    scheduleSave();
  }

  // applySummaries takes GET /api/conversations: every conversation, with its name, newest
  // message and unread count.
  function applySummaries(list) {
    for (const item of list || []) {
      if (typeof item?.id !== 'string') continue;
      const c = ensureConv(item.id);
      conv.applySummary(c, item);
    }
    markRead();
    invalidate('convs', 'conv', 'composer');
    scheduleSave();
  }

  // deleted applies a delete this client made (the tombstone frame may come later, or not
  // to this session first).
  function deleted(m) {
    const c = state.convs.get(m.conv);
    if (!c || !conv.insertMessage(c, { ...m, deleted: true, body: '' })) return;
    afterChange(c);
  }

  // ---- receipts ----
  // markRead marks the conversation on screen read up to its latest message.
  function markRead() {
    const c = state.convs.get(state.selected);
    if (!c || !env.isViewing(c.id) || conv.maxSeq(c) <= c.read) return;
    c.read = conv.maxSeq(c);
    queueReceipt(c);
    invalidate('convs');
    scheduleSave();
  }

  // queueReceipt sends at most one receipt per conversation per RECEIPT_EVERY_MS.
  function queueReceipt(c) {
    if (c.receiptTimer) return;
    const wait = Math.max(0, c.receiptAt + RECEIPT_EVERY_MS - env.now());
    c.receiptTimer = setTimeout(() => { c.receiptTimer = 0; flushReceipt(c); }, wait);
  }

  function flushReceipt(c) {
    if (!state.conn.ready || state.convs.get(c.id) !== c) return; // queued again after the next hello
    const frame = conv.nextReceipt(c, state.me);
    if (!frame) return;
    send(frame);
    conv.receiptSent(c, frame, env.now());
  }

  // ---- sending ----
  // submit queues body for the conversation on screen and sends it.
  function submit(body) {
    const entry = outbox.newEntry(newCid(), state.selected, body, state.me, env.now());
    state.outbox.set(entry.cid, entry);
    typingStop();
    transmit(entry);
    invalidate('convs');
    return entry;
  }

  // transmit (re)sends an outbox entry with its original cid: the server dedupes by cid.
  function transmit(entry) {
    clearTimeout(state.retryTimers.get(entry.cid));
    state.retryTimers.delete(entry.cid);
    Object.assign(entry, { status: 'pending', error: null });
    if (state.conn.ready) send(outbox.sendFrame(entry)); // otherwise resendOutbox sends it after the next hello
    invalidate('messages');
    scheduleSave();
  }

  // retry sends a failed entry again at the user's request, with a fresh set of automatic retries.
  function retry(cid) {
    const entry = state.outbox.get(cid);
    if (!entry) return;
    entry.tries = 0;
    transmit(entry);
  }

  function resendOutbox() {
    for (const e of outbox.toResend(state.outbox.values(), state.retryTimers)) transmit(e);
  }

  function scheduleAutoRetry(entry, afterMs) {
    const delay = outbox.retryDelay(entry, afterMs, env.random);
    if (delay < 0) return;
    state.retryTimers.set(entry.cid, setTimeout(() => {
      state.retryTimers.delete(entry.cid);
      if (state.outbox.get(entry.cid) === entry && entry.status === 'error') transmit(entry);
    }, delay));
  }

  // settle forgets an outbox entry: acknowledged by the server, or discarded by the user.
  function settle(cid) {
    clearTimeout(state.retryTimers.get(cid));
    state.retryTimers.delete(cid);
    if (state.outbox.delete(cid)) invalidate('messages');
    scheduleSave();
  }

  // ---- typing, outgoing ----
  function sendTyping(id, st) {
    if (!state.conn.ready) return;
    send(kindOf(id) === 'direct' ? { type: 'typing', to: peer(id), state: st } : { type: 'typing', conv: id, state: st });
  }

  // typingInput reports composer input in the conversation on screen (empty: stopped).
  function typingInput(empty) {
    const t = state.typingOut;
    if (empty) { typingStop(); return; }
    if (t.conv !== state.selected) typingStop();
    if (env.now() - t.lastStart < TYPING_START_EVERY_MS) return; // at most one start per interval
    sendTyping(state.selected, 'start');
    Object.assign(t, { conv: state.selected, lastStart: env.now() });
  }

  function typingStop() {
    const t = state.typingOut;
    if (t.conv) sendTyping(t.conv, 'stop');
    Object.assign(t, { conv: null, lastStart: 0 });
  }

  // ---- sync ----
  // requestSync asks for what was missed: scope null = everything (after hello), or a list of
  // conversation ids with a gap. At most one sync is in flight.
  function requestSync(scope) {
    const s = state.sync;
    if (!state.conn.ready || s.inFlight) return;
    Object.assign(s, { inFlight: true, scope, timer: setTimeout(endSync, SYNC_TIMEOUT_MS) });
    send(sync.syncFrame(state.convs.values(), scope));
  }

  function endSync() {
    clearTimeout(state.sync.timer);
    Object.assign(state.sync, { inFlight: false, scope: null });
  }

  function scheduleGapCheck() {
    const s = state.sync;
    if (!s.gapTimer) s.gapTimer = setTimeout(() => { s.gapTimer = 0; checkGaps(); }, GAP_DEBOUNCE_MS);
  }

  function checkGaps() {
    if (!state.conn.ready || state.sync.inFlight || state.sync.unsupported) return;
    const ids = sync.gaps(state.convs.values());
    if (ids.length) requestSync(ids);
  }

  function onSynced(f) {
    const { scope, inFlight } = state.sync;
    endSync();
    if (!inFlight) return; // a late answer to a sync we gave up on: its seqs prove nothing
    for (const [id, seq] of sync.syncedSeqs(f, scope)) {
      const c = ensureConv(id);
      sync.raiseLast(c, seq);
      conv.advance(c);
      if (c.kind !== 'public') queueReceipt(c);
    }
    for (const id of sync.unfillable(f, scope)) if (state.convs.has(id)) sync.giveUpGap(state.convs.get(id));
    if (!scope) checkGaps(); // gaps left after a gap sync wait for the next message
    markRead();
    invalidate('convs', 'messages');
    scheduleSave();
  }

  // ---- incoming frames ----
  const handlers = {
    hello(f) {
      Object.assign(state.conn, { ready: true, attempt: 0, failures: 0 });
      Object.assign(state, { server: String(f.server || '?'), session: f.session || null });
      if (typeof f.user === 'string' && f.user && f.user !== state.me) { saveNow(); loadUser(f.user); env.invalidateAll(); }
      state.sync.unsupported = false;
      ['drain', 'close', 'probe'].forEach(clearBanner);
      setStatus('online');
      requestSync(null);
      resendOutbox();
      for (const c of state.convs.values()) queueReceipt(c);
      markRead();
      env.connected?.();
    },
    message(f) {
      if (typeof f.id !== 'string' || typeof f.conv !== 'string' || typeof f.seq !== 'number') return;
      const c = ensureConv(f.conv);
      if (f.from === state.me && f.cid) settle(f.cid); // my own send, acknowledged by its echo
      if (!conv.insertMessage(c, f)) return;
      if (f.from !== state.me) clearTyping(c, f.from);
      afterChange(c);
    },
    sent(f) {
      const entry = state.outbox.get(f.cid);
      if (!entry || typeof f.id !== 'string') return;
      settle(f.cid);
      const c = ensureConv(f.conv || entry.conv);
      conv.insertMessage(c, { id: f.id, seq: f.seq, ts: f.ts, from: state.me, body: entry.body, cid: entry.cid, to: entry.to });
      afterChange(c);
    },
    synced: onSynced,
    history: onHistory,
    error(f) {
      const entry = f.cid && state.outbox.get(f.cid);
      if (entry) {
        outbox.failed(entry, f);
        scheduleAutoRetry(entry, Number(f.retry_after_ms) || 0);
        invalidate('messages');
        scheduleSave();
      } else if (!f.cid && f.code === 'bad_request' && /"history"/.test(f.message || '')) {
        // An older server without history pages: fall back to the recent window by sync.
        state.unsupported.add('history');
        for (const c of state.convs.values()) {
          if (c.older !== 'loading') continue;
          c.older = 'done';
          if (c.newestPending) { c.newestPending = false; loadHistory(c, true); }
        }
        invalidate('older');
      } else if (!f.cid && /^(\w+) is not supported by this server/.test(f.message || '')) {
        // Feature detection: stop sending a frame type this server lacks.
        const type = /^(\w+)/.exec(f.message)[1];
        state.unsupported.add(type);
        if (type === 'sync') { state.sync.unsupported = true; endSync(); }
      } else if (state.sync.inFlight && !f.cid && (f.code === 'rate_limited' || f.code === 'unavailable') && /sync/i.test(f.message || '')) {
        // The sync was refused for now (the user's sync budget, or the store being
        // restored): ask again for the same scope when told to.
        const scope = state.sync.scope;
        endSync();
        setTimeout(() => requestSync(scope), Math.max(Number(f.retry_after_ms) || 1000, 100));
      } else if (state.sync.inFlight && !f.cid && (f.code === 'bad_request' || /sync/i.test(f.message || ''))) {
        // An older server rejects `sync`: ignore it, and stop asking on this connection.
        state.sync.unsupported = f.code === 'bad_request';
        endSync();
      } else if (!f.cid) {
        addBanner(`error:${f.code}:${f.message}`, `${f.code || 'error'}: ${f.message || 'unknown error'}`, 'error');
      }
    },
    receipt(f) {
      const c = state.convs.get(f.conv);
      if (!c || typeof f.seq !== 'number') return;
      conv.applyReceipt(c, f, state.me);
      invalidate('convs', c.id === state.selected && 'messages');
      scheduleSave();
    },
    typing(f) {
      if (!f.user || f.user === state.me || typeof f.conv !== 'string') return;
      const c = ensureConv(f.conv);
      clearTyping(c, f.user);
      if (f.state === 'start') c.typing.set(f.user, setTimeout(() => clearTyping(c, f.user), TYPING_SHOW_MS));
      invalidate(c.id === state.selected && 'typing');
    },
    presence(f) {
      if (!f.user) return;
      state.presence.set(f.user, !!f.online);
      invalidate('convs', 'conv');
    },
    reconnect(f) { // the server drains: it closes soon, and we come back after after_ms
      const c = state.conn;
      const after = Math.max(0, Number(f.after_ms) || 0);
      c.drainAt = env.now() + after;
      const why = f.reason ? ` (${f.reason})` : '';
      addBanner('drain', `Server ${state.server || ''} is going away${why}; reconnecting in about ${Math.ceil(after / 1000)} s.`, 'info');
      const ws = c.ws;
      clearTimeout(c.drainTimer);
      c.drainTimer = setTimeout(() => { if (c.ws === ws) dropSocket(ws, 'reconnect requested'); }, after);
    },
    pong(f) {
      state.conn.pingOutstanding = false;
      if (typeof f.t === 'number') state.conn.rtt = Math.max(0, env.now() - f.t);
      invalidate('status');
    },
  };

  function clearTyping(c, user) {
    if (!c.typing.has(user)) return;
    clearTimeout(c.typing.get(user));
    c.typing.delete(user);
    invalidate(c.id === state.selected && 'typing');
  }

  // ---- connection ----
  // endpointPath is the one place that knows how a connection authenticates.
  function endpointPath() {
    return '/ws?' + (state.token ? 'token=' + encodeURIComponent(state.token) : 'user=' + encodeURIComponent(state.me));
  }

  function send(frame) {
    const ws = state.conn.ws;
    if (!ws || ws.readyState !== OPEN || state.unsupported.has(frame.type)) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  function connect() {
    const c = state.conn;
    clearTimeout(c.timer);
    if (!state.me || c.ws || c.stopped) return;
    if (!env.online()) { setStatus('offline'); return; } // the 'online' event retries
    setStatus('connecting');
    let ws;
    try {
      ws = env.openSocket(endpointPath());
    } catch (err) { onClosed(null, { code: 1006, reason: String(err) }); return; }
    c.ws = ws;
    state.unsupported.clear(); // the next server may know more
    ws.onopen = () => { c.openedAt = c.lastRx = env.now(); startPing(); };
    ws.onmessage = (ev) => onFrame(ev.data);
    ws.onclose = (ev) => onClosed(ws, ev);
    ws.onerror = () => {}; // a close event always follows
  }

  // online is the browser's 'online' event: a connection waiting for the network tries now.
  function online() {
    const c = state.conn;
    if (state.me && !c.ws && !c.stopped) { c.attempt = 0; connect(); }
  }

  function onFrame(data) {
    state.conn.lastRx = env.now();
    let frame;
    try { frame = JSON.parse(data); } catch { return; }
    if (frame && typeof frame === 'object' && Object.hasOwn(handlers, frame.type)) handlers[frame.type](frame);
  }

  // dropSocket gives up on a socket at once (dead, or told to go) instead of awaiting its close.
  function dropSocket(ws, why) {
    onClosed(ws, { code: 1006, reason: why });
    try { ws.close(1000, why); } catch { /* already closed */ }
  }

  function onClosed(ws, ev) {
    const c = state.conn;
    if (c.ws !== ws) return;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    const wasOpen = c.openedAt > 0;
    const upFor = wasOpen ? env.now() - c.openedAt : 0;
    Object.assign(c, { ws: null, ready: false, openedAt: 0 });
    clearInterval(c.pingTimer);
    clearTimeout(c.drainTimer);
    endSync();
    state.typingOut.conv = null;
    if (c.stopped) { setStatus('offline'); return; }
    const next = backoff.closeAction(ev, !!state.token);
    if (next.action === 'login') { backToLogin(next.message); return; }
    if (next.banner) addBanner('close', next.banner, 'info');
    if (backoff.resetsBackoff(upFor)) c.attempt = 0;
    c.failures = wasOpen ? 0 : c.failures + 1;
    // A drain comes back at its time; anything else after a backoff delay.
    scheduleReconnect(c.drainAt ? Math.max(0, c.drainAt - env.now()) : undefined);
    c.drainAt = 0;
    if (!wasOpen && backoff.shouldProbe(c.failures)) probe();
  }

  // scheduleReconnect waits `exact` ms, or a full-jitter exponential backoff delay.
  function scheduleReconnect(exact) {
    const c = state.conn;
    let delay = exact;
    if (delay == null) {
      delay = backoff.backoffDelay(c.attempt, env.random);
      c.attempt = backoff.nextAttempt(c.attempt);
    }
    clearTimeout(c.timer);
    c.retryAt = env.now() + delay;
    c.timer = setTimeout(connect, delay);
    setStatus('reconnecting');
  }

  // probe learns why a handshake failed, which browsers hide: a plain GET of the same URL gets
  // the pre-upgrade answer (401 bad credentials or user name, 403, 503 with Retry-After).
  async function probe() {
    let res, message = '';
    try {
      res = await env.fetch(endpointPath(), { cache: 'no-store', credentials: 'same-origin' });
      message = (await res.json())?.error?.message || '';
    } catch { if (!res) return; }
    const c = state.conn;
    if (c.stopped || c.ws) return;
    const next = backoff.probeAction(res.status, message, res.headers.get('Retry-After'));
    if (next.action === 'login') backToLogin(next.message);
    else if (next.action === 'banner') addBanner('probe', next.message, 'error');
    else if (next.action === 'wait' && next.afterMs > c.retryAt - env.now()) scheduleReconnect(next.afterMs + env.random() * 1000);
  }

  function startPing() {
    const c = state.conn;
    clearInterval(c.pingTimer);
    c.pingOutstanding = false;
    c.pingTimer = setInterval(() => {
      if (!c.ws) return;
      // A whole interval with no pong nor any other frame: the connection is dead.
      if (c.pingOutstanding && env.now() - c.lastRx >= PING_MS) { dropSocket(c.ws, 'no answer to ping'); return; }
      c.pingOutstanding = send({ type: 'ping', t: env.now() });
    }, PING_MS);
  }

  function setStatus(status) {
    const c = state.conn;
    c.status = status;
    clearInterval(c.tick);
    if (status === 'reconnecting') c.tick = setInterval(() => invalidate('status'), 1000); // countdown
    invalidate('status');
  }

  // ---- login / logout ----
  function login(name) {
    try { env.storage.set(KEY_USER, name); } catch { /* storage disabled */ }
    loadUser(name);
    Object.assign(state, { server: null, banners: [] });
    Object.assign(state.conn, { stopped: false, attempt: 0, failures: 0, rtt: null, drainAt: 0 });
    connect();
  }

  function logout(message) {
    typingStop();
    saveNow();
    const c = state.conn;
    c.stopped = true;
    clearTimeout(c.timer);
    if (c.ws) dropSocket(c.ws, 'switching user');
    setStatus('offline');
    state.retryTimers.forEach(clearTimeout);
    state.retryTimers.clear();
    try { env.storage.remove(KEY_USER); env.storage.remove(KEY_TOKEN); } catch { /* storage disabled */ }
    state.token = null;
    const me = state.me;
    Object.assign(state, { me: null, server: null, convs: new Map(), outbox: new Map(), banners: [] });
    env.loggedOut(message || '', me);
  }

  const backToLogin = (message) => logout(message || 'The server rejected this user name.');

  // ---- banners: at most one per tag, newest four ----
  function addBanner(tag, text, kind) {
    state.banners = state.banners.filter((b) => b.tag !== tag).concat({ tag, text, kind }).slice(-4);
    invalidate('banners');
  }

  function clearBanner(tag) {
    if (!state.banners.some((b) => b.tag === tag)) return;
    state.banners = state.banners.filter((b) => b.tag !== tag);
    invalidate('banners');
  }

  return {
    state, handlers, convLabel, peer,
    ensureConv, select, loadHistory, markRead, submit, retry, settle, typingInput, typingStop,
    requestSync, checkGaps, onFrame, connect, online, login, logout, saveNow, scheduleSave,
    addBanner, clearBanner, afterChange, applySummaries, deleted,
  };
}
