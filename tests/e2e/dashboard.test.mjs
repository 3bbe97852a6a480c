// The operator's views end to end: usage and cost on answers and in the log
// line, the admin JSON behind the admin key (/v1/metrics, /v1/usage), the
// fleet figures from a fake Analytics Engine SQL API on 127.0.0.1, and the
// dashboard page with its Content-Security-Policy.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startGateway, isBuilt } from '../support/harness.mjs';
import { startFakes, target, makeConfig, userMessage } from '../support/config.mjs';

const ADMIN = 'admin-key-for-tests';
const admin = { authorization: `Bearer ${ADMIN}` };

async function setup(t, { secrets = {}, priced = true } = {}) {
  const f = await startFakes({ openai: 'openai' });
  t.after(() => f.openai.close());
  const t0 = target(f.openai, { cost: { input: 1, output: 2 } });
  if (!priced) delete t0.cost;
  const { config, secrets: keys } = makeConfig({
    fakes: f,
    routes: { chat: { strategy: 'priority', targets: [t0] } },
  });
  const gw = await startGateway({ config, secrets: { ...keys, ADMIN_KEY: ADMIN, ...secrets }, assets: true });
  t.after(() => gw.dispose());
  return { gw, f };
}

/** A fake SQL API: records each query, answers `rows`. */
async function startSqlApi(rows) {
  const queries = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      queries.push({ method: req.method, url: req.url, authorization: req.headers.authorization, body });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ meta: [], data: rows, rows: rows.length }));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}/client/v4`, queries, close: () => server.close() };
}

describe('usage, cost and the operator views', { skip: !isBuilt() && 'build the worker first' }, () => {
  test('a priced answer carries its cost in a header and in the log line; the metrics count it', async (t) => {
    const { gw } = await setup(t);
    const r = await gw.chat(userMessage('chat'));
    assert.equal(r.status, 200);
    const u = r.json.usage;
    const want = (u.prompt_tokens * 1 + u.completion_tokens * 2) / 1e6;
    assert.ok(r.headers['x-switchyard-cost-usd'], 'cost header present');
    assert.ok(Math.abs(Number(r.headers['x-switchyard-cost-usd']) - want) < 1e-9, r.headers['x-switchyard-cost-usd']);
    const line = await gw.waitForLog((l) => l.request_id === r.headers['x-request-id']);
    assert.equal(line.usage.prompt_tokens, u.prompt_tokens);
    assert.ok(Math.abs(line.cost_usd - want) < 1e-12);
    assert.ok(!gw.logs().some((l) => l?.msg === 'analytics write failed'), 'the ANALYTICS binding took the point');

    const m = await (await gw.fetch('/v1/metrics', { headers: admin })).json();
    assert.equal(m.scope, 'isolate');
    const chat = m.routes.find((s) => s.name === 'chat');
    assert.equal(chat.totals.requests, 1);
    assert.equal(chat.totals.prompt_tokens, u.prompt_tokens);
    assert.equal(m.providers.find((s) => s.name === 'openai').totals.requests, 1);

    const usage = await (await gw.fetch('/v1/usage', { headers: admin })).json();
    assert.equal(usage.scope, 'isolate', 'without the SQL API secrets the figures are this isolate\'s, and say so');
    assert.match(usage.note, /CF_ACCOUNT_ID/);
  });

  test('a stream is accounted when it ends: first-token time and cost in the log line and the metrics', async (t) => {
    const { gw } = await setup(t);
    const r = await gw.chat(userMessage('chat', 'Hello', { stream: true, stream_options: { include_usage: true } }));
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-switchyard-cost-usd'], undefined, 'no header can follow a stream\'s body');
    const line = await gw.waitForLog((l) => l.request_id === r.headers['x-request-id']);
    assert.ok(Number.isInteger(line.first_token_ms) && line.first_token_ms <= line.latency_ms, JSON.stringify(line));
    assert.ok(line.usage && line.cost_usd > 0, JSON.stringify(line));
    const m = await (await gw.fetch('/v1/metrics', { headers: admin })).json();
    const chat = m.routes.find((s) => s.name === 'chat').totals;
    assert.equal(chat.requests, 1);
    assert.ok(chat.ttft_p50_ms >= line.first_token_ms, JSON.stringify(chat));
    assert.ok(Math.abs(chat.cost_usd - line.cost_usd) < 1e-12);
  });

  test('an unpriced route sends no cost header', async (t) => {
    const { gw } = await setup(t, { priced: false });
    const r = await gw.chat(userMessage('chat'));
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-switchyard-cost-usd'], undefined);
  });

  test('the JSON endpoints need the admin key; the dashboard page does not and carries no data', async (t) => {
    const { gw } = await setup(t);
    for (const p of ['/v1/metrics', '/v1/usage', '/v1/status', '/v1/mirror']) {
      const none = await gw.fetch(p);
      assert.equal(none.status, 401, p);
      await none.arrayBuffer();
      const wrong = await gw.fetch(p, { headers: { authorization: 'Bearer nope' } });
      assert.equal(wrong.status, 401, p);
      await wrong.arrayBuffer();
    }
    // The page is a static asset with its headers from assets/_headers; the
    // worker never sees the request.
    const page = await gw.fetch('/dashboard');
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type'), /text\/html/);
    const csp = page.headers.get('content-security-policy');
    assert.match(csp, /^default-src 'none';/);
    assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/=]+'/);
    assert.match(csp, /connect-src 'self'/);
    assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(page.headers.get('referrer-policy'), 'no-referrer');
    assert.equal(page.headers.get('cache-control'), 'no-cache');
    const html = await page.text();
    assert.match(html, /^<!doctype html>/);
    assert.ok(!html.includes('openai'), 'no provider names (no data) in the page');
    // The asset layer refuses the other methods itself, and a page it
    // redirects (`/dashboard.html`) goes to /dashboard.
    const post = await gw.fetch('/dashboard', { method: 'POST', body: '{}' });
    assert.equal(post.status, 405);
    await post.arrayBuffer();
    const alias = await gw.fetch('/dashboard.html', { redirect: 'manual' });
    assert.equal(alias.status, 307);
    assert.equal(alias.headers.get('location'), '/dashboard');
    await alias.arrayBuffer();
    // Not a static file: the worker answers, and logs the request.
    const other = await gw.fetch('/dashboard-nope');
    assert.equal(other.status, 404);
    assert.equal((await other.json()).error.code, 'unknown_url');
    await gw.waitForLog((l) => l.path === '/dashboard-nope');
    const paths = gw.requestLogs().map((l) => l.path);
    assert.ok(!paths.includes('/dashboard') && !paths.includes('/dashboard.html'), `the worker never ran for the page: ${paths}`);
  });

  test('without the assets deployed, GET /dashboard is a JSON 404 from the gateway', async (t) => {
    const f = await startFakes({ openai: 'openai' });
    t.after(() => f.openai.close());
    const { config, secrets } = makeConfig({ fakes: f, routes: { chat: { strategy: 'priority', targets: [target(f.openai)] } } });
    const gw = await startGateway({ config, secrets });
    t.after(() => gw.dispose());
    const r = await gw.fetch('/dashboard');
    assert.equal(r.status, 404);
    assert.match(r.headers.get('content-type'), /application\/json/);
    assert.ok((await r.json()).error.message, 'an OpenAI-shaped error');
  });

  test('with the SQL API secrets, /v1/usage asks the Analytics Engine and answers for the fleet', async (t) => {
    const rows = [{ key: 'app', route: 'chat', requests: 42, prompt_tokens: 1000, completion_tokens: 500, cost_usd: 0.0123 }];
    const api = await startSqlApi(rows);
    t.after(() => api.close());
    const { gw } = await setup(t, {
      secrets: { CF_ACCOUNT_ID: 'acc123', CF_ANALYTICS_TOKEN: 'cf-token-test', ANALYTICS_SQL_URL: api.url },
    });
    const r = await gw.fetch('/v1/usage', { headers: admin });
    assert.equal(r.status, 200);
    const body = await r.json();
    assert.equal(body.scope, 'fleet');
    assert.deepEqual(body.rows, rows);
    assert.equal(api.queries.length, 1);
    const q = api.queries[0];
    assert.equal(q.method, 'POST');
    assert.equal(q.url, '/client/v4/accounts/acc123/analytics_engine/sql');
    assert.equal(q.authorization, 'Bearer cf-token-test');
    assert.match(q.body, /SUM\(_sample_interval \* double5\) AS cost_usd/);
    assert.match(q.body, /FROM switchyard WHERE/);
  });
});
