// The dashboard in a real browser (headless Chromium via playwright-core,
// launched as cors.test.mjs does): the page loads from the gateway in
// Miniflare, the operator logs in with the admin key, every configured
// provider shows; then one fake provider fails, requests trip its circuit,
// and the page shows the circuit open within a refresh or two (the page's
// refresh interval comes from `?refresh=`). No console errors, and no
// request to any other origin. Screenshot: build/browser/dashboard.png.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { startGateway, isBuilt, ROOT } from '../support/harness.mjs';
import { CHROMIUM, CHROMIUM_ARGS } from '../support/chromium.mjs';
import { startFakes, target, makeConfig, userMessage } from '../support/config.mjs';

const SHOT = path.join(ROOT, 'build', 'browser', 'dashboard.png');
const ADMIN = 'admin-key-for-the-browser-test';

test('the dashboard: log in, see every provider, watch a failing provider\'s circuit open', { timeout: 60_000 }, async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`no Chromium at ${CHROMIUM} (scripts/browser-setup.sh installs it)`);
    return;
  }
  if (!isBuilt()) throw new Error('build/worker/shim.mjs is missing: run `npm run build` first');
  const { chromium } = await import('playwright-core');
  const cleanups = [];
  t.after(async () => {
    for (const c of cleanups.reverse()) await c().catch((e) => console.error('cleanup:', e));
  });

  const f = await startFakes({ openai: 'openai', anthropic: 'anthropic', cohere: 'cohere' });
  for (const x of Object.values(f)) cleanups.push(() => x.close());
  const { config, secrets } = makeConfig({
    fakes: f,
    routes: {
      chat: { strategy: 'weighted', targets: [target(f.openai, { weight: 3 }), target(f.anthropic)] },
      smart: { strategy: 'priority', targets: [target(f.anthropic), target(f.openai), target(f.cohere)] },
    },
  });
  config.breaker = { consecutive_failures: 2, cooldown_ms: 60000, max_cooldown_ms: 60000 };
  const gw = await startGateway({ config, secrets: { ...secrets, ADMIN_KEY: ADMIN }, assets: true });
  cleanups.push(() => gw.dispose());
  for (let i = 0; i < 3; i++) assert.equal((await gw.chat(userMessage('chat'))).status, 200);

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  cleanups.push(() => browser.close());
  const page = await (await browser.newContext({ viewport: { width: 1100, height: 900 } })).newPage();
  const errors = [];
  const foreign = [];
  const origin = new URL(gw.url).origin;
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('request', (r) => new URL(r.url()).origin !== origin && foreign.push(r.url()));

  await page.goto(`${gw.url}/dashboard?refresh=300`);
  await page.fill('#key', ADMIN);
  await page.click('#login button');
  await page.waitForSelector('body[data-loaded]', { timeout: 10_000 });
  for (const name of ['openai', 'anthropic', 'cohere']) {
    assert.ok(await page.$(`[data-provider="${name}"]`), `${name} is on the page`);
  }
  assert.equal(await page.textContent('[data-provider="openai"] .circuit'), 'closed');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('sy-admin')), ADMIN, 'the key is in session storage');
  assert.ok(!page.url().includes(ADMIN), 'never in the URL');
  assert.deepEqual((await page.context().cookies()).length, 0, 'no cookie');

  // OpenAI fails: two failed requests open its circuit; the page follows.
  f.openai.setDefault({ type: 'error', status: 503 });
  for (let i = 0; i < 4; i++) await gw.chat(userMessage('smart', 'hi', { switchyard: { order: ['openai', 'cohere'] } }));
  await page.waitForFunction(
    () => document.querySelector('[data-provider="openai"] .circuit')?.textContent.startsWith('open'),
    null,
    { timeout: 5_000 },
  );
  assert.match(await page.textContent('[data-provider="openai"] .circuit'), /^open, trial in \d+ s$/);
  assert.match(await page.textContent('#traffic'), /failovers/);
  mkdirSync(path.dirname(SHOT), { recursive: true });
  await page.screenshot({ path: SHOT, fullPage: true });

  // Logging out forgets the key.
  await page.click('#out');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('sy-admin')), null);
  assert.deepEqual(errors, [], 'no console errors (a CSP violation would be one)');
  assert.deepEqual(foreign, [], 'no request to any other origin');
});
