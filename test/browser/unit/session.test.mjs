// The protocol engine (core/session.js) against a fake socket and a manual clock.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSession, GAP_DEBOUNCE_MS, RECEIPT_EVERY_MS, SYNC_TIMEOUT_MS } from '../../../static/core/session.js';
import { BACKOFF_BASE_MS, BACKOFF_CAP_MS } from '../../../static/core/backoff.js';
import { fakeEnv, msg } from './fake.mjs';

const DM = 'dm:alice:bob';

// online logs alice in and completes the handshake; the frames sent so far are dropped.
function online(opts) {
  const env = fakeEnv(opts);
  const s = createSession(env);
  s.login('alice');
  env.socket.open();
  return { env, s, ws: env.socket };
}

describe('connecting', () => {
  test('login opens /ws with the user (open mode) or the token (jwt)', () => {
    const env = fakeEnv();
    const s = createSession(env);
    s.login('alice');
    assert.equal(env.socket.path, '/ws?user=alice');
    s.logout('');
    s.state.token = 'a.b.c';
    s.login('alice');
    assert.equal(env.socket.path, '/ws?token=a.b.c');
  });

  test('hello: online, then a full sync naming what is held', () => {
    const { s, ws } = online();
    assert.equal(s.state.conn.status, 'online');
    assert.equal(s.state.server, 'gw-1');
    assert.deepEqual(ws.take('sync'), [{ type: 'sync', since: {} }]);
  });
});

describe('sync and gap filling', () => {
  test('a missing seq is asked for with only: true after the debounce, and filled', () => {
    const { env, s, ws } = online();
    ws.receive({ type: 'synced', convs: {} });
    ws.take();
    ws.receive(msg('public', 1));
    ws.receive(msg('public', 3));
    env.advance(GAP_DEBOUNCE_MS - 1);
    assert.deepEqual(ws.take('sync'), []);
    env.advance(1);
    assert.deepEqual(ws.take('sync'), [{ type: 'sync', since: { public: 1 }, only: true }]);
    ws.receive({ ...msg('public', 2), batch: 1 });
    ws.receive({ type: 'synced', convs: { public: 3 } });
    const c = s.state.convs.get('public');
    assert.deepEqual(c.messages.map((m) => m.seq), [1, 2, 3]);
    assert.equal(c.last, 3);
    env.advance(GAP_DEBOUNCE_MS);
    assert.deepEqual(ws.take('sync'), [], 'no gap left');
  });

  test('a reordered delivery that settles within the debounce asks for nothing', () => {
    const { env, ws } = online();
    ws.receive({ type: 'synced', convs: {} });
    ws.take();
    ws.receive(msg('public', 2));
    ws.receive(msg('public', 1));
    env.advance(GAP_DEBOUNCE_MS * 2);
    assert.deepEqual(ws.take('sync'), []);
  });

  test('a gap the server says nothing about is given up', () => {
    const { env, s, ws } = online();
    ws.receive({ type: 'synced', convs: {} });
    ws.receive(msg('public', 1));
    ws.receive(msg('public', 4));
    env.advance(GAP_DEBOUNCE_MS);
    ws.take();
    ws.receive({ type: 'synced', convs: {} });
    assert.equal(s.state.convs.get('public').last, 4);
  });

  test('seqs are not dense: synced raises last over a hole the server cannot fill', () => {
    const { s, ws } = online();
    ws.receive(msg('g:team', 1));
    ws.receive(msg('g:team', 3));
    ws.receive({ type: 'synced', convs: { 'g:team': 3 } });
    assert.equal(s.state.convs.get('g:team').last, 3);
  });

  test('a reconnect syncs from the last contiguous seq of every conversation', () => {
    const { env, ws } = online();
    ws.receive(msg('public', 1));
    ws.receive(msg(DM, 1));
    ws.receive(msg(DM, 2));
    ws.receive({ type: 'synced', convs: { public: 1, [DM]: 2 } });
    ws.serverClose(1006);
    env.advance(BACKOFF_CAP_MS);
    env.socket.open();
    assert.deepEqual(env.socket.take('sync'), [{ type: 'sync', since: { public: 1, [DM]: 2 } }]);
  });

  test('a sync without an answer is given up after its timeout, and a late synced proves nothing', () => {
    const { env, s, ws } = online();
    assert.equal(s.state.sync.inFlight, true);
    env.advance(SYNC_TIMEOUT_MS);
    assert.equal(s.state.sync.inFlight, false);
    ws.receive({ type: 'synced', convs: { public: 50 } });
    assert.equal(s.state.convs.get('public').last, 0);
  });

  test('a sync refused for now (rate_limited, unavailable) is asked again after retry_after_ms', () => {
    const { env, s, ws } = online();
    assert.deepEqual(ws.take('sync'), [{ type: 'sync', since: {} }]);
    ws.receive({ type: 'error', code: 'rate_limited', retry_after_ms: 2200, message: 'syncing too often: retry the sync then' });
    assert.equal(s.state.sync.inFlight, false);
    env.advance(2100);
    assert.deepEqual(ws.take('sync'), [], 'not before retry_after_ms');
    env.advance(100);
    assert.deepEqual(ws.take('sync'), [{ type: 'sync', since: {} }]);
    ws.receive({ type: 'error', code: 'unavailable', retry_after_ms: 1000, message: 'sync failed, retry: message store unavailable' });
    env.advance(1000);
    assert.deepEqual(ws.take('sync'), [{ type: 'sync', since: {} }]);
  });

  test('messages are deduplicated by id and ordered by seq', () => {
    const { s, ws } = online();
    for (const seq of [2, 1, 2, 3, 1]) ws.receive(msg('public', seq));
    assert.deepEqual(s.state.convs.get('public').messages.map((m) => m.seq), [1, 2, 3]);
  });

  test('a tombstone frame replaces the message live', () => {
    const { s, ws } = online();
    ws.receive(msg('g:team', 1));
    ws.receive({ ...msg('g:team', 1), body: '', deleted: true });
    const [m] = s.state.convs.get('g:team').messages;
    assert.deepEqual([m.deleted, m.body], [true, '']);
  });
});

describe('the conversation list and deletes', () => {
  test('the REST list names groups, counts unread and marks read what the server has read', () => {
    const { s } = online({ viewing: () => false });
    s.applySummaries([
      { id: 'public', kind: 'public', name: 'public', last_message: null, unread: 0 },
      { id: 'g:t', kind: 'group', name: 'Team', last_message: { id: 'x', seq: 7, from: 'bob', body: 'hi', ts: 1 }, unread: 3 },
      { id: DM, kind: 'direct', name: 'bob', last_message: { id: 'y', seq: 4, from: 'bob', body: 'yo', ts: 2 }, unread: 0 },
    ]);
    assert.equal(s.convLabel('g:t'), 'Team');
    assert.equal(s.state.convs.get('g:t').unreadHint, 3);
    assert.equal(s.state.convs.get(DM).read, 4);
  });

  test('a delete of mine shows at once as a tombstone, and its frame changes nothing more', () => {
    const { s, ws } = online();
    ws.receive(msg('g:t', 1, 'alice'));
    const [m] = s.state.convs.get('g:t').messages;
    s.deleted(m);
    assert.deepEqual([m.deleted, m.body], [true, '']);
    ws.receive({ ...msg('g:t', 1, 'alice'), body: '', deleted: true });
    assert.equal(s.state.convs.get('g:t').messages.length, 1);
  });
});

describe('outbox', () => {
  test('a send goes out with a cid; sent settles it into the conversation', () => {
    const { s, ws } = online();
    s.select('public');
    const e = s.submit('hello');
    const [frame] = ws.take('send');
    assert.deepEqual(frame, { type: 'send', cid: e.cid, body: 'hello', conv: 'public' });
    ws.receive({ type: 'sent', cid: e.cid, id: 'm1', conv: 'public', seq: 7, ts: 5 });
    assert.equal(s.state.outbox.size, 0);
    assert.deepEqual(s.state.convs.get('public').messages.map((m) => [m.id, m.from, m.body, m.cid]), [['m1', 'alice', 'hello', e.cid]]);
  });

  for (const code of ['unavailable', 'rate_limited']) {
    test(`${code}: sent again with the same cid after retry_after_ms`, () => {
      const { env, s, ws } = online();
      const e = s.submit('again');
      ws.take();
      ws.receive({ type: 'error', code, message: 'later', cid: e.cid, retry_after_ms: 1500 });
      assert.equal(s.state.outbox.get(e.cid).status, 'error');
      env.advance(1499);
      assert.deepEqual(ws.take('send'), []);
      env.advance(1);
      assert.deepEqual(ws.take('send'), [{ type: 'send', cid: e.cid, body: 'again', conv: 'public' }]);
      assert.equal(s.state.outbox.get(e.cid).status, 'pending');
    });
  }

  test('a refused send (forbidden) waits for the user, then Retry sends the same cid', () => {
    const { env, s, ws } = online();
    s.select('g:team');
    const e = s.submit('x');
    ws.take();
    ws.receive({ type: 'error', code: 'forbidden', message: 'not a member', cid: e.cid });
    env.advance(20000); // under a ping interval: the socket stays up
    assert.deepEqual(ws.take('send'), []);
    s.retry(e.cid);
    assert.deepEqual(ws.take('send').map((f) => f.cid), [e.cid]);
  });

  test('a send made offline goes out after the next hello, once', () => {
    const env = fakeEnv();
    const s = createSession(env);
    s.login('alice');
    const e = s.submit('queued');
    assert.deepEqual(env.socket.sent, []);
    env.socket.open();
    assert.deepEqual(env.socket.take('send').map((f) => f.cid), [e.cid]);
  });

  test('the echo of my send from another session settles the outbox too', () => {
    const { s, ws } = online();
    const e = s.submit('mine');
    ws.receive({ ...msg('public', 1, 'alice'), cid: e.cid });
    assert.equal(s.state.outbox.size, 0);
  });

  test('the outbox survives a reload (storage), and is sent with its cid', () => {
    const { env, s } = online();
    const e = s.submit('keep me');
    s.saveNow();
    const s2 = createSession(env);
    s2.login('alice');
    env.socket.open();
    assert.deepEqual(env.socket.take('send').map((f) => [f.cid, f.body]), [[e.cid, 'keep me']]);
  });
});

describe('receipts', () => {
  test('a DM on screen is marked read; another not on screen only delivered; at most one per second', () => {
    const { env, s, ws } = online({ viewing: (id) => id === DM });
    s.select(DM);
    ws.take();
    ws.receive(msg(DM, 1));
    ws.receive(msg('dm:alice:carol', 1, 'carol'));
    env.advance(0);
    assert.deepEqual(ws.take('receipt').map((f) => [f.conv, f.seq, f.status]), [[DM, 1, 'read'], ['dm:alice:carol', 1, 'delivered']]);
    ws.receive(msg(DM, 2));
    env.advance(RECEIPT_EVERY_MS - 1);
    assert.deepEqual(ws.take('receipt'), []);
    env.advance(1);
    assert.deepEqual(ws.take('receipt').map((f) => [f.seq, f.status]), [[2, 'read']]);
  });

  test('peer marks shown under my messages only rise', () => {
    const { s, ws } = online();
    ws.receive({ type: 'receipt', conv: DM, user: 'bob', seq: 1, status: 'read', ts: 1 });
    s.ensureConv(DM);
    ws.receive({ type: 'receipt', conv: DM, user: 'bob', seq: 5, status: 'read', ts: 1 });
    ws.receive({ type: 'receipt', conv: DM, user: 'bob', seq: 3, status: 'read', ts: 2 });
    assert.deepEqual(s.state.convs.get(DM).marks.get('bob'), { delivered: 5, read: 5 });
  });
});

describe('history', () => {
  test('a new DM asks for its newest page, then syncs only it from the top of the page', () => {
    const { s, ws } = online();
    ws.take();
    s.ensureConv(DM);
    assert.deepEqual(ws.take('history'), [{ type: 'history', conv: DM, limit: 50 }]);
    ws.receive({ type: 'history', conv: DM, messages: [msg(DM, 60), msg(DM, 59)], next_before: 59 });
    assert.deepEqual(ws.take('sync'), [{ type: 'sync', since: { [DM]: 60 }, only: true }]);
    s.loadHistory(s.state.convs.get(DM), false);
    assert.deepEqual(ws.take('history'), [{ type: 'history', conv: DM, limit: 50, before: 59 }]);
    s.loadHistory(s.state.convs.get(DM), false);
    assert.deepEqual(ws.take('history'), [], 'one page at a time');
    ws.receive({ type: 'history', conv: DM, before: 59, messages: [msg(DM, 1)] });
    assert.equal(s.state.convs.get(DM).older, 'done');
  });

  test('an older server without history pages: the recent window by sync', () => {
    const { s, ws } = online();
    ws.take();
    s.ensureConv(DM);
    ws.take();
    ws.receive({ type: 'error', code: 'bad_request', message: 'unknown type "history"' });
    assert.deepEqual(ws.take('sync'), [{ type: 'sync', since: { [DM]: 0 }, only: true }]);
  });
});

describe('reconnecting', () => {
  test('backoff with full jitter grows per failed attempt up to the cap', () => {
    const env = fakeEnv({ random: () => 0.999 });
    const s = createSession(env);
    s.login('alice');
    const delays = [];
    for (let i = 0; i < 10; i++) {
      env.socket.serverClose(1006);
      delays.push(s.state.conn.retryAt - env.now());
      env.advance(delays[delays.length - 1]);
    }
    delays.forEach((d, i) => assert.ok(d < Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** i) && d > 0, `attempt ${i}: ${d}`));
    assert.ok(delays[9] > BACKOFF_CAP_MS * 0.99, 'capped');
    assert.equal(s.state.conn.status, 'connecting');
    env.socket.open();
    assert.equal(s.state.conn.attempt, 0, 'a hello resets the backoff');
  });

  test('a drain reconnects at the time the server named', () => {
    const { env, ws } = online();
    ws.receive({ type: 'reconnect', after_ms: 2000, reason: 'draining' });
    env.advance(1999);
    assert.equal(env.sockets.length, 1);
    env.advance(1);
    assert.equal(ws.closed?.code, 1000);
    env.advance(0);
    assert.equal(env.sockets.length, 2);
  });

  test('a ping unanswered for a whole interval drops the socket', () => {
    const { env, ws } = online();
    env.advance(25000);
    assert.equal(ws.take('ping').length, 1);
    env.advance(25000);
    assert.equal(ws.closed?.reason, 'no answer to ping');
  });

  test('close 4001 with a token ends the session', () => {
    const env = fakeEnv();
    const s = createSession(env);
    s.state.token = 't';
    s.login('alice');
    env.socket.open();
    env.socket.serverClose(4001, 'token expired');
    assert.equal(env.loggedOutWith, 'Your session expired. Sign in again.');
    assert.equal(s.state.me, null);
    env.advance(BACKOFF_CAP_MS);
    assert.equal(env.sockets.length, 1, 'no reconnect');
  });

  test('logout stops reconnecting and forgets the token', () => {
    const { env, s } = online();
    env.store.set('switchboard:token', 't');
    s.logout('');
    env.advance(BACKOFF_CAP_MS * 2);
    assert.equal(env.sockets.length, 1);
    assert.equal(env.store.has('switchboard:token'), false);
    assert.equal(s.state.conn.status, 'offline');
  });
});
