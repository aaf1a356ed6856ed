// Switchboard browser client: the page. The protocol and the state live in core/ (no DOM);
// this module renders that state, one function per screen region, and wires the controls.

import { MAX_BODY_BYTES, byteLength, dmId, kindOf, nameProblem, normalizeName } from './core/ids.js';
import { hasOlder, lastMessage, ownStatus, unreadCount } from './core/conv.js';
import { createSession, KEY_TOKEN, KEY_USER } from './core/session.js';
import { createApi, authMessage } from './core/api.js';
import { $, el, formatTime, showFieldError, storage } from './ui/dom.js';
import { createGroups } from './ui/groups.js';

const narrow = window.matchMedia('(max-width: 720px)');

// ui is the page's own state; the protocol's is session.state.
const ui = {
  view: 'login', loginError: '', // view: 'login' | 'app'
  authMode: 'open', // from GET /api/auth/mode: 'jwt' (accounts) or 'open'
  mobileView: 'conv', // narrow screens show either 'list' or 'conv'
  drafts: new Map(), // conversation id -> unsent composer text
  dirty: new Set(), frame: 0,
  stick: true, // scroll the message list to the bottom on its next render
  anchor: null, // {conv, height, top}: keep the view in place after earlier messages load
};

const session = createSession({
  invalidate, invalidateAll: () => invalidateAll(),
  isViewing, online: () => navigator.onLine !== false,
  openSocket: (path) => new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path),
  fetch: (...args) => fetch(...args),
  storage,
  beforeOlderPage(c) {
    if (state.selected !== c.id) return;
    const list = $('#messages');
    ui.anchor = { conv: c.id, height: list.scrollHeight, top: list.scrollTop };
  },
  connected: refreshConversations,
  newConversation: (c) => groups.newConversation(c),
  loggedOut(message, me) {
    groups.reset();
    $('#name').value = me || '';
    $('#password').value = '';
    Object.assign(ui, { view: 'login', loginError: message, drafts: new Map() });
    invalidateAll();
    $('#name').focus();
  },
  now: () => Date.now(), random: Math.random,
  setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (t) => clearTimeout(t),
  setInterval: (fn, ms) => setInterval(fn, ms), clearInterval: (t) => clearInterval(t),
});
const state = session.state;
const api = createApi({ token: () => state.token, user: () => state.me });
const groups = createGroups({ session, api, selectConv, invalidate });

// refreshConversations takes the server's list (unread counts, last messages, group names);
// frames keep it current afterwards. An older gateway without the REST API: frames only.
async function refreshConversations() {
  try {
    session.applySummaries((await api.conversations()).conversations);
  } catch { /* not available: the list is built from frames */ }
}

function isViewing(id) {
  return ui.view === 'app' && state.selected === id && document.visibilityState === 'visible' &&
    (!narrow.matches || ui.mobileView === 'conv');
}

function selectConv(id) {
  const body = $('#body');
  const changed = state.selected !== id;
  if (changed) { // each conversation keeps its own draft
    ui.drafts.set(state.selected, body.value);
    body.value = ui.drafts.get(id) || '';
  }
  Object.assign(ui, { mobileView: 'conv', stick: true });
  session.select(id);
  if (changed) groups.selected();
  invalidate('view', 'convs', 'conv', 'members', 'messages', 'typing', 'composer');
  if (!narrow.matches) body.focus();
}

function submitMessage() {
  const input = $('#body');
  const body = input.value;
  if (!body.trim() || byteLength(body) > MAX_BODY_BYTES) return;
  input.value = '';
  ui.drafts.delete(state.selected);
  session.submit(body);
  ui.stick = true;
  renderComposer();
}

function login(name) {
  Object.assign(ui, { view: 'app', loginError: '', mobileView: 'conv', stick: true, drafts: new Map() });
  $('#body').value = '';
  session.login(name);
  invalidateAll();
}

// ---- rendering ----
const RENDER = {
  view: renderView, status: renderStatus, banners: renderBanners, convs: renderConvs, conv: renderConvHeader,
  members: () => groups.render(), messages: renderMessages, typing: renderTyping, composer: renderComposer, older: renderOlder,
};
let msgNodes = new Map(); // message key -> {node, sig}, for the selected conversation

function invalidate(...regions) {
  for (const r of regions) if (r) ui.dirty.add(r);
  if (ui.frame || !ui.dirty.size) return;
  // Hidden tabs get no animation frames; a timer keeps the title's unread count fresh.
  ui.frame = document.hidden ? setTimeout(render, 250) : requestAnimationFrame(render);
}

function invalidateAll() { invalidate(...Object.keys(RENDER)); }

function render() {
  const dirty = ui.dirty;
  ui.frame = 0;
  ui.dirty = new Set();
  for (const [region, fn] of Object.entries(RENDER)) {
    if (dirty.has(region) && (region === 'view' || ui.view === 'app')) fn();
  }
}

function renderView() {
  $('#login-view').hidden = ui.view !== 'login';
  $('#app').hidden = ui.view !== 'app';
  showFieldError('login-error', ui.loginError);
  document.body.classList.toggle('show-conv', ui.mobileView === 'conv');
  if (ui.view === 'login') document.title = 'Switchboard';
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
    el('button', { type: 'button', class: 'ghost dismiss', 'aria-label': 'Dismiss', text: '×', onclick: () => session.clearBanner(b.tag) }))));
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
  const activity = (c) => lastMessage(c)?.ts || c.created;
  return activity(b) - activity(a) || session.convLabel(a.id).localeCompare(session.convLabel(b.id));
}

function convItem(c, unread) {
  const last = lastMessage(c);
  const preview = last ? `${last.from === state.me ? 'you' : last.from}: ${last.deleted ? 'message deleted' : last.body}` : '';
  const icon = c.kind === 'direct' ? presenceDot(session.peer(c.id))
    : el('span', { class: 'conv-icon', 'aria-hidden': 'true', text: c.kind === 'public' ? '#' : '◆' });
  return el('li', {}, el('button', {
    type: 'button', class: 'conv', 'data-conv': c.id, 'data-testid': 'conv',
    'aria-current': c.id === state.selected ? 'true' : null, onclick: () => selectConv(c.id),
  }, icon,
  el('span', { class: 'conv-text' },
    el('span', { class: 'conv-name', text: session.convLabel(c.id) }),
    el('span', { class: 'conv-preview', text: preview.slice(0, 80) })),
  unread ? el('span', { class: 'badge', 'data-testid': 'unread', 'aria-label': `${unread} unread`, text: unread > 99 ? '99+' : String(unread) }) : null));
}

function renderConvs() {
  const list = $('#convs');
  const focused = document.activeElement?.dataset?.conv;
  const convs = [...state.convs.values()].sort(convOrder);
  const unread = convs.map((c) => unreadCount(c, state.me));
  list.replaceChildren(...convs.map((c, i) => convItem(c, unread[i])));
  if (focused) list.querySelector(`[data-conv="${CSS.escape(focused)}"]`)?.focus();
  const total = unread.reduce((a, b) => a + b, 0);
  document.title = total ? `(${total}) Switchboard` : 'Switchboard';
}

function renderConvHeader() {
  const id = state.selected;
  const direct = kindOf(id) === 'direct';
  const peer = direct ? session.peer(id) : null;
  const online = direct && state.presence.get(peer) === true;
  const known = direct && state.presence.has(peer);
  $('#conv-title').textContent = id === 'public' ? '# public' : session.convLabel(id);
  $('#conv-presence').replaceChildren(...(direct ? [presenceDot(peer), known ? (online ? ' online' : ' offline') : ''] : []));
}

// Items are stored messages or outbox entries (no id yet). My messages are keyed by cid,
// so a pending bubble becomes the sent one in place.
const messageKey = (m) => (m.cid && (!m.id || m.from === state.me) ? 'c:' + m.cid : 'i:' + m.id);
const messageSig = (c, m) =>
  [m.id, m.deleted, m.status, m.error?.code, m.error?.message, ownStatus(c, m, state.me), groups.canDelete(c, m)].join('|');

function fillMessage(node, c, m) {
  const pending = !m.id;
  const own = pending || m.from === state.me;
  const status = pending ? m.status : 'sent';
  node.className = ['msg', own && 'own', pending && status, m.deleted && 'deleted'].filter(Boolean).join(' ');
  Object.assign(node.dataset, { testid: 'message', status }, m.id && { id: m.id }, m.cid && { cid: m.cid }, m.seq && { seq: m.seq });
  const ts = Number(m.id ? m.ts : m.created) || Date.now();
  const receipt = ownStatus(c, m, state.me);
  const foot = [
    status === 'pending' && el('span', { class: 'msg-state', text: 'sending…' }),
    status === 'error' && el('span', { class: 'msg-error', 'data-testid': 'send-error', text: `${m.error.code}: ${m.error.message}` }),
    status === 'error' && el('button', { type: 'button', class: 'link', 'data-action': 'retry', 'data-testid': 'retry', text: 'Retry' }),
    status === 'error' && el('button', { type: 'button', class: 'link', 'data-action': 'discard', text: 'Discard' }),
    receipt && el('span', { class: 'msg-state ' + receipt, 'data-testid': 'receipt', text: receipt }),
    groups.canDelete(c, m) && el('button', { type: 'button', class: 'link', 'data-action': 'delete', 'data-testid': 'delete',
      'aria-label': 'Delete this message', text: 'Delete' }),
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
  const c = session.ensureConv(state.selected);
  if (list.dataset.conv !== c.id) {
    list.replaceChildren();
    msgNodes = new Map();
    list.dataset.conv = c.id;
  }
  const nearBottom = ui.stick || list.scrollHeight - list.scrollTop - list.clientHeight < 80;
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
  const anchor = ui.anchor;
  if (anchor && anchor.conv === c.id) {
    // Earlier messages went in above: keep the ones on screen where they were.
    list.scrollTop = list.scrollHeight - anchor.height + anchor.top;
  } else if (nearBottom) list.scrollTop = list.scrollHeight;
  Object.assign(ui, { stick: false, anchor: null });
  renderOlder();
}

// renderOlder shows "Load earlier messages" while the conversation has older pages.
function renderOlder() {
  const c = state.convs.get(state.selected);
  const button = $('#older');
  button.hidden = !hasOlder(c) || state.unsupported.has('history');
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
  body.placeholder = state.selected === 'public' ? 'Message #public' : `Message ${session.convLabel(state.selected)}`;
  body.style.height = 'auto'; // grow with the text, up to the CSS max-height
  if (body.scrollHeight) body.style.height = body.scrollHeight + body.offsetHeight - body.clientHeight + 'px';
}

// ---- accounts (jwt auth mode) ----
// applyAuthMode shows the password, "Create account" and "Log out" in jwt mode.
function applyAuthMode() {
  const jwt = ui.authMode === 'jwt';
  $('#password-field').hidden = !jwt;
  $('#register-submit').hidden = !jwt;
  $('#login-submit').textContent = jwt ? 'Log in' : 'Join';
  $('#login-lead').textContent = jwt ? 'Log in, or create an account.' : 'Pick a user name to join the chat.';
  $('#switch-user').textContent = jwt ? 'Log out' : 'Switch user';
}

// authenticate registers or logs in over REST; it answers the token's user or throws a message.
async function authenticate(register, name, password) {
  let data;
  try {
    data = await (register ? api.register(name, password) : api.login(name, password));
  } catch (err) {
    throw new Error(authMessage(err));
  }
  state.token = data.token;
  try { storage.set(KEY_TOKEN, data.token); } catch { /* storage disabled: this tab only */ }
  return data.user.id;
}

// resumeSession logs in with a stored token that the server still accepts.
async function resumeSession() {
  let token = null;
  try { token = storage.get(KEY_TOKEN); } catch { /* storage disabled */ }
  if (!token) return false;
  state.token = token;
  try {
    login((await api.me()).user.id);
    return true;
  } catch (err) {
    state.token = null;
    if (err.status === 401) ui.loginError = 'Your session expired. Log in again.';
  }
  try { storage.remove(KEY_TOKEN); } catch { /* storage disabled */ }
  return false;
}

// ---- UI events ----
async function onLoginSubmit(ev) {
  ev.preventDefault();
  const name = normalizeName($('#name').value);
  const register = ev.submitter?.id === 'register-submit';
  const password = $('#password').value;
  ui.loginError = nameProblem(name);
  if (!ui.loginError && ui.authMode === 'jwt' && register && byteLength(password) < 8) {
    ui.loginError = 'Pick a password of at least 8 characters.';
  }
  showFieldError('login-error', ui.loginError, $('#name'));
  if (ui.loginError) return;
  if (ui.authMode !== 'jwt') { login(name); return; }
  const buttons = [$('#login-submit'), $('#register-submit')];
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const user = await authenticate(register, name, password);
    $('#password').value = '';
    login(user);
  } catch (err) {
    ui.loginError = err.message;
    showFieldError('login-error', ui.loginError, $('#password'));
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
  if (button?.dataset.action === 'delete') { deleteMessage(button); return; }
  const cid = button?.closest('li')?.dataset.cid;
  if (!cid || !state.outbox.has(cid)) return;
  if (button.dataset.action === 'discard') session.settle(cid);
  else session.retry(cid);
}

// deleteMessage replaces a message with a tombstone (DELETE /api/messages/{id}); every
// member's window shows "message deleted" when its tombstone frame arrives.
async function deleteMessage(button) {
  const c = state.convs.get(state.selected);
  const m = c?.byId.get(button.closest('li')?.dataset.id);
  if (!m) return;
  button.disabled = true;
  try {
    await api.deleteMessage(m.id);
    session.deleted(m);
    $('#body').focus();
  } catch (err) {
    button.disabled = false;
    session.addBanner('delete', `The message was not deleted: ${err.message}.`, 'error');
  }
}

function onBodyKeydown(ev) {
  // isComposing / 229: an Enter that confirms an IME composition must not send.
  if (ev.key !== 'Enter' || ev.shiftKey || ev.isComposing || ev.keyCode === 229) return;
  ev.preventDefault();
  submitMessage();
}

function onComposerInput() {
  renderComposer();
  session.typingInput(!$('#body').value);
}

function wire() {
  $('#login').addEventListener('submit', onLoginSubmit);
  $('#switch-user').addEventListener('click', () => session.logout(''));
  $('#dm-form').addEventListener('submit', onDmSubmit);
  groups.wire();
  $('#messages').addEventListener('click', onMessagesClick);
  $('#older').addEventListener('click', () => {
    const c = state.convs.get(state.selected);
    if (c) session.loadHistory(c, false);
  });
  $('#composer').addEventListener('submit', (ev) => { ev.preventDefault(); submitMessage(); });
  $('#body').addEventListener('keydown', onBodyKeydown);
  $('#body').addEventListener('input', onComposerInput);
  $('#body').addEventListener('blur', session.typingStop);
  $('#back').addEventListener('click', () => { ui.mobileView = 'list'; session.typingStop(); invalidate('view'); });
  narrow.addEventListener('change', () => { session.markRead(); invalidate('view'); });
  window.addEventListener('pagehide', session.saveNow);
  document.addEventListener('visibilitychange', () => {
    ui.frame = 0; // a pending animation frame does not run while hidden
    session.markRead();
    invalidateAll();
  });
  window.addEventListener('online', session.online);
}

async function start() {
  wire();
  try {
    if ((await api.mode()).mode === 'jwt') ui.authMode = 'jwt';
  } catch { /* an older gateway: open mode */ }
  applyAuthMode();
  let remembered = null;
  try { remembered = storage.get(KEY_USER); } catch { /* storage disabled */ }
  if (ui.authMode === 'jwt') {
    if (await resumeSession()) return;
  } else if (remembered && !nameProblem(remembered)) {
    login(remembered);
    return;
  }
  invalidate('view');
  showFieldError('login-error', ui.loginError);
  $('#name').focus();
}
start();
