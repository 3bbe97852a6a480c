// End to end in workerd: what real providers, 2026 models and odd but valid
// answers do to the gateway. Reasoning streams, several choices, usage on
// every stream, continuation limits, lenient answers, header-unsafe model
// names, fields a format cannot honour, and the caps that keep an isolate's
// memory bounded. Fakes cut their streams into writes at random (config.mjs).

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startGateway, isBuilt } from '../support/harness.mjs';
import { startFakes, target, makeConfig, userMessage } from '../support/config.mjs';
import { streamChat, isDone } from '../support/sse.mjs';

if (!isBuilt()) {
  throw new Error('build/worker/shim.mjs is missing: run `npm run build` before the e2e tests');
}

const priority = (...targets) => ({ strategy: 'priority', targets });
const STREAM_POLICY = { first_token_timeout_ms: 400, stream_idle_timeout_ms: 400, retries_per_target: 0 };

async function setup(t, { fakes, routes, policy = {}, extra = {}, fakeOptions } = {}) {
  const f = await startFakes(fakes, fakeOptions);
  const { config, secrets } = makeConfig({ fakes: f, routes: routes(f), policy: { ...STREAM_POLICY, ...policy } });
  Object.assign(config, extra);
  const gw = await startGateway({ config, secrets });
  t.after(async () => {
    await gw.dispose();
    await Promise.all(Object.values(f).map((x) => x.close()));
  });
  await (await gw.fetch('/healthz')).text();
  return { gw, f };
}

const deltaField = (events, field, choice = 0) =>
  events
    .map((e) => e.json?.choices?.find((c) => (c.index ?? 0) === choice)?.delta?.[field] ?? '')
    .join('');

describe('reasoning models', () => {
  for (const [format, field] of [
    ['openai', 'reasoning_content'],
    ['anthropic', 'reasoning_content'],
    ['cohere', 'reasoning_content'],
  ]) {
    test(`${format}: thinking longer than the first-token limit is activity, reaches the client, and stays out of the answer`, async (t) => {
      const { gw, f } = await setup(t, {
        fakes: { r: format, spare: 'openai' },
        routes: (f) => ({ main: priority(target(f.r), target(f.spare)) }),
      });
      // 8 thinking pieces 150 ms apart: 1.2 s of thinking against a 400 ms first-token limit.
      f.r.setDefault({
        type: 'ok',
        text: 'The answer is 42.',
        reasoning: 'one two three four five six seven eight',
        reasoningDelayMs: 150,
      });
      const { res, events } = await streamChat(gw, userMessage('main'));
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('x-switchyard-provider'), 'r', 'no failover');
      assert.equal(f.spare.chats.length, 0);
      assert.equal(deltaField(events, 'content'), 'The answer is 42.');
      assert.match(deltaField(events, field), /one two three/);
      assert.ok(isDone(events));
      const line = await gw.waitForLog((l) => l.msg === 'request' && l.stream);
      assert.equal(line.outcome, 'ok');
    });
  }

  test('an OpenAI-compatible host that names its deltas `reasoning` passes through as it sent them', async (t) => {
    const { gw, f } = await setup(t, { fakes: { v: 'openai' }, routes: (f) => ({ main: priority(target(f.v)) }) });
    f.v.setDefault({ type: 'ok', text: 'Done.', reasoning: 'thinking hard', reasoningField: 'reasoning' });
    const { events } = await streamChat(gw, userMessage('main'));
    assert.equal(deltaField(events, 'reasoning'), 'thinking hard');
    assert.equal(deltaField(events, 'content'), 'Done.');
  });

  test('a whole answer carries the reasoning as message.reasoning_content from Anthropic', async (t) => {
    const { gw, f } = await setup(t, { fakes: { c: 'anthropic' }, routes: (f) => ({ main: priority(target(f.c)) }) });
    f.c.setDefault({ type: 'ok', text: 'Hi.', reasoning: 'a short thought' });
    const r = await gw.chat(userMessage('main'));
    assert.equal(r.status, 200);
    assert.equal(r.json.choices[0].message.content, 'Hi.');
    assert.equal(r.json.choices[0].message.reasoning_content, 'a short thought');
  });
});

describe('several choices and usage', () => {
  test('n = 2: one choice finishing does not end the other, even long after', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai' },
      routes: (f) => ({ main: priority(target(f.a)) }),
      policy: { stream_idle_timeout_ms: 3000 },
    });
    f.a.setDefault({ type: 'ok', texts: ['first answer', 'second answer'], finishGapMs: 1500 });
    const { events } = await streamChat(gw, userMessage('main', 'Hi', { n: 2 }));
    assert.equal(deltaField(events, 'content', 0), 'first answer');
    assert.equal(deltaField(events, 'content', 1), 'second answer');
    const finishes = events.flatMap((e) => e.json?.choices?.filter((c) => c.finish_reason) ?? []);
    assert.deepEqual(finishes.map((c) => c.index).sort(), [0, 1]);
    assert.ok(isDone(events));
  });

  test('n = 2 is never sent to a format without choices: the 400 names `n`', async (t) => {
    const { gw } = await setup(t, { fakes: { c: 'anthropic' }, routes: (f) => ({ main: priority(target(f.c)) }) });
    const r = await gw.chat(userMessage('main', 'Hi', { n: 2 }));
    assert.equal(r.status, 400);
    assert.equal(r.json.error.param, 'n');
  });

  test('every OpenAI-format stream is asked for usage; the log has it; the client gets the chunk only if it asked', async (t) => {
    const { gw, f } = await setup(t, { fakes: { a: 'openai' }, routes: (f) => ({ main: priority(target(f.a)) }) });
    f.a.setDefault({ type: 'ok', text: 'one two three' });
    const { events } = await streamChat(gw, userMessage('main'));
    assert.equal(f.a.chats[0].body.stream_options?.include_usage, true, 'the gateway asked');
    assert.ok(!events.some((e) => e.json && e.json.choices?.length === 0), 'no usage chunk for a client that did not ask');
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.stream);
    assert.ok(line.usage?.completion_tokens > 0, `usage logged: ${JSON.stringify(line)}`);
    const asked = await streamChat(gw, userMessage('main', 'Hi', { stream_options: { include_usage: true } }));
    assert.ok(asked.events.some((e) => e.json && e.json.choices?.length === 0 && e.json.usage));
  });
});

describe('continuation limits', () => {
  test('a stream cut inside a tool call is not continued: it ends with the error event', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'anthropic', b: 'anthropic' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b, { capabilities: ['tools', 'prefill'] })) }),
    });
    f.a.setDefault({ type: 'stream', toolCall: { name: 'lookup', arguments: { q: 'a long query to cut' } }, text: 'Let me look that up.', cutAfter: 7, chunkDelayMs: 5 });
    // Five text pieces, then the arguments in five: the cut falls inside them.
    const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }];
    const { events } = await streamChat(gw, { ...userMessage('main', 'Find it'), tools });
    const last = events.at(-1).json;
    assert.ok(last?.error, `an error event ends it: ${events.at(-1).data}`);
    assert.ok(events.some((e) => e.json?.choices?.[0]?.delta?.tool_calls), 'the tool call had begun');
    assert.ok(!isDone(events));
    assert.equal(f.b.chats.length, 0, 'no continuation was asked for');
  });

  test('a model that refuses prefill (Claude 4.6 and later) is passed over without counting against it', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'anthropic' },
      routes: (f) => ({
        main: priority(target(f.a), target(f.b, { model: 'claude-sonnet-4-6', capabilities: ['prefill'] })),
      }),
      extra: {},
    });
    f.b.setRejectPrefillModels(['claude-sonnet-4-6']);
    const text = Array.from({ length: 30 }, (_, i) => `w${i}`).join(' ');
    f.a.setDefault({ type: 'stream', text, cutAfter: 10, chunkDelayMs: 5 });
    const { events } = await streamChat(gw, userMessage('main'));
    assert.equal(events.at(-1).json?.error?.code, 'stream_cut', 'the client gets the original failure');
    assert.equal(f.b.chats.length, 1, 'the continuation was tried');
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.stream);
    const cont = line.attempts.find((a) => a.provider === 'b');
    assert.equal(cont?.outcome, 'bad_request', `the refusal is in the log line: ${JSON.stringify(line.attempts)}`);
    // b is still healthy: a plain request goes to b when a fails.
    f.a.setDefault({ type: 'error', status: 500 });
    f.b.setDefault({ type: 'ok', text: 'from b' });
    const r = await gw.chat(userMessage('main'));
    assert.equal(r.headers['x-switchyard-provider'], 'b');
  });
});

describe('valid but unusual answers', () => {
  for (const [name, behaviour] of [
    ['content as text parts', { contentParts: true }],
    ['cached_tokens: null', { usageVariant: 'cached_null' }],
    ['no total_tokens', { usageVariant: 'no_total' }],
    ['no usage', { usageVariant: 'none' }],
    ['choices without index', { noIndex: true }],
    ['extra fields everywhere', { extraFields: true }],
  ]) {
    test(`${name}: passed through, no failover, no failure counted`, async (t) => {
      const { gw, f } = await setup(t, {
        fakes: { a: 'openai', b: 'openai' },
        routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      });
      f.a.setDefault({ type: 'ok', text: 'odd but fine', ...behaviour });
      const r = await gw.chat(userMessage('main'));
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-switchyard-provider'], 'a');
      assert.equal(f.b.chats.length, 0);
      const content = r.json.choices[0].message.content;
      assert.equal(Array.isArray(content) ? content.map((p) => p.text).join('') : content, 'odd but fine');
    });
  }

  test('a model name that cannot be a header value is sanitised, never a 500 after a paid answer', async (t) => {
    const { gw, f } = await setup(t, { fakes: { a: 'openai' }, routes: (f) => ({ main: priority(target(f.a)) }) });
    f.a.setDefault({ type: 'ok', text: 'paid for', modelName: '模型\r\nx-injected: 1' });
    const r = await gw.chat(userMessage('main'));
    assert.equal(r.status, 200);
    assert.equal(r.json.model, '模型\r\nx-injected: 1', 'the body keeps it, JSON-escaped');
    assert.equal(r.headers['x-injected'], undefined);
    assert.match(r.headers['x-switchyard-model'], /^[\x20-\x7e]*$/);
  });
});

describe('fields a target cannot honour', () => {
  test('logprobs skip the Anthropic target; with nothing else left, the 400 names the field', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { c: 'anthropic', o: 'openai' },
      routes: (f) => ({ mixed: priority(target(f.c), target(f.o)), claude: priority(target(f.c)) }),
    });
    const r = await gw.chat(userMessage('mixed', 'Hi', { logprobs: true, top_logprobs: 2 }));
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-switchyard-provider'], 'o');
    assert.equal(f.c.chats.length, 0);
    const refused = await gw.chat(userMessage('claude', 'Hi', { logprobs: true }));
    assert.equal(refused.status, 400);
    assert.equal(refused.json.error.param, 'logprobs');
    const effort = await gw.chat(userMessage('claude', 'Hi', { reasoning_effort: 'high' }));
    assert.equal(effort.status, 400, 'no `reasoning` capability on the target');
    assert.equal(effort.json.error.param, 'reasoning_effort');
  });

  test('reasoning_effort becomes an Anthropic thinking budget on a target with the reasoning capability', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { c: 'anthropic' },
      routes: (f) => ({ main: priority(target(f.c, { capabilities: ['reasoning'] })) }),
    });
    const r = await gw.chat(userMessage('main', 'Hi', { reasoning_effort: 'high', max_tokens: 1000, temperature: 0.2 }));
    assert.equal(r.status, 200);
    const sent = f.c.chats[0].body;
    assert.deepEqual(sent.thinking, { type: 'enabled', budget_tokens: 16384 });
    assert.ok(sent.max_tokens > sent.thinking.budget_tokens);
    assert.equal(sent.temperature, undefined, 'thinking takes the default sampling');
  });
});

describe('bounded memory', () => {
  test('an upstream that trickles bytes with no newline is a malformed stream, and the next target serves', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'anthropic' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      policy: { first_token_timeout_ms: 3000 },
      extra: { limits: { max_stream_event_bytes: 16384 } },
    });
    f.a.setDefault({ type: 'trickle', bytesPerWrite: 4096, everyMs: 1 });
    f.b.setDefault({ type: 'ok', text: 'from b' });
    const t0 = performance.now();
    const { res, events } = await streamChat(gw, userMessage('main'));
    assert.equal(res.headers.get('x-switchyard-provider'), 'b');
    assert.equal(deltaField(events, 'content'), 'from b');
    assert.ok(performance.now() - t0 < 2500, 'it failed over on the cap, not on the first-token timeout');
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.stream);
    assert.equal(line.attempts[0].outcome, 'malformed_response');
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(f.a.abandoned >= 1, 'the trickling upstream was let go');
  });

  test('an error body past the cap is not read whole, and still fails over', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      extra: { limits: { max_error_body_bytes: 4096 } },
    });
    f.a.setDefault({ type: 'error', status: 503, padBytes: 200_000 });
    f.b.setDefault({ type: 'ok', text: 'from b' });
    const r = await gw.chat(userMessage('main'));
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-switchyard-provider'], 'b');
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.path === '/v1/chat/completions');
    assert.equal(line.attempts[0].status, 503);
  });

  test('an answer past the cap fails over as malformed', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      extra: { limits: { max_answer_bytes: 8192 } },
    });
    f.a.setDefault({ type: 'ok', text: 'too big', padBytes: 100_000 });
    f.b.setDefault({ type: 'ok', text: 'from b' });
    const r = await gw.chat(userMessage('main'));
    assert.equal(r.headers['x-switchyard-provider'], 'b');
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.path === '/v1/chat/completions');
    assert.equal(line.attempts[0].outcome, 'malformed_response');
  });

  test('a whole answer sent chunked without a length is read whole, characters cut across chunks intact', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai' },
      routes: (f) => ({ main: priority(target(f.a)) }),
    });
    const text = 'naïve café ✓ 日本語 🚀 done';
    f.a.setDefault({ type: 'ok', text, chunkedBytes: 3 });
    const r = await gw.chat(userMessage('main'));
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.choices[0].message.content, text);
  });

  test('a chunked answer past the cap is given up as it arrives and fails over as malformed', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      extra: { limits: { max_answer_bytes: 8192 } },
    });
    f.a.setDefault({ type: 'ok', text: 'too big', padBytes: 100_000, chunkedBytes: 1024 });
    f.b.setDefault({ type: 'ok', text: 'from b' });
    const r = await gw.chat(userMessage('main'));
    assert.equal(r.headers['x-switchyard-provider'], 'b');
    assert.equal(r.json.choices[0].message.content, 'from b');
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.path === '/v1/chat/completions');
    assert.equal(line.attempts[0].outcome, 'malformed_response');
  });

  test('a request body without content-length is counted as it arrives: 413 past the limit', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai' },
      routes: (f) => ({ main: priority(target(f.a)) }),
      extra: { limits: { max_body_bytes: 2048 } },
    });
    const send = (size) =>
      new Promise((resolve, reject) => {
        const req = http.request(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
        });
        req.on('response', (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode, body }));
        });
        req.on('error', reject);
        const json = JSON.stringify(userMessage('main', 'x'.repeat(size)));
        for (let i = 0; i < json.length; i += 500) req.write(json.slice(i, i + 500));
        req.end();
      });
    const small = await send(100);
    assert.equal(small.status, 200, small.body);
    const big = await send(50_000);
    assert.equal(big.status, 413, big.body);
    assert.equal(JSON.parse(big.body).error.code, 'request_too_large');
    assert.equal(f.a.chats.length, 1);
  });
});
