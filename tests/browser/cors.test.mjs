// CORS in a real browser: headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core) loads two pages from two local origins, one on
// the gateway's cors.allowed_origins and one not, and each page's script
// calls the gateway with fetch. The POST carries `authorization` and a JSON
// content type, so the browser sends a preflight first.
//
//   allowed origin:    preflight 204 -> POST -> 200; the script reads the
//                      answer and the exposed x-switchyard-provider header
//   disallowed origin: preflight 403 -> the browser blocks the call (TypeError)
//                      and never sends the POST: the provider sees nothing
//
// Needs the worker build (npm run build) and Chromium: when /usr/bin/chromium
// is missing the test runs scripts/browser-setup.sh (apt-get, as root) and
// skips, saying why, if Chromium still is not there. SWITCHYARD_CHROMIUM
// points at another Chromium binary.
// A screenshot of the allowed page goes to build/browser/cors-allowed.png.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { startGateway, isBuilt, ROOT } from '../support/harness.mjs';
import { CHROMIUM, CHROMIUM_ARGS } from '../support/chromium.mjs';
import { startFakes, target, makeConfig } from '../support/config.mjs';

const SHOT = path.join(ROOT, 'build', 'browser', 'cors-allowed.png');
const OUTCOME_TIMEOUT_MS = 10_000;

/** '' when Chromium is usable (installing it if need be), else why not. */
function chromiumUnavailable() {
  if (existsSync(CHROMIUM)) return '';
  if (process.env.SWITCHYARD_CHROMIUM) return `SWITCHYARD_CHROMIUM=${CHROMIUM} does not exist`;
  const r = spawnSync('bash', [path.join(ROOT, 'scripts/browser-setup.sh')], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (r.status === 0 && existsSync(CHROMIUM)) return '';
  const said = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() || r.error?.message || `exit ${r.status}`;
  return `${CHROMIUM} is missing and scripts/browser-setup.sh could not install it: ${said}`;
}

/** The page: calls the gateway once on load and writes the outcome into #out. */
function pageHtml(label, gatewayUrl) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${label}</title>
<style>body{font:16px system-ui,sans-serif;margin:24px} pre{background:#f3f3f3;padding:12px}</style>
</head><body>
<h1>${label}: <span id="origin"></span></h1>
<p>POST ${gatewayUrl}/v1/chat/completions</p>
<h2 id="summary">waiting...</h2>
<pre id="out"></pre>
<script>
document.getElementById('origin').textContent = location.origin;
(async () => {
  let result;
  try {
    const res = await fetch(${JSON.stringify(gatewayUrl + '/v1/chat/completions')}, {
      method: 'POST',
      headers: { authorization: 'Bearer x', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'Hello from a browser' }] }),
    });
    const text = await res.text();
    let answer = null;
    try { answer = JSON.parse(text).choices[0].message.content; } catch {}
    result = {
      ok: true,
      status: res.status,
      provider: res.headers.get('x-switchyard-provider'),
      requestId: res.headers.get('x-request-id'),
      answer,
      body: answer === null ? text.slice(0, 500) : undefined,
    };
  } catch (e) {
    result = { ok: false, error: e.name, message: e.message };
  }
  document.getElementById('summary').textContent = result.ok
    ? 'HTTP ' + result.status + ' from ' + result.provider + ': ' + result.answer
    : 'blocked: ' + result.error + ': ' + result.message;
  const out = document.getElementById('out');
  out.textContent = JSON.stringify(result, null, 2);
  out.dataset.done = '1';
})();
</script>
</body></html>`;
}

/** An HTTP server on 127.0.0.1 serving one page at '/' (its HTML made on each request). */
async function startPageServer(html) {
  const server = http.createServer((req, res) => {
    if (req.url === '/' || req.url === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(html());
    } else if (req.url === '/favicon.ico') {
      res.writeHead(204).end(); // keeps a 404 out of the console
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    origin,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

// Checked (and installed, which can take a minute) before the test's clock starts.
const NO_CHROMIUM = chromiumUnavailable();

test('CORS in headless Chromium: an allowed origin reads the answer, another is blocked at the preflight', { timeout: 60_000 }, async (t) => {
  if (NO_CHROMIUM) {
    t.skip(`no Chromium: ${NO_CHROMIUM}`);
    return;
  }
  if (!isBuilt()) {
    throw new Error('build/worker/shim.mjs is missing: run `npm run build` before the browser tests');
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    throw new Error(`playwright-core is not installed (a devDependency: run npm ci): ${e.message}`);
  }

  // Cleanups run last-in first-out, also when an assertion fails half way.
  const cleanups = [];
  t.after(async () => {
    for (const c of cleanups.reverse()) await c().catch((e) => console.error('cleanup:', e));
  });

  let gatewayUrl = null;
  const allowedPage = await startPageServer(() => pageHtml('Allowed origin', gatewayUrl));
  cleanups.push(allowedPage.close);
  const otherPage = await startPageServer(() => pageHtml('Disallowed origin', gatewayUrl));
  cleanups.push(otherPage.close);

  const f = await startFakes({ openai: 'openai' });
  cleanups.push(() => f.openai.close());
  const { config, secrets } = makeConfig({
    fakes: f,
    routes: { chat: { strategy: 'priority', targets: [target(f.openai)] } },
  });
  config.cors = { allowed_origins: [allowedPage.origin] };
  const gw = await startGateway({ config, secrets });
  cleanups.push(() => gw.dispose());
  gatewayUrl = gw.url;
  assert.notEqual(new URL(gw.url).origin, allowedPage.origin, 'the gateway is another origin than the page');

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  cleanups.push(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 900, height: 520 } });

  /** Loads a page and resolves to the outcome its script wrote, plus the browser console. */
  async function visit(origin) {
    const page = await context.newPage();
    const consoleLines = [];
    page.on('console', (m) => consoleLines.push(m.text()));
    await page.goto(`${origin}/`, { timeout: OUTCOME_TIMEOUT_MS });
    await page.waitForSelector('#out[data-done]', { state: 'attached', timeout: OUTCOME_TIMEOUT_MS });
    const outcome = JSON.parse(await page.textContent('#out'));
    return { page, outcome, consoleLines };
  }

  // The allowed origin: 200, the answer, the exposed gateway header.
  const allowed = await visit(allowedPage.origin);
  mkdirSync(path.dirname(SHOT), { recursive: true });
  await allowed.page.screenshot({ path: SHOT });
  const a = allowed.outcome;
  assert.equal(a.ok, true, `the allowed origin's fetch failed: ${JSON.stringify(a)} console: ${allowed.consoleLines.join(' | ')}`);
  assert.equal(a.status, 200, JSON.stringify(a));
  assert.equal(a.answer, 'Hello from openai', JSON.stringify(a));
  assert.equal(a.provider, 'openai', 'x-switchyard-provider is exposed to the page (access-control-expose-headers)');
  assert.ok(a.requestId, 'x-request-id is exposed to the page');
  assert.equal(f.openai.chats.length, 1, 'the allowed origin made one chat request upstream');

  // The disallowed origin: the preflight is refused, the browser blocks the
  // call, and the POST never reaches the gateway (nor the provider).
  const chatsBefore = f.openai.chats.length;
  const other = await visit(otherPage.origin);
  const o = other.outcome;
  assert.equal(o.ok, false, `the disallowed origin could read a response: ${JSON.stringify(o)}`);
  assert.equal(o.error, 'TypeError', JSON.stringify(o));
  assert.match(o.message, /failed to fetch/i);
  // Chromium says why in the console: the preflight, not the POST, was refused.
  assert.ok(
    other.consoleLines.some((l) => /CORS policy/i.test(l) && /preflight/i.test(l)),
    `no CORS preflight error in the console: ${other.consoleLines.join(' | ')}`,
  );
  await new Promise((r) => setTimeout(r, 200)); // a late POST would show up here
  assert.equal(f.openai.chats.length, chatsBefore, 'no chat request reached the provider from the disallowed origin');
});
