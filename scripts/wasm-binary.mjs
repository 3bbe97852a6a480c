// Reading and writing the few parts of a wasm module's binary format that
// the build's post-passes touch (scripts/minify-imports.mjs,
// scripts/prune-exports.mjs): LEB128 numbers, names, the export section.

/** An unsigned LEB128 number at `pos`: [value, the position after it]. */
export function readU32(buf, pos) {
  let value = 0;
  let shift = 0;
  let byte;
  do {
    byte = buf[pos++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return [value, pos];
}

/** `n` as unsigned LEB128. */
export function u32(n) {
  const out = [];
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n) byte |= 0x80;
    out.push(byte);
  } while (n);
  return Buffer.from(out);
}

/** A name (length, then UTF-8) at `pos`: [name, the position after it]. */
export function readName(buf, pos) {
  const [len, at] = readU32(buf, pos);
  return [buf.toString('utf8', at, at + len), at + len];
}

export const encodeName = (s) => {
  const bytes = Buffer.from(s, 'utf8');
  return Buffer.concat([u32(bytes.length), bytes]);
};

/** The names in a module's export section, in order (read, not compiled:
 * Node's WebAssembly lacks some of the types the optimiser writes). */
export function exportNames(buf) {
  let pos = 8;
  while (pos < buf.length) {
    const id = buf[pos];
    const [size, body] = readU32(buf, pos + 1);
    if (id === 7) {
      let [count, at] = readU32(buf, body);
      const names = [];
      while (count--) {
        const [name, after] = readName(buf, at);
        names.push(name);
        at = readU32(buf, after + 1)[1]; // the kind byte, then the index
      }
      return names;
    }
    pos = body + size;
  }
  return [];
}
