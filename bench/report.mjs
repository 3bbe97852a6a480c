// The benchmark's Markdown report (bench/results/latest.md), from the results
// object bench/run.mjs writes to latest.json.

const f = (v, d = 3) => (v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));
const fi = (v) => (v === null || v === undefined || !Number.isFinite(v) ? '-' : Math.round(v).toLocaleString('en-US'));
const signed = (v, d = 3) => (v === null || v === undefined || !Number.isFinite(v) ? '-' : (v >= 0 ? '+' : '') + v.toFixed(d));
const kib = (b) => (b / 1024).toFixed(1);

function table(header, rows) {
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map((h, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

function loadTable(results, mode) {
  const rows = [];
  for (const p of results.paths) {
    const e = p[mode];
    if (!p.available || !e) continue;
    const r = e.runs;
    const c1 = r.c1;
    const c16 = r.c16;
    const c64 = r.c64;
    const errs = Object.values(r).reduce((a, x) => a + x.errors + x.non2xx, 0);
    // † marks a run during which other processes used more than a fifth of a core.
    const n = (x) => (x && x.other_cpu_pct > 20 ? '†' : '');
    rows.push([
      p.label + (errs ? ` (${errs} errors)` : ''),
      f(c1?.latency_ms.p50) + n(c1),
      f(c1?.latency_ms.p90),
      f(c1?.latency_ms.p99),
      fi(c16?.rps) + n(c16),
      f(c16?.latency_ms.p99, 2),
      fi(c64?.rps) + n(c64),
      f(c64?.latency_ms.p99, 2),
      f(c1?.workerd_cpu_ms_per_req),
      f(c16?.workerd_cpu_ms_per_req),
      c16?.workerd_cpu_pct === null || c16?.workerd_cpu_pct === undefined ? '-' : `${c16.workerd_cpu_pct}%`,
      f(e.upstream_requests_per_request, 2),
    ]);
  }
  return table(
    ['path', 'p50 @1', 'p90 @1', 'p99 @1', 'req/s @16', 'p99 @16', 'req/s @64', 'p99 @64', 'CPU ms/req @1', 'CPU ms/req @16', 'workerd CPU @16', 'upstream calls/req'],
    rows,
  );
}

// The long-stream scenarios, in table order (ids as in bench/common.mjs LONG_SCENARIOS).
const LONG = [
  ['long', 'back to back'],
  ['long-paced', 'paced'],
  ['long-anthropic', 'Anthropic upstream'],
];

function longSection(results) {
  const s = results.settings;
  const ps = results.paths.filter((p) => p.available && p.long);
  if (!ps.length) return [];
  const n = s.long_events.toLocaleString('en-US');
  const head = ['path'];
  for (const [, label] of LONG) head.push(`${label}: CPU ms/stream`, 'µs/event', 'wall ms/stream');
  const rows = ps.map((p) => {
    const row = [p.label];
    for (const [id] of LONG) {
      const r = p.long[id];
      if (!r) {
        row.push('-', '-', '-');
        continue;
      }
      const noisy = r.other_cpu_pct > 20 ? '†' : '';
      const relayed = id === 'long-anthropic' && p.kind !== 'switchyard' ? ' ‡' : '';
      const bad = r.incomplete ? ` (${r.incomplete} incomplete)` : '';
      row.push(f(r.cpu_ms_per_stream, 2) + noisy + bad, f(r.cpu_us_per_event, 2) + relayed, f(r.wall_ms.p50, 2));
    }
    return row;
  });
  const d = results.derived_long?.['switchyard_minus_pt-js'];
  if (d) {
    const ratio = (v) => (v === null || v === undefined ? '-' : `${f(v, 2)}x`);
    rows.push(['Switchyard ÷ JS pass-through', ...LONG.flatMap(([id]) => [ratio(d[id]?.cpu_ratio), ratio(d[id]?.cpu_ratio), ratio(d[id]?.wall_ratio)])]);
    rows.push(['Switchyard − JS pass-through, µs/event', ...LONG.flatMap(([id]) => ['', signed(d[id]?.added_cpu_us_per_event, 2), ''])]);
  }
  const floor = results.derived_long?.['switchyard_minus_read-loop-js'];
  if (floor) {
    const ratio = (v) => (v === null || v === undefined ? '-' : `${f(v, 2)}x`);
    rows.push(['Switchyard ÷ JS read loop', ...LONG.flatMap(([id]) => [ratio(floor[id]?.cpu_ratio), ratio(floor[id]?.cpu_ratio), ratio(floor[id]?.wall_ratio)])]);
    rows.push(['Switchyard − JS read loop, µs/event', ...LONG.flatMap(([id]) => ['', signed(floor[id]?.added_cpu_us_per_event, 2), ''])]);
  }
  const out = [];
  out.push(`## Long streams (${n} content events per stream; ${s.long_streams} sequential streams per figure)`);
  out.push('');
  out.push(table(head, rows));
  out.push('');
  out.push(
    `Each scenario: ${s.long_warmup_streams} warm-up streams, then ${s.long_streams} sequential streams on one keep-alive ` +
      `connection, each read to the end by a Node client that counts the events and checks the stream is whole ` +
      `(${n} content events, \`data: [DONE]\` last for OpenAI-format output, \`message_stop\` last for Anthropic's). ` +
      `CPU is workerd's utime+stime over the ${s.long_streams} streams (from /proc, in clock ticks of ` +
      `${(1000 / (results.machine.clk_tck || 100)).toFixed(0)} ms) divided by ${s.long_streams}; µs/event is that divided by ` +
      `the ${n} content events; wall is the p50 time from request to the stream's last byte. ` +
      `**back to back**: the upstream writes the role event, ${n} \`chat.completion.chunk\` content events, the finish ` +
      `event, the usage event and \`[DONE]\`, each its own write, with no delay. **paced**: the same events, one per ` +
      `${s.long_pace_ms} ms timer tick, as a model delivers tokens (never coalesced). **Anthropic upstream**: Messages SSE ` +
      `(message_start, content_block_start, ${n} text_delta events, content_block_stop, message_delta with usage, ` +
      `message_stop) back to back; Switchyard (route \`long-anthropic\`, a \`format = "anthropic"\` provider) ` +
      `translates it into OpenAI chunks. ‡ The pass-throughs relay the Anthropic bytes as they are: not translated. ` +
      `Switchyard is asked for routes \`long\`, \`long-paced\` and \`long-anthropic\` by model name; the pass-throughs ` +
      `forward the same body to the upstream paths /long, /long-paced and /long-anthropic directly. ` +
      `**JS read loop** is the floor for any gateway that sees each chunk (as one must, to fail over before the first ` +
      `token, end a broken answer with an error event and count usage): a JS worker that reads the upstream body ` +
      `chunk by chunk and writes each chunk untouched into a runtime-native pipe, and does nothing else.`,
  );
  out.push('');
  return out;
}

export function renderMarkdown(results, { chart = 'latest.png' } = {}) {
  const m = results.machine;
  const s = results.settings;
  const out = [];
  out.push('# Switchyard benchmark');
  out.push('');
  out.push(
    `${results.date.slice(0, 19).replace('T', ' ')} UTC · ${m.nproc} cores, ${m.cpu_model}, ${m.memory_gib} GiB · ${m.os} · ` +
      `node ${m.node} · workerd ${m.workerd} (Miniflare ${m.miniflare}) · ${m.loadgen} · all on 127.0.0.1`,
  );
  out.push('');
  out.push(
    `Each figure is one run of ${s.duration_s} s after a ${s.warmup_s} s warm-up at 16 connections; @N is N connections ` +
      `(closed loop, one connection per wrk thread). Latencies in ms, timed per request by bench/wrk.lua ` +
      `(not wrk's coordinated-omission-corrected percentiles, which latest.json keeps as \`p99_wrk_corrected\`). ` +
      `CPU is the workerd process's utime+stime over the run divided by requests, \`waitUntil\` work included; ` +
      `"workerd CPU" is its share of one core. Each worker runs alone in its own workerd, started by Miniflare ` +
      `(no wrangler dev proxy) with load sent to a socket bound straight to the worker (\`unsafeDirectSockets\`: ` +
      `no Miniflare entry worker) and subrequests going straight out (\`stripCfConnectingIp: false\`). ` +
      `The fake upstream is a separate Node process (bench/upstream.mjs). Switchyard's requests carry a gateway key ` +
      `(checked against the \`GATEWAY_KEYS\` secret), as a deployment's would.`,
  );
  out.push('');
  out.push(`![latency per path](${chart})`);
  out.push('');
  out.push('Paths:');
  out.push('- **direct**: wrk straight to the fake upstream.');
  out.push('- **JS pass-through**: `fetch(UPSTREAM + path, {method, headers, body: request.body})`, its response returned as it is.');
  out.push('- **Rust pass-through**: the same in workers-rs 0.8.7 (bench/passthrough-rs, built like the gateway), body streamed untouched.');
  out.push(
    '- **Switchyard**: the release build in build/; route `bench` weighted 3:1 over providers `a` and `b`, both the fake ' +
      'upstream, format openai, keys from a secret; default policy, breaker and state settings.',
  );
  out.push(
    '- **log_requests = errors**: Switchyard with request log lines for failures and failovers only (every request is ' +
      'logged by default); the difference is what one `console.log` line per request costs in this workerd.',
  );
  out.push(
    '- **failover**: route `bench` by priority, `primary` (answers 503) then `secondary`; `retries_per_target` 0 and a breaker ' +
      'that never opens (`consecutive_failures` and `min_requests` 1,000,000), so every request pays the failed attempt. ' +
      '**default breaker**: the same with the default breaker, which opens after 5 failures and then skips the primary.',
  );
  out.push('- **mirroring**: Switchyard plus `mirror: {target: "shadow/bench-model", sample_rate: 1.0}` on the route (a third provider, the same upstream).');
  out.push('');
  out.push('## Non-streaming (a constant `chat.completion`, about 450 bytes)');
  out.push('');
  out.push(loadTable(results, 'json'));
  out.push('');
  out.push('## Streaming (20 SSE events in OpenAI\'s chunk format, then `[DONE]`, written back to back)');
  out.push('');
  out.push(loadTable(results, 'stream'));
  out.push('');

  const tt = results.paths.filter((p) => p.available && p.ttfb);
  if (tt.length) {
    out.push(
      `## Time to first byte (${s.ttfb_requests} sequential streams, paced: the head at once, then an event every ${s.pace_ms} ms; p50 / p99 ms)`,
    );
    out.push('');
    out.push(
      table(
        ['path', 'response head', 'first body byte', 'first content token', 'whole stream', 'body reads per stream'],
        tt.map((p) => [
          p.label,
          `${f(p.ttfb.head_ms.p50)} / ${f(p.ttfb.head_ms.p99)}`,
          `${f(p.ttfb.ttfb_ms.p50)} / ${f(p.ttfb.ttfb_ms.p99)}`,
          `${f(p.ttfb.ttft_ms.p50)} / ${f(p.ttfb.ttft_ms.p99)}`,
          `${f(p.ttfb.total_ms.p50, 2)} / ${f(p.ttfb.total_ms.p99, 2)}`,
          String(p.ttfb.body_reads_p50),
        ]),
      ),
    );
    out.push('');
    out.push(
      'Switchyard holds the response head until the first content event has arrived (so it can still fail over), ' +
        'so its head comes one pacing interval later than a pass-through\'s; the first token is the like-for-like figure. ' +
        '"Body reads per stream" near 20 means events are relayed as they arrive, not buffered. ' +
        '**JS first-chunk hold** is the floor for that: a JS worker that parses the request, fetches, waits for the ' +
        'upstream\'s first chunk, then answers with a runtime-native pipe carrying it and the rest, and does nothing else.',
    );
    out.push('');
  }

  out.push(...longSection(results));

  const dRows = [];
  for (const [key, d] of Object.entries(results.derived || {})) {
    const [sy, base] = key.split('_minus_');
    const syl = results.paths.find((p) => p.id === sy)?.label ?? sy;
    const bl = results.paths.find((p) => p.id === base)?.label ?? base;
    for (const mode of ['json', 'stream']) {
      const x = d[mode];
      if (!x) continue;
      dRows.push([
        `${syl} − ${bl}, ${mode === 'json' ? 'non-streaming' : 'streaming'}`,
        signed(x.c1?.p50_ms),
        signed(x.c1?.p90_ms),
        signed(x.c1?.p99_ms),
        signed(x.c16?.p99_ms, 2),
        signed(x.c1?.cpu_ms_per_req),
        signed(x.c16?.cpu_ms_per_req),
        x.c16 ? `${f(x.c16.throughput_ratio, 2)}x` : '-',
        x.c64 ? `${f(x.c64.throughput_ratio, 2)}x` : '-',
        mode === 'stream' && d.ttfb ? signed(d.ttfb.ttft_p50_ms) : '-',
      ]);
    }
  }
  if (dRows.length) {
    out.push('## The gateway\'s own cost (minus a pass-through in the same run)');
    out.push('');
    out.push(
      table(
        ['difference', 'p50 @1', 'p90 @1', 'p99 @1', 'p99 @16', 'CPU ms/req @1', 'CPU ms/req @16', 'throughput @16', 'throughput @64', 'first token p50'],
        dRows,
      ),
    );
    out.push('');
  }

  if (results.targets?.length) {
    out.push('## Targets');
    out.push('');
    const val = (t, v) =>
      v === null || v === undefined ? '-' : t.unit === 'x' ? `${f(v, 2)}x` : t.unit === 'KiB' ? `${f(v, 1)} KiB` : t.unit === 'ms' ? `${v >= 0 ? '+' : ''}${f(v, 3)} ms` : `${v >= 0 ? '+' : ''}${f(v, 1)} µs`;
    const mark = (t) => (t.met === null ? '' : t.met ? ' ✅' : ' ❌');
    out.push(
      table(
        ['target', 'limit', 'Switchyard vs JS pass-through', 'vs the floor (JS doing only the unavoidable part)'],
        results.targets.map((t) => [t.target, t.limit, val(t, t.value) + mark(t), val(t, t.floor)]),
      ),
    );
    out.push('');
    out.push(
      'The limits are ratios to (or differences from) the JS pass-through in the same run. The floor column is the same figure against the JS read loop (streams), the JS first-chunk hold (time to first token) or the JS parse-fetch-parse worker (non-streaming): what any gateway that must see each chunk, hold the head until the first one, or parse the answer, pays on this runtime before it does anything of its own.',
    );
    out.push('');
  }

  const kvRows = [];
  for (const p of results.paths) {
    for (const mode of ['json', 'stream']) {
      const k = p[mode]?.kv;
      if (!k || k.reads === undefined) continue;
      const what = p.id.startsWith('sy-failover') ? 'failure storm (every request fails at the primary)' : 'steady state';
      kvRows.push([
        `${p.label}, ${mode === 'json' ? 'non-streaming' : 'streaming'}`,
        what,
        fi(k.requests),
        f(k.seconds, 0),
        fi(k.reads),
        fi(k.writes),
        f(k.reads_per_1000),
        f(k.writes_per_1000),
        f(k.reads_per_minute, 1),
        f(k.writes_per_minute, 1),
      ]);
    }
  }
  if (kvRows.length) {
    out.push('## KV operations (from `GET /v1/status` `kv_ops`, one isolate, over warm-up and every run of a mode)');
    out.push('');
    out.push(
      table(
        ['case', 'state', 'requests', 'seconds', 'KV reads', 'KV writes', 'reads / 1,000 req', 'writes / 1,000 req', 'reads / min', 'writes / min'],
        kvRows,
      ),
    );
    out.push('');
    out.push(
      'KV upkeep is time-based (refresh at most every `refresh_interval_s`, writes coalesced per `min_write_interval_s`), ' +
        'so per-minute rates are the stable figure; per-1,000 figures fall as the request rate rises. The closing ' +
        '`/v1/status` call may itself refresh (one read).',
    );
    out.push('');
  }

  const callRows = [];
  for (const p of results.paths) {
    for (const mode of ['json', 'stream']) {
      const k = p[mode]?.upstream_calls_per_request_by_kind;
      if (!k || !p.available) continue;
      callRows.push([
        `${p.label}, ${mode === 'json' ? 'non-streaming' : 'streaming'}`,
        f(p[mode].upstream_requests_per_request, 2),
        Object.entries(k).map(([kind, v]) => `${kind}: ${v.toFixed(2)}`).join(', '),
      ]);
    }
  }
  if (callRows.length) {
    out.push('## Upstream calls per client request (counted by the fake upstream over each mode)');
    out.push('');
    out.push(table(['case', 'calls / request', 'by kind'], callRows));
    out.push('');
  }

  const b = results.bundle;
  if (b) {
    out.push('## Bundle');
    out.push('');
    out.push(
      table(
        ['file', 'raw KiB', 'gzip -9 KiB'],
        [
          ['build/index_bg.wasm', kib(b.wasm.raw_bytes), kib(b.wasm.gzip_bytes)],
          ['build/index.js', kib(b.js.raw_bytes), kib(b.js.gzip_bytes)],
          ['total', kib(b.total.raw_bytes), kib(b.total.gzip_bytes)],
        ],
      ),
    );
    out.push('');
  }

  const notes = [];
  const noisy =
    results.paths.flatMap((p) =>
      ['json', 'stream'].flatMap((mode) => Object.values(p[mode]?.runs ?? {}).filter((r) => r.other_cpu_pct > 20).map(() => 1)),
    ).length + results.paths.flatMap((p) => Object.values(p.long ?? {}).filter((r) => r.other_cpu_pct > 20)).length;
  if (noisy) {
    notes.push(
      `- † ${noisy} run(s) shared the machine with other processes using more than 20% of a core (other builds or tests): ` +
        'their figures are pessimistic. latest.json has `other_cpu_pct` for every run.',
    );
  }
  for (const p of results.paths) {
    if (!p.available) notes.push(`- ${p.label}: ${p.reason}`);
    else {
      if (p.stream_unavailable) notes.push(`- ${p.label}, streaming: ${p.stream_unavailable}`);
      if (p.warning) notes.push(`- ${p.label}: ${p.warning}`);
      if (p.id === 'sy-failover-cb') notes.push(`- ${p.label}: non-streaming at 1 and 16 connections only; the breaker opens after 5 failures, so later requests skip the primary.`);
    }
  }
  const sy = results.paths.find((p) => p.id === 'switchyard' && p.available);
  const c16 = sy?.json?.runs?.c16;
  if (c16) {
    notes.push(
      `- What limits throughput: at 16 connections Switchyard's workerd used ${c16.workerd_cpu_pct}% of one core ` +
        `(workerd runs a worker's requests on one thread), the fake upstream ${c16.upstream_cpu_pct}%, and the whole ` +
        `${m.nproc}-core machine was ${c16.machine_busy_pct}% busy (load generator, upstream and workerd share it).`,
    );
  }
  if (notes.length) {
    out.push('## Notes');
    out.push('');
    out.push(...notes);
    out.push('');
  }
  return out.join('\n');
}
