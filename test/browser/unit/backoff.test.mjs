// Reconnect backoff (full jitter, bounded by the cap) and what a close means.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as backoff from '../../../static/core/backoff.js';

describe('backoffDelay', () => {
  test('is uniform below base·2^attempt: 0 at random 0, the bound just under random 1', () => {
    for (let attempt = 0; attempt < 6; attempt++) {
      const bound = backoff.BACKOFF_BASE_MS * 2 ** attempt;
      assert.equal(backoff.backoffDelay(attempt, () => 0), 0);
      assert.equal(backoff.backoffDelay(attempt, () => 0.5), bound / 2);
      assert.ok(backoff.backoffDelay(attempt, () => 0.999999) < bound);
    }
  });

  test('never exceeds the cap, however many attempts', () => {
    for (let attempt = 0; attempt <= 100; attempt++) {
      const d = backoff.backoffDelay(attempt, () => 0.999999);
      assert.ok(d >= 0 && d < backoff.BACKOFF_CAP_MS, `attempt ${attempt}: ${d}`);
    }
    assert.equal(backoff.backoffDelay(7, () => 0.5), backoff.BACKOFF_CAP_MS / 2, '500·2^7 > cap: half the cap');
  });

  test('spreads delays over the whole range (full jitter, not equal jitter)', () => {
    let x = 1;
    const random = () => { x = (x * 48271) % 2147483647; return x / 2147483647; };
    const delays = Array.from({ length: 2000 }, () => backoff.backoffDelay(10, random));
    assert.ok(Math.min(...delays) < backoff.BACKOFF_CAP_MS * 0.05);
    assert.ok(Math.max(...delays) > backoff.BACKOFF_CAP_MS * 0.95);
  });

  test('the attempt counter is bounded', () => {
    let a = 0;
    for (let i = 0; i < 50; i++) a = backoff.nextAttempt(a);
    assert.equal(a, backoff.MAX_ATTEMPT);
  });
});

describe('closeAction', () => {
  const cases = [
    [{ code: 1008, reason: 'invalid token' }, true, 'login'],
    [{ code: 1008, reason: 'no answer to ping' }, true, 'reconnect'],
    [{ code: 4001, reason: 'session expired' }, true, 'login'],
    [{ code: 4001, reason: 'session expired' }, false, 'reconnect'],
    [{ code: 4000, reason: 'slow consumer' }, true, 'reconnect'],
    [{ code: 1001, reason: 'draining' }, true, 'reconnect'],
    [{ code: 1006, reason: '' }, true, 'reconnect'],
  ];
  for (const [ev, token, want] of cases) {
    test(`close ${ev.code} "${ev.reason}"${token ? ' with a token' : ''}: ${want}`, () => {
      assert.equal(backoff.closeAction(ev, token).action, want);
    });
  }

  test('only unusual closes with a reason get a banner', () => {
    assert.equal(backoff.closeAction({ code: 1011, reason: 'internal error' }, true).banner, 'Disconnected (1011): internal error');
    assert.equal(backoff.closeAction({ code: 4000, reason: 'slow consumer' }, true).banner, '');
    assert.equal(backoff.closeAction({ code: 1011, reason: '' }, true).banner, '');
  });

  test('a connection up 10 s resets the backoff; failures probe at 1, 5, 10', () => {
    assert.equal(backoff.resetsBackoff(9999), false);
    assert.equal(backoff.resetsBackoff(10000), true);
    assert.deepEqual([1, 2, 3, 4, 5, 6, 10].filter(backoff.shouldProbe), [1, 5, 10]);
  });

  test('the probe of a failed handshake', () => {
    assert.equal(backoff.probeAction(401, 'expired', null).action, 'login');
    assert.equal(backoff.probeAction(400, 'invalid user name', null).action, 'login');
    assert.equal(backoff.probeAction(403, '', null).message, 'The server refused the connection: forbidden');
    assert.deepEqual(backoff.probeAction(503, '', '3'), { action: 'wait', afterMs: 3000 });
    assert.equal(backoff.probeAction(200, '', null).action, 'none');
  });
});
