//! Provider state shared between isolates (GUIDE.md section 1).
//!
//! Each isolate keeps every provider's state in memory (failure count,
//! circuit breaker, probe health) and uses only that on the request path. The
//! shared copy lives in the state store (Workers KV), one key per provider:
//!
//! - an isolate reads the shared copy when it first serves a request, then at
//!   most every `refresh_interval_s`, after the response (`wait_until`);
//! - it writes a provider's key only when the provider's state changed in a
//!   way others should know: a circuit or health transition, a rise in the
//!   failure level or a success clearing failures while the circuit is
//!   closed, or (once per half-life) keeping an ongoing failure streak from
//!   decaying away; and never more often than `min_write_interval_s` per key,
//!   so a failure storm costs a handful of writes, not one per request;
//! - a write first reads the shared copy and merges, so that a newer event
//!   seen elsewhere is not overwritten.

use crate::breaker::{Breaker, BreakerSettings, CircuitState, Permit, SharedCircuit, Transition};
use crate::clock::Clock;
use crate::config::StateSettings;
use crate::failures::FailureRecord;
use crate::health::{Health, HealthSettings, HealthStatus, ProbeResult};
use crate::selection::Availability;
use crate::store::StateStore;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::cell::RefCell;

pub const KEY_PREFIX: &str = "sy:v1:p:";

pub fn key_for(provider: &str) -> String {
    format!("{KEY_PREFIX}{provider}")
}

/// What one provider's KV key holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SharedRecord {
    #[serde(flatten)]
    pub failures: FailureRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit: Option<SharedCircuit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

#[derive(Debug, Clone)]
struct Entry {
    rec: FailureRecord,
    breaker: Breaker,
    health: Health,
    /// What the store is known to hold (last written or read).
    shared_level: u32,
    shared_failures: bool,
    shared_last_failure_ms: u64,
    shared_circuit_ms: u64,
    shared_health_ms: u64,
    last_write_ms: Option<u64>,
}

/// Every provider's state as this isolate sees it.
#[derive(Debug)]
pub struct ProviderStates {
    names: Vec<String>,
    entries: Vec<Entry>,
    settings: StateSettings,
    breaker: BreakerSettings,
    health: HealthSettings,
    last_refresh_ms: Option<u64>,
    refreshing: bool,
    /// Structured events (transitions) not yet logged.
    events: Vec<String>,
}

impl ProviderStates {
    pub fn new(names: Vec<String>, settings: StateSettings, breaker: BreakerSettings, health: HealthSettings) -> Self {
        let entry = Entry {
            rec: FailureRecord::default(),
            breaker: Breaker::new(&breaker),
            health: Health::default(),
            shared_level: 0,
            shared_failures: false,
            shared_last_failure_ms: 0,
            shared_circuit_ms: 0,
            shared_health_ms: 0,
            last_write_ms: None,
        };
        let entries = vec![entry; names.len()];
        ProviderStates {
            names,
            entries,
            settings,
            breaker,
            health,
            last_refresh_ms: None,
            refreshing: false,
            events: Vec::new(),
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn half_life_ms(&self) -> u64 {
        self.settings.failure_half_life_s * 1000
    }

    pub fn record(&self, idx: usize) -> FailureRecord {
        self.entries[idx].rec
    }

    pub fn health(&self, idx: usize) -> &Health {
        &self.entries[idx].health
    }

    pub fn breaker(&self, idx: usize) -> &Breaker {
        &self.entries[idx].breaker
    }

    pub fn circuit(&self, idx: usize, now: u64) -> CircuitState {
        self.entries[idx].breaker.state(now)
    }

    /// The weight factor of provider `idx` at `now`.
    pub fn penalty(&self, idx: usize, now: u64) -> f64 {
        self.entries[idx].rec.penalty(now, self.half_life_ms())
    }

    pub fn effective_failures(&self, idx: usize, now: u64) -> f64 {
        self.entries[idx].rec.effective(now, self.half_life_ms())
    }

    /// Whether selection may route to provider `idx` now: its circuit lets a
    /// request through and its probes do not say it is down.
    pub fn available(&self, idx: usize, now: u64) -> bool {
        let e = &self.entries[idx];
        e.breaker.available(now) && e.health.status.routable()
    }

    /// What selection should make of provider `idx` now.
    pub fn availability(&self, idx: usize, now: u64) -> Availability {
        let e = &self.entries[idx];
        if !e.health.status.routable() {
            return Availability::Down;
        }
        match e.breaker.state(now) {
            CircuitState::Closed => Availability::Up,
            CircuitState::HalfOpen if e.breaker.available(now) => Availability::Trial,
            _ => Availability::Down,
        }
    }

    /// Asks the breaker for a permit just before an attempt.
    pub fn acquire(&mut self, idx: usize, now: u64) -> Permit {
        let e = &mut self.entries[idx];
        if !e.health.status.routable() {
            return Permit::Denied;
        }
        e.breaker.acquire(now)
    }

    fn circuit_event(&mut self, idx: usize, t: Option<Transition>, now: u64) {
        if let Some(t) = t {
            let b = &self.entries[idx].breaker;
            self.events.push(
                json!({
                    "level": if t.to == CircuitState::Open { "warn" } else { "info" },
                    "msg": "circuit",
                    "provider": self.names[idx],
                    "from": t.from.as_str(),
                    "to": t.to.as_str(),
                    "cooldown_ms": b.shared.cooldown_ms,
                    "at_ms": now,
                })
                .to_string(),
            );
        }
    }

    pub fn record_failure(&mut self, idx: usize, now: u64) {
        let hl = self.half_life_ms();
        let s = self.breaker;
        let e = &mut self.entries[idx];
        e.rec.record_failure(now, hl);
        let t = e.breaker.on_failure(now, &s);
        self.circuit_event(idx, t, now);
    }

    pub fn record_success(&mut self, idx: usize, now: u64) {
        let s = self.breaker;
        let e = &mut self.entries[idx];
        e.rec.record_success(now);
        let t = e.breaker.on_success(now, &s);
        self.circuit_event(idx, t, now);
    }

    /// The provider answered, but refused the request for the request's own
    /// sake (content policy, context length): it is up, so a half-open trial
    /// counts as passed; failure counts are left as they are.
    pub fn record_alive(&mut self, idx: usize, now: u64) {
        let s = self.breaker;
        let t = self.entries[idx].breaker.on_success(now, &s);
        self.circuit_event(idx, t, now);
    }

    /// Applies a health probe's result.
    pub fn record_probe(&mut self, idx: usize, r: ProbeResult, now: u64) {
        let hs = self.health;
        let bs = self.breaker;
        let e = &mut self.entries[idx];
        let change = e.health.observe(r, now, &hs);
        let t = match r.error {
            None => e.breaker.on_probe_success(now, &bs),
            Some(k) if k.counts_as_provider_failure() && !k.is_misconfiguration() => e.breaker.on_failure(now, &bs),
            Some(_) => None,
        };
        if let Some((from, to)) = change {
            let h = &self.entries[idx].health;
            self.events.push(
                json!({
                    "level": if to.routable() { "info" } else { "warn" },
                    "msg": "health",
                    "provider": self.names[idx],
                    "from": from.as_str(),
                    "to": to.as_str(),
                    "last_error": h.last_error,
                    "latency_ms": h.last_latency_ms,
                    "at_ms": now,
                })
                .to_string(),
            );
        }
        self.circuit_event(idx, t, now);
    }

    /// Transition events since the last call, as log lines.
    pub fn take_events(&mut self) -> Vec<String> {
        std::mem::take(&mut self.events)
    }

    /// True until the shared state has been read once by this isolate.
    pub fn never_loaded(&self) -> bool {
        self.last_refresh_ms.is_none()
    }

    pub fn refresh_due(&self, now: u64) -> bool {
        !self.refreshing
            && self.last_refresh_ms.is_none_or(|t| now.saturating_sub(t) >= self.settings.refresh_interval_s * 1000)
    }

    /// Whether this provider's state differs from the shared copy in a way
    /// worth a write.
    fn wants_write(&self, idx: usize, now: u64) -> bool {
        let e = &self.entries[idx];
        if e.breaker.shared.changed_ms > e.shared_circuit_ms || e.health.changed_ms > e.shared_health_ms {
            return true; // a transition
        }
        if e.breaker.shared.open {
            // While the circuit is open, the circuit says all there is to say.
            return false;
        }
        let hl = self.half_life_ms();
        let level = e.rec.level(now, hl);
        if level > e.shared_level {
            return true; // worse than others know
        }
        if e.shared_failures && e.rec.failures == 0.0 && e.rec.last_success_ms > e.shared_last_failure_ms {
            return true; // recovered: let others stop penalising it
        }
        // Keep the shared streak from decaying away while failures go on.
        e.rec.effective(now, hl) >= 1.0 && e.rec.last_failure_ms.saturating_sub(e.shared_last_failure_ms) >= hl / 2
    }

    fn write_allowed(&self, idx: usize, now: u64) -> bool {
        self.entries[idx]
            .last_write_ms
            .is_none_or(|t| now.saturating_sub(t) >= self.settings.min_write_interval_s * 1000)
    }

    /// The earliest time a provider that wants a write may have one, if any
    /// is waiting for its slot.
    pub fn next_write_slot(&self, now: u64) -> Option<u64> {
        (0..self.entries.len())
            .filter(|&i| self.wants_write(i, now) && !self.write_allowed(i, now))
            .filter_map(|i| self.entries[i].last_write_ms)
            .map(|t| t + self.settings.min_write_interval_s * 1000)
            .min()
    }

    /// Whether a request should leave upkeep behind it (a refresh, or a
    /// write): in steady state neither, and the request schedules nothing.
    pub fn upkeep_due(&self, now: u64) -> bool {
        self.refresh_due(now) || (0..self.entries.len()).any(|i| self.write_due(i, now))
    }

    /// Providers whose state should be written now.
    pub fn due_writes(&self, now: u64) -> Vec<usize> {
        (0..self.entries.len()).filter(|&i| self.write_due(i, now)).collect()
    }

    fn write_due(&self, idx: usize, now: u64) -> bool {
        self.wants_write(idx, now) && self.write_allowed(idx, now)
    }

    /// Folds a shared record into this isolate's view.
    pub fn merge_shared(&mut self, idx: usize, shared: &SharedRecord, now: u64) {
        let hl = self.half_life_ms();
        let e = &mut self.entries[idx];
        e.rec = e.rec.merge(&shared.failures, hl);
        e.shared_level = shared.failures.level(now, hl);
        e.shared_failures = shared.failures.failures > 0.0;
        e.shared_last_failure_ms = shared.failures.last_failure_ms;
        if let Some(c) = &shared.circuit {
            e.breaker.merge_shared(c);
            e.shared_circuit_ms = e.shared_circuit_ms.max(c.changed_ms);
        }
        if let Some(h) = &shared.health {
            e.health.merge(h);
            e.shared_health_ms = e.shared_health_ms.max(h.changed_ms);
        }
    }

    fn snapshot(&self, idx: usize) -> SharedRecord {
        let e = &self.entries[idx];
        SharedRecord {
            failures: e.rec,
            circuit: Some(e.breaker.shared),
            health: (e.health.status != HealthStatus::Unknown).then(|| e.health.clone()),
        }
    }

    fn mark_written(&mut self, idx: usize, rec: &SharedRecord, now: u64) {
        let hl = self.half_life_ms();
        let e = &mut self.entries[idx];
        e.shared_level = rec.failures.level(now, hl);
        e.shared_failures = rec.failures.failures > 0.0;
        e.shared_last_failure_ms = rec.failures.last_failure_ms;
        e.shared_circuit_ms = rec.circuit.map_or(0, |c| c.changed_ms);
        e.shared_health_ms = rec.health.as_ref().map_or(0, |h| h.changed_ms);
        e.last_write_ms = Some(now);
    }
}

fn decode(text: &str) -> Option<SharedRecord> {
    serde_json::from_str(text).ok()
}

/// Reads every provider's shared record and merges it in. Errors are
/// reported, never fatal: the in-memory view goes on serving.
pub async fn refresh<S: StateStore>(states: &RefCell<ProviderStates>, store: &S, now: u64) -> Vec<String> {
    let names = {
        let mut s = states.borrow_mut();
        if s.refreshing {
            return Vec::new();
        }
        s.refreshing = true;
        s.names.clone()
    };
    let mut errors = Vec::new();
    for (idx, name) in names.iter().enumerate() {
        match store.get(&key_for(name)).await {
            Ok(Some(text)) => match decode(&text) {
                Some(rec) => states.borrow_mut().merge_shared(idx, &rec, now),
                None => errors.push(format!("{name}: unreadable shared state")),
            },
            Ok(None) => {}
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    let mut s = states.borrow_mut();
    s.refreshing = false;
    s.last_refresh_ms = Some(now);
    errors
}

/// Writes the providers whose state changed, merging with the shared copy
/// first. Returns the providers whose keys were written, and any errors.
pub async fn flush<S: StateStore>(states: &RefCell<ProviderStates>, store: &S, now: u64) -> (Vec<String>, Vec<String>) {
    let (due, ttl) = {
        let s = states.borrow();
        (s.due_writes(now), s.settings.kv_ttl_s)
    };
    let mut written = Vec::new();
    let mut errors = Vec::new();
    for idx in due {
        let name = states.borrow().names[idx].clone();
        let key = key_for(&name);
        // Claim the write slot before awaiting, so that a concurrent flush in
        // this isolate does not write the same key again.
        {
            let mut s = states.borrow_mut();
            let snap = s.snapshot(idx);
            s.mark_written(idx, &snap, now);
        }
        let shared = match store.get(&key).await {
            Ok(t) => t.as_deref().and_then(decode),
            Err(e) => {
                errors.push(format!("{name}: {e}"));
                continue;
            }
        };
        let merged = {
            let mut s = states.borrow_mut();
            if let Some(shared) = shared {
                s.merge_shared(idx, &shared, now);
            }
            let snap = s.snapshot(idx);
            s.mark_written(idx, &snap, now);
            snap
        };
        let text = serde_json::to_string(&merged).unwrap_or_default();
        match store.put(&key, text, ttl).await {
            Ok(()) => written.push(name),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    (written, errors)
}

/// Like [`flush`], but waits (on `clock`) for a key whose write slot is not
/// free yet, rather than leave a change for a later flush. For the cron
/// handler, which has time; never on a request's path.
pub async fn flush_waiting<S: StateStore, C: Clock>(
    states: &RefCell<ProviderStates>,
    store: &S,
    clock: &C,
) -> (Vec<String>, Vec<String>) {
    let (mut written, mut errors) = flush(states, store, clock.now_ms()).await;
    // Bounded: one wait is enough for a write claimed moments before.
    let next = states.borrow().next_write_slot(clock.now_ms());
    if let Some(at) = next {
        clock.sleep(at.saturating_sub(clock.now_ms())).await;
        let (w, e) = flush(states, store, clock.now_ms()).await;
        written.extend(w);
        errors.extend(e);
    }
    (written, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::BreakerSettings;
    use crate::health::{HealthSettings, ProbeResult};
    use crate::store::MemoryStore;
    use futures_executor::block_on;

    fn settings() -> StateSettings {
        StateSettings {
            failure_half_life_s: 60,
            refresh_interval_s: 10,
            min_write_interval_s: 10,
            kv_ttl_s: 3600,
            mirror_write_interval_s: 60,
        }
    }
    fn states() -> RefCell<ProviderStates> {
        let breaker =
            BreakerSettings { consecutive_failures: 1_000_000, min_requests: 1_000_000, ..Default::default() };
        RefCell::new(ProviderStates::new(vec!["a".into(), "b".into()], settings(), breaker, HealthSettings::default()))
    }

    #[test]
    fn a_failure_storm_writes_a_handful_of_times() {
        let store = MemoryStore::default();
        let st = states();
        // 1,000 failures over 100 seconds, a flush after each (as wait_until would).
        for i in 0..1_000u64 {
            let now = 1_000_000 + i * 100;
            st.borrow_mut().record_failure(0, now);
            block_on(flush(&st, &store, now));
        }
        let writes = store.writes.get();
        // At most one write per 10 s interval over 100 s, and only while the level rises.
        assert!((1..=11).contains(&writes), "{writes} writes");
        let rec: SharedRecord = serde_json::from_str(&store.data.borrow()[&key_for("a")]).unwrap();
        assert!(rec.failures.failures >= 16.0, "{rec:?}");
    }

    #[test]
    fn steady_success_never_writes() {
        let store = MemoryStore::default();
        let st = states();
        for i in 0..1_000u64 {
            st.borrow_mut().record_success(0, i * 1000);
            block_on(flush(&st, &store, i * 1000));
        }
        assert_eq!(store.writes.get(), 0);
    }

    #[test]
    fn upkeep_is_due_only_for_a_refresh_or_a_write() {
        let store = MemoryStore::default();
        let st = states();
        assert!(st.borrow().upkeep_due(0), "a new isolate has never read the shared state");
        block_on(refresh(&st, &store, 0));
        st.borrow_mut().record_success(0, 1_000);
        assert!(!st.borrow().upkeep_due(1_000), "steady state: nothing to do after a request");
        st.borrow_mut().record_failure(0, 2_000);
        assert!(st.borrow().upkeep_due(2_000), "a failure to share");
        block_on(flush(&st, &store, 2_000));
        assert!(!st.borrow().upkeep_due(2_000));
        let refresh_ms = st.borrow().settings.refresh_interval_s * 1000;
        assert!(st.borrow().upkeep_due(refresh_ms + 1_000), "the periodic refresh");
    }

    #[test]
    fn recovery_is_written_once() {
        let store = MemoryStore::default();
        let st = states();
        st.borrow_mut().record_failure(0, 0);
        block_on(flush(&st, &store, 0));
        assert_eq!(store.writes.get(), 1);
        st.borrow_mut().record_success(0, 20_000);
        block_on(flush(&st, &store, 20_000));
        assert_eq!(store.writes.get(), 2);
        for t in 21..40 {
            st.borrow_mut().record_success(0, t * 1000);
            block_on(flush(&st, &store, t * 1000));
        }
        assert_eq!(store.writes.get(), 2);
    }

    #[test]
    fn a_transition_right_after_a_write_waits_for_its_slot() {
        use crate::clock::FakeClock;
        let store = MemoryStore::default();
        let st = states();
        let clock = FakeClock::new(100_000);
        st.borrow_mut().record_failure(0, 100_000);
        block_on(flush(&st, &store, 100_000));
        st.borrow_mut().record_success(0, 100_500);
        // A plain flush leaves it for later; the waiting one writes it.
        clock.set(100_500);
        let (written, _) = block_on(flush(&st, &store, 100_500));
        assert!(written.is_empty());
        let (written, _) = block_on(flush_waiting(&st, &store, &clock));
        assert_eq!(written, vec!["a".to_owned()]);
        assert_eq!(clock.now_ms(), 110_000, "waited for the 10 s slot");
        let rec: SharedRecord = serde_json::from_str(&store.data.borrow()[&key_for("a")]).unwrap();
        assert_eq!(rec.failures.failures, 0.0);
    }

    /// One provider, an hour of one request a second and a cron probe a
    /// minute, with the shipped defaults; returns the KV writes.
    fn hour_of_traffic(provider_up: bool) -> u32 {
        use crate::breaker::Permit;
        use crate::taxonomy::ErrorKind;
        let store = MemoryStore::default();
        let st = RefCell::new(ProviderStates::new(
            vec!["a".into()],
            StateSettings::default(),
            BreakerSettings::default(),
            HealthSettings::default(),
        ));
        let start = 1_000_000_000u64;
        for s in 0..3_600u64 {
            let now = start + s * 1000;
            let permit = st.borrow_mut().acquire(0, now);
            if permit != Permit::Denied {
                if provider_up {
                    st.borrow_mut().record_success(0, now);
                } else {
                    st.borrow_mut().record_failure(0, now);
                }
            }
            if s % 60 == 0 {
                let error = (!provider_up).then_some(ErrorKind::Server);
                st.borrow_mut().record_probe(0, ProbeResult { error, latency_ms: 5 }, now);
            }
            block_on(flush(&st, &store, now));
        }
        store.writes.get()
    }

    #[test]
    fn kv_writes_per_provider_per_hour() {
        let outage = hour_of_traffic(false);
        let healthy = hour_of_traffic(true);
        println!("KV writes per provider-hour: sustained outage {outage}, steady health {healthy}");
        // The circuit opens once, then reopens after each failed trial with a
        // doubling cooldown capped at 5 minutes; health goes down once.
        assert!(outage <= 20, "{outage} writes in an hour of outage");
        // Healthy: the first probe's unknown -> healthy, then nothing.
        assert!(healthy <= 1, "{healthy} writes in an hour of health");
    }

    #[test]
    fn another_isolate_picks_up_shared_failures() {
        let store = MemoryStore::default();
        let a = states();
        for _ in 0..3 {
            a.borrow_mut().record_failure(1, 5_000);
        }
        block_on(flush(&a, &store, 5_000));
        let b = states();
        assert!(b.borrow().never_loaded());
        assert!(block_on(refresh(&b, &store, 6_000)).is_empty());
        assert!(!b.borrow().never_loaded());
        assert!((b.borrow().effective_failures(1, 5_000) - 3.0).abs() < 1e-9);
        assert_eq!(b.borrow().penalty(0, 6_000), 1.0);
        // Having just read it, b does not write the same state back.
        assert!(b.borrow().due_writes(6_000).is_empty());
        assert!(!b.borrow().refresh_due(7_000));
        assert!(b.borrow().refresh_due(16_000));
    }

    #[test]
    fn writes_merge_with_newer_shared_state() {
        let store = MemoryStore::default();
        let a = states();
        let b = states();
        a.borrow_mut().record_failure(0, 1_000);
        block_on(flush(&a, &store, 1_000));
        // b saw a success later than a's failure, and a second failure; then a success.
        b.borrow_mut().record_failure(0, 2_000);
        b.borrow_mut().record_failure(0, 2_000);
        block_on(flush(&b, &store, 2_000));
        let shared: FailureRecord = serde_json::from_str(&store.data.borrow()[&key_for("a")]).unwrap();
        assert_eq!(shared.last_failure_ms, 2_000);
        assert!(shared.failures >= 2.0);
    }
}
