// scripts/minify-imports.mjs on small modules built from text (binaryen's
// wasm-as): the renamed module still links against the rewritten glue, the
// glue's reads of the module's exports follow their new names, and a
// glue that does not match its module fails the build instead of shipping a
// worker that cannot start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './harness.mjs';
import { wasmFixture } from './wasm-fixture.mjs';

const SCRIPT = path.join(ROOT, 'scripts/minify-imports.mjs');

const WAT = `(module
  (import "./index_bg.js" "__wbg_log_0123456789abcdef" (func $log (param i32)))
  (import "./index_bg.js" "__wbg_twice_fedcba9876543210" (func $twice (param i32) (result i32)))
  (import "./index_bg.js" "__wbindgen_base" (global $base i32))
  (import "./index_bg.js" "__wbindgen_memory" (memory 1))
  (func (export "run") (param i32) (result i32)
    (call $log (local.get 0))
    (i32.add (global.get $base) (call $twice (local.get 0))))
  (func (export "__wbindgen_malloc") (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
  (func (export "__wbindgen_named") (result i32) (i32.const 7)))`;

// The shape worker-build's glue has: a function returning the import object.
const GLUE = `var logged=[];function te(){return{__proto__:null,"./index_bg.js":{__proto__:null,` +
  `__wbg_log_0123456789abcdef:function(e){logged.push(e)},__wbg_twice_fedcba9876543210:function(e){return e*2},` +
  `__wbindgen_base:100,__wbindgen_memory:new WebAssembly.Memory({initial:1})}}}` +
  // The glue reads one export; it names another in a way that is not a read.
  `function alloc(w,n){return w.__wbindgen_malloc(n)}var table={__wbindgen_named:1};`;

const fixture = (wat = WAT, glue = GLUE) => wasmFixture('minify-imports-', wat, glue);

const run = (f) => spawnSync(process.execPath, [SCRIPT, f.wasm, f.glue], { encoding: 'utf8' });

function instantiate(f) {
  const { te, logged, alloc } = new Function(`${readFileSync(f.glue, 'utf8')};return{te,logged,alloc}`)();
  const instance = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(f.wasm)), te());
  return { instance, logged, alloc };
}

test('the renamed module links against the rewritten glue and runs as before', () => {
  const f = fixture();
  const before = readFileSync(f.wasm).length;
  const r = run(f);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /4 imports and 1 exports renamed/);
  const module = new WebAssembly.Module(readFileSync(f.wasm));
  const imports = WebAssembly.Module.imports(module);
  // In the module's order (wasm-as puts the memory and global first).
  assert.deepEqual(imports.map((i) => [i.module, i.name]), [['x', 'a'], ['x', 'b'], ['x', 'c'], ['x', 'd']]);
  assert.deepEqual(imports.map((i) => i.kind).sort(), ['function', 'function', 'global', 'memory']);
  assert.ok(readFileSync(f.wasm).length < before);
  const glue = readFileSync(f.glue, 'utf8');
  assert.ok(!glue.includes('__wbg_') && !glue.includes('./index_bg.js'), glue);
  // The export the glue reads is renamed with its read; the entry point and
  // the export named otherwise keep their names.
  assert.deepEqual(WebAssembly.Module.exports(module).map((e) => e.name), ['run', '_a', '__wbindgen_named']);
  assert.ok(glue.includes('w._a(n)') && glue.includes('{__wbindgen_named:1}'), glue);
  const { instance, logged, alloc } = instantiate(f);
  assert.equal(instance.exports.run(21), 142);
  assert.deepEqual(logged, [21]);
  assert.equal(alloc(instance.exports, 41), 42);
  assert.equal(instance.exports.__wbindgen_named(), 7);
});

test('a glue that lacks one of the module\'s imports fails the build and changes nothing', () => {
  const f = fixture(WAT, GLUE.replace('__wbg_twice_fedcba9876543210', '__wbg_twice_0000000000000000'));
  const wasm = readFileSync(f.wasm);
  const glue = readFileSync(f.glue, 'utf8');
  const r = run(f);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /__wbg_twice_fedcba9876543210.* 0 times/);
  assert.deepEqual(readFileSync(f.wasm), wasm);
  assert.equal(readFileSync(f.glue, 'utf8'), glue);
});

test('imports from another module leave both files as they are', () => {
  const wat = WAT.replace('(import "./index_bg.js" "__wbindgen_base"', '(import "env" "__wbindgen_base"');
  const f = fixture(wat);
  const wasm = readFileSync(f.wasm);
  const r = run(f);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /left as they are/);
  assert.deepEqual(readFileSync(f.wasm), wasm);
  assert.equal(readFileSync(f.glue, 'utf8'), GLUE);
});
