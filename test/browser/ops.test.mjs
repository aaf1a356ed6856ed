// The router's ops page (/ops on its admin address) in headless Chromium:
// it renders under its own Content-Security-Policy with no error, shows the
// gateways and topics that /ops.json lists, and refuses a missing token.
//
//   OPS_URL         the router's admin base URL (default http://127.0.0.1:9190)
//   ADMIN_TOKEN     the admin token (empty: none configured)
//   OPS_SCREENSHOT  where the full-page screenshot goes (default ./out/ops.png)
//   CHROMIUM_PATH   browser binary (default /usr/bin/chromium)
//
// Run: node --test ops.test.mjs   (internal/e2e's TestTheOpsPageShowsTheLiveCluster runs it)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.OPS_URL || 'http://127.0.0.1:9190').replace(/\/+$/, '');
const TOKEN = process.env.ADMIN_TOKEN || '';
const SHOT = process.env.OPS_SCREENSHOT || path.join(HERE, 'out', 'ops.png');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const q = TOKEN ? `?token=${encodeURIComponent(TOKEN)}` : '';

test('the ops page renders the cluster under its CSP', { timeout: 60000 }, async () => {
  if (TOKEN) {
    const res = await fetch(`${BASE}/ops`, { signal: AbortSignal.timeout(10000) });
    assert.equal(res.status, 401, 'GET /ops without the token');
  }
  const res = await fetch(`${BASE}/ops.json${q}`, { signal: AbortSignal.timeout(10000) });
  assert.equal(res.status, 200, 'GET /ops.json');
  const view = await res.json();
  assert.ok(view.gateways.length > 0, 'no gateway in /ops.json');

  const profile = await mkdtemp(path.join(tmpdir(), 'switchboard-ops-'));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    ignoreDefaultArgs: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, 'about:blank'],
    pipe: true,
    defaultViewport: { width: 1280, height: 900 },
    timeout: 30000,
    protocolTimeout: 30000,
  });
  try {
    const page = (await browser.pages())[0] || (await browser.newPage());
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e?.message || e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    const resp = await page.goto(`${BASE}/ops${q}`, { waitUntil: 'load', timeout: 15000 });
    assert.equal(resp.status(), 200);
    assert.match(resp.headers()['content-security-policy'] || '', /default-src 'none'/);
    const text = await page.evaluate(() => document.body.innerText);
    for (const g of view.gateways) assert.ok(text.includes(g.id), `the page does not show gateway ${g.id}`);
    for (const t of view.topics) assert.ok(text.includes(t.name), `the page does not show topic ${t.name}`);
    // The style sheet applied (a CSP refusal would leave the tables unstyled).
    const border = await page.evaluate(() => getComputedStyle(document.querySelector('th')).borderTopStyle);
    assert.equal(border, 'solid', 'the inline style was refused');
    assert.deepEqual(errors, [], 'console or page errors');
    await mkdir(path.dirname(SHOT), { recursive: true });
    await page.screenshot({ path: SHOT, fullPage: true });
  } finally {
    await browser.close();
    await rm(profile, { recursive: true, force: true });
  }
});
