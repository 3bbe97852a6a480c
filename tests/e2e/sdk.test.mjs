// The official clients against the gateway: the `openai` npm client's
// Responses, embeddings and models calls, and `@anthropic-ai/sdk`'s
// Messages calls, streaming included, each through a translation (the
// upstream speaks another format) so that the SDK's own parsing proves the
// gateway's shapes.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startGateway, isBuilt } from '../support/harness.mjs';
import { startFakes, target, makeConfig } from '../support/config.mjs';

if (!isBuilt()) {
  throw new Error('build/worker/shim.mjs is missing: run `npm run build` before the e2e tests');
}

const WEATHER = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] };

async function setup(t) {
  const f = await startFakes({ o: 'openai', a: 'anthropic' });
  const { config, secrets } = makeConfig({
    fakes: f,
    routes: {
      'via-anthropic': { targets: [target(f.a)] },
      'via-openai': { targets: [target(f.o)] },
      emb: { targets: [target(f.o, { model: 'text-embedding-3-small', capabilities: ['embeddings'] })] },
    },
    policy: { first_token_timeout_ms: 2000, stream_idle_timeout_ms: 2000 },
  });
  const gw = await startGateway({ config, secrets });
  t.after(async () => {
    await gw.dispose();
    await Promise.all(Object.values(f).map((x) => x.close()));
  });
  const openai = new OpenAI({ apiKey: 'unused', baseURL: `${gw.url}/v1`, maxRetries: 0 });
  const anthropic = new Anthropic({ apiKey: 'unused', baseURL: gw.url, maxRetries: 0 });
  return { f, openai, anthropic };
}

describe('the openai client', () => {
  test('responses.create and responses.stream, served by Anthropic', async (t) => {
    const { f, openai } = await setup(t);
    const r = await openai.responses.create({ model: 'via-anthropic', input: 'Hello', instructions: 'Be brief.', store: false });
    assert.equal(r.output_text, 'Hello from a');
    assert.equal(r.status, 'completed');
    assert.ok(r.usage.input_tokens > 0 && r.usage.output_tokens > 0);
    assert.equal(f.a.chats[0].body.system, 'Be brief.');

    f.a.setDefault({ type: 'stream', text: 'one two three four five', chunks: 5 });
    const stream = openai.responses.stream({ model: 'via-anthropic', input: [{ role: 'user', content: 'Count' }] });
    const deltas = [];
    stream.on('response.output_text.delta', (e) => deltas.push(e.delta));
    const final = await stream.finalResponse();
    // (The SDK sets `output_text` on create's answers only.)
    const message = final.output.find((o) => o.type === 'message');
    assert.equal(message.content[0].text, 'one two three four five');
    assert.equal(deltas.join(''), 'one two three four five');
    assert.ok(deltas.length >= 2, `text arrived in pieces: ${deltas.length}`);
    assert.ok(final.usage.output_tokens > 0);
  });

  test('a function call round trip through responses.create', async (t) => {
    const { f, openai } = await setup(t);
    f.a.script({ type: 'ok', text: '', toolCall: { name: 'get_weather', arguments: { city: 'Oslo' } } }, { type: 'ok', text: 'Sunny in Oslo' });
    const tools = [{ type: 'function', name: 'get_weather', description: 'weather', parameters: WEATHER, strict: true }];
    const r = await openai.responses.create({ model: 'via-anthropic', input: 'Weather in Oslo?', tools });
    const call = r.output.find((o) => o.type === 'function_call');
    assert.equal(call.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.arguments), { city: 'Oslo' });
    const r2 = await openai.responses.create({
      model: 'via-anthropic',
      tools,
      input: [
        { role: 'user', content: 'Weather in Oslo?' },
        call,
        { type: 'function_call_output', call_id: call.call_id, output: '12 C, sunny' },
      ],
    });
    assert.equal(r2.output_text, 'Sunny in Oslo');
    const sent = f.a.chats[1].body.messages;
    assert.equal(sent[1].content[0].type, 'tool_use');
    assert.equal(sent[2].content[0].type, 'tool_result');
    assert.equal(sent[2].content[0].tool_use_id, call.call_id);
  });

  test('embeddings.create and models.retrieve', async (t) => {
    const { openai } = await setup(t);
    const e = await openai.embeddings.create({ model: 'emb', input: ['a', 'b'] });
    assert.equal(e.data.length, 2);
    assert.equal(e.data[0].embedding.length, 8);
    assert.ok(e.usage.prompt_tokens > 0);
    // The SDK asks for base64 by default and decodes it: the same vector either way.
    const f32 = await openai.embeddings.create({ model: 'emb', input: 'a', encoding_format: 'float' });
    const b64 = await openai.embeddings.create({ model: 'emb', input: 'a' });
    assert.deepEqual(b64.data[0].embedding, f32.data[0].embedding);
    const m = await openai.models.retrieve('emb');
    assert.equal(m.id, 'emb');
    await assert.rejects(openai.models.retrieve('nope'), (err) => err.status === 404);
  });
});

describe('the @anthropic-ai/sdk client', () => {
  test('messages.create and messages.stream, served by OpenAI', async (t) => {
    const { anthropic } = await setup(t);
    const m = await anthropic.messages.create({ model: 'via-openai', max_tokens: 100, messages: [{ role: 'user', content: 'Hello' }] });
    assert.equal(m.type, 'message');
    assert.equal(m.content[0].text, 'Hello from o');
    assert.equal(m.stop_reason, 'end_turn');
    assert.ok(m.usage.output_tokens > 0 && m.usage.input_tokens > 0);

    const stream = anthropic.messages.stream({ model: 'via-openai', max_tokens: 100, messages: [{ role: 'user', content: 'Hello' }] });
    const pieces = [];
    stream.on('text', (t) => pieces.push(t));
    const final = await stream.finalMessage();
    assert.equal(final.content[0].text, 'Hello from o');
    assert.equal(pieces.join(''), 'Hello from o');
    assert.ok(final.usage.output_tokens > 0);
  });

  test('a streamed tool call assembles in the SDK, and errors are APIErrors with Anthropic types', async (t) => {
    const { f, anthropic } = await setup(t);
    f.o.setDefault({ type: 'stream', text: '', toolCall: { name: 'get_weather', arguments: { city: 'Oslo' } } });
    const tools = [{ name: 'get_weather', description: 'weather', input_schema: WEATHER }];
    const final = await anthropic.messages
      .stream({ model: 'via-openai', max_tokens: 100, tools, messages: [{ role: 'user', content: 'Weather?' }] })
      .finalMessage();
    const use = final.content.find((b) => b.type === 'tool_use');
    assert.equal(use.name, 'get_weather');
    assert.deepEqual(use.input, { city: 'Oslo' });
    assert.equal(final.stop_reason, 'tool_use');

    await assert.rejects(
      anthropic.messages.create({ model: 'no-such-route', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }),
      (err) => err instanceof Anthropic.NotFoundError && err.error?.error?.type === 'not_found_error',
    );
  });
});
