// Real agents through the gateway: Codex CLI (OpenAI Responses) and Claude
// Code (Anthropic Messages), both from the npm registry at the versions
// pinned in package.json, each completing a turn against fake providers:
// translated (Codex to an Anthropic upstream, Claude Code to an OpenAI one)
// and in its own format (passed through). Their requests are the real ones
// (tens of KB: every tool, system prompts, namespaces), so the fakes and
// the gateway must take them whole.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { startGateway, isBuilt, ROOT } from '../support/harness.mjs';
import { startFakes, target, makeConfig } from '../support/config.mjs';

if (!isBuilt()) {
  throw new Error('build/worker/shim.mjs is missing: run `npm run build` before the agent tests');
}

const BIN = path.join(ROOT, 'node_modules', '.bin');
const ANSWER = 'SWITCHYARD-AGENT-ANSWER-42';
// Homes for the agents' own state, inside the build folder.
const HOMES = path.join(ROOT, 'build', 'agents');

function run(cmd, args, env) {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { env: { PATH: process.env.PATH, ...env }, timeout: 120_000, cwd: HOMES }, (err, stdout, stderr) =>
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr }),
    );
    child.stdin?.end();
  });
}

async function setup(t) {
  const f = await startFakes({ o: 'openai', a: 'anthropic', r: 'openai' }, { keys: true });
  const { config, secrets } = makeConfig({
    fakes: f,
    routes: {
      // Claude Code asks for its own model names: aliases map them.
      'to-anthropic': { aliases: ['claude-sonnet-*'], targets: [target(f.a)] },
      'to-openai': { aliases: ['claude-haiku-*'], targets: [target(f.o)] },
      'to-responses': { targets: [target(f.r)] },
    },
    policy: { attempt_timeout_ms: 20_000, deadline_ms: 60_000, first_token_timeout_ms: 20_000, stream_idle_timeout_ms: 20_000 },
  });
  config.providers.r.responses = true;
  const gw = await startGateway({ config, secrets });
  for (const fake of Object.values(f)) fake.setDefault({ type: 'ok', text: ANSWER });
  t.after(async () => {
    await gw.dispose();
    await Promise.all(Object.values(f).map((x) => x.close()));
  });
  mkdirSync(HOMES, { recursive: true });
  return { gw, f };
}

function codex(gw, model, home) {
  rmSync(home, { recursive: true, force: true });
  mkdirSync(home, { recursive: true });
  const provider = [
    'model_provider=switchyard',
    'model_providers.switchyard.name="Switchyard"',
    `model_providers.switchyard.base_url="${gw.url}/v1"`,
    'model_providers.switchyard.wire_api="responses"',
    'model_providers.switchyard.env_key="SWITCHYARD_KEY"',
  ].flatMap((c) => ['-c', c]);
  return run(path.join(BIN, 'codex'), ['exec', '--skip-git-repo-check', ...provider, '-m', model, 'Say the answer.'], {
    CODEX_HOME: home,
    HOME: home,
    SWITCHYARD_KEY: 'unused-gateway-key',
  });
}

function claude(gw, model, home) {
  rmSync(home, { recursive: true, force: true });
  mkdirSync(home, { recursive: true });
  return run(path.join(BIN, 'claude'), ['-p', 'Say the answer.', '--model', model], {
    HOME: home,
    ANTHROPIC_BASE_URL: gw.url,
    ANTHROPIC_API_KEY: 'unused-gateway-key',
    ANTHROPIC_DEFAULT_HAIKU_MODEL: model,
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_AUTOUPDATER: '1',
    DISABLE_TELEMETRY: '1',
  });
}

describe('Codex CLI (Responses)', () => {
  test('completes a turn against an Anthropic upstream (translated)', async (t) => {
    const { gw, f } = await setup(t);
    const r = await codex(gw, 'to-anthropic', path.join(HOMES, 'codex-a'));
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes(ANSWER), `codex printed: ${r.stdout}\n${r.stderr}`);
    const sent = f.a.chats.at(-1);
    assert.equal(sent.path, '/v1/messages');
    assert.ok(JSON.stringify(sent.body).length > 10_000, 'the whole agent request went through');
    assert.ok(sent.body.tools.length > 3, 'its tools became Anthropic tools');
    const lines = gw.logs().filter((l) => l?.path === '/v1/responses');
    assert.ok(lines.length >= 1 && lines.every((l) => l.outcome === 'ok'), JSON.stringify(lines));
  });

  test('completes a turn against a Responses upstream (passed through)', async (t) => {
    const { gw, f } = await setup(t);
    const r = await codex(gw, 'to-responses', path.join(HOMES, 'codex-r'));
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes(ANSWER), `codex printed: ${r.stdout}\n${r.stderr}`);
    const sent = f.r.requests.filter((q) => q.kind === 'responses').at(-1);
    assert.ok(sent, 'the Responses upstream was called');
    assert.equal(sent.body.model, 'r-model');
    assert.ok(Array.isArray(sent.body.input));
  });
});

describe('Claude Code (Messages)', () => {
  test('completes a turn against an OpenAI upstream (translated)', async (t) => {
    const { gw, f } = await setup(t);
    const r = await claude(gw, 'claude-haiku-4-5', path.join(HOMES, 'claude-o'));
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes(ANSWER), `claude printed: ${r.stdout}\n${r.stderr}`);
    const sent = f.o.chats.at(-1);
    assert.equal(sent.path, '/v1/chat/completions');
    assert.ok(JSON.stringify(sent.body).length > 10_000, 'the whole agent request went through');
    assert.ok(sent.body.tools.length > 5, 'its tools became OpenAI tools');
  });

  test('completes a turn against an Anthropic upstream (passed through)', async (t) => {
    const { gw, f } = await setup(t);
    const r = await claude(gw, 'claude-sonnet-4-6', path.join(HOMES, 'claude-a'));
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes(ANSWER), `claude printed: ${r.stdout}\n${r.stderr}`);
    const sent = f.a.chats.at(-1);
    assert.equal(sent.body.model, 'a-model');
    assert.ok(sent.headers['anthropic-version'], 'the client version header is passed on');
    assert.ok(Array.isArray(sent.body.system) || typeof sent.body.system === 'string');
  });
});
