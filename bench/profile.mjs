// CPU profile of Switchyard inside workerd, per request, under wrk load.
//
//   KEEP_WASM_NAMES=1 NO_MINIFY=1 npm run build   (names for wasm and JS frames)
//   node bench/profile.mjs [--modes json,stream] [--conns 1,16] [--duration 8]
//                    [--modes long,long-paced,long-anthropic]
//                    [--interval 50] [--warmup 2] [--top 30] [--out bench/results/tmp/profile]
//                    [--script build/worker/shim.mjs] [--worker switchyard|pt-rs]
//                    [--variant plain|quiet|failover|failover-cb|mirror] [--no-inspector]
//
// Starts bench/upstream.mjs and the worker in workerd (Miniflare, the same
// options and bench config as bench/run.mjs: unsafeDirectSockets, KV, the
// GATEWAY_KEYS secret), plus `inspectorPort` so workerd exposes V8's
// inspector. For each mode and connection count it runs wrk (bench/wrk.lua)
// while the V8 sampling profiler runs (CDP Profiler.* over a WebSocket), then
// saves the .cpuprofile and prints self time by function, by category and by
// origin (wasm / JS glue / native), in µs per request and in % of busy time.

import { Miniflare } from 'miniflare';
import WebSocket from 'ws';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AUTH, BODY_JSON, BODY_STREAM, LONG_SCENARIOS, childPids, cpuSeconds, longBody, switchyardBindings } from './common.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (n, d) => {
  const i = args.indexOf(`--${n}`);
  return i >= 0 ? args[i + 1] : d;
};
const MODES = opt('modes', 'json,stream').split(',');
const CONNS = opt('conns', '1,16').split(',').map(Number);
const DURATION = Number(opt('duration', 8));
const WARMUP = Number(opt('warmup', 2));
const INTERVAL = Number(opt('interval', 50));
const TOP = Number(opt('top', 30));
const OUT = path.resolve(ROOT, opt('out', 'bench/results/tmp/profile'));
const WORKER = opt('worker', 'switchyard');
// Switchyard's bench configuration: plain, quiet, failover, failover-cb, mirror (bench/common.mjs).
const VARIANT = opt('variant', 'plain');
const NO_INSPECTOR = args.includes('--no-inspector'); // baseline: the same runs, no inspector, no profile
const SCRIPT = path.resolve(
  ROOT,
  opt('script', WORKER === 'pt-rs' ? 'bench/passthrough-rs/build/worker/shim.mjs' : 'build/worker/shim.mjs'),
);
mkdirSync(OUT, { recursive: true });

const log = (...a) => console.error('profile:', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// ---------------------------------------------------------------- processes

async function startUpstream() {
  const child = spawn(process.execPath, [path.join(ROOT, 'bench/upstream.mjs'), '--pace-ms', '2'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const info = await new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (c) => {
      buf += c;
      const i = buf.indexOf('\n');
      if (i >= 0) resolve(JSON.parse(buf.slice(0, i)));
    });
    child.on('exit', (code) => reject(new Error(`upstream exited ${code}`)));
  });
  return { child, origin: `http://127.0.0.1:${info.port}` };
}

async function startWorker(up) {
  const before = new Set(childPids('workerd'));
  const sy = WORKER === 'switchyard';
  const bindings = sy
    ? switchyardBindings(up, VARIANT)
    : { UPSTREAM: up.origin };
  const mf = new Miniflare({
    name: WORKER,
    modules: true,
    compatibilityDate: '2025-01-01',
    bindings,
    host: '127.0.0.1',
    port: 0,
    cf: false,
    unsafeDirectSockets: [{ host: '127.0.0.1', port: 0 }],
    stripCfConnectingIp: false,
    ...(NO_INSPECTOR ? {} : { inspectorPort: 0 }), // straight to workerd's --inspector-addr (no Miniflare proxy)
    handleRuntimeStdio(stdout, stderr) {
      stdout.resume();
      stderr.resume();
    },
    ...(sy ? { kvNamespaces: ['STATE'] } : {}),
    scriptPath: SCRIPT,
    modulesRules: [
      { type: 'ESModule', include: ['**/*.js', '**/*.mjs'] },
      { type: 'CompiledWasm', include: ['**/*.wasm'], fallthrough: true },
    ],
    modulesRoot: path.dirname(path.dirname(SCRIPT)),
  });
  await mf.ready;
  const url = (await mf.unsafeGetDirectURL()).href.replace(/\/$/, '');
  const inspector = NO_INSPECTOR ? null : await mf.getInspectorURL();
  const pid = childPids('workerd').filter((p) => !before.has(p))[0];
  return { mf, url, inspector, pid };
}

// ---------------------------------------------------------------- CDP

async function cdpConnect(inspectorUrl) {
  const http = inspectorUrl.href.replace(/^ws/, 'http').replace(/\/$/, '');
  const targets = await (await fetch(`${http}/json`)).json();
  log('inspector targets:', targets.map((t) => `${t.title} ${t.webSocketDebuggerUrl ?? t.id}`).join(' | '));
  const t = targets.find((x) => x.title?.includes(WORKER)) ?? targets.find((x) => !/^core:|miniflare|__mf/i.test(x.title)) ?? targets[0];
  const wsUrl = t.webSocketDebuggerUrl ?? `${inspectorUrl.href.replace(/\/$/, '')}/${t.id}`;
  log('attaching to', t.title, wsUrl);
  const ws = new WebSocket(wsUrl, { maxPayload: 1 << 30 });
  await new Promise((r, j) => {
    ws.once('open', r);
    ws.once('error', j);
  });
  let id = 0;
  const pending = new Map();
  ws.on('message', (m) => {
    const msg = JSON.parse(m);
    if (msg.id && pending.has(msg.id)) {
      const { resolve, reject } = pending.get(msg.id);
      pending.delete(msg.id);
      msg.error ? reject(new Error(JSON.stringify(msg.error))) : resolve(msg.result);
    }
  });
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const i = ++id;
      pending.set(i, { resolve, reject });
      ws.send(JSON.stringify({ id: i, method, params }));
    });
  return { send, close: () => ws.close() };
}

// ---------------------------------------------------------------- load

function wrk(url, body, c, d) {
  return new Promise((resolve, reject) => {
    const a = ['-t', String(c), '-c', String(c), '-d', `${d}s`, '--timeout', '10s', '-s', path.join(ROOT, 'bench/wrk.lua'), url];
    const ch = spawn('wrk', a, { env: { ...process.env, BENCH_BODY: body, BENCH_AUTH: AUTH }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    ch.stdout.on('data', (x) => (out += x));
    ch.stderr.on('data', (x) => (out += x));
    ch.on('exit', () => {
      const m = out.match(/BENCH_JSON (\{.*\})/);
      if (!m) return reject(new Error(`wrk: ${out}`));
      resolve(JSON.parse(m[1]));
    });
  });
}

// ---------------------------------------------------------------- analysis

const wasmNames = new Map();
function shortUrl(u) {
  if (!u) return '';
  if (u.startsWith('wasm://')) return 'wasm';
  return u.replace(/^.*\/build\//, 'build/').replace(/^file:\/\//, '');
}

/** Category of a frame (self time), from its name and URL. */
function category(fn, url) {
  const n = fn;
  const isWasm = url.startsWith('wasm://');
  if (n === '(garbage collector)') return 'GC';
  if (n === '(idle)') return 'idle';
  if (n === '(program)') return 'native/runtime (program)';
  if (n === '(root)') return 'root';
  if (isWasm) {
    if (/sha2|sha256|compress256|Sha256/i.test(n)) return 'sha256';
    if (/serde_json|serde::|Deserialize|Serialize|deserialize|serialize|from_str|to_string|to_value|ser::|de::|json|escape|format_escaped|itoa|ryu/i.test(n)) return 'JSON parse/serialise (wasm)';
    if (/dlmalloc|alloc::|__rust_alloc|__rust_dealloc|__rust_realloc|malloc|free|realloc|memcpy|memmove|memset|RawVec|grow|reserve/i.test(n)) return 'allocation/memcpy (wasm)';
    if (/futures|wasm_bindgen_futures|Task|poll|waker|wake|executor|queue|Closure|closure|JsFuture|invoke/i.test(n)) return 'closures/promises/futures executor (wasm)';
    if (/fmt|Formatter|write_str|write_fmt|Display|Debug|format/i.test(n)) return 'string formatting (wasm)';
    if (/Headers|header/i.test(n)) return 'header handling (wasm)';
    if (/console|log::|to_line|RequestLog/i.test(n)) return 'logging (wasm)';
    if (/sse|SseParser|stream|Relay|relay|ByteStream|wasm_streams/i.test(n)) return 'SSE/stream relay (wasm)';
    if (/__wbindgen|externref|wasm_bindgen|js_sys|web_sys|describe/i.test(n)) return 'wasm-bindgen shims (wasm)';
    return 'other wasm (gateway logic)';
  }
  // JS (glue or runtime builtins)
  if (/console|log$|^log|^error$|^warn$|^info$/i.test(n) && /console|log/i.test(n)) return 'logging console.log';
  if (/passStringToWasm|getStringFromWasm|decode|encode|TextDecoder|TextEncoder|getUint8ArrayMemory|getArrayU8|getCachedString|cachedText|getDataView|getArrayJsValue/i.test(n)) return 'string/bytes marshalling (JS glue)';
  if (/[Hh]eaders|header|append|set_[0-9a-f]+$|__wbg_set|__wbg_get_/.test(n) && /eader|__wbg_set|__wbg_get_/.test(n)) return 'header handling (JS)';
  if (/setTimeout|clearTimeout|timeout|Timeout|timer/i.test(n)) return 'timers';
  if (/fetch|Request|Response|ReadableStream|WritableStream|stream|pull|read|enqueue|getReader|body|abort|Abort|signal|Signal|Uint8Array|arrayBuffer|text$|bytes/i.test(n)) return 'fetch/streams glue';
  if (/closure|Closure|adapter|makeMutClosure|makeClosure|wasm_bindgen__convert|invoke|then|Promise|promise|queueMicrotask|microtask|resolve|reject|__wbg_new_|await|async/i.test(n)) return 'closures/promises/futures (JS)';
  if (/addHeapObject|takeObject|getObject|dropObject|addToExternrefTable|externref|heap|__wbindgen_object|__wbindgen_|__wbg_/i.test(n)) return 'other wasm-bindgen glue (JS)';
  if (/JSON|stringify|parse/i.test(n)) return 'JSON (JS)';
  if (url === '' || url === undefined) return 'V8/runtime builtin (no url)';
  return `other JS (${shortUrl(url)})`;
}

function origin(fn, url) {
  if (fn.startsWith('(')) return fn;
  if (url.startsWith('wasm://')) return 'wasm';
  if (/build\/index\.js/.test(url)) return 'JS glue build/index.js';
  if (/shim\.mjs/.test(url)) return 'JS glue build/worker/shim.mjs';
  if (!url) return 'native/builtin (no url)';
  return `JS ${shortUrl(url)}`;
}

function analyse(profile, requests, label) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Sample durations: delta to the next sample (DevTools' convention).
  const dur = new Map();
  const S = profile.samples;
  const D = profile.timeDeltas;
  let total = 0;
  for (let i = 0; i < S.length; i++) {
    const d = i + 1 < D.length ? D[i + 1] : INTERVAL;
    dur.set(S[i], (dur.get(S[i]) ?? 0) + d);
    total += d;
  }
  const self = new Map(); // key -> µs
  const incl = new Map();
  const cats = new Map();
  const origins = new Map();
  const nativeByCaller = new Map();
  let idle = 0;
  for (const [id, us] of dur) {
    const n = byId.get(id);
    const cf = n.callFrame;
    const key = `${cf.functionName || '(anonymous)'}\t${shortUrl(cf.url)}${cf.url && !cf.url.startsWith('wasm') ? ':' + (cf.lineNumber + 1) : ''}`;
    self.set(key, (self.get(key) ?? 0) + us);
    const cat = category(cf.functionName || '(anonymous)', cf.url || '');
    cats.set(cat, (cats.get(cat) ?? 0) + us);
    const o = origin(cf.functionName || '(anonymous)', cf.url || '');
    origins.set(o, (origins.get(o) ?? 0) + us);
    if (cf.functionName === '(idle)') idle += us;
    if (!cf.url && !['(idle)', '(program)', '(garbage collector)', '(root)'].includes(cf.functionName)) {
      // A builtin or runtime function: name it by its nearest caller with a URL.
      let p = parent.get(id);
      let caller = '?';
      for (; p !== undefined; p = parent.get(p)) {
        const f = byId.get(p).callFrame;
        if (f.url) {
          caller = `${f.functionName || '(anonymous)'} @ ${shortUrl(f.url)}`;
          break;
        }
      }
      const k = `${cf.functionName || '(anonymous)'}\t<- ${caller}`;
      nativeByCaller.set(k, (nativeByCaller.get(k) ?? 0) + us);
    }
    // inclusive: each distinct function on the stack once
    const seen = new Set();
    for (let p = id; p !== undefined; p = parent.get(p)) {
      const f = byId.get(p).callFrame;
      const k = `${f.functionName || '(anonymous)'}\t${shortUrl(f.url)}`;
      if (seen.has(k)) continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + us);
    }
  }
  const busy = total - idle;
  const fmt = (m, n) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, us]) => ({ name: k, us_per_req: +(us / requests).toFixed(1), pct_busy: +((100 * us) / busy).toFixed(1) }));
  return {
    label,
    requests,
    profile_ms: +(total / 1000).toFixed(0),
    busy_ms: +(busy / 1000).toFixed(0),
    busy_us_per_req: +(busy / requests).toFixed(1),
    samples: S.length,
    self: fmt(self, TOP),
    categories: fmt(cats, 40),
    origins: fmt(origins, 20),
    inclusive: fmt(incl, TOP + 20),
    native_by_caller: fmt(nativeByCaller, 25),
  };
}

function printReport(r) {
  const line = (x) => console.log(x);
  line(`\n=== ${r.label}: ${r.requests} requests, profile ${r.profile_ms} ms, busy (non-idle) ${r.busy_ms} ms = ${r.busy_us_per_req} µs/req, ${r.samples} samples`);
  if (r.workerd_cpu_ms_per_req !== undefined) line(`    workerd process CPU (all threads, /proc): ${r.workerd_cpu_ms_per_req} ms/req`);
  line('--- origins (self time)');
  for (const e of r.origins) line(`  ${String(e.pct_busy).padStart(5)}%  ${String(e.us_per_req).padStart(7)} µs/req  ${e.name}`);
  line('--- categories (self time)');
  for (const e of r.categories) line(`  ${String(e.pct_busy).padStart(5)}%  ${String(e.us_per_req).padStart(7)} µs/req  ${e.name}`);
  line('--- top functions (self time)');
  for (const e of r.self) line(`  ${String(e.pct_busy).padStart(5)}%  ${String(e.us_per_req).padStart(7)} µs/req  ${e.name.replace('\t', '  @ ')}`);
  line('--- builtins / runtime functions (no URL) by nearest JS or wasm caller');
  for (const e of r.native_by_caller) line(`  ${String(e.pct_busy).padStart(5)}%  ${String(e.us_per_req).padStart(7)} µs/req  ${e.name.replace('\t', '  ')}`);
  line('--- top functions (inclusive time)');
  for (const e of r.inclusive) line(`  ${String(e.pct_busy).padStart(5)}%  ${String(e.us_per_req).padStart(7)} µs/req  ${e.name.replace('\t', '  @ ')}`);
}

// ---------------------------------------------------------------- main

const up = await startUpstream();
let w;
try {
  w = await startWorker(up);
  log(`worker ${w.url} (workerd pid ${w.pid}), inspector ${w.inspector?.href}, upstream ${up.origin}`);
  const target = `${w.url}${WORKER === 'switchyard' ? '' : '/v1'}/chat/completions`.replace('/v1/v1', '/v1');
  const url = WORKER === 'switchyard' ? `${w.url}/v1/chat/completions` : `${w.url}/v1/chat/completions`;
  for (const [m, b] of [['json', BODY_JSON], ['stream', BODY_STREAM]]) {
    const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: AUTH }, body: b });
    const t = await r.text();
    log(`probe ${m}: ${r.status} ${t.length} bytes${m === 'stream' ? (t.includes('[DONE]') ? ' [DONE] ok' : ' NO [DONE]') : ''}`);
  }
  const cdp = NO_INSPECTOR ? null : await cdpConnect(w.inspector);
  if (cdp) {
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: INTERVAL });
  }
  const reports = [];
  for (const mode of MODES) {
    // json, stream (20 events) or a long-stream scenario (long, long-paced,
    // long-anthropic: 1,000 events, profiled at one connection).
    const long = LONG_SCENARIOS.find((s) => s.id === mode);
    const body = long ? longBody(long.route) : mode === 'stream' ? BODY_STREAM : BODY_JSON;
    log(`${mode}: warm-up ${WARMUP}s @${long ? 1 : 16}`);
    await wrk(url, body, long ? 1 : 16, WARMUP);
    for (const c of CONNS) {
      await sleep(300);
      if (cdp) await cdp.send('Profiler.start');
      const cpu0 = cpuSeconds(w.pid);
      const res = await wrk(url, body, c, DURATION);
      const cpu1 = cpuSeconds(w.pid);
      const label = `${WORKER} ${mode} c=${c}`;
      if (!cdp) {
        const cpuReq = +(((cpu1 - cpu0) * 1000) / res.requests).toFixed(3);
        log(`${label} (no inspector): ${res.requests} req (${(res.requests / DURATION).toFixed(0)}/s, p50 ${(res.latency_us.p50 / 1000).toFixed(3)} ms), workerd ${cpuReq} ms CPU/req`);
        reports.push({ label, requests: res.requests, workerd_cpu_ms_per_req: cpuReq, p50_ms: res.latency_us.p50 / 1000 });
        continue;
      }
      const { profile } = await cdp.send('Profiler.stop');
      const file = path.join(OUT, `${WORKER}-${mode}-c${c}.cpuprofile`);
      writeFileSync(file, JSON.stringify(profile));
      const rep = analyse(profile, res.requests, label);
      rep.workerd_cpu_ms_per_req = +(((cpu1 - cpu0) * 1000) / res.requests).toFixed(3);
      rep.rps = +(res.requests / DURATION).toFixed(0);
      rep.errors = res.errors;
      rep.p50_ms = +(res.latency_us.p50 / 1000).toFixed(3);
      log(`${label}: ${res.requests} req (${rep.rps}/s, p50 ${rep.p50_ms} ms), workerd ${rep.workerd_cpu_ms_per_req} ms CPU/req, profile -> ${file}`);
      printReport(rep);
      reports.push(rep);
    }
  }
  writeFileSync(path.join(OUT, `${WORKER}${NO_INSPECTOR ? '-baseline' : ''}-report.json`), JSON.stringify(reports, null, 2));
  cdp?.close();
} finally {
  if (w) await w.mf.dispose().catch(() => {});
  up.child.stdin.end();
  up.child.kill('SIGTERM');
}
