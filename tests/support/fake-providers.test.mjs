// Checks that the fake providers answer in the shapes recorded in tests/fixtures/.
// Run: node --test tests/support/
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeProvider, parseSse, SPLIT_MODES } from './fake-providers.mjs';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures');
const json = (rel) => JSON.parse(readFileSync(path.join(FIXTURES, rel), 'utf8'));
const text = (rel) => readFileSync(path.join(FIXTURES, rel), 'utf8');

const CHAT = { openai: '/chat/completions', anthropic: '/v1/messages', cohere: '/v2/chat' };

/** Every key of `shape` is in `actual` with the same JSON kind (null in the fixture matches anything). */
function assertShape(actual, shape, at = '$') {
  if (shape === null) return;
  const kind = (v) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
  assert.equal(kind(actual), kind(shape), `${at}: expected ${kind(shape)}, got ${kind(actual)} (${JSON.stringify(actual)})`);
  if (Array.isArray(shape)) {
    // Content arrays mix block types: compare each element with the recorded one of its type.
    for (const [i, a] of shape.length ? actual.entries() : []) {
      const same = shape.find((x) => x && a && typeof x === 'object' && x.type !== undefined && x.type === a.type);
      assertShape(a, same ?? shape[0], `${at}[${i}]`);
    }
  } else if (kind(shape) === 'object') {
    for (const k of Object.keys(shape)) {
      assert.ok(k in actual, `${at}.${k} missing in ${JSON.stringify(actual)}`);
      assertShape(actual[k], shape[k], `${at}.${k}`);
    }
  }
}

/** Event types of an SSE body, runs of the same type collapsed. */
function eventKinds(sse, fmt) {
  const out = [];
  for (const ev of parseSse(sse)) {
    let kind;
    if (fmt === 'openai') {
      if (ev.data === '[DONE]') kind = '[DONE]';
      else {
        const c = JSON.parse(ev.data);
        if (c.choices.length === 0) kind = 'usage';
        else if (c.choices[0].finish_reason) kind = 'finish';
        else if (c.choices[0].delta.role) kind = 'role';
        else kind = 'delta';
      }
    } else kind = ev.event ?? (ev.data === '[DONE]' ? '[DONE]' : 'data');
    if (out[out.length - 1] !== kind) out.push(kind);
  }
  return out;
}

/** The answer text of an SSE body (text deltas of choice 0 only). */
function joinedText(sse, fmt, { field = 'content', choice = 0 } = {}) {
  let out = '';
  for (const ev of parseSse(sse)) {
    if (ev.data === '[DONE]' || ev.data === '') continue;
    let d;
    try {
      d = JSON.parse(ev.data);
    } catch {
      continue;
    }
    if (fmt === 'openai') {
      const c = d.choices?.find((x) => (x.index ?? 0) === choice);
      out += c?.delta?.[field] ?? '';
    }
    if (fmt === 'anthropic' && d.type === 'content_block_delta') out += d.delta[field === 'content' ? 'text' : field] ?? '';
    if (fmt === 'cohere' && d.type === 'content-delta') out += d.delta.message.content[field === 'content' ? 'text' : field] ?? '';
  }
  return out;
}

const fakes = {};
before(async () => {
  for (const format of ['openai', 'anthropic', 'cohere']) {
    fakes[format] = await startFakeProvider({ format, name: `fake-${format}` });
  }
});
after(async () => {
  for (const f of Object.values(fakes)) await f.close();
});

function chatBody(format, extra = {}) {
  const b = { model: `${format}-model-1`, messages: [{ role: 'user', content: 'What is the capital of France?' }], ...extra };
  if (format === 'anthropic') b.max_tokens ??= 256;
  return b;
}

function post(format, body, headers = {}, init = {}) {
  const fake = fakes[format];
  return fetch(fake.baseUrl + CHAT[format], {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...init,
  });
}

/**
 * One request over a raw TCP socket, so a test sees the bytes on the wire:
 * `chunks` are the HTTP/1.1 chunks (one per res.write of the fake), `reads`
 * what each socket read returned, `body` the de-chunked body, `complete`
 * whether the terminating 0-chunk came. With `idleMs`, gives up (and closes
 * the socket) once nothing has arrived for that long.
 */
function rawRequest(fake, { method = 'POST', path: p = fake.format === 'openai' ? '/v1/chat/completions' : CHAT[fake.format], body, headers = {}, idleMs } = {}) {
  const payload = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const s = net.connect(fake.port, '127.0.0.1');
    const reads = [];
    let timer;
    let idled = false;
    let firstReadMs;
    const t0 = performance.now();
    const idle = () => {
      if (!idleMs) return;
      clearTimeout(timer);
      timer = setTimeout(() => {
        idled = true;
        s.destroy();
      }, idleMs);
    };
    s.on('data', (d) => {
      firstReadMs ??= performance.now() - t0;
      reads.push(d);
      idle();
      // The fake keeps the connection alive; stop at the end of the body.
      const all = Buffer.concat(reads);
      if (all.includes('\r\n\r\n') && parseHttp(all, reads).complete) s.destroy();
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      try {
        resolve({ ...parseHttp(Buffer.concat(reads), reads), idled, firstReadMs });
      } catch (e) {
        reject(e);
      }
    });
    const h = { host: 'x', connection: 'close', 'content-type': 'application/json', 'anthropic-version': '2023-06-01', ...headers };
    if (payload) h['content-length'] = Buffer.byteLength(payload);
    const head = `${method} ${p} HTTP/1.1\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
    s.write(head + payload);
    idle();
  });
}

function parseHttp(all, reads) {
  const end = all.indexOf('\r\n\r\n');
  assert.ok(end > 0, `no HTTP head in ${JSON.stringify(all.toString())}`);
  const [statusLine, ...lines] = all.subarray(0, end).toString('latin1').split('\r\n');
  const headers = {};
  for (const l of lines) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
  const status = Number(statusLine.split(' ')[1]);
  let rest = all.subarray(end + 4);
  const chunks = [];
  let complete = false;
  if (headers['transfer-encoding'] === 'chunked') {
    for (;;) {
      const nl = rest.indexOf('\r\n');
      if (nl < 0) break;
      const size = parseInt(rest.subarray(0, nl).toString(), 16);
      if (size === 0) {
        complete = true;
        break;
      }
      if (rest.length < nl + 2 + size + 2) break;
      chunks.push(rest.subarray(nl + 2, nl + 2 + size));
      rest = rest.subarray(nl + 2 + size + 2);
    }
  } else {
    chunks.push(rest);
    complete = headers['content-length'] !== undefined && rest.length === Number(headers['content-length']);
  }
  const body = Buffer.concat(chunks);
  return { status, headers, chunks, reads, body, text: body.toString('utf8'), complete };
}

const TOOLS = {
  openai: [{ type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { location: { type: 'string' } } } } }],
  cohere: [{ type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { location: { type: 'string' } } } } }],
  anthropic: [{ name: 'get_weather', description: 'Weather', input_schema: { type: 'object', properties: { location: { type: 'string' } } } }],
};

describe('ok responses match the recorded shapes', () => {
  const shapes = {
    openai: 'openai/chat_response.json',
    anthropic: 'anthropic/messages_response.json',
    cohere: 'cohere/chat_response.json',
  };
  for (const format of ['openai', 'anthropic', 'cohere']) {
    test(format, async () => {
      const fake = fakes[format];
      fake.reset();
      const r = await post(format, chatBody(format));
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type'), /application\/json/);
      const body = await r.json();
      assertShape(body, json(shapes[format]));
      const textOf = {
        openai: (b) => b.choices[0].message.content,
        anthropic: (b) => b.content.map((c) => c.text).join(''),
        cohere: (b) => b.message.content.map((c) => c.text).join(''),
      }[format];
      assert.equal(textOf(body), `Hello from fake-${format}`);
      if (format !== 'cohere') assert.equal(body.model, `${format}-model-1`);
      const usage = format === 'openai' ? body.usage.prompt_tokens : format === 'anthropic' ? body.usage.input_tokens : body.usage.billed_units.input_tokens;
      assert.ok(usage > 0);
      assert.equal(fake.requests.length, 1);
      const rec = fake.requests[0];
      assert.equal(rec.method, 'POST');
      assert.equal(rec.body.model, `${format}-model-1`);
      assert.equal(typeof rec.at, 'number');
      assert.equal(rec.headers['content-type'], 'application/json');
    });
  }

  test('chunkedBytes: the same answer, chunked, with no content-length', async () => {
    const fake = fakes.openai;
    fake.reset().script({ type: 'ok', text: 'héllo ✓ 日本', chunkedBytes: 3 });
    const r = await post('openai', chatBody('openai'));
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-length'), null);
    assert.equal(r.headers.get('transfer-encoding'), 'chunked');
    const body = await r.json();
    assertShape(body, json(shapes.openai));
    assert.equal(body.choices[0].message.content, 'héllo ✓ 日本');
  });

  const toolShapes = {
    openai: 'openai/chat_response_tool_calls.json',
    anthropic: 'anthropic/messages_response_tool_use.json',
    cohere: 'cohere/chat_response_tool_calls_tool_plan.json',
  };
  for (const format of ['openai', 'anthropic', 'cohere']) {
    test(`${format} tool call`, async () => {
      const fake = fakes[format];
      const args = { location: 'Paris', unit: 'celsius' };
      fake.reset().script({ type: 'ok', text: 'Let me check.', toolCall: { name: 'get_weather', arguments: args } });
      const r = await post(format, chatBody(format, { tools: TOOLS[format] }));
      const body = await r.json();
      assertShape(body, json(toolShapes[format]));
      if (format === 'openai') {
        assert.equal(body.choices[0].finish_reason, 'tool_calls');
        assert.deepEqual(JSON.parse(body.choices[0].message.tool_calls[0].function.arguments), args);
      } else if (format === 'anthropic') {
        assert.equal(body.stop_reason, 'tool_use');
        assert.deepEqual(body.content[1].input, args);
      } else {
        assert.equal(body.finish_reason, 'TOOL_CALL');
        assert.equal(body.message.tool_calls[0].function.name, 'get_weather');
      }
    });
  }

  test('a toolCall without tools in the request is a plain answer', async () => {
    fakes.openai.reset().script({ type: 'ok', toolCall: { name: 'x', arguments: {} } });
    const body = await (await post('openai', chatBody('openai'))).json();
    assert.equal(body.choices[0].finish_reason, 'stop');
  });

  test('models lists are the recorded ones', async () => {
    for (const format of ['openai', 'anthropic', 'cohere']) {
      const r = await fetch(`${fakes[format].origin}/v1/models`);
      assert.deepEqual(await r.json(), json(`${format}/models_list.json`));
    }
  });
});

describe('errors are the recorded bodies', () => {
  const cases = [
    ['openai', 500, 'openai/error_500_server_error.json'],
    ['openai', 503, 'openai/error_503_overloaded.json'],
    ['openai', 429, 'openai/error_429_rate_limit_exceeded.json'],
    ['anthropic', 500, 'anthropic/error_500_api_error.json'],
    ['anthropic', 529, 'anthropic/error_529_overloaded.json'],
    ['anthropic', 429, 'anthropic/error_429_rate_limit.json'],
    ['cohere', 500, 'cohere/error_500_internal.json'],
    ['cohere', 429, 'cohere/error_429_rate_limit.json'],
  ];
  for (const [format, status, rel] of cases) {
    test(`${format} ${status}`, async () => {
      fakes[format].reset().script({ type: 'error', status });
      const r = await post(format, chatBody(format));
      assert.equal(r.status, status);
      assert.deepEqual(await r.json(), json(rel).body);
      assert.equal(r.headers.get('retry-after'), null, 'timing headers only when asked');
    });
  }

  test('retry-after given by the behaviour, other recorded headers kept', async () => {
    fakes.anthropic.reset().script({ type: 'error', status: 429, headers: { 'retry-after': '1' } });
    const r = await post('anthropic', chatBody('anthropic'));
    assert.equal(r.status, 429);
    assert.equal(r.headers.get('retry-after'), '1');
    assert.equal(r.headers.get('x-should-retry'), 'true');
    assert.equal(r.headers.get('anthropic-ratelimit-tokens-remaining'), '0');
  });

  test('statuses without a fixture get the provider envelope', async () => {
    fakes.openai.reset().script({ type: 'error', status: 502 });
    let body = await (await post('openai', chatBody('openai'))).json();
    assert.equal(body.error.type, 'server_error');
    fakes.anthropic.reset().script({ type: 'error', status: 503 });
    body = await (await post('anthropic', chatBody('anthropic'))).json();
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'api_error');
    fakes.cohere.reset().script({ type: 'error', status: 503, body: { message: 'custom' } });
    const r = await post('cohere', chatBody('cohere'));
    assert.equal(r.status, 503);
    assert.deepEqual(await r.json(), { message: 'custom' });
  });

  test('context length', async () => {
    const fx = {
      openai: 'openai/error_400_context_length_exceeded.json',
      anthropic: 'anthropic/error_400_prompt_too_long.json',
      cohere: 'cohere/error_400_too_many_tokens.json',
    };
    for (const format of ['openai', 'anthropic', 'cohere']) {
      fakes[format].reset().script({ type: 'context_length' });
      const r = await post(format, chatBody(format));
      assert.equal(r.status, 400);
      assert.deepEqual(await r.json(), json(fx[format]).body);
    }
  });

  test('content policy', async () => {
    fakes.openai.reset().script({ type: 'content_policy' });
    let b = await (await post('openai', chatBody('openai'))).json();
    assert.equal(b.error.code, 'content_policy_violation');
    assertShape(b, json('openai/error_500_server_error.json').body);
    fakes.anthropic.reset().script({ type: 'content_policy' });
    b = await (await post('anthropic', chatBody('anthropic'))).json();
    assert.equal(b.error.type, 'invalid_request_error');
    assert.match(b.error.message, /content filtering/);
    fakes.cohere.reset().script({ type: 'content_policy' });
    const r = await post('cohere', chatBody('cohere'));
    assert.equal(r.status, 400);
    assert.match((await r.json()).message, /blocked/);
  });

  test('a key is checked with the provider auth header and 401 body', async () => {
    const fx = {
      openai: 'openai/error_401_invalid_api_key.json',
      anthropic: 'anthropic/error_401_authentication.json',
      cohere: 'cohere/error_401_unauthorized.json',
    };
    for (const format of ['openai', 'anthropic', 'cohere']) {
      const fake = await startFakeProvider({ format, key: 'sk-test' });
      try {
        const url = fake.baseUrl + CHAT[format];
        const headers = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' };
        const body = JSON.stringify(chatBody(format));
        let r = await fetch(url, { method: 'POST', headers, body });
        assert.equal(r.status, 401);
        assert.deepEqual(await r.json(), json(fx[format]).body);
        const auth = format === 'anthropic' ? { 'x-api-key': 'sk-test' } : { authorization: 'Bearer sk-test' };
        r = await fetch(url, { method: 'POST', headers: { ...headers, ...auth }, body });
        assert.equal(r.status, 200);
        await r.json();
      } finally {
        await fake.close();
      }
    }
  });

  test('requests the real API would refuse get its 400', async () => {
    fakes.anthropic.reset();
    let r = await post('anthropic', { model: 'm', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(r.status, 400);
    assert.match((await r.json()).error.message, /max_tokens/);
    r = await post('anthropic', chatBody('anthropic'), { 'anthropic-version': '' });
    assert.equal(r.status, 400);
    r = await post('anthropic', chatBody('anthropic', { messages: [{ role: 'system', content: 'x' }, { role: 'user', content: 'y' }] }));
    assert.equal(r.status, 400);
    r = await post('openai', { messages: [] });
    assert.equal(r.status, 400);
  });
});

describe('streams follow the recorded event order', () => {
  const fx = {
    openai: 'openai/chat_stream_text_usage.sse',
    anthropic: 'anthropic/stream_text.sse',
    cohere: 'cohere/chat_stream_text.sse',
  };
  for (const format of ['openai', 'anthropic', 'cohere']) {
    test(format, async () => {
      fakes[format].reset().script({ type: 'ok', text: 'One two three four', chunks: 3 });
      const extra = format === 'openai' ? { stream: true, stream_options: { include_usage: true } } : { stream: true };
      const r = await post(format, chatBody(format, extra));
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type'), /text\/event-stream/);
      const sse = await r.text();
      assert.deepEqual(eventKinds(sse, format), eventKinds(text(fx[format]), format));
      const events = parseSse(sse);
      // Each data line (but [DONE]) is JSON, and the fixture's event shapes hold.
      const recorded = parseSse(text(fx[format]));
      for (const ev of events) {
        if (ev.data === '[DONE]') continue;
        const d = JSON.parse(ev.data);
        if (format !== 'openai') {
          assert.equal(d.type, ev.event);
          const same = recorded.find((x) => x.event === ev.event);
          if (same && ev.event !== 'ping') assertShape(d, JSON.parse(same.data));
        }
      }
      let joined = '';
      for (const ev of events) {
        if (ev.data === '[DONE]') continue;
        const d = JSON.parse(ev.data);
        if (format === 'openai') joined += d.choices[0]?.delta?.content ?? '';
        if (format === 'anthropic' && d.type === 'content_block_delta') joined += d.delta.text;
        if (format === 'cohere' && d.type === 'content-delta') joined += d.delta.message.content.text;
      }
      assert.equal(joined, 'One two three four');
    });
  }

  test('openai without include_usage has no usage chunk', async () => {
    fakes.openai.reset();
    const sse = await (await post('openai', chatBody('openai', { stream: true }))).text();
    assert.deepEqual(eventKinds(sse, 'openai'), ['role', 'delta', 'finish', '[DONE]']);
  });

  const toolFx = {
    openai: 'openai/chat_stream_tool_calls.sse',
    anthropic: 'anthropic/stream_sdk_tool_use.sse',
    cohere: 'cohere/chat_stream_tool_calls.sse',
  };
  for (const format of ['openai', 'anthropic', 'cohere']) {
    test(`${format} tool-call stream`, async () => {
      fakes[format].reset().script({ type: 'ok', text: 'I will check.', toolCall: { name: 'get_weather', arguments: { location: 'Paris' } } });
      const extra = format === 'openai' ? { stream: true, stream_options: { include_usage: true } } : { stream: true };
      const sse = await (await post(format, chatBody(format, { ...extra, tools: TOOLS[format] }))).text();
      const kinds = eventKinds(sse, format);
      const want = eventKinds(text(toolFx[format]), format);
      if (format === 'openai') {
        // The recorded tool stream's first chunk carries the role and the tool call.
        assert.deepEqual(kinds, want);
      } else {
        // Same events in the same order (our fake sends one tool call).
        const dedupe = (k) => k.filter((x, i) => k.indexOf(x) === i);
        assert.deepEqual(dedupe(kinds), dedupe(want));
      }
      let args = '';
      for (const ev of parseSse(sse)) {
        if (ev.data === '[DONE]') continue;
        const d = JSON.parse(ev.data);
        if (format === 'openai') args += d.choices[0]?.delta?.tool_calls?.[0]?.function?.arguments ?? '';
        if (format === 'anthropic' && d.delta?.type === 'input_json_delta') args += d.delta.partial_json;
        if (format === 'cohere' && d.type === 'tool-call-delta') args += d.delta.message.tool_calls.function.arguments;
      }
      assert.deepEqual(JSON.parse(args), { location: 'Paris' });
    });
  }
});

describe('faults', () => {
  test('script is consumed in order, then the default applies', async () => {
    const f = fakes.openai.reset();
    f.script({ type: 'error', status: 500 }, { type: 'error', status: 503 });
    f.setDefault({ type: 'error', status: 429 });
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await post('openai', chatBody('openai'))).status);
    assert.deepEqual(statuses, [500, 503, 429, 429]);
    f.reset();
    assert.equal((await post('openai', chatBody('openai'))).status, 200);
    assert.equal(f.chats.length, 1);
  });

  test('hang answers nothing until the client gives up', async () => {
    const f = fakes.cohere.reset().script({ type: 'hang' });
    const t0 = performance.now();
    await assert.rejects(post('cohere', chatBody('cohere'), {}, { signal: AbortSignal.timeout(150) }));
    assert.ok(performance.now() - t0 >= 140);
    assert.equal(f.requests.length, 1);
  });

  test('reset destroys the connection', async () => {
    fakes.anthropic.reset().script({ type: 'reset' });
    await assert.rejects(post('anthropic', chatBody('anthropic')), (e) => e.cause?.code === 'UND_ERR_SOCKET' || /fetch failed/.test(e.message));
  });

  test('malformed is a 200 with truncated JSON', async () => {
    fakes.openai.reset().script({ type: 'malformed' });
    const r = await post('openai', chatBody('openai'));
    assert.equal(r.status, 200);
    const t = await r.text();
    assert.ok(t.startsWith('{"id":"chatcmpl-'));
    assert.throws(() => JSON.parse(t));
  });

  test('delayMs delays the answer', async () => {
    fakes.openai.reset().script({ type: 'ok', delayMs: 120 });
    const t0 = performance.now();
    assert.equal((await post('openai', chatBody('openai'))).status, 200);
    assert.ok(performance.now() - t0 >= 110);
  });

  test('stream cutAfter ends the connection mid-stream', async () => {
    fakes.openai.reset().script({ type: 'stream', chunks: 4, cutAfter: 2 });
    const r = await post('openai', chatBody('openai', { stream: true }));
    assert.equal(r.status, 200);
    await assert.rejects(r.text());
  });

  test('stream cutAfter delivers the N deltas, then cuts without a terminator', async () => {
    for (const format of ['openai', 'anthropic', 'cohere']) {
      fakes[format].reset().script({ type: 'stream', text: 'one two three four', cutAfter: 2 });
      const r = await rawRequest(fakes[format], { body: chatBody(format, { stream: true }) });
      assert.equal(r.status, 200);
      assert.equal(r.complete, false, 'no end of the chunked body');
      assert.equal(joinedText(r.text, format), 'one two', format);
      assert.ok(!r.text.includes('[DONE]') && !r.text.includes('message_stop'));
    }
  });

  test('stream noDone leaves out the terminator', async () => {
    for (const format of ['openai', 'anthropic', 'cohere']) {
      fakes[format].reset().script({ type: 'stream', noDone: true });
      const sse = await (await post(format, chatBody(format, { stream: true }))).text();
      assert.ok(!sse.includes('[DONE]') && !sse.includes('message_stop'), sse);
      assert.ok(sse.length > 0);
    }
  });

  test('stream errorEventAfter sends the provider error event', async () => {
    fakes.anthropic.reset().script({ type: 'stream', chunks: 3, errorEventAfter: 1 });
    const sse = await (await post('anthropic', chatBody('anthropic', { stream: true }))).text();
    const ev = parseSse(sse);
    assert.equal(ev.filter((e) => e.event === 'content_block_delta').length, 1);
    assert.equal(ev.at(-1).event, 'error');
    assert.equal(JSON.parse(ev.at(-1).data).error.type, 'overloaded_error');
  });

  test('stream malformedAt breaks one event', async () => {
    fakes.cohere.reset().script({ type: 'stream', chunks: 3, malformedAt: 1 });
    const sse = await (await post('cohere', chatBody('cohere', { stream: true }))).text();
    const bad = parseSse(sse).filter((e) => {
      if (e.data === '[DONE]') return false;
      try {
        JSON.parse(e.data);
        return false;
      } catch {
        return true;
      }
    });
    assert.equal(bad.length, 1);
  });

  test('stream stallAfter stops after N deltas and keeps the connection open', async () => {
    fakes.openai.reset().script({ type: 'stream', chunks: 4, stallAfter: 1, firstByteDelayMs: 20 });
    const r = await post('openai', chatBody('openai', { stream: true }), {}, { signal: AbortSignal.timeout(300) });
    const reader = r.body.getReader();
    let got = '';
    await assert.rejects(async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        got += Buffer.from(value).toString();
      }
    });
    assert.equal(eventKinds(got, 'openai').join(','), 'role,delta');
  });
});

describe('outage', () => {
  test('setOutage applies to chat and models alike, ahead of the script, until cleared', async () => {
    const f = fakes.anthropic.reset();
    f.script({ type: 'ok', text: 'scripted' });
    f.setOutage({ type: 'error', status: 529 });
    let r = await fetch(`${f.origin}/v1/models`);
    assert.equal(r.status, 529);
    assert.deepEqual(await r.json(), json('anthropic/error_529_overloaded.json').body);
    r = await post('anthropic', chatBody('anthropic'));
    assert.equal(r.status, 529);
    await r.text();
    f.setOutage(null);
    r = await fetch(`${f.origin}/v1/models`);
    assert.deepEqual(await r.json(), json('anthropic/models_list.json'));
    const body = await (await post('anthropic', chatBody('anthropic'))).json();
    assert.equal(body.content[0].text, 'scripted', 'the script waited out the outage');
    assert.deepEqual(f.requests.map((x) => x.kind), ['models', 'chat', 'models', 'chat']);
  });

  test('a hanging outage holds the models listing too; close() ends it', async () => {
    const f = await startFakeProvider({ format: 'openai' });
    f.setOutage({ type: 'hang' });
    await assert.rejects(fetch(`${f.baseUrl}/models`, { signal: AbortSignal.timeout(100) }));
    const pending = fetch(`${f.baseUrl}/models`).catch((e) => e);
    await new Promise((r) => setTimeout(r, 50));
    await f.close();
    assert.ok((await pending) instanceof Error);
  });

  test('POST /__fake/outage sets and clears it', async () => {
    const f = fakes.cohere.reset();
    const set = (b) => fetch(`${f.origin}/__fake/outage`, { method: 'POST', body: JSON.stringify(b) }).then((r) => r.json());
    await set({ type: 'error', status: 500 });
    assert.equal((await fetch(`${f.origin}/v1/models`)).status, 500);
    await set(null);
    assert.equal((await fetch(`${f.origin}/v1/models`)).status, 200);
  });
});

describe('admin API', () => {
  test('behaviour, script, requests, reset', async () => {
    const f = fakes.cohere.reset();
    const admin = (p, body) =>
      fetch(`${f.origin}/__fake/${p}`, body === undefined ? {} : { method: 'POST', body: JSON.stringify(body) }).then((r) => r.json());
    await admin('behaviour', { type: 'error', status: 503 });
    assert.equal((await post('cohere', chatBody('cohere'))).status, 503);
    await admin('script', [{ type: 'ok' }]);
    assert.equal((await post('cohere', chatBody('cohere'))).status, 200);
    assert.equal((await post('cohere', chatBody('cohere'))).status, 503);
    const reqs = await admin('requests');
    assert.equal(reqs.count, 3);
    assert.equal(reqs.last.length, 3);
    await admin('reset', {});
    assert.equal((await post('cohere', chatBody('cohere'))).status, 200);
    assert.equal(f.requests.length, 1, 'admin calls are not recorded');
  });
});

describe('split: bytes as networks deliver them', () => {
  const TEXT = 'one two three four five six seven eight nine ten eleven twelve';
  const streamBody = (format) => chatBody(format, format === 'openai' ? { stream: true, stream_options: { include_usage: true } } : { stream: true });
  /** The body with the random ids and times replaced, for comparing two streams. */
  const normalise = (s) =>
    s
      .replace(/chatcmpl-[A-Za-z0-9]+/g, 'ID')
      .replace(/"created":\d+/g, '"created":0')
      .replace(/fp_[0-9a-f]+/g, 'FP')
      .replace(/(msg|toolu)_[A-Za-z0-9]+/g, 'ID')
      .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, 'UUID');
  const eventsIn = (buf) => buf.toString('latin1').split('\n\n').length - 1;

  const SPLIT_SEED = 1;
  for (const format of ['openai', 'anthropic', 'cohere']) {
    test(`${format}: every mode carries the same bytes, cut as the mode says`, async () => {
      const fake = fakes[format].reset();
      fake.script({ type: 'ok', text: TEXT });
      const ref = await rawRequest(fake, { body: streamBody(format) });
      assert.ok(ref.complete);
      // event: one write per event, exactly the events.
      for (const c of ref.chunks) assert.equal(eventsIn(c), 1, JSON.stringify(c.toString()));
      assert.ok(ref.chunks.every((c) => c.toString().endsWith('\n\n')));
      for (const mode of ['bytes', 'coalesce', 'mixed']) {
        // A fixed seed: with random cuts, a short stream's mixed writes could
        // by chance hold no tiny one (a quarter of the writes are tiny).
        fake.script({ type: 'ok', text: TEXT, split: mode, splitSeed: SPLIT_SEED });
        const r = await rawRequest(fake, { body: streamBody(format) });
        assert.equal(r.status, 200);
        assert.ok(r.complete, `${mode}: the body ends properly`);
        assert.equal(normalise(r.text), normalise(ref.text), `${mode}: same bytes overall`);
        assert.equal(joinedText(r.text, format), TEXT);
        const sizes = r.chunks.map((c) => c.length);
        if (mode === 'bytes') {
          assert.ok(sizes.every((n) => n >= 1 && n <= 7), `bytes: writes of 1-7 bytes, got ${sizes}`);
          assert.ok(r.chunks.length >= ref.text.length / 7);
        }
        if (mode === 'coalesce') {
          assert.ok(r.chunks.every((c) => c.toString().endsWith('\n\n')), 'coalesce: whole events');
          const counts = r.chunks.map(eventsIn);
          assert.ok(counts.slice(0, -1).every((n) => n >= 2 && n <= 4), `coalesce: 2-4 events per write, got ${counts}`);
          assert.ok(counts.at(-1) >= 1 && counts.at(-1) <= 4);
        }
        if (mode === 'mixed') {
          assert.ok(sizes.some((n) => n <= 7), 'mixed: some tiny writes');
          assert.ok(r.chunks.some((c) => eventsIn(c) >= 2), 'mixed: some writes of several events');
          assert.ok(r.chunks.some((c) => !c.toString().endsWith('\n\n')), 'mixed: some writes end inside an event');
        }
      }
    });
  }

  test('bytes cut UTF-8 characters, data: prefixes and line ends, and the client reassembles the text', async () => {
    const words = 'héllo ✓ 日本語 🎉 ';
    const TEXT_U = words.repeat(6).trim();
    for (const format of ['openai', 'anthropic', 'cohere']) {
      const fake = fakes[format].reset();
      // A seed whose cuts land inside a character, a data: prefix and an
      // event end in every format (random cuts may miss one of them).
      fake.script({ type: 'ok', text: TEXT_U, split: 'bytes', splitSeed: 1 });
      const r = await rawRequest(fake, { body: chatBody(format, { stream: true }) });
      assert.ok(r.complete);
      assert.ok(r.chunks.some((c) => c[0] >= 0x80 && c[0] <= 0xbf), 'a write starts inside a UTF-8 sequence');
      const cutInside = (s) => r.chunks.some((c, i) => i + 1 < r.chunks.length && Buffer.concat([c, r.chunks[i + 1]]).includes(s) && !c.includes(s) && !r.chunks[i + 1].includes(s));
      assert.ok(cutInside('data:'), 'a data: prefix is cut');
      assert.ok(cutInside('\n\n'), 'an event end is cut');
      // A streaming decoder fed write by write gets the same text back.
      const dec = new TextDecoder();
      let s = '';
      for (const c of r.chunks) s += dec.decode(c, { stream: true });
      s += dec.decode();
      assert.equal(s, r.text);
      assert.equal(joinedText(s, format), TEXT_U, format);
      // So does fetch.
      fake.script({ type: 'ok', text: TEXT_U, split: 'bytes' });
      const viaFetch = await (await post(format, chatBody(format, { stream: true }))).text();
      assert.equal(joinedText(viaFetch, format), TEXT_U);
    }
  });

  test('eol crlf: CRLF line ends, cut between CR and LF in bytes mode', async () => {
    const fake = fakes.openai.reset();
    fake.script({ type: 'ok', text: TEXT, eol: 'crlf', split: 'bytes' });
    const r = await rawRequest(fake, { body: chatBody('openai', { stream: true }) });
    assert.ok(!/[^\r]\n/.test(r.text), 'every LF follows a CR');
    assert.ok(r.text.endsWith('data: [DONE]\r\n\r\n'));
    assert.ok(r.chunks.some((c, i) => c.at(-1) === 0x0d && r.chunks[i + 1]?.[0] === 0x0a), 'a CRLF is cut');
    assert.equal(joinedText(r.text, 'openai'), TEXT);
    fake.script({ type: 'ok', text: 'a b', eol: 'cr' });
    const cr = await rawRequest(fake, { body: chatBody('openai', { stream: true }) });
    assert.ok(!cr.text.includes('\n') && cr.text.endsWith('data: [DONE]\r\r'));
    assert.equal(joinedText(cr.text, 'openai'), 'a b');
  });

  test('splitDelayMs puts each write in its own TCP segment; splitSeed replays a split', async () => {
    const fake = fakes.anthropic.reset();
    fake.script({ type: 'ok', text: 'one two three', split: 'bytes', splitDelayMs: 0 });
    const r = await rawRequest(fake, { body: chatBody('anthropic', { stream: true }) });
    assert.ok(r.complete);
    // The head is one read; then (nearly) one read per write.
    assert.ok(r.reads.length >= r.chunks.length * 0.8, `${r.reads.length} reads for ${r.chunks.length} writes`);
    fake.script({ type: 'ok', text: 'one two three', split: 'mixed', splitSeed: 7 }, { type: 'ok', text: 'one two three', split: 'mixed', splitSeed: 7 });
    const a = await rawRequest(fake, { body: chatBody('anthropic', { stream: true }) });
    const b = await rawRequest(fake, { body: chatBody('anthropic', { stream: true }) });
    assert.deepEqual(a.chunks.map((c) => c.length), b.chunks.map((c) => c.length));
  });

  test('splitDelayMs paces the writes', async () => {
    const fake = fakes.cohere.reset();
    fake.script({ type: 'ok', text: 'one two', split: 'coalesce', splitDelayMs: 15 });
    const t0 = performance.now();
    const r = await rawRequest(fake, { body: chatBody('cohere', { stream: true }) });
    assert.ok(r.complete);
    assert.ok(performance.now() - t0 >= 15 * (r.chunks.length - 1) - 5, `${r.chunks.length} writes`);
  });

  test('setSplit, the split option and reset', async () => {
    const fake = await startFakeProvider({ format: 'openai', split: 'bytes' });
    try {
      const sizes = async (b) => (await rawRequest(fake, { body: chatBody('openai', { stream: true }) })).chunks.map((c) => c.length);
      assert.ok((await sizes()).every((n) => n <= 7), 'the provider-wide default');
      fake.setSplit('event');
      assert.ok((await sizes()).every((n) => n > 7));
      fake.script({ type: 'ok', split: 'bytes' });
      assert.ok((await sizes()).every((n) => n <= 7), "a behaviour's own split wins");
      fake.setSplit('coalesce');
      assert.equal(fake.split, 'coalesce');
      fake.reset();
      assert.equal(fake.split, 'bytes', 'reset goes back to the start option');
      assert.throws(() => fake.setSplit('words'), /unknown split mode/);
      await assert.rejects(startFakeProvider({ format: 'openai', split: 'nope' }), /unknown split mode/);
      fake.script({ type: 'stream', split: 'nope' });
      const bad = await fetch(fake.baseUrl + '/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(chatBody('openai', { stream: true })) });
      assert.equal(bad.status, 500);
      assert.match((await bad.json()).error.message, /unknown split mode nope/);
      const viaAdmin = await fetch(`${fake.origin}/__fake/split`, { method: 'POST', body: '"mixed"' });
      assert.equal((await viaAdmin.json()).split, 'mixed');
      assert.equal((await fetch(`${fake.origin}/__fake/split`, { method: 'POST', body: '"x"' })).status, 400);
    } finally {
      await fake.close();
    }
  });

  // Every stream fault, in every split mode and format.
  const FAULTS = {
    cutAfter: (r, format) => {
      assert.equal(r.complete, false);
      assert.equal(joinedText(r.text, format), 'one two');
      assert.ok(!hasTerminator(r.text, format));
    },
    stallAfter: (r, format) => {
      assert.ok(r.idled, 'the connection stayed open');
      assert.equal(r.complete, false);
      assert.equal(joinedText(r.text, format), 'one two');
    },
    malformedAt: (r, format) => {
      assert.ok(r.complete);
      const bad = parseSse(r.text).filter((e) => e.data !== '[DONE]' && !isJson(e.data));
      assert.equal(bad.length, 1);
      assert.ok(hasTerminator(r.text, format));
    },
    errorEventAfter: (r, format) => {
      assert.ok(r.complete);
      const evs = parseSse(r.text);
      const last = evs.filter((e) => e.data !== '[DONE]').at(-1);
      const d = JSON.parse(last.data);
      if (format === 'openai') assert.equal(d.error.type, 'server_error');
      if (format === 'anthropic') assert.equal(last.event, 'error');
      if (format === 'cohere') assert.equal(d.delta.finish_reason, 'ERROR');
      assert.equal(joinedText(r.text, format), 'one two');
    },
    noDone: (r, format) => {
      assert.ok(r.complete);
      assert.ok(!hasTerminator(r.text, format));
      assert.equal(joinedText(r.text, format), 'one two three four five six');
    },
    firstByteDelayMs: (r, format) => {
      assert.ok(r.firstReadMs >= 25, `first byte after ${r.firstReadMs} ms`);
      assert.ok(hasTerminator(r.text, format));
    },
  };
  const faultValue = { cutAfter: 2, stallAfter: 2, malformedAt: 1, errorEventAfter: 2, noDone: true, firstByteDelayMs: 30 };
  for (const format of ['openai', 'anthropic', 'cohere']) {
    for (const mode of SPLIT_MODES) {
      test(`${format} faults with split ${mode}`, async () => {
        const fake = fakes[format].reset();
        for (const [fault, check] of Object.entries(FAULTS)) {
          fake.script({ type: 'stream', text: 'one two three four five six', split: mode, [fault]: faultValue[fault] });
          const r = await rawRequest(fake, { body: chatBody(format, { stream: true }), idleMs: fault === 'stallAfter' ? 60 : undefined });
          assert.equal(r.status, 200);
          try {
            check(r, format);
          } catch (e) {
            e.message = `${fault}: ${e.message}`;
            throw e;
          }
        }
      });
    }
  }
});

function isJson(s) {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
}

function hasTerminator(sse, format) {
  return format === 'anthropic' ? /event: message_stop/.test(sse) : /data: \[DONE\]/.test(sse);
}

/** Reads an SSE response as it arrives: [{ at, event?, data }] with the time each event came. */
async function readTimed(r) {
  const out = [];
  const dec = new TextDecoder();
  let buf = '';
  for await (const v of r.body) {
    buf += dec.decode(v, { stream: true });
    const at = performance.now();
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      for (const ev of parseSse(buf.slice(0, i + 2))) out.push({ at, ...ev });
      buf = buf.slice(i + 2);
    }
  }
  return out;
}

describe('reasoning', () => {
  const REASONING = 'The user asks for 2+2. That is 4.';
  const ANSWER = 'The answer is 4.';
  const deltaKind = (c) => {
    const d = c.choices[0]?.delta;
    if (!d) return 'usage';
    if (c.choices[0].finish_reason) return 'finish';
    if (d.role) return 'role';
    return typeof d.content === 'string' ? 'content' : 'reasoning';
  };

  test('openai stream: reasoning_content chunks before the content, shaped as the DeepSeek recording', async () => {
    fakes.openai.reset().script({ type: 'ok', text: ANSWER, reasoning: REASONING });
    const r = await rawRequest(fakes.openai, { body: chatBody('openai', { stream: true }) });
    assert.ok(r.text.startsWith(': keep-alive\n\n'), 'a keep-alive comment first');
    const ours = parseSse(r.text).filter((e) => e.data !== '[DONE]').map((e) => JSON.parse(e.data));
    const recorded = parseSse(text('openai/chat_stream_reasoning_content_deepseek.sse'))
      .filter((e) => e.data !== '[DONE]')
      .map((e) => JSON.parse(e.data));
    const kinds = (list) => list.map(deltaKind).filter((k, i, a) => a[i - 1] !== k);
    assert.deepEqual(kinds(ours), kinds(recorded));
    // Each kind of delta has the recorded keys, with null where the recording has null.
    for (const kind of ['role', 'reasoning', 'content', 'finish']) {
      const want = recorded.find((c) => deltaKind(c) === kind).choices[0].delta;
      for (const c of ours.filter((x) => deltaKind(x) === kind)) {
        const d = c.choices[0].delta;
        assert.deepEqual(Object.keys(d).sort(), Object.keys(want).sort(), kind);
        for (const k of Object.keys(want)) assert.equal(d[k] === null, want[k] === null, `${kind}.${k} null-ness`);
      }
    }
    assert.equal(joinedText(r.text, 'openai', { field: 'reasoning_content' }), REASONING);
    assert.equal(joinedText(r.text, 'openai'), ANSWER);
  });

  test('openai reasoningField: reasoning (vLLM), and a whole answer with message.reasoning_content', async () => {
    fakes.openai.reset().script({ type: 'ok', text: ANSWER, reasoning: REASONING, reasoningField: 'reasoning', split: 'bytes' });
    const sse = await (await post('openai', chatBody('openai', { stream: true, stream_options: { include_usage: true } }))).text();
    assert.ok(!sse.includes('reasoning_content'));
    assert.equal(joinedText(sse, 'openai', { field: 'reasoning' }), REASONING);
    assert.equal(joinedText(sse, 'openai'), ANSWER);
    const usage = JSON.parse(parseSse(sse).at(-2).data).usage;
    assert.ok(usage.completion_tokens_details.reasoning_tokens > 0);
    fakes.openai.script({ type: 'ok', text: ANSWER, reasoning: REASONING });
    const body = await (await post('openai', chatBody('openai'))).json();
    assert.equal(body.choices[0].message.reasoning_content, REASONING);
    assert.equal(body.choices[0].message.content, ANSWER);
    assert.ok(body.usage.completion_tokens_details.reasoning_tokens > 0);
    assert.ok(body.usage.completion_tokens > body.usage.completion_tokens_details.reasoning_tokens, 'completion tokens include the reasoning');
    fakes.openai.script({ type: 'ok', reasoning: REASONING, reasoningField: 'reasoning' }, { type: 'ok', reasoning: 'x', reasoningField: 'thoughts' });
    assert.equal((await (await post('openai', chatBody('openai'))).json()).choices[0].message.reasoning, REASONING);
    assert.equal((await post('openai', chatBody('openai'))).status, 500, 'an unknown reasoningField is the test’s mistake');
  });

  test('anthropic stream: a thinking block with a signature, then the text at index 1, as recorded', async () => {
    fakes.anthropic.reset().script({ type: 'ok', text: ANSWER, reasoning: REASONING });
    const sse = await (await post('anthropic', chatBody('anthropic', { stream: true }))).text();
    const recordedSse = text('anthropic/stream_thinking.sse');
    assert.deepEqual(eventKinds(sse, 'anthropic'), eventKinds(recordedSse, 'anthropic'));
    const ours = parseSse(sse).map((e) => ({ event: e.event, d: JSON.parse(e.data) }));
    const recorded = parseSse(recordedSse).map((e) => ({ event: e.event, d: JSON.parse(e.data) }));
    const sub = (x) => x.d.delta?.type ?? x.d.content_block?.type ?? '';
    for (const x of ours) {
      assert.equal(x.d.type, x.event);
      const same = recorded.find((y) => y.event === x.event && sub(y) === sub(x));
      assert.ok(same, `${x.event}/${sub(x)} is in the recording`);
      if (x.event !== 'message_delta') assertShape(x.d, same.d);
    }
    const start = ours.find((x) => x.event === 'content_block_start');
    assert.deepEqual(start.d, { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } });
    const block0 = ours.filter((x) => x.d.index === 0 && x.event === 'content_block_delta').map(sub);
    assert.deepEqual(block0.slice(-2), ['thinking_delta', 'signature_delta'], 'one signature_delta, last');
    assert.equal(block0.filter((s) => s === 'signature_delta').length, 1);
    assert.ok(ours.find((x) => x.d.delta?.type === 'signature_delta').d.delta.signature.length > 100);
    assert.equal(ours.find((x) => x.d.content_block?.type === 'text').d.index, 1);
    assert.equal(joinedText(sse, 'anthropic', { field: 'thinking' }), REASONING);
    assert.equal(joinedText(sse, 'anthropic'), ANSWER);
  });

  test('anthropic whole answer: a thinking block with a signature before the text', async () => {
    fakes.anthropic.reset().script({ type: 'ok', text: ANSWER, reasoning: REASONING });
    const body = await (await post('anthropic', chatBody('anthropic'))).json();
    assert.deepEqual(body.content.map((b) => b.type), ['thinking', 'text']);
    assert.equal(body.content[0].thinking, REASONING);
    assert.match(body.content[0].signature, /^[A-Za-z0-9+/]{100,}={0,2}$/);
    assert.equal(body.content[1].text, ANSWER);
  });

  test('cohere: thinking content before the text, streamed and whole', async () => {
    fakes.cohere.reset().script({ type: 'ok', text: ANSWER, reasoning: REASONING });
    const sse = await (await post('cohere', chatBody('cohere', { stream: true }))).text();
    const evs = parseSse(sse).filter((e) => e.data !== '[DONE]').map((e) => JSON.parse(e.data));
    const starts = evs.filter((e) => e.type === 'content-start');
    assert.deepEqual(starts.map((e) => [e.index, e.delta.message.content.type]), [[0, 'thinking'], [1, 'text']]);
    assert.deepEqual(starts[0].delta.message.content, { type: 'thinking', thinking: '' });
    const kinds = evs.map((e) => `${e.type}${e.index ?? ''}`).filter((k, i, a) => a[i - 1] !== k);
    assert.deepEqual(kinds, ['message-start', 'content-start0', 'content-delta0', 'content-end0', 'content-start1', 'content-delta1', 'content-end1', 'message-end']);
    assert.equal(joinedText(sse, 'cohere', { field: 'thinking' }), REASONING);
    assert.equal(joinedText(sse, 'cohere'), ANSWER);
    assert.ok(sse.endsWith('data: [DONE]\n\n'));
    fakes.cohere.script({ type: 'ok', text: ANSWER, reasoning: REASONING });
    const body = await (await post('cohere', chatBody('cohere'))).json();
    assert.deepEqual(body.message.content, [{ type: 'thinking', thinking: REASONING }, { type: 'text', text: ANSWER }]);
    assertShape(body.message.content[0], json('cohere/chat_response_tool_calls.json').message.content[0]);
  });

  test('reasoningDelayMs makes the thinking long, streamed and whole', async () => {
    fakes.anthropic.reset().script({ type: 'stream', text: 'one two', reasoning: 'a b c', reasoningDelayMs: 40, split: 'coalesce' });
    const evs = await readTimed(await post('anthropic', chatBody('anthropic', { stream: true })));
    const thinking = evs.filter((e) => e.data.includes('"thinking_delta"') && !e.data.includes('"thinking":""'));
    const firstText = evs.find((e) => e.data.includes('"text_delta"'));
    assert.equal(thinking.length, 3);
    assert.ok(thinking[2].at - thinking[0].at >= 70, 'the pieces come apart');
    assert.ok(firstText.at - thinking[0].at >= 110, `the answer after the thinking (${firstText.at - thinking[0].at} ms)`);
    fakes.openai.reset().script({ type: 'ok', reasoning: 'a b c', reasoningDelayMs: 40 });
    const t0 = performance.now();
    await (await post('openai', chatBody('openai'))).json();
    assert.ok(performance.now() - t0 >= 110);
  });

  test('faults count the answer, not the reasoning', async () => {
    fakes.openai.reset().script({ type: 'stream', text: 'one two three', reasoning: 'think think', cutAfter: 1, split: 'mixed' });
    const r = await rawRequest(fakes.openai, { body: chatBody('openai', { stream: true }) });
    assert.equal(r.complete, false);
    assert.equal(joinedText(r.text, 'openai', { field: 'reasoning_content' }), 'think think');
    assert.equal(joinedText(r.text, 'openai'), 'one');
  });
});

describe('n > 1 (OpenAI)', () => {
  test('a stream interleaves the choices, each with its own text and finish, choice 0 first', async () => {
    fakes.openai.reset().script({ type: 'ok', text: 'Paris is the capital', finishGapMs: 60 });
    const evs = await readTimed(await post('openai', chatBody('openai', { n: 2, stream: true, stream_options: { include_usage: true } })));
    const chunks = evs.filter((e) => e.data !== '[DONE]').map((e) => ({ at: e.at, c: JSON.parse(e.data) }));
    const withChoice = chunks.filter((x) => x.c.choices.length);
    for (const x of withChoice) assert.equal(x.c.choices.length, 1, 'one choice per chunk');
    const order = withChoice.map((x) => x.c.choices[0].index);
    assert.ok(order.some((v, i) => i > 0 && v !== order[i - 1]) && order.indexOf(1) < order.lastIndexOf(0), `interleaved: ${order}`);
    const sse = evs.map((e) => `data: ${e.data}\n\n`).join('');
    assert.equal(joinedText(sse, 'openai', { choice: 0 }), 'Paris is the capital (choice 0)');
    assert.equal(joinedText(sse, 'openai', { choice: 1 }), 'Paris is the capital (choice 1)');
    const roles = withChoice.filter((x) => x.c.choices[0].delta.role).map((x) => x.c.choices[0].index);
    assert.deepEqual(roles, [0, 1]);
    const finishes = withChoice.filter((x) => x.c.choices[0].finish_reason);
    assert.deepEqual(finishes.map((x) => [x.c.choices[0].index, x.c.choices[0].finish_reason]), [[0, 'stop'], [1, 'stop']]);
    assert.ok(finishes[1].at - finishes[0].at >= 50, `finishGapMs apart (${finishes[1].at - finishes[0].at} ms)`);
    const usage = chunks.at(-1).c;
    assert.deepEqual(usage.choices, []);
    assert.equal(usage.usage.total_tokens, usage.usage.prompt_tokens + usage.usage.completion_tokens);
  });

  test('texts gives each choice its text; a whole answer has n choices; n is checked as OpenAI does', async () => {
    fakes.openai.reset().script({ type: 'ok', texts: ['Paris.', 'It is Paris.', 'Paris, France.'], split: 'bytes' });
    const sse = await (await post('openai', chatBody('openai', { n: 3, stream: true }))).text();
    assert.deepEqual([0, 1, 2].map((i) => joinedText(sse, 'openai', { choice: i })), ['Paris.', 'It is Paris.', 'Paris, France.']);
    assert.equal(parseSse(sse).filter((e) => e.data.includes('"finish_reason":"stop"')).length, 3);
    fakes.openai.script({ type: 'ok', text: 'Paris' });
    const body = await (await post('openai', chatBody('openai', { n: 2 }))).json();
    assert.deepEqual(body.choices.map((c) => [c.index, c.message.content, c.finish_reason]), [
      [0, 'Paris (choice 0)', 'stop'],
      [1, 'Paris (choice 1)', 'stop'],
    ]);
    assertShape(body, json('openai/chat_response.json'));
    for (const [n, re] of [[0, /less than the minimum of 1/], [129, /greater than the maximum of 128/], ['2', /not of type 'integer'/]]) {
      const r = await post('openai', chatBody('openai', { n }));
      assert.equal(r.status, 400);
      assert.match((await r.json()).error.message, re);
    }
    // n: 1 and other formats: one choice, as before.
    const one = await (await post('openai', chatBody('openai', { n: 1 }))).json();
    assert.equal(one.choices.length, 1);
    assert.equal(one.choices[0].message.content, 'Hello from fake-openai');
  });
});

describe('usage in OpenAI streams only when asked', () => {
  test('include_usage true: usage:null on every chunk and a last choices:[] usage chunk; otherwise no usage at all', async () => {
    const f = fakes.openai.reset();
    const cases = [
      [{ stream: true, stream_options: { include_usage: true } }, true],
      [{ stream: true }, false],
      [{ stream: true, stream_options: { include_usage: false } }, false],
      [{ stream: true, stream_options: { include_usage: 'true' } }, false],
      [{ stream: true, stream_options: {} }, false],
    ];
    for (const [extraBody, asked] of cases) {
      const sse = await (await post('openai', chatBody('openai', extraBody))).text();
      const chunks = parseSse(sse).filter((e) => e.data !== '[DONE]').map((e) => JSON.parse(e.data));
      const label = JSON.stringify(extraBody);
      if (asked) {
        const last = chunks.at(-1);
        assert.deepEqual(last.choices, [], label);
        assert.equal(typeof last.usage.prompt_tokens, 'number');
        for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null, label);
        assert.equal(chunks.filter((c) => c.choices.length === 0).length, 1);
      } else {
        for (const c of chunks) assert.ok(!('usage' in c), label);
        assert.ok(chunks.every((c) => c.choices.length === 1), label);
      }
    }
    // The fake records what each request asked for.
    assert.deepEqual(
      f.chats.map((c) => c.body.stream_options?.include_usage === true),
      cases.map(([, asked]) => asked),
    );
  });
});

describe('lenient but valid OpenAI answers', () => {
  const answer = async (b, extraBody = {}) => {
    fakes.openai.reset().script({ type: 'ok', text: 'Paris is the capital.', ...b });
    const r = await post('openai', chatBody('openai', extraBody));
    assert.equal(r.status, 200);
    return r.json();
  };

  test('contentParts: message.content is an array of text parts', async () => {
    const body = await answer({ contentParts: true });
    const c = body.choices[0].message.content;
    assert.ok(Array.isArray(c) && c.length === 2, JSON.stringify(c));
    for (const p of c) assert.deepEqual(Object.keys(p), ['type', 'text']);
    assert.ok(c.every((p) => p.type === 'text'));
    assert.equal(c.map((p) => p.text).join(''), 'Paris is the capital.');
  });

  test('usageVariant', async () => {
    let u = (await answer({ usageVariant: 'cached_null' })).usage;
    assert.deepEqual(u.prompt_tokens_details, { cached_tokens: null });
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    u = (await answer({ usageVariant: 'no_total' })).usage;
    assert.ok(!('total_tokens' in u) && u.prompt_tokens > 0 && u.completion_tokens > 0);
    u = (await answer({ usageVariant: 'no_details' })).usage;
    assert.deepEqual(Object.keys(u), ['prompt_tokens', 'completion_tokens', 'total_tokens']);
    const none = await answer({ usageVariant: 'none' });
    assert.ok(!('usage' in none));
    assert.equal(none.choices[0].message.content, 'Paris is the capital.');
    fakes.openai.script({ type: 'ok', usageVariant: 'half' });
    assert.equal((await post('openai', chatBody('openai'))).status, 500);
  });

  test('noIndex and extraFields', async () => {
    const ni = await answer({ noIndex: true });
    assert.ok(!('index' in ni.choices[0]));
    assert.equal(ni.choices[0].finish_reason, 'stop');
    const ex = await answer({ extraFields: true, toolCall: { name: 'get_weather', arguments: { location: 'Paris' } } }, { tools: TOOLS.openai });
    const levels = [ex, ex.choices[0], ex.choices[0].message, ex.choices[0].message.tool_calls[0], ex.choices[0].message.tool_calls[0].function, ex.usage, ex.usage.prompt_tokens_details, ex.usage.completion_tokens_details];
    for (const o of levels) assert.ok('x_fake_extra' in o && 'x_fake_note' in o, JSON.stringify(o));
    assertShape(ex, json('openai/chat_response_tool_calls.json'));
    const all = await answer({ extraFields: true, contentParts: true, noIndex: true, usageVariant: 'cached_null' });
    assert.ok(all.choices[0].message.content.every((p) => 'x_fake_extra' in p));
  });

  test('the official openai client takes every variant', async () => {
    const { default: OpenAI } = await import('openai');
    const client = new OpenAI({ baseURL: fakes.openai.baseUrl, apiKey: 'sk-x', maxRetries: 0 });
    for (const b of [{ contentParts: true }, { noIndex: true }, { extraFields: true }, { usageVariant: 'none' }, { usageVariant: 'no_total' }, { usageVariant: 'cached_null' }]) {
      fakes.openai.reset().script({ type: 'ok', text: 'Paris', ...b });
      const c = await client.chat.completions.create({ model: 'gpt-x', messages: [{ role: 'user', content: 'hi' }] });
      assert.ok(c.choices.length === 1, JSON.stringify(b));
    }
  });

  test('modelName: the answer names that model, CR/LF and non-Latin-1 kept inside the JSON', async () => {
    const name = '模型\r\nx-injected: 1';
    fakes.openai.reset().script({ type: 'ok', modelName: name });
    const r = await rawRequest(fakes.openai, { body: chatBody('openai') });
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.text).model, name);
    assert.ok(r.text.includes('"model":"模型\\r\\nx-injected: 1"'), 'escaped in the JSON, not raw');
    assert.ok(!('x-injected' in r.headers));
    assert.equal(Number(r.headers['content-length']), r.body.length, 'content-length in bytes');
    fakes.openai.script({ type: 'ok', modelName: name, split: 'bytes' });
    const sse = await (await post('openai', chatBody('openai', { stream: true }))).text();
    for (const e of parseSse(sse)) if (e.data !== '[DONE]') assert.equal(JSON.parse(e.data).model, name);
    fakes.anthropic.reset().script({ type: 'ok', modelName: 'claude-x' });
    assert.equal((await (await post('anthropic', chatBody('anthropic'))).json()).model, 'claude-x');
  });
});

describe('trickle', () => {
  test('a body with no line end, in writes of bytesPerWrite, up to limitBytes', async () => {
    const heads = {
      openai: /^data: \{"id":"chatcmpl-[A-Za-z0-9]{29}","object":"chat\.completion\.chunk","created":\d+,"model":"openai-model-1","choices":\[\{"index":0,"delta":\{"content":"a+$/,
      anthropic: /^data: \{"type":"content_block_delta","index":0,"delta":\{"type":"text_delta","text":"a+$/,
      cohere: /^data: \{"type":"content-delta","index":0,"delta":\{"message":\{"content":\{"text":"a+$/,
    };
    for (const format of ['openai', 'anthropic', 'cohere']) {
      fakes[format].reset().script({ type: 'trickle', bytesPerWrite: 1000, everyMs: 1, limitBytes: 4500 });
      const r = await rawRequest(fakes[format], { body: chatBody(format, { stream: true }) });
      assert.equal(r.status, 200);
      assert.match(r.headers['content-type'], /^text\/event-stream/);
      assert.ok(r.complete, 'the body ends at limitBytes');
      assert.equal(r.body.length, 4500);
      assert.ok(!r.body.includes('\n') && !r.body.includes('\r'));
      assert.match(r.text, heads[format]);
      assert.deepEqual(r.chunks.map((c) => c.length), [1000, 1000, 1000, 1000, 500]);
    }
    fakes.openai.reset().script({ type: 'trickle', limitBytes: 300, split: 'bytes', everyMs: 0 });
    const r = await rawRequest(fakes.openai, { body: chatBody('openai', { stream: true }) });
    assert.equal(r.body.length, 300);
    assert.ok(r.chunks.every((c) => c.length <= 7));
  });

  test('for ever until the reader leaves (counted as abandoned), and close() ends it', async () => {
    const f = await startFakeProvider({ format: 'openai' });
    try {
      f.script({ type: 'trickle', bytesPerWrite: 4096, everyMs: 1 });
      const r = await fetch(`${f.baseUrl}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(chatBody('openai', { stream: true })) });
      const reader = r.body.getReader();
      let got = 0;
      while (got < 100_000) got += (await reader.read()).value.length;
      await reader.cancel();
      for (let i = 0; i < 50 && f.abandoned === 0; i++) await new Promise((res) => setTimeout(res, 5));
      assert.equal(f.abandoned, 1);
      f.script({ type: 'trickle', everyMs: 2 });
      const r2 = await fetch(`${f.baseUrl}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(chatBody('openai', { stream: true })) });
      const reading = r2.text();
      await new Promise((res) => setTimeout(res, 30));
      await f.close();
      await assert.rejects(reading);
    } finally {
      await f.close();
    }
  });
});

describe('huge bodies and echoed keys', () => {
  const messageOf = (format, body) => (format === 'cohere' ? body.message : body.error.message);

  test('ok padBytes: a whole answer with an extra field of N bytes, valid JSON', async () => {
    for (const format of ['openai', 'anthropic', 'cohere']) {
      fakes[format].reset().script({ type: 'ok', padBytes: 200_000 }, { type: 'ok' });
      const r = await rawRequest(fakes[format], { body: chatBody(format) });
      const body = JSON.parse(r.text);
      assert.equal(body.x_fake_padding.length, 200_000);
      assert.equal(Number(r.headers['content-length']), r.body.length);
      const plain = await rawRequest(fakes[format], { body: chatBody(format) });
      assert.ok(r.body.length - plain.body.length >= 200_000);
      assert.ok(!('x_fake_padding' in JSON.parse(plain.text)));
    }
  });

  test('error padBytes: the message is exactly N bytes, the rest of the recorded body kept', async () => {
    for (const [format, status, rel] of [['openai', 500, 'openai/error_500_server_error.json'], ['anthropic', 529, 'anthropic/error_529_overloaded.json'], ['cohere', 429, 'cohere/error_429_rate_limit.json']]) {
      fakes[format].reset().script({ type: 'error', status, padBytes: 100_000 }, { type: 'error', status, padBytes: 10 });
      let r = await post(format, chatBody(format));
      assert.equal(r.status, status);
      let body = await r.json();
      const recorded = json(rel).body;
      const msg = messageOf(format, body);
      assert.equal(Buffer.byteLength(msg), 100_000);
      assert.ok(msg.startsWith(messageOf(format, recorded)));
      assertShape(body, recorded);
      body = await (await post(format, chatBody(format))).json();
      assert.equal(messageOf(format, body), messageOf(format, recorded).slice(0, 10), 'cut to N');
    }
    // Multi-byte text is cut on a character boundary and padded to the byte.
    fakes.cohere.reset().script({ type: 'error', status: 400, body: { message: '日本語' }, padBytes: 7 });
    const body = await (await post('cohere', chatBody('cohere'))).json();
    assert.equal(body.message, '日本x');
    assert.equal(Buffer.byteLength(body.message), 7);
  });

  test('echoKey puts the request key in the message; echoKeyAt puts it N characters in', async () => {
    const KEY = 'sk-live-SECRET-0123456789abcdef';
    for (const format of ['openai', 'anthropic', 'cohere']) {
      const auth = format === 'anthropic' ? { 'x-api-key': KEY } : { authorization: `Bearer ${KEY}` };
      fakes[format].reset().script(
        { type: 'error', status: 401, echoKey: true },
        { type: 'error', status: 400, echoKeyAt: 0 },
        { type: 'error', status: 500, echoKeyAt: 100 },
        { type: 'error', status: 500, echoKeyAt: 5, padBytes: 4096 },
        { type: 'context_length', echoKey: true },
      );
      const m = [];
      for (let i = 0; i < 5; i++) {
        const r = await post(format, chatBody(format), auth);
        m.push(messageOf(format, await r.json()));
      }
      assert.ok(m[0].startsWith(`Incorrect API key provided: ${KEY}.`), m[0]);
      if (format === 'openai') assert.match(m[0], /You can find your API key at/);
      assert.equal(m[1].indexOf(KEY), 0);
      assert.equal(m[2].indexOf(KEY), 100);
      assert.equal(m[2].slice(100 + KEY.length), format === 'openai' ? '. You can find your API key at https://platform.openai.com/account/api-keys.' : '.');
      assert.equal(m[3].indexOf(KEY), 5);
      assert.equal(Buffer.byteLength(m[3]), 4096);
      assert.ok(m[4].includes(KEY));
    }
    // The key cut by padBytes, and no key at all.
    fakes.openai.reset().script({ type: 'error', status: 401, echoKeyAt: 10, padBytes: 20 }, { type: 'error', status: 401, echoKey: true });
    let body = await (await post('openai', chatBody('openai'), { authorization: `Bearer ${KEY}` })).json();
    assert.equal(body.error.message.slice(10), KEY.slice(0, 10));
    body = await (await post('openai', chatBody('openai'))).json();
    assert.match(body.error.message, /^Incorrect API key provided: \. /);
  });
});

describe('models listing apart from chat', () => {
  test('a restricted OpenAI key: 403 with the missing-scopes body, chat still answers', async () => {
    const f = fakes.openai.reset().setModelsBehaviour({ type: 'error', status: 403 });
    const r = await fetch(`${f.baseUrl}/models`);
    assert.equal(r.status, 403);
    const body = await r.json();
    assert.match(body.error.message, /^You have insufficient permissions for this operation\. Missing scopes: api\.model\.read\./);
    assert.deepEqual(Object.keys(body.error), ['message', 'type', 'param', 'code']);
    assert.equal(body.error.type, 'invalid_request_error');
    assert.equal(body.error.param, null);
    assert.equal(body.error.code, null);
    const chat = await post('openai', chatBody('openai'));
    assert.equal(chat.status, 200);
    assert.equal((await chat.json()).choices[0].message.content, 'Hello from fake-openai');
    assert.deepEqual(f.requests.map((x) => x.kind), ['models', 'chat']);
  });

  test('a host with no model list: each provider’s 404; reset brings the list back', async () => {
    for (const format of ['openai', 'anthropic', 'cohere']) {
      const f = fakes[format].reset().setModelsBehaviour({ type: 'error', status: 404 });
      const r = await fetch(`${f.origin}/v1/models`);
      assert.equal(r.status, 404);
      const body = await r.json();
      if (format === 'openai') assert.equal(body.error.message, 'Invalid URL (GET /v1/models)');
      if (format === 'anthropic') assert.equal(body.error.type, 'not_found_error');
      if (format === 'cohere') assert.equal(typeof body.message, 'string');
      assert.equal((await post(format, chatBody(format))).status, 200);
      f.reset();
      assert.deepEqual(await (await fetch(`${f.origin}/v1/models`)).json(), json(`${format}/models_list.json`));
    }
  });

  test('other models behaviours, the admin endpoint, and an outage first', async () => {
    const f = fakes.anthropic.reset().setModelsBehaviour({ type: 'hang' });
    await assert.rejects(fetch(`${f.origin}/v1/models`, { signal: AbortSignal.timeout(80) }));
    f.setModelsBehaviour({ type: 'malformed' });
    const cut = await (await fetch(`${f.origin}/v1/models`)).text();
    assert.ok(cut.length > 0 && !isJson(cut));
    f.setModelsBehaviour({ type: 'error', status: 403 });
    const body = await (await fetch(`${f.origin}/v1/models`)).json();
    assert.equal(body.error.type, 'permission_error');
    f.setOutage({ type: 'error', status: 529 });
    assert.equal((await fetch(`${f.origin}/v1/models`)).status, 529, 'an outage comes first');
    f.setOutage(null).setModelsBehaviour(null);
    assert.equal((await fetch(`${f.origin}/v1/models`)).status, 200);
    await fetch(`${f.origin}/__fake/models`, { method: 'POST', body: JSON.stringify({ type: 'error', status: 404 }) });
    assert.equal((await fetch(`${f.origin}/v1/models`)).status, 404);
    await fetch(`${f.origin}/__fake/models`, { method: 'POST', body: 'null' });
    assert.equal((await fetch(`${f.origin}/v1/models`)).status, 200);
  });
});

describe('prefill refused by model', () => {
  const prefilled = (model) => ({
    model,
    max_tokens: 100,
    messages: [
      { role: 'user', content: 'Name the capital of France.' },
      { role: 'assistant', content: 'The capital' },
    ],
  });

  test('rejectPrefillModels: matching models get Anthropic’s 400, the others continue the prefill', async () => {
    const f = await startFakeProvider({ format: 'anthropic', rejectPrefillModels: ['claude-opus-4-6*', 'claude-sonnet-4-6', 42] });
    try {
      const send = (body) =>
        fetch(`${f.origin}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' }, body: JSON.stringify(body) });
      f.setDefault({ type: 'ok', text: 'The capital of France is Paris.' });
      for (const model of ['claude-opus-4-6', 'claude-opus-4-6-20260101', 'claude-sonnet-4-6']) {
        const r = await send(prefilled(model));
        assert.equal(r.status, 400, model);
        const body = await r.json();
        assertShape(body, json('anthropic/error_400_invalid_request.json').body);
        assert.deepEqual(body.error, {
          type: 'invalid_request_error',
          message: 'This model does not support assistant message prefill. The conversation must end with a user message.',
        });
        assert.equal(body.request_id, r.headers.get('request-id'));
        assert.equal(r.headers.get('x-should-retry'), 'false');
      }
      for (const model of ['claude-sonnet-4-5-20250929', 'claude-sonnet-4-6-x', 'claude-opus-4-5']) {
        const r = await send(prefilled(model));
        assert.equal(r.status, 200, model);
        assert.equal((await r.json()).content[0].text, ' of France is Paris.', 'the prefill continued');
      }
      // A request that ends with the user is fine for every model; so is a stream.
      const ok = await send({ ...prefilled('claude-opus-4-6'), messages: [{ role: 'user', content: 'hi' }] });
      assert.equal(ok.status, 200);
      assert.equal((await send({ ...prefilled('claude-opus-4-6'), stream: true })).status, 400);
      f.setRejectPrefillModels([]);
      assert.equal((await send(prefilled('claude-opus-4-6'))).status, 200);
      f.reset();
      assert.equal((await send(prefilled('claude-opus-4-6'))).status, 400, 'reset goes back to the start option');
    } finally {
      await f.close();
    }
  });

  test('rejectPrefill: true keeps its old answer', async () => {
    fakes.anthropic.reset().script({ type: 'ok', rejectPrefill: true });
    const r = await post('anthropic', prefilled('claude-sonnet-4-5'));
    assert.equal(r.status, 400);
    assert.equal((await r.json()).error.message, 'This model does not support assistant message prefill.');
  });
});

describe('odd input', () => {
  test('odd requests get the API’s 400 or an answer, never a crash', async () => {
    const odd = [
      '{not json',
      '[]',
      '"a string"',
      'null',
      { model: 'm', max_tokens: 5, messages: [null] },
      { model: 'm', max_tokens: 5, messages: [{ role: 'user', content: [null, { type: 'text' }, 5] }] },
      { model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: [null, { text: 7 }] }] },
      { model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }], tools: [null], stream: true, stream_options: null },
      { model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }], n: 1e9, stream: 'yes' },
      { model: 7, messages: 'hi' },
    ];
    for (const format of ['openai', 'anthropic', 'cohere']) {
      for (const behaviour of [{ type: 'ok' }, { type: 'stream', split: 'bytes', reasoning: 'r' }, { type: 'ok', text: 5, chunks: -1, toolCall: true, padBytes: -3 }]) {
        for (const body of odd) {
          fakes[format].reset().setDefault(behaviour);
          const r = await post(format, body);
          const t = await r.text();
          assert.ok([200, 400].includes(r.status), `${format} ${JSON.stringify(body)}: ${r.status} ${t}`);
          assert.doesNotMatch(t, /fake provider bug/);
        }
      }
    }
    // Without request checks the fake still answers whatever comes.
    const loose = await startFakeProvider({ format: 'anthropic', validate: false });
    try {
      loose.script(null, { type: 'stream', chunks: 'x', chunkDelayMs: 'y' }, { type: 'error', status: 500, body: 'plain text', echoKey: true, padBytes: 30 });
      for (const body of odd) {
        const r = await fetch(`${loose.origin}/v1/messages`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
        const t = await r.text();
        assert.ok(r.status < 600, t);
        assert.doesNotMatch(t, /fake provider bug/);
      }
    } finally {
      await loose.close();
    }
  });
});
