// End-to-end tests: the built worker (build/worker/shim.mjs) in Miniflare,
// in front of fake providers on 127.0.0.1 that speak the real wire formats.
// Build first (npm run build); `npm test` does it.
//
// Each test starts its own fakes and gateway (so no provider state leaks from
// one test into the next) with short timeouts from tests/support/config.mjs.
// SWITCHYARD_ECHO_LOGS=1 prints the worker's log lines.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { startGateway, isBuilt } from '../support/harness.mjs';
import { startFakes, target, makeConfig, userMessage, keyFor } from '../support/config.mjs';

const KV_PREFIX = 'sy:v1:p:';
const ERROR_STATUSES = [502, 503, 504];

if (!isBuilt()) {
  throw new Error('build/worker/shim.mjs is missing: run `npm run build` before the e2e tests');
}

/**
 * Starts fakes and a gateway for one test and stops them when it ends.
 * @returns {Promise<{gw, f: Record<string, any>}>}
 */
async function setup(t, { fakes, routes, policy, state, kvPersist, extra }) {
  const f = await startFakes(fakes);
  const { config, secrets } = makeConfig({ fakes: f, routes: routes(f), policy, state });
  Object.assign(config, extra);
  let gw;
  try {
    gw = await startGateway({ config, secrets, kvPersist });
  } catch (e) {
    await Promise.all(Object.values(f).map((x) => x.close()));
    throw e;
  }
  t.after(async () => {
    await gw.dispose();
    await Promise.all(Object.values(f).map((x) => x.close()));
  });
  // Start the isolate now, so that timings below do not include its start-up.
  await (await gw.fetch('/healthz')).text();
  return { gw, f };
}

/** The attempts of a log line or error body, as a count. */
function attemptCount(a) {
  return Array.isArray(a) ? a.length : Number(a);
}

/** Polls `fn` until it returns a truthy value or `ms` pass. */
async function eventually(fn, ms = 3000, every = 50) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > end) return last;
    await new Promise((r) => setTimeout(r, every));
  }
}

const priority = (...targets) => ({ strategy: 'priority', targets });
const weighted = (...targets) => ({ strategy: 'weighted', targets });

describe('basics', () => {
  test('healthz and models', async (t) => {
    const { gw } = await setup(t, {
      fakes: { a: 'openai' },
      routes: (f) => ({ main: priority(target(f.a)), other: priority(target(f.a, { model: 'x' })) }),
    });
    const h = await gw.fetch('/healthz');
    assert.equal(h.status, 200);
    assert.equal((await h.json()).status, 'ok');

    const m = await gw.fetch('/v1/models');
    assert.equal(m.status, 200);
    const body = await m.json();
    assert.equal(body.object, 'list');
    assert.deepEqual(body.data.map((x) => x.id).sort(), ['main', 'other']);
    for (const x of body.data) assert.equal(x.object, 'model');
  });

  test('a request is answered by the primary, with the gateway headers and one log line', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
    });
    const r = await gw.chat(userMessage('main', 'Say hello'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.object, 'chat.completion');
    assert.equal(r.json.choices[0].message.content, 'Hello from a');
    assert.equal(r.headers['x-switchyard-provider'], 'a');
    assert.equal(r.headers['x-switchyard-model'], 'a-model');
    assert.equal(r.headers['x-switchyard-route'], 'main');
    assert.equal(r.headers['x-switchyard-attempts'], '1');
    assert.ok(r.headers['x-request-id']);

    assert.equal(f.a.chats.length, 1);
    assert.equal(f.b.chats.length, 0);
    const sent = f.a.chats[0];
    assert.equal(sent.path, '/v1/chat/completions');
    assert.equal(sent.headers.authorization, `Bearer ${keyFor('a')}`);
    assert.equal(sent.body.model, 'a-model', 'the route name is replaced by the upstream model');

    const line = await gw.waitForLog((l) => l.request_id === r.headers['x-request-id']);
    assert.equal(line.route, 'main');
    assert.equal(attemptCount(line.attempts), 1);
    assert.ok(line.outcome, 'the log line has an outcome');
    assert.equal(gw.requestLogs().filter((l) => l.request_id === r.headers['x-request-id']).length, 1);
  });
});

describe('request logs', () => {
  test('log_requests = "errors" logs failures and failovers, not plain successes', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      policy: { retries_per_target: 0 },
      extra: { log_requests: 'errors' },
    });
    const plain = await gw.chat(userMessage('main'));
    assert.equal(plain.status, 200, plain.text);
    f.a.script({ type: 'error', status: 503 });
    const failedOver = await gw.chat(userMessage('main'));
    assert.equal(failedOver.headers['x-switchyard-provider'], 'b');
    const refused = await gw.chat({ model: 'main', messages: [] });
    assert.equal(refused.status, 400);
    const failedLine = await gw.waitForLog((l) => l.request_id === failedOver.headers['x-request-id']);
    assert.equal(attemptCount(failedLine.attempts), 2);
    await gw.waitForLog((l) => l.request_id === refused.headers['x-request-id']);
    const ids = gw.requestLogs().map((l) => l.request_id);
    assert.ok(!ids.includes(plain.headers['x-request-id']), 'a plain success is not logged');
  });
});

describe('failover and retries', () => {
  test('primary 500 (after its retry) then the secondary answers', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'anthropic' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
    });
    f.a.setDefault({ type: 'error', status: 500 });
    const r = await gw.chat(userMessage('main'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].message.content, 'Hello from b');
    assert.equal(r.headers['x-switchyard-provider'], 'b');
    assert.equal(r.headers['x-switchyard-attempts'], '3');
    assert.equal(f.a.chats.length, 2, 'one retry at the primary (retries_per_target = 1)');
    assert.equal(f.b.chats.length, 1);
    const line = await gw.waitForLog((l) => l.request_id === r.headers['x-request-id']);
    assert.equal(attemptCount(line.attempts), 3);
  });

  test('primary 500 once, retried, and answering', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
    });
    f.a.script({ type: 'error', status: 500 });
    const r = await gw.chat(userMessage('main'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-switchyard-provider'], 'a');
    assert.equal(r.headers['x-switchyard-attempts'], '2');
    assert.equal(f.a.chats.length, 2);
    assert.equal(f.b.chats.length, 0);
    const gap = f.a.chats[1].at - f.a.chats[0].at;
    assert.ok(gap < 1000, `backoff stays small with backoff_max_ms 100 (was ${gap} ms)`);
  });

  test('429 with Retry-After: the retry waits at least that long', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      policy: { max_retry_after_ms: 2000, deadline_ms: 5000 },
    });
    f.a.script({ type: 'error', status: 429, headers: { 'retry-after': '1' } });
    const r = await gw.chat(userMessage('main'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-switchyard-provider'], 'a');
    assert.equal(f.a.chats.length, 2);
    assert.equal(f.b.chats.length, 0);
    const gap = f.a.chats[1].at - f.a.chats[0].at;
    assert.ok(gap >= 1000, `second attempt came ${gap.toFixed(0)} ms after the first, Retry-After was 1 s`);
    assert.ok(gap < 2000, `but not much later (${gap.toFixed(0)} ms)`);
  });

  test('429 with a Retry-After longer than max_retry_after_ms fails over at once', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'anthropic', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      policy: { max_retry_after_ms: 2000 },
    });
    f.a.script({ type: 'error', status: 429, headers: { 'retry-after': '30' } });
    const r = await gw.chat(userMessage('main'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-switchyard-provider'], 'b');
    assert.equal(f.a.chats.length, 1);
    assert.ok(r.ms < 1000, `took ${r.ms.toFixed(0)} ms`);
  });

  test('no answer within the attempt timeout: fail over, no second wait at the same provider', async (t) => {
    const attempt = 400;
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'cohere' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      policy: { attempt_timeout_ms: attempt, retries_per_target: 1 },
    });
    f.a.setDefault({ type: 'hang' });
    const r = await gw.chat(userMessage('main'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-switchyard-provider'], 'b');
    assert.equal(r.json.choices[0].message.content, 'Hello from b');
    assert.equal(f.a.chats.length, 1, 'a silent provider is not asked twice');
    assert.equal(f.b.chats.length, 1);
    assert.ok(r.ms >= attempt - 20, `gave up after ${r.ms.toFixed(0)} ms (timeout ${attempt})`);
    assert.ok(r.ms < 2 * attempt, `took ${r.ms.toFixed(0)} ms, more than 2x the attempt timeout`);
  });

  test('a timeout still fires when the request that started before it has finished', { timeout: 10_000 }, async (t) => {
    // Timers belong to the request that set them; one shared between
    // requests would die with the first and leave the second hanging.
    const attempt = 400;
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      policy: { attempt_timeout_ms: attempt, retries_per_target: 0 },
    });
    f.a.script({ type: 'ok', delayMs: 100 }, { type: 'hang' });
    const first = gw.chat(userMessage('main'));
    await new Promise((r) => setTimeout(r, 30));
    const second = gw.chat(userMessage('main'));
    const a = await first;
    assert.equal(a.headers['x-switchyard-provider'], 'a');
    const b = await second;
    assert.equal(b.status, 200, b.text);
    assert.equal(b.headers['x-switchyard-provider'], 'b', 'the hanging attempt timed out and failed over');
    assert.ok(b.ms < 2 * attempt, `took ${b.ms.toFixed(0)} ms`);
  });

  test('connection reset is retried at the same provider', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
    });
    f.a.script({ type: 'reset' });
    const r = await gw.chat(userMessage('main'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-switchyard-provider'], 'a');
    assert.equal(f.a.chats.length, 2);
  });

  test('a malformed 200 body fails over', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'anthropic', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
    });
    f.a.setDefault({ type: 'malformed' });
    const r = await gw.chat(userMessage('main'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-switchyard-provider'], 'b');
  });

  test('400 context length goes only to a target with a larger context window', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { small: 'openai', small2: 'cohere', big: 'anthropic' },
      routes: (f) => ({
        main: priority(
          target(f.small, { context_window: 8192 }),
          target(f.small2, { context_window: 8192 }),
          target(f.big, { context_window: 200000 }),
        ),
      }),
    });
    f.small.setDefault({ type: 'context_length' });
    f.small2.setDefault({ type: 'context_length' });
    const r = await gw.chat(userMessage('main', 'a very long prompt '.repeat(50)));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-switchyard-provider'], 'big');
    assert.equal(r.json.choices[0].message.content, 'Hello from big');
    assert.equal(f.small.chats.length, 1, 'context length is not retried');
    assert.equal(f.small2.chats.length, 0, 'a target with the same window is skipped');
    assert.equal(f.big.chats.length, 1);
  });

  test('content-policy 400 comes back with the provider reason, no retry, no other provider', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'anthropic', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
    });
    f.a.setDefault({ type: 'content_policy' });
    const r = await gw.chat(userMessage('main', 'something refused'));
    assert.equal(r.status, 400, r.text);
    assert.ok(r.json?.error, r.text);
    assert.match(r.json.error.message, /Output blocked by content filtering policy/);
    assert.equal(f.a.chats.length, 1);
    assert.equal(f.b.chats.length, 0);
  });

  test('all providers down: a clean error listing the attempts', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'cohere' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
    });
    f.a.setDefault({ type: 'error', status: 500 });
    f.b.setDefault({ type: 'error', status: 503 });
    const r = await gw.chat(userMessage('main'));
    assert.ok(ERROR_STATUSES.includes(r.status), `status ${r.status}: ${r.text}`);
    assert.match(r.headers['content-type'] ?? '', /application\/json/);
    const e = r.json.error;
    assert.equal(typeof e.message, 'string');
    assert.ok('type' in e && 'param' in e && 'code' in e, JSON.stringify(e));
    assert.equal(e.attempts.length, f.a.chats.length + f.b.chats.length);
    assert.deepEqual(
      e.attempts.map((a) => [a.provider, a.status]),
      [['a', 500], ['a', 500], ['b', 503], ['b', 503]],
    );
    for (const a of e.attempts) {
      assert.equal(a.target, `${a.provider}/${a.model}`);
      assert.equal(typeof a.outcome, 'string', `each attempt names its outcome: ${JSON.stringify(a)}`);
      assert.equal(typeof a.latency_ms, 'number');
    }
    const line = await gw.waitForLog((l) => l.request_id === r.headers['x-request-id']);
    assert.equal(attemptCount(line.attempts), 4);
    assert.notEqual(line.outcome, 'ok');
  });

  test('the attempt budget bounds the work when every target fails', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai', c: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b), target(f.c)) }),
      policy: { max_attempts: 3, retries_per_target: 2 },
    });
    for (const x of Object.values(f)) x.setDefault({ type: 'error', status: 502 });
    const r = await gw.chat(userMessage('main'));
    assert.ok(ERROR_STATUSES.includes(r.status), `status ${r.status}`);
    assert.equal(f.a.chats.length + f.b.chats.length + f.c.chats.length, 3);
    assert.equal(r.json.error.attempts.length, 3);
  });
});

describe('weights and shared failure state', () => {
  test('weighted split 3:1 over 200 requests', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ split: weighted(target(f.a, { weight: 3 }), target(f.b, { weight: 1 })) }),
    });
    const n = 200;
    const by = { a: 0, b: 0 };
    for (let i = 0; i < n; i++) {
      const r = await gw.chat(userMessage('split', `q${i}`));
      assert.equal(r.status, 200, r.text);
      by[r.headers['x-switchyard-provider']]++;
    }
    const share = by.a / n;
    // 3 standard deviations of a binomial(200, 0.75) is about +-0.09.
    assert.ok(share > 0.64 && share < 0.86, `a got ${(share * 100).toFixed(1)}% (want ~75%)`);
    assert.equal(f.a.chats.length, by.a);
    assert.equal(f.b.chats.length, by.b);
  });

  test('traffic shifts away from a failing provider', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ split: weighted(target(f.a, { weight: 1 }), target(f.b, { weight: 1 })) }),
      policy: { retries_per_target: 0 },
    });
    f.a.setDefault({ type: 'error', status: 500 });
    const run = async (n) => {
      const before = f.a.chats.length;
      for (let i = 0; i < n; i++) {
        const r = await gw.chat(userMessage('split'));
        assert.equal(r.status, 200, r.text);
        assert.equal(r.headers['x-switchyard-provider'], 'b');
      }
      return (f.a.chats.length - before) / n; // share of requests that tried a first
    };
    const warm = await run(30);
    const later = await run(60);
    assert.ok(warm > 0, 'a was tried at first');
    assert.ok(later < 0.25, `a still got ${(later * 100).toFixed(0)}% of first attempts (50% when healthy)`);
  });

  test('failure counts land in KV and a fresh instance starts from them', async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sy-kv-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const fakes = { a: 'openai', b: 'openai' };
    const routes = (f) => ({
      // `pump` has only a, so every request tries it and its failures add up
      // (a route with a fallback would soon demote a); `split` favours a 3:1.
      pump: priority(target(f.a)),
      split: weighted(target(f.a, { weight: 3 }), target(f.b, { weight: 1 })),
    });
    const policy = { retries_per_target: 0 };

    // 1. Failures on a, seen through KV.
    {
      const f = await startFakes(fakes);
      const { config, secrets } = makeConfig({ fakes: f, routes: routes(f), policy });
      const gw = await startGateway({ config, secrets, kvPersist: dir });
      try {
        f.a.setDefault({ type: 'error', status: 500 });
        for (let i = 0; i < 40; i++) {
          const r = await gw.chat(userMessage('pump'));
          assert.ok(ERROR_STATUSES.includes(r.status), `pump: status ${r.status}`);
        }
        // Writes are coalesced (min_write_interval_s = 1): one more failure after the interval flushes.
        await new Promise((r) => setTimeout(r, 1100));
        await gw.chat(userMessage('pump'));
        const state = await eventually(async () => {
          await (await gw.fetch('/healthz')).text(); // lets waitUntil work finish
          const s = await gw.kvJson(`${KV_PREFIX}a`);
          return s && s.failures > 0 ? s : null;
        });
        assert.ok(state, `no failure state for a in KV (${KV_PREFIX}a)`);
        assert.ok(state.failures >= 3, `a's failure count in KV is only ${state.failures} after ${f.a.chats.length} failures`);
        assert.equal(typeof state.last_failure_ms, 'number');
        assert.equal(typeof state.updated_ms, 'number');
        assert.ok(state.last_failure_ms > Date.now() - 60_000);
        assert.ok(!(await gw.kvJson(`${KV_PREFIX}b`))?.failures, 'b has no failures');
      } finally {
        await gw.dispose();
        await Promise.all(Object.values(f).map((x) => x.close()));
      }
    }

    // 2. Fresh instances (a new isolate each, a copy of the KV directory each so
    //    that one instance's writes do not reach the next) send their FIRST
    //    request to b, although a has weight 3 and is healthy again. Without the
    //    shared state a would get ~75% of first requests: P(a in at most 3 of 10) < 0.4%.
    //    With a's weight cut to 3 * 0.5^failures (selection.rs), five failures leave
    //    a ~9% of first requests: P(a in 4 or more of 10) < 1%; an open circuit leaves 0.
    const instances = 10;
    let toA = 0;
    for (let i = 0; i < instances; i++) {
      const copy = mkdtempSync(path.join(tmpdir(), 'sy-kv-copy-'));
      cpSync(dir, copy, { recursive: true });
      const f = await startFakes(fakes);
      const { config, secrets } = makeConfig({ fakes: f, routes: routes(f), policy });
      const gw = await startGateway({ config, secrets, kvPersist: copy });
      try {
        const r = await gw.chat(userMessage('split'));
        assert.equal(r.status, 200, r.text);
        if (r.headers['x-switchyard-provider'] === 'a') toA++;
      } finally {
        await gw.dispose();
        await Promise.all(Object.values(f).map((x) => x.close()));
        rmSync(copy, { recursive: true, force: true });
      }
    }
    assert.ok(toA <= 3, `a (failing in the shared state) got the first request of ${toA}/${instances} fresh instances`);
  });
});

describe('formats', () => {
  test('the official openai client gets a normal completion', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'anthropic' },
      routes: (f) => ({ main: priority(target(f.a)) }),
    });
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0, timeout: 5000 });
    const c = await client.chat.completions.create({
      model: 'main',
      messages: [{ role: 'user', content: 'Hello' }],
    });
    assert.equal(c.object, 'chat.completion');
    assert.equal(c.choices[0].message.role, 'assistant');
    assert.equal(c.choices[0].message.content, 'Hello from a');
    assert.equal(c.choices[0].finish_reason, 'stop');
    assert.ok(c.usage.total_tokens > 0);
    assert.equal(f.a.chats.length, 1);
    assert.equal(f.a.chats[0].headers['x-api-key'], keyFor('a'), 'the provider key, not the client key');

    const models = [];
    for await (const m of client.models.list()) models.push(m.id);
    assert.deepEqual(models, ['main']);
  });

  test('an Anthropic target answers in OpenAI format', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { claude: 'anthropic' },
      routes: (f) => ({ main: priority(target(f.claude, { model: 'claude-haiku-4-5' })) }),
    });
    const r = await gw.chat({
      model: 'main',
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'Hello' },
      ],
      max_completion_tokens: 100,
      temperature: 0.5,
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.object, 'chat.completion');
    assert.equal(r.json.choices[0].message.content, 'Hello from claude');
    assert.equal(r.json.choices[0].finish_reason, 'stop');

    const sent = f.claude.chats[0];
    assert.equal(sent.path, '/v1/messages');
    assert.equal(sent.headers['x-api-key'], keyFor('claude'));
    assert.equal(sent.headers['anthropic-version'], '2023-06-01');
    assert.equal(sent.body.model, 'claude-haiku-4-5');
    assert.equal(sent.body.max_tokens, 100);
    const system = typeof sent.body.system === 'string' ? sent.body.system : sent.body.system?.map((b) => b.text).join('');
    assert.equal(system, 'You are terse.');
    assert.deepEqual(sent.body.messages.map((m) => m.role), ['user']);

    const u = r.json.usage;
    assert.ok(u.prompt_tokens > 0 && u.completion_tokens > 0);
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  });

  test('a Cohere target answers in OpenAI format', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { cmd: 'cohere' },
      routes: (f) => ({ main: priority(target(f.cmd, { model: 'command-a-03-2025' })) }),
    });
    const r = await gw.chat({
      model: 'main',
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'Hello' },
      ],
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.object, 'chat.completion');
    assert.equal(r.json.choices[0].message.content, 'Hello from cmd');
    assert.equal(r.json.choices[0].finish_reason, 'stop');
    const sent = f.cmd.chats[0];
    assert.equal(sent.path, '/v2/chat');
    assert.equal(sent.headers.authorization, `Bearer ${keyFor('cmd')}`);
    assert.equal(sent.body.model, 'command-a-03-2025');
    assert.deepEqual(sent.body.messages.map((m) => m.role), ['system', 'user']);
    const u = r.json.usage;
    assert.ok(u.prompt_tokens > 0 && u.completion_tokens > 0);
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  });

  test('tool calls round-trip through Anthropic', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { claude: 'anthropic' },
      routes: (f) => ({ main: priority(target(f.claude)) }),
    });
    const tools = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Get the current weather in a given location',
          parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
        },
      },
    ];
    f.claude.script({ type: 'ok', toolCall: { name: 'get_weather', arguments: { location: 'Paris' } } });
    const first = await gw.chat({ model: 'main', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools });
    assert.equal(first.status, 200, first.text);
    const choice = first.json.choices[0];
    assert.equal(choice.finish_reason, 'tool_calls');
    const call = choice.message.tool_calls[0];
    assert.equal(call.type, 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.equal(typeof call.function.arguments, 'string');
    assert.deepEqual(JSON.parse(call.function.arguments), { location: 'Paris' });
    assert.ok(call.id);

    // What Anthropic received: its own tool shape.
    const sentTools = f.claude.chats[0].body.tools;
    assert.equal(sentTools[0].name, 'get_weather');
    assert.deepEqual(sentTools[0].input_schema, tools[0].function.parameters);

    // Second turn: the assistant's tool call and the tool result go back.
    const second = await gw.chat({
      model: 'main',
      tools,
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: null, tool_calls: [call] },
        { role: 'tool', tool_call_id: call.id, content: '{"temperature": 18, "unit": "celsius"}' },
      ],
    });
    assert.equal(second.status, 200, second.text);
    assert.equal(second.json.choices[0].message.content, 'Hello from claude');
    const msgs = f.claude.chats[1].body.messages;
    assert.deepEqual(msgs.map((m) => m.role), ['user', 'assistant', 'user']);
    const use = msgs[1].content.find((b) => b.type === 'tool_use');
    assert.equal(use.id, call.id);
    assert.equal(use.name, 'get_weather');
    assert.deepEqual(use.input, { location: 'Paris' });
    const result = msgs[2].content.find((b) => b.type === 'tool_result');
    assert.equal(result.tool_use_id, call.id);
    const resultText = typeof result.content === 'string' ? result.content : result.content.map((b) => b.text).join('');
    assert.equal(resultText, '{"temperature": 18, "unit": "celsius"}');
  });

});
