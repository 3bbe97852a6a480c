// A fast fake OpenAI upstream for the benchmark: a minimal HTTP server, run
// in its own Node process so it does not share an event loop with the
// orchestrator or the load generator. It answers POST .../chat/completions:
//
//   /v1/...          a constant small chat.completion (about 450 bytes), or,
//                    when the body asks for "stream":true, 20 SSE events in
//                    OpenAI's chunk format followed by data: [DONE], each
//                    event its own write, back to back
//   /paced/v1/...    the same stream paced like a model: the response head at
//                    once, the first event after PACE_MS, then one content
//                    event every PACE_MS (for time to first byte/token, and to
//                    show chunks are relayed as they arrive)
//   /fail/v1/...     503 with OpenAI's overloaded error body
//   /long/v1/...     (stream only) a long stream: the role event, LONG_EVENTS
//                    content events, the finish event, the usage event if
//                    asked, data: [DONE]; each event its own write, back to back
//   /long-paced/v1/... the same long stream, one event per timer tick
//                    (setTimeout LONG_PACE_MS), as a model delivers tokens
//   /long-anthropic/v1/messages  (stream only) the long stream in Anthropic's
//                    Messages SSE: message_start, content_block_start,
//                    LONG_EVENTS content_block_delta text_delta events,
//                    content_block_stop, message_delta with usage,
//                    message_stop; each its own write, back to back
//   anything else    404
//
// It prints {"port": N} on stdout once listening, and exits when its stdin
// closes (so it never outlives the orchestrator), or on SIGTERM.
//
//   node bench/upstream.mjs [--port N] [--pace-ms 2] [--long-events 1000] [--long-pace-ms 1]

import http from 'node:http';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const PORT = Number(opt('--port', 0));
const PACE_MS = Number(opt('--pace-ms', 2));
const LONG_EVENTS = Number(opt('--long-events', 1000));
const LONG_PACE_MS = Number(opt('--long-pace-ms', 1));

const CREATED = 1735689600;

const COMPLETION = Buffer.from(
  JSON.stringify({
    id: 'chatcmpl-bench0000000000000000000000',
    object: 'chat.completion',
    created: CREATED,
    model: 'bench-model',
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: 'Hello! I am a fake upstream answering as fast as it can.', refusal: null },
        logprobs: null,
        finish_reason: 'stop',
      },
    ],
    usage: { prompt_tokens: 13, completion_tokens: 12, total_tokens: 25 },
    system_fingerprint: 'fp_bench',
  }),
);

const chunk = (delta, finish = null) =>
  `data: ${JSON.stringify({
    id: 'chatcmpl-bench0000000000000000000000',
    object: 'chat.completion.chunk',
    created: CREATED,
    model: 'bench-model',
    system_fingerprint: 'fp_bench',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  })}\n\n`;

const WORDS = 'Hello there, this is a streamed answer from the fake upstream, one small piece at a time.'
  .split(/(?<= )/)
  .slice(0, 17);
// 1 role event + 17 content events + 1 finish event + (usage) + [DONE]: about 20 events.
const HEAD_EVENT = Buffer.from(chunk({ role: 'assistant', content: '', refusal: null }));
const CONTENT_EVENTS = WORDS.map((w) => Buffer.from(chunk({ content: w })));
const FINISH_EVENT = Buffer.from(chunk({}, 'stop'));
const USAGE_EVENT = Buffer.from(
  `data: ${JSON.stringify({
    id: 'chatcmpl-bench0000000000000000000000',
    object: 'chat.completion.chunk',
    created: CREATED,
    model: 'bench-model',
    system_fingerprint: 'fp_bench',
    choices: [],
    usage: { prompt_tokens: 13, completion_tokens: 17, total_tokens: 30 },
  })}\n\n`,
);
const DONE_EVENT = Buffer.from('data: [DONE]\n\n');

// The long streams: LONG_EVENTS content events, the words above over and over.
const LONG_CONTENT_EVENTS = Array.from({ length: LONG_EVENTS }, (_, i) => CONTENT_EVENTS[i % CONTENT_EVENTS.length]);
const LONG_USAGE_EVENT = Buffer.from(
  `data: ${JSON.stringify({
    id: 'chatcmpl-bench0000000000000000000000',
    object: 'chat.completion.chunk',
    created: CREATED,
    model: 'bench-model',
    system_fingerprint: 'fp_bench',
    choices: [],
    usage: { prompt_tokens: 13, completion_tokens: LONG_EVENTS, total_tokens: 13 + LONG_EVENTS },
  })}\n\n`,
);
// Anthropic Messages SSE, the shapes of tests/fixtures/anthropic/stream_text.sse.
const sse = (type, data) => Buffer.from(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
const A_START = sse('message_start', {
  message: {
    id: 'msg_bench000000000000000000',
    type: 'message',
    role: 'assistant',
    content: [],
    model: 'bench-model',
    stop_reason: null,
    stop_sequence: null,
    usage: { input_tokens: 13, output_tokens: 1 },
  },
});
const A_BLOCK_START = sse('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
const A_DELTAS = WORDS.map((w) => sse('content_block_delta', { index: 0, delta: { type: 'text_delta', text: w } }));
const A_LONG_DELTAS = Array.from({ length: LONG_EVENTS }, (_, i) => A_DELTAS[i % A_DELTAS.length]);
const A_BLOCK_STOP = sse('content_block_stop', { index: 0 });
const A_MESSAGE_DELTA = sse('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: LONG_EVENTS } });
const A_STOP = sse('message_stop', {});

const ERROR_503 = Buffer.from(
  JSON.stringify({
    error: {
      message: 'The engine is currently overloaded, please try again later.',
      type: 'server_error',
      param: null,
      code: null,
    },
  }),
);

const JSON_HEADERS = { 'content-type': 'application/json', 'x-request-id': 'req_bench' };
const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-request-id': 'req_bench' };

let requests = 0;
// Chat requests by kind ("ok", "ok stream", "fail", "paced stream", ...), for GET /__stats.
const kinds = {};
const count = (k) => {
  kinds[k] = (kinds[k] || 0) + 1;
};

function stream(res, body, paced) {
  const usage = body.includes('"include_usage":true');
  res.writeHead(200, SSE_HEADERS);
  const tail = () => {
    res.write(FINISH_EVENT);
    if (usage) res.write(USAGE_EVENT);
    res.end(DONE_EVENT);
  };
  if (!paced) {
    res.write(HEAD_EVENT);
    for (const e of CONTENT_EVENTS) res.write(e);
    tail();
    return;
  }
  // Paced: the head at once, then (as a model does) the role event with the
  // first content event after PACE_MS, and one content event every PACE_MS.
  res.flushHeaders();
  let i = 0;
  const next = () => {
    if (res.destroyed) return;
    if (i === 0) res.write(HEAD_EVENT);
    if (i < CONTENT_EVENTS.length) {
      res.write(CONTENT_EVENTS[i++]);
      setTimeout(next, PACE_MS);
    } else tail();
  };
  setTimeout(next, PACE_MS);
}

/** A long OpenAI-format stream: back to back, or one event per timer tick. */
function longStream(res, body, paced) {
  const usage = body.includes('"include_usage":true');
  res.writeHead(200, SSE_HEADERS);
  const tail = () => {
    res.write(FINISH_EVENT);
    if (usage) res.write(LONG_USAGE_EVENT);
    res.end(DONE_EVENT);
  };
  if (!paced) {
    res.write(HEAD_EVENT);
    for (const e of LONG_CONTENT_EVENTS) res.write(e);
    tail();
    return;
  }
  // Paced: the head at once; the role event with the first content event
  // after LONG_PACE_MS, then one content event per tick (never coalesced).
  res.flushHeaders();
  let i = 0;
  const next = () => {
    if (res.destroyed) return;
    if (i === 0) res.write(HEAD_EVENT);
    if (i < LONG_CONTENT_EVENTS.length) {
      res.write(LONG_CONTENT_EVENTS[i++]);
      setTimeout(next, LONG_PACE_MS);
    } else tail();
  };
  setTimeout(next, LONG_PACE_MS);
}

/** A long Anthropic Messages stream, back to back. */
function longAnthropicStream(res) {
  res.writeHead(200, { ...SSE_HEADERS, 'request-id': 'req_bench' });
  res.write(A_START);
  res.write(A_BLOCK_START);
  for (const e of A_LONG_DELTAS) res.write(e);
  res.write(A_BLOCK_STOP);
  res.write(A_MESSAGE_DELTA);
  res.end(A_STOP);
}

const LONG_ONLY_STREAMS = Buffer.from(
  '{"error":{"message":"the long paths only stream: send \\"stream\\":true","type":"invalid_request_error","param":null,"code":null}}',
);

const server = http.createServer((req, res) => {
  requests++;
  const url = req.url;
  if (req.method === 'GET' && url === '/__stats') {
    res.writeHead(200, JSON_HEADERS);
    res.end(JSON.stringify({ requests, kinds, pid: process.pid }));
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const long = url.startsWith('/long');
    if (long) {
      const kind = url === '/long/v1/chat/completions' ? 'long' : url === '/long-paced/v1/chat/completions' ? 'long paced' : url === '/long-anthropic/v1/messages' ? 'long anthropic' : null;
      if (kind) {
        const body = Buffer.concat(chunks).toString('latin1');
        if (!/"stream"\s*:\s*true/.test(body)) {
          res.writeHead(400, JSON_HEADERS);
          res.end(LONG_ONLY_STREAMS);
          return;
        }
        count(`${kind} stream`);
        if (kind === 'long anthropic') longAnthropicStream(res);
        else longStream(res, body, kind === 'long paced');
        return;
      }
    }
    if (!url.endsWith('/chat/completions')) {
      res.writeHead(404, JSON_HEADERS);
      res.end('{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}');
      return;
    }
    if (url.startsWith('/fail/')) {
      count('fail');
      res.writeHead(503, JSON_HEADERS);
      res.end(ERROR_503);
      return;
    }
    const body = chunks.length === 1 ? chunks[0].toString('latin1') : Buffer.concat(chunks).toString('latin1');
    if (body.includes('"stream":true')) {
      count(url.startsWith('/paced/') ? 'paced stream' : 'stream');
      stream(res, body, url.startsWith('/paced/'));
      return;
    }
    count(url.startsWith('/paced/') ? 'paced' : 'ok');
    res.writeHead(200, JSON_HEADERS);
    res.end(COMPLETION);
  });
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
server.requestTimeout = 0;

server.listen(PORT, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port, pid: process.pid })}\n`);
});

const stop = () => {
  server.closeAllConnections?.();
  server.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
