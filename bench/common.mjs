// What bench/run.mjs (the benchmark) and bench/profile.mjs (the profiler)
// share: the request bodies, the gateway key, Switchyard's bench config and
// bindings, and reading CPU time from /proc.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';

export const BODY_JSON = JSON.stringify({
  model: 'bench',
  messages: [
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: 'Say hello in one short sentence.' },
  ],
  max_tokens: 32,
});
export const BODY_STREAM = JSON.stringify({ ...JSON.parse(BODY_JSON), stream: true });
export const BODY_PACED = JSON.stringify({ ...JSON.parse(BODY_STREAM), model: 'bench-paced' });
// The long streams (bench/upstream.mjs /long*): the route name is the model, so
// Switchyard picks the long provider; the pass-throughs ignore the model and
// send the same body to the upstream path directly. include_usage is asked
// for, as Switchyard always asks an OpenAI upstream for it, so every path gets
// the same upstream events.
export const longBody = (route) =>
  JSON.stringify({ ...JSON.parse(BODY_JSON), model: route, max_tokens: 4096, stream: true, stream_options: { include_usage: true } });
/** The long-stream scenarios: id, Switchyard route, the pass-throughs' upstream path, the upstream's format. */
export const LONG_SCENARIOS = [
  { id: 'long', label: 'back to back', route: 'long', path: '/long/v1/chat/completions', format: 'openai' },
  { id: 'long-paced', label: 'paced', route: 'long-paced', path: '/long-paced/v1/chat/completions', format: 'openai' },
  { id: 'long-anthropic', label: 'Anthropic upstream', route: 'long-anthropic', path: '/long-anthropic/v1/messages', format: 'anthropic' },
];
export const ADMIN_KEY = 'bench-admin-key';
// A gateway key, as a deployed gateway requires (its SHA-256 goes into the
// GATEWAY_KEYS secret). Sent on every request of every path (harmless where
// nothing checks it), so the load is the same everywhere.
export const GATEWAY_KEY = 'sy_bench_0123456789abcdefghijklmnopqrstuvwxyzABCD';
export const AUTH = `Bearer ${GATEWAY_KEY}`;

/** The bindings of a Switchyard bench worker: config, provider key, admin key, gateway keys. */
export function switchyardBindings(up, variant = 'plain') {
  return {
    SWITCHYARD_CONFIG: switchyardConfig(up, variant),
    BENCH_API_KEY: 'sk-bench-not-a-real-key',
    ADMIN_KEY,
    GATEWAY_KEYS: JSON.stringify([{ name: 'bench', sha256: createHash('sha256').update(GATEWAY_KEY).digest('hex') }]),
  };
}

export function switchyardConfig(up, variant) {
  const provider = (base, format = 'openai') => ({ format, base_url: `${up.origin}${base}`, key_secret: 'BENCH_API_KEY' });
  const target = (p, extra = {}) => ({
    provider: p,
    model: 'bench-model',
    weight: 1,
    cost: { input: 0.15, output: 0.6 },
    capabilities: ['tools', 'json', 'vision'],
    context_window: 128000,
    ...extra,
  });
  if (variant === 'failover' || variant === 'failover-cb') {
    const config = {
      providers: {
        primary: provider('/fail/v1'),
        secondary: provider('/v1'),
        'secondary-paced': provider('/paced/v1'),
      },
      routes: {
        bench: { strategy: 'priority', targets: [target('primary'), target('secondary')] },
        'bench-paced': { strategy: 'priority', targets: [target('primary'), target('secondary-paced')] },
      },
      policy: { retries_per_target: 0 },
    };
    if (variant === 'failover') config.breaker = { consecutive_failures: 1_000_000, min_requests: 1_000_000 };
    return config;
  }
  const config = {
    providers: {
      a: provider('/v1'),
      b: provider('/v1'),
      'a-paced': provider('/paced/v1'),
      'b-paced': provider('/paced/v1'),
    },
    routes: {
      bench: { strategy: 'weighted', targets: [target('a', { weight: 3 }), target('b', { weight: 1 })] },
      'bench-paced': { strategy: 'weighted', targets: [target('a-paced', { weight: 3 }), target('b-paced', { weight: 1 })] },
    },
  };
  if (variant === 'plain') {
    // The long streams: one provider and route each (bench/upstream.mjs /long*).
    config.providers.long = provider('/long/v1');
    config.providers['long-paced'] = provider('/long-paced/v1');
    config.providers['long-anthropic'] = provider('/long-anthropic', 'anthropic');
    for (const r of ['long', 'long-paced', 'long-anthropic']) config.routes[r] = { strategy: 'priority', targets: [target(r)] };
  }
  if (variant === 'quiet') config.log_requests = 'errors';
  if (variant === 'mirror') {
    config.providers.shadow = provider('/v1');
    config.routes.bench.mirror = { target: 'shadow/bench-model', sample_rate: 1.0 };
    config.routes['bench-paced'].mirror = { target: 'shadow/bench-model', sample_rate: 1.0 };
  }
  return config;
}

let clkTck;
/** The kernel's clock ticks per second (/proc times are in ticks). */
export function ticksPerSecond() {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

export /** utime+stime of a process in seconds, or null when it is gone. */
function cpuSeconds(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / ticksPerSecond();
  } catch {
    return null;
  }
}

export /** Children of this process named `comm` (from /proc/<pid>/stat). */
function childPids(comm) {
  const out = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8');
      const name = s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'));
      const ppid = Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && name === comm) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}
