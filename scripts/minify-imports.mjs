// Gives the wasm module's imports, and the exports only the glue uses, short
// names, and rewrites the JS glue to match:
//   node scripts/minify-imports.mjs build/index_bg.wasm build/index.js
//
// wasm-bindgen names each import `__wbg_<what>_<16 hex digits>` under the
// module "./index_bg.js", and both files carry every name: the module's import
// section, and the glue's import object (`"./index_bg.js":{__wbg_…:function…}`).
// With about 130 imports that is some 4 KiB in each file, and the hex digits
// do not compress. wasm-bindgen's own exports (`__wbindgen_malloc`, closure
// shims, the classes' accessors) are named at length too, and only the glue
// reads them (`wasm.__wbindgen_malloc`). Only names change: the functions,
// their order and every other byte of the module stay as they are. The
// worker's entry points and anything a runtime might look up (`fetch`,
// `scheduled`, `memory`, the abort and instance hooks) keep their names.
//
// The rewrite is checked, never guessed: each old import name must appear
// exactly once as a key of the glue's import object, or the build fails; an
// export is renamed only when every mention of it in the glue is a property
// read. A module whose imports are not all wasm-bindgen's is left alone.
import { readFileSync, writeFileSync } from 'node:fs';
import { encodeName, readName, readU32, u32 } from './wasm-binary.mjs';

const MODULE = './index_bg.js';
const NEW_MODULE = 'x';

const [wasmPath, jsPath] = process.argv.slice(2);
if (!wasmPath || !jsPath) {
  console.error('usage: node scripts/minify-imports.mjs <module.wasm> <glue.js>');
  process.exit(2);
}

function fail(message) {
  console.error(`minify-imports: ${message}`);
  process.exit(1);
}

// Skips a value type: one byte, or a reference type's prefix and heap type.
function skipValType(buf, pos) {
  const t = buf[pos++];
  return t === 0x63 || t === 0x64 ? readU32(buf, pos)[1] : pos;
}

function skipLimits(buf, pos) {
  const flags = buf[pos++];
  pos = readU32(buf, pos)[1];
  return flags & 1 ? readU32(buf, pos)[1] : pos;
}

// The end of an import's description, which starts at `pos`.
function skipImportDesc(buf, pos) {
  const kind = buf[pos++];
  switch (kind) {
    case 0x00: // function: type index
      return readU32(buf, pos)[1];
    case 0x01: // table: reference type, limits
      return skipLimits(buf, skipValType(buf, pos));
    case 0x02: // memory: limits
      return skipLimits(buf, pos);
    case 0x03: // global: value type, mutability
      return skipValType(buf, pos) + 1;
    case 0x04: // tag: attribute, type index
      return readU32(buf, pos + 1)[1];
    default:
      return fail(`unknown import kind ${kind}`);
  }
}

// a, b, ..., z, A, ..., Z, aa, ab, ...: identifiers that need no quotes.
function shortName(i) {
  const letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
  let s = '';
  i += 1;
  while (i > 0) {
    i -= 1;
    s = letters[i % letters.length] + s;
    i = Math.floor(i / letters.length);
  }
  return s;
}

// Exports the glue alone reads: wasm-bindgen's runtime and class shims.
const OWN_EXPORT = /^(__wbg_|__wbindgen_|__externref_|intounderlying|wasm_bindgen__convert__|__worker_init_state$)/;
const exportsRenamed = [];

const mentions = (re) => js.match(re)?.length ?? 0;
const escape = (name) => name.replace(/\$/g, '\\$');

// The export section from `body` to `end`, re-encoded with short names for
// the exports only the glue reads.
function renameExports(body, end) {
  let [count, at] = readU32(wasm, body);
  const encoded = [u32(count)];
  for (let i = 0; i < count; i++) {
    const [field, afterField] = readName(wasm, at);
    const descEnd = readU32(wasm, afterField + 1)[1]; // kind byte, index
    let name = field;
    const every = mentions(new RegExp(`(?<![\\w$])${escape(field)}(?![\\w$])`, 'g'));
    const reads = mentions(new RegExp(`\\.${escape(field)}(?![\\w$])`, 'g'));
    if (OWN_EXPORT.test(field) && every > 0 && every === reads) {
      name = `_${shortName(exportsRenamed.length)}`;
      exportsRenamed.push([field, name]);
    }
    encoded.push(encodeName(name), wasm.subarray(afterField, descEnd));
    at = descEnd;
  }
  if (at !== end) fail('the export section did not parse to its end');
  const section = Buffer.concat(encoded);
  return Buffer.concat([Buffer.from([7]), u32(section.length), section]);
}

const wasm = readFileSync(wasmPath);
if (wasm.readUInt32LE(0) !== 0x6d736100) fail(`${wasmPath} is not a wasm module`);
let js = readFileSync(jsPath, 'utf8');
const jsBefore = Buffer.byteLength(js);

const parts = [wasm.subarray(0, 8)];
const renamed = [];
let pos = 8;
while (pos < wasm.length) {
  const start = pos;
  const id = wasm[pos++];
  const [size, body] = readU32(wasm, pos);
  const end = body + size;
  if (id === 7) {
    parts.push(renameExports(body, end));
    pos = end;
    continue;
  }
  if (id !== 2) {
    parts.push(wasm.subarray(start, end));
    pos = end;
    continue;
  }
  let [count, at] = readU32(wasm, body);
  const entries = [];
  for (let i = 0; i < count; i++) {
    const [module, afterModule] = readName(wasm, at);
    const [field, afterField] = readName(wasm, afterModule);
    const descEnd = skipImportDesc(wasm, afterField);
    entries.push({ module, field, desc: wasm.subarray(afterField, descEnd) });
    at = descEnd;
  }
  if (at !== end) fail('the import section did not parse to its end');
  if (entries.some((e) => e.module !== MODULE)) {
    console.error(`minify-imports: imports from modules other than ${MODULE}: left as they are`);
    process.exit(0);
  }
  const encoded = [u32(count)];
  entries.forEach((e, i) => {
    const short = shortName(i);
    renamed.push([e.field, short]);
    encoded.push(encodeName(NEW_MODULE), encodeName(short), e.desc);
  });
  const section = Buffer.concat(encoded);
  parts.push(Buffer.from([2]), u32(section.length), section);
  pos = end;
}
if (renamed.length === 0) fail(`${wasmPath} has no import section`);

const moduleKey = `${JSON.stringify(MODULE)}:{`;
if (js.split(moduleKey).length !== 2) fail(`the glue must name ${MODULE} once as the import object's key`);
js = js.replace(moduleKey, `${NEW_MODULE}:{`);
for (const [old, short] of renamed) {
  if (!/^[A-Za-z_$][\w$]*$/.test(old)) fail(`import \`${old}\` is not an identifier`);
  const key = new RegExp(`([{,])${old.replace(/\$/g, '\\$')}:`, 'g');
  const hits = js.match(key)?.length ?? 0;
  if (hits !== 1) fail(`import \`${old}\` is a key of the glue ${hits} times, not once`);
  js = js.replace(key, `$1${short}:`);
}

for (const [old, short] of exportsRenamed) {
  js = js.replace(new RegExp(`\\.${escape(old)}(?![\\w$])`, 'g'), `.${short}`);
}

const out = Buffer.concat(parts);
writeFileSync(wasmPath, out);
writeFileSync(jsPath, js);
console.log(
  `minify-imports: ${renamed.length} imports and ${exportsRenamed.length} exports renamed: ` +
    `wasm ${wasm.length} -> ${out.length} bytes, ` +
    `glue ${jsBefore} -> ${Buffer.byteLength(js)} bytes`,
);
