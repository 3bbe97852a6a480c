// The benchmark: `npm run bench` (scripts/bench.sh) sets up, builds,
// then runs this. Everything on 127.0.0.1, one machine, one run:
//
//   direct          the load generator straight to the fake upstream
//   pt-js           a trivial JS pass-through worker
//   pt-rs           a workers-rs pass-through (bench/passthrough-rs), if built
//   switchyard      the release build, route `bench` weighted over two providers
//   sy-quiet        the same with `log_requests = "errors"` (no log line per success)
//   sy-failover     primary answers 503, secondary fine, the breaker never opens
//   sy-failover-cb  the same with the default breaker (it opens: the primary is skipped)
//   sy-mirror       route.mirror to a third provider at sample_rate 1.0
//
// Each worker runs in its own workerd process (Miniflare, no wrangler dev
// proxy), one at a time. Writes bench/results/latest.{json,md,svg,png}.
//
// Long streams (pt-js, pt-rs, switchyard, in that order, each in its own
// workerd as above): BENCH_LONG_STREAMS sequential streams of
// BENCH_LONG_EVENTS content events each (after 2 warm-up streams), read to the
// end, per scenario: OpenAI format back to back, OpenAI format paced (one
// event per BENCH_LONG_PACE_MS timer tick), Anthropic Messages back to back
// (Switchyard translates it to OpenAI chunks; the pass-throughs relay it).
//
// Environment: BENCH_DURATION (s, default 5), BENCH_WARMUP (s, default 2),
// BENCH_CONNECTIONS (default 1,16,64), BENCH_TTFB_N (default 150),
// BENCH_PACE_MS (default 2), BENCH_LOADGEN (wrk | autocannon, default: wrk if
// installed), BENCH_ONLY (comma list of path ids), BENCH_OUT (results dir),
// BENCH_LONG (0 skips the long streams), BENCH_LONG_STREAMS (20),
// BENCH_LONG_EVENTS (1000), BENCH_LONG_PACE_MS (1).

import { Miniflare } from 'miniflare';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import { renderSvg } from './chart.mjs';
import { renderMarkdown } from './report.mjs';
import {
  ADMIN_KEY,
  AUTH,
  BODY_JSON,
  BODY_PACED,
  BODY_STREAM,
  LONG_SCENARIOS,
  childPids,
  cpuSeconds,
  longBody,
  switchyardBindings,
  ticksPerSecond,
} from './common.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.resolve(process.env.BENCH_OUT || path.join(ROOT, 'bench/results'));
const TMP = path.join(ROOT, 'bench/results/tmp');
const PIDS_FILE = path.join(TMP, 'pids');

const SETTINGS = {
  duration_s: Number(process.env.BENCH_DURATION || 5),
  warmup_s: Number(process.env.BENCH_WARMUP || 2),
  connections: (process.env.BENCH_CONNECTIONS || '1,16,64').split(',').map(Number),
  ttfb_requests: Number(process.env.BENCH_TTFB_N || 150),
  pace_ms: Number(process.env.BENCH_PACE_MS || 2),
  loadgen: process.env.BENCH_LOADGEN || (which('wrk') ? 'wrk' : 'autocannon'),
  long: process.env.BENCH_LONG !== '0',
  long_streams: Number(process.env.BENCH_LONG_STREAMS || 20),
  long_warmup_streams: 2,
  long_events: Number(process.env.BENCH_LONG_EVENTS || 1000),
  long_pace_ms: Number(process.env.BENCH_LONG_PACE_MS || 1),
  autocannon_version: '8.0.0',
  compatibility_date: '2025-01-01',
};
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : null;


// ------------------------------------------------------------------ helpers

function which(cmd) {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

function execOr(cmd, args, dflt) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch {
    return dflt;
  }
}

const log = (...a) => console.error('bench:', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const round = (x, d = 3) => (x === null || x === undefined || !Number.isFinite(x) ? null : Number(x.toFixed(d)));

/** This process's own CPU and that of its reaped children (wrk), in seconds. */
function selfCpu() {
  const s = readFileSync('/proc/self/stat', 'utf8');
  const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return {
    self: (Number(rest[11]) + Number(rest[12])) / ticksPerSecond(),
    children: (Number(rest[13]) + Number(rest[14])) / ticksPerSecond(),
  };
}

/** Busy and total jiffies of the whole machine (/proc/stat). */
function machineCpu() {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  // user nice system idle iowait irq softirq steal (guest time is inside user).
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const idle = v[3] + (v[4] || 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total, at: performance.now() };
}

/** CPU use of the whole machine over `ms`, in cores. */
async function machineLoad(ms = 500) {
  const a = machineCpu();
  await sleep(ms);
  const b = machineCpu();
  const cores = os.cpus().length;
  return ((b.busy - a.busy) / Math.max(1, b.total - a.total)) * cores;
}

/**
 * Waits (up to BENCH_QUIET_WAIT_S) until nothing else on the machine uses more
 * than a fifth of a core: other people's builds and tests would skew the run.
 */
async function waitQuiet() {
  const limit = Math.min(Number(process.env.BENCH_QUIET_WAIT_S ?? 20), quietBudgetS) * 1000;
  const t0 = performance.now();
  let load = await machineLoad(400);
  if (load <= OTHER_LOAD_LIMIT || limit <= 0) return { waited_s: 0, load };
  log(`the machine is busy (${load.toFixed(2)} cores in use by other processes): waiting up to ${limit / 1000} s`);
  while (performance.now() - t0 < limit) {
    load = await machineLoad(1000);
    if (load <= OTHER_LOAD_LIMIT) break;
  }
  const waited = (performance.now() - t0) / 1000;
  quietBudgetS -= waited;
  return { waited_s: round(waited, 1), load };
}
const OTHER_LOAD_LIMIT = 0.2;
// All the waiting for a quiet machine and the re-runs together stay within this.
let quietBudgetS = Number(process.env.BENCH_QUIET_BUDGET_S ?? 150);

const trackedPids = new Set();
function trackPid(pid, add = true) {
  if (add) trackedPids.add(pid);
  else trackedPids.delete(pid);
  try {
    mkdirSync(TMP, { recursive: true });
    writeFileSync(PIDS_FILE, [...trackedPids].join('\n') + (trackedPids.size ? '\n' : ''));
  } catch {
    /* best effort: scripts/bench.sh cleans up from this file */
  }
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

function gzipSize(file) {
  return zlib.gzipSync(readFileSync(file), { level: 9 }).length;
}

// ------------------------------------------------------------------ upstream

async function startUpstream() {
  const child = spawn(process.execPath, [
      path.join(ROOT, 'bench/upstream.mjs'),
      '--pace-ms', String(SETTINGS.pace_ms),
      '--long-events', String(SETTINGS.long_events),
      '--long-pace-ms', String(SETTINGS.long_pace_ms),
    ], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  trackPid(child.pid);
  const info = await new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error('the fake upstream did not start within 10 s')), 10_000);
    child.stdout.on('data', (c) => {
      buf += c;
      const i = buf.indexOf('\n');
      if (i >= 0) {
        clearTimeout(t);
        resolve(JSON.parse(buf.slice(0, i)));
      }
    });
    child.on('exit', (code) => reject(new Error(`the fake upstream exited (${code})`)));
  });
  const origin = `http://127.0.0.1:${info.port}`;
  return {
    child,
    pid: child.pid,
    origin,
    async stop() {
      child.stdin.end();
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
      trackPid(child.pid, false);
    },
  };
}

// ------------------------------------------------------------------ workers

const MODULE_RULES = [
  { type: 'ESModule', include: ['**/*.js', '**/*.mjs'] },
  { type: 'CompiledWasm', include: ['**/*.wasm'], fallthrough: true },
];

const PASSTHROUGH_JS = `
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    return fetch(env.UPSTREAM + url.pathname + url.search, {
      method: request.method,
      headers: request.headers,
      body: request.body,
    });
  },
};
`;

// The floor for any gateway that sees each chunk of a stream (as a gateway
// must, to fail over, end a broken answer with an error event, count usage):
// a JS worker that reads the upstream body chunk by chunk and writes each
// chunk, untouched, into a runtime-native pipe that the client reads. It does
// nothing else, so whatever a gateway costs above it is the gateway's own.
const READ_LOOP_JS = `
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const up = await fetch(env.UPSTREAM + url.pathname + url.search, {
      method: request.method,
      headers: request.headers,
      body: request.body,
    });
    if (!up.body) return up;
    const pipe = new IdentityTransformStream();
    const writer = pipe.writable.getWriter();
    const reader = up.body.getReader();
    ctx.waitUntil((async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        writer.write(value).catch(() => {});
      }
      await writer.close();
    })());
    return new Response(pipe.readable, up);
  },
};
`;

// What both JS floors below do first, as any gateway must: parse the
// client's JSON and send it on with the model rewritten.
const FLOOR_FETCH = `
    const url = new URL(request.url);
    const body = await request.json();
    const up = await fetch(env.UPSTREAM + url.pathname, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-floor' },
      body: JSON.stringify({ ...body, model: 'bench-model' }),
    });
`;

// The floor for a gateway's first token: a gateway that can still fail over
// before the first token must hold the response head until the upstream's
// first chunk has arrived, then answer with a pipe of its own. This JS worker
// parses the request (as a gateway must, to route it), fetches, reads the
// first chunk, answers with a runtime-native pipe that carries it, and relays
// the rest untouched. It does nothing else.
const HOLD_FIRST_JS = `
export default {
  async fetch(request, env, ctx) {
${FLOOR_FETCH}    if (!up.body) return up;
    const reader = up.body.getReader();
    const first = await reader.read();
    const pipe = new IdentityTransformStream();
    const writer = pipe.writable.getWriter();
    ctx.waitUntil((async () => {
      if (!first.done) {
        writer.write(first.value).catch(() => {});
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          writer.write(value).catch(() => {});
        }
      }
      await writer.close();
    })());
    return new Response(pipe.readable, { status: up.status, headers: { 'content-type': 'text/event-stream' } });
  },
};
`;

// The floor for a gateway's non-streaming request: what any gateway must do
// (parse the client's JSON, build the upstream request, fetch, read the whole
// answer and parse it, write the client's JSON), in plain JS, and nothing else
// (no selection, no state, no log line).
const WHOLE_FLOOR_JS = `
export default {
  async fetch(request, env) {
${FLOOR_FETCH}    const answer = JSON.parse(await up.text());
    return new Response(JSON.stringify(answer), { status: up.status, headers: { 'content-type': 'application/json' } });
  },
};
`;

async function startWorker({ script, scriptPath, bindings = {}, kv = false }) {
  const before = new Set(childPids('workerd'));
  const stderrTail = [];
  const options = {
    modules: true,
    compatibilityDate: SETTINGS.compatibility_date,
    bindings,
    host: '127.0.0.1',
    port: 0,
    cf: false,
    // Load goes to a socket bound straight to the worker, bypassing
    // Miniflare's entry worker (an extra JS hop per request that a deployed
    // worker does not have), and subrequests leave without Miniflare's
    // strip-cf-connecting-ip outbound worker (another JS hop per fetch).
    unsafeDirectSockets: [{ host: '127.0.0.1', port: 0 }],
    stripCfConnectingIp: false,
    handleRuntimeStdio(stdout, stderr) {
      // Drain the worker's log lines (one per request for Switchyard): keep
      // only a short tail of stderr for error messages.
      stdout.resume();
      stderr.on('data', (c) => {
        stderrTail.push(String(c));
        if (stderrTail.length > 20) stderrTail.shift();
      });
    },
  };
  if (kv) options.kvNamespaces = ['STATE'];
  if (script) options.script = script;
  else {
    options.scriptPath = scriptPath;
    options.modulesRules = MODULE_RULES;
    // worker-build's shim imports '../index.js': the modules root is build/.
    options.modulesRoot = path.dirname(path.dirname(scriptPath));
  }
  const mf = new Miniflare(options);
  let url;
  try {
    await mf.ready;
    url = (await mf.unsafeGetDirectURL()).href.replace(/\/$/, '');
  } catch (e) {
    await mf.dispose().catch(() => {});
    e.message += `\nworkerd said: ${stderrTail.join('').slice(-2000)}`;
    throw e;
  }
  const pids = childPids('workerd').filter((p) => !before.has(p));
  const pid = pids[0] ?? null;
  if (pid) trackPid(pid);
  const w = {
    mf,
    url,
    pid,
    stderrTail,
    async dispose() {
      liveWorkers.delete(w);
      await mf.dispose().catch(() => {});
      if (pid) trackPid(pid, false);
    },
  };
  liveWorkers.add(w);
  return w;
}

// ------------------------------------------------------------------ configs

// What a path is measured on: whole answers under load (json), 20-event
// streams under load (stream), the paced first token (ttfb). A path runs all
// three unless it says `measures`; `long: true` adds the long streams.
const MEASURES = ['json', 'stream', 'ttfb'];
const measures = (p, what) => (p.measures ?? MEASURES).includes(what);

function paths(up) {
  const SY = path.join(ROOT, 'build/worker/shim.mjs');
  const PTRS = path.join(ROOT, 'bench/passthrough-rs/build/worker/shim.mjs');
  const sy = (variant) => ({
    scriptPath: SY,
    kv: true,
    bindings: switchyardBindings(up, variant),
  });
  return [
    { id: 'direct', label: 'direct (no worker)', kind: 'direct' },
    { id: 'pt-js', label: 'JS pass-through', kind: 'passthrough', long: true, worker: { script: PASSTHROUGH_JS, bindings: { UPSTREAM: up.origin } } },
    {
      id: 'pt-rs',
      label: 'Rust pass-through',
      kind: 'passthrough',
      long: true,
      worker: { scriptPath: PTRS, bindings: { UPSTREAM: up.origin } },
      missing: existsSync(PTRS) ? null : 'bench/passthrough-rs was not built (BENCH_RUST_PASSTHROUGH=0 or its build failed)',
    },
    {
      id: 'whole-floor-js',
      label: 'JS parse-fetch-parse (floor: non-streaming)',
      kind: 'passthrough',
      measures: ['json'], // it is a floor for non-streaming, not a gateway
      worker: { script: WHOLE_FLOOR_JS, bindings: { UPSTREAM: up.origin } },
    },
    {
      id: 'read-loop-js',
      label: 'JS read loop (floor: sees each chunk)',
      kind: 'passthrough',
      long: true,
      measures: ['stream', 'ttfb'], // it is a floor for streams (20 events, first token, long), not a gateway
      worker: { script: READ_LOOP_JS, bindings: { UPSTREAM: up.origin } },
    },
    {
      id: 'hold-first-js',
      label: 'JS first-chunk hold (floor: first token)',
      kind: 'passthrough',
      measures: ['ttfb'], // it is a floor for the first token, not a gateway
      worker: { script: HOLD_FIRST_JS, bindings: { UPSTREAM: up.origin } },
    },
    { id: 'switchyard', label: 'Switchyard', kind: 'switchyard', long: true, worker: sy('plain') },
    { id: 'sy-quiet', label: 'Switchyard, log_requests = errors', kind: 'switchyard', worker: sy('quiet') },
    { id: 'sy-failover', label: 'Switchyard, failover', kind: 'switchyard', worker: sy('failover'), expectAttempts: '2' },
    {
      id: 'sy-failover-cb',
      label: 'Switchyard, failover, default breaker',
      kind: 'switchyard',
      worker: sy('failover-cb'),
      measures: ['json'],
      reduced: true, // no 64 connections: it is the cheap variant
    },
    { id: 'sy-mirror', label: 'Switchyard, mirroring', kind: 'switchyard', worker: sy('mirror'), mirror: true },
  ];
}

// ------------------------------------------------------------------ load

function runWrk(url, body, connections, durationS) {
  return new Promise((resolve, reject) => {
    // One connection per wrk thread, so bench/wrk.lua can time every request
    // exactly (wrk's own percentiles are corrected for coordinated omission).
    const args = ['-t', String(connections), '-c', String(connections), '-d', `${durationS}s`, '--timeout', '10s', '-s', path.join(ROOT, 'bench/wrk.lua'), url];
    const child = spawn('wrk', args, { env: { ...process.env, BENCH_BODY: body, BENCH_AUTH: AUTH }, stdio: ['ignore', 'pipe', 'pipe'] });
    trackPid(child.pid);
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    child.on('error', reject);
    child.on('exit', (code) => {
      trackPid(child.pid, false);
      const line = out.split('\n').find((l) => l.startsWith('BENCH_JSON '));
      if (!line) return reject(new Error(`wrk gave no summary (exit ${code}): ${out}${err}`));
      const j = JSON.parse(line.slice('BENCH_JSON '.length));
      resolve({
        requests: j.requests,
        seconds: j.duration_us / 1e6,
        latency_ms: {
          p50: j.latency_us.p50 / 1000,
          p90: j.latency_us.p90 / 1000,
          p99: j.latency_us.p99 / 1000,
          p999: j.latency_us.p999 / 1000,
          mean: j.latency_us.mean / 1000,
          max: j.latency_us.max / 1000,
          p99_wrk_corrected: j.latency_us.p99_corrected / 1000,
        },
        errors: j.errors.connect + j.errors.read + j.errors.write + j.errors.timeout,
        non2xx: j.errors.status,
      });
    });
  });
}

function runAutocannon(url, body, connections, durationS) {
  return new Promise((resolve, reject) => {
    const args = [
      '--yes',
      `autocannon@${SETTINGS.autocannon_version}`,
      '-c', String(connections),
      '-d', String(durationS),
      '-m', 'POST',
      '-H', 'content-type=application/json',
      '-H', `authorization=${AUTH}`,
      '-b', body,
      '--json',
      url,
    ];
    const child = spawn('npx', args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: os.tmpdir() });
    trackPid(child.pid);
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    child.on('error', reject);
    child.on('exit', (code) => {
      trackPid(child.pid, false);
      const line = out.split('\n').find((l) => l.trim().startsWith('{'));
      if (!line) return reject(new Error(`autocannon gave no summary (exit ${code}): ${err.slice(-2000)}`));
      const j = JSON.parse(line);
      resolve({
        requests: j.requests.total,
        seconds: j.duration,
        latency_ms: { p50: j.latency.p50, p90: j.latency.p90, p99: j.latency.p99, p999: j.latency.p99_9 ?? null, mean: j.latency.average, max: j.latency.max },
        errors: j.errors + j.timeouts,
        non2xx: j.non2xx,
      });
    });
  });
}

/**
 * One connection, sequential requests, each timed with performance.now(): the
 * fallback's 1-connection latencies (autocannon reports whole milliseconds).
 */
async function runSequential(url, body, _connections, durationS) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const lat = [];
  let errors = 0;
  let non2xx = 0;
  const t0 = performance.now();
  try {
    while (performance.now() - t0 < durationS * 1000) {
      try {
        const r = await streamOnce(agent, url, body);
        lat.push(r.total);
        if (r.status < 200 || r.status > 399) non2xx++;
      } catch {
        errors++;
      }
    }
  } finally {
    agent.destroy();
  }
  const seconds = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return {
    requests: lat.length,
    seconds,
    latency_ms: {
      p50: percentile(lat, 50),
      p90: percentile(lat, 90),
      p99: percentile(lat, 99),
      p999: percentile(lat, 99.9),
      mean: lat.reduce((a, b) => a + b, 0) / Math.max(1, lat.length),
      max: lat.at(-1) ?? null,
    },
    errors,
    non2xx,
  };
}

const load = (url, body, connections, durationS) =>
  SETTINGS.loadgen === 'wrk'
    ? runWrk(url, body, connections, durationS)
    : connections === 1
      ? runSequential(url, body, connections, durationS)
      : runAutocannon(url, body, connections, durationS);

/** One measured run with CPU accounting around it. */
async function measureOnce(url, body, connections, durationS, pids) {
  const m0 = machineCpu();
  const s0 = selfCpu();
  const w0 = pids.workerd ? cpuSeconds(pids.workerd) : null;
  const u0 = cpuSeconds(pids.upstream);
  const r = await load(url, body, connections, durationS);
  const w1 = pids.workerd ? cpuSeconds(pids.workerd) : null;
  const u1 = cpuSeconds(pids.upstream);
  const s1 = selfCpu();
  const m1 = machineCpu();
  const wall = (m1.at - m0.at) / 1000;
  const wcpu = w0 !== null && w1 !== null ? w1 - w0 : null;
  const ucpu = u0 !== null && u1 !== null ? u1 - u0 : null;
  const cores = os.cpus().length;
  const busyCores = ((m1.busy - m0.busy) / Math.max(1, m1.total - m0.total)) * cores;
  // wrk (or autocannon) is a reaped child: its CPU lands in our cutime/cstime.
  const loadgenCpu = s1.children - s0.children;
  const ours = (wcpu ?? 0) + (ucpu ?? 0) + (s1.self - s0.self) + loadgenCpu;
  const pct = (x) => (x === null ? null : round((x / wall) * 100, 0));
  return {
    connections,
    requests: r.requests,
    seconds: round(r.seconds, 3),
    rps: round(r.requests / r.seconds, 0),
    latency_ms: Object.fromEntries(Object.entries(r.latency_ms).map(([k, v]) => [k, round(v ?? null, 3)])),
    errors: r.errors,
    non2xx: r.non2xx,
    workerd_cpu_ms_per_req: wcpu === null || !r.requests ? null : round((wcpu * 1000) / r.requests, 3),
    workerd_cpu_pct: pct(wcpu),
    upstream_cpu_ms_per_req: ucpu === null || !r.requests ? null : round((ucpu * 1000) / r.requests, 3),
    upstream_cpu_pct: pct(ucpu),
    loadgen_cpu_pct: pct(loadgenCpu),
    machine_busy_pct: round((busyCores / cores) * 100, 0),
    // CPU used by processes that are not part of the bench (in % of one core).
    other_cpu_pct: round(Math.max(0, busyCores - ours / wall) * 100, 0),
  };
}

/** A measured run; redone once after a quiet wait if other processes loaded the machine. */
async function measure(url, body, connections, durationS, pids) {
  let r = await measureOnce(url, body, connections, durationS, pids);
  if (r.other_cpu_pct > OTHER_LOAD_LIMIT * 100 && quietBudgetS > 0) {
    quietBudgetS -= durationS;
    log(`other processes used ${r.other_cpu_pct}% of a core during the run: measuring again`);
    await waitQuiet();
    const again = await measureOnce(url, body, connections, durationS, pids);
    const spent = r.requests + again.requests;
    if (again.other_cpu_pct <= r.other_cpu_pct) r = again;
    r.redone = true;
    // Both runs' requests count for the KV and upstream-call rates.
    r.requests_incl_discarded = spent;
  }
  return r;
}

// ------------------------------------------------------------------ TTFB

function streamOnce(agent, url, body) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: AUTH },
      },
      (res) => {
        const head = performance.now() - t0;
        let first = null;
        let token = null;
        let reads = 0;
        let text = '';
        res.on('data', (c) => {
          const t = performance.now() - t0;
          reads++;
          if (first === null) first = t;
          if (token === null) {
            text += c.toString('latin1');
            if (/"content":"[^"]/.test(text)) token = t;
          }
        });
        res.on('end', () =>
          resolve({ status: res.statusCode, head, ttfb: first, ttft: token, total: performance.now() - t0, reads }),
        );
        res.on('error', reject);
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('stream request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

async function measureTtfb(url, body, n) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < 10; i++) await streamOnce(agent, url, body);
    const rs = [];
    for (let i = 0; i < n; i++) rs.push(await streamOnce(agent, url, body));
    const bad = rs.filter((r) => r.status !== 200 || r.ttfb === null).length;
    const stat = (key) => {
      const v = rs.map((r) => r[key]).filter((x) => x !== null).sort((a, b) => a - b);
      return { p50: round(percentile(v, 50)), p90: round(percentile(v, 90)), p99: round(percentile(v, 99)) };
    };
    const reads = rs.map((r) => r.reads).sort((a, b) => a - b);
    return {
      requests: n,
      failed: bad,
      head_ms: stat('head'),
      ttfb_ms: stat('ttfb'),
      ttft_ms: stat('ttft'),
      total_ms: stat('total'),
      body_reads_p50: percentile(reads, 50),
    };
  } finally {
    agent.destroy();
  }
}

// ------------------------------------------------------------------ long streams

/**
 * One long stream, read to the end: wall time, and what arrived (events,
 * content events, whether it ended as a whole stream ends). The body is
 * parsed after the end, so the client's parsing is not inside the wall time.
 */
function longStreamOnce(agent, url, body) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: AUTH },
      },
      (res) => {
        const chunks = [];
        let reads = 0;
        res.on('data', (c) => {
          reads++;
          chunks.push(c);
        });
        res.on('end', () => {
          const wall = performance.now() - t0;
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode, wall, reads, bytes: Buffer.byteLength(text), ...parseSse(text) });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error('long stream request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Events in an SSE body, and its format: `openai` when it is chunks ending in
 * data: [DONE] (whole only then), `anthropic` when it is Messages events
 * (whole only when message_stop is the last). Content events are chunks with
 * delta content, or text_delta events.
 */
function parseSse(text) {
  const events = text.split(/\r?\n\r?\n/).filter((e) => e.trim() !== '');
  let content = 0;
  let format = null;
  for (const e of events) {
    const data = e.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
    if (data === '[DONE]') {
      format = 'openai';
      continue;
    }
    let j;
    try {
      j = JSON.parse(data);
    } catch {
      continue;
    }
    if (j.object === 'chat.completion.chunk') {
      format ??= 'openai';
      if (j.choices?.some((c) => typeof c.delta?.content === 'string' && c.delta.content !== '')) content++;
    } else if (typeof j.type === 'string') {
      format ??= 'anthropic';
      if (j.type === 'content_block_delta' && j.delta?.type === 'text_delta') content++;
    }
  }
  const last = events.at(-1) ?? '';
  const whole = format === 'openai' ? /^data: ?\[DONE\]$/m.test(last) : format === 'anthropic' ? /"type"\s*:\s*"message_stop"/.test(last) : false;
  return { events: events.length, content_events: content, format, whole };
}

/**
 * A long-stream scenario on one path: warm-up streams, then n sequential
 * streams on one keep-alive connection with workerd's CPU (utime+stime) read
 * around them.
 */
async function measureLong(url, body, n, pids) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < SETTINGS.long_warmup_streams; i++) await longStreamOnce(agent, url, body);
    const m0 = machineCpu();
    const s0 = selfCpu();
    const w0 = pids.workerd ? cpuSeconds(pids.workerd) : null;
    const u0 = cpuSeconds(pids.upstream);
    const rs = [];
    for (let i = 0; i < n; i++) rs.push(await longStreamOnce(agent, url, body));
    await sleep(100); // work after the last byte (Switchyard's log line, waitUntil) lands in the window
    const w1 = pids.workerd ? cpuSeconds(pids.workerd) : null;
    const u1 = cpuSeconds(pids.upstream);
    const s1 = selfCpu();
    const m1 = machineCpu();
    const wallS = (m1.at - m0.at) / 1000;
    const wcpu = w0 !== null && w1 !== null ? w1 - w0 : null;
    const ucpu = u0 !== null && u1 !== null ? u1 - u0 : null;
    const cores = os.cpus().length;
    const busyCores = ((m1.busy - m0.busy) / Math.max(1, m1.total - m0.total)) * cores;
    const ours = (wcpu ?? 0) + (ucpu ?? 0) + (s1.self - s0.self) + (s1.children - s0.children);
    const walls = rs.map((r) => r.wall).sort((a, b) => a - b);
    const ok = rs.filter((r) => r.status === 200 && r.whole && r.content_events === SETTINGS.long_events);
    const cpuMs = wcpu === null ? null : (wcpu * 1000) / n;
    return {
      streams: n,
      complete: ok.length,
      incomplete: n - ok.length,
      statuses: [...new Set(rs.map((r) => r.status))],
      format: rs[0]?.format ?? null,
      events_per_stream: percentile(rs.map((r) => r.events).sort((a, b) => a - b), 50),
      content_events_per_stream: percentile(rs.map((r) => r.content_events).sort((a, b) => a - b), 50),
      bytes_per_stream: percentile(rs.map((r) => r.bytes).sort((a, b) => a - b), 50),
      reads_per_stream: percentile(rs.map((r) => r.reads).sort((a, b) => a - b), 50),
      workerd_cpu_s: round(wcpu, 3),
      cpu_ms_per_stream: round(cpuMs),
      // Per upstream content event (BENCH_LONG_EVENTS of them per stream).
      cpu_us_per_event: cpuMs === null ? null : round((cpuMs * 1000) / SETTINGS.long_events, 2),
      upstream_cpu_ms_per_stream: ucpu === null ? null : round((ucpu * 1000) / n),
      wall_ms: { p50: round(percentile(walls, 50), 2), p90: round(percentile(walls, 90), 2), max: round(walls.at(-1), 2) },
      other_cpu_pct: round(Math.max(0, busyCores - ours / wallS) * 100, 0),
    };
  } finally {
    agent.destroy();
  }
}

// ------------------------------------------------------------------ one path

async function kvOps(base) {
  try {
    const r = await fetch(`${base}/v1/status`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    if (!r.ok) return null;
    const j = await r.json();
    return j.kv_ops ? { reads: j.kv_ops.reads, writes: j.kv_ops.writes } : null;
  } catch {
    return null;
  }
}

async function upstreamRequests(up) {
  try {
    const r = await fetch(`${up.origin}/__stats`);
    return await r.json();
  } catch {
    return null;
  }
}

async function probe(base, urlPath, body) {
  const r = await fetch(base + urlPath, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: AUTH },
    body,
  });
  const text = await r.text();
  return { status: r.status, headers: Object.fromEntries(r.headers), text };
}

async function benchPath(p, up) {
  const result = { id: p.id, label: p.label, kind: p.kind, available: true };
  if (p.missing) return { ...result, available: false, reason: p.missing };
  let worker = null;
  const started = performance.now();
  try {
    let base;
    let jsonPath;
    let pacedPath;
    if (p.kind === 'direct') {
      base = up.origin;
      jsonPath = '/v1/chat/completions';
      pacedPath = '/paced/v1/chat/completions';
    } else {
      worker = await startWorker(p.worker);
      base = worker.url;
      result.workerd_pid_found = !!worker.pid;
      jsonPath = '/v1/chat/completions';
      pacedPath = p.kind === 'switchyard' ? '/v1/chat/completions' : '/paced/v1/chat/completions';
    }
    const pids = { workerd: worker?.pid ?? null, upstream: up.pid };

    // Sanity: one request of each kind must succeed, or the path is skipped.
    const pj = await probe(base, jsonPath, BODY_JSON);
    if (pj.status !== 200) {
      const configError = /configuration_error|invalid_config/.test(pj.text);
      return {
        ...result,
        available: false,
        reason: configError
          ? `not available: the gateway answered a configuration error (${pj.text.slice(0, 300)})`
          : `a probe request answered ${pj.status}: ${pj.text.slice(0, 300)}`,
      };
    }
    const ps = await probe(base, jsonPath, BODY_STREAM);
    result.probe = {
      json_status: pj.status,
      stream_status: ps.status,
      stream_ok: ps.status === 200 && ps.text.includes('[DONE]'),
      attempts: pj.headers['x-switchyard-attempts'] ?? null,
      provider: pj.headers['x-switchyard-provider'] ?? null,
      mirror: pj.headers['x-switchyard-mirror'] ?? null,
    };
    if (p.expectAttempts && result.probe.attempts !== p.expectAttempts) {
      result.warning = `expected x-switchyard-attempts ${p.expectAttempts}, got ${result.probe.attempts}`;
    }

    const modes = measures(p, 'json') ? [['json', BODY_JSON]] : [];
    if (measures(p, 'stream')) {
      if (result.probe.stream_ok) modes.push(['stream', BODY_STREAM]);
      else result.stream_unavailable = `a stream request answered ${ps.status}: ${ps.text.slice(0, 200)}`;
    }
    const conns = p.reduced ? SETTINGS.connections.filter((c) => c <= 16) : SETTINGS.connections;
    for (const [mode, body] of modes) {
      const kv0 = p.kind === 'switchyard' ? await kvOps(base) : null;
      const us0 = await upstreamRequests(up);
      const tMode = performance.now();
      await waitQuiet();
      log(`${p.id} ${mode}: warm-up ${SETTINGS.warmup_s}s`);
      const warm = await load(base + jsonPath, body, 16, SETTINGS.warmup_s);
      let total = warm.requests;
      const runs = {};
      for (const c of conns) {
        const r = await measure(base + jsonPath, body, c, SETTINGS.duration_s, pids);
        total += r.requests_incl_discarded ?? r.requests;
        runs[`c${c}`] = r;
        log(
          `${p.id} ${mode} c=${c}: ${r.rps} req/s p50 ${r.latency_ms.p50} p99 ${r.latency_ms.p99} ms` +
            (r.workerd_cpu_ms_per_req !== null ? `, workerd ${r.workerd_cpu_ms_per_req} ms CPU/req (${r.workerd_cpu_pct}% of a core)` : '') +
            `, upstream ${r.upstream_cpu_pct}%, load generator ${r.loadgen_cpu_pct}%, others ${r.other_cpu_pct}%` +
            (r.errors || r.non2xx ? `, ERRORS ${r.errors} non-2xx ${r.non2xx}` : ''),
        );
      }
      const entry = { runs, requests_total: total };
      await sleep(300); // let waitUntil work (mirrors, KV) finish after the last requests
      const us1 = await upstreamRequests(up);
      const modeS = (performance.now() - tMode) / 1000;
      entry.wall_s = round(modeS, 1);
      if (us0 && us1) {
        // One request is our own stats call; probes are outside the window.
        entry.upstream_requests_per_request = round((us1.requests - us0.requests - 1) / total, 2);
        entry.upstream_calls_per_request_by_kind = Object.fromEntries(
          Object.entries(us1.kinds).map(([k, v]) => [k, round((v - (us0.kinds[k] || 0)) / total, 2)]).filter(([, v]) => v > 0),
        );
      }
      if (kv0) {
        const kv1 = await kvOps(base);
        if (kv1 && kv1.reads >= kv0.reads && kv1.writes >= kv0.writes) {
          const reads = kv1.reads - kv0.reads;
          const writes = kv1.writes - kv0.writes;
          entry.kv = {
            requests: total,
            reads,
            writes,
            reads_per_1000: round((reads * 1000) / total, 3),
            writes_per_1000: round((writes * 1000) / total, 3),
            seconds: round(modeS, 1),
            reads_per_minute: round((reads * 60) / modeS, 1),
            writes_per_minute: round((writes * 60) / modeS, 1),
          };
        } else entry.kv = { note: 'kv_ops unavailable or the isolate restarted', before: kv0, after: kv1 };
      }
      result[mode] = entry;
    }

    if (measures(p, 'ttfb') && result.probe.stream_ok) {
      await waitQuiet();
      log(`${p.id}: time to first byte, ${SETTINGS.ttfb_requests} sequential paced streams`);
      const body = p.kind === 'switchyard' ? BODY_PACED : BODY_STREAM;
      result.ttfb = await measureTtfb(base + pacedPath, body, SETTINGS.ttfb_requests);
      log(
        `${p.id}: head ${result.ttfb.head_ms.p50} ms, first byte ${result.ttfb.ttfb_ms.p50} ms, first token ${result.ttfb.ttft_ms.p50} ms, ` +
          `whole ${result.ttfb.total_ms.p50} ms, ${result.ttfb.body_reads_p50} reads/response`,
      );
    }
    if (p.long && SETTINGS.long) {
      result.long = {};
      for (const sc of LONG_SCENARIOS) {
        // Switchyard: its route, by the model name; a pass-through: the upstream path itself.
        const urlPath = p.kind === 'switchyard' ? '/v1/chat/completions' : sc.path;
        await waitQuiet();
        const r = await measureLong(base + urlPath, longBody(sc.route), SETTINGS.long_streams, pids);
        result.long[sc.id] = r;
        log(
          `${p.id} long ${sc.id}: ${r.cpu_ms_per_stream} ms CPU/stream, ${r.cpu_us_per_event} µs/event, wall p50 ${r.wall_ms.p50} ms, ` +
            `${r.events_per_stream} ${r.format} events (${r.content_events_per_stream} content) in ${r.reads_per_stream} reads, others ${r.other_cpu_pct}%` +
            (r.incomplete ? `, ${r.incomplete} INCOMPLETE (statuses ${r.statuses.join(',')})` : ''),
        );
      }
    }
    if (worker?.stderrTail.length) result.workerd_stderr_tail = worker.stderrTail.join('').slice(-1000);
  } catch (e) {
    log(`${p.id} failed: ${e.stack || e}`);
    return { ...result, available: false, reason: `failed: ${e.message}` };
  } finally {
    if (worker) await worker.dispose();
    result.wall_s = round((performance.now() - started) / 1000, 1);
  }
  return result;
}

// ------------------------------------------------------------------ derived

function derive(results) {
  const by = Object.fromEntries(results.paths.map((p) => [p.id, p]));
  const run = (id, mode, c) => by[id]?.available && by[id][mode]?.runs?.[`c${c}`];
  const out = {};
  for (const sy of ['switchyard', 'sy-quiet', 'sy-failover', 'sy-failover-cb', 'sy-mirror']) {
    if (!by[sy]?.available) continue;
    for (const base of ['pt-js', 'pt-rs']) {
      if (!by[base]?.available) continue;
      const d = {};
      for (const mode of ['json', 'stream']) {
        const m = {};
        for (const c of SETTINGS.connections) {
          const a = run(sy, mode, c);
          const b = run(base, mode, c);
          if (!a || !b) continue;
          m[`c${c}`] = {
            p50_ms: round(a.latency_ms.p50 - b.latency_ms.p50),
            p90_ms: round(a.latency_ms.p90 - b.latency_ms.p90),
            p99_ms: round(a.latency_ms.p99 - b.latency_ms.p99),
            cpu_ms_per_req: a.workerd_cpu_ms_per_req !== null && b.workerd_cpu_ms_per_req !== null
              ? round(a.workerd_cpu_ms_per_req - b.workerd_cpu_ms_per_req) : null,
            throughput_ratio: round(a.rps / b.rps, 2),
          };
        }
        if (Object.keys(m).length) d[mode] = m;
      }
      const ta = by[sy].ttfb;
      const tb = by[base].ttfb;
      if (ta && tb) {
        d.ttfb = {
          head_p50_ms: round(ta.head_ms.p50 - tb.head_ms.p50),
          ttfb_p50_ms: round(ta.ttfb_ms.p50 - tb.ttfb_ms.p50),
          ttft_p50_ms: round(ta.ttft_ms.p50 - tb.ttft_ms.p50),
          ttft_p99_ms: round(ta.ttft_ms.p99 - tb.ttft_ms.p99),
          total_p50_ms: round(ta.total_ms.p50 - tb.total_ms.p50),
        };
      }
      out[`${sy}_minus_${base}`] = d;
    }
  }
  return out;
}

/** Long streams: Switchyard against each pass-through measured in the same run, per scenario. */
function deriveLong(results) {
  const by = Object.fromEntries(results.paths.map((p) => [p.id, p]));
  const out = {};
  if (by.switchyard?.available && by.switchyard.long) {
    for (const base of ['pt-js', 'pt-rs', 'read-loop-js']) {
      const b = by[base]?.available && by[base].long;
      if (!b) continue;
      const d = {};
      for (const sc of LONG_SCENARIOS) {
        const x = by.switchyard.long[sc.id];
        const y = b[sc.id];
        if (!x || !y) continue;
        const ratio = (u, v) => (u === null || v === null || !v ? null : round(u / v, 2));
        d[sc.id] = {
          cpu_ratio: ratio(x.cpu_ms_per_stream, y.cpu_ms_per_stream),
          wall_ratio: ratio(x.wall_ms.p50, y.wall_ms.p50),
          added_cpu_ms_per_stream: x.cpu_ms_per_stream === null || y.cpu_ms_per_stream === null ? null : round(x.cpu_ms_per_stream - y.cpu_ms_per_stream),
          added_cpu_us_per_event: x.cpu_us_per_event === null || y.cpu_us_per_event === null ? null : round(x.cpu_us_per_event - y.cpu_us_per_event, 2),
          added_wall_p50_ms: round(x.wall_ms.p50 - y.wall_ms.p50, 2),
        };
      }
      out[`switchyard_minus_${base}`] = d;
    }
  }
  return out;
}

function targets(results) {
  // The targets are ratios to the JS pass-through measured in the same run
  // (the floor every gateway on Workers faces). Beside each, the same figure
  // against the floor for what a gateway cannot skip, where the run has one:
  // the JS read loop for streams (it sees each chunk), the JS
  // parse-fetch-parse worker for non-streaming requests.
  const out = [];
  const run = (id, mode, c) => results.paths.find((p) => p.id === id)?.[mode]?.runs?.[c];
  const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? round(a / b, 2) : null);
  const cpuRatio = (base, mode, c) => ratio(run('switchyard', mode, c)?.workerd_cpu_ms_per_req, run(base, mode, c)?.workerd_cpu_ms_per_req);
  const rpsRatio = (base, mode, c) => ratio(run('switchyard', mode, c)?.rps, run(base, mode, c)?.rps);
  const long = (base, scenario) => results.derived_long?.[`switchyard_minus_${base}`]?.[scenario];
  const t = (target, limit, unit, value, floor, ok) =>
    out.push({ target, limit, unit, value: value ?? null, floor: floor ?? null, met: value === null || value === undefined ? null : ok(value) });
  const atMost = (n) => (v) => v <= n;
  const floorLong = (scenario, k) => long('read-loop-js', scenario)?.[k];
  t('CPU per 1,000-event stream, back to back', '<= 2x', 'x', long('pt-js', 'long')?.cpu_ratio, floorLong('long', 'cpu_ratio'), atMost(2));
  t('CPU per 1,000-event stream, paced 1 ms', '<= 1.3x', 'x', long('pt-js', 'long-paced')?.cpu_ratio, floorLong('long-paced', 'cpu_ratio'), atMost(1.3));
  t('added CPU per event, back to back', '<= 10 µs', 'µs', long('pt-js', 'long')?.added_cpu_us_per_event, floorLong('long', 'added_cpu_us_per_event'), atMost(10));
  t('added CPU per event, paced 1 ms', '<= 10 µs', 'µs', long('pt-js', 'long-paced')?.added_cpu_us_per_event, floorLong('long-paced', 'added_cpu_us_per_event'), atMost(10));
  t('CPU per 1,000-event stream, Anthropic upstream translated', '<= 3x', 'x', long('pt-js', 'long-anthropic')?.cpu_ratio, floorLong('long-anthropic', 'cpu_ratio'), atMost(3));
  t('CPU per 20-event stream (1 connection)', '<= 2x', 'x', cpuRatio('pt-js', 'stream', 'c1'), cpuRatio('read-loop-js', 'stream', 'c1'), atMost(2));
  t('wall time per 1,000-event stream, back to back', '<= 1.5x', 'x', long('pt-js', 'long')?.wall_ratio, floorLong('long', 'wall_ratio'), atMost(1.5));
  t('non-streaming CPU per request, 16 connections', '<= 1.6x', 'x', cpuRatio('pt-js', 'json', 'c16'), cpuRatio('whole-floor-js', 'json', 'c16'), atMost(1.6));
  t('non-streaming requests/s, 16 connections', '>= 0.6x', 'x', rpsRatio('pt-js', 'json', 'c16'), rpsRatio('whole-floor-js', 'json', 'c16'), (v) => v >= 0.6);
  const ttft = results.derived['switchyard_minus_pt-js']?.ttfb?.ttft_p50_ms;
  const ttftOf = (id) => results.paths.find((p) => p.id === id)?.ttfb?.ttft_ms?.p50;
  // The first token's floor holds the head until the first chunk, as a
  // gateway that can still fail over must.
  const ttftFloor = Number.isFinite(ttftOf('switchyard')) && Number.isFinite(ttftOf('hold-first-js')) ? round(ttftOf('switchyard') - ttftOf('hold-first-js')) : null;
  t('added time to first content token, paced stream (p50)', '<= +0.3 ms', 'ms', ttft, ttftFloor, atMost(0.3));
  const bundleKb = results.bundle?.total?.gzip_bytes / 1024;
  if (Number.isFinite(bundleKb)) t('wasm + JS gzipped', '<= 250 KiB', 'KiB', round(bundleKb, 1), null, atMost(250));
  return out;
}

// ------------------------------------------------------------------ main

function machine() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = (cpuinfo.match(/^model name\s*:\s*(.*)$/m) || [])[1] || 'unknown';
  const pkg = (p) => {
    try {
      return JSON.parse(readFileSync(path.join(ROOT, 'node_modules', p, 'package.json'), 'utf8')).version;
    } catch {
      return null;
    }
  };
  return {
    nproc: Number(execOr('nproc', [], String(os.cpus().length))),
    cpu_model: model,
    memory_gib: round(os.totalmem() / 2 ** 30, 1),
    clk_tck: ticksPerSecond(),
    kernel: os.release(),
    os: (readFileSync('/etc/os-release', 'utf8').match(/^PRETTY_NAME="?(.*?)"?$/m) || [])[1] || os.type(),
    node: process.version,
    workerd: execOr(path.join(ROOT, 'node_modules/.bin/workerd'), ['--version'], 'unknown').replace(/^workerd\s+/, ''),
    miniflare: pkg('miniflare'),
    wrangler: pkg('wrangler'),
    loadgen:
      SETTINGS.loadgen === 'wrk'
        ? execOr('sh', ['-c', 'wrk -v 2>&1 | head -n1'], 'wrk').replace(/\s+Copyright.*$/, '')
        : `autocannon ${SETTINGS.autocannon_version} (whole-ms latencies; 1 connection timed by a Node client)`,
  };
}

function bundle() {
  const wasm = path.join(ROOT, 'build/index_bg.wasm');
  const js = path.join(ROOT, 'build/index.js');
  if (!existsSync(wasm) || !existsSync(js)) return null;
  const w = { raw_bytes: statSync(wasm).size, gzip_bytes: gzipSize(wasm) };
  const j = { raw_bytes: statSync(js).size, gzip_bytes: gzipSize(js) };
  return {
    wasm: w,
    js: j,
    total: { raw_bytes: w.raw_bytes + j.raw_bytes, gzip_bytes: w.gzip_bytes + j.gzip_bytes },
    built_at: statSync(wasm).mtime.toISOString(),
  };
}

let upstream = null;
const liveWorkers = new Set();
async function cleanup() {
  for (const w of [...liveWorkers]) await w.dispose().catch(() => {});
  if (upstream) await upstream.stop().catch(() => {});
  upstream = null;
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    log(`${sig}: cleaning up`);
    await cleanup();
    process.exit(130);
  });
}

async function main() {
  if (!existsSync(path.join(ROOT, 'build/worker/shim.mjs'))) throw new Error('build/worker/shim.mjs is missing: run npm run build');
  mkdirSync(OUT, { recursive: true });
  const t0 = performance.now();
  const results = {
    date: new Date().toISOString(),
    machine: machine(),
    settings: SETTINGS,
    bundle: bundle(),
    paths: [],
  };
  log(`machine: ${results.machine.nproc} cores, ${results.machine.cpu_model}, node ${results.machine.node}, workerd ${results.machine.workerd}, load: ${results.machine.loadgen}`);

  upstream = await startUpstream();
  log(`fake upstream on ${upstream.origin} (pid ${upstream.pid})`);
  for (const p of paths(upstream)) {
    if (ONLY && !ONLY.has(p.id)) continue;
    log(`--- ${p.label}`);
    const r = await benchPath(p, upstream);
    if (!r.available) log(`${p.id}: ${r.reason}`);
    results.paths.push(r);
  }
  await upstream.stop();
  upstream = null;

  results.derived = derive(results);
  results.derived_long = deriveLong(results);
  results.targets = targets(results);
  results.wall_s = round((performance.now() - t0) / 1000, 0);

  writeFileSync(path.join(OUT, 'latest.json'), JSON.stringify(results, null, 2) + '\n');
  const svg = renderSvg(results);
  writeFileSync(path.join(OUT, 'latest.svg'), svg);
  let png = false;
  if (which('rsvg-convert')) {
    try {
      execFileSync('rsvg-convert', ['-f', 'png', '-o', path.join(OUT, 'latest.png'), path.join(OUT, 'latest.svg')]);
      png = true;
    } catch (e) {
      log(`rsvg-convert failed: ${e.message}`);
    }
  } else log('rsvg-convert is missing (apt-get install librsvg2-bin): the chart is only bench/results/latest.svg');
  const md = renderMarkdown(results, { chart: png ? 'latest.png' : 'latest.svg' });
  writeFileSync(path.join(OUT, 'latest.md'), md);
  console.log(md);
  log(`done in ${results.wall_s} s: ${path.relative(ROOT, OUT)}/latest.{json,md,svg${png ? ',png' : ''}}`);
}

main()
  .catch(async (e) => {
    log(`failed: ${e.stack || e}`);
    process.exitCode = 1;
  })
  .finally(cleanup);
