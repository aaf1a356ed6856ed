// Switchboard browser client: one WebSocket, one state object, one render function per
// screen region. Frames follow the wire protocol v1 (send/sent/message/sync/synced/…).
(() => {
  'use strict';

  const NAME_RE = /^[a-z0-9_.-]{1,32}$/;
  const MAX_BODY_BYTES = 4096;
  const PING_MS = 25000;
  const BACKOFF_BASE_MS = 500, BACKOFF_CAP_MS = 30000;
  const STABLE_MS = 10000; // a connection up this long resets the backoff
  const TYPING_SHOW_MS = 5000, TYPING_START_EVERY_MS = 3000;
  const RECEIPT_EVERY_MS = 1000;
  const GAP_DEBOUNCE_MS = 400; // lets briefly reordered deliveries settle before a gap sync
  const SYNC_TIMEOUT_MS = 20000;
  const MAX_AUTO_RETRIES = 5;
  const KEEP_IN_MEMORY = 1000, KEEP_STORED = 100; // messages per conversation
  const PAGE = 50; // messages per history page
  const RETRYABLE = new Set(['rate_limited', 'unavailable', 'internal']);
  const AUTH_CLOSE_RE = /auth|token|user|credential|login|unauthori[sz]ed/i;
  const KEY_USER = 'switchboard:user';
  const KEY_TOKEN = 'switchboard:token';
  const userKey = (user) => 'switchboard:v1:' + user;
  const encoder = new TextEncoder();
  const narrow = window.matchMedia('(max-width: 720px)');

  // ---- the one state object ----
  const state = {
    view: 'login', loginError: '', // view: 'login' | 'app'
    me: null, server: null, session: null,
    token: null, // the JWT in jwt auth mode: then ?token= replaces ?user=
    authMode: 'open', // from GET /api/auth/mode: 'jwt' (accounts) or 'open'
    conn: {
      ws: null, ready: false /* hello received */, stopped: true, status: 'offline',
      attempt: 0, failures: 0, timer: 0, retryAt: 0, tick: 0,
      openedAt: 0, lastRx: 0, pingTimer: 0, pingOutstanding: false, rtt: null, drainAt: 0, drainTimer: 0,
    },
    convs: new Map(), // conversation id -> conv (see ensureConv)
    selected: 'public',
    mobileView: 'conv', // narrow screens show either 'list' or 'conv'
    drafts: new Map(), // conversation id -> unsent composer text
    outbox: new Map(), // cid -> unacknowledged send
    retryTimers: new Map(), // cid -> automatic retry timer
    presence: new Map(), // user -> online
    sync: { inFlight: false, scope: null, timer: 0, gapTimer: 0, unsupported: false },
    unsupported: new Set(), // frame types this server answered "not supported"
    typingOut: { conv: null, lastStart: 0 },
    banners: [],
    dirty: new Set(), frame: 0, saveTimer: 0,
    stick: true, // scroll the message list to the bottom on its next render
    anchor: null, // {conv, height, top}: keep the view in place after earlier messages load
  };

  // ---- small helpers ----
  const $ = (sel) => document.querySelector(sel);
  const byteLength = (s) => encoder.encode(s).length;
  const normalizeName = (s) => String(s || '').trim().toLowerCase();
  const dmId = (a, b) => (a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`);
  const kindOf = (id) => (id === 'public' ? 'public' : id.startsWith('dm:') ? 'direct' : id.startsWith('g:') ? 'group' : 'other');
  const peerOf = (id) => id.split(':').slice(1).find((u) => u !== state.me) || state.me;
  const convLabel = (id) => (kindOf(id) === 'direct' ? peerOf(id) : kindOf(id) === 'group' ? id.slice(2) : id);
  const maxSeq = (c) => (c.messages.length ? c.messages[c.messages.length - 1].seq : 0);

  function nameProblem(name) {
    if (!name) return 'Enter a user name.';
    if (name.length > 32) return 'A user name has at most 32 characters.';
    return NAME_RE.test(name) ? '' : 'Use only lowercase letters a–z, digits, “_”, “-” and “.”';
  }

  function newCid() {
    if (crypto.randomUUID) return crypto.randomUUID(); // only in secure contexts
    return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function formatTime(ts) {
    const d = new Date(ts);
    const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    if (d.toDateString() === new Date().toDateString()) return time;
    return d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + time;
  }

  // el builds an element; strings and `text` always become text nodes, never HTML.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, String(v));
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  function showFieldError(id, message, input) {
    const node = document.getElementById(id);
    node.textContent = message;
    node.hidden = !message;
    if (input) input.setAttribute('aria-invalid', String(!!message));
  }

  // ---- persistence, per user ----
  function loadUser(user) {
    Object.assign(state, { me: user, selected: 'public', convs: new Map(), outbox: new Map(), presence: new Map(), drafts: new Map() });
    ensureConv('public');
    let saved = null;
    try { saved = JSON.parse(localStorage.getItem(userKey(user)) || 'null'); } catch { saved = null; }
    if (!saved || saved.v !== 1) return;
    for (const [id, s] of Object.entries(saved.convs || {})) {
      const c = ensureConv(id);
      Object.assign(c, { last: s.last || 0, read: s.read || 0, sentRead: s.sentRead || 0, marks: new Map(Object.entries(s.marks || {})) });
      for (const m of s.msgs || []) insertMessage(c, m);
    }
    for (const e of saved.outbox || []) {
      if (e && e.cid && typeof e.body === 'string') state.outbox.set(e.cid, { ...e, status: e.status === 'error' ? 'error' : 'pending' });
    }
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
          msgs: keep ? c.messages.slice(-keep) : [] };
      }
      try { localStorage.setItem(userKey(state.me), JSON.stringify(data)); return; } catch { /* try smaller */ }
    }
  }

  function scheduleSave() {
    if (!state.saveTimer) state.saveTimer = setTimeout(saveNow, 300);
  }

  // ---- conversations and messages ----
  function ensureConv(id) {
    if (!state.convs.has(id)) {
      state.convs.set(id, {
        id, kind: kindOf(id), created: Date.now(),
        messages: [], byId: new Map(), seqs: new Set(), // messages ordered by seq
        last: 0, // last contiguous seq held
        read: 0, sentRead: 0, sentDelivered: 0, receiptAt: 0, receiptTimer: 0, // my receipts
        marks: new Map(), // other member -> {delivered, read}
        typing: new Map(), // user -> timer that clears the indicator
        keep: KEEP_IN_MEMORY, // raised by loading earlier pages
        older: 'more', // earlier history: 'more' to load, 'loading', or 'done'
      });
      invalidate('convs');
      // A direct conversation new to this client: its newest page, then (see the history
      // handler) the peer's marks and whether the peer is online.
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
    if (c.older === 'loading') return;
    const frame = { type: 'history', conv: c.id, limit: PAGE };
    if (!newest && c.messages.length) frame.before = c.messages[0].seq;
    if (send(frame)) { c.older = 'loading'; c.newestPending = newest; invalidate('older'); }
  }

  function onHistory(f) {
    if (typeof f.conv !== 'string' || !Array.isArray(f.messages)) return;
    const c = ensureConv(f.conv);
    const newest = c.newestPending && !f.before;
    c.keep = Math.max(c.keep, c.messages.length + f.messages.length);
    if (!newest && state.selected === c.id) {
      const list = $('#messages');
      state.anchor = { conv: c.id, height: list.scrollHeight, top: list.scrollTop };
    }
    let top = 0;
    for (const m of f.messages) {
      if (typeof m.id !== 'string' || typeof m.seq !== 'number') continue;
      insertMessage(c, m);
      top = Math.max(top, m.seq);
    }
    c.older = f.next_before ? 'more' : 'done';
    if (newest) {
      // Everything up to the newest page is held (older pages load on demand); then the
      // peer's marks, presence and anything newer come by sync (its synced is not needed).
      c.newestPending = false;
      if (top > c.last) c.last = top;
      if (c.kind === 'direct') send({ type: 'sync', since: { [c.id]: c.last }, only: true });
    }
    afterChange(c);
    invalidate('older');
  }

  // insertMessage dedupes by id, keeps seq order and returns whether anything changed.
  function insertMessage(c, m) {
    const old = c.byId.get(m.id);
    if (old) {
      if (!m.deleted || old.deleted) return false;
      Object.assign(old, { deleted: true, body: '' });
      return true;
    }
    const msg = { id: m.id, conv: c.id, seq: m.seq, from: m.from, body: m.deleted ? '' : String(m.body ?? ''),
      ts: m.ts, cid: m.cid || '', to: m.to || '', deleted: !!m.deleted };
    let lo = 0, hi = c.messages.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (c.messages[mid].seq <= msg.seq) lo = mid + 1; else hi = mid;
    }
    c.messages.splice(lo, 0, msg);
    c.byId.set(msg.id, msg);
    c.seqs.add(msg.seq);
    while (c.messages.length > c.keep) {
      const gone = c.messages.shift();
      c.byId.delete(gone.id);
      c.seqs.delete(gone.seq);
    }
    advance(c);
    return true;
  }

  function advance(c) {
    while (c.seqs.has(c.last + 1)) c.last++;
  }

  function afterChange(c) {
    if (maxSeq(c) > c.last) scheduleGapCheck();
    if (isViewing(c.id)) markRead(); else if (c.kind !== 'public') queueReceipt(c);
    invalidate('convs', c.id === state.selected && 'messages');
    scheduleSave();
  }

  function unreadCount(c) {
    let n = 0;
    for (let i = c.messages.length - 1; i >= 0 && c.messages[i].seq > c.read; i--) {
      if (c.messages[i].from !== state.me && !c.messages[i].deleted) n++;
    }
    return n;
  }

  function isViewing(id) {
    return state.view === 'app' && state.selected === id && document.visibilityState === 'visible' &&
      (!narrow.matches || state.mobileView === 'conv');
  }

  function selectConv(id) {
    const body = $('#body');
    if (state.selected !== id) { // each conversation keeps its own draft
      typingStop();
      state.drafts.set(state.selected, body.value);
      body.value = state.drafts.get(id) || '';
    }
    ensureConv(id);
    Object.assign(state, { selected: id, mobileView: 'conv', stick: true });
    markRead();
    invalidate('view', 'convs', 'conv', 'messages', 'typing', 'composer');
    scheduleSave();
    if (!narrow.matches) body.focus();
  }

  // ---- receipts ----
  // markRead marks the conversation on screen read up to its latest message.
  function markRead() {
    const c = state.convs.get(state.selected);
    if (!c || !isViewing(c.id) || maxSeq(c) <= c.read) return;
    c.read = maxSeq(c);
    queueReceipt(c);
    invalidate('convs');
    scheduleSave();
  }

  // queueReceipt sends at most one receipt per conversation per RECEIPT_EVERY_MS.
  function queueReceipt(c) {
    if (c.receiptTimer) return;
    const wait = Math.max(0, c.receiptAt + RECEIPT_EVERY_MS - Date.now());
    c.receiptTimer = setTimeout(() => { c.receiptTimer = 0; flushReceipt(c); }, wait);
  }

  function flushReceipt(c) {
    if (!state.conn.ready || state.convs.get(c.id) !== c) return; // queued again after the next hello
    let status = null, seq = 0;
    if (c.read > c.sentRead) {
      [status, seq] = ['read', c.read];
    } else if (c.kind !== 'public') { // "delivered" only where someone shows it
      const top = c.messages.findLast((m) => m.from !== state.me)?.seq || 0;
      if (top > Math.max(c.sentDelivered, c.sentRead)) [status, seq] = ['delivered', top];
    }
    if (!status) return;
    send({ type: 'receipt', conv: c.id, seq, status });
    c.receiptAt = Date.now();
    if (status === 'read') c.sentRead = seq;
    c.sentDelivered = Math.max(c.sentDelivered, seq);
  }

  // ownStatus is the delivery state shown under one of my sent messages in a DM.
  function ownStatus(c, m) {
    if (c.kind !== 'direct' || m.from !== state.me || !m.id) return '';
    const mark = c.marks.get(peerOf(c.id)) || { delivered: 0, read: 0 };
    return mark.read >= m.seq ? 'read' : mark.delivered >= m.seq ? 'delivered' : 'sent';
  }

  // ---- sending ----
  function submitMessage() {
    const input = $('#body');
    const body = input.value;
    if (!body.trim() || byteLength(body) > MAX_BODY_BYTES) return;
    const conv = state.selected;
    const entry = { cid: newCid(), conv, body, created: Date.now(), status: 'pending', error: null, tries: 0 };
    if (kindOf(conv) === 'direct') entry.to = peerOf(conv);
    state.outbox.set(entry.cid, entry);
    input.value = '';
    state.drafts.delete(conv);
    typingStop();
    transmit(entry);
    state.stick = true;
    invalidate('convs');
    renderComposer();
  }

  // transmit (re)sends an outbox entry with its original cid: the server dedupes by cid.
  function transmit(entry) {
    clearTimeout(state.retryTimers.get(entry.cid));
    state.retryTimers.delete(entry.cid);
    Object.assign(entry, { status: 'pending', error: null });
    const frame = { type: 'send', cid: entry.cid, body: entry.body };
    if (entry.to) frame.to = entry.to; else frame.conv = entry.conv;
    if (state.conn.ready) send(frame); // otherwise resendOutbox sends it after the next hello
    invalidate('messages');
    scheduleSave();
  }

  function resendOutbox() {
    for (const e of [...state.outbox.values()].sort((a, b) => a.created - b.created)) {
      const retryable = e.status === 'error' && RETRYABLE.has(e.error?.code) && !state.retryTimers.has(e.cid);
      if (e.status === 'pending' || retryable) transmit(e);
    }
  }

  function scheduleAutoRetry(entry, afterMs) {
    if (!RETRYABLE.has(entry.error.code) || entry.tries >= MAX_AUTO_RETRIES) return;
    entry.tries++;
    const delay = afterMs > 0 ? afterMs : Math.random() * Math.min(BACKOFF_CAP_MS, 1000 * 2 ** entry.tries);
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
  function sendTyping(conv, st) {
    if (!state.conn.ready) return;
    send(kindOf(conv) === 'direct' ? { type: 'typing', to: peerOf(conv), state: st } : { type: 'typing', conv, state: st });
  }

  function onComposerInput() {
    renderComposer();
    const t = state.typingOut;
    if (!$('#body').value) { typingStop(); return; }
    if (t.conv !== state.selected) typingStop();
    if (Date.now() - t.lastStart < TYPING_START_EVERY_MS) return; // at most one start per interval
    sendTyping(state.selected, 'start');
    Object.assign(t, { conv: state.selected, lastStart: Date.now() });
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
    const since = {};
    for (const c of state.convs.values()) if (scope ? scope.includes(c.id) : c.last > 0) since[c.id] = c.last;
    Object.assign(s, { inFlight: true, scope, timer: setTimeout(endSync, SYNC_TIMEOUT_MS) });
    // A gap fill names its conversations only; a full sync also gets the recent window of
    // every conversation this client does not know yet.
    send(scope ? { type: 'sync', since, only: true } : { type: 'sync', since });
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
    const gaps = [...state.convs.values()].filter((c) => maxSeq(c) > c.last).map((c) => c.id);
    if (gaps.length) requestSync(gaps);
  }

  function onSynced(f) {
    const { scope, inFlight } = state.sync;
    endSync();
    if (!inFlight) return; // a late answer to a sync we gave up on: its seqs prove nothing
    const latest = f.convs && typeof f.convs === 'object' ? f.convs : {};
    for (const [id, seq] of Object.entries(latest)) {
      if (scope && !scope.includes(id)) continue;
      const c = ensureConv(id);
      if (typeof seq === 'number' && seq > c.last) c.last = seq; // the server sent all it has
      advance(c);
      if (c.kind !== 'public') queueReceipt(c);
    }
    // A gap the server says nothing about cannot be filled: stop asking for it.
    for (const id of scope || []) if (!(id in latest) && state.convs.has(id)) state.convs.get(id).last = maxSeq(state.convs.get(id));
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
      if (typeof f.user === 'string' && f.user && f.user !== state.me) { saveNow(); loadUser(f.user); invalidateAll(); }
      state.sync.unsupported = false;
      ['drain', 'close', 'probe'].forEach(clearBanner);
      setStatus('online');
      requestSync(null);
      resendOutbox();
      for (const c of state.convs.values()) queueReceipt(c);
      markRead();
    },
    message(f) {
      if (typeof f.id !== 'string' || typeof f.conv !== 'string' || typeof f.seq !== 'number') return;
      const c = ensureConv(f.conv);
      if (f.from === state.me && f.cid) settle(f.cid); // my own send, acknowledged by its echo
      if (!insertMessage(c, f)) return;
      if (f.from !== state.me) clearTyping(c, f.from);
      afterChange(c);
    },
    sent(f) {
      const entry = state.outbox.get(f.cid);
      if (!entry || typeof f.id !== 'string') return;
      settle(f.cid);
      const c = ensureConv(f.conv || entry.conv);
      insertMessage(c, { id: f.id, seq: f.seq, ts: f.ts, from: state.me, body: entry.body, cid: entry.cid, to: entry.to });
      afterChange(c);
    },
    synced: onSynced,
    history: onHistory,
    error(f) {
      const entry = f.cid && state.outbox.get(f.cid);
      if (entry) {
        entry.status = 'error';
        entry.error = { code: String(f.code || 'error'), message: String(f.message || '') };
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
      if (f.user === state.me) { // my own mark, from another device
        if (f.status === 'read' && f.seq > c.read) Object.assign(c, { read: f.seq, sentRead: Math.max(c.sentRead, f.seq) });
      } else {
        const mark = c.marks.get(f.user) || { delivered: 0, read: 0 };
        if (f.status === 'read') mark.read = Math.max(mark.read, f.seq);
        mark.delivered = Math.max(mark.delivered, f.seq); // read implies delivered
        c.marks.set(f.user, mark);
      }
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
      const conn = state.conn;
      const after = Math.max(0, Number(f.after_ms) || 0);
      conn.drainAt = Date.now() + after;
      const why = f.reason ? ` (${f.reason})` : '';
      addBanner('drain', `Server ${state.server || ''} is going away${why}; reconnecting in about ${Math.ceil(after / 1000)} s.`, 'info');
      const ws = conn.ws;
      clearTimeout(conn.drainTimer);
      conn.drainTimer = setTimeout(() => { if (conn.ws === ws) dropSocket(ws, 'reconnect requested'); }, after);
    },
    pong(f) {
      state.conn.pingOutstanding = false;
      if (typeof f.t === 'number') state.conn.rtt = Math.max(0, Date.now() - f.t);
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
    if (!ws || ws.readyState !== WebSocket.OPEN || state.unsupported.has(frame.type)) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  function connect() {
    const conn = state.conn;
    clearTimeout(conn.timer);
    if (!state.me || conn.ws || conn.stopped) return;
    if (navigator.onLine === false) { setStatus('offline'); return; } // the 'online' event retries
    setStatus('connecting');
    let ws;
    try {
      ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + endpointPath());
    } catch (err) { onClosed(null, { code: 1006, reason: String(err) }); return; }
    conn.ws = ws;
    state.unsupported.clear(); // the next server may know more
    ws.onopen = () => { conn.openedAt = conn.lastRx = Date.now(); startPing(); };
    ws.onmessage = (ev) => onFrame(ev.data);
    ws.onclose = (ev) => onClosed(ws, ev);
    ws.onerror = () => {}; // a close event always follows
  }

  function onFrame(data) {
    state.conn.lastRx = Date.now();
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
    const conn = state.conn;
    if (conn.ws !== ws) return;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    const wasOpen = conn.openedAt > 0;
    const upFor = wasOpen ? Date.now() - conn.openedAt : 0;
    Object.assign(conn, { ws: null, ready: false, openedAt: 0 });
    clearInterval(conn.pingTimer);
    clearTimeout(conn.drainTimer);
    endSync();
    state.typingOut.conv = null;
    if (conn.stopped) { setStatus('offline'); return; }
    const reason = ev.reason || '';
    if (ev.code === 1008 && AUTH_CLOSE_RE.test(reason)) { backToLogin(reason); return; }
    if (ev.code === 4001 && state.token) { backToLogin('Your session expired. Sign in again.'); return; }
    if (reason && ![1000, 1001, 1006, 4000].includes(ev.code)) addBanner('close', `Disconnected (${ev.code}): ${reason}`, 'info');
    if (upFor >= STABLE_MS) conn.attempt = 0;
    conn.failures = wasOpen ? 0 : conn.failures + 1;
    // 4000 slow consumer, 1001 going away, network errors: all come back (a drain at its time).
    scheduleReconnect(conn.drainAt ? Math.max(0, conn.drainAt - Date.now()) : undefined);
    conn.drainAt = 0;
    if (!wasOpen && (conn.failures === 1 || conn.failures % 5 === 0)) probe();
  }

  // scheduleReconnect waits `exact` ms, or a full-jitter exponential backoff delay.
  function scheduleReconnect(exact) {
    const conn = state.conn;
    let delay = exact;
    if (delay == null) {
      delay = Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** conn.attempt);
      conn.attempt = Math.min(conn.attempt + 1, 20);
    }
    clearTimeout(conn.timer);
    conn.retryAt = Date.now() + delay;
    conn.timer = setTimeout(connect, delay);
    setStatus('reconnecting');
  }

  // probe learns why a handshake failed, which browsers hide: a plain GET of the same URL gets
  // the pre-upgrade answer (401 bad credentials or user name, 403, 503 with Retry-After).
  async function probe() {
    let res, message = '';
    try {
      res = await fetch(endpointPath(), { cache: 'no-store', credentials: 'same-origin' });
      message = (await res.json())?.error?.message || '';
    } catch { if (!res) return; }
    const conn = state.conn;
    if (conn.stopped || conn.ws) return;
    if (res.status === 401 || (res.status === 400 && /user/i.test(message))) {
      backToLogin(message);
    } else if (res.status === 403) {
      addBanner('probe', 'The server refused the connection: ' + (message || 'forbidden'), 'error');
    } else if (res.status === 503) {
      const after = (Number(res.headers.get('Retry-After')) || 0) * 1000;
      if (after > conn.retryAt - Date.now()) scheduleReconnect(after + Math.random() * 1000);
    }
  }

  function startPing() {
    const conn = state.conn;
    clearInterval(conn.pingTimer);
    conn.pingOutstanding = false;
    conn.pingTimer = setInterval(() => {
      if (!conn.ws) return;
      // A whole interval with no pong nor any other frame: the connection is dead.
      if (conn.pingOutstanding && Date.now() - conn.lastRx >= PING_MS) { dropSocket(conn.ws, 'no answer to ping'); return; }
      conn.pingOutstanding = send({ type: 'ping', t: Date.now() });
    }, PING_MS);
  }

  function setStatus(status) {
    const conn = state.conn;
    conn.status = status;
    clearInterval(conn.tick);
    if (status === 'reconnecting') conn.tick = setInterval(() => invalidate('status'), 1000); // countdown
    invalidate('status');
  }

  // ---- login / logout ----
  function login(name) {
    try { localStorage.setItem(KEY_USER, name); } catch { /* storage disabled */ }
    loadUser(name);
    Object.assign(state, { view: 'app', loginError: '', server: null, banners: [], mobileView: 'conv', stick: true });
    Object.assign(state.conn, { stopped: false, attempt: 0, failures: 0, rtt: null, drainAt: 0 });
    $('#body').value = '';
    connect();
    invalidateAll();
  }

  function logout(message) {
    typingStop();
    saveNow();
    const conn = state.conn;
    conn.stopped = true;
    clearTimeout(conn.timer);
    if (conn.ws) dropSocket(conn.ws, 'switching user');
    setStatus('offline');
    state.retryTimers.forEach(clearTimeout);
    state.retryTimers.clear();
    try { localStorage.removeItem(KEY_USER); localStorage.removeItem(KEY_TOKEN); } catch { /* storage disabled */ }
    state.token = null;
    $('#name').value = state.me || '';
    $('#password').value = '';
    Object.assign(state, { me: null, server: null, convs: new Map(), outbox: new Map(), banners: [], view: 'login', loginError: message || '' });
    invalidateAll();
    $('#name').focus();
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

  // ---- rendering ----
  const RENDER = {
    view: renderView, status: renderStatus, banners: renderBanners, convs: renderConvs, conv: renderConvHeader,
    messages: renderMessages, typing: renderTyping, composer: renderComposer, older: renderOlder,
  };
  let msgNodes = new Map(); // message key -> {node, sig}, for the selected conversation

  function invalidate(...regions) {
    for (const r of regions) if (r) state.dirty.add(r);
    if (state.frame || !state.dirty.size) return;
    // Hidden tabs get no animation frames; a timer keeps the title's unread count fresh.
    state.frame = document.hidden ? setTimeout(render, 250) : requestAnimationFrame(render);
  }

  const invalidateAll = () => invalidate(...Object.keys(RENDER));

  function render() {
    const dirty = state.dirty;
    state.frame = 0;
    state.dirty = new Set();
    for (const [region, fn] of Object.entries(RENDER)) {
      if (dirty.has(region) && (region === 'view' || state.view === 'app')) fn();
    }
  }

  function renderView() {
    $('#login-view').hidden = state.view !== 'login';
    $('#app').hidden = state.view !== 'app';
    showFieldError('login-error', state.loginError);
    document.body.classList.toggle('show-conv', state.mobileView === 'conv');
    if (state.view === 'login') document.title = 'Switchboard';
  }

  function renderStatus() {
    const conn = state.conn;
    const wait = Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000));
    $('#me').textContent = state.me || '';
    $('#server').textContent = state.server || '…';
    $('#status').dataset.state = conn.status;
    $('#status-text').textContent = conn.status === 'reconnecting' ? `reconnecting in ${wait}s` : conn.status;
    $('#rtt').textContent = conn.status === 'online' && conn.rtt != null ? `${conn.rtt} ms` : '';
  }

  function renderBanners() {
    $('#banners').replaceChildren(...state.banners.map((b) => el('div', { class: 'banner ' + b.kind, role: b.kind === 'error' ? 'alert' : 'status' },
      el('span', { class: 'banner-text', text: b.text }),
      el('button', { type: 'button', class: 'ghost dismiss', 'aria-label': 'Dismiss', text: '×', onclick: () => clearBanner(b.tag) }))));
  }

  // presenceDot shows online/offline once the server has said; until then
  // (or with a server that sends no presence) it shows an unknown state.
  function presenceDot(user) {
    const known = state.presence.has(user);
    const online = state.presence.get(user) === true;
    const label = known ? (online ? 'online' : 'offline') : 'presence unknown';
    return el('span', { class: 'presence', 'data-online': known ? String(online) : 'unknown', role: 'img', 'aria-label': label });
  }

  function convOrder(a, b) {
    if (a.id === 'public' || b.id === 'public') return a.id === 'public' ? -1 : 1;
    const activity = (c) => (c.messages.length ? c.messages[c.messages.length - 1].ts : c.created);
    return activity(b) - activity(a) || convLabel(a.id).localeCompare(convLabel(b.id));
  }

  function convItem(c, unread) {
    const last = c.messages[c.messages.length - 1];
    const preview = last ? `${last.from === state.me ? 'you' : last.from}: ${last.deleted ? 'message deleted' : last.body}` : '';
    const icon = c.kind === 'direct' ? presenceDot(peerOf(c.id))
      : el('span', { class: 'conv-icon', 'aria-hidden': 'true', text: c.kind === 'public' ? '#' : '◆' });
    return el('li', {}, el('button', {
      type: 'button', class: 'conv', 'data-conv': c.id, 'data-testid': 'conv',
      'aria-current': c.id === state.selected ? 'true' : null, onclick: () => selectConv(c.id),
    }, icon,
    el('span', { class: 'conv-text' },
      el('span', { class: 'conv-name', text: convLabel(c.id) }),
      el('span', { class: 'conv-preview', text: preview.slice(0, 80) })),
    unread ? el('span', { class: 'badge', 'data-testid': 'unread', 'aria-label': `${unread} unread`, text: unread > 99 ? '99+' : String(unread) }) : null));
  }

  function renderConvs() {
    const list = $('#convs');
    const focused = document.activeElement?.dataset?.conv;
    const convs = [...state.convs.values()].sort(convOrder);
    const unread = convs.map(unreadCount);
    list.replaceChildren(...convs.map((c, i) => convItem(c, unread[i])));
    if (focused) list.querySelector(`[data-conv="${CSS.escape(focused)}"]`)?.focus();
    const total = unread.reduce((a, b) => a + b, 0);
    document.title = total ? `(${total}) Switchboard` : 'Switchboard';
  }

  function renderConvHeader() {
    const id = state.selected;
    const direct = kindOf(id) === 'direct';
    const online = direct && state.presence.get(peerOf(id)) === true;
    const known = direct && state.presence.has(peerOf(id));
    $('#conv-title').textContent = id === 'public' ? '# public' : convLabel(id);
    $('#conv-presence').replaceChildren(...(direct ? [presenceDot(peerOf(id)), known ? (online ? ' online' : ' offline') : ''] : []));
  }

  // Items are stored messages or outbox entries (no id yet). My messages are keyed by cid,
  // so a pending bubble becomes the sent one in place.
  const messageKey = (m) => (m.cid && (!m.id || m.from === state.me) ? 'c:' + m.cid : 'i:' + m.id);
  const messageSig = (c, m) => [m.id, m.deleted, m.status, m.error?.code, m.error?.message, ownStatus(c, m)].join('|');

  function fillMessage(node, c, m) {
    const pending = !m.id;
    const own = pending || m.from === state.me;
    const status = pending ? m.status : 'sent';
    node.className = ['msg', own && 'own', pending && status, m.deleted && 'deleted'].filter(Boolean).join(' ');
    Object.assign(node.dataset, { testid: 'message', status }, m.id && { id: m.id }, m.cid && { cid: m.cid }, m.seq && { seq: m.seq });
    const ts = Number(m.id ? m.ts : m.created) || Date.now();
    const receipt = ownStatus(c, m);
    const foot = [
      status === 'pending' && el('span', { class: 'msg-state', text: 'sending…' }),
      status === 'error' && el('span', { class: 'msg-error', 'data-testid': 'send-error', text: `${m.error.code}: ${m.error.message}` }),
      status === 'error' && el('button', { type: 'button', class: 'link', 'data-action': 'retry', 'data-testid': 'retry', text: 'Retry' }),
      status === 'error' && el('button', { type: 'button', class: 'link', 'data-action': 'discard', text: 'Discard' }),
      receipt && el('span', { class: 'msg-state ' + receipt, 'data-testid': 'receipt', text: receipt }),
    ].filter(Boolean);
    node.replaceChildren(
      el('div', { class: 'msg-meta' },
        el('span', { class: 'msg-from', text: own ? state.me : m.from }), ' ',
        el('time', { datetime: new Date(ts).toISOString(), title: new Date(ts).toLocaleString(), text: formatTime(ts) })),
      el('div', { class: 'msg-body', text: m.deleted ? 'message deleted' : m.body }),
      el('div', { class: 'msg-foot', hidden: !foot.length }, ...foot));
  }

  // renderMessages reconciles the list by key: unchanged messages keep their nodes.
  function renderMessages() {
    const list = $('#messages');
    const c = ensureConv(state.selected);
    if (list.dataset.conv !== c.id) {
      list.replaceChildren();
      msgNodes = new Map();
      list.dataset.conv = c.id;
    }
    const nearBottom = state.stick || list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    const pending = [...state.outbox.values()].filter((e) => e.conv === c.id).sort((a, b) => a.created - b.created);
    const items = c.messages.concat(pending); // sent messages by seq, then pending ones
    const next = new Map();
    let cursor = list.firstChild;
    for (const m of items) {
      const key = messageKey(m);
      const rec = msgNodes.get(key) || { node: el('li', {}), sig: null };
      const sig = messageSig(c, m);
      if (rec.sig !== sig) { fillMessage(rec.node, c, m); rec.sig = sig; }
      next.set(key, rec);
      if (rec.node === cursor) cursor = cursor.nextSibling; else list.insertBefore(rec.node, cursor);
    }
    while (cursor) { const after = cursor.nextSibling; cursor.remove(); cursor = after; }
    msgNodes = next;
    $('#empty').hidden = items.length > 0;
    const anchor = state.anchor;
    if (anchor && anchor.conv === c.id) {
      // Earlier messages went in above: keep the ones on screen where they were.
      list.scrollTop = list.scrollHeight - anchor.height + anchor.top;
    } else if (nearBottom) list.scrollTop = list.scrollHeight;
    Object.assign(state, { stick: false, anchor: null });
    renderOlder();
  }

  // renderOlder shows "Load earlier messages" while the conversation has older pages.
  function renderOlder() {
    const c = state.convs.get(state.selected);
    const button = $('#older');
    const first = c && c.messages[0];
    button.hidden = !first || first.seq <= 1 || c.older === 'done' || state.unsupported.has('history');
    button.disabled = !!c && c.older === 'loading';
    button.textContent = button.disabled ? 'Loading…' : 'Load earlier messages';
  }

  function renderTyping() {
    const names = [...(state.convs.get(state.selected)?.typing.keys() || [])];
    $('#typing').textContent = names.length === 0 ? ''
      : names.length === 1 ? `${names[0]} is typing…`
      : names.length === 2 ? `${names[0]} and ${names[1]} are typing…` : `${names.length} people are typing…`;
  }

  function renderComposer() {
    const body = $('#body');
    const bytes = byteLength(body.value);
    const over = bytes > MAX_BODY_BYTES;
    const counter = $('#counter');
    counter.textContent = over ? `${bytes} / ${MAX_BODY_BYTES} bytes: too long`
      : bytes > MAX_BODY_BYTES * 0.75 ? `${bytes} / ${MAX_BODY_BYTES} bytes` : '';
    counter.classList.toggle('over', over);
    body.setAttribute('aria-invalid', String(over));
    $('#send').disabled = over || !body.value.trim();
    body.placeholder = state.selected === 'public' ? 'Message #public' : `Message ${convLabel(state.selected)}`;
    body.style.height = 'auto'; // grow with the text, up to the CSS max-height
    if (body.scrollHeight) body.style.height = body.scrollHeight + body.offsetHeight - body.clientHeight + 'px';
  }

  // ---- accounts (jwt auth mode) ----
  // applyAuthMode shows the password, "Create account" and "Log out" in jwt mode.
  function applyAuthMode() {
    const jwt = state.authMode === 'jwt';
    $('#password-field').hidden = !jwt;
    $('#register-submit').hidden = !jwt;
    $('#login-submit').textContent = jwt ? 'Log in' : 'Join';
    $('#login-lead').textContent = jwt ? 'Log in, or create an account.' : 'Pick a user name to join the chat.';
    $('#switch-user').textContent = jwt ? 'Log out' : 'Switch user';
  }

  // authenticate registers or logs in over REST; it answers the token's user or throws a message.
  async function authenticate(register, name, password) {
    let res, data = {};
    try {
      res = await fetch('/api/auth/' + (register ? 'register' : 'login'), {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username: name, password }),
      });
      data = await res.json();
    } catch { if (!res) throw new Error('The server cannot be reached. Try again.'); }
    if (res.ok && data.token) {
      state.token = data.token;
      try { localStorage.setItem(KEY_TOKEN, data.token); } catch { /* storage disabled: this tab only */ }
      return data.user.id;
    }
    const message = data?.error?.message || '';
    switch (res.status) {
      case 401: throw new Error('Wrong user name or password.');
      case 409: throw new Error('That user name is taken: log in, or pick another.');
      case 429: throw new Error(`Too many attempts. Try again in ${res.headers.get('Retry-After') || 'a few'} s.`);
      default: throw new Error(message ? message.charAt(0).toUpperCase() + message.slice(1) + '.' : `The server answered ${res.status}.`);
    }
  }

  // resumeSession logs in with a stored token that the server still accepts.
  async function resumeSession() {
    let token = null;
    try { token = localStorage.getItem(KEY_TOKEN); } catch { /* storage disabled */ }
    if (!token) return false;
    try {
      const res = await fetch('/api/auth/me', { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' });
      if (res.ok) {
        state.token = token;
        login((await res.json()).user.id);
        return true;
      }
      if (res.status === 401) state.loginError = 'Your session expired. Log in again.';
    } catch { /* offline: log in again */ }
    try { localStorage.removeItem(KEY_TOKEN); } catch { /* storage disabled */ }
    return false;
  }

  // ---- UI events ----
  async function onLoginSubmit(ev) {
    ev.preventDefault();
    const name = normalizeName($('#name').value);
    const register = ev.submitter?.id === 'register-submit';
    const password = $('#password').value;
    state.loginError = nameProblem(name);
    if (!state.loginError && state.authMode === 'jwt' && register && encoder.encode(password).length < 8) {
      state.loginError = 'Pick a password of at least 8 characters.';
    }
    showFieldError('login-error', state.loginError, $('#name'));
    if (state.loginError) return;
    if (state.authMode !== 'jwt') { login(name); return; }
    const buttons = [$('#login-submit'), $('#register-submit')];
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const user = await authenticate(register, name, password);
      $('#password').value = '';
      login(user);
    } catch (err) {
      state.loginError = err.message;
      showFieldError('login-error', state.loginError, $('#password'));
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  function onDmSubmit(ev) {
    ev.preventDefault();
    const input = $('#dm-to');
    const name = normalizeName(input.value);
    const problem = nameProblem(name) || (name === state.me ? 'That is you: pick someone else.' : '');
    showFieldError('dm-error', problem, input);
    if (problem) return;
    input.value = '';
    selectConv(dmId(state.me, name));
  }

  function onMessagesClick(ev) {
    const button = ev.target.closest('button[data-action]');
    const entry = state.outbox.get(button?.closest('li')?.dataset.cid);
    if (!entry) return;
    if (button.dataset.action === 'discard') { settle(entry.cid); return; }
    entry.tries = 0; // a manual retry earns a fresh set of automatic ones
    transmit(entry);
  }

  function onBodyKeydown(ev) {
    // isComposing / 229: an Enter that confirms an IME composition must not send.
    if (ev.key !== 'Enter' || ev.shiftKey || ev.isComposing || ev.keyCode === 229) return;
    ev.preventDefault();
    submitMessage();
  }

  function wire() {
    $('#login').addEventListener('submit', onLoginSubmit);
    $('#switch-user').addEventListener('click', () => logout(''));
    $('#dm-form').addEventListener('submit', onDmSubmit);
    $('#messages').addEventListener('click', onMessagesClick);
    $('#older').addEventListener('click', () => {
      const c = state.convs.get(state.selected);
      if (c) loadHistory(c, false);
    });
    $('#composer').addEventListener('submit', (ev) => { ev.preventDefault(); submitMessage(); });
    $('#body').addEventListener('keydown', onBodyKeydown);
    $('#body').addEventListener('input', onComposerInput);
    $('#body').addEventListener('blur', typingStop);
    $('#back').addEventListener('click', () => { state.mobileView = 'list'; typingStop(); invalidate('view'); });
    narrow.addEventListener('change', () => { markRead(); invalidate('view'); });
    window.addEventListener('pagehide', saveNow);
    document.addEventListener('visibilitychange', () => {
      state.frame = 0; // a pending animation frame does not run while hidden
      markRead();
      invalidateAll();
    });
    window.addEventListener('online', () => {
      const conn = state.conn;
      if (state.me && !conn.ws && !conn.stopped) { conn.attempt = 0; connect(); }
    });
  }

  async function start() {
    wire();
    try {
      const res = await fetch('/api/auth/mode', { cache: 'no-store' });
      if (res.ok && (await res.json()).mode === 'jwt') state.authMode = 'jwt';
    } catch { /* an older gateway: open mode */ }
    applyAuthMode();
    let remembered = null;
    try { remembered = localStorage.getItem(KEY_USER); } catch { /* storage disabled */ }
    if (state.authMode === 'jwt') {
      if (await resumeSession()) return;
    } else if (remembered && !nameProblem(remembered)) {
      login(remembered);
      return;
    }
    invalidate('view');
    showFieldError('login-error', state.loginError);
    $('#name').focus();
  }
  start();
})();
