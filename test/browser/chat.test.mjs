// End-to-end test of the Switchboard web client (static/) against two running gateways.
//
// alice uses the client served by gateway 1, bob the one served by gateway 2, each in its own
// headless Chromium with its own profile (so localStorage is separate). Every wait is bounded.
//
//   GW1_URL, GW2_URL   gateway base URLs (default http://127.0.0.1:8080 and :8081)
//   CHROMIUM_PATH      browser binary (default /usr/bin/chromium)
//   E2E_OUT            screenshot directory (default ./out next to this file)
//
// Run: node --test chat.test.mjs   (or ./run.sh)

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const GW1 = (process.env.GW1_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const GW2 = (process.env.GW2_URL || 'http://127.0.0.1:8081').replace(/\/+$/, '');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const OUT = process.env.E2E_OUT || path.join(HERE, 'out');

const WAIT_MS = 15000; // the bound of any single wait for the UI
const TEST_MS = 60000; // the bound of one test
const MAX_BODY_BYTES = 4096;

const RUN = randomBytes(4).toString('hex');
const ALICE = `alice-${RUN}`; // "alice-…" < "bob-…", so the DM id is dm:alice-…:bob-…
const BOB = `bob-${RUN}`;
const PROBE = `probe-${RUN}`; // a third user, for a raw protocol connection
const CAROL = `carol-${RUN}`; // sends dave a long history over a raw connection
const DAVE = `dave-${RUN}`; // logs in afterwards and pages back through it
const ERIN = `erin-${RUN}`; // the third member of alice's group; never logs in
const DM = ALICE < BOB ? `dm:${ALICE}:${BOB}` : `dm:${BOB}:${ALICE}`;

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--window-size=1280,800',
];

// ---- helpers ----

async function serverId(base) {
  let res;
  try {
    res = await fetch(base + '/healthz', { signal: AbortSignal.timeout(WAIT_MS) });
  } catch (err) {
    throw new Error(`GET ${base}/healthz failed (${err.cause?.code || err.message}): is the cluster running?`, { cause: err });
  }
  assert.equal(res.status, 200, `GET ${base}/healthz`);
  const body = await res.json();
  assert.equal(typeof body.server, 'string', `${base}/healthz has no "server": ${JSON.stringify(body)}`);
  assert.ok(body.server.length > 0, `${base}/healthz has an empty "server"`);
  return body.server;
}

// A Client is one user in one headless browser with its own profile directory.
class Client {
  constructor(name, base) {
    Object.assign(this, { name, base, browser: null, page: null, profile: null, pageErrors: [], consoleErrors: [] });
  }

  async start() {
    this.profile = await mkdtemp(path.join(tmpdir(), `switchboard-e2e-${this.name}-`));
    this.browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      ignoreDefaultArgs: true, // exactly the flags above, nothing added but the debugging pipe
      args: [...CHROMIUM_ARGS, `--user-data-dir=${this.profile}`, 'about:blank'],
      pipe: true,
      defaultViewport: { width: 1280, height: 800 },
      timeout: 30000,
      protocolTimeout: 30000,
    });
    const pages = await this.browser.pages();
    this.page = pages[0] || (await this.browser.newPage());
    this.page.setDefaultTimeout(WAIT_MS);
    this.page.on('pageerror', (err) => this.pageErrors.push(String(err?.message || err)));
    this.page.on('console', (msg) => { if (msg.type() === 'error') this.consoleErrors.push(msg.text()); });
  }

  async stop() {
    await this.browser?.close().catch(() => {});
    if (this.profile) await rm(this.profile, { recursive: true, force: true }).catch(() => {});
  }

  // waitFor waits for fn(...args) to be truthy in the page and returns its value.
  async waitFor(what, fn, ...args) {
    return this.waitForWithin(WAIT_MS, what, fn, ...args);
  }

  async waitForWithin(ms, what, fn, ...args) {
    try {
      const handle = await this.page.waitForFunction(fn, { timeout: ms, polling: 100 }, ...args);
      const value = await handle.jsonValue();
      await handle.dispose();
      return value;
    } catch (err) {
      throw new Error(`${this.name}: timed out after ${ms} ms waiting for ${what}\n${await this.describe()}`, { cause: err });
    }
  }

  // describe summarizes what the page shows, for failure messages.
  async describe() {
    try {
      const s = await this.page.evaluate(() => ({
        url: location.href,
        loginHidden: document.querySelector('#login-view')?.hidden,
        appHidden: document.querySelector('#app')?.hidden,
        me: document.querySelector('#me')?.textContent,
        server: document.querySelector('#server')?.textContent,
        status: document.querySelector('#status')?.dataset.state,
        banners: document.querySelector('#banners')?.innerText,
        selected: document.querySelector('#messages')?.dataset.conv,
        convs: [...document.querySelectorAll('#convs [data-conv]')].map((b) => b.dataset.conv),
        messages: [...document.querySelectorAll('#messages > li')].map((li) => ({
          ...li.dataset, body: li.querySelector('.msg-body')?.textContent.slice(0, 60),
        })),
      }));
      return `  page state: ${JSON.stringify(s)}\n  page errors: ${JSON.stringify(this.pageErrors)}`;
    } catch (err) {
      return `  (page state unavailable: ${err.message})`;
    }
  }

  async login() {
    await this.page.goto(this.base + '/', { waitUntil: 'load', timeout: WAIT_MS });
    await this.waitFor('the login form', () => {
      const view = document.querySelector('#login-view');
      return view && !view.hidden && document.querySelector('#login') && document.querySelector('#name');
    });
    await this.page.type('#name', this.name);
    // jwt auth mode (the default) shows a password: each test user creates its account.
    if (await this.page.$eval('#password-field', (el) => !el.hidden)) {
      await this.page.type('#password', `${this.name} password`);
      await this.page.click('#register-submit');
    } else {
      await this.page.click('#login-submit');
    }
    await this.waitFor('the app view, online', (me) =>
      !document.querySelector('#app').hidden && document.querySelector('#login-view').hidden &&
      document.querySelector('#me').textContent === me &&
      document.querySelector('#status').dataset.state === 'online', this.name);
  }

  // unsupportedFrames asks this client's gateway, on a throwaway connection of its own, which
  // optional client frame types it answers with "<type> is not supported by this server". The
  // ping goes last: its pong proves every earlier frame was answered.
  async unsupportedFrames() {
    return this.page.evaluate((user, ms) => new Promise((resolve, reject) => {
      const token = localStorage.getItem('switchboard:token'); // jwt mode: the page's own session
      const auth = token ? `token=${encodeURIComponent(token)}` : `user=${user}`;
      const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws?${auth}`);
      const found = [];
      const timer = setTimeout(() => { ws.close(); reject(new Error('no pong on the probe connection')); }, ms);
      ws.onerror = () => { clearTimeout(timer); reject(new Error('the probe connection failed')); };
      ws.onmessage = (ev) => {
        const f = JSON.parse(ev.data);
        if (f.type === 'hello') {
          ws.send(JSON.stringify({ type: 'receipt', conv: 'public', seq: 1, status: 'read' }));
          ws.send(JSON.stringify({ type: 'typing', conv: 'public', state: 'stop' }));
          ws.send(JSON.stringify({ type: 'sync', since: {} }));
          ws.send(JSON.stringify({ type: 'ping', t: 1 }));
        } else if (f.type === 'error') {
          const m = /^(\w+) is not supported by this server/.exec(f.message || '');
          if (m) found.push(m[1]);
        } else if (f.type === 'pong') {
          clearTimeout(timer);
          ws.close(1000);
          resolve(found);
        }
      };
    }), PROBE, WAIT_MS);
  }

  async openConv(conv) {
    await this.waitFor(`conversation ${conv} in the list`, (id) =>
      !!document.querySelector(`#convs [data-conv="${CSS.escape(id)}"]`), conv);
    // Clicked in the page, in one step: the list may re-render between a lookup and a click.
    await this.page.$eval(`#convs [data-conv="${conv}"]`, (el) => el.click());
    await this.waitFor(`conversation ${conv} on screen`, (id) =>
      document.querySelector('#messages').dataset.conv === id &&
      document.querySelector(`#convs [data-conv="${CSS.escape(id)}"]`)?.getAttribute('aria-current') === 'true', conv);
  }

  // setBody puts text into the composer as a paste would: one value change and one input event.
  async setBody(text) {
    await this.page.$eval('#body', (el, v) => {
      el.focus();
      el.value = v;
      el.dispatchEvent(new InputEvent('input', { bubbles: true, inputType: 'insertFromPaste' }));
    }, text);
  }

  // send types text into the composer, sends it, and returns the cid of the new message.
  async send(text) {
    const before = await this.cids();
    await this.page.click('#body');
    await this.page.type('#body', text);
    await this.waitFor('the send button to enable', () => !document.querySelector('#send').disabled);
    await this.page.click('#send');
    const cid = await this.waitFor('my new message in the list', (known, body) => {
      const li = [...document.querySelectorAll('#messages > li')].find((n) =>
        n.dataset.cid && !known.includes(n.dataset.cid) && n.querySelector('.msg-body')?.textContent === body);
      return li ? li.dataset.cid : null;
    }, before, text);
    assert.equal(await this.page.$eval('#body', (el) => el.value), '', `${this.name}: the composer is cleared after sending`);
    return cid;
  }

  async cids() {
    return this.page.$$eval('#messages > li', (lis) => lis.map((li) => li.dataset.cid).filter(Boolean));
  }

  // waitSent waits until my message with this cid is acknowledged (data-status "sent", with an
  // id and a seq) and returns its dataset.
  async waitSent(cid) {
    return this.waitFor(`message ${cid} to be sent`, (c) => {
      const li = document.querySelector(`#messages > li[data-cid="${CSS.escape(c)}"]`);
      if (!li || li.dataset.status !== 'sent' || !li.dataset.id || !li.dataset.seq) return null;
      if (li.querySelector('.msg-state')?.textContent === 'sending…') return null;
      return { ...li.dataset, own: li.classList.contains('own'), from: li.querySelector('.msg-from')?.textContent };
    }, cid);
  }

  // waitMessage waits for a message with this exact body in the conversation on screen.
  async waitMessage(body) {
    return this.waitFor(`a message "${body.slice(0, 40)}"`, (b) => {
      const li = [...document.querySelectorAll('#messages > li')].find((n) => n.querySelector('.msg-body')?.textContent === b);
      return li ? { ...li.dataset, own: li.classList.contains('own'), from: li.querySelector('.msg-from')?.textContent } : null;
    }, body);
  }

  // banners returns the text of the banners on screen.
  async banners() {
    return this.page.$$eval('#banners .banner-text', (els) => els.map((el) => el.textContent));
  }

  async screenshot(file) {
    await mkdir(OUT, { recursive: true });
    await this.page.screenshot({ path: path.join(OUT, file), fullPage: false });
  }
}

// ---- the test ----

describe('web client against two gateways', { timeout: 5 * TEST_MS }, () => {
  const alice = new Client(ALICE, GW1);
  const bob = new Client(BOB, GW2);
  const ids = {};
  let shot = false;
  let dmCid = null; // alice's first DM to bob

  before(async () => {
    [ids.gw1, ids.gw2] = await Promise.all([serverId(GW1), serverId(GW2)]);
    await Promise.all(['alice-failure.png', 'bob-failure.png'].map((f) => rm(path.join(OUT, f), { force: true })));
    await Promise.all([alice.start(), bob.start()]);
  }, { timeout: TEST_MS });

  after(async () => {
    if (!shot) { // a failure before the screenshot test: keep what the screens showed
      await alice.screenshot('alice-failure.png').catch(() => {});
      await bob.screenshot('bob-failure.png').catch(() => {});
    }
    await Promise.all([alice.stop(), bob.stop()]);
  });

  test('alice logs in on gateway 1 and bob on gateway 2, each sees its SERVER_ID', { timeout: TEST_MS }, async (t) => {
    assert.notEqual(ids.gw1, ids.gw2, 'the two gateways report different SERVER_IDs');
    await Promise.all([alice.login(), bob.login()]);
    await alice.waitFor(`#server to show ${ids.gw1}`, (id) => document.querySelector('#server').textContent === id, ids.gw1);
    await bob.waitFor(`#server to show ${ids.gw2}`, (id) => document.querySelector('#server').textContent === id, ids.gw2);
    // Which optional frame types each gateway lacks (reported, and used by the receipt test).
    ids.lacking = [...new Set((await Promise.all([alice.unsupportedFrames(), bob.unsupportedFrames()])).flat())];
    if (ids.lacking.length) t.diagnostic(`the gateways answer "not supported" to: ${ids.lacking.join(', ')}`);
    // Separate profiles: each browser remembers only its own user.
    assert.equal(await alice.page.evaluate(() => localStorage.getItem('switchboard:user')), ALICE);
    assert.equal(await bob.page.evaluate(() => localStorage.getItem('switchboard:user')), BOB);
    for (const c of [alice, bob]) {
      assert.equal(await c.page.$eval('#messages', (el) => el.dataset.conv), 'public', `${c.name} starts in public`);
      assert.equal(await c.page.$eval('#conv-title', (el) => el.textContent), '# public');
    }
  });

  test('the client\'s modules are served as JavaScript under a CSP that allows them', { timeout: TEST_MS }, async () => {
    for (const file of ['app.js', 'core/session.js', 'ui/groups.js']) {
      const res = await fetch(`${GW1}/${file}`, { signal: AbortSignal.timeout(WAIT_MS) });
      assert.equal(res.status, 200, file);
      assert.match(res.headers.get('content-type') || '', /^text\/javascript\b/, `${file} Content-Type`);
    }
    const csp = (await fetch(`${GW1}/`, { signal: AbortSignal.timeout(WAIT_MS) })).headers.get('content-security-policy') || '';
    assert.match(csp, /script-src 'self'/);
  });

  test('alice posts in public and bob sees it', { timeout: TEST_MS }, async () => {
    await alice.openConv('public');
    await bob.openConv('public');
    const text = `hello public from ${ALICE} ${randomBytes(3).toString('hex')}`;
    const cid = await alice.send(text);
    const mine = await alice.waitSent(cid);
    assert.equal(mine.own, true);
    assert.equal(mine.from, ALICE);
    const seen = await bob.waitMessage(text);
    assert.equal(seen.from, ALICE, 'bob sees alice as the sender');
    assert.equal(seen.own, false, 'not bob\'s own message');
    assert.equal(seen.id, mine.id, 'the same message id on both sides');
    assert.equal(seen.seq, mine.seq, 'the same seq on both sides');
  });

  test('alice and bob exchange direct messages across gateways', { timeout: TEST_MS }, async () => {
    // alice starts the DM from the sidebar form.
    await alice.page.click('#dm-to');
    await alice.page.type('#dm-to', BOB);
    await alice.page.click('#dm-start');
    await alice.waitFor(`the DM with ${BOB} selected`, (id, peer) =>
      document.querySelector('#messages').dataset.conv === id &&
      document.querySelector('#conv-title').textContent === peer &&
      document.querySelector('#dm-error').hidden, DM, BOB);

    const hi = `hi ${BOB}, this is ${ALICE} ${randomBytes(3).toString('hex')}`;
    const hiCid = await alice.send(hi);
    const hiSent = await alice.waitSent(hiCid);
    dmCid = hiCid;

    // bob gets a new DM conversation labelled with alice's name, and the message in it.
    const label = await bob.waitFor(`a DM conversation from ${ALICE}`, (id) =>
      document.querySelector(`#convs [data-conv="${CSS.escape(id)}"] .conv-name`)?.textContent || null, DM);
    assert.equal(label, ALICE);
    await bob.openConv(DM);
    assert.equal(await bob.page.$eval('#conv-title', (el) => el.textContent), ALICE);
    const got = await bob.waitMessage(hi);
    assert.equal(got.from, ALICE);
    assert.equal(got.id, hiSent.id);

    // bob replies in the same conversation; alice sees it.
    const reply = `hey ${ALICE}, ${BOB} here ${randomBytes(3).toString('hex')}`;
    const replyCid = await bob.send(reply);
    const replySent = await bob.waitSent(replyCid);
    const back = await alice.waitMessage(reply);
    assert.equal(back.from, BOB);
    assert.equal(back.own, false);
    assert.equal(back.id, replySent.id);
    assert.ok(Number(replySent.seq) > Number(hiSent.seq), 'the reply has a later seq in the DM');
    // No own message is left pending, and none failed.
    for (const c of [alice, bob]) {
      const states = await c.page.$$eval('#messages > li.own', (lis) => lis.map((li) => li.dataset.status));
      assert.ok(states.length >= 1 && states.every((s) => s === 'sent'), `${c.name}: own DM messages all sent: ${states}`);
    }
  });

  test('bob having read the DM, alice sees "read" and both see each other online', { timeout: TEST_MS }, async () => {
    assert.ok(dmCid, 'the DM test sent a message');
    await alice.openConv(DM);
    await bob.openConv(DM);
    const receipt = await alice.waitFor('a "read" receipt under the DM to bob', (c) => {
      const r = document.querySelector(`#messages > li[data-cid="${CSS.escape(c)}"] [data-testid="receipt"]`);
      return r?.textContent === 'read' ? r.textContent : null;
    }, dmCid);
    assert.equal(receipt, 'read');
    for (const c of [alice, bob]) {
      await c.waitFor('the peer shown online', () =>
        document.querySelector('#conv-presence .presence')?.dataset.online === 'true');
    }
  });

  test('alice creates a group with bob and a third user; a message she deletes vanishes in bob\'s window', { timeout: TEST_MS }, async () => {
    const name = `team ${RUN}`;
    await alice.page.click('#group-new summary');
    await alice.waitFor('the group form', () => document.querySelector('#group-new').open);
    await alice.page.type('#group-name', name);
    await alice.page.type('#group-members', `${BOB}, ${ERIN}`);
    await alice.page.click('#group-create');
    const gid = await alice.waitFor('the new group on screen', (n) => {
      const id = document.querySelector('#messages').dataset.conv;
      return id?.startsWith('g:') && document.querySelector('#conv-title').textContent === n ? id : null;
    }, name);

    // The members panel: alice owns it, bob and erin are members; alice may remove them.
    await alice.page.click('#members-toggle');
    const members = await alice.waitFor('three members listed', () => {
      const lis = [...document.querySelectorAll('#members [data-testid="member"]')];
      return lis.length === 3 ? Object.fromEntries(lis.map((li) => [li.dataset.user, li.querySelector('.member-role').textContent])) : null;
    });
    assert.deepEqual(members, { [ALICE]: 'owner', [BOB]: 'member', [ERIN]: 'member' });
    assert.equal(await alice.page.$eval('#members-toggle', (el) => el.getAttribute('aria-expanded')), 'true');

    const hello = `hello team ${randomBytes(3).toString('hex')}`;
    const helloSent = await alice.waitSent(await alice.send(hello));

    // bob, on the DM, gets the group in his list: its name, one unread, the last message.
    const row = await bob.waitFor('the group in bob\'s list with an unread count', (id) => {
      const b = document.querySelector(`#convs [data-conv="${CSS.escape(id)}"]`);
      const badge = b?.querySelector('[data-testid="unread"]');
      return badge ? { name: b.querySelector('.conv-name').textContent, unread: badge.textContent,
        preview: b.querySelector('.conv-preview').textContent } : null;
    }, gid);
    assert.deepEqual(row, { name, unread: '1', preview: `${ALICE}: ${hello}` });
    await bob.openConv(gid);
    assert.equal((await bob.waitMessage(hello)).id, helloSent.id);
    await bob.waitFor('no unread badge once bob reads the group', (id) =>
      !document.querySelector(`#convs [data-conv="${CSS.escape(id)}"] [data-testid="unread"]`), gid);

    const reply = `hi all from ${BOB} ${randomBytes(3).toString('hex')}`;
    await bob.waitSent(await bob.send(reply));
    assert.equal((await alice.waitMessage(reply)).from, BOB);

    // alice deletes her message: it shows "message deleted" in both windows, its text gone.
    await alice.page.$eval(`#messages > li[data-id="${helloSent.id}"] [data-testid="delete"]`, (el) => el.click());
    for (const c of [alice, bob]) {
      await c.waitFor('"message deleted" in place of the message', (id) => {
        const li = document.querySelector(`#messages > li[data-id="${CSS.escape(id)}"]`);
        return li?.classList.contains('deleted') && li.querySelector('.msg-body').textContent === 'message deleted';
      }, helloSent.id);
      assert.equal(await c.page.$$eval('#messages .msg-body', (els, t) => els.filter((e) => e.textContent === t).length, hello), 0,
        `${c.name}: the deleted text is gone`);
    }
    assert.equal(await bob.page.$$eval('#messages [data-testid="delete"]', (els) => els.length), 1, 'bob may delete only his own');

    // alice makes bob an admin, then a plain member again; the owner's own role has no button.
    assert.equal(await alice.page.$$eval(`#members [data-user="${ALICE}"] [data-role-of]`, (els) => els.length), 0,
      'no role button for the owner');
    const roleOf = (user) => alice.page.evaluate(async (id, u) => {
      const token = localStorage.getItem('switchboard:token');
      const res = await fetch(`/api/conversations/${encodeURIComponent(id)}${token ? '' : `?user=${localStorage.getItem('switchboard:user')}`}`,
        { headers: token ? { Authorization: `Bearer ${token}` } : {} });
      return (await res.json()).conversation.members.find((m) => m.id === u)?.role;
    }, gid, user);
    const shownRole = (role) => alice.waitFor(`bob shown as ${role}`, (u, r) =>
      document.querySelector(`#members [data-user="${CSS.escape(u)}"] [data-testid="member-role"]`)?.textContent === r, BOB, role);
    await alice.page.$eval(`#members [data-user="${BOB}"] [data-testid="make-admin"]`, (el) => el.click());
    await shownRole('admin');
    assert.equal(await roleOf(BOB), 'admin', 'the server has bob as an admin');
    await alice.page.$eval(`#members [data-user="${BOB}"] [data-testid="make-member"]`, (el) => el.click());
    await shownRole('member');
    assert.equal(await roleOf(BOB), 'member', 'the server has bob as a plain member again');

    // alice removes erin.
    await alice.page.$eval(`#members [data-user="${ERIN}"] [data-testid="remove-member"]`, (el) => el.click());
    await alice.waitFor('two members left', () => document.querySelectorAll('#members [data-testid="member"]').length === 2);
    await alice.page.click('#members-toggle');
  });

  test('a body over 4096 bytes cannot be sent', { timeout: TEST_MS }, async () => {
    await alice.openConv('public');
    await bob.openConv('public');
    const before = await alice.cids();

    // 2049 two-byte characters: 4098 bytes though only 2049 characters.
    const tooLong = 'é'.repeat(2049);
    await alice.setBody(tooLong);
    const ui = await alice.waitFor('the composer to refuse the long body', () => {
      const send = document.querySelector('#send');
      const counter = document.querySelector('#counter');
      return send.disabled && counter.classList.contains('over')
        ? { counter: counter.textContent, invalid: document.querySelector('#body').getAttribute('aria-invalid') } : null;
    });
    assert.match(ui.counter, /4098 \/ 4096 bytes/, 'the counter shows the byte count');
    assert.match(ui.counter, /too long/);
    assert.equal(ui.invalid, 'true', 'the textarea is marked invalid');
    await alice.screenshot('alice-too-long.png');
    // Enter does not send it either, and the text stays in the composer.
    await alice.page.focus('#body');
    await alice.page.keyboard.press('Enter');
    await alice.page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    assert.deepEqual(await alice.cids(), before, 'no message was queued');
    assert.equal(await alice.page.$eval('#body', (el) => el.value), tooLong, 'the draft is kept');

    // Exactly 4096 bytes is allowed: the button enables and the server accepts it.
    // Unique per run: the public room keeps earlier runs' messages.
    const max = 'é'.repeat(MAX_BODY_BYTES / 2 - 4) + randomBytes(2).toString('hex') + 'é'.repeat(2);
    assert.equal(Buffer.byteLength(max), MAX_BODY_BYTES);
    await alice.setBody(max);
    await alice.waitFor('the send button to enable at 4096 bytes', () =>
      !document.querySelector('#send').disabled && !document.querySelector('#counter').classList.contains('over'));
    await alice.page.click('#send');
    const cid = await alice.waitFor('the 4096-byte message in the list', (known) =>
      [...document.querySelectorAll('#messages > li')].map((li) => li.dataset.cid).find((c) => c && !known.includes(c)) || null, before);
    await alice.waitSent(cid);
    const got = await bob.waitMessage(max);
    assert.equal(got.from, ALICE);
  });

  test('earlier messages load page by page, back to the first', { timeout: TEST_MS }, async () => {
    // carol sends dave 130 messages while dave is away (a raw connection in alice's page).
    const sent = await alice.page.evaluate(async (from, to, n, ms) => {
      // In jwt auth mode carol first creates her account over REST.
      let auth = `user=${from}`;
      if ((await (await fetch('/api/auth/mode')).json()).mode === 'jwt') {
        const res = await fetch('/api/auth/register', {
          method: 'POST', headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ username: from, password: `${from} password` }),
        });
        auth = `token=${encodeURIComponent((await res.json()).token)}`;
      }
      return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${location.host}/ws?${auth}`);
      let acked = 0;
      const timer = setTimeout(() => { ws.close(); reject(new Error(`only ${acked} of ${n} sends acknowledged`)); }, ms);
      ws.onerror = () => { clearTimeout(timer); reject(new Error('the sender connection failed')); };
      ws.onmessage = (ev) => {
        const f = JSON.parse(ev.data);
        const send = (i) => ws.send(JSON.stringify({ type: 'send', cid: `older-${i}`, to, body: `older ${i}` }));
        if (f.type === 'hello') {
          for (let i = 1; i <= n; i++) send(i);
        } else if (f.type === 'sent' && ++acked === n) {
          clearTimeout(timer);
          ws.close(1000);
          resolve(acked);
        } else if (f.type === 'error' && f.code === 'rate_limited' && f.cid) {
          // Past the per-user burst: retry that send, with its cid, when told.
          setTimeout(() => send(Number(f.cid.slice('older-'.length))), f.retry_after_ms || 100);
        } else if (f.type === 'error') {
          clearTimeout(timer);
          reject(new Error(`send refused: ${ev.data}`));
        }
      };
      });
    }, CAROL, DAVE, 130, WAIT_MS);
    assert.equal(sent, 130);
    const dave = new Client(DAVE, GW2);
    await dave.start();
    try {
      await dave.login();
      const conv = CAROL < DAVE ? `dm:${CAROL}:${DAVE}` : `dm:${DAVE}:${CAROL}`;
      // The conversation list (GET /api/conversations) counts all 130 unread, not only the
      // 50 the sync brought.
      await dave.waitFor('130 unread shown as 99+', (id) =>
        document.querySelector(`#convs [data-conv="${CSS.escape(id)}"] [data-testid="unread"]`)?.textContent === '99+', conv);
      await dave.openConv(conv);
      const seqs = () => dave.page.$$eval('#messages > li', (lis) => lis.map((li) => Number(li.dataset.seq)));
      // A sync gives a new device the newest 50; each click one page more.
      for (const want of [50, 100, 130]) {
        await dave.waitFor(`${want} messages on screen`, (n) => document.querySelectorAll('#messages > li').length === n, want);
        if (want === 50) await dave.screenshot('dave-history.png');
        if (want < 130) {
          await dave.waitFor('the "Load earlier messages" button', () => {
            const b = document.querySelector('#older');
            return b && !b.hidden && !b.disabled;
          });
          await dave.page.click('#older');
        }
      }
      assert.deepEqual(await seqs(), Array.from({ length: 130 }, (_, i) => i + 1), 'every message once, in order');
      assert.equal(await dave.page.$eval('#messages > li .msg-body', (el) => el.textContent), 'older 1');
      await dave.waitFor('the button to go at the first message', () => document.querySelector('#older').hidden);
      assert.deepEqual(dave.pageErrors, [], 'no uncaught errors in dave\'s page');
    } finally {
      await dave.stop();
    }
  });

  test('alice\'s session survives a reload; after logging out a reload shows the login form', { timeout: TEST_MS }, async () => {
    assert.ok(dmCid, 'the DM test sent a message');
    const storage = () => alice.page.evaluate(() => ({
      user: localStorage.getItem('switchboard:user'), token: localStorage.getItem('switchboard:token'),
    }));
    const kept = await storage();
    await alice.page.reload({ waitUntil: 'load', timeout: WAIT_MS });
    await alice.waitFor('the app view, online as alice, with no login', (me) =>
      !document.querySelector('#app').hidden && document.querySelector('#login-view').hidden &&
      document.querySelector('#me').textContent === me &&
      document.querySelector('#status').dataset.state === 'online', ALICE);
    assert.deepEqual(await storage(), kept, 'the reload kept the user and its token');
    await alice.openConv(DM);
    await alice.waitFor('the first DM after the reload', (c) => !!document.querySelector(`#messages > li[data-cid="${CSS.escape(c)}"]`), dmCid);

    // Logging out forgets the session: the login form, nothing stored, and a reload stays there.
    await alice.page.click('#switch-user');
    const loginShown = () => alice.waitFor('the login form', () =>
      !document.querySelector('#login-view').hidden && document.querySelector('#app').hidden);
    await loginShown();
    assert.deepEqual(await storage(), { user: null, token: null }, 'logging out removes the user and its token');
    await alice.page.reload({ waitUntil: 'load', timeout: WAIT_MS });
    await loginShown();
    assert.deepEqual(await storage(), { user: null, token: null });

    // Logging in again (jwt mode: with the password) brings the conversations back.
    await alice.page.$eval('#name', (el) => { el.value = ''; });
    await alice.page.type('#name', ALICE);
    if (await alice.page.$eval('#password-field', (el) => !el.hidden)) await alice.page.type('#password', `${ALICE} password`);
    await alice.page.click('#login-submit');
    await alice.waitFor('the app view, online as alice again', (me) =>
      !document.querySelector('#app').hidden && document.querySelector('#me').textContent === me &&
      document.querySelector('#status').dataset.state === 'online', ALICE);
    await alice.openConv(DM);
    await alice.waitFor('the first DM after logging in again', (c) => !!document.querySelector(`#messages > li[data-cid="${CSS.escape(c)}"]`), dmCid);
  });

  test('screenshots of both windows', { timeout: TEST_MS }, async () => {
    // Both windows show the direct conversation, from each side.
    await alice.openConv(DM);
    await bob.openConv(DM);
    await Promise.all([alice.screenshot('alice.png'), bob.screenshot('bob.png')]);
    shot = true;
    for (const c of [alice, bob]) {
      assert.deepEqual(c.pageErrors, [], `${c.name}: no uncaught errors in the page`);
      assert.equal(await c.page.$eval('#status', (el) => el.dataset.state), 'online', `${c.name} is still online`);
    }
  });

  test('no error banners in either window', { timeout: TEST_MS }, async () => {
    const banners = { [ALICE]: await alice.banners(), [BOB]: await bob.banners() };
    assert.deepEqual(banners, { [ALICE]: [], [BOB]: [] });
  });
});
