//! The wasm heap allocator: talc instead of the standard library's dlmalloc
//! port. An isolate is single-threaded, so talc's unsynchronised wasm build
//! serves; it grows the linear memory as the heap needs, as dlmalloc did.

#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
