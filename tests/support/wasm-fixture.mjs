// A module built from text with binaryen's wasm-as, and its glue, in a new
// temporary folder: the fixture of the build post-passes' tests.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT } from './harness.mjs';

const WASM_AS = path.join(ROOT, 'node_modules/.bin/wasm-as');

/** Writes `wat` (assembled) and `glue`; returns their paths. */
export function wasmFixture(prefix, wat, glue) {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  writeFileSync(path.join(dir, 'm.wat'), wat);
  execFileSync(WASM_AS, [path.join(dir, 'm.wat'), '-o', path.join(dir, 'm.wasm')]);
  writeFileSync(path.join(dir, 'glue.js'), glue);
  return { wasm: path.join(dir, 'm.wasm'), glue: path.join(dir, 'glue.js') };
}
