//! The state store on Workers KV, counting its operations per isolate (the
//! status endpoint reports them, and the benchmark reads them).

use crate::store::StateStore;
use std::cell::Cell;
use worker::kv::KvStore;

thread_local! {
    static READS: Cell<u64> = const { Cell::new(0) };
    static WRITES: Cell<u64> = const { Cell::new(0) };
}

/// KV reads and writes made by this isolate since it started.
pub fn op_counts() -> (u64, u64) {
    (READS.with(Cell::get), WRITES.with(Cell::get))
}

pub struct KvState(pub KvStore);

impl StateStore for KvState {
    async fn get(&self, key: &str) -> Result<Option<String>, String> {
        READS.with(|c| c.set(c.get() + 1));
        self.0.get(key).text().await.map_err(|e| e.to_string())
    }
    async fn put(&self, key: &str, value: String, ttl_s: u64) -> Result<(), String> {
        WRITES.with(|c| c.set(c.get() + 1));
        self.0
            .put(key, value)
            .map_err(|e| e.to_string())?
            .expiration_ttl(ttl_s.max(60))
            .execute()
            .await
            .map_err(|e| e.to_string())
    }
}
