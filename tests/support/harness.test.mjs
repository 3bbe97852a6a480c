// Self-test of the Miniflare harness with a tiny JS worker (no Rust build needed):
// console.log capture, outbound fetch to a fake provider on loopback, KV,
// waitUntil, the cron handler, a shared kvPersist directory and a real HTTP port.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startGateway } from './harness.mjs';
import { startFakeProvider } from './fake-providers.mjs';

const WORKER = `
export default {
  async fetch(req, env, ctx) {
    const raw = env.SWITCHYARD_CONFIG;
    const cfg = typeof raw === 'string' ? JSON.parse(raw) : raw;
    const id = crypto.randomUUID();
    const url = new URL(req.url);
    if (url.pathname === '/count') {
      const n = Number((await env.STATE.get('count')) ?? '0');
      return Response.json({ count: n });
    }
    const up = await fetch(cfg.providers.openai.base_url + '/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer ' + env.OPENAI_API_KEY },
      body: await req.text(),
    });
    const body = await up.text();
    ctx.waitUntil((async () => {
      const n = Number((await env.STATE.get('count')) ?? '0');
      await env.STATE.put('count', String(n + 1));
    })());
    console.log(JSON.stringify({ request_id: id, route: 'chat', attempts: 1, outcome: 'ok' }));
    console.log('a plain line');
    return new Response(body, { status: up.status, headers: { 'content-type': 'application/json', 'x-request-id': id } });
  },
  async scheduled(ev, env, ctx) {
    console.log(JSON.stringify({ cron: ev.cron }));
  },
};`;

const dir = mkdtempSync(path.join(tmpdir(), 'sy-harness-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('harness boots a JS worker, captures logs, shares persisted KV', async () => {
  const fake = await startFakeProvider({ format: 'openai', name: 'openai', key: 'sk-test' });
  const config = { providers: { openai: { format: 'openai', base_url: fake.baseUrl } }, routes: {} };
  assert.equal(typeof config, 'object');
  let gw = await startGateway({ script: WORKER, config, secrets: { OPENAI_API_KEY: 'sk-test' }, kvPersist: dir });
  try {
    const r = await gw.chat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }] });
    assert.equal(r.status, 200);
    assert.equal(r.json.choices[0].message.content, 'Hello from openai');
    assert.equal(fake.chats.length, 1);
    assert.equal(fake.chats[0].headers.authorization, 'Bearer sk-test');

    const line = await gw.waitForLog((l) => l.request_id === r.headers['x-request-id']);
    assert.equal(line.outcome, 'ok');
    await gw.waitForLog((l) => l === 'a plain line');
    assert.equal(gw.requestLogs().length, 1);

    // waitUntil's KV write is visible right after the next request.
    await gw.fetch('/count');
    assert.equal(await (await gw.kv()).get('count'), '1');
    assert.equal(await gw.kvJson('count'), 1);

    // The listening port works for real HTTP clients.
    const viaPort = await fetch(`${gw.url}/count`);
    assert.deepEqual(await viaPort.json(), { count: 1 });

    assert.equal((await gw.scheduled('*/5 * * * *')).outcome, 'ok');
    await gw.waitForLog((l) => l.cron === '*/5 * * * *');
  } finally {
    await gw.dispose();
  }

  // A fresh instance on the same kvPersist directory sees the state.
  gw = await startGateway({ script: WORKER, config, secrets: { OPENAI_API_KEY: 'sk-test' }, kvPersist: dir });
  try {
    assert.deepEqual(await (await gw.fetch('/count')).json(), { count: 1 });
  } finally {
    await gw.dispose();
    await fake.close();
  }
});
