// The benchmark's chart as SVG (scripts/bench.sh turns it into PNG with
// rsvg-convert): latency distribution per path, p50/p90/p99 bars, one panel
// for non-streaming and one for streaming requests at 1 connection, and one
// for time to first token on paced streams.

const COLORS = ['#4C78A8', '#F58518', '#E45756'];
const SERIES = ['p50', 'p90', 'p99'];

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceMax(v) {
  if (!(v > 0)) return 1;
  const e = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * e >= v) return m * e;
  return 10 * e;
}

const fmt = (v) => (v === null || v === undefined ? 'n/a' : v === 0 ? '0' : v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(3));

/** One horizontal grouped-bar panel; rows: [{label, values: [p50, p90, p99]}]. */
function panel({ x, y, width, title, unit, rows }) {
  const rowH = 16 * SERIES.length + 14;
  const labelW = 250;
  const plotX = x + labelW;
  const plotW = width - labelW - 70;
  const height = 40 + rows.length * rowH + 30;
  const max = niceMax(Math.max(...rows.flatMap((r) => r.values.filter((v) => v !== null && v !== undefined)), 0));
  const out = [];
  out.push(`<text x="${x}" y="${y + 18}" font-size="15" font-weight="bold">${esc(title)}</text>`);
  const top = y + 34;
  const bottom = top + rows.length * rowH;
  for (let i = 0; i <= 5; i++) {
    const v = (max * i) / 5;
    const gx = plotX + (plotW * i) / 5;
    out.push(`<line x1="${gx}" y1="${top - 4}" x2="${gx}" y2="${bottom}" stroke="#ddd"/>`);
    out.push(`<text x="${gx}" y="${bottom + 16}" font-size="11" text-anchor="middle" fill="#555">${fmt(v)}</text>`);
  }
  out.push(`<text x="${plotX + plotW}" y="${bottom + 30}" font-size="11" text-anchor="end" fill="#555">${esc(unit)}</text>`);
  rows.forEach((r, i) => {
    const ry = top + i * rowH;
    out.push(`<text x="${plotX - 8}" y="${ry + (rowH - 14) / 2 + 5}" font-size="12" text-anchor="end">${esc(r.label)}</text>`);
    r.values.forEach((v, j) => {
      const by = ry + j * 16;
      if (v === null || v === undefined) {
        out.push(`<text x="${plotX + 4}" y="${by + 11}" font-size="10" fill="#999">n/a</text>`);
        return;
      }
      const w = Math.max(1, (plotW * v) / max);
      out.push(`<rect x="${plotX}" y="${by}" width="${w.toFixed(1)}" height="13" fill="${COLORS[j]}"/>`);
      out.push(`<text x="${(plotX + w + 4).toFixed(1)}" y="${by + 11}" font-size="10" fill="#333">${fmt(v)}</text>`);
    });
  });
  return { svg: out.join('\n'), height };
}

export function renderSvg(results) {
  const width = 900;
  const avail = results.paths.filter((p) => p.available);
  const lat = (mode) =>
    avail
      .filter((p) => p[mode]?.runs?.c1)
      .map((p) => ({ label: p.label, values: SERIES.map((s) => p[mode].runs.c1.latency_ms[s]) }));
  const ttft = avail.filter((p) => p.ttfb).map((p) => ({ label: p.label, values: SERIES.map((s) => p.ttfb.ttft_ms[s]) }));
  const m = results.machine;
  const parts = [];
  let y = 10;
  parts.push(`<text x="20" y="${y + 18}" font-size="18" font-weight="bold">Switchyard benchmark: latency per path</text>`);
  parts.push(
    `<text x="20" y="${y + 38}" font-size="12" fill="#444">${esc(
      `${results.date.slice(0, 16).replace('T', ' ')} UTC · ${m.nproc} cores ${m.cpu_model} · node ${m.node} · workerd ${m.workerd} · ${m.loadgen}`,
    )}</text>`,
  );
  y += 50;
  // Legend.
  SERIES.forEach((s, j) => {
    parts.push(`<rect x="${20 + j * 70}" y="${y}" width="12" height="12" fill="${COLORS[j]}"/>`);
    parts.push(`<text x="${36 + j * 70}" y="${y + 11}" font-size="12">${s}</text>`);
  });
  y += 20;
  for (const spec of [
    { title: 'Non-streaming chat completion, 1 connection', unit: 'ms per request', rows: lat('json') },
    { title: 'Streaming (20 SSE events), 1 connection', unit: 'ms per whole stream', rows: lat('stream') },
    {
      title: `Time to first token, paced stream (${results.settings.pace_ms} ms between events), sequential`,
      unit: 'ms from request to the first content event',
      rows: ttft,
    },
  ]) {
    if (!spec.rows.length) continue;
    const p = panel({ x: 20, y, width: width - 20, ...spec });
    parts.push(p.svg);
    y += p.height + 10;
  }
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="white"/>
${parts.join('\n')}
</svg>
`;
}
