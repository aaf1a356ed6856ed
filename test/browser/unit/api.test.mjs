// The REST client: identity on every call, JSON in and out, errors with status and message.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError, authMessage, createApi } from '../../../static/core/api.js';

function fakeFetch(status, body, headers = {}) {
  const calls = [];
  const fetch = async (path, init) => {
    calls.push({ path, ...init });
    return { ok: status < 300, status, headers: { get: (k) => headers[k] ?? null }, json: async () => body };
  };
  return { calls, fetch };
}

describe('api', () => {
  test('jwt mode sends the token as a bearer', async () => {
    const f = fakeFetch(201, { conversation: { id: 'g:x' } });
    const api = createApi({ fetch: f.fetch, token: () => 'tok', user: () => 'alice' });
    const got = await api.createGroup('Team', ['bob']);
    assert.equal(got.conversation.id, 'g:x');
    assert.equal(f.calls[0].path, '/api/conversations');
    assert.equal(f.calls[0].method, 'POST');
    assert.equal(f.calls[0].headers.Authorization, 'Bearer tok');
    assert.deepEqual(JSON.parse(f.calls[0].body), { kind: 'group', name: 'Team', members: ['bob'] });
  });

  test('open mode names the user in the query; ids are escaped in paths', async () => {
    const f = fakeFetch(200, { conversation: {} });
    const api = createApi({ fetch: f.fetch, user: () => 'alice' });
    await api.conversation('dm:alice:bob');
    assert.equal(f.calls[0].path, '/api/conversations/dm%3Aalice%3Abob?user=alice');
  });

  test('204 answers null; an error throws its status, code and message', async () => {
    const ok = createApi({ fetch: fakeFetch(204, null).fetch, token: () => 't' });
    assert.equal(await ok.deleteMessage('01J'), null);
    const denied = createApi({ fetch: fakeFetch(403, { error: { code: 'forbidden', message: 'not yours' } }).fetch, token: () => 't' });
    await assert.rejects(denied.deleteMessage('01J'), (err) => err instanceof ApiError && err.status === 403 &&
      err.code === 'forbidden' && err.message === 'not yours');
  });

  test('login failures read as the form shows them', () => {
    assert.equal(authMessage(new ApiError(401, 'unauthorized', 'x')), 'Wrong user name or password.');
    assert.equal(authMessage(new ApiError(429, 'rate_limited', 'x', '3')), 'Too many attempts. Try again in 3 s.');
    assert.equal(authMessage(new ApiError(400, 'bad_request', 'password too short')), 'Password too short.');
  });
});
