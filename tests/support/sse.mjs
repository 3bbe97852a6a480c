// Reading the gateway's SSE answers in end-to-end tests.

import { performance } from 'node:perf_hooks';

/** Reads an SSE response; returns each data payload with its arrival time. */
export async function readSse(res) {
  const out = [];
  const decoder = new TextDecoder();
  let buf = '';
  for await (const bytes of res.body) {
    const at = performance.now();
    buf += decoder.decode(bytes, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = event
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trim())
        .join('\n');
      if (data) out.push({ data, at, json: data === '[DONE]' ? null : JSON.parse(data) });
    }
  }
  return out;
}

/** POSTs a streamed chat request; `events` when the answer is a 200 stream, else the error body. */
export async function streamChat(gw, body) {
  const res = await gw.fetch('/v1/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
  });
  if (res.status === 200) return { res, events: await readSse(res), body: null };
  return { res, events: null, body: await res.json() };
}

export const isDone = (events) => events.at(-1)?.data === '[DONE]';
