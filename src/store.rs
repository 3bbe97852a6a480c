//! The state store trait: a key-value store shared by every isolate
//! (Workers KV at the edge, a map in tests).

use std::cell::RefCell;
use std::collections::HashMap;

pub trait StateStore {
    async fn get(&self, key: &str) -> Result<Option<String>, String>;
    /// Writes `value` with an expiry of `ttl_s` seconds (at least 60 on KV).
    async fn put(&self, key: &str, value: String, ttl_s: u64) -> Result<(), String>;
}

/// An in-memory store that counts its operations, for tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    pub data: RefCell<HashMap<String, String>>,
    pub reads: std::cell::Cell<u32>,
    pub writes: std::cell::Cell<u32>,
}

impl StateStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.reads.set(self.reads.get() + 1);
        Ok(self.data.borrow().get(key).cloned())
    }
    async fn put(&self, key: &str, value: String, _ttl_s: u64) -> Result<(), String> {
        self.writes.set(self.writes.get() + 1);
        self.data.borrow_mut().insert(key.to_owned(), value);
        Ok(())
    }
}
