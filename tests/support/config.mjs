// Builders for small SWITCHYARD_CONFIG objects pointing at fake providers
// (schema: src/config.rs). Each fake gets an API key, sent by the gateway from
// a Worker secret, so every end-to-end test also checks the auth headers.

import { startFakeProvider } from './fake-providers.mjs';

/** Short timeouts so failure paths take milliseconds, not minutes. */
export const FAST_POLICY = Object.freeze({
  attempt_timeout_ms: 400,
  deadline_ms: 4000,
  max_attempts: 6,
  retries_per_target: 1,
  backoff_base_ms: 20,
  backoff_max_ms: 100,
  max_retry_after_ms: 2000,
});

/** State settings for tests: slow decay, fastest allowed KV writes. */
export const TEST_STATE = Object.freeze({
  failure_half_life_s: 3600,
  refresh_interval_s: 1,
  min_write_interval_s: 1,
  kv_ttl_s: 3600,
});

export const secretName = (providerName) => `${providerName.toUpperCase().replace(/-/g, '_')}_API_KEY`;
export const keyFor = (providerName) => `sk-test-${providerName}`;

/**
 * How the fakes cut their streams into writes for the end-to-end suite:
 * `mixed` (1-7 bytes, 8-64 bytes, one event or several, at random), so that
 * every streaming test also sees events, `data:` prefixes and UTF-8
 * characters split across reads, as real networks deliver them.
 * SWITCHYARD_FAKE_SPLIT=event brings back one write per event.
 */
export const E2E_SPLIT = process.env.SWITCHYARD_FAKE_SPLIT || 'mixed';

/**
 * Starts fakes: `{ a: 'openai', claude: 'anthropic' }` -> `{ a: fake, claude: fake }`.
 * The object key is the provider name (in the config and in `Hello from <name>`).
 */
export async function startFakes(spec, { keys = true } = {}) {
  const out = {};
  for (const [name, format] of Object.entries(spec)) {
    out[name] = await startFakeProvider({ format, name, key: keys ? keyFor(name) : undefined, split: E2E_SPLIT });
  }
  return out;
}

/** A route target for a fake; `model` defaults to `<name>-model`. */
export function target(fake, extra = {}) {
  return {
    provider: fake.name,
    model: `${fake.name}-model`,
    weight: 1,
    cost: { input: 1, output: 2 },
    capabilities: ['tools', 'json', 'vision'],
    context_window: 128000,
    ...extra,
  };
}

/**
 * A whole config plus the secrets it needs.
 * @returns {{config: object, secrets: Record<string,string>}}
 */
export function makeConfig({ fakes, routes, policy = {}, state = {}, keys = true, auth = { anonymous: true } }) {
  const providers = {};
  const secrets = {};
  for (const fake of Object.values(fakes)) {
    providers[fake.name] = { format: fake.format, base_url: fake.baseUrl };
    if (keys) {
      providers[fake.name].key_secret = secretName(fake.name);
      secrets[secretName(fake.name)] = keyFor(fake.name);
    }
  }
  return {
    config: {
      providers,
      routes,
      policy: { ...FAST_POLICY, ...policy },
      state: { ...TEST_STATE, ...state },
      // Most tests are about routing, not gateway keys: anonymous access is
      // on unless a test passes its own `auth`.
      auth,
    },
    secrets,
  };
}

/** A one-line user message body for `model` (a route name). */
export function userMessage(model, content = 'Hello', extra = {}) {
  return { model, messages: [{ role: 'user', content }], ...extra };
}
