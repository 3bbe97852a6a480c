// End-to-end mirroring: the built worker in Miniflare mirrors
// sampled requests to a fake provider in waitUntil, compares the answers
// after the response, and keeps per-route aggregates in KV.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, isBuilt } from '../support/harness.mjs';
import { startFakes, target, makeConfig, userMessage } from '../support/config.mjs';

if (!isBuilt()) {
  throw new Error('build/worker/shim.mjs is missing: run `npm run build` before the e2e tests');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const priority = (...targets) => ({ strategy: 'priority', targets });
const ADMIN = 'admin-key-for-tests';

/** Routes `plain` (a only) and `mirrored` (a, mirrored to m at `rate`). */
async function setup(t, { rate = 1.0, policy = {}, extra = {}, mirrorFormat = 'anthropic' } = {}) {
  const f = await startFakes({ a: 'openai', m: mirrorFormat });
  const routes = {
    plain: priority(target(f.a)),
    mirrored: { ...priority(target(f.a)), mirror: { target: 'm/m-model', sample_rate: rate, cost: { input: 3, output: 15 } } },
  };
  const { config, secrets } = makeConfig({ fakes: f, routes, policy: { retries_per_target: 0, ...policy } });
  config.state.mirror_write_interval_s = 1;
  Object.assign(config, extra);
  const gw = await startGateway({ config, secrets: { ...secrets, ADMIN_KEY: ADMIN } });
  t.after(async () => {
    await gw.dispose();
    await Promise.all(Object.values(f).map((x) => x.close()));
  });
  await (await gw.fetch('/healthz')).text();
  return { gw, f };
}

async function eventually(fn, ms = 5000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v || Date.now() > end) return v;
    await sleep(50);
  }
}

const mirrorLines = (gw) => gw.logs().filter((l) => l.msg === 'mirror');

describe('mirroring', () => {
  test('a slow mirror does not slow the client; the pair is compared after the response', async (t) => {
    const { gw, f } = await setup(t);
    f.a.setDefault({ type: 'ok', text: 'Paris is the capital of France.' });
    f.m.setDefault({ type: 'ok', text: 'Paris is the capital of France.', delayMs: 1500 });
    const plain = [];
    const mirrored = [];
    for (let i = 0; i < 4; i++) {
      plain.push((await gw.chat(userMessage('plain'))).ms);
      const r = await gw.chat(userMessage('mirrored'));
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-switchyard-provider'], 'a');
      mirrored.push(r.ms);
    }
    const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(mean(mirrored) < mean(plain) + 100, `mirrored ${mean(mirrored).toFixed(1)} ms vs plain ${mean(plain).toFixed(1)} ms`);
    assert.ok(Math.max(...mirrored) < 1000, 'no response waited for the 1.5 s mirror');
    // The mirror got the request (never streamed), and the comparison came after.
    assert.equal(mirrorLines(gw).length < 4, true, 'comparisons finish after the responses');
    await eventually(() => f.m.chats.length === 4 && mirrorLines(gw).length === 4);
    assert.equal(f.m.chats.length, 4);
    assert.equal(f.m.chats[0].body.model, 'm-model');
    const line = mirrorLines(gw)[0];
    assert.equal(line.route, 'mirrored');
    assert.equal(line.agree, true);
    assert.equal(line.similarity, 1);
    assert.equal(line.primary.provider, 'a');
    assert.equal(line.mirror.provider, 'm');
    assert.ok(line.mirror.latency_ms >= 1500);
    assert.ok(line.latency_diff_ms > 1000);
    assert.equal(typeof line.mirror.cost_usd, 'number');
    const agg = await eventually(async () => {
      const v = await gw.kvJson('sy:v1:m:mirrored');
      return v && v.pairs >= 1 ? v : null;
    });
    assert.ok(agg.pairs >= 1 && agg.agreed === agg.pairs, JSON.stringify(agg));
  });

  test('divergent answers are reported as divergent', async (t) => {
    const { gw, f } = await setup(t);
    f.a.setDefault({ type: 'ok', text: 'Paris is the capital of France.' });
    f.m.setDefault({ type: 'ok', text: 'Lyon is a large city in France.' });
    await gw.chat(userMessage('mirrored'));
    const line = await gw.waitForLog((l) => l.msg === 'mirror', 3000);
    assert.equal(line.agree, false);
    assert.ok(line.similarity > 0 && line.similarity < 0.7, `similarity ${line.similarity}`);
  });

  test('a failing primary is answered from the in-flight mirror', async (t) => {
    const { gw, f } = await setup(t);
    f.a.setDefault({ type: 'error', status: 500 });
    f.m.setDefault({ type: 'ok', text: 'From the mirror', delayMs: 300 });
    const r = await gw.chat(userMessage('mirrored'));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-switchyard-mirror'], 'served');
    assert.equal(r.headers['x-switchyard-provider'], 'm');
    assert.equal(r.json.choices[0].message.content, 'From the mirror');
    // The same with a streaming client: the mirror's answer arrives as a stream.
    const res = await gw.fetch('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...userMessage('mirrored'), stream: true }),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-switchyard-mirror'), 'served');
    const text = await res.text();
    assert.match(text, /From the mirror/);
    assert.match(text, /data: \[DONE\]\n\n$/);
  });

  test("a Messages client served from the mirror gets Anthropic's shape, whatever OpenAI variant the mirror spoke", async (t) => {
    // An OpenAI-compatible mirror whose answer leaves out `index` and adds
    // fields of its own: valid, and read leniently.
    const { gw, f } = await setup(t, { mirrorFormat: 'openai' });
    f.a.setDefault({ type: 'error', status: 500 });
    f.m.setDefault({ type: 'ok', text: 'From the mirror', noIndex: true, extraFields: true, delayMs: 200 });
    const body = { model: 'mirrored', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] };
    const post = (b) =>
      gw.fetch('/v1/messages', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) });
    const whole = await post(body);
    assert.equal(whole.status, 200);
    assert.equal(whole.headers.get('x-switchyard-mirror'), 'served');
    const m = await whole.json();
    assert.equal(m.type, 'message', JSON.stringify(m));
    assert.deepEqual(m.content, [{ type: 'text', text: 'From the mirror' }]);
    assert.equal(m.stop_reason, 'end_turn');
    const streamed = await post({ ...body, stream: true });
    assert.equal(streamed.status, 200);
    assert.equal(streamed.headers.get('x-switchyard-mirror'), 'served');
    const text = await streamed.text();
    assert.match(text, /^event: message_start\n/);
    assert.match(text, /"text_delta","text":"From the mirror"/);
    assert.match(text, /event: message_stop\n/);
  });

  test("a mirror's failure never changes the client's response, but counts against the mirror", async (t) => {
    const { gw, f } = await setup(t, { extra: { breaker: { consecutive_failures: 2, cooldown_ms: 60000, max_cooldown_ms: 60000 } } });
    f.m.setDefault({ type: 'error', status: 503 });
    for (let i = 0; i < 2; i++) {
      const r = await gw.chat(userMessage('mirrored'));
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-switchyard-provider'], 'a');
      await eventually(() => f.m.chats.length === i + 1);
    }
    await sleep(100);
    // Two failures opened the mirror's circuit: no more mirroring.
    for (let i = 0; i < 5; i++) assert.equal((await gw.chat(userMessage('mirrored'))).status, 200);
    await sleep(200);
    assert.equal(f.m.chats.length, 2, 'never mirrors while the mirror circuit is open');
  });

  test('the sample rate holds over many requests', async (t) => {
    const { gw, f } = await setup(t, { rate: 0.3 });
    const N = 200;
    for (let i = 0; i < N; i++) await gw.chat(userMessage('mirrored'));
    await sleep(300);
    const n = f.m.chats.length;
    // Binomial(200, 0.3): mean 60, sd 6.5; five sd either way.
    assert.ok(n >= 28 && n <= 92, `${n} of ${N} mirrored at rate 0.3`);
    const mirroredLogs = gw.requestLogs().filter((l) => l.mirrored).length;
    assert.equal(mirroredLogs, n, 'the log line says which requests were mirrored');
  });

  test('a streamed request is mirrored non-streamed and compared with the full streamed text', async (t) => {
    const { gw, f } = await setup(t);
    const text = 'one two three four five';
    f.a.setDefault({ type: 'ok', text });
    f.m.setDefault({ type: 'ok', text });
    const res = await gw.fetch('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...userMessage('mirrored'), stream: true }),
    });
    assert.match(await res.text(), /\[DONE\]/);
    const line = await gw.waitForLog((l) => l.msg === 'mirror', 3000);
    assert.notEqual(f.m.chats[0].body.stream, true);
    assert.equal(line.agree, true);
  });

  test('GET /v1/mirror shows the aggregates behind the admin key', async (t) => {
    const { gw, f } = await setup(t);
    f.a.setDefault({ type: 'ok', text: 'same' });
    f.m.setDefault({ type: 'ok', text: 'same' });
    assert.equal((await gw.fetch('/v1/mirror')).status, 401);
    for (let i = 0; i < 3; i++) await gw.chat(userMessage('mirrored'));
    await eventually(() => mirrorLines(gw).length === 3);
    const res = await gw.fetch('/v1/mirror', { headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(res.status, 200);
    const body = await res.json();
    const r = body.routes.find((x) => x.route === 'mirrored');
    assert.equal(r.mirror, 'm/m-model');
    assert.equal(r.stats.pairs, 3);
    assert.equal(r.stats.agreement_rate, 1);
    assert.ok(!body.routes.some((x) => x.route === 'plain'));
  });
});
