// End to end: the Anthropic Messages, OpenAI Responses, embeddings and
// model-lookup endpoints, through the built worker in Miniflare, against
// fake providers of every format. The same failover, error events and
// log lines as chat completions, in each API's own shapes.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startGateway, isBuilt } from '../support/harness.mjs';
import { startFakes, target, makeConfig } from '../support/config.mjs';
import { parseSse } from '../support/fake-providers.mjs';

if (!isBuilt()) {
  throw new Error('build/worker/shim.mjs is missing: run `npm run build` before the e2e tests');
}

const STREAM_POLICY = { first_token_timeout_ms: 400, stream_idle_timeout_ms: 400, retries_per_target: 0 };
const FULL = Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ');

async function setup(t, { fakes, routes, providers = {}, policy = {} }) {
  const f = await startFakes(fakes);
  const { config, secrets } = makeConfig({ fakes: f, routes: routes(f), policy: { ...STREAM_POLICY, ...policy } });
  for (const [name, extra] of Object.entries(providers)) Object.assign(config.providers[name], extra);
  const gw = await startGateway({ config, secrets });
  t.after(async () => {
    await gw.dispose();
    await Promise.all(Object.values(f).map((x) => x.close()));
  });
  return { gw, f };
}

const post = (gw, path, body, headers = {}) => gw.chat(body, { path, headers });
const events = (text) => parseSse(text).map((e) => ({ event: e.event, json: JSON.parse(e.data) }));
const messages = (model, extra = {}) => ({ model, max_tokens: 64, messages: [{ role: 'user', content: 'Hello' }], ...extra });
const anthropicText = (evs) =>
  evs.filter((e) => e.json.type === 'content_block_delta' && e.json.delta.type === 'text_delta').map((e) => e.json.delta.text).join('');
const responsesText = (evs) => evs.filter((e) => e.event === 'response.output_text.delta').map((e) => e.json.delta).join('');

describe('POST /v1/messages (Anthropic Messages)', () => {
  for (const format of ['anthropic', 'openai', 'cohere']) {
    test(`a whole answer from ${format} is an Anthropic message`, async (t) => {
      const { gw, f } = await setup(t, { fakes: { p: format }, routes: (f) => ({ claude: { targets: [target(f.p)] } }) });
      const r = await post(gw, '/v1/messages?beta=true', messages('claude'), { 'anthropic-version': '2023-06-01' });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.type, 'message');
      assert.equal(r.json.role, 'assistant');
      assert.deepEqual(r.json.content, [{ type: 'text', text: 'Hello from p' }]);
      assert.equal(r.json.stop_reason, 'end_turn');
      assert.ok(r.json.usage.output_tokens > 0);
      assert.equal(r.headers['x-switchyard-provider'], 'p');
      const sent = f.p.chats[0];
      if (format === 'anthropic') {
        // Passed as the client sent it, with its version header.
        assert.deepEqual(sent.body.messages, [{ role: 'user', content: 'Hello' }]);
        assert.equal(sent.headers['anthropic-version'], '2023-06-01');
      }
    });

    test(`a stream from ${format} is Anthropic's event sequence`, async (t) => {
      const { gw } = await setup(t, { fakes: { p: format }, routes: (f) => ({ claude: { targets: [target(f.p)] } }) });
      const r = await post(gw, '/v1/messages', messages('claude', { stream: true }));
      assert.equal(r.status, 200, r.text);
      assert.match(r.headers['content-type'], /^text\/event-stream/);
      const evs = events(r.text);
      assert.equal(evs[0].event, 'message_start');
      assert.equal(evs.at(-1).event, 'message_stop');
      assert.equal(anthropicText(evs), 'Hello from p');
      const delta = evs.find((e) => e.event === 'message_delta');
      assert.equal(delta.json.delta.stop_reason, 'end_turn');
      for (const e of evs) assert.equal(e.json.type, e.event);
    });
  }

  test('a failing Anthropic target fails over to OpenAI before the first event; an error after content is an Anthropic error event', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'anthropic', o: 'openai' },
      routes: (f) => ({ claude: { strategy: 'priority', targets: [target(f.a), target(f.o)] } }),
    });
    f.a.script({ type: 'error', status: 529 });
    const r = await post(gw, '/v1/messages', messages('claude', { stream: true }));
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-switchyard-provider'], 'o');
    assert.equal(anthropicText(events(r.text)), 'Hello from o');

    f.a.script({ type: 'stream', text: FULL, errorEventAfter: 10 });
    const broken = await post(gw, '/v1/messages', messages('claude', { stream: true }));
    const evs = events(broken.text);
    assert.equal(evs.at(-1).event, 'error');
    assert.equal(evs.at(-1).json.type, 'error');
    assert.ok(evs.at(-1).json.error.type.endsWith('_error'));
    assert.ok(!evs.some((e) => e.event === 'message_stop'), 'a broken answer does not end as if whole');
  });

  test('a tool call round trip translates to OpenAI and back', async (t) => {
    const { gw, f } = await setup(t, { fakes: { o: 'openai' }, routes: (f) => ({ claude: { targets: [target(f.o)] } }) });
    f.o.setDefault({ type: 'ok', text: '', toolCall: { name: 'get_weather', arguments: { city: 'Oslo' } } });
    const tools = [{ name: 'get_weather', description: 'weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }];
    const r = await post(gw, '/v1/messages', messages('claude', { tools }));
    assert.equal(r.status, 200, r.text);
    const use = r.json.content.find((b) => b.type === 'tool_use');
    assert.equal(use.name, 'get_weather');
    assert.deepEqual(use.input, { city: 'Oslo' });
    assert.equal(r.json.stop_reason, 'tool_use');
    assert.equal(f.o.chats[0].body.tools[0].function.name, 'get_weather');

    f.o.setDefault({ type: 'ok', text: 'Sunny' });
    const turn2 = await post(gw, '/v1/messages', messages('claude', {
      tools,
      messages: [
        { role: 'user', content: 'Weather in Oslo?' },
        { role: 'assistant', content: [use] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '12 C, sunny' }] },
      ],
    }));
    assert.equal(turn2.status, 200, turn2.text);
    const sent = f.o.chats[1].body.messages;
    assert.equal(sent[1].tool_calls[0].id, use.id);
    assert.deepEqual(sent[2], { role: 'tool', content: '12 C, sunny', tool_call_id: use.id });
  });

  test('mistakes and unknown models answer in Anthropic error shape; x-api-key authenticates', async (t) => {
    const f = await startFakes({ o: 'openai' });
    const { config, secrets } = makeConfig({
      fakes: f,
      routes: { claude: { targets: [target(f.o)] } },
      auth: { anonymous: false },
    });
    const gw = await startGateway({ config, secrets: { ...secrets, GATEWAY_KEYS: JSON.stringify([{ name: 'cc', sha256: createHash('sha256').update('sy-claude-code-key-1234').digest('hex') }]) } });
    t.after(async () => {
      await gw.dispose();
      await f.o.close();
    });
    const none = await post(gw, '/v1/messages', messages('claude'));
    assert.equal(none.status, 401);
    assert.deepEqual(Object.keys(none.json).sort(), ['error', 'type']);
    assert.equal(none.json.error.type, 'authentication_error');
    const key = { 'x-api-key': 'sy-claude-code-key-1234' };
    const ok = await post(gw, '/v1/messages', messages('claude'), key);
    assert.equal(ok.status, 200, ok.text);
    const missing = await post(gw, '/v1/messages', { model: 'claude', messages: [{ role: 'user', content: 'x' }] }, key);
    assert.equal(missing.status, 400);
    assert.equal(missing.json.type, 'error');
    assert.equal(missing.json.error.type, 'invalid_request_error');
    assert.match(missing.json.error.message, /max_tokens/);
    const unknown = await post(gw, '/v1/messages', messages('claude-opus-9'), key);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.type, 'not_found_error');
  });

  test('route aliases map Claude Code model names; count_tokens goes to Anthropic or is a 404', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'anthropic', o: 'openai' },
      routes: (f) => ({
        claude: { aliases: ['claude-opus-*', 'claude-haiku-4-5'], targets: [target(f.a)] },
        gpt: { targets: [target(f.o)] },
      }),
    });
    const r = await post(gw, '/v1/messages', messages('claude-opus-4-8'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-switchyard-route'], 'claude');
    assert.equal(f.a.chats[0].body.model, 'a-model');
    const count = await post(gw, '/v1/messages/count_tokens', { model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'Hello there' }] });
    assert.equal(count.status, 200, count.text);
    assert.ok(Number.isInteger(count.json.input_tokens) && count.json.input_tokens > 0);
    assert.equal(f.a.requests.at(-1).path, '/v1/messages/count_tokens');
    assert.equal(f.a.requests.at(-1).body.model, 'a-model');
    const none = await post(gw, '/v1/messages/count_tokens', { model: 'gpt', messages: [{ role: 'user', content: 'x' }] });
    assert.equal(none.status, 404);
    assert.equal(none.json.error.type, 'not_found_error');
  });
});

describe('POST /v1/responses (OpenAI Responses)', () => {
  for (const format of ['openai', 'anthropic', 'cohere']) {
    test(`whole and streamed answers from ${format} (translated) are Responses objects and events`, async (t) => {
      const { gw } = await setup(t, { fakes: { p: format }, routes: (f) => ({ r: { targets: [target(f.p)] } }) });
      const whole = await post(gw, '/v1/responses', { model: 'r', input: 'Hello', store: false });
      assert.equal(whole.status, 200, whole.text);
      assert.equal(whole.json.object, 'response');
      assert.equal(whole.json.status, 'completed');
      assert.equal(whole.json.output[0].content[0].text, 'Hello from p');
      assert.ok(whole.json.usage.output_tokens > 0);

      const s = await post(gw, '/v1/responses', { model: 'r', input: [{ role: 'user', content: 'Hello' }], stream: true });
      assert.equal(s.status, 200, s.text);
      const evs = events(s.text);
      assert.equal(evs[0].event, 'response.created');
      assert.equal(evs.at(-1).event, 'response.completed');
      assert.equal(responsesText(evs), 'Hello from p');
      evs.forEach((e, i) => assert.equal(e.json.sequence_number, i));
      assert.equal(evs.at(-1).json.response.output[0].content[0].text, 'Hello from p');
    });
  }

  test('a native Responses target gets the request as sent and its events pass through', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { o: 'openai' },
      providers: { o: { responses: true } },
      routes: (f) => ({ r: { targets: [target(f.o)] } }),
    });
    const body = { model: 'r', input: 'Hello', include: ['reasoning.encrypted_content'], store: false, tools: [{ type: 'web_search' }], stream: true };
    const s = await post(gw, '/v1/responses', body);
    assert.equal(s.status, 200, s.text);
    const sent = f.o.requests.at(-1);
    assert.equal(sent.path, '/v1/responses');
    assert.deepEqual(sent.body, { ...body, model: 'o-model' });
    assert.equal(s.headers['x-switchyard-dropped-tools'], undefined);
    const evs = events(s.text);
    assert.equal(responsesText(evs), 'Hello from o');
    assert.equal(evs.at(-1).event, 'response.completed');
    // Stateful requests are fine for a native target.
    const stateful = await post(gw, '/v1/responses', { model: 'r', input: 'Go on', previous_response_id: 'resp_1' });
    assert.equal(stateful.status, 200, stateful.text);
    assert.equal(f.o.requests.at(-1).body.previous_response_id, 'resp_1');
  });

  test('failover before the first event; an error after content ends with error and response.failed', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { o: 'openai', a: 'anthropic' },
      providers: { o: { responses: true } },
      routes: (f) => ({ r: { strategy: 'priority', targets: [target(f.o), target(f.a)] } }),
    });
    f.o.script({ type: 'error', status: 500 });
    const r = await post(gw, '/v1/responses', { model: 'r', input: 'Hello', stream: true });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-switchyard-provider'], 'a');
    assert.equal(responsesText(events(r.text)), 'Hello from a');

    f.o.script({ type: 'stream', text: FULL, errorEventAfter: 8 });
    const broken = await post(gw, '/v1/responses', { model: 'r', input: 'Hello', stream: true });
    const evs = events(broken.text);
    assert.equal(evs.at(-2).event, 'error');
    assert.equal(evs.at(-1).event, 'response.failed');
    assert.ok(!evs.some((e) => e.event === 'response.completed'));
    evs.forEach((e, i) => assert.equal(e.json.sequence_number, i, 'numbering carries on after passed-through events'));
  });

  test('stateful fields without a native target are a 400 naming them; hosted tools are dropped and named', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'anthropic' },
      routes: (f) => ({ r: { targets: [target(f.a)] }, strict: { hosted_tools: 'reject', targets: [target(f.a)] } }),
    });
    for (const [field, extra] of [['previous_response_id', { previous_response_id: 'resp_1' }], ['store', { store: true }]]) {
      const r = await post(gw, '/v1/responses', { model: 'r', input: 'x', ...extra });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.param, field);
    }
    const tools = [{ type: 'web_search' }, { type: 'function', name: 'shell', parameters: { type: 'object' } }];
    const r = await post(gw, '/v1/responses', { model: 'r', input: 'x', tools });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-switchyard-dropped-tools'], 'web_search');
    const line = await gw.waitForLog((l) => l.request_id === r.headers['x-request-id']);
    assert.equal(line.dropped_tools, 'web_search');
    assert.deepEqual(f.a.chats.at(-1).body.tools.map((t) => t.name), ['shell']);
    const refused = await post(gw, '/v1/responses', { model: 'strict', input: 'x', tools });
    assert.equal(refused.status, 400);
    assert.equal(refused.json.error.param, 'tools');
    const socket = await gw.fetch('/v1/responses', { headers: { upgrade: 'websocket' } });
    assert.equal(socket.status, 426);
    await socket.text();
  });

  test('a namespaced tool is flattened for Anthropic and its call mapped back', async (t) => {
    const { gw, f } = await setup(t, { fakes: { a: 'anthropic' }, routes: (f) => ({ r: { targets: [target(f.a)] } }) });
    f.a.setDefault({ type: 'ok', text: '', toolCall: { name: 'fs__read', arguments: { path: 'a.txt' } } });
    const tools = [{ type: 'namespace', name: 'fs', description: 'files', tools: [{ type: 'function', name: 'read', parameters: { type: 'object' } }] }];
    const r = await post(gw, '/v1/responses', { model: 'r', input: 'read a.txt', tools });
    assert.equal(r.status, 200, r.text);
    assert.equal(f.a.chats[0].body.tools[0].name, 'fs__read');
    const call = r.json.output.find((o) => o.type === 'function_call');
    assert.equal(call.name, 'read');
    assert.equal(call.namespace, 'fs');
    assert.deepEqual(JSON.parse(call.arguments), { path: 'a.txt' });
  });
});

describe('a client that leaves mid-stream', () => {
  for (const [path, body, upstream] of [
    ['/v1/messages', messages('r', { stream: true }), 'anthropic'],
    ['/v1/responses', { model: 'r', input: 'Hello', stream: true }, 'openai'],
  ]) {
    test(`${path}: the upstream (${upstream}, passed through) is closed soon after`, async (t) => {
      const { gw, f } = await setup(t, {
        fakes: { p: upstream },
        providers: upstream === 'openai' ? { p: { responses: true } } : {},
        routes: (f) => ({ r: { targets: [target(f.p)] } }),
        policy: { stream_idle_timeout_ms: 2000 },
      });
      f.p.setDefault({ type: 'ok', text: FULL, chunks: 40, chunkDelayMs: 50 });
      const controller = new AbortController();
      const res = await fetch(`${gw.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      assert.equal(res.status, 200);
      const first = await res.body.getReader().read();
      assert.ok(!first.done && first.value.length > 0);
      controller.abort();
      let waited = 0;
      while (f.p.abandoned === 0 && waited < 2000) {
        await new Promise((r) => setTimeout(r, 25));
        waited += 25;
      }
      assert.equal(f.p.abandoned, 1, 'the upstream stream was closed before its end (2 s of answer left)');
    });
  }
});

describe('POST /v1/embeddings and GET /v1/models/{id}', () => {
  test('embeddings from OpenAI and Cohere, failover only within one embedding space', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { o: 'openai', o2: 'openai', c: 'cohere' },
      routes: (f) => ({
        emb: {
          strategy: 'priority',
          targets: [
            target(f.o, { model: 'text-embedding-3-small', capabilities: ['embeddings'] }),
            target(f.c, { model: 'embed-v4.0', capabilities: ['embeddings'] }),
            target(f.o2, { model: 'text-embedding-3-small', capabilities: ['embeddings'] }),
          ],
        },
        cohere: { targets: [target(f.c, { model: 'embed-v4.0', capabilities: ['embeddings'] })] },
        chat: { targets: [target(f.o)] },
      }),
    });
    const r = await post(gw, '/v1/embeddings', { model: 'emb', input: ['a', 'b'] });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.object, 'list');
    assert.equal(r.json.data.length, 2);
    assert.equal(r.headers['x-switchyard-provider'], 'o');
    // o fails: the other target of the same space serves, never Cohere's vectors.
    f.o.setDefault({ type: 'error', status: 500 });
    const failed = await post(gw, '/v1/embeddings', { model: 'emb', input: 'a' });
    assert.equal(failed.status, 200, failed.text);
    assert.equal(failed.headers['x-switchyard-provider'], 'o2');
    assert.equal(f.c.requests.filter((q) => q.kind === 'embed').length, 0);

    const c = await post(gw, '/v1/embeddings', { model: 'cohere', input: 'a', encoding_format: 'base64', dimensions: 16 });
    assert.equal(c.status, 200, c.text);
    assert.equal(Buffer.from(c.json.data[0].embedding, 'base64').length, 16 * 4);
    assert.equal(f.c.requests.at(-1).body.output_dimension, 16);
    assert.ok(c.json.usage.prompt_tokens > 0);

    const chat = await post(gw, '/v1/embeddings', { model: 'chat', input: 'a' });
    assert.equal(chat.status, 400);
  });

  test('a route (or alias) is a model object; anything else a 404', async (t) => {
    const { gw } = await setup(t, { fakes: { o: 'openai' }, routes: (f) => ({ fast: { aliases: ['gpt-*'], targets: [target(f.o)] } }) });
    const r = await gw.fetch('/v1/models/fast');
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { id: 'fast', object: 'model', created: 0, owned_by: 'switchyard', route: 'fast' });
    const alias = await (await gw.fetch('/v1/models/gpt-5')).json();
    assert.equal(alias.route, 'fast');
    const missing = await gw.fetch('/v1/models/nope');
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).error.code, 'model_not_found');
  });
});
