// End-to-end: health checks from the cron trigger, the circuit breaker, and
// their state shared through KV. The built worker runs in Miniflare
// in front of fake providers on 127.0.0.1; times are shortened to
// milliseconds.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, isBuilt } from '../support/harness.mjs';
import { startFakes, target, makeConfig, userMessage, keyFor } from '../support/config.mjs';

if (!isBuilt()) {
  throw new Error('build/worker/shim.mjs is missing: run `npm run build` before the e2e tests');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const priority = (...targets) => ({ strategy: 'priority', targets });

async function setup(t, { fakes, routes, extra = {}, policy = {}, secrets: moreSecrets = {} }) {
  const f = await startFakes(fakes);
  const { config, secrets } = makeConfig({ fakes: f, routes: routes(f), policy });
  Object.assign(config, extra);
  const gw = await startGateway({ config, secrets: { ...secrets, ...moreSecrets } });
  t.after(async () => {
    await gw.dispose();
    await Promise.all(Object.values(f).map((x) => x.close()));
  });
  await (await gw.fetch('/healthz')).text();
  return { gw, f };
}

const stateOf = async (gw, provider) => gw.kvJson(`sy:v1:p:${provider}`);
const servedBy = (r) => r.headers['x-switchyard-provider'];

describe('health checks from the cron trigger', () => {
  test('a dead provider is marked down in KV, requests stop reaching it, and return after recovery', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'anthropic' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      extra: { health: { unhealthy_after: 1, healthy_after: 2, probe_timeout_ms: 300 } },
    });
    f.a.setOutage({ type: 'error', status: 503 });
    await gw.scheduled();
    // Both providers were probed on their list-models endpoints, with their keys.
    assert.equal(f.a.requests.filter((r) => r.kind === 'models').length, 1);
    const probe = f.b.requests.find((r) => r.kind === 'models');
    assert.equal(probe.headers['x-api-key'], keyFor('b'));
    assert.equal((await stateOf(gw, 'a')).health.status, 'down');
    assert.equal((await stateOf(gw, 'b')).health.status, 'healthy');
    const down = gw.logs().find((l) => l.msg === 'health' && l.provider === 'a');
    assert.equal(down.to, 'down');

    const before = f.a.chats.length;
    for (let i = 0; i < 5; i++) {
      const r = await gw.chat(userMessage('main'));
      assert.equal(r.status, 200);
      assert.equal(servedBy(r), 'b');
      assert.equal(r.headers['x-switchyard-attempts'], '1', 'no request wasted on the dead provider');
    }
    assert.equal(f.a.chats.length, before, 'requests stop reaching a provider marked down');

    f.a.setOutage(null);
    await gw.scheduled();
    assert.equal((await stateOf(gw, 'a')).health.status, 'recovering');
    const r = await gw.chat(userMessage('main'));
    assert.equal(servedBy(r), 'a', 'traffic returns while the provider recovers');
    await gw.scheduled();
    assert.equal((await stateOf(gw, 'a')).health.status, 'healthy');
  });

  test('a probe refused for its key reports misconfiguration, not an outage', async (t) => {
    const { gw } = await setup(t, {
      fakes: { a: 'cohere', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      // The fake expects keyFor('a'); the gateway sends another one.
      secrets: { A_API_KEY: 'sk-wrong' },
    });
    await gw.scheduled();
    const a = await stateOf(gw, 'a');
    assert.equal(a.health.status, 'misconfigured');
    assert.equal(a.health.last_error, 'auth_error');
    const line = gw.logs().find((l) => l.msg === 'health check');
    assert.deepEqual(
      line.probes.map((p) => [p.provider, p.outcome]),
      [['a', 'auth_error'], ['b', 'ok']],
    );
  });

  for (const [status, kind, what] of [
    [403, 'auth_error', 'a restricted key (403 on GET /models)'],
    [404, 'not_found', 'a host without /models (404)'],
  ]) {
    test(`${what} stays in traffic through several cron runs, reported misconfigured`, async (t) => {
      const { gw, f } = await setup(t, {
        fakes: { a: 'openai', b: 'openai' },
        routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
        secrets: { ADMIN_KEY: 'admin-secret-1' },
      });
      f.a.setModelsBehaviour({ type: 'error', status });
      for (let run = 0; run < 4; run++) {
        await gw.scheduled();
        const r = await gw.chat(userMessage('main'));
        assert.equal(r.status, 200);
        assert.equal(servedBy(r), 'a', `after cron run ${run + 1}: completions work, so a keeps its traffic`);
        assert.equal(r.headers['x-switchyard-attempts'], '1');
      }
      assert.ok(f.a.requests.filter((r) => r.kind === 'models').length >= 4, 'probed every run');
      const shared = (await stateOf(gw, 'a')).health;
      assert.equal(shared.status, 'misconfigured');
      assert.equal(shared.last_error, kind);
      const res = await gw.fetch('/v1/status', { headers: { authorization: 'Bearer admin-secret-1' } });
      const a = (await res.json()).providers.find((p) => p.name === 'a');
      assert.equal(a.health.status, 'misconfigured');
      assert.equal(a.last_error, kind);
      assert.equal(a.available, true);
      // Loud: a warning with the probe's error kind, every run.
      const warnings = gw.logs().filter((l) => l.msg === 'probe misconfigured' && l.provider === 'a');
      assert.ok(warnings.length >= 4, `${warnings.length} warnings`);
      assert.ok(warnings.every((w) => w.level === 'warn' && w.error_kind === kind && w.in_selection === true));
    });
  }

  test('a misconfigured provider leaves selection once its requests fail the same way, and returns on a good probe', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
    });
    f.a.setModelsBehaviour({ type: 'error', status: 403 });
    await gw.scheduled();
    // The key is broken for completions too.
    f.a.setDefault({ type: 'error', status: 403 });
    const first = await gw.chat(userMessage('main'));
    assert.equal(servedBy(first), 'b');
    assert.equal(first.headers['x-switchyard-attempts'], '2', 'a was tried, and refused the key');
    const line = await gw.waitForLog((l) => l.msg === 'health' && l.provider === 'a' && l.in_selection === false);
    assert.equal(line.level, 'warn');
    const chatsAtA = f.a.chats.length;
    for (let i = 0; i < 3; i++) {
      const r = await gw.chat(userMessage('main'));
      assert.equal(servedBy(r), 'b');
      assert.equal(r.headers['x-switchyard-attempts'], '1', 'no request wasted on the broken key');
    }
    assert.equal(f.a.chats.length, chatsAtA);
    await sleep(1100); // the write slot (min_write_interval_s = 1 in tests)
    await gw.scheduled();
    const shared = (await stateOf(gw, 'a')).health;
    assert.equal(shared.status, 'misconfigured');
    assert.equal(shared.confirmed, true, 'shared with the other isolates');
    // The key is fixed: a good probe puts it back.
    f.a.setDefault({ type: 'ok' });
    f.a.setModelsBehaviour(null);
    await gw.scheduled();
    const back = await gw.chat(userMessage('main'));
    assert.equal(servedBy(back), 'a');
  });

  test('a hanging provider is probed within the probe timeout', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'anthropic', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      extra: { health: { unhealthy_after: 1, probe_timeout_ms: 200 } },
    });
    f.a.setOutage({ type: 'hang' });
    const t0 = performance.now();
    await gw.scheduled();
    assert.ok(performance.now() - t0 < 1500, 'probes are bounded and run concurrently');
    const a = await stateOf(gw, 'a');
    assert.equal(a.health.status, 'down');
    assert.equal(a.health.last_error, 'timeout');
  });
});

describe('circuit breaker', () => {
  test('a flapping primary: served from the fallback during the outage, one trial per cooldown, back within one cooldown', async (t) => {
    const COOLDOWN = 300;
    const MAX_COOLDOWN = 600;
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      policy: { retries_per_target: 0 },
      extra: { breaker: { consecutive_failures: 2, cooldown_ms: COOLDOWN, max_cooldown_ms: MAX_COOLDOWN } },
    });
    // Healthy at first.
    assert.equal(servedBy(await gw.chat(userMessage('main'))), 'a');

    f.a.setOutage({ type: 'error', status: 503 });
    const outageStart = performance.now();
    const chatsBefore = f.a.chats.length;
    let requests = 0;
    while (performance.now() - outageStart < 2000) {
      const r = await gw.chat(userMessage('main'));
      assert.equal(r.status, 200, 'every request is answered during the outage');
      assert.equal(servedBy(r), 'b');
      requests++;
      await sleep(50);
    }
    const outageMs = performance.now() - outageStart;
    const reachedPrimary = f.a.chats.length - chatsBefore;
    // Two failures open the circuit; then at most one trial per cooldown.
    const bound = 2 + Math.ceil(outageMs / COOLDOWN) + 1;
    assert.ok(requests > 20, `${requests} requests`);
    assert.ok(reachedPrimary <= bound, `${reachedPrimary} requests reached the primary (bound ${bound}) out of ${requests}`);
    const opened = gw.logs().filter((l) => l.msg === 'circuit' && l.provider === 'a' && l.to === 'open');
    assert.ok(opened.length >= 1);
    assert.equal((await stateOf(gw, 'a')).circuit.open, true, 'the open circuit is shared through KV');

    f.a.setOutage(null);
    const recovered = performance.now();
    let backAt = null;
    while (performance.now() - recovered < MAX_COOLDOWN + 1000) {
      const r = await gw.chat(userMessage('main'));
      assert.equal(r.status, 200);
      if (servedBy(r) === 'a') {
        backAt = performance.now() - recovered;
        break;
      }
      await sleep(25);
    }
    assert.ok(backAt !== null, 'traffic returned to the primary');
    assert.ok(backAt <= MAX_COOLDOWN + 150, `traffic returned ${backAt.toFixed(0)} ms after recovery`);
    const closed = gw.logs().filter((l) => l.msg === 'circuit' && l.provider === 'a' && l.to === 'closed');
    assert.ok(closed.length >= 1);
  });

  test('a cron probe success closes an open circuit', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      policy: { retries_per_target: 0 },
      extra: { breaker: { consecutive_failures: 1, cooldown_ms: 60000, max_cooldown_ms: 60000 } },
    });
    f.a.script({ type: 'error', status: 500 });
    assert.equal(servedBy(await gw.chat(userMessage('main'))), 'b');
    assert.equal(servedBy(await gw.chat(userMessage('main'))), 'b', 'open for a minute');
    await gw.scheduled();
    assert.equal(servedBy(await gw.chat(userMessage('main'))), 'a', 'the probe closed it');
  });

  test('when every circuit is open the gateway still tries, least recently failed first, and says so', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      policy: { retries_per_target: 0 },
      extra: { breaker: { consecutive_failures: 1, cooldown_ms: 60000, max_cooldown_ms: 60000 } },
    });
    f.a.script({ type: 'error', status: 500 });
    f.b.script({ type: 'error', status: 500 }, { type: 'error', status: 500 });
    const first = await gw.chat(userMessage('main'));
    assert.equal(first.status, 502);
    // Both circuits are open now; b failed last, so a goes first.
    const r = await gw.chat(userMessage('main'));
    assert.equal(r.status, 200);
    assert.equal(servedBy(r), 'a');
    const line = await gw.waitForLog((l) => l.request_id === r.headers['x-request-id']);
    assert.match(line.forced, /tried anyway/);
  });

  test('with every circuit open and the retry budget spent, the answer is an immediate 503 with Retry-After', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      policy: { retries_per_target: 0 },
      extra: {
        breaker: {
          consecutive_failures: 1, cooldown_ms: 60000, max_cooldown_ms: 60000,
          // One token per ten seconds, and nothing from traffic.
          retry_budget_ratio: 0, retry_budget_min_per_s: 0.1, retry_budget_window_s: 10,
        },
      },
    });
    f.a.setDefault({ type: 'error', status: 500 });
    f.b.setDefault({ type: 'error', status: 500 });
    assert.equal((await gw.chat(userMessage('main'))).status, 502, 'opens both circuits');
    const forced = await gw.chat(userMessage('main'));
    assert.equal(forced.status, 502);
    assert.equal(forced.headers['x-switchyard-attempts'], '1', 'the one token pays for one forced attempt');
    const before = f.a.chats.length + f.b.chats.length;
    const r = await gw.chat(userMessage('main'));
    assert.equal(r.status, 503);
    assert.equal(r.json.error.code, 'all_providers_unavailable');
    assert.match(r.json.error.message, /circuits are open/);
    const retryAfter = Number(r.headers['retry-after']);
    assert.ok(retryAfter >= 58 && retryAfter <= 60, `Retry-After ${retryAfter} s: until the first circuit half-opens`);
    assert.equal(f.a.chats.length + f.b.chats.length, before, 'no upstream attempt');
  });

  test('a failure storm makes only a handful of KV writes', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'openai' },
      routes: (f) => ({ main: priority(target(f.a), target(f.b)) }),
      extra: { breaker: { consecutive_failures: 1000, min_requests: 1000 } },
    });
    // a fails after a pause, so every request of the storm has chosen a
    // before the first failure is counted (priority then moves a failing
    // provider behind the healthy one, and later requests would skip it).
    f.a.setDefault({ type: 'error', status: 500, delayMs: 300 });
    const N = 60;
    const rs = await Promise.all(Array.from({ length: N }, () => gw.chat(userMessage('main'))));
    const odd = rs.filter((r) => r.status !== 200 || servedBy(r) !== 'b');
    assert.equal(odd.length, 0, JSON.stringify(odd.map((r) => [r.status, servedBy(r), r.text.slice(0, 200)])));
    assert.ok(f.a.chats.length >= N, 'the storm really hit the failing provider');
    // The write waits out the isolate's jitter (under min_write_interval_s,
    // 1 s in tests) in the after-response task, without another request.
    await gw.waitForLog((l) => l.msg === 'state written' && l.provider === 'a', 3000);
    await sleep(1200);
    const writes = gw.logs().filter((l) => l.msg === 'state written');
    // One second between writes per key: a storm this short writes a's key
    // once or twice, never per request.
    assert.ok(writes.length <= 4, `${writes.length} KV writes for ${N} failing requests`);
  });
});

describe('status endpoint', () => {
  test('needs the admin key, then shows health, circuit, failures and weights without secrets', async (t) => {
    const { gw, f } = await setup(t, {
      fakes: { a: 'openai', b: 'anthropic' },
      routes: (f) => ({ main: { strategy: 'weighted', targets: [target(f.a, { weight: 3 }), target(f.b)] } }),
      secrets: { ADMIN_KEY: 'admin-secret-1' },
    });
    const anon = await gw.fetch('/v1/status');
    assert.equal(anon.status, 401);
    assert.equal((await anon.json()).error.type, 'authentication_error');
    const wrong = await gw.fetch('/v1/status', { headers: { authorization: 'Bearer nope' } });
    assert.equal(wrong.status, 401);

    f.a.script({ type: 'error', status: 500 }, { type: 'error', status: 500 });
    await gw.chat(userMessage('main', 'x', { switchyard: { order: ['a', 'b'] } }));
    await gw.scheduled();
    const res = await gw.fetch('/v1/status', { headers: { authorization: 'Bearer admin-secret-1' } });
    assert.equal(res.status, 200);
    const text = await res.text();
    for (const secret of [keyFor('a'), keyFor('b'), 'admin-secret-1']) {
      assert.ok(!text.includes(secret), 'no secret in the status');
    }
    const s = JSON.parse(text);
    const a = s.providers.find((p) => p.name === 'a');
    assert.equal(a.health.status, 'healthy');
    assert.equal(a.circuit.state, 'closed');
    assert.ok(a.failures > 1.9, `failures ${a.failures}`);
    assert.ok(a.last_probe_ms ?? a.health.last_probe_ms);
    const route = s.routes.find((r) => r.name === 'main');
    const wa = route.targets.find((x) => x.target === 'a/a-model').effective_weight;
    assert.ok(wa < 3 && wa > 0, `effective weight ${wa} is cut by failures`);
  });
});
