// Runs the built worker (build/worker/shim.mjs + its wasm) in Miniflare for
// end-to-end tests, without the wrangler dev proxy.
//
//   const gw = await startGateway({ config, secrets: { OPENAI_API_KEY: 'sk-test' } });
//   const r = await gw.chat({ model: 'chat', messages: [...] });   // {status, headers, json, text, ms}
//   gw.logs()          // every line the worker wrote (console.log/error), JSON parsed where possible
//   await gw.waitForLog((l) => l.request_id === r.headers['x-request-id'])
//   await gw.kvJson('sy:v1:p:openai')
//   await gw.dispose()
//
// Miniflare also listens on 127.0.0.1 (random port), so `gw.url` is a real
// HTTP origin that any client (the `openai` npm package) can use.

import { Miniflare } from 'miniflare';
import { existsSync, mkdirSync, appendFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// SWITCHYARD_WORKER_SCRIPT runs the tests against another module worker
// (a debug build elsewhere, or a stand-in while the Rust side is in progress).
export const SHIM = process.env.SWITCHYARD_WORKER_SCRIPT
  ? path.resolve(process.env.SWITCHYARD_WORKER_SCRIPT)
  : path.join(ROOT, 'build/worker/shim.mjs');

const MODULE_RULES = [
  { type: 'ESModule', include: ['**/*.js', '**/*.mjs'] },
  { type: 'CompiledWasm', include: ['**/*.wasm'], fallthrough: true },
];

// ------------------------------------------------------------ leak capture
// Every log line the worker writes and every response it gives (headers and
// body) is appended to build/e2e-capture/<pid>.log, so that a last step of
// `npm test` (tests/leak/) can scan the whole suite's output for the fake
// provider keys.
const CAPTURE_DIR = path.join(ROOT, 'build', 'e2e-capture');
let captureFile = null;
function capture(text) {
  try {
    if (!captureFile) {
      mkdirSync(CAPTURE_DIR, { recursive: true });
      captureFile = path.join(CAPTURE_DIR, `${process.pid}.log`);
    }
    appendFileSync(captureFile, text.replace(/\n/g, ' ') + '\n');
  } catch {
    /* capture is best effort; the scan reports an empty capture */
  }
}
function captureResponse(res) {
  const headers = [...res.headers].map(([k, v]) => `${k}: ${v}`).join('; ');
  capture(`[response ${res.status}] ${headers}`);
  // Read a copy of the body without consuming the caller's.
  if (res.body) {
    res
      .clone()
      .text()
      .then((t) => capture(`[body] ${t}`))
      .catch(() => {});
  }
}

/** Whether the worker has been built (tests skip with a clear reason otherwise). */
export function isBuilt() {
  return existsSync(SHIM);
}

/** Splits a stream into lines and hands each complete line to `onLine`. */
function lineReader(stream, onLine) {
  let buf = '';
  stream.setEncoding?.('utf8');
  stream.on('data', (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, i).replace(/\r$/, ''));
      buf = buf.slice(i + 1);
    }
  });
  stream.on('end', () => {
    if (buf) onLine(buf);
    buf = '';
  });
}

function parseLine(line) {
  const t = line.trim();
  if (t.startsWith('{') || t.startsWith('[')) {
    try {
      return JSON.parse(t);
    } catch {
      /* not JSON after all */
    }
  }
  return line;
}

function headersObject(h) {
  const out = {};
  for (const [k, v] of h) out[k.toLowerCase()] = v;
  return out;
}

/**
 * Boots the gateway.
 * @param {object} opts
 * @param {object|string} opts.config   SWITCHYARD_CONFIG: an object (a JSON binding, like a
 *                                      wrangler.toml table) or JSON text (a text binding)
 * @param {Record<string,string>} [opts.secrets]  extra text bindings (provider keys)
 * @param {string} [opts.kvPersist]     directory to keep KV in (shared between instances)
 * @param {string} [opts.compatibilityDate]
 * @param {string} [opts.script]        a JS worker instead of the build (for harness self-tests)
 * @param {boolean} [opts.echoLogs]     also print the worker's lines to stderr
 * @param {boolean} [opts.assets]       serve assets/ (the dashboard) in front of the
 *                                      worker, as wrangler.toml's [assets] does when deployed
 */
export async function startGateway({
  config,
  secrets = {},
  kvPersist,
  compatibilityDate = '2025-01-01',
  script,
  scriptPath = SHIM,
  echoLogs = !!process.env.SWITCHYARD_ECHO_LOGS,
  assets = false,
  // Further Miniflare options (e.g. `ratelimits`), merged in as given.
  miniflare = {},
} = {}) {
  if (!script && !existsSync(scriptPath)) {
    throw new Error(`${path.relative(ROOT, scriptPath)} is missing: build the worker first (npm run build)`);
  }
  const lines = [];
  const waiters = new Set();
  const onLine = (stream) => (line) => {
    if (!line.trim()) return;
    capture(line);
    const entry = parseLine(line);
    lines.push(entry);
    if (echoLogs) process.stderr.write(`[worker ${stream}] ${line}\n`);
    for (const w of waiters) w();
  };

  const options = {
    modules: true,
    compatibilityDate,
    kvNamespaces: ['STATE'],
    // Miniflare's local Analytics Engine keeps no points; binding it runs
    // the gateway's write path (a failed write is logged).
    analyticsEngineDatasets: { ANALYTICS: { dataset: 'switchyard' } },
    bindings: {
      // An object becomes a JSON binding, as wrangler.toml's [vars.SWITCHYARD_CONFIG]
      // table does when deployed; a string stays a text binding.
      SWITCHYARD_CONFIG: config,
      ...secrets,
    },
    host: '127.0.0.1',
    port: 0,
    handleRuntimeStdio(stdout, stderr) {
      lineReader(stdout, onLine('out'));
      lineReader(stderr, onLine('err'));
    },
  };
  if (kvPersist) options.kvPersist = kvPersist;
  // Off by default: the asset router is a worker of its own in front of the
  // gateway, and the other tests and the benchmark measure the gateway alone.
  if (assets) options.assets = { directory: path.join(ROOT, 'assets'), routerConfig: { has_user_worker: true } };
  Object.assign(options, miniflare);
  if (script) options.script = script;
  else {
    options.scriptPath = scriptPath;
    options.modulesRules = MODULE_RULES;
    // worker-build 0.8's shim re-exports '../index.js': the modules root must
    // be build/, or workerd refuses the '..'.
    options.modulesRoot = path.dirname(path.dirname(scriptPath));
  }

  const mf = new Miniflare(options);
  let ready;
  try {
    ready = await mf.ready; // URL of the listening server
  } catch (e) {
    // workerd explains itself on stderr, which handleRuntimeStdio captured.
    await new Promise((r) => setTimeout(r, 50));
    await mf.dispose().catch(() => {});
    const said = lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n');
    e.message += `\nworkerd said:\n${said || '(nothing)'}`;
    throw e;
  }
  const url = ready.href.replace(/\/$/, '');

  const gw = {
    mf,
    url,
    /** dispatchFetch against the gateway; `p` is a path like '/v1/models'. Every
     * response's headers and body are also captured for the key leak scan. */
    async fetch(p, init = {}) {
      const res = await mf.dispatchFetch(new URL(p, url).href, init);
      captureResponse(res);
      return res;
    },
    /** POST /v1/chat/completions; resolves to {status, headers, json, text, ms}. */
    async chat(body, { headers = {}, path: p = '/v1/chat/completions' } = {}) {
      const t0 = performance.now();
      const res = await gw.fetch(p, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await res.text();
      const ms = performance.now() - t0;
      let json = null;
      try {
        json = JSON.parse(text);
      } catch {
        /* a stream or an error page */
      }
      return { status: res.status, headers: headersObject(res.headers), json, text, ms };
    },
    /** Every captured line (JSON lines parsed). */
    logs() {
      return [...lines];
    },
    /** The per-request log lines (objects with a request_id). */
    requestLogs() {
      return lines.filter((l) => l && typeof l === 'object' && 'request_id' in l);
    },
    /** Resolves with the first line matching `pred` (lines arrive a little after the response). */
    waitForLog(pred, timeoutMs = 2000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = lines.find((l) => {
            try {
              return pred(l);
            } catch {
              return false;
            }
          });
          if (hit !== undefined) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(hit);
            return true;
          }
          return false;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching log line within ${timeoutMs} ms; lines: ${JSON.stringify(lines.slice(-10))}`));
        }, timeoutMs);
        if (!check()) waiters.add(check);
      });
    },
    /** The STATE KV namespace. */
    kv() {
      return mf.getKVNamespace('STATE');
    },
    /** A KV value parsed as JSON (null when missing). */
    async kvJson(key) {
      const kv = await mf.getKVNamespace('STATE');
      const v = await kv.get(key);
      return v === null ? null : JSON.parse(v);
    },
    /** Fires the scheduled handler; resolves to {outcome, noRetry}. */
    async scheduled(cron = '* * * * *') {
      const w = await mf.getWorker();
      return w.scheduled({ cron });
    },
    async dispose() {
      await mf.dispose();
    },
  };
  return gw;
}
