// Takes out of the built worker what no request can reach, and minifies the
// glue as worker-build would have:
//   node scripts/prune-exports.mjs build/index_bg.wasm build/index.js
//
// workers-rs and wasm-streams declare wasm-bindgen classes the gateway never
// uses (NAMES below). wasm-bindgen writes a JS class for each, with its
// accessors, and worker-build's shim re-exports the module's classes from the
// Worker, so esbuild cannot drop them, the Worker exports three classes that
// are no entrypoint of its own, and the wasm module keeps every function those
// classes call. Rust never hands one of them to JS (the module imports no
// constructor for any), so once the classes are gone from the glue, nothing
// can call those functions.
//
// It runs on worker-build's unminified bundle (NO_MINIFY=1), whose shape
// wasm-bindgen fixes: `var Name = class {` ... `};`, its Symbol.dispose line,
// its `NameFinalization` registry and the shim's `var Name2 = new
// Proxy(Name, classProxyHooks);` with its export. Every removal is checked:
// each block must be found once, the names must be gone afterwards, the glue
// must define no class this script does not know and export nothing but the
// Worker's default entrypoint; then the wasm exports the glue no longer names
// are removed with binaryen's wasm-metadce, and the module must export
// exactly what the glue names. Anything else fails the build.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportNames } from './wasm-binary.mjs';

const NAMES = [
  'ContainerStartupOptions', // workers-rs: container options
  'MinifyConfig', // workers-rs: the deprecated cf.minify request option
  'R2Range', // workers-rs: R2 ranged reads
  'IntoUnderlyingByteSource', // wasm-streams: Rust streams as JS ones
  'IntoUnderlyingSink',
  'IntoUnderlyingSource',
];
// What the runtime or the shim may look up by name, kept whatever the glue says.
const KEEP = ['memory', 'fetch', 'scheduled', 'start', '__wbindgen_start'];
const FEATURES = [
  '--enable-mutable-globals', '--enable-sign-ext', '--enable-nontrapping-float-to-int', '--enable-bulk-memory',
  '--enable-multivalue', '--enable-reference-types', '--enable-exception-handling',
];

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = (name) => path.join(ROOT, 'node_modules/.bin', name);

class PruneError extends Error {}

function fail(message) {
  throw new PruneError(message);
}

/** Removes the block of lines from the one equal to `first` through the
 * first line after it equal to `last` (or that line alone, without `last`);
 * it must be there exactly once when `required`. */
function cut(lines, first, last, required) {
  const starts = lines.flatMap((l, i) => (l === first ? [i] : []));
  if (starts.length > 1 || (required && starts.length === 0)) {
    fail(`expected "${first}" once in the glue, found it ${starts.length} times`);
  }
  if (starts.length === 0) return lines;
  const [start] = starts;
  const end = last === undefined ? start : lines.findIndex((l, i) => i > start && l === last);
  if (end < 0) fail(`"${first}" has no closing "${last}"`);
  // A block wasm-bindgen wrote holds no statement of the module's own: one
  // inside means the closing line was not where it should be.
  const stray = lines.slice(start + 1, end).find((l) => /^(var|let|const|function|async|class|export|import|if) /.test(l));
  if (stray !== undefined) fail(`"${first}" runs into another statement: ${stray}`);
  return lines.filter((_, i) => i < start || i > end);
}

export function pruneGlue(text) {
  let lines = text.split('\n');
  const defined = lines.flatMap((l) => l.match(/^var (\w+) = class \{$/)?.[1] ?? []);
  const unknown = defined.filter((n) => !NAMES.includes(n));
  if (unknown.length) {
    fail(`the glue defines ${unknown.join(', ')}, which this script does not know: decide whether the worker uses it`);
  }
  for (const name of defined) {
    lines = cut(lines, `var ${name} = class {`, '};', true);
    lines = cut(lines, `if (Symbol.dispose) ${name}.prototype[Symbol.dispose] = ${name}.prototype.free;`);
    lines = cut(lines, `var ${name}Finalization = typeof FinalizationRegistry === "undefined" ? { register: () => {`, '});');
    lines = cut(lines, `var ${name}2 = new Proxy(${name}, classProxyHooks);`);
    lines = lines.filter((l) => !new RegExp(`^  ${name}2 as ${name},?$`).test(l));
    const left = lines.find((l) => new RegExp(`\\b${name}\\b`).test(l));
    if (left !== undefined) fail(`${name} is still named after its removal: ${left.trim()}`);
  }
  const out = lines.join('\n');
  const exported = [...out.matchAll(/^export \{\n([\s\S]*?)\n\};?$/gm)].flatMap((m) =>
    m[1].split(',').map((s) => s.trim().split(/\s+as\s+/).pop()).filter(Boolean));
  if (exported.join() !== 'default') fail(`the Worker would export ${exported.join(', ') || 'nothing'}: only default was expected`);
  return { text: out, classes: defined.length };
}

/** The wasm exports the glue reads (`wasm.name`), and the runtime's. */
export function namedExports(exports, glue) {
  return exports.filter((e) => KEEP.includes(e) || new RegExp(`\\.${e.replace(/\$/g, '\\$')}(?![\\w$])`).test(glue));
}

function main() {
  const [wasmPath, jsPath] = process.argv.slice(2);
  if (!wasmPath || !jsPath) {
    console.error('usage: node scripts/prune-exports.mjs <module.wasm> <glue.js>');
    process.exit(2);
  }
  const glueBefore = readFileSync(jsPath, 'utf8');
  const { text, classes } = pruneGlue(glueBefore);
  writeFileSync(jsPath, text);
  // As worker-build bundles: the same flags, minified unless asked not to.
  execFileSync(BIN('esbuild'), [
    jsPath, '--bundle', '--format=esm', '--external:./index_bg.wasm', '--external:cloudflare:*',
    `--outfile=${jsPath}`, '--allow-overwrite', '--log-level=warning',
    ...(process.env.NO_MINIFY ? [] : ['--minify']),
  ], { stdio: 'inherit' });
  const glue = readFileSync(jsPath, 'utf8');

  const bytesBefore = readFileSync(wasmPath);
  const all = exportNames(bytesBefore);
  const kept = namedExports(all, glue);
  const dropped = all.filter((e) => !kept.includes(e));
  if (dropped.length) {
    const dir = mkdtempSync(path.join(tmpdir(), 'prune-exports-'));
    const graph = path.join(dir, 'graph.json');
    writeFileSync(graph, JSON.stringify([
      { name: 'glue', root: true, reaches: kept.map((e) => `export:${e}`) },
      ...all.map((e) => ({ name: `export:${e}`, export: e })),
    ]));
    // -g keeps the name section for profiling builds; the release pass strips it.
    execFileSync(BIN('wasm-metadce'), [wasmPath, '--graph-file', graph, '-g', ...FEATURES, '-o', wasmPath], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    rmSync(dir, { recursive: true });
  }
  const left = exportNames(readFileSync(wasmPath));
  if (left.join() !== kept.join()) fail(`the module exports ${left.join(', ')}; expected ${kept.join(', ')}`);
  const missing = ['fetch', 'scheduled'].filter((e) => !left.includes(e));
  if (missing.length) fail(`the module lost its entry points: ${missing.join(', ')}`);
  console.log(`prune-exports: ${classes} classes and ${dropped.length} exports removed: ` +
    `wasm ${bytesBefore.length} -> ${readFileSync(wasmPath).length} bytes, glue ${glueBefore.length} -> ${glue.length} bytes`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main();
  } catch (e) {
    if (!(e instanceof PruneError)) throw e;
    console.error(`prune-exports: ${e.message}`);
    process.exit(1);
  }
}
