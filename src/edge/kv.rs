//! The state store on Workers KV, counting its operations per isolate (the
//! status endpoint reports them, and the benchmark reads them).
//!
//! The namespace binding is called directly (`get(key)`, `put(key, value,
//! {expirationTtl})`): workers-rs's `KvStore` looks up five methods each time
//! it is made and builds its options through a serde serialiser to JS
//! values, code the gateway does not otherwise need in its bundle.

use super::upstream::error_text;
use crate::store::StateStore;
use std::cell::Cell;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::Env;

thread_local! {
    static READS: Cell<u64> = const { Cell::new(0) };
    static WRITES: Cell<u64> = const { Cell::new(0) };
}

/// KV reads and writes made by this isolate since it started.
pub fn op_counts() -> (u64, u64) {
    (READS.with(Cell::get), WRITES.with(Cell::get))
}

#[wasm_bindgen]
extern "C" {
    /// A Workers KV namespace binding.
    type KvNamespace;
    /// Resolves to the value as text, or `null` when the key is absent.
    #[wasm_bindgen(method, catch)]
    fn get(this: &KvNamespace, key: &str) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn put(this: &KvNamespace, key: &str, value: &str, options: &JsValue) -> Result<js_sys::Promise, JsValue>;
}

pub struct KvState(KvNamespace);

impl KvState {
    /// The namespace bound as `binding`, if the worker has one.
    pub fn bound(env: &Env, binding: &str) -> Option<KvState> {
        let ns = js_sys::Reflect::get(env, &JsValue::from_str(binding)).ok()?;
        (ns.is_object()).then(|| KvState(ns.unchecked_into()))
    }
}

impl StateStore for KvState {
    async fn get(&self, key: &str) -> Result<Option<String>, String> {
        READS.with(|c| c.set(c.get() + 1));
        let promise = self.0.get(key).map_err(|e| error_text(&e))?;
        let value = JsFuture::from(promise).await.map_err(|e| error_text(&e))?;
        Ok(value.as_string())
    }
    async fn put(&self, key: &str, value: String, ttl_s: u64) -> Result<(), String> {
        WRITES.with(|c| c.set(c.get() + 1));
        let options = js_sys::Object::new();
        // KV's shortest expiration is 60 s.
        let ttl = JsValue::from_f64(ttl_s.max(60) as f64);
        js_sys::Reflect::set(&options, &JsValue::from_str("expirationTtl"), &ttl).map_err(|e| error_text(&e))?;
        let promise = self.0.put(key, &value, &options).map_err(|e| error_text(&e))?;
        JsFuture::from(promise).await.map(|_| ()).map_err(|e| error_text(&e))
    }
}
