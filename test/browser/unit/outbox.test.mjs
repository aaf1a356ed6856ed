// The outbox: send frames, which errors retry by themselves and when.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as outbox from '../../../static/core/outbox.js';

const entry = (extra = {}) => ({ ...outbox.newEntry('c1', 'public', 'hi', 'alice', 0), ...extra });

describe('outbox', () => {
  test('a direct message is sent with `to`, anything else with `conv`', () => {
    const dm = outbox.newEntry('c1', 'dm:alice:bob', 'hi', 'alice', 5);
    assert.deepEqual(outbox.sendFrame(dm), { type: 'send', cid: 'c1', body: 'hi', to: 'bob' });
    assert.deepEqual(outbox.sendFrame(entry()), { type: 'send', cid: 'c1', body: 'hi', conv: 'public' });
    const group = outbox.newEntry('c2', 'g:team', 'yo', 'alice', 5);
    assert.deepEqual(outbox.sendFrame(group), { type: 'send', cid: 'c2', body: 'yo', conv: 'g:team' });
  });

  test('retry_after_ms from the server wins over the backoff', () => {
    for (const code of ['rate_limited', 'unavailable']) {
      const e = entry();
      outbox.failed(e, { code, message: 'later' });
      assert.equal(outbox.retryDelay(e, 1234, () => 0.9), 1234);
      assert.equal(e.tries, 1);
    }
  });

  test('without retry_after_ms: full jitter over 1 s·2^tries, capped', () => {
    const e = entry();
    outbox.failed(e, { code: 'unavailable' });
    assert.equal(outbox.retryDelay(e, 0, () => 0.5), 1000); // tries 1: below 2 s
    assert.equal(outbox.retryDelay(e, 0, () => 0.5), 2000); // tries 2: below 4 s
    e.tries = 4;
    assert.ok(outbox.retryDelay(e, 0, () => 0.999) < outbox.RETRY_CAP_MS);
  });

  test('errors that are not transient wait for the user', () => {
    for (const code of ['bad_request', 'forbidden', 'too_large', 'not_found']) {
      const e = entry();
      outbox.failed(e, { code });
      assert.equal(outbox.retryDelay(e, 500), -1, code);
      assert.equal(e.tries, 0);
    }
  });

  test('automatic retries stop after MAX_AUTO_RETRIES', () => {
    const e = entry();
    outbox.failed(e, { code: 'rate_limited' });
    for (let i = 0; i < outbox.MAX_AUTO_RETRIES; i++) assert.ok(outbox.retryDelay(e, 100) >= 0);
    assert.equal(outbox.retryDelay(e, 100), -1);
  });

  test('after a reconnect: pending and retryable entries, oldest first, not those already scheduled', () => {
    const a = entry({ cid: 'a', created: 3 });
    const b = entry({ cid: 'b', created: 1, status: 'error', error: { code: 'unavailable' } });
    const c = entry({ cid: 'c', created: 2, status: 'error', error: { code: 'forbidden' } });
    const d = entry({ cid: 'd', created: 0, status: 'error', error: { code: 'rate_limited' } });
    assert.deepEqual(outbox.toResend([a, b, c, d], new Set(['d'])).map((e) => e.cid), ['b', 'a']);
  });

  test('stored entries come back pending unless they failed', () => {
    const back = outbox.restore([{ cid: 'x', body: 'b', status: 'pending' }, { cid: 'y', body: 'b', status: 'error' }, { cid: 'z' }, null]);
    assert.deepEqual(back.map((e) => [e.cid, e.status]), [['x', 'pending'], ['y', 'error']]);
  });
});
