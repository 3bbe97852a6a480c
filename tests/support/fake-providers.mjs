// Fake LLM providers on 127.0.0.1 that speak the real wire formats of OpenAI
// Chat Completions, Anthropic Messages and Cohere Chat v2. Response bodies are
// built from the shapes recorded in tests/fixtures/ (see MAPPING.md), and the
// error bodies are the recorded ones.
//
//   const p = await startFakeProvider({ format: 'anthropic', name: 'claude' });
//   p.baseUrl            // what goes into the gateway config's base_url
//   p.script({ type: 'error', status: 500 }, { type: 'ok' })
//   p.setDefault({ type: 'hang' })
//   p.requests / p.chats // everything received / only chat requests
//   await p.close()
//
// Behaviours (one-shot ones from script() are consumed in order by chat
// requests; the default applies once the script is empty):
//   { type: 'ok', text?, delayMs?, toolCall?: { name, arguments }, chunks?, chunkDelayMs? }
//   { type: 'error', status, body?, headers?, delayMs? }
//       body defaults to the provider's recorded error body for the status;
//       the recorded headers (request ids, rate-limit headers) come along,
//       except retry-after / retry-after-ms: timing headers are only sent when
//       given, e.g. headers: { 'retry-after': '1' }. A header set to null is removed.
//       padBytes: N    the message is exactly N bytes (padded with " xxx…" or cut);
//                      the body stays valid JSON
//       echoKey: true  the message is "Incorrect API key provided: <key>." with
//                      the request's key (x-api-key for Anthropic, the Bearer
//                      token otherwise), for testing the gateway's redaction
//       echoKeyAt: N   the same, with the key starting N characters into the message
//       (padBytes and echoKey* apply to context_length and content_policy too)
//   { type: 'ok', padBytes: N }  a whole answer with an extra x_fake_padding
//       field whose value is N bytes (streams ignore it)
//   { type: 'ok', chunkedBytes: N }  a whole answer with no content-length,
//       sent chunked, N bytes per write (UTF-8 characters cut), a turn of the
//       event loop between writes, as a compressing provider sends it
//   { type: 'hang' }            accept the request and never answer
//   { type: 'reset' }           destroy the socket before any response
//   { type: 'malformed' }       200 with a truncated JSON body
//   { type: 'context_length' }  the provider's 400 for an over-long prompt
//   { type: 'content_policy' }  the provider's 400 for refused content
//   { type: 'stream', chunks?, chunkDelayMs?, cutAfter?, stallAfter?, malformedAt?,
//     errorEventAfter?, noDone?, firstByteDelayMs?, text?, toolCall? }
//       an SSE stream with faults; every "after N" counts content deltas
//       (text pieces), the head of the stream (role chunk / message_start /
//       content_block_start) always goes out first.
//         cutAfter: N         destroy the socket after N deltas (no terminator;
//                             the N deltas reach the client first)
//         stallAfter: N       stop writing after N deltas, keep the connection open
//         malformedAt: N      delta number N (0-based) is broken JSON
//         errorEventAfter: N  the provider's in-stream error after N deltas, then end
//         noDone: true        leave out the terminator ([DONE] / message_stop)
//         firstByteDelayMs    wait this long before sending the response head
//   Stream bytes (any stream, every fault above included):
//         split: 'event'      one res.write per SSE event (the default)
//                'bytes'      writes of 1 to 7 bytes at random: events, `data:`
//                             prefixes, line ends and UTF-8 characters are cut
//                'coalesce'   2 to 4 whole events per write
//                'mixed'      each write at random 1-7 bytes, 8-64 bytes, one
//                             event or 2-4 events
//             The overall bytes are the same in every mode. The provider-wide
//             default is the `split` option of startFakeProvider, or setSplit().
//             Writes are Buffer slices made with no await in between, so those
//             made in one tick leave in one TCP segment (Node corks them), each
//             still its own HTTP chunk. A chunkDelayMs / reasoningDelayMs pause
//             comes after an event is whole on the wire.
//         splitDelayMs: N     wait N ms between two writes (0: one turn of the
//                             event loop), so that each write is its own segment
//         splitSeed: N        replay the same random cuts
//         eol: 'lf' | 'crlf' | 'cr'   the SSE line end (default lf)
//   Reasoning (ok and stream behaviours, every format; the Cohere stream shape
//   is not in the recordings, see cohereStream):
//         reasoning: '<text>'  the model thinks first. OpenAI-format streams
//             start with a `: keep-alive` comment, then a role chunk with
//             content:null and an empty reasoning string, reasoning chunks with
//             content:null, then the content chunks with the reasoning field null
//             (as DeepSeek sends it, openai/chat_stream_reasoning_content_deepseek.sse).
//             Anthropic streams open a `thinking` block (signature ""), send
//             thinking_delta events (the last one empty) and one signature_delta,
//             then the text block at index 1 (anthropic/stream_thinking.sse).
//             Cohere streams send content-start/content-delta/content-end for a
//             thinking content (delta.message.content.thinking) at index 0, then
//             the text at index 1. Whole answers carry it too: OpenAI
//             message.reasoning_content, an Anthropic thinking block with a
//             signature, a Cohere thinking content block. Usage counts it
//             (OpenAI completion_tokens_details.reasoning_tokens).
//         reasoningField: 'reasoning_content' (default) | 'reasoning'   (OpenAI; vLLM's name)
//         reasoningChunks: N   reasoning pieces (default one per word)
//         reasoningDelayMs: N  wait after each reasoning piece (a whole answer
//                              waits pieces * N before it is sent)
//       Reasoning pieces are not deltas for the fault counters: the faults
//       count answer pieces only.
//   Several choices (OpenAI format only): a request with n > 1 gets n choices.
//       Choice i says texts[i] or, without it, the text + " (choice i)". In a
//       stream each chunk carries one choice, the choices interleaved, each
//       with its own role chunk and finish_reason chunk; choice 0 finishes as
//       soon as its text is out, choice i finishGapMs * i later (default 0).
//       n that is not an integer from 1 to 128 gets OpenAI's 400.
//         texts: ['<choice 0>', '<choice 1>', ...]   finishGapMs: N
//   Usage in OpenAI-format streams: only when the request has
//       stream_options.include_usage: true, every chunk then has usage:null
//       and a last chunk with choices:[] carries the usage (the request and
//       so what it asked for is in chats[i].body).
//   Unusual but valid OpenAI-format whole answers:
//         contentParts: true   message.content is [{type:"text", text}, ...]
//         usageVariant: 'cached_null'  prompt_tokens_details: {cached_tokens: null}
//                       'no_total'     no usage.total_tokens
//                       'no_details'   no *_tokens_details
//                       'none'         no usage at all
//         noIndex: true        choices without `index`
//         extraFields: true    unknown fields (x_fake_extra, x_fake_note) at every level
//   modelName: '<string>'  the `model` the answer names (any format that has
//       one, whole answers and stream chunks), e.g. one with CR/LF or
//       non-Latin-1 characters: it only ever goes out JSON-escaped in the body.
//   { type: 'trickle', bytesPerWrite?, everyMs?, limitBytes?, split?, firstByteDelayMs? }
//       a 200 text/event-stream whose body never has a line end (CR or LF):
//       `data: {"id":…,"choices":[{"index":0,"delta":{"content":"` (the
//       format's text delta event) then "aaaa…", bytesPerWrite bytes (default
//       1024) every everyMs ms (default 5; 0 = every turn of the event loop),
//       for ever or until the body is limitBytes long, then the body ends. For
//       the gateway's cap on one SSE line. A reader that leaves is counted in
//       `abandoned`; close() ends it.
//   { type: 'flood', events?, eventBytes? }  (OpenAI format only) a 200 chat
//       stream written as fast as its reader takes it, and no faster: the
//       role event, `events` content events (default 10,000) of `eventBytes`
//       characters each (default 4096), the finish event and [DONE], one
//       write each, waiting for 'drain' whenever a write is refused. `flooded`
//       counts the bytes handed to the socket so far, so a test can see how
//       much of the stream its reader (the gateway) has taken.
//   A request whose last message is from the assistant is a prefill: the reply
//   continues it (the rest of `text` after it). `rejectPrefill: true` answers
//   such a request with the provider's 400 instead.
//   The provider option rejectPrefillModels: ['claude-opus-4-6*', 'exact-id']
//   (or setRejectPrefillModels(list)) makes those models (a trailing * is a
//   prefix match) refuse any request that ends with an assistant message, as
//   Anthropic's models from Claude 4.6 on do: 400 invalid_request_error "This
//   model does not support assistant message prefill. The conversation must
//   end with a user message." Other models continue the prefill. reset()
//   goes back to the start option.
// A stream:true request with { type: 'ok' } gets a well-formed stream.
//
// setOutage(behaviour) applies one behaviour to EVERY request, chat and
// models listing alike (what a health probe sees), ahead of the script and
// the default, until setOutage(null). E.g. setOutage({ type: 'error', status: 503 })
// or setOutage({ type: 'hang' }).
//
// setModelsBehaviour(behaviour) is what GET /v1/models answers (chat is not
// affected), until setModelsBehaviour(null) or reset(); an outage still comes
// first. E.g. { type: 'error', status: 403 } is a restricted key (for OpenAI
// the real "Missing scopes: api.model.read" body), { type: 'error', status: 404 }
// a compatible host with no model list (the provider's 404 for an unknown
// path), { type: 'hang' }, { type: 'malformed' }, { type: 'ok', delayMs }.
//
// setSplit(mode) sets the provider-wide split (null: back to the start option;
// reset() does that too).
//
// Admin API on the same server (for humans using `npm start`):
//   POST /__fake/behaviour   JSON behaviour -> the default
//   POST /__fake/script      JSON array of behaviours -> the script
//   POST /__fake/outage      JSON behaviour (or null) -> every endpoint fails that way
//   POST /__fake/models      JSON behaviour (or null) -> setModelsBehaviour
//   POST /__fake/split       "bytes" (or {"mode": "bytes"}, or null) -> setSplit
//   GET  /__fake/requests    { count, chats, last: [...] }
//   POST /__fake/reset       clears requests, script, outage and models behaviour,
//                            default back to ok, split and rejectPrefillModels
//                            back to the start options (as reset() does)

import http from 'node:http';
import { readFileSync } from 'node:fs';
import { randomUUID, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures');

function fixture(rel) {
  return JSON.parse(readFileSync(path.join(FIXTURES, rel), 'utf8'));
}

export const FORMATS = ['openai', 'anthropic', 'cohere'];

// Recorded error envelopes ({status, headers, body}) per format and status.
const ERROR_FIXTURES = {
  openai: {
    400: 'openai/error_400_context_length_exceeded.json',
    401: 'openai/error_401_invalid_api_key.json',
    429: 'openai/error_429_rate_limit_exceeded.json',
    500: 'openai/error_500_server_error.json',
    503: 'openai/error_503_overloaded.json',
  },
  anthropic: {
    400: 'anthropic/error_400_invalid_request.json',
    401: 'anthropic/error_401_authentication.json',
    404: 'anthropic/error_404_not_found.json',
    429: 'anthropic/error_429_rate_limit.json',
    500: 'anthropic/error_500_api_error.json',
    529: 'anthropic/error_529_overloaded.json',
  },
  cohere: {
    400: 'cohere/error_400_invalid_request.json',
    401: 'cohere/error_401_unauthorized.json',
    429: 'cohere/error_429_rate_limit.json',
    500: 'cohere/error_500_internal.json',
  },
};

const CONTEXT_FIXTURES = {
  openai: 'openai/error_400_context_length_exceeded.json',
  anthropic: 'anthropic/error_400_prompt_too_long.json',
  cohere: 'cohere/error_400_too_many_tokens.json',
};

const MODELS_FIXTURES = {
  openai: 'openai/models_list.json',
  anthropic: 'anthropic/models_list.json',
  cohere: 'cohere/models_list.json',
};

// Content-policy refusals. No fixture records these; the wording follows
// public reports of real bodies and is illustrative, the shapes are each
// provider's error envelope (MAPPING.md section 7).
const CONTENT_POLICY = {
  openai: {
    error: {
      message:
        'Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.',
      type: 'invalid_request_error',
      param: null,
      code: 'content_policy_violation',
    },
  },
  anthropic: {
    type: 'error',
    error: { type: 'invalid_request_error', message: 'Output blocked by content filtering policy' },
    request_id: null,
  },
  cohere: {
    id: null,
    message:
      'blocked input: please adjust your prompt and try again, as it may be a potential violation of our Usage Guidelines (https://docs.cohere.com/docs/usage-guidelines).',
  },
};

// What GET /v1/models answers a restricted OpenAI key that may not read models.
// Wording as in public reports and client tests quoting the real body (newer
// ones list the project roles as "(Viewer, Member, Owner)").
const OPENAI_MODELS_403 = {
  error: {
    message:
      "You have insufficient permissions for this operation. Missing scopes: api.model.read. Check that you have the correct role in your organization (Reader, Writer, Owner) and project (Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.",
    type: 'invalid_request_error',
    param: null,
    code: null,
  },
};

/** Each provider's 404 for a path it does not serve. */
function notFoundBody(fmt, method, pathname) {
  if (fmt === 'openai') {
    return { error: { message: `Invalid URL (${method} ${pathname})`, type: 'invalid_request_error', param: null, code: null } };
  }
  if (fmt === 'anthropic') return { type: 'error', error: { type: 'not_found_error', message: 'Not Found' }, request_id: null };
  return { message: 'not found' };
}

// Anthropic error type for each status (SDK shared/error_type.py).
const ANTHROPIC_ERROR_TYPES = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'billing_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  504: 'timeout_error',
  529: 'overloaded_error',
};

const STATUS_TEXT = {
  400: 'Bad request',
  401: 'Unauthorized',
  402: 'Payment required',
  403: 'Forbidden',
  404: 'Not found',
  408: 'Request timeout',
  409: 'Conflict',
  413: 'Request too large',
  422: 'Unprocessable entity',
  429: 'Too many requests',
  500: 'Internal server error',
  502: 'Bad gateway',
  503: 'Service unavailable',
  504: 'Gateway timeout',
  529: 'Overloaded',
};

// ------------------------------------------------------------------ helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function headerPairsToObject(pairs) {
  const out = {};
  for (const [k, v] of pairs || []) out[k.toLowerCase()] = v;
  return out;
}

function hex(n) {
  return randomBytes(Math.ceil(n / 2)).toString('hex').slice(0, n);
}

function alnum(n) {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = randomBytes(n);
  let s = '';
  for (let i = 0; i < n; i++) s += abc[bytes[i] % abc.length];
  return s;
}

/** Rough token count of a text (about 4 characters per token). */
function tokensOf(text) {
  if (!text) return 0;
  return Math.max(1, Math.round(text.length / 4));
}

/** All the text in a request's messages/system/tools, for a prompt token estimate. */
function requestText(body) {
  if (!body || typeof body !== 'object') return '';
  const parts = [];
  const walk = (v) => {
    if (typeof v === 'string') parts.push(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === 'data' || k === 'url') continue; // images are not text
        walk(x);
      }
    }
  };
  walk(body.system);
  walk(body.messages);
  if (body.tools) parts.push(JSON.stringify(body.tools));
  return parts.join(' ');
}

function promptTokens(body) {
  const n = Array.isArray(body?.messages) ? body.messages.length : 1;
  return tokensOf(requestText(body)) + 3 * n + 5;
}

/** Splits text into `n` pieces (or into words when n is not given). */
function splitText(text, n) {
  if (!n) {
    const words = text.match(/\s*\S+/g) || [text];
    return words;
  }
  n = Math.max(1, Math.min(n, Math.max(1, text.length)));
  const size = Math.ceil(text.length / n);
  const out = [];
  for (let i = 0; i < n; i++) out.push(text.slice(i * size, (i + 1) * size));
  // Always n pieces, even if the last ones are empty-ish: pad with a space.
  return out.map((p) => (p === '' ? ' ' : p));
}

function splitString(s, n) {
  const size = Math.max(1, Math.ceil(s.length / n));
  const out = [];
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out.length ? out : [''];
}

function argsString(args) {
  if (args === undefined) return '{}';
  return typeof args === 'string' ? args : JSON.stringify(args);
}

function argsObject(args) {
  if (args === undefined) return {};
  if (typeof args === 'string') {
    try {
      return JSON.parse(args);
    } catch {
      return {};
    }
  }
  return args;
}

function hasTools(body) {
  return Array.isArray(body?.tools) && body.tools.length > 0;
}

// ------------------------------------------------------------ response bodies

/**
 * A trailing assistant message is a prefill: the model continues from it, as
 * Anthropic does (and OpenAI-compatible servers that support it).
 */
function prefillOf(reqBody) {
  const msgs = Array.isArray(reqBody?.messages) ? reqBody.messages : [];
  const last = msgs[msgs.length - 1];
  if (!last || last.role !== 'assistant' || last.tool_calls) return null;
  if (typeof last.content === 'string') return last.content;
  if (Array.isArray(last.content)) return last.content.map((b) => (typeof b?.text === 'string' ? b.text : '')).join('');
  return null;
}

/** How many choices an OpenAI-format request asks for (`n`, 1 when absent). */
function choicesWanted(fmt, reqBody) {
  const n = reqBody?.n;
  return fmt === 'openai' && Number.isInteger(n) && n > 1 ? n : 1;
}

/** The reply facts every format renders its own way. */
function replyFacts(fmt, name, behaviour, reqBody) {
  // Continue a prefill: the reply is what follows it in the scripted text.
  const prefill = prefillOf(reqBody);
  const cont = (t) => (prefill && t.startsWith(prefill) ? t.slice(prefill.length) : t);
  const base = typeof behaviour.text === 'string' ? behaviour.text : behaviour.text == null ? `Hello from ${name}` : String(behaviour.text);
  const text = cont(base);
  const toolCall = behaviour.toolCall && hasTools(reqBody) ? behaviour.toolCall : null;
  const model =
    typeof behaviour.modelName === 'string' ? behaviour.modelName : typeof reqBody?.model === 'string' ? reqBody.model : 'unknown-model';
  const input = promptTokens(reqBody);
  const reasoning = typeof behaviour.reasoning === 'string' && behaviour.reasoning !== '' ? behaviour.reasoning : null;
  const reasoningTokens = reasoning ? tokensOf(reasoning) : 0;
  // n > 1: choice i says texts[i], or the text with " (choice i)" after it.
  const n = choicesWanted(fmt, reqBody);
  const texts =
    n === 1 ? [text] : Array.from({ length: n }, (_, i) => cont(typeof behaviour.texts?.[i] === 'string' ? behaviour.texts[i] : `${base} (choice ${i})`));
  const outputs = texts.map((t) => {
    let out = tokensOf(t) + 1 + reasoningTokens;
    if (toolCall) out += tokensOf(toolCall.name) + tokensOf(argsString(toolCall.arguments)) + 10;
    return out;
  });
  const output = outputs.reduce((a, b) => a + b, 0);
  return {
    text,
    texts,
    outputs,
    explicitText: behaviour.text !== undefined,
    toolCall,
    model,
    input,
    output,
    reasoning,
    reasoningTokens,
    reasoningField: behaviour.reasoningField ?? 'reasoning_content',
  };
}

/** The text split into `n` parts whose concatenation is the text. */
function textParts(text, n = 2) {
  if (text.length < 2) return [text];
  const cut = text.indexOf(' ', Math.floor(text.length / n));
  const at = cut > 0 ? cut : Math.floor(text.length / 2);
  return [text.slice(0, at), text.slice(at)];
}

function openaiUsage(f, b = {}) {
  const variant = b.usageVariant;
  if (variant === 'none') return undefined;
  const usage = { prompt_tokens: f.input, completion_tokens: f.output, total_tokens: f.input + f.output };
  if (variant === 'no_total') delete usage.total_tokens;
  if (variant !== 'no_details') {
    usage.prompt_tokens_details = variant === 'cached_null' ? { cached_tokens: null } : { cached_tokens: 0, audio_tokens: 0 };
    usage.completion_tokens_details = {
      reasoning_tokens: f.reasoningTokens * f.texts.length,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    };
  }
  return usage;
}

/** Adds fields no client knows about to `obj` (extraFields: true). */
function extra(obj, on) {
  if (on && obj && typeof obj === 'object') {
    obj.x_fake_extra = { nested: [1, 'two', { three: null }], flag: true };
    obj.x_fake_note = 'unknown field';
  }
  return obj;
}

function openaiCompletion(f, b = {}) {
  const x = b.extraFields === true;
  const choices = f.texts.map((text, i) => {
    const message = { role: 'assistant', content: text };
    if (f.reasoning) message[f.reasoningField] = f.reasoning;
    message.refusal = null;
    message.annotations = [];
    let finish = 'stop';
    if (f.toolCall) {
      message.content = f.explicitText ? text : null;
      message.tool_calls = [
        extra(
          {
            id: `call_${alnum(24)}`,
            type: 'function',
            function: extra({ name: f.toolCall.name, arguments: argsString(f.toolCall.arguments) }, x),
          },
          x,
        ),
      ];
      finish = 'tool_calls';
    }
    if (b.contentParts === true && typeof message.content === 'string') {
      message.content = textParts(message.content).map((t) => extra({ type: 'text', text: t }, x));
    }
    const choice = { index: i, message: extra(message, x), logprobs: null, finish_reason: finish };
    if (b.noIndex === true) delete choice.index;
    return extra(choice, x);
  });
  const out = {
    id: `chatcmpl-${alnum(29)}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: f.model,
    choices,
    usage: openaiUsage(f, b),
    service_tier: 'default',
    system_fingerprint: `fp_${hex(10)}`,
  };
  if (out.usage === undefined) delete out.usage;
  if (x && out.usage) {
    extra(out.usage, x);
    extra(out.usage.prompt_tokens_details, x);
    extra(out.usage.completion_tokens_details, x);
  }
  return extra(out, x);
}

/** An opaque signature like the ones Anthropic puts on thinking blocks (base64). */
function thinkingSignature() {
  return randomBytes(240).toString('base64');
}

function anthropicMessage(f) {
  const content = [];
  let stop = 'end_turn';
  if (f.reasoning) content.push({ type: 'thinking', thinking: f.reasoning, signature: thinkingSignature() });
  if (!f.toolCall || f.explicitText) content.push({ type: 'text', text: f.text });
  if (f.toolCall) {
    content.push({ type: 'tool_use', id: `toolu_${alnum(24)}`, name: f.toolCall.name, input: argsObject(f.toolCall.arguments) });
    stop = 'tool_use';
  }
  return {
    model: f.model,
    id: `msg_${alnum(24)}`,
    type: 'message',
    role: 'assistant',
    content,
    stop_reason: stop,
    stop_sequence: null,
    usage: {
      input_tokens: f.input,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
      cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 },
      output_tokens: f.output,
      service_tier: 'standard',
      inference_geo: 'not_available',
    },
  };
}

function cohereChat(f) {
  const message = { role: 'assistant' };
  let finish = 'COMPLETE';
  // Reasoning is a `thinking` content block (the Spec's "Tools" example).
  const thinking = f.reasoning ? [{ type: 'thinking', thinking: f.reasoning }] : [];
  if (f.toolCall) {
    if (thinking.length) message.content = thinking;
    message.tool_plan = f.explicitText ? f.text : `I will use the ${f.toolCall.name} tool.`;
    message.tool_calls = [
      {
        id: `${f.toolCall.name}_${alnum(12).toLowerCase()}`,
        type: 'function',
        function: { name: f.toolCall.name, arguments: argsString(f.toolCall.arguments) },
      },
    ];
    finish = 'TOOL_CALL';
  } else {
    message.content = [...thinking, { type: 'text', text: f.text }];
  }
  return {
    id: randomUUID(),
    message,
    finish_reason: finish,
    usage: {
      billed_units: { input_tokens: f.input, output_tokens: f.output },
      tokens: { input_tokens: f.input + 66, output_tokens: f.output },
    },
  };
}

const COMPLETION = { openai: openaiCompletion, anthropic: anthropicMessage, cohere: cohereChat };

// ---------------------------------------------------------------- SSE events

/**
 * A stream as a list of events: { sse: string, delta?, reasoning?, terminator? },
 * or { pauseMs } for a wait between two events. `delta` marks the content
 * pieces that the fault options count, `reasoning` the reasoning pieces that
 * reasoningDelayMs paces.
 */
function streamEvents(fmt, f, behaviour, reqBody) {
  const reasoningPieces = f.reasoning ? splitText(f.reasoning, behaviour.reasoningChunks) : [];
  if (fmt === 'openai') return openaiStream(f, behaviour, reqBody, reasoningPieces);
  const pieces = splitText(f.text, behaviour.chunks);
  if (fmt === 'anthropic') return anthropicStream(f, pieces, reasoningPieces);
  return cohereStream(f, pieces, reasoningPieces);
}

const dataLine = (obj) => `data: ${JSON.stringify(obj)}\n\n`;
const eventLine = (type, obj) => `event: ${type}\ndata: ${JSON.stringify(obj)}\n\n`;

function openaiStream(f, behaviour, reqBody, reasoningPieces) {
  const includeUsage = reqBody?.stream_options?.include_usage === true;
  const base = {
    id: `chatcmpl-${alnum(29)}`,
    object: 'chat.completion.chunk',
    created: Math.floor(Date.now() / 1000),
    model: f.model,
    service_tier: 'default',
    system_fingerprint: `fp_${hex(10)}`,
  };
  const chunk = (choices, extra = {}) => ({ ...base, choices, ...(includeUsage ? { usage: null } : {}), ...extra });
  const rf = f.reasoningField;
  // One event list per choice; several choices are interleaved below.
  const perChoice = f.texts.map((text, index) => {
    const pieces = splitText(text, behaviour.chunks);
    const choice = (delta, finish = null) => ({ index, delta, logprobs: null, finish_reason: finish });
    const ev = [];
    const put = (delta, kind = {}) => ev.push({ sse: dataLine(chunk([choice(delta)])), ...kind });
    // Reasoning first, shaped as DeepSeek sends it: the role chunk has
    // content:null and an empty reasoning string, reasoning chunks have
    // content:null, and once the answer starts the reasoning field is null.
    if (f.reasoning) {
      put({ role: 'assistant', content: null, [rf]: '' });
      for (const p of reasoningPieces) put({ content: null, [rf]: p }, { reasoning: true });
    }
    const after = f.reasoning ? { [rf]: null } : {};
    if (f.toolCall) {
      const args = argsString(f.toolCall.arguments);
      const call = { index: 0, id: `call_${alnum(24)}`, type: 'function', function: { name: f.toolCall.name, arguments: '' } };
      if (f.reasoning) put({ content: null, ...after, tool_calls: [call] });
      else put({ role: 'assistant', content: null, tool_calls: [call], refusal: null });
      for (const p of splitString(args, pieces.length)) put({ tool_calls: [{ index: 0, function: { arguments: p } }] }, { delta: true });
      ev.push({ sse: dataLine(chunk([choice({}, 'tool_calls')])), finish: true });
    } else {
      if (!f.reasoning) put({ role: 'assistant', content: '', refusal: null });
      for (const p of pieces) put({ content: p, ...after }, { delta: true });
      ev.push({ sse: dataLine(chunk([choice(f.reasoning ? { content: '', ...after } : {}, 'stop')])), finish: true });
    }
    return ev;
  });
  const ev = [];
  // DeepSeek sends `: keep-alive` comments while a reasoning request waits.
  if (f.reasoning) ev.push({ sse: ': keep-alive\n\n' });
  if (perChoice.length === 1) ev.push(...perChoice[0]);
  else {
    // Round robin over the choices. Choice 0 finishes as soon as its text is
    // out; choice i finishes i * finishGapMs later, after everything else.
    const held = [];
    for (let round = 0; perChoice.some((c) => round < c.length); round++) {
      for (const [i, c] of perChoice.entries()) {
        const e = c[round];
        if (!e) continue;
        if (e.finish && i > 0) held.push(e);
        else ev.push(e);
      }
    }
    const gap = Number.isFinite(behaviour.finishGapMs) && behaviour.finishGapMs > 0 ? behaviour.finishGapMs : 0;
    for (const e of held) {
      if (gap) ev.push({ pauseMs: gap });
      ev.push(e);
    }
  }
  if (includeUsage) ev.push({ sse: dataLine({ ...base, choices: [], usage: openaiUsage(f) }) });
  ev.push({ sse: 'data: [DONE]\n\n', terminator: true });
  return ev;
}

function anthropicStream(f, pieces, reasoningPieces) {
  const ev = [];
  const e = (type, obj, kind = {}) => ev.push({ sse: eventLine(type, { type, ...obj }), ...kind });
  const ping = () => ev.push({ sse: 'event: ping\ndata: {"type": "ping"}\n\n' });
  e('message_start', {
    message: {
      id: `msg_${alnum(24)}`,
      type: 'message',
      role: 'assistant',
      model: f.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: {
        input_tokens: f.input,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
        cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 },
        output_tokens: 1,
        service_tier: 'standard',
        inference_geo: 'not_available',
      },
    },
  });
  let index = 0;
  if (f.reasoning) {
    // As recorded (stream_thinking.sse): a thinking block with an empty
    // signature, the thinking deltas (the last one empty), one
    // signature_delta just before the block stops.
    e('content_block_start', { index, content_block: { type: 'thinking', thinking: '', signature: '' } });
    ping();
    for (const p of reasoningPieces) e('content_block_delta', { index, delta: { type: 'thinking_delta', thinking: p } }, { reasoning: true });
    e('content_block_delta', { index, delta: { type: 'thinking_delta', thinking: '' } });
    e('content_block_delta', { index, delta: { type: 'signature_delta', signature: thinkingSignature() } });
    e('content_block_stop', { index });
    index++;
  }
  if (!f.toolCall || f.explicitText) {
    e('content_block_start', { index, content_block: { type: 'text', text: '' } });
    if (index === 0) ping();
    for (const p of pieces) e('content_block_delta', { index, delta: { type: 'text_delta', text: p } }, { delta: true });
    e('content_block_stop', { index });
    index++;
  }
  if (f.toolCall) {
    e('content_block_start', {
      index,
      content_block: { type: 'tool_use', id: `toolu_${alnum(24)}`, name: f.toolCall.name, input: {} },
    });
    if (index === 0) ping();
    e('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: '' } });
    for (const p of splitString(JSON.stringify(argsObject(f.toolCall.arguments)), Math.max(2, pieces.length))) {
      e('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: p } }, { delta: true });
    }
    e('content_block_stop', { index });
  }
  e('message_delta', {
    delta: { stop_reason: f.toolCall ? 'tool_use' : 'end_turn', stop_sequence: null },
    usage: { output_tokens: f.output },
  });
  ev.push({ sse: eventLine('message_stop', { type: 'message_stop' }), terminator: true });
  return ev;
}

function cohereStream(f, pieces, reasoningPieces) {
  const ev = [];
  const e = (type, obj, kind = {}) => ev.push({ sse: eventLine(type, { type, ...obj }), ...kind });
  e('message-start', { id: randomUUID(), delta: { message: { role: 'assistant' } } });
  let index = 0;
  if (f.reasoning) {
    // The fixtures show a `thinking` content block only in a whole answer
    // (chat_response_tool_calls.json), not in a stream. This mirrors the text
    // content events with `thinking` in place of `text`: content-start with
    // {type:"thinking", thinking:""}, content-delta with
    // delta.message.content.thinking, content-end.
    e('content-start', { index, delta: { message: { content: { type: 'thinking', thinking: '' } } } });
    for (const p of reasoningPieces) e('content-delta', { index, delta: { message: { content: { thinking: p } } } }, { reasoning: true });
    e('content-end', { index });
    index++;
  }
  if (f.toolCall) {
    const plan = f.explicitText ? f.text : `I will use the ${f.toolCall.name} tool.`;
    for (const p of splitText(plan)) e('tool-plan-delta', { delta: { message: { tool_plan: p } } });
    e('tool-call-start', {
      index: 0,
      delta: {
        message: {
          tool_calls: {
            id: `${f.toolCall.name}_${alnum(12).toLowerCase()}`,
            type: 'function',
            function: { name: f.toolCall.name, arguments: '' },
          },
        },
      },
    });
    for (const p of splitString(argsString(f.toolCall.arguments), pieces.length)) {
      e('tool-call-delta', { index: 0, delta: { message: { tool_calls: { function: { arguments: p } } } } }, { delta: true });
    }
    e('tool-call-end', { index: 0 });
  } else {
    e('content-start', { index, delta: { message: { content: { type: 'text', text: '' } } } });
    for (const p of pieces) e('content-delta', { index, delta: { message: { content: { text: p } } } }, { delta: true });
    e('content-end', { index });
  }
  e('message-end', {
    delta: {
      finish_reason: f.toolCall ? 'TOOL_CALL' : 'COMPLETE',
      usage: {
        billed_units: { input_tokens: f.input, output_tokens: f.output },
        tokens: { input_tokens: f.input + 66, output_tokens: f.output },
      },
    },
  });
  ev.push({ sse: 'data: [DONE]\n\n', terminator: true });
  return ev;
}

/** The start of a text delta event with no line end, which a trickle never finishes. */
function trickleHead(fmt, f) {
  if (fmt === 'openai') {
    const head = {
      id: `chatcmpl-${alnum(29)}`,
      object: 'chat.completion.chunk',
      created: Math.floor(Date.now() / 1000),
      model: f.model,
      choices: [{ index: 0, delta: { content: '' } }],
    };
    return `data: ${JSON.stringify(head).slice(0, -'"}}]}'.length)}`;
  }
  if (fmt === 'anthropic') return 'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"';
  return 'data: {"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"';
}

/** The provider's error inside a stream (after a 200 head). */
function inStreamError(fmt) {
  if (fmt === 'anthropic') {
    // Verbatim from Anthropic's streaming docs (anthropic/stream_error_overloaded.sse).
    return 'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n';
  }
  if (fmt === 'openai') {
    return dataLine({
      error: {
        message: 'The server had an error while processing your request. Sorry about that!',
        type: 'server_error',
        param: null,
        code: null,
      },
    });
  }
  // Cohere documents no in-stream error event; a message-end with
  // finish_reason ERROR is what a failed generation ends with (MAPPING.md 6).
  return (
    eventLine('message-end', {
      type: 'message-end',
      delta: { finish_reason: 'ERROR', usage: { billed_units: { input_tokens: 0, output_tokens: 0 }, tokens: { input_tokens: 0, output_tokens: 0 } } },
    }) + 'data: [DONE]\n\n'
  );
}

// ------------------------------------------------------------ split writes

export const SPLIT_MODES = ['event', 'bytes', 'coalesce', 'mixed'];
const EOLS = { lf: '\n', crlf: '\r\n', cr: '\r' };

/** What is wrong with a behaviour's options (a test's mistake), or null. */
function behaviourProblem(b) {
  if (b.split !== undefined && !SPLIT_MODES.includes(b.split)) return `unknown split mode ${b.split}`;
  if (b.eol !== undefined && !(b.eol in EOLS)) return `unknown eol ${b.eol} (lf, crlf or cr)`;
  if (b.reasoningField !== undefined && !['reasoning_content', 'reasoning'].includes(b.reasoningField)) {
    return `unknown reasoningField ${b.reasoningField} (reasoning_content or reasoning)`;
  }
  if (b.usageVariant !== undefined && !['cached_null', 'no_total', 'no_details', 'none'].includes(b.usageVariant)) {
    return `unknown usageVariant ${b.usageVariant} (cached_null, no_total, no_details or none)`;
  }
  return null;
}

function checkSplit(mode) {
  if (!SPLIT_MODES.includes(mode)) throw new Error(`unknown split mode ${mode} (one of ${SPLIT_MODES.join(', ')})`);
}

/** A small seeded PRNG (mulberry32), so that splitSeed replays a split. */
function prng(seed) {
  let a = (Number.isFinite(seed) ? seed : Math.floor(Math.random() * 2 ** 32)) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Writes a stream's events to `res`, cut into writes the way `mode` says:
 *   event     one write per event (res.write of the event's string)
 *   bytes     writes of 1 to 7 bytes, cutting through events, prefixes,
 *             line ends and UTF-8 sequences alike (Buffer slices)
 *   coalesce  2 to 4 whole events per write
 *   mixed     each write picks one of: 1-7 bytes, 8-64 bytes, one event, 2-4 events
 * push(text) adds an event; bytes that do not make a whole write yet are held
 * back until the next push or flush(). Without `pause` every write is made at
 * once and both return null; with it they wait `pause()` between two writes
 * and return a promise. settled() is null, or a promise for the moment every
 * write has been handed to the socket.
 */
function splitWriter(res, { mode, seed, pause }) {
  const rand = prng(seed);
  const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
  let held = Buffer.alloc(0);
  let ends = []; // offsets in `held` where an event ends
  let need = null; // what the next write waits for: { bytes } or { events }
  let wroteAny = false;
  let inflight = 0;
  const waiters = [];
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  const written = () => {
    if (--inflight <= 0) {
      inflight = 0;
      wake();
    }
  };
  res.on('close', () => {
    inflight = 0;
    wake();
  });
  const write = (chunk) => {
    inflight++;
    wroteAny = true;
    res.write(chunk, written);
  };
  const pick = () => {
    if (mode === 'bytes') return { bytes: int(1, 7) };
    if (mode === 'coalesce') return { events: int(2, 4) };
    const r = rand();
    if (r < 0.4) return { bytes: int(1, 7) };
    if (r < 0.6) return { bytes: int(8, 64) };
    if (r < 0.8) return { events: 1 };
    return { events: int(2, 4) };
  };
  function* cuts(final) {
    while (held.length) {
      need ??= pick();
      let n = 0;
      if (need.bytes !== undefined) n = held.length >= need.bytes ? need.bytes : final ? held.length : 0;
      else n = ends.length >= need.events ? ends[need.events - 1] : final ? held.length : 0;
      if (!n) return;
      need = null;
      const chunk = held.subarray(0, n);
      held = held.subarray(n);
      ends = ends.filter((e) => e > n).map((e) => e - n);
      yield chunk;
    }
  }
  const run = (pieces) => {
    if (!pause) {
      for (const c of pieces) {
        if (res.destroyed) return null;
        write(c);
      }
      return null;
    }
    return (async () => {
      for (const c of pieces) {
        if (wroteAny) await pause();
        if (res.destroyed) return;
        write(c);
      }
    })();
  };
  return {
    push(text) {
      if (mode === 'event') return run([text]);
      const b = Buffer.isBuffer(text) ? text : Buffer.from(text, 'utf8');
      held = held.length ? Buffer.concat([held, b]) : b;
      ends.push(held.length);
      return run(cuts(false));
    },
    flush() {
      return mode === 'event' || !held.length ? null : run(cuts(true));
    },
    settled() {
      return inflight === 0 ? null : new Promise((r) => waiters.push(r));
    },
  };
}

// ------------------------------------------------------------- error bodies

/** {status, headers, body} for an error behaviour. */
export function errorResponse(fmt, status, { body, headers } = {}) {
  const rel = ERROR_FIXTURES[fmt][status];
  let fix = rel ? fixture(rel) : null;
  // OpenAI's only recorded 400 is the context-length one; a plain 400 gets a generic body.
  if (fmt === 'openai' && status === 400) fix = null;
  const outHeaders = { 'content-type': 'application/json' };
  if (fix) {
    for (const [k, v] of Object.entries(headerPairsToObject(fix.headers))) {
      if (k === 'content-length' || k === 'retry-after' || k === 'retry-after-ms') continue;
      outHeaders[k] = v;
    }
  } else {
    Object.assign(outHeaders, defaultResponseHeaders(fmt));
  }
  for (const [k, v] of Object.entries(headers || {})) {
    if (v === null || v === undefined) delete outHeaders[k.toLowerCase()];
    else outHeaders[k.toLowerCase()] = String(v);
  }
  let outBody = body;
  if (outBody === undefined) outBody = fix ? fix.body : genericErrorBody(fmt, status);
  return { status, headers: outHeaders, body: outBody };
}

/** The API key a request carries in the format's auth header ('' when none). */
function apiKeyOf(fmt, headers) {
  if (fmt === 'anthropic' && typeof headers['x-api-key'] === 'string') return headers['x-api-key'];
  const auth = typeof headers.authorization === 'string' ? headers.authorization : '';
  return /^bearer /i.test(auth) ? auth.slice(7) : auth;
}

/** A string cut to at most `n` bytes of UTF-8, on a character boundary. */
function cutToBytes(s, n) {
  let out = Buffer.from(s, 'utf8').subarray(0, n).toString('utf8');
  while (Buffer.byteLength(out) > n || out.endsWith('\ufffd')) out = out.slice(0, -1);
  return out;
}

/**
 * An error body with echoKey / echoKeyAt / padBytes applied to its message
 * (error.message in the OpenAI and Anthropic envelopes, message in Cohere's;
 * a string body is the message itself).
 *   echoKey: true   the message is "Incorrect API key provided: <key>." (the
 *                   OpenAI wording, unmasked; OpenAI adds its "You can find your
 *                   API key at …" sentence)
 *   echoKeyAt: N    the same with the key starting N characters into the message
 *   padBytes: N     the message is exactly N bytes of UTF-8: padded with " xxx…",
 *                   or cut (which can cut an echoed key)
 */
function errorMessageExtras(fmt, body, b, headers) {
  const echo = b.echoKey === true || b.echoKeyAt !== undefined;
  const pad = Number.isInteger(b.padBytes) && b.padBytes >= 0 ? b.padBytes : null;
  if (!echo && pad === null) return body;
  let message;
  let put;
  if (typeof body === 'string') {
    message = body;
    put = (m) => m;
  } else {
    const out = body && typeof body === 'object' && !Array.isArray(body) ? structuredClone(body) : {};
    const holder = fmt === 'cohere' ? out : out.error && typeof out.error === 'object' ? out.error : (out.error = {});
    message = typeof holder.message === 'string' ? holder.message : '';
    put = (m) => {
      holder.message = m;
      return out;
    };
  }
  if (echo) {
    const lead = 'Incorrect API key provided: ';
    const at = Number.isFinite(b.echoKeyAt) ? Math.max(0, Math.floor(b.echoKeyAt)) : lead.length;
    const head = at <= lead.length ? lead.slice(lead.length - at) : '.'.repeat(at - lead.length) + lead;
    const tail = fmt === 'openai' ? '. You can find your API key at https://platform.openai.com/account/api-keys.' : '.';
    message = head + apiKeyOf(fmt, headers) + tail;
  }
  if (pad !== null) {
    const have = Buffer.byteLength(message);
    message = have > pad ? cutToBytes(message, pad) : message + (' ' + 'x'.repeat(pad)).slice(0, pad - have);
    message += 'x'.repeat(pad - Buffer.byteLength(message)); // a cut multi-byte character
  }
  return put(message);
}

function genericErrorBody(fmt, status) {
  const text = STATUS_TEXT[status] || `HTTP ${status}`;
  if (fmt === 'openai') {
    const type = status >= 500 ? 'server_error' : 'invalid_request_error';
    return { error: { message: text, type, param: null, code: null } };
  }
  if (fmt === 'anthropic') {
    const type = ANTHROPIC_ERROR_TYPES[status] || (status >= 500 ? 'api_error' : 'invalid_request_error');
    return { type: 'error', error: { type, message: text }, request_id: `req_011C${alnum(20)}` };
  }
  return { id: randomUUID(), message: text.toLowerCase() };
}

function contextLengthResponse(fmt) {
  const fix = fixture(CONTEXT_FIXTURES[fmt]);
  const headers = headerPairsToObject(fix.headers);
  delete headers['content-length'];
  return { status: 400, headers, body: fix.body };
}

function contentPolicyResponse(fmt) {
  return {
    status: 400,
    headers: { 'content-type': 'application/json', ...defaultResponseHeaders(fmt) },
    body: structuredClone(CONTENT_POLICY[fmt]),
  };
}

function defaultResponseHeaders(fmt) {
  if (fmt === 'openai') {
    return { 'x-request-id': `req_${hex(32)}`, 'openai-version': '2020-10-01', 'openai-processing-ms': '412' };
  }
  if (fmt === 'anthropic') {
    return { 'request-id': `req_011C${alnum(20)}`, 'anthropic-organization-id': randomUUID() };
  }
  return { 'x-debug-trace-id': hex(32) };
}

// --------------------------------------------------------- request checking

/**
 * What the real API says to a request it cannot accept, or null. Only the
 * checks that catch translation bugs: fields the API requires and shapes it
 * rejects.
 */
function validateRequest(fmt, body, headers) {
  const bad = (message) => {
    if (fmt === 'openai') {
      return { status: 400, body: { error: { message, type: 'invalid_request_error', param: null, code: null } } };
    }
    if (fmt === 'anthropic') {
      return {
        status: 400,
        body: { type: 'error', error: { type: 'invalid_request_error', message }, request_id: `req_011C${alnum(20)}` },
      };
    }
    return { status: 400, body: { id: randomUUID(), message: `invalid request: ${message}` } };
  };
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return bad('We could not parse the JSON body of your request.');
  }
  if (typeof body.model !== 'string' || !body.model) return bad('model: Field required');
  if (!Array.isArray(body.messages) || body.messages.length === 0) return bad('messages: Field required');
  if (fmt === 'anthropic') {
    if (!headers['anthropic-version']) return bad('anthropic-version: header is required');
    if (!Number.isInteger(body.max_tokens)) return bad('max_tokens: Field required');
    for (const [i, m] of body.messages.entries()) {
      if (m?.role !== 'user' && m?.role !== 'assistant') {
        return bad(`messages.${i}.role: Input should be 'user' or 'assistant'`);
      }
      if (Array.isArray(m?.content)) {
        for (const [j, b] of m.content.entries()) {
          if (b?.type === 'tool_use' && (typeof b.input !== 'object' || b.input === null || Array.isArray(b.input))) {
            return bad(`messages.${i}.content.${j}.tool_use.input: Input should be a valid dictionary`);
          }
        }
      }
    }
    if (Array.isArray(body.tools)) {
      for (const [i, t] of body.tools.entries()) {
        if (typeof t?.name !== 'string' || typeof t?.input_schema !== 'object') {
          return bad(`tools.${i}.custom.input_schema: Field required`);
        }
      }
    }
  }
  if (fmt === 'openai' && body.n !== undefined && body.n !== null) {
    // OpenAI's wording for a request that breaks its schema (n is 1 to 128).
    if (!Number.isInteger(body.n)) return bad(`${JSON.stringify(body.n)} is not of type 'integer' - 'n'`);
    if (body.n < 1) return bad(`${body.n} is less than the minimum of 1 - 'n'`);
    if (body.n > 128) return bad(`${body.n} is greater than the maximum of 128 - 'n'`);
  }
  if (fmt === 'openai' || fmt === 'cohere') {
    for (const [i, m] of body.messages.entries()) {
      if (typeof m?.role !== 'string') return bad(`messages[${i}].role: Field required`);
      if (Array.isArray(m.tool_calls)) {
        for (const tc of m.tool_calls) {
          if (typeof tc?.function?.arguments !== 'string') {
            return bad(`messages[${i}].tool_calls: function.arguments must be a string`);
          }
        }
      }
    }
  }
  return null;
}

// ------------------------------------------------------------------- server

const CHAT_PATHS = { openai: '/v1/chat/completions', anthropic: '/v1/messages', cohere: '/v2/chat' };

// The other APIs a format's host serves, by "METHOD path": OpenAI's
// Responses and embeddings, Anthropic's token count, Cohere's embed.
const EXTRA_PATHS = {
  openai: { 'POST /v1/responses': 'responses', 'POST /v1/embeddings': 'embeddings' },
  anthropic: { 'POST /v1/messages/count_tokens': 'count_tokens' },
  cohere: { 'POST /v2/embed': 'embed' },
};

/** A deterministic unit-length vector for a text (the same text, the same vector). */
function fakeVector(text, model, dims) {
  let h = 2166136261;
  for (const c of `${model}|${text}`) h = Math.imul(h ^ c.codePointAt(0), 16777619) >>> 0;
  const next = prng(h);
  const v = Array.from({ length: dims }, () => next() * 2 - 1);
  const norm = Math.hypot(...v) || 1;
  return v.map((x) => Math.fround(x / norm));
}

function f32Base64(v) {
  const buf = Buffer.alloc(v.length * 4);
  v.forEach((x, i) => buf.writeFloatLE(x, i * 4));
  return buf.toString('base64');
}

/** Responses input as plain text (for token counts). */
function responsesInputText(body) {
  if (typeof body?.input === 'string') return body.input;
  return JSON.stringify(body?.input ?? '');
}

/** A whole Responses answer, and its stream of events, for `text` (and a function call). */
function responsesAnswer(body, b, name) {
  const id = `resp_${hex(24)}`;
  const text = typeof b.text === 'string' ? b.text : `Hello from ${name}`;
  const model = typeof body?.model === 'string' ? body.model : 'unknown-model';
  const input = Math.max(1, Math.ceil(responsesInputText(body).length / 4));
  const call = b.toolCall && Array.isArray(body?.tools) && body.tools.length ? b.toolCall : null;
  const output = [];
  const msg = { id: `msg_${hex(24)}`, type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text, annotations: [], logprobs: [] }] };
  if (text) output.push(msg);
  if (call) {
    output.push({ id: `fc_${hex(24)}`, type: 'function_call', status: 'completed', call_id: `call_${alnum(24)}`, name: call.name, arguments: argsString(call.arguments) });
  }
  const outTokens = tokensOf(text) + (call ? 10 : 0) + 1;
  const usage = { input_tokens: input, input_tokens_details: { cached_tokens: 0, cache_write_tokens: 0 }, output_tokens: outTokens, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: input + outTokens };
  const response = (status, out, u) => ({
    id, object: 'response', created_at: Math.floor(Date.now() / 1000), status, error: null, incomplete_details: null,
    model, output: out, parallel_tool_calls: true, previous_response_id: null, store: false,
    text: { format: { type: 'text' } }, tool_choice: 'auto', tools: [], usage: u, metadata: {},
  });
  return { whole: response('completed', output, usage), response, msg, call, text, usage, output };
}

function responsesEvents(a, b) {
  const evs = [];
  const push = (type, data) => evs.push({ type, data: { type, sequence_number: evs.length, ...data } });
  push('response.created', { response: a.response('in_progress', [], null) });
  push('response.in_progress', { response: a.response('in_progress', [], null) });
  let oi = 0;
  if (a.text) {
    const m = a.msg;
    push('response.output_item.added', { output_index: oi, item: { ...m, status: 'in_progress', content: [] } });
    push('response.content_part.added', { item_id: m.id, output_index: oi, content_index: 0, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } });
    for (const piece of splitText(a.text, b.chunks)) {
      push('response.output_text.delta', { item_id: m.id, output_index: oi, content_index: 0, delta: piece, logprobs: [], delta_content: true });
    }
    push('response.output_text.done', { item_id: m.id, output_index: oi, content_index: 0, text: a.text, logprobs: [] });
    push('response.content_part.done', { item_id: m.id, output_index: oi, content_index: 0, part: m.content[0] });
    push('response.output_item.done', { output_index: oi, item: m });
    oi++;
  }
  if (a.call) {
    const fc = a.output[a.output.length - 1];
    push('response.output_item.added', { output_index: oi, item: { ...fc, arguments: '', status: 'in_progress' } });
    for (const piece of splitString(fc.arguments, 3)) {
      push('response.function_call_arguments.delta', { item_id: fc.id, output_index: oi, delta: piece, delta_content: true });
    }
    push('response.function_call_arguments.done', { item_id: fc.id, output_index: oi, name: fc.name, arguments: fc.arguments });
    push('response.output_item.done', { output_index: oi, item: fc });
  }
  push('response.completed', { response: a.whole });
  return evs;
}

/**
 * Starts a fake provider.
 * @param {{format: 'openai'|'anthropic'|'cohere', name?: string, port?: number, key?: string,
 *          validate?: boolean, host?: string, split?: 'event'|'bytes'|'coalesce'|'mixed',
 *          rejectPrefillModels?: string[]}} opts
 */
export async function startFakeProvider({
  format,
  name,
  port = 0,
  key,
  validate = true,
  host = '127.0.0.1',
  split: initialSplit = 'event',
  rejectPrefillModels = [],
}) {
  if (!FORMATS.includes(format)) throw new Error(`unknown format ${format}`);
  const patterns = (list) => (Array.isArray(list) ? list : [list]).filter((p) => typeof p === 'string' && p !== '');
  let rejectPrefillPatterns = patterns(rejectPrefillModels);
  checkSplit(initialSplit);
  let split = initialSplit;
  name = name ?? format;
  const requests = [];
  let queue = [];
  let fallback = { type: 'ok' };
  let outage = null;
  let modelsBehaviour = null;
  const sockets = new Set();
  const timers = new Set();
  let closed = false;
  let abandoned = 0;
  let flooded = 0; // bytes a 'flood' stream has handed to its socket

  const immediates = new Set();
  /** The next turn of the event loop (a write made before it has left by then). */
  const soon = () =>
    new Promise((resolve) => {
      const i = setImmediate(() => {
        immediates.delete(i);
        resolve();
      });
      immediates.add(i);
    });

  const later = (ms) =>
    new Promise((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });

  const nextBehaviour = () => (queue.length ? queue.shift() : fallback);

  const sendJson = (res, status, body, headers = {}) => {
    if (res.destroyed || res.headersSent) return;
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', ...headers, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  /** A 200 JSON body without content-length, `per` bytes per chunk. */
  const sendChunked = async (res, body, per) => {
    if (res.destroyed || res.headersSent) return;
    const bytes = Buffer.from(JSON.stringify(body), 'utf8');
    res.writeHead(200, { 'content-type': 'application/json', ...defaultResponseHeaders(format) });
    for (let i = 0; i < bytes.length; i += per) {
      if (closed || res.destroyed) return;
      res.write(bytes.subarray(i, i + per));
      await soon();
    }
    res.end();
  };

  const server = http.createServer(async (req, res) => {
    const at = performance.now();
    res.on('error', () => {});
    req.on('error', () => {});
    let raw = '';
    try {
      for await (const chunk of req) raw += chunk;
    } catch {
      return;
    }
    const url = new URL(req.url, 'http://x');

    if (url.pathname.startsWith('/__fake/')) return admin(req, res, url.pathname, raw);

    let body = raw;
    if (raw) {
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
      }
    }
    const isChat = req.method === 'POST' && url.pathname === CHAT_PATHS[format];
    const isModels = req.method === 'GET' && url.pathname === '/v1/models';
    const extraKind = EXTRA_PATHS[format][`${req.method} ${url.pathname}`];
    requests.push({
      at,
      method: req.method,
      path: url.pathname,
      headers: { ...req.headers },
      body,
      kind: isChat ? 'chat' : isModels ? 'models' : extraKind ?? 'other',
    });

    if (key !== undefined && !authorised(req.headers)) {
      const r = errorResponse(format, 401);
      return sendJson(res, r.status, r.body, r.headers);
    }
    if (outage && (isModels || isChat)) {
      try {
        await respond(req, res, outage, body, isModels);
      } catch {
        res.destroy();
      }
      return;
    }
    if (isModels && modelsBehaviour) {
      try {
        await respond(req, res, modelsBehaviour, body, true);
      } catch {
        res.destroy();
      }
      return;
    }
    if (isModels) return sendJson(res, 200, fixture(MODELS_FIXTURES[format]), defaultResponseHeaders(format));
    if (extraKind) {
      try {
        await extra(req, res, extraKind, nextBehaviour(), body);
      } catch (e) {
        if (!res.headersSent && !res.destroyed) sendJson(res, 500, { error: { message: `fake provider bug: ${e.message}` } });
        else res.destroy();
      }
      return;
    }
    if (!isChat) {
      const r = errorResponse(format, 404, { body: notFoundBody(format, req.method, url.pathname) });
      return sendJson(res, r.status, r.body, r.headers);
    }

    const behaviour = nextBehaviour();
    try {
      await respond(req, res, behaviour, body);
    } catch (e) {
      if (!res.headersSent && !res.destroyed) sendJson(res, 500, { error: { message: `fake provider bug: ${e.message}` } });
      else res.destroy();
    }
  });

  /** A request for a model of rejectPrefillModels that ends with an assistant turn. */
  function rejectsPrefill(body) {
    const model = body?.model;
    if (typeof model !== 'string' || !rejectPrefillPatterns.length) return false;
    const msgs = Array.isArray(body.messages) ? body.messages : [];
    const last = msgs[msgs.length - 1];
    if (!last || last.role !== 'assistant' || last.tool_calls) return false;
    return rejectPrefillPatterns.some((p) => (p.endsWith('*') ? model.startsWith(p.slice(0, -1)) : model === p));
  }

  function authorised(h) {
    if (format === 'anthropic') return h['x-api-key'] === key;
    const auth = h['authorization'] || '';
    return /^bearer /i.test(auth) && auth.slice(7) === key;
  }

  /** The Responses, embeddings, embed and count_tokens endpoints: ok, error, hang, reset, delay, and stream faults. */
  async function extra(req, res, kind, b, body) {
    if (!b || typeof b !== 'object') b = { type: 'ok' };
    const type = b.type ?? 'ok';
    if (type === 'hang') return;
    if (type === 'reset') return void req.socket.destroy();
    if (b.delayMs) await later(b.delayMs);
    if (closed || res.destroyed) return;
    if (type === 'error') {
      const r = errorResponse(format, b.status ?? 500, { body: b.body, headers: b.headers });
      return sendJson(res, r.status, r.body, r.headers);
    }
    if (kind === 'count_tokens') {
      const tokens = Math.max(1, Math.ceil(JSON.stringify([body?.system ?? '', body?.messages ?? [], body?.tools ?? []]).length / 4));
      return sendJson(res, 200, { input_tokens: tokens }, defaultResponseHeaders(format));
    }
    if (kind === 'embeddings' || kind === 'embed') {
      const model = body?.model ?? 'unknown-model';
      const texts = kind === 'embed' ? body?.texts ?? [] : Array.isArray(body?.input) ? body.input : [body?.input];
      const dims = (kind === 'embed' ? body?.output_dimension : body?.dimensions) ?? 8;
      const vecs = texts.map((t) => fakeVector(typeof t === 'string' ? t : JSON.stringify(t), model, dims));
      const tokens = texts.reduce((n, t) => n + tokensOf(typeof t === 'string' ? t : JSON.stringify(t)), 0);
      if (kind === 'embed') {
        return sendJson(res, 200, { id: randomUUID(), texts, embeddings: { float: vecs }, meta: { api_version: { version: '2' }, billed_units: { input_tokens: tokens } } });
      }
      const b64 = body?.encoding_format === 'base64';
      const data = vecs.map((v, index) => ({ object: 'embedding', index, embedding: b64 ? f32Base64(v) : v }));
      return sendJson(res, 200, { object: 'list', data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } }, defaultResponseHeaders(format));
    }
    // Responses.
    if (typeof body?.model !== 'string' || body.input === undefined) {
      return sendJson(res, 400, { error: { message: "Missing required parameter: 'input'.", type: 'invalid_request_error', param: 'input', code: 'missing_required_parameter' } });
    }
    const a = responsesAnswer(body, b, name);
    if (!(body.stream === true || type === 'stream')) return sendJson(res, 200, a.whole, defaultResponseHeaders(format));
    if (b.firstByteDelayMs) await later(b.firstByteDelayMs);
    const state = streamHead(res);
    let deltas = 0;
    for (const ev of responsesEvents(a, b)) {
      if (closed || res.destroyed) return;
      const isDelta = ev.data.delta_content === true;
      delete ev.data.delta_content;
      if (isDelta) {
        if (b.cutAfter !== undefined && deltas >= b.cutAfter) return void res.destroy();
        if (b.errorEventAfter !== undefined && deltas >= b.errorEventAfter) {
          const seq = ev.data.sequence_number;
          const error = { type: 'server_error', code: 'server_error', message: 'The server had an error while processing your request.', param: null };
          res.write(`event: error\ndata: ${JSON.stringify({ type: 'error', sequence_number: seq, error })}\n\n`);
          res.write(`event: response.failed\ndata: ${JSON.stringify({ type: 'response.failed', sequence_number: seq + 1, response: { ...a.response('failed', [], null), error: { code: 'server_error', message: error.message } } })}\n\n`);
          state.finished = true;
          return void res.end();
        }
        deltas++;
        if (b.chunkDelayMs) await later(b.chunkDelayMs);
      }
      res.write(`event: ${ev.type}\ndata: ${JSON.stringify(ev.data)}\n\n`);
    }
    state.finished = true;
    res.end();
  }

  async function respond(req, res, b, body, isModels = false) {
    if (!b || typeof b !== 'object' || Array.isArray(b)) b = { type: 'ok' };
    const type = b?.type ?? 'ok';
    const wantsStream = typeof body === 'object' && body?.stream === true;

    if (type === 'hang') return; // the socket stays open until the client gives up or close()
    if (type === 'reset') {
      req.socket.destroy();
      return;
    }
    const problem = behaviourProblem(b);
    if (problem) return sendJson(res, 500, { error: { message: `fake provider: ${problem}` } });
    if (b.delayMs) await later(b.delayMs);
    if (closed || res.destroyed) return;

    if (type === 'error' || type === 'context_length' || type === 'content_policy') {
      const status = b.status ?? 500;
      let errBody = b.body;
      // The models listing of a host without one, and of a restricted OpenAI key.
      if (isModels && errBody === undefined && status === 404) errBody = notFoundBody(format, req.method, new URL(req.url, 'http://x').pathname);
      if (isModels && errBody === undefined && status === 403 && format === 'openai') errBody = structuredClone(OPENAI_MODELS_403);
      const r =
        type === 'error'
          ? errorResponse(format, status, { body: errBody, headers: b.headers })
          : type === 'context_length'
            ? contextLengthResponse(format)
            : contentPolicyResponse(format);
      return sendJson(res, r.status, errorMessageExtras(format, r.body, b, req.headers), r.headers);
    }

    if (isModels) {
      // The models listing under an outage: ok/stream answer normally, malformed is cut short.
      const text = JSON.stringify(fixture(MODELS_FIXTURES[format]));
      const out = type === 'malformed' ? text.slice(0, Math.floor(text.length / 2)) : text;
      return sendJson(res, 200, out, defaultResponseHeaders(format));
    }
    if (validate && (type === 'ok' || type === 'stream' || type === 'malformed' || type === 'trickle')) {
      const problem = validateRequest(format, body, req.headers);
      if (problem) return sendJson(res, problem.status, problem.body, defaultResponseHeaders(format));
    }

    if (rejectsPrefill(body)) {
      const message = 'This model does not support assistant message prefill. The conversation must end with a user message.';
      const r = errorResponse(format, 400, {
        body:
          format === 'anthropic'
            ? { type: 'error', error: { type: 'invalid_request_error', message }, request_id: null }
            : format === 'openai'
              ? { error: { message, type: 'invalid_request_error', param: 'messages', code: null } }
              : { id: randomUUID(), message },
      });
      if (format === 'anthropic') r.body.request_id = r.headers['request-id'] ?? `req_011C${alnum(20)}`;
      return sendJson(res, r.status, r.body, r.headers);
    }
    if (b.rejectPrefill && prefillOf(body)) {
      const r = errorResponse(format, 400, {
        body:
          format === 'anthropic'
            ? { type: 'error', error: { type: 'invalid_request_error', message: 'This model does not support assistant message prefill.' } }
            : format === 'openai'
              ? { error: { message: 'This model does not support assistant message prefill.', type: 'invalid_request_error', param: 'messages', code: null } }
              : { message: 'This model does not support assistant message prefill.' },
      });
      return sendJson(res, r.status, r.body, r.headers);
    }
    const facts = replyFacts(format, name, b, body);
    if (type === 'malformed') {
      const text = JSON.stringify(COMPLETION[format](facts));
      return sendJson(res, 200, text.slice(0, Math.floor(text.length / 2)), defaultResponseHeaders(format));
    }
    if (type === 'trickle') return trickle(res, b, facts);
    if (type === 'flood') return flood(res, b);
    if (type === 'stream' || (type === 'ok' && wantsStream)) return stream(res, b, facts, body);
    if (type === 'ok') {
      // The model thinks before a whole answer too: reasoningDelayMs per piece.
      if (facts.reasoning && b.reasoningDelayMs > 0) {
        await later(b.reasoningDelayMs * splitText(facts.reasoning, b.reasoningChunks).length);
        if (closed || res.destroyed) return;
      }
      const answer = COMPLETION[format](facts, b);
      // padBytes: an extra field whose value is that many bytes.
      if (Number.isInteger(b.padBytes) && b.padBytes > 0) answer.x_fake_padding = 'x'.repeat(b.padBytes);
      if (Number.isInteger(b.chunkedBytes) && b.chunkedBytes > 0) return sendChunked(res, answer, b.chunkedBytes);
      return sendJson(res, 200, answer, defaultResponseHeaders(format));
    }
    return sendJson(res, 500, { error: { message: `fake provider: unknown behaviour type ${type}` } });
  }

  /** What setSplit()/the split option and a behaviour's own split say, as writer options. */
  function writerOptions(b) {
    const delay = b.splitDelayMs;
    return {
      mode: b.split ?? split,
      seed: b.splitSeed,
      pause: typeof delay === 'number' && delay >= 0 ? (delay > 0 ? () => later(delay) : soon) : null,
    };
  }

  /** Sends the 200 head of a stream and counts the stream if its reader leaves early. */
  function streamHead(res) {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      ...defaultResponseHeaders(format),
    });
    res.flushHeaders();
    // A stream whose reader goes away before its end is counted (the gateway
    // must stop reading upstream when its client leaves).
    const state = { finished: false };
    res.on('close', () => {
      if (!state.finished && !closed) abandoned++;
    });
    return state;
  }

  async function stream(res, b, facts, body) {
    if (b.firstByteDelayMs) await later(b.firstByteDelayMs);
    if (closed || res.destroyed) return;
    const events = streamEvents(format, facts, b, body);
    const state = streamHead(res);
    const out = splitWriter(res, writerOptions(b));
    const eol = EOLS[b.eol ?? 'lf'];
    const lines = eol === '\n' ? (s) => s : (s) => s.replace(/\n/g, eol);
    // push/flush return a promise only when the writes are paced (splitDelayMs);
    // otherwise they write at once, and nothing here awaits between events.
    let w;
    let deltas = 0;
    let started = false; // reached the first content delta
    const gap = b.chunkDelayMs ?? 0;
    const due = (n) => n !== undefined && started && deltas >= n;
    for (const ev of events) {
      if (closed || res.destroyed) return;
      if (ev.pauseMs !== undefined) {
        if ((w = out.flush())) await w;
        await later(ev.pauseMs);
        continue;
      }
      // Faults fire at the first event once N deltas are out: a delta, or the
      // first event after the last delta when N equals the number of deltas.
      if (ev.delta) started = true;
      if (due(b.cutAfter)) {
        // The N deltas reach the client first: writes made in the same tick
        // are corked until the next one, and a destroy now would drop them.
        if ((w = out.flush())) await w;
        if ((w = out.settled())) await w;
        res.socket?.destroy();
        return;
      }
      if (due(b.stallAfter)) {
        if ((w = out.flush())) await w;
        return; // open until the client gives up or close()
      }
      if (due(b.errorEventAfter)) {
        if ((w = out.push(lines(inStreamError(format))))) await w;
        if ((w = out.flush())) await w;
        if (!res.destroyed) res.end();
        return;
      }
      if (ev.terminator && b.noDone) break;
      let sse = ev.sse;
      if (ev.delta && b.malformedAt !== undefined && deltas === b.malformedAt) {
        sse = sse.slice(0, Math.floor(sse.length / 2)).replace(/\n+$/, '') + '\n\n';
      }
      if ((w = out.push(lines(sse)))) await w;
      if (ev.delta) {
        deltas++;
        if (gap) {
          // An event is whole on the wire before a pause.
          if ((w = out.flush())) await w;
          await later(gap);
        }
      }
      if (ev.reasoning && b.reasoningDelayMs > 0) {
        if ((w = out.flush())) await w;
        await later(b.reasoningDelayMs);
      }
    }
    if ((w = out.flush())) await w;
    if (closed || res.destroyed) return;
    state.finished = true;
    res.end();
  }

  /** See `flood` above: a stream paced by its reader, counting what it took. */
  async function flood(res, b) {
    const state = streamHead(res);
    const size = b.eventBytes ?? 4096;
    const text = 'abcdefgh'.repeat(Math.ceil(size / 8)).slice(0, size);
    const ev = (delta, finish = null) =>
      `data: ${JSON.stringify({ id: 'chatcmpl-flood', object: 'chat.completion.chunk', created: 1, model: 'flood', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    flooded = 0;
    const write = async (sse) => {
      flooded += Buffer.byteLength(sse);
      if (!res.write(sse)) await new Promise((r) => (res.once('drain', r), res.once('close', r)));
    };
    await write(ev({ role: 'assistant', content: '' }));
    for (let i = 0; i < (b.events ?? 10_000); i++) {
      if (closed || res.destroyed) return;
      await write(ev({ content: text }));
    }
    await write(ev({}, 'stop'));
    await write('data: [DONE]\n\n');
    state.finished = true;
    res.end();
  }

  /**
   * A 200 event stream whose body never has a line end: the start of a text
   * delta event, then "a" for ever (or up to limitBytes of body in all).
   */
  async function trickle(res, b, facts) {
    if (b.firstByteDelayMs) await later(b.firstByteDelayMs);
    if (closed || res.destroyed) return;
    const per = Number.isInteger(b.bytesPerWrite) && b.bytesPerWrite > 0 ? b.bytesPerWrite : 1024;
    const every = Number.isFinite(b.everyMs) && b.everyMs >= 0 ? b.everyMs : 5;
    const limit = Number.isFinite(b.limitBytes) && b.limitBytes >= 0 ? Math.floor(b.limitBytes) : Infinity;
    const head = Buffer.from(trickleHead(format, facts), 'utf8');
    const state = streamHead(res);
    const out = splitWriter(res, writerOptions(b));
    let sent = 0;
    let w;
    while (sent < limit) {
      if (closed || res.destroyed) return;
      const n = Math.min(per, limit - sent);
      const piece = Buffer.alloc(n, 'a');
      if (sent < head.length) head.copy(piece, 0, sent, Math.min(head.length, sent + n));
      if ((w = out.push(piece))) await w;
      if ((w = out.flush())) await w;
      sent += n;
      if (sent >= limit) break;
      // A slow reader holds the writes back rather than the fake's memory.
      if (res.writableNeedDrain) {
        await new Promise((resolve) => {
          const done = () => {
            res.off('drain', done);
            res.off('close', done);
            resolve();
          };
          res.on('drain', done);
          res.on('close', done);
        });
      }
      if (every > 0) await later(every);
      else await soon();
    }
    if (closed || res.destroyed) return;
    state.finished = true;
    res.end();
  }

  async function admin(req, res, pathname, raw) {
    let data;
    if (raw) {
      try {
        data = JSON.parse(raw);
      } catch {
        return sendJson(res, 400, { error: 'body must be JSON' });
      }
    }
    if (req.method === 'POST' && pathname === '/__fake/behaviour') {
      if (!data || typeof data !== 'object' || Array.isArray(data)) return sendJson(res, 400, { error: 'send one behaviour object' });
      fallback = data;
      return sendJson(res, 200, { name, default: fallback });
    }
    if (req.method === 'POST' && pathname === '/__fake/script') {
      if (!Array.isArray(data)) return sendJson(res, 400, { error: 'send a JSON array of behaviours' });
      queue = [...data];
      return sendJson(res, 200, { name, script: queue, default: fallback });
    }
    if (req.method === 'GET' && pathname === '/__fake/requests') {
      return sendJson(res, 200, {
        name,
        count: requests.length,
        chats: requests.filter((r) => r.kind === 'chat').length,
        last: requests.slice(-5),
      });
    }
    if (req.method === 'POST' && pathname === '/__fake/outage') {
      if (data !== null && data !== undefined && (typeof data !== 'object' || Array.isArray(data))) {
        return sendJson(res, 400, { error: 'send one behaviour object, or null to end the outage' });
      }
      outage = data ?? null;
      return sendJson(res, 200, { name, outage });
    }
    if (req.method === 'POST' && pathname === '/__fake/split') {
      const mode = typeof data === 'object' && data !== null ? data.mode : data;
      if (mode !== null && mode !== undefined && !SPLIT_MODES.includes(mode)) {
        return sendJson(res, 400, { error: `send one of ${SPLIT_MODES.map((m) => JSON.stringify(m)).join(', ')}, or null` });
      }
      api.setSplit(mode ?? null);
      return sendJson(res, 200, { name, split });
    }
    if (req.method === 'POST' && pathname === '/__fake/models') {
      if (data !== null && data !== undefined && (typeof data !== 'object' || Array.isArray(data))) {
        return sendJson(res, 400, { error: 'send one behaviour object, or null for the recorded list' });
      }
      modelsBehaviour = data ?? null;
      return sendJson(res, 200, { name, models: modelsBehaviour });
    }
    if (req.method === 'GET' && pathname === '/__fake/behaviour') {
      return sendJson(res, 200, { name, script: queue, default: fallback, outage, split, models: modelsBehaviour });
    }
    if (req.method === 'POST' && pathname === '/__fake/reset') {
      api.reset();
      return sendJson(res, 200, { name, reset: true });
    }
    return sendJson(res, 404, { error: 'unknown admin endpoint' });
  }

  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
  });
  server.keepAliveTimeout = 5000;

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actualPort = server.address().port;
  const origin = `http://${host}:${actualPort}`;

  const api = {
    name,
    /** Streams whose reader left before the end (see stream()). */
    get abandoned() {
      return abandoned;
    },
    /** Bytes the last 'flood' stream handed to its socket. */
    get flooded() {
      return flooded;
    },
    format,
    port: actualPort,
    origin,
    baseUrl: format === 'openai' ? `${origin}/v1` : origin,
    requests,
    /** Only the chat requests (what behaviours apply to). */
    get chats() {
      return requests.filter((r) => r.kind === 'chat');
    },
    script(...behaviours) {
      queue.push(...behaviours.flat());
      return api;
    },
    setDefault(behaviour) {
      fallback = behaviour ?? { type: 'ok' };
      return api;
    },
    /** Every endpoint (chat and models) behaves so until setOutage(null). */
    setOutage(behaviour) {
      outage = behaviour ?? null;
      return api;
    },
    /** How every stream's bytes are cut into writes, unless its behaviour says `split`. */
    setSplit(mode) {
      checkSplit(mode ?? initialSplit);
      split = mode ?? initialSplit;
      return api;
    },
    get split() {
      return split;
    },
    /** Models (strings, a trailing * matches a prefix) that refuse an assistant prefill. */
    setRejectPrefillModels(list) {
      rejectPrefillPatterns = patterns(list ?? []);
      return api;
    },
    /** What GET /v1/models answers (any behaviour), chat untouched; null: the recorded list. */
    setModelsBehaviour(behaviour) {
      modelsBehaviour = behaviour ?? null;
      return api;
    },
    reset() {
      split = initialSplit;
      rejectPrefillPatterns = patterns(rejectPrefillModels);
      modelsBehaviour = null;
      requests.length = 0;
      queue = [];
      fallback = { type: 'ok' };
      outage = null;
      return api;
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const i of immediates) clearImmediate(i);
      immediates.clear();
      for (const s of sockets) s.destroy();
      server.closeAllConnections?.();
      await new Promise((r) => server.close(() => r()));
    },
  };
  return api;
}

/** Starts several fakes; `specs` is a list of startFakeProvider options. */
export async function startFakeProviders(specs) {
  const out = {};
  for (const s of specs) out[s.name ?? s.format] = await startFakeProvider(s);
  return out;
}

/**
 * Parses an SSE body into [{event?, data}] (data left as the raw string).
 * CRLF and CR line ends count as LF; a block of only comments (`: keep-alive`)
 * is no event.
 */
export function parseSse(text) {
  const out = [];
  for (const block of text.replace(/\r\n?/g, '\n').split(/\n\n/)) {
    if (!block.trim()) continue;
    if (block.split('\n').every((l) => l === '' || l.startsWith(':'))) continue;
    const ev = {};
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) ev.event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    ev.data = data.join('\n');
    out.push(ev);
  }
  return out;
}
