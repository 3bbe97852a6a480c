// End-to-end hardening: gateway keys (secret and KV, scopes, revocation, a
// key list secret that holds a key by mistake), rate limits (per key, per
// address before a KV read, on the admin endpoints, callers without an
// address), CORS headers, a corpus of bad requests, and provider keys that
// never leak even when an upstream echoes them or a clip splits them.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { startGateway, isBuilt, SHIM } from '../support/harness.mjs';
import { startFakes, target, makeConfig, userMessage, keyFor, TEST_STATE } from '../support/config.mjs';

if (!isBuilt()) {
  throw new Error('build/worker/shim.mjs is missing: run `npm run build` before the e2e tests');
}

const sha256 = (s) => createHash('sha256').update(s).digest('hex');
const priority = (...targets) => ({ strategy: 'priority', targets });
const APP_KEY = 'sy_testkey_app_0123456789abcdefghij';
const OPS_KEY = 'sy_testkey_ops_0123456789abcdefghij';
const KV_KEY = 'sy_testkey_kv_0123456789abcdefghijk';
const ADMIN = 'admin-key-for-tests';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const RATE_LIMIT = (limit) => ({
  extra: { rate_limit: { binding: 'RATE_LIMITER', period_s: 60 } },
  miniflare: { ratelimits: { RATE_LIMITER: { simple: { limit, period: 60 } } } },
});

async function setup(t, { auth = { anonymous: false }, extra = {}, miniflare = {}, secrets: more = {} } = {}) {
  const f = await startFakes({ a: 'openai' });
  const routes = { chat: priority(target(f.a)), smart: priority(target(f.a, { model: 'smart-model' })) };
  const { config, secrets } = makeConfig({ fakes: f, routes, auth });
  Object.assign(config, extra);
  const keys = [
    { name: 'app', sha256: sha256(APP_KEY), routes: ['chat'] },
    { name: 'ops', sha256: sha256(OPS_KEY) },
  ];
  const gw = await startGateway({
    config,
    secrets: { ...secrets, GATEWAY_KEYS: JSON.stringify(keys), ...more },
    miniflare,
  });
  t.after(async () => {
    await gw.dispose();
    await Promise.all(Object.values(f).map((x) => x.close()));
  });
  return { gw, f };
}

const bearer = (k) => ({ authorization: `Bearer ${k}` });

describe('gateway keys', () => {
  test('no key or a wrong key gets 401 in the OpenAI shape; anonymous is off by default', async (t) => {
    const { gw, f } = await setup(t);
    for (const headers of [{}, bearer('sy_not_a_real_key_000000000000'), bearer('x'), { authorization: 'Basic abc' }]) {
      const r = await gw.chat(userMessage('chat'), { headers });
      assert.equal(r.status, 401, JSON.stringify(headers));
      assert.equal(r.json.error.type, 'authentication_error');
      assert.equal(r.json.error.code, 'invalid_api_key');
      assert.ok(r.json.error.message.length > 5);
    }
    assert.equal((await gw.fetch('/v1/models')).status, 401, 'the model list needs a key too');
    assert.equal((await gw.fetch('/healthz')).status, 200, 'health does not');
    assert.equal(f.a.chats.length, 0);
  });

  test('a key from the secret works, and its scope is enforced', async (t) => {
    const { gw } = await setup(t);
    const ok = await gw.chat(userMessage('chat'), { headers: bearer(APP_KEY) });
    assert.equal(ok.status, 200);
    const line = await gw.waitForLog((l) => l.request_id === ok.headers['x-request-id']);
    assert.equal(line.caller, 'app');
    const denied = await gw.chat(userMessage('smart'), { headers: bearer(APP_KEY) });
    assert.equal(denied.status, 403);
    assert.equal(denied.json.error.code, 'model_not_allowed');
    assert.equal((await gw.chat(userMessage('smart'), { headers: bearer(OPS_KEY) })).status, 200);
  });

  test('a key stored in KV works until it is revoked', async (t) => {
    const { gw } = await setup(t);
    const kv = await gw.kv();
    await kv.put(`sy:v1:key:${sha256(KV_KEY)}`, JSON.stringify({ name: 'kv-app', sha256: sha256(KV_KEY) }));
    const r = await gw.chat(userMessage('chat'), { headers: bearer(KV_KEY) });
    assert.equal(r.status, 200);
    // A fresh isolate (the cache holds a look-up for a minute) sees the revocation.
    await kv.put(`sy:v1:key:${sha256(KV_KEY)}`, JSON.stringify({ name: 'kv-app', sha256: sha256(KV_KEY), revoked: true }));
    const { gw: gw2 } = await setup(t);
    const kv2 = await gw2.kv();
    await kv2.put(`sy:v1:key:${sha256(KV_KEY)}`, JSON.stringify({ name: 'kv-app', sha256: sha256(KV_KEY), revoked: true }));
    assert.equal((await gw2.chat(userMessage('chat'), { headers: bearer(KV_KEY) })).status, 401);
  });

  test('anonymous access when the operator turns it on', async (t) => {
    const { gw } = await setup(t, { auth: { anonymous: true } });
    assert.equal((await gw.chat(userMessage('smart'))).status, 200);
    // OpenAI SDKs always send some key: an unknown one grants what none grants.
    assert.equal((await gw.chat(userMessage('smart'), { headers: bearer('unused') })).status, 200);
    // A real key still scopes its holder.
    assert.equal((await gw.chat(userMessage('smart'), { headers: bearer(APP_KEY) })).status, 403);
  });

  test('a gateway key pasted into the key list secret is never echoed, in the 500 or in any log line', async (t) => {
    const pasted = 'sy_testkey_pasted_by_mistake_0123456789abcdef';
    const cases = [
      [pasted, /not valid JSON/],
      [JSON.stringify(pasted), /not a JSON list.*looks like a key/],
      [JSON.stringify([pasted]), /entry 0: not an object/],
      [JSON.stringify([{ name: 'app', sha256: sha256(APP_KEY) }, { name: 'ops', sha256: pasted }]), /entry 1: `sha256` must be 64 hex digits/],
      [JSON.stringify([{ name: pasted, sha256: pasted }]), /entry 0: `sha256` must be 64 hex digits/],
      [JSON.stringify([{ name: 'app', sha256: sha256(APP_KEY), routes: pasted }]), /entry 0: `routes`/],
    ];
    for (const [secret, expected] of cases) {
      const { gw } = await setup(t, { secrets: { GATEWAY_KEYS: secret } });
      const r = await gw.chat(userMessage('chat'), { headers: bearer(APP_KEY) });
      assert.equal(r.status, 500, secret);
      assert.equal(r.json.error.type, 'configuration_error');
      assert.match(r.json.error.message, /GATEWAY_KEYS/);
      assert.match(r.json.error.message, expected);
      assert.ok(!r.text.includes('pasted_by_mistake'), r.text);
      // The log line says what is wrong too (it is safe to), and nothing else does.
      const line = await gw.waitForLog((l) => l.request_id === r.headers['x-request-id']);
      assert.equal(line.outcome, 'config_error');
      assert.match(line.error, expected);
      await sleep(50);
      assert.ok(!gw.logs().some((l) => JSON.stringify(l).includes('pasted_by_mistake')), 'no log line holds the key');
    }
  });

  test('a malformed key list secret is a clear configuration error, without its content', async (t) => {
    const { gw } = await setup(t, { secrets: { GATEWAY_KEYS: '[{"name":"x","sha256":"sy_secret_material"}]' } });
    const r = await gw.chat(userMessage('chat'), { headers: bearer(APP_KEY) });
    assert.equal(r.status, 500);
    assert.match(r.json.error.message, /GATEWAY_KEYS/);
    assert.doesNotMatch(r.text, /sy_secret_material/);
  });
});

describe('rate limits', () => {
  test('per key, with 429 and Retry-After', async (t) => {
    const { gw } = await setup(t, {
      extra: { rate_limit: { binding: 'RATE_LIMITER', period_s: 60 } },
      miniflare: { ratelimits: { RATE_LIMITER: { simple: { limit: 3, period: 60 } } } },
    });
    for (let i = 0; i < 3; i++) assert.equal((await gw.chat(userMessage('chat'), { headers: bearer(OPS_KEY) })).status, 200);
    const limited = await gw.chat(userMessage('chat'), { headers: bearer(OPS_KEY) });
    assert.equal(limited.status, 429);
    assert.equal(limited.headers['retry-after'], '60');
    assert.equal(limited.json.error.code, 'rate_limit_exceeded');
    // Another key has its own budget.
    assert.equal((await gw.chat(userMessage('chat'), { headers: bearer(APP_KEY) })).status, 200);
  });
});

describe('unauthenticated callers cannot spend KV reads or guess the admin key', () => {
  const ip = (addr) => ({ 'cf-connecting-ip': addr });

  test('random tokens cost at most the address limit in KV reads, then 429 before any read', async (t) => {
    const LIMIT = 4;
    const { extra, miniflare } = RATE_LIMIT(LIMIT);
    // No state refresh after the first: every KV read counted below is a key look-up.
    extra.state = { ...TEST_STATE, refresh_interval_s: 3600 };
    const { gw, f } = await setup(t, { extra, miniflare, secrets: { ADMIN_KEY: ADMIN } });
    // Each look at the counts from its own address: the admin endpoints are rate limited too.
    let admins = 0;
    const reads = async () => {
      const r = await gw.fetch('/v1/status', { headers: { ...bearer(ADMIN), ...ip(`198.51.100.${++admins}`) } });
      assert.equal(r.status, 200);
      return (await r.json()).kv_ops.reads;
    };
    const before = await reads();
    const N = 12;
    const statuses = [];
    for (let i = 0; i < N; i++) {
      const token = `sy_${randomBytes(32).toString('base64url')}`;
      const r = await gw.chat(userMessage('chat'), { headers: { ...bearer(token), ...ip('203.0.113.66') } });
      statuses.push(r.status);
      if (r.status === 429) {
        assert.equal(r.json.error.code, 'rate_limit_exceeded');
        assert.equal(r.headers['retry-after'], '60');
      }
    }
    assert.deepEqual(statuses, [...Array(LIMIT).fill(401), ...Array(N - LIMIT).fill(429)]);
    assert.equal((await reads()) - before, LIMIT, 'a KV read per token within the limit, none beyond it');

    // Another address has its own budget; one unknown token repeated is read once.
    const mid = await reads();
    const wrong = 'sy_testkey_wrong_0123456789abcdefghij';
    for (let i = 0; i < 3; i++) {
      assert.equal((await gw.chat(userMessage('chat'), { headers: { ...bearer(wrong), ...ip('203.0.113.67') } })).status, 401);
    }
    assert.equal((await reads()) - mid, 1, 'unknown keys are remembered');

    // A key from the secret costs no KV read and is not counted by address.
    const last = await reads();
    const ok = await gw.chat(userMessage('chat'), { headers: { ...bearer(OPS_KEY), ...ip('203.0.113.66') } });
    assert.equal(ok.status, 200);
    assert.equal((await reads()) - last, 0);
    assert.equal(f.a.chats.length, 1);
  });

  test('the admin endpoints are rate limited per address, before the admin key is checked', async (t) => {
    const { extra, miniflare } = RATE_LIMIT(3);
    const { gw } = await setup(t, { extra, miniflare, secrets: { ADMIN_KEY: ADMIN } });
    const admin = (p, key, addr) => gw.fetch(p, { headers: { ...bearer(key), ...ip(addr) } });
    for (const guess of ['admin-guess-1', 'admin-guess-2', 'admin-guess-3']) {
      assert.equal((await admin('/v1/status', guess, '203.0.113.9')).status, 401);
    }
    const limited = await admin('/v1/status', ADMIN, '203.0.113.9');
    assert.equal(limited.status, 429, 'even the right key, once the address is over');
    assert.equal(limited.headers.get('retry-after'), '60');
    assert.equal((await limited.json()).error.code, 'rate_limit_exceeded');
    assert.equal((await admin('/v1/mirror', ADMIN, '203.0.113.9')).status, 429, 'one budget for both endpoints');
    assert.equal((await admin('/v1/status', ADMIN, '203.0.113.10')).status, 200, 'another address is not limited');
    // The API budget of that address is its own.
    const chat = await gw.chat(userMessage('chat'), { headers: { ...bearer(OPS_KEY), ...ip('203.0.113.9') } });
    assert.equal(chat.status, 200);
  });

  test('callers without cf-connecting-ip (a service binding) share one bucket, and the isolate says so once', async (t) => {
    // A Worker calling the gateway through a service binding sends no
    // cf-connecting-ip (dispatchFetch would always add one): this caller
    // drops it, or sets it from x-test-client-ip.
    const f = await startFakes({ a: 'openai' });
    const { config, secrets } = makeConfig({ fakes: f, routes: { chat: priority(target(f.a)) }, auth: { anonymous: true } });
    config.rate_limit = { binding: 'RATE_LIMITER', period_s: 60 };
    const gateway = {
      name: 'gateway',
      modules: true,
      scriptPath: SHIM,
      modulesRoot: path.dirname(path.dirname(SHIM)),
      modulesRules: [
        { type: 'ESModule', include: ['**/*.js', '**/*.mjs'] },
        { type: 'CompiledWasm', include: ['**/*.wasm'], fallthrough: true },
      ],
      compatibilityDate: '2025-01-01',
      kvNamespaces: ['STATE'],
      bindings: { SWITCHYARD_CONFIG: config, ...secrets },
      ratelimits: { RATE_LIMITER: { simple: { limit: 2, period: 60 } } },
    };
    const caller = {
      name: 'caller',
      modules: true,
      compatibilityDate: '2025-01-01',
      serviceBindings: { GATEWAY: 'gateway' },
      script: `export default {
        async fetch(request, env) {
          const headers = new Headers(request.headers);
          const ip = headers.get('x-test-client-ip');
          headers.delete('x-test-client-ip');
          if (ip) headers.set('cf-connecting-ip', ip); else headers.delete('cf-connecting-ip');
          return env.GATEWAY.fetch(new Request(request, { headers }));
        },
      };`,
    };
    const gw = await startGateway({ config, miniflare: { workers: [caller, gateway] } });
    t.after(async () => {
      await gw.dispose();
      await Promise.all(Object.values(f).map((x) => x.close()));
    });
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await gw.chat(userMessage('chat'))).status);
    assert.deepEqual(statuses, [200, 200, 429], 'callers without an address share the bucket `ip:unknown`');
    // A header the caller sets does not pick another bucket...
    assert.equal((await gw.chat(userMessage('chat'), { headers: { 'x-forwarded-for': '198.51.100.77' } })).status, 429);
    // ...but a calling Worker that passes its client's address on does.
    assert.equal((await gw.chat(userMessage('chat'), { headers: { 'x-test-client-ip': '203.0.113.5' } })).status, 200);
    await sleep(50);
    const warnings = gw.logs().filter((l) => l && l.msg === 'no cf-connecting-ip');
    assert.equal(warnings.length, 1, JSON.stringify(gw.logs().slice(-5)));
    assert.equal(warnings[0].level, 'warn');
    assert.match(warnings[0].detail, /unknown/);
  });
});

describe('CORS', () => {
  const origin = 'http://127.0.0.1:8080';
  test('preflight and response headers for allowed origins only', async (t) => {
    const { gw } = await setup(t, { extra: { cors: { allowed_origins: [origin] } } });
    const pre = await gw.fetch('/v1/chat/completions', {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), origin);
    assert.match(pre.headers.get('access-control-allow-headers'), /authorization/);
    assert.match(pre.headers.get('access-control-allow-methods'), /POST/);
    const bad = await gw.fetch('/v1/chat/completions', {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    assert.equal(bad.status, 403);
    assert.equal(bad.headers.get('access-control-allow-origin'), null);
    const r = await gw.chat(userMessage('chat'), { headers: { ...bearer(APP_KEY), origin } });
    assert.equal(r.headers['access-control-allow-origin'], origin);
    assert.match(r.headers['access-control-expose-headers'], /x-switchyard-provider/);
    const other = await gw.chat(userMessage('chat'), { headers: { ...bearer(APP_KEY), origin: 'https://evil.example' } });
    assert.equal(other.headers['access-control-allow-origin'], undefined);
  });
});

describe('provider keys never leak', () => {
  test('even when the upstream echoes the key in its error body', async (t) => {
    const { gw, f } = await setup(t, { auth: { anonymous: true } });
    const key = keyFor('a');
    f.a.setDefault({
      type: 'error',
      status: 400,
      body: { error: { message: `Invalid request for key ${key}: temperature`, type: 'invalid_request_error', param: null, code: null } },
    });
    const r = await gw.chat(userMessage('chat'));
    assert.equal(r.status, 400);
    assert.ok(!r.text.includes(key), r.text);
    assert.match(r.text, /\[redacted\]/);
    await new Promise((res) => setTimeout(res, 100));
    assert.ok(!gw.logs().some((l) => JSON.stringify(l).includes(key)));
  });
});

describe('provider keys stay in their header', () => {
  test('a key echoed at any offset around the 500-character clip, in any format, leaves no prefix behind', async (t) => {
    // Long provider names make long keys (sk-test-<name>), so a clip can split them well inside.
    const spec = { 'clip-openai-provider': 'openai', 'clip-anthropic-provider': 'anthropic', 'clip-cohere-provider': 'cohere' };
    const f = await startFakes(spec);
    const routes = Object.fromEntries(Object.keys(spec).map((n) => [n, priority(target(f[n]))]));
    const { config, secrets } = makeConfig({ fakes: f, routes });
    const gw = await startGateway({ config, secrets });
    t.after(async () => {
      await gw.dispose();
      await Promise.all(Object.values(f).map((x) => x.close()));
    });
    for (const name of Object.keys(spec)) {
      const key = keyFor(name);
      const prefix = key.slice(0, 8);
      const behaviours = [];
      for (let at = 500 - key.length - 2; at <= 502; at++) behaviours.push({ echoKeyAt: at });
      // A message cut short upstream, mid-key, with no clip of ours.
      behaviours.push({ echoKeyAt: 100, padBytes: 100 + 12 });
      for (const extra of behaviours) {
        f[name].setDefault({ type: 'error', status: 400, ...extra });
        const r = await gw.chat(userMessage(name));
        assert.equal(r.status, 400, `${name} ${JSON.stringify(extra)}: ${r.text.slice(0, 200)}`);
        assert.ok(!r.text.includes(prefix), `${name} ${JSON.stringify(extra)}: ${r.text.slice(-120)}`);
      }
    }
    await sleep(100);
    assert.ok(!gw.logs().some((l) => JSON.stringify(l).includes('sk-test-clip')));
  });

  test('key_header sends the key in an api-key header (Azure OpenAI), not in authorization', async (t) => {
    const f = await startFakes({ a: 'openai' }, { keys: false });
    const key = 'sk-test-azure-style-key';
    const config = {
      providers: { a: { format: 'openai', base_url: f.a.baseUrl, key_secret: 'AZURE_KEY', key_header: 'api-key' } },
      routes: { chat: priority(target(f.a)) },
      auth: { anonymous: true },
    };
    const gw = await startGateway({ config, secrets: { AZURE_KEY: key } });
    t.after(async () => {
      await gw.dispose();
      await f.a.close();
    });
    assert.equal((await gw.chat(userMessage('chat'))).status, 200);
    const seen = f.a.chats[0].headers;
    assert.equal(seen['api-key'], key);
    assert.equal(seen.authorization, undefined);
  });
});

describe('bad requests', () => {
  const deep = '['.repeat(5000) + ']'.repeat(5000);
  const good = JSON.stringify(userMessage('chat'));
  const msg = (extra) => JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }], ...extra });
  const withMessages = (messages) => JSON.stringify({ model: 'chat', messages });
  // [name, body (string or Buffer), expected status, message pattern, extra headers, method, path]
  const CASES = [
    ['malformed JSON', '{', 400, /not a valid chat completion request/],
    ['truncated JSON', good.slice(0, 30), 400, /not a valid/],
    ['empty body', '', 400, /not a valid/],
    ['null', 'null', 400, /./],
    ['an array', '[]', 400, /./],
    ['a string', '"hi"', 400, /./],
    ['a number', '42', 400, /./],
    ['trailing garbage', good + ' x', 400, /trailing|not a valid/],
    ['duplicate field', '{"model":"chat","model":"x","messages":[]}', 400, /duplicate/],
    ['NaN literal', msg({}).replace('}', ',"temperature":NaN}'), 400, /not a valid/],
    ['model missing', JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }), 400, /model/],
    ['model a number', JSON.stringify({ model: 7, messages: [] }), 400, /model/],
    ['model empty', JSON.stringify({ model: ' ', messages: [{ role: 'user', content: 'hi' }] }), 400, /model/],
    ['messages missing', JSON.stringify({ model: 'chat' }), 400, /messages/],
    ['messages not a list', JSON.stringify({ model: 'chat', messages: 'hi' }), 400, /messages/],
    ['messages empty', withMessages([]), 400, /at least one message/],
    ['a message not an object', withMessages(['hi']), 400, /messages\[0\]/],
    ['role missing', withMessages([{ content: 'hi' }]), 400, /role/],
    ['unknown role', withMessages([{ role: 'wizard', content: 'hi' }]), 400, /wizard/],
    ['content a number', withMessages([{ role: 'user', content: 5 }]), 400, /content/],
    ['content null for a user', withMessages([{ role: 'user', content: null }]), 400, /needs `content`/],
    ['unknown content part', withMessages([{ role: 'user', content: [{ type: 'video' }] }]), 400, /video/],
    ['text part without text', withMessages([{ role: 'user', content: [{ type: 'text' }] }]), 400, /text/],
    ['image part without url', withMessages([{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }]), 400, /url/],
    ['tool message without id', withMessages([{ role: 'user', content: 'a' }, { role: 'tool', content: 'x' }]), 400, /tool_call_id/],
    ['assistant with nothing', withMessages([{ role: 'user', content: 'a' }, { role: 'assistant' }]), 400, /content. or .tool_calls/],
    ['tool call without function', withMessages([{ role: 'assistant', tool_calls: [{ id: '1', type: 'function' }] }]), 400, /function/],
    ['temperature a string', msg({ temperature: 'hot' }), 400, /temperature/],
    ['temperature 5', msg({ temperature: 5 }), 400, /between 0 and 2/],
    ['temperature negative', msg({ temperature: -1 }), 400, /temperature/],
    ['top_p 2', msg({ top_p: 2 }), 400, /top_p/],
    ['max_tokens 0', msg({ max_tokens: 0 }), 400, /max_tokens/],
    ['max_tokens negative', msg({ max_tokens: -5 }), 400, /max_tokens/],
    ['max_tokens absurd', msg({ max_tokens: 1e20 }), 400, /max_tokens/],
    ['max_tokens fractional', msg({ max_tokens: 1.5 }), 400, /max_tokens/],
    ['max_completion_tokens a string', msg({ max_completion_tokens: 'lots' }), 400, /max_completion_tokens/],
    ['n zero', msg({ n: 0 }), 400, /`n`/],
    ['n absurd', msg({ n: 100000 }), 400, /`n`/],
    ['five stop sequences', msg({ stop: ['a', 'b', 'c', 'd', 'e'] }), 400, /at most 4/],
    ['stop a number', msg({ stop: 3 }), 400, /stop/],
    ['frequency_penalty 5', msg({ frequency_penalty: 5 }), 400, /frequency_penalty/],
    ['tools not a list', msg({ tools: 'all' }), 400, /tools/],
    ['tool of another type', msg({ tools: [{ type: 'retrieval', function: { name: 'x' } }] }), 400, /only `function` tools/],
    ['tool without a name', msg({ tools: [{ type: 'function', function: { name: '' } }] }), 400, /name/],
    ['unknown tool_choice', msg({ tool_choice: 'sometimes' }), 400, /tool_choice/],
    ['unknown response_format', msg({ response_format: { type: 'xml' } }), 400, /xml/],
    ['stream a string', msg({ stream: 'yes' }), 400, /stream/],
    ['gateway options of the wrong shape', msg({ switchyard: { order: 'a' } }), 400, /switchyard/],
    ['unknown gateway option', msg({ switchyard: { turbo: true } }), 400, /turbo/],
    ['an order naming no target', msg({ switchyard: { order: ['nope'] } }), 400, /no target `nope`/],
    ['deep nesting', msg({ metadata: JSON.parse('[]') }).replace('[]', deep), 400, /recursion|not a valid/],
    ['invalid UTF-8', Buffer.concat([Buffer.from('{"model":"chat","messages":[{"role":"user","content":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}]}')]), 400, /not a valid|UTF-8|utf-8/i],
    ['unknown model', msg({}).replace('"chat"', '"gpt-9"'), 404, /does not exist/],
    ['huge body', msg({ filler: 'x'.repeat(2 * 1024 * 1024) }), 413, /larger than/],
    ['text/plain body', good, 415, /send JSON/, { 'content-type': 'text/plain' }],
    ['form body', 'model=chat', 415, /send JSON/, { 'content-type': 'application/x-www-form-urlencoded' }],
    ['an order header of only commas', good, 400, /at least one target/, { 'x-switchyard-order': ','.repeat(5000) }],
    ['GET on the chat endpoint', null, 405, /not allowed/, {}, 'GET'],
    ['DELETE on the models endpoint', null, 405, /not allowed/, {}, 'DELETE', '/v1/models'],
    ['an unknown path', good, 404, /no route/, {}, 'POST', '/v2/chat'],
    ['a path escaping upward', null, 404, /no route/, {}, 'GET', '/v1/../../etc/passwd'],
  ];

  test(`${CASES.length} bad requests get a clear OpenAI-style error, never a 500, and the gateway still serves`, async (t) => {
    assert.ok(CASES.length >= 50);
    const { gw, f } = await setup(t, { auth: { anonymous: true } });
    const outcomes = [];
    for (const [name, body, status, pattern, headers = {}, method = 'POST', path = '/v1/chat/completions'] of CASES) {
      const h = { 'content-type': 'application/json', ...headers };
      const res = await gw.fetch(path, { method, headers: h, body: body === null ? undefined : body });
      const text = await res.text();
      outcomes.push(`${res.status} ${name}`);
      assert.equal(res.status, status, `${name}: ${text.slice(0, 300)}`);
      const err = JSON.parse(text).error;
      assert.ok(err && 'message' in err && 'type' in err && 'param' in err && 'code' in err, `${name}: ${text}`);
      assert.match(err.message, pattern, `${name}: ${err.message}`);
    }
    assert.equal(f.a.chats.length, 0, 'no bad request reached a provider');
    const ok = await gw.chat(userMessage('chat'));
    assert.equal(ok.status, 200, 'the gateway still serves a good request');
    t.diagnostic(outcomes.join('\n'));
  });
});
