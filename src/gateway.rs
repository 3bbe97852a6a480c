//! One isolate's gateway: the validated configuration, the provider keys and
//! gateway keys read from Worker secrets, every provider's state, and the
//! mirror aggregates not yet shared. Built once per isolate; what a request
//! does with it lives in `chat.rs`, the admin views in `admin.rs`.

use crate::config::Config;
use crate::http::Reply;
use crate::json::JsonText as _;
use crate::keys::{AdminKey, KeyRing, ADMIN_KEY_SECRET};
use crate::metrics::Metrics;
use crate::mirror::{MirrorLedger, MirrorResult};
use crate::record::Answer;
use crate::state::{self, ProviderStates};
use crate::store::StateStore;
use serde_json::json;
use std::cell::{Ref, RefCell, RefMut};

pub struct Gateway {
    pub config: Config,
    /// API key per provider, read from Worker secrets once per isolate.
    provider_keys: Vec<Option<String>>,
    states: RefCell<ProviderStates>,
    models_body: String,
    /// Mirror comparison sums not yet written to the store.
    mirror_ledger: RefCell<MirrorLedger>,
    pub keys: KeyRing,
    pub admin: AdminKey,
    /// This isolate's last hour, per route and provider.
    pub metrics: RefCell<Metrics>,
}

impl Gateway {
    /// `secret(name)` looks a Worker secret up.
    pub fn new(config: Config, secret: impl Fn(&str) -> Option<String>) -> Gateway {
        let provider_keys = config
            .providers
            .iter()
            .map(|p| p.key_secret.as_deref().and_then(&secret).filter(|k| !k.is_empty()))
            .collect();
        let states = RefCell::new(ProviderStates::new(
            config.providers.iter().map(|p| p.name.clone()).collect(),
            config.state,
            config.breaker,
            config.health,
        ));
        let models_body = json!({
            "object": "list",
            "data": config.routes.iter().map(|r| json!({
                "id": r.name,
                "object": "model",
                "created": 0,
                "owned_by": "switchyard",
            })).collect::<Vec<_>>(),
        })
        .json_text();
        let keys = KeyRing::new(&config.security, secret(&config.security.keys_secret));
        let admin = AdminKey::new(secret(ADMIN_KEY_SECRET));
        let metrics = RefCell::new(Metrics::new(
            config.routes.iter().map(|r| r.name.clone()),
            config.providers.iter().map(|p| p.name.clone()),
        ));
        Gateway { config, provider_keys, states, models_body, mirror_ledger: RefCell::default(), keys, admin, metrics }
    }

    /// Provider `idx`'s API key, for building its requests.
    pub(crate) fn key(&self, idx: usize) -> Option<&str> {
        self.provider_keys.get(idx).and_then(|k| k.as_deref())
    }

    /// Every provider's key, by provider index (for the attempt loop).
    pub(crate) fn provider_keys(&self) -> &[Option<String>] {
        &self.provider_keys
    }

    /// Whether provider `idx` has its API key (never the key itself).
    pub fn has_key(&self, idx: usize) -> bool {
        self.provider_keys.get(idx).is_some_and(Option::is_some)
    }

    pub fn models(&self) -> Reply {
        Reply::json(200, self.models_body.clone())
    }

    /// One route as a model object (`GET /v1/models/{id}`), by its name or
    /// an alias; 404 for any other id.
    pub fn model(&self, id: &str) -> Reply {
        match self.config.route(id) {
            Some(r) => Reply::json(
                200,
                json!({"id": id, "object": "model", "created": 0, "owned_by": "switchyard", "route": r.name})
                    .json_text(),
            ),
            None => {
                let mut e = crate::api::ApiError::not_found(format!("The model `{id}` does not exist on this gateway"))
                    .with_code("model_not_found");
                e.param = Some("model".into());
                Reply::error(&e)
            }
        }
    }

    /// Every provider's state, to read.
    pub fn states(&self) -> Ref<'_, ProviderStates> {
        self.states.borrow()
    }

    /// Every provider's state, to change (outcomes seen outside a request).
    pub fn states_mut(&self) -> RefMut<'_, ProviderStates> {
        self.states.borrow_mut()
    }

    pub(crate) fn states_cell(&self) -> &RefCell<ProviderStates> {
        &self.states
    }

    pub(crate) fn mirror_ledger(&self) -> Ref<'_, MirrorLedger> {
        self.mirror_ledger.borrow()
    }

    /// Whether the shared state has never been read by this isolate.
    pub fn state_never_loaded(&self) -> bool {
        self.states.borrow().never_loaded()
    }

    /// Whether a request should leave state upkeep behind it (a refresh or
    /// a write); in steady state it schedules nothing.
    pub fn upkeep_due(&self, now: u64) -> bool {
        self.states.borrow().upkeep_due(now)
    }

    pub fn refresh_due(&self, now: u64) -> bool {
        self.states.borrow().refresh_due(now)
    }

    /// Reads the shared state and merges it in, each read bounded by
    /// `state.read_timeout_ms` on `clock`; returns the errors met.
    pub async fn refresh_state<S: StateStore, C: crate::clock::Clock>(&self, store: &S, clock: &C) -> Vec<String> {
        state::refresh(&self.states, store, clock).await
    }

    /// Seeds this isolate's write jitter (see `state.rs`), once, from the
    /// isolate's randomness.
    pub fn seed_write_jitter(&self, seed: u64) {
        self.states.borrow_mut().seed_write_jitter(seed);
    }

    /// Writes the providers whose state changed; returns (written, errors).
    pub async fn flush_state<S: StateStore>(&self, store: &S, now: u64) -> (Vec<String>, Vec<String>) {
        state::flush(&self.states, store, now).await
    }

    /// After a response (`waitUntil`): [`Gateway::flush_state`], then waits
    /// for a change's write slot if it comes soon and nothing else waits.
    pub async fn flush_state_after_response<S: StateStore, C: crate::clock::Clock>(
        &self,
        store: &S,
        clock: &C,
    ) -> (Vec<String>, Vec<String>) {
        state::flush_after_response(&self.states, store, clock).await
    }

    /// Like [`Gateway::flush_state`], waiting for a key's write slot (for the cron).
    pub async fn flush_state_waiting<S: StateStore, C: crate::clock::Clock>(
        &self,
        store: &S,
        clock: &C,
    ) -> (Vec<String>, Vec<String>) {
        state::flush_waiting(&self.states, store, clock).await
    }

    /// Circuit and health transitions since the last call, as log lines.
    pub fn take_events(&self) -> Vec<String> {
        self.states.borrow_mut().take_events()
    }

    /// Adds a primary/mirror pair (or a mirror failure without a primary
    /// answer) to the route's aggregates.
    pub(crate) fn add_mirror_pair(&self, route: &str, primary: &Answer, m: &MirrorResult, now: u64) {
        self.mirror_ledger.borrow_mut().add(route, primary, m, now);
    }

    /// Writes the mirror aggregates whose write slot has come.
    pub async fn flush_mirror<S: StateStore>(&self, store: &S, now: u64) -> (Vec<String>, Vec<String>) {
        let interval = self.config.state.mirror_write_interval_s * 1000;
        crate::mirror::flush(&self.mirror_ledger, store, now, interval, self.config.state.kv_ttl_s).await
    }
}
