//! The state store on Workers KV.

use crate::store::StateStore;
use worker::kv::KvStore;

pub struct KvState(pub KvStore);

impl StateStore for KvState {
    async fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.0.get(key).text().await.map_err(|e| e.to_string())
    }
    async fn put(&self, key: &str, value: String, ttl_s: u64) -> Result<(), String> {
        self.0
            .put(key, value)
            .map_err(|e| e.to_string())?
            .expiration_ttl(ttl_s.max(60))
            .execute()
            .await
            .map_err(|e| e.to_string())
    }
}
