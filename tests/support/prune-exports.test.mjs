// scripts/prune-exports.mjs on glue in the shape worker-build writes and a
// small module built from text (binaryen's wasm-as): the unused classes and
// the Worker's exports of them go, the wasm exports only they called go, what
// the glue reads stays, and anything the script does not expect fails the
// build rather than shipping a worker that cannot start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './harness.mjs';
import { wasmFixture } from './wasm-fixture.mjs';
import { pruneGlue, namedExports } from '../../scripts/prune-exports.mjs';
import { exportNames } from '../../scripts/wasm-binary.mjs';

const SCRIPT = path.join(ROOT, 'scripts/prune-exports.mjs');

// One unused class as wasm-bindgen and worker-build's shim write it, beside
// the glue's own functions and the Worker's entrypoint.
const GLUE = `var wasm = globalThis.__wasm;
var R2Range = class {
  get offset() {
    return wasm.__wbg_get_r2range_offset(this.__wbg_ptr);
  }
  free() {
    wasm.__wbg_r2range_free(this.__wbg_ptr, 0);
  }
};
if (Symbol.dispose) R2Range.prototype[Symbol.dispose] = R2Range.prototype.free;
var R2RangeFinalization = typeof FinalizationRegistry === "undefined" ? { register: () => {
}, unregister: () => {
} } : new FinalizationRegistry(({ ptr, instance }) => {
  if (instance === 0) wasm.__wbg_r2range_free(ptr, 1);
});
function fetch(req) {
  return wasm.fetch(req);
}
var classProxyHooks = {};
var Entrypoint = class extends Object {
  fetch(req) {
    return fetch(req);
  }
};
var shim_default = new Proxy(Entrypoint, classProxyHooks);
var R2Range2 = new Proxy(R2Range, classProxyHooks);
export {
  R2Range2 as R2Range,
  shim_default as default
};
`;

const WAT = `(module
  (memory (export "memory") 1)
  (global $g (mut i32) (i32.const 0))
  (func (export "fetch") (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
  (func (export "scheduled") (result i32) (i32.const 2))
  (func $shared (result i32) (global.get $g))
  (func (export "__wbg_get_r2range_offset") (param i32) (result i32) (i32.add (call $shared) (local.get 0)))
  (func (export "__wbg_r2range_free") (param i32 i32) (global.set $g (local.get 1))))`;

const fixture = (glue = GLUE, wat = WAT) => wasmFixture('prune-exports-', wat, glue);

const run = (f) =>
  spawnSync(process.execPath, [SCRIPT, f.wasm, f.glue], { encoding: 'utf8', env: { ...process.env, NO_MINIFY: '1' } });

test('the unused class, its registry and its Worker export go; the entrypoint stays', () => {
  const { text, classes } = pruneGlue(GLUE);
  assert.equal(classes, 1);
  assert.doesNotMatch(text, /R2Range/);
  assert.match(text, /var Entrypoint = class extends Object/);
  assert.match(text, /export \{\n {2}shim_default as default\n\};/);
  assert.match(text, /return wasm\.fetch\(req\)/);
});

test('a class the script does not know, or a Worker export besides default, fails', () => {
  const unknown = GLUE.replaceAll('R2Range', 'DurableCounter');
  assert.throws(() => pruneGlue(unknown), /defines DurableCounter, which this script does not know/);
  const extra = GLUE.replace('  shim_default as default', '  helper as helper,\n  shim_default as default');
  assert.throws(() => pruneGlue(extra), /would export helper, default/);
  // A block that is not closed where wasm-bindgen closes it is refused, not guessed.
  assert.throws(() => pruneGlue(GLUE.replace('\n};\nif (Symbol', '\n}\nif (Symbol')), /R2Range/);
});

test('only the exports the glue reads are kept, and the runtime entry points always', () => {
  const glue = 'wasm.__wbg_a(1); var t = { __wbg_b: 1 }; x.__wbg_cd(); wasm.__wbg_c$d()';
  const all = ['__wbg_a', '__wbg_b', '__wbg_c', '__wbg_c$d', 'memory', 'fetch', 'scheduled', 'intounderlyingsink_write'];
  assert.deepEqual(namedExports(all, glue), ['__wbg_a', '__wbg_c$d', 'memory', 'fetch', 'scheduled']);
});

test('the pruned module keeps what the glue calls and runs as before', () => {
  const f = fixture();
  const before = exportNames(readFileSync(f.wasm));
  assert.deepEqual(before, ['memory', 'fetch', 'scheduled', '__wbg_get_r2range_offset', '__wbg_r2range_free']);
  const r = run(f);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /1 classes and 2 exports removed/);
  const module = new WebAssembly.Module(readFileSync(f.wasm));
  assert.deepEqual(WebAssembly.Module.exports(module).map((e) => e.name), ['memory', 'fetch', 'scheduled']);
  const { exports } = new WebAssembly.Instance(module, {});
  assert.equal(exports.fetch(41), 42);
  assert.doesNotMatch(readFileSync(f.glue, 'utf8'), /R2Range/);
});

test('a glue the script cannot prune fails the build with the reason', () => {
  const f = fixture(GLUE.replaceAll('R2Range', 'DurableCounter'));
  const r = run(f);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^prune-exports: the glue defines DurableCounter/);
});
