// node bench/profile-callers.mjs FILE.cpuprofile REGEX [depth=4]: self time of frames matching REGEX, by caller chain.
import { readFileSync } from 'node:fs';
const [file, re, depthS] = process.argv.slice(2);
const depth = Number(depthS || 4);
const p = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const dur = new Map();
let total = 0, idle = 0;
for (let i = 0; i < p.samples.length; i++) {
  const d = p.timeDeltas[i + 1] ?? 100;
  dur.set(p.samples[i], (dur.get(p.samples[i]) ?? 0) + d);
  total += d;
  if (byId.get(p.samples[i]).callFrame.functionName === '(idle)') idle += d;
}
const R = new RegExp(re);
const agg = new Map();
let sum = 0;
const nm = (f) => (f.functionName || '(anon)').replace(/::h[0-9a-f]{16}/g, '').slice(0, 90) + (f.url ? '' : '*');
for (const [id, us] of dur) {
  const f = byId.get(id).callFrame;
  if (!R.test(f.functionName || '(anonymous)')) continue;
  sum += us;
  const chain = [];
  for (let q = id, k = 0; q !== undefined && k <= depth; q = parent.get(q), k++) chain.push(nm(byId.get(q).callFrame));
  const key = chain.join('  <-  ');
  agg.set(key, (agg.get(key) ?? 0) + us);
}
console.log(`matched ${(100 * sum / (total - idle)).toFixed(1)}% of busy`);
for (const [k, v] of [...agg].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`${(100 * v / (total - idle)).toFixed(1).padStart(5)}%  ${k}`);
