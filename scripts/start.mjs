#!/usr/bin/env node
// `npm start`: builds the worker, starts three fake providers on loopback
// (OpenAI on 9101, Anthropic on 9102, Cohere on 9103: the `local` environment
// in wrangler.toml points at them), and runs `wrangler dev --env local`.
//
//   npm start                 build, then serve on http://127.0.0.1:8787
//   npm start -- --no-build   skip scripts/build.sh (wrangler still runs [build])
//
// Ctrl-C stops everything.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeProvider } from '../tests/support/fake-providers.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
const PORT = 8787;
const FAKES = [
  { format: 'openai', name: 'openai', port: 9101 },
  { format: 'anthropic', name: 'anthropic', port: 9102 },
  { format: 'cohere', name: 'cohere', port: 9103 },
];

const args = process.argv.slice(2);
// A fresh admin key per run, for the dashboard and the admin endpoints.
const ADMIN_KEY = `sy_admin_${randomBytes(18).toString('base64url')}`;

if (!args.includes('--no-build')) {
  const b = spawnSync('bash', ['scripts/build.sh'], { cwd: ROOT, stdio: 'inherit' });
  if (b.status !== 0) {
    console.error(`\nstart: the build failed (exit ${b.status ?? b.signal}); nothing started.`);
    process.exit(b.status || 1);
  }
}

const fakes = [];
for (const spec of FAKES) {
  try {
    fakes.push(await startFakeProvider(spec));
  } catch (e) {
    console.error(`start: cannot start the fake ${spec.name} provider on ${HOST}:${spec.port}: ${e.message}`);
    await Promise.all(fakes.map((f) => f.close()));
    process.exit(1);
  }
}
for (const f of fakes) console.log(`start: fake ${f.format} provider "${f.name}" on ${f.origin}`);

// `npx wrangler dev ...`, minus the npx layer: npx does not pass a signal on
// to wrangler, while wrangler's own launcher does (so stop() can end it).
const wrangler = spawn(
  process.execPath,
  [
    path.join(ROOT, 'node_modules/wrangler/bin/wrangler.js'),
    'dev', '--env', 'local', '--ip', HOST, '--port', String(PORT),
    '--test-scheduled', '--persist-to', '.wrangler/state',
    '--var', `ADMIN_KEY:${ADMIN_KEY}`,
  ],
  { cwd: ROOT, stdio: 'inherit' },
);

let stopping = false;
async function stop(code) {
  if (stopping) return;
  stopping = true;
  if (wrangler.exitCode === null && wrangler.signalCode === null) wrangler.kill('SIGINT');
  await Promise.all(fakes.map((f) => f.close()));
  process.exit(code);
}

process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));
wrangler.on('exit', (code, signal) => {
  if (!stopping) {
    console.error(`start: wrangler dev exited (${signal ?? code})`);
    stop(code ?? 1);
  }
});

// Print the banner once the gateway answers. wrangler holds a request until
// the worker is ready, so only one is in flight; a refused connection (not
// listening yet) is retried.
const base = `http://${HOST}:${PORT}`;
(async () => {
  const until = Date.now() + 10 * 60_000;
  while (!stopping && Date.now() < until) {
    try {
      const r = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(5 * 60_000) });
      await r.arrayBuffer();
      if (!stopping) banner();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
})();

function banner() {
  const [oa] = fakes;
  console.log(`
------------------------------------------------------------------------
Switchyard is running on ${base}  (Ctrl-C stops it and the fakes)

Dashboard:  ${base}/dashboard
Admin key:  ${ADMIN_KEY}   (this run's; also for /v1/status, /v1/metrics, /v1/usage)

Try it:
  curl ${base}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"chat","messages":[{"role":"user","content":"Hello"}]}'
  curl ${base}/v1/models
  curl '${base}/__scheduled?cron=*+*+*+*+*'      # fire the cron handler

Switch faults on at a fake provider (openai ${oa.origin}, anthropic :9102, cohere :9103):
  curl -X POST ${oa.origin}/__fake/behaviour -d '{"type":"error","status":503}'
  curl -X POST ${oa.origin}/__fake/behaviour -d '{"type":"hang"}'
  curl -X POST ${oa.origin}/__fake/script -d '[{"type":"error","status":429,"headers":{"retry-after":"1"}}]'
  curl ${oa.origin}/__fake/requests             # what the provider received
  curl -X POST ${oa.origin}/__fake/reset        # healthy again
------------------------------------------------------------------------
`);
}
