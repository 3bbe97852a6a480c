// End-to-end streaming: the built worker in Miniflare relays SSE
// from fake OpenAI, Anthropic and Cohere providers on 127.0.0.1 as OpenAI
// chunks, with every fault scripted at the fake and timeouts in milliseconds.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startGateway, isBuilt } from '../support/harness.mjs';
import { startFakes, target, makeConfig, userMessage } from '../support/config.mjs';
import { readSse, streamChat, isDone } from '../support/sse.mjs';

if (!isBuilt()) {
  throw new Error('build/worker/shim.mjs is missing: run `npm run build` before the e2e tests');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const priority = (...targets) => ({ strategy: 'priority', targets });
const STREAM_POLICY = { first_token_timeout_ms: 400, stream_idle_timeout_ms: 400, retries_per_target: 0 };
// Sixty words, so that chunk counts are easy to reason about.
const FULL = Array.from({ length: 60 }, (_, i) => `w${i}`).join(' ');
const firstWords = (n) => FULL.split(' ').slice(0, n).join(' ');

async function setup(t, { fakes, routes, policy = {} }) {
  const f = await startFakes(fakes);
  const { config, secrets } = makeConfig({ fakes: f, routes: routes(f), policy: { ...STREAM_POLICY, ...policy } });
  const gw = await startGateway({ config, secrets });
  t.after(async () => {
    await gw.dispose();
    await Promise.all(Object.values(f).map((x) => x.close()));
  });
  await (await gw.fetch('/healthz')).text();
  return { gw, f };
}

const textOf = (events) => events.map((e) => e.json?.choices?.[0]?.delta?.content ?? '').join('');
const errorOf = (events) => events.at(-1)?.json?.error;


describe('streams in OpenAI format from every provider', () => {
  for (const format of ['openai', 'anthropic', 'cohere']) {
    test(`${format}: chunks, finish_reason, usage chunk and [DONE]`, async (t) => {
      const { gw, f } = await setup(t, {
        fakes: { p: format },
        routes: (f) => ({ main: priority(target(f.p)) }),
      });
      f.p.setDefault({ type: 'ok', text: FULL });
      const { res, events } = await streamChat(gw, {
        ...userMessage('main'),
        stream_options: { include_usage: true },
      });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type'), /^text\/event-stream/);
      assert.equal(res.headers.get('x-switchyard-provider'), 'p');
      assert.equal(textOf(events), FULL);
      assert.ok(isDone(events));
      for (const e of events.slice(0, -1)) {
        if (e.json.choices.length) assert.equal(e.json.object, 'chat.completion.chunk');
      }
      const finish = events.find((e) => e.json?.choices?.[0]?.finish_reason);
      assert.equal(finish.json.choices[0].finish_reason, 'stop');
      const usage = events.find((e) => e.json?.usage && e.json.choices.length === 0);
      assert.ok(usage, 'a final usage chunk');
      assert.ok(usage.json.usage.completion_tokens > 0);
      // The stream's request was translated with stream on.
      assert.equal(f.p.chats[0].body.stream, true);
    });
  }

  test('tool call deltas are translated from Anthropic', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { c: 'anthropic' },
      routes: (f) => ({ main: priority(target(f.c)) }),
    });
    f.c.setDefault({ type: 'ok', toolCall: { name: 'get_weather', arguments: { location: 'Paris' } } });
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }];
    const { events } = await streamChat(gw, { ...userMessage('main', 'Weather?'), tools });
    const calls = events.flatMap((e) => e.json?.choices?.[0]?.delta?.tool_calls ?? []);
    assert.equal(calls[0].function.name, 'get_weather');
    assert.equal(calls[0].index, 0);
    const args = calls.map((c) => c.function?.arguments ?? '').join('');
    assert.deepEqual(JSON.parse(args), { location: 'Paris' });
    const finish = events.find((e) => e.json?.choices?.[0]?.finish_reason);
    assert.equal(finish.json.choices[0].finish_reason, 'tool_calls');
    assert.ok(isDone(events));
  });

  test('chunks arrive as the provider sends them, not all at the end', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai' },
      routes: (f) => ({ main: priority(target(f.a)) }),
      policy: { stream_idle_timeout_ms: 2000 },
    });
    f.a.setDefault({ type: 'ok', text: 'one two three four five six', chunks: 6, chunkDelayMs: 150 });
    const t0 = performance.now();
    const { events } = await streamChat(gw, userMessage('main'));
    const content = events.filter((e) => e.json?.choices?.[0]?.delta?.content);
    assert.equal(content.length, 6);
    const firstAt = content[0].at - t0;
    const lastAt = content.at(-1).at - t0;
    assert.ok(lastAt - firstAt >= 600, `the chunks spread over ${(lastAt - firstAt).toFixed(0)} ms, as sent`);
    assert.ok(firstAt < lastAt - 500, `the first chunk arrived at ${firstAt.toFixed(0)} ms, long before the last`);
  });
});

describe('failures before the first token fail over', () => {
  test('an error event before any content (Anthropic overloaded) fails over invisibly', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'anthropic', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
    });
    f.a.setDefault({ type: 'stream', errorEventAfter: 0, text: FULL });
    f.b.setDefault({ type: 'ok', text: FULL });
    const { res, events } = await streamChat(gw, userMessage('main'));
    assert.equal(res.headers.get('x-switchyard-provider'), 'b');
    assert.equal(res.headers.get('x-switchyard-attempts'), '2');
    assert.equal(textOf(events), FULL);
    assert.ok(isDone(events));
  });

  test('a slow first token past the limit goes to a healthy fallback', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'cohere' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
    });
    f.a.setDefault({ type: 'stream', firstByteDelayMs: 1500, text: FULL });
    f.b.setDefault({ type: 'ok', text: FULL });
    const t0 = performance.now();
    const { res, events } = await streamChat(gw, userMessage('main'));
    assert.equal(res.headers.get('x-switchyard-provider'), 'b');
    assert.ok(performance.now() - t0 < 1400, 'did not wait for the slow provider');
    assert.equal(textOf(events), FULL);
  });
});

describe('failures after content', () => {
  test('cut after 40 of 60 chunks: an error event, no [DONE], and the failure counted', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
    });
    f.a.setDefault({ type: 'stream', text: FULL, cutAfter: 40, chunkDelayMs: 5 });
    const { events } = await streamChat(gw, userMessage('main'));
    assert.equal(textOf(events), firstWords(40));
    assert.ok(!isDone(events), 'a cut answer never ends with [DONE]');
    assert.equal(errorOf(events).code, 'stream_cut');
    assert.equal(f.b.chats.length, 0);
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.outcome === 'stream_failed');
    assert.equal(line.provider, 'a');
  });

  test('a stall mid-stream ends with an error event after the idle timeout', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'anthropic' },
      routes: (f) => ({ main: priority(target(f.a)) }),
    });
    f.a.setDefault({ type: 'stream', text: FULL, stallAfter: 10 });
    const t0 = performance.now();
    const { events } = await streamChat(gw, userMessage('main'));
    const took = performance.now() - t0;
    assert.equal(textOf(events).split(' ').filter(Boolean).length, 10);
    assert.equal(errorOf(events).code, 'stream_stalled');
    assert.ok(took >= 400 && took < 2000, `ended ${took.toFixed(0)} ms in`);
  });

  test('an error event after content reaches the client as an error', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'anthropic' },
      routes: (f) => ({ main: priority(target(f.a)) }),
    });
    f.a.setDefault({ type: 'stream', text: FULL, errorEventAfter: 20 });
    const { events } = await streamChat(gw, userMessage('main'));
    assert.equal(textOf(events).split(' ').filter(Boolean).length, 20);
    assert.equal(errorOf(events).code, 'stream_error');
    assert.ok(!isDone(events));
  });

  test('a malformed tenth chunk is skipped and the stream goes on', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai' },
      routes: (f) => ({ main: priority(target(f.a)) }),
    });
    f.a.setDefault({ type: 'stream', text: FULL, malformedAt: 9 });
    const { events } = await streamChat(gw, userMessage('main'));
    assert.ok(isDone(events));
    const words = textOf(events).split(' ').filter(Boolean);
    assert.equal(words.length, 59);
    assert.ok(!words.includes('w9'));
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.stream);
    assert.equal(line.malformed_chunks, 1);
  });

  test('a finish without [DONE] is finalised promptly', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'cohere' },
      routes: (f) => ({ main: priority(target(f.a)) }),
    });
    f.a.setDefault({ type: 'stream', text: FULL, noDone: true });
    const { events } = await streamChat(gw, userMessage('main'));
    assert.equal(textOf(events), FULL);
    assert.ok(isDone(events));
  });
});

describe('a client that leaves', () => {
  test('stops the upstream stream: the gateway does not read (and pay for) the rest of the answer', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai' },
      routes: (f) => ({ main: priority(target(f.a)) }),
      policy: { stream_idle_timeout_ms: 2000 },
    });
    f.a.setDefault({ type: 'ok', chunks: 60, chunkDelayMs: 50 });
    const controller = new AbortController();
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...userMessage('main'), stream: true }),
      signal: controller.signal,
    });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    const first = await reader.read();
    assert.ok(!first.done && first.value.length > 0, 'the first chunk arrived');
    const leftAt = performance.now();
    controller.abort();
    // The whole answer would take 3 s; the upstream must see its reader go well before.
    let waited = 0;
    while (f.a.abandoned === 0 && waited < 2500) {
      await new Promise((r) => setTimeout(r, 25));
      waited += 25;
    }
    assert.equal(f.a.abandoned, 1, 'the upstream stream was closed before its end');
    assert.ok(performance.now() - leftAt < 2500, 'and soon after the client left');
  });
});

describe('a slow client', () => {
  test('paces the upstream: the gateway reads no faster than its client takes, and the answer still arrives whole', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai' },
      routes: (f) => ({ main: priority(target(f.a)) }),
      // Shorter than the client's pause below: waiting for the client is not
      // the upstream's silence. The suite's 4 s deadline is about what 64 MiB
      // takes here with the pause, so this answer gets a longer one.
      policy: { stream_idle_timeout_ms: 500, deadline_ms: 30_000 },
    });
    // 64 MiB of answer, offered as fast as the gateway takes it: more than
    // the socket buffers on the way hold.
    const events = 16_384;
    const eventBytes = 4096;
    f.a.setDefault({ type: 'flood', events, eventBytes });
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...userMessage('main'), stream: true }),
    });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    const first = await reader.read();
    assert.ok(!first.done);
    // The client stops reading for a while. A gateway that read on regardless
    // would have taken (and queued in memory) most of the answer by now; one
    // paced by its client stops once the buffers on the way are full.
    await new Promise((r) => setTimeout(r, 2000));
    const total = events * (eventBytes + 150);
    const taken = f.a.flooded;
    assert.ok(taken < total / 4, `the gateway took ${(taken / 2 ** 20).toFixed(1)} MiB of ${(total / 2 ** 20).toFixed(0)} while its client read nothing`);
    // Then it reads on: the whole answer, in order, and [DONE].
    const decoder = new TextDecoder();
    let body = decoder.decode(first.value, { stream: true });
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      body += decoder.decode(value, { stream: true });
    }
    let chars = 0;
    let whole = true;
    for (const line of body.split('\n')) {
      if (!line.startsWith('data: {')) continue;
      const c = JSON.parse(line.slice(6)).choices?.[0]?.delta?.content ?? '';
      if (c && c.length !== eventBytes) whole = false;
      chars += c.length;
    }
    // On a failure, say how much arrived and how it ended.
    const seen = `${body.length} bytes received, ending ${JSON.stringify(body.slice(-60))}`;
    assert.ok(whole, `every event arrived whole (${seen})`);
    assert.equal(chars, events * eventBytes, seen);
    assert.ok(body.trimEnd().endsWith('data: [DONE]'), seen);
  });
});

describe('continuing a broken answer', () => {
  test('on a prefill-capable fallback, the client receives exactly the full answer', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'anthropic' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b, { capabilities: ['prefill'] })) }),
    });
    f.a.setDefault({ type: 'stream', text: FULL, cutAfter: 40, chunkDelayMs: 5 });
    f.b.setDefault({ type: 'ok', text: FULL });
    const { events } = await streamChat(gw, userMessage('main'));
    assert.equal(textOf(events), FULL);
    assert.ok(isDone(events));
    const prefill = f.b.chats[0].body.messages.at(-1);
    assert.equal(prefill.role, 'assistant');
    const line = await gw.waitForLog((l) => l.msg === 'request' && l.stream);
    assert.equal(line.outcome, 'ok_continued');
    assert.deepEqual(line.continued_on, ['b/b-model']);
  });

  test('a fallback that rejects continuation leaves the original error', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b, { capabilities: ['prefill'] })) }),
    });
    f.a.setDefault({ type: 'stream', text: FULL, cutAfter: 40, chunkDelayMs: 5 });
    f.b.setDefault({ type: 'ok', text: FULL, rejectPrefill: true });
    const { events } = await streamChat(gw, userMessage('main'));
    assert.equal(f.b.chats.length, 1, 'the continuation was asked for');
    const e = errorOf(events);
    assert.equal(e.code, 'stream_cut');
    assert.doesNotMatch(e.message, /prefill/);
    assert.ok(!isDone(events));
  });
});

describe('the official openai client', () => {
  test('streams a normal answer', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'anthropic' },
      routes: (f) => ({ main: priority(target(f.a)) }),
    });
    f.a.setDefault({ type: 'ok', text: FULL });
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0, timeout: 5000 });
    const stream = await client.chat.completions.create({ model: 'main', messages: [{ role: 'user', content: 'Hi' }], stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    assert.equal(text, FULL);
  });

  test('raises on a broken stream instead of returning a short answer', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai' },
      routes: (f) => ({ main: priority(target(f.a)) }),
    });
    f.a.setDefault({ type: 'stream', text: FULL, cutAfter: 40, chunkDelayMs: 5 });
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0, timeout: 5000 });
    const stream = await client.chat.completions.create({ model: 'main', messages: [{ role: 'user', content: 'Hi' }], stream: true });
    let text = '';
    await assert.rejects(
      (async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
      })(),
      (err) => {
        assert.match(String(err.message), /cut off/);
        return true;
      },
    );
    assert.ok(text.length < FULL.length);
    await sleep(10);
  });
});
