//! Provider state shared between isolates.
//!
//! Each isolate keeps every provider's state in memory (failure count,
//! circuit breaker, probe health) and uses only that on the request path. The
//! shared copy lives in the state store (Workers KV), one key per provider:
//!
//! - an isolate reads the shared copy when it first serves a request, then at
//!   most every `refresh_interval_s`, after the response (`wait_until`). The
//!   reads of a refresh run concurrently, all bounded by `read_timeout_ms`, so
//!   a slow store never holds a request longer than that; a refresh holds a
//!   lease that expires, so one abandoned half-way (the runtime cancelled it)
//!   is retried once the lease has run out;
//! - it writes a provider's key only when the provider's state changed in a
//!   way others should know: a circuit or health transition, a rise in the
//!   failure level or a success clearing failures while the circuit is
//!   closed, or (once per half-life) keeping an ongoing failure streak from
//!   decaying away; and never more often than `min_write_interval_s` per key,
//!   so a failure storm costs a handful of writes, not one per request;
//! - a write first reads the shared copy and merges, so that a newer event
//!   seen elsewhere is not overwritten; and when the shared copy already says
//!   what this isolate would write (another isolate wrote the same news), the
//!   write is skipped;
//! - a change seen in traffic waits a per-isolate jitter (seeded per isolate,
//!   below `min_write_interval_s`) before its write, so isolates that see the
//!   same event at the same moment do not all write it at once: the later
//!   ones find it already written;
//! - a write that fails is not taken as written: it is retried at the next
//!   write slot.

use crate::breaker::{Breaker, BreakerSettings, CircuitState, Permit, SharedCircuit, Transition};
use crate::budget::RetryBudget;
use crate::clock::Clock;
use crate::config::StateSettings;
use crate::failures::FailureRecord;
use crate::health::{Health, HealthSettings, HealthStatus, ProbeResult};
use crate::json::{Fields, JsonText as _};
use crate::selection::Availability;
use crate::store::StateStore;
use crate::taxonomy::ErrorKind;
use serde::Serialize;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::task::Poll;

pub const KEY_PREFIX: &str = "sy:v1:p:";

pub fn key_for(provider: &str) -> String {
    format!("{KEY_PREFIX}{provider}")
}

/// What one provider's KV key holds (stored flat, as `SharedWire`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(into = "SharedWire")]
pub struct SharedRecord {
    pub failures: FailureRecord,
    pub circuit: Option<SharedCircuit>,
    pub health: Option<Health>,
    /// When this copy was written: an isolate that finds the key written
    /// less than a second ago leaves its own write for its next slot (KV
    /// allows one write a second per key).
    pub written_ms: u64,
}

impl SharedRecord {
    /// Reads what a key holds (`None`: not a record, which is then left
    /// to be overwritten). `circuit`, `health` and `written_ms` may be
    /// absent (records of earlier versions).
    pub fn read(v: &Value) -> Option<SharedRecord> {
        let f = Fields::of(v)?;
        let failures = FailureRecord {
            failures: f.f64("failures")?,
            last_failure_ms: f.u64("last_failure_ms")?,
            last_success_ms: f.u64("last_success_ms")?,
            updated_ms: f.u64("updated_ms")?,
        };
        Some(SharedRecord {
            failures,
            circuit: f.opt("circuit", SharedCircuit::read)?,
            health: f.opt("health", Health::read)?,
            written_ms: f.or("written_ms", 0, Fields::u64)?,
        })
    }
}

/// A [`SharedRecord`] as the key stores it: the failure record's fields
/// at the top level. (Written out rather than `#[serde(flatten)]`, which
/// costs several KiB of wasm.)
#[derive(Serialize)]
struct SharedWire {
    failures: f64,
    last_failure_ms: u64,
    last_success_ms: u64,
    updated_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    circuit: Option<SharedCircuit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<Health>,
    written_ms: u64,
}

impl From<SharedRecord> for SharedWire {
    fn from(r: SharedRecord) -> Self {
        let f = r.failures;
        SharedWire {
            failures: f.failures,
            last_failure_ms: f.last_failure_ms,
            last_success_ms: f.last_success_ms,
            updated_ms: f.updated_ms,
            circuit: r.circuit,
            health: r.health,
            written_ms: r.written_ms,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    rec: FailureRecord,
    breaker: Breaker,
    health: Health,
    /// What the store is known to hold (last written or read).
    shared_rec: FailureRecord,
    shared_circuit: Option<SharedCircuit>,
    shared_health: Option<Health>,
    /// When this isolate last claimed the key's write slot.
    last_write_ms: Option<u64>,
    /// When a change seen in traffic started waiting for its write (the
    /// write jitter counts from then).
    pending_since_ms: Option<u64>,
}

impl Entry {
    fn new(breaker: &BreakerSettings) -> Self {
        Entry {
            rec: FailureRecord::default(),
            breaker: Breaker::new(breaker),
            health: Health::default(),
            shared_rec: FailureRecord::default(),
            shared_circuit: None,
            shared_health: None,
            last_write_ms: None,
            pending_since_ms: None,
        }
    }

    /// Whether the circuit says something the store does not: a change of
    /// open/closed, or a re-opening (a failed trial) while the stored circuit
    /// already lets trials through.
    fn circuit_news(&self, now: u64) -> bool {
        let ours = &self.breaker.shared;
        let Some(known) = &self.shared_circuit else {
            return ours.changed_ms > 0;
        };
        if ours.changed_ms <= known.changed_ms {
            return false;
        }
        if ours.open != known.open {
            return true;
        }
        // Both open: news only if others would send trials now and we know to wait.
        ours.open
            && known.opened_ms.saturating_add(known.cooldown_ms) <= now
            && ours.opened_ms.saturating_add(ours.cooldown_ms) > now
    }

    /// Whether the health status (or whether it is out of selection) differs
    /// from the store's.
    fn health_news(&self) -> bool {
        let ours = &self.health;
        match &self.shared_health {
            None => ours.status != HealthStatus::Unknown,
            Some(known) => {
                ours.changed_ms > known.changed_ms
                    && (ours.status != known.status || ours.routable() != known.routable())
            }
        }
    }
}

/// A refresh in progress: its id, and when it is presumed lost.
#[derive(Debug, Clone, Copy)]
struct Lease {
    id: u64,
    until_ms: u64,
}

/// Every provider's state as this isolate sees it.
#[derive(Debug)]
pub struct ProviderStates {
    names: Vec<String>,
    entries: Vec<Entry>,
    /// Stands in for a provider index that is not configured (never the case
    /// with a validated config, but the request path must not panic).
    fallback: Entry,
    settings: StateSettings,
    breaker: BreakerSettings,
    health: HealthSettings,
    last_refresh_ms: Option<u64>,
    refresh_lease: Option<Lease>,
    leases_taken: u64,
    /// How long a traffic change waits before its write, in this isolate.
    write_jitter_ms: u64,
    /// A request's after-response task is waiting for a write slot (until
    /// about then): one is enough.
    waiter_until_ms: Option<u64>,
    /// The budget for attempts forced through unavailable targets.
    budget: RetryBudget,
    /// Structured events (transitions) not yet logged.
    events: Vec<String>,
}

impl ProviderStates {
    pub fn new(names: Vec<String>, settings: StateSettings, breaker: BreakerSettings, health: HealthSettings) -> Self {
        let entry = Entry::new(&breaker);
        let entries = vec![entry.clone(); names.len()];
        ProviderStates {
            names,
            entries,
            fallback: entry,
            settings,
            breaker,
            health,
            last_refresh_ms: None,
            refresh_lease: None,
            leases_taken: 0,
            write_jitter_ms: 0,
            waiter_until_ms: None,
            budget: RetryBudget::from_settings(&breaker),
            events: Vec::new(),
        }
    }

    /// Spreads this isolate's traffic-driven writes: each waits
    /// `seed % min_write_interval` ms. Without a seed (tests) there is no wait.
    pub fn seed_write_jitter(&mut self, seed: u64) {
        let interval = self.settings.min_write_interval_s.saturating_mul(1000).max(1);
        self.write_jitter_ms = seed % interval;
    }

    pub fn write_jitter_ms(&self) -> u64 {
        self.write_jitter_ms
    }

    fn entry(&self, idx: usize) -> &Entry {
        self.entries.get(idx).unwrap_or(&self.fallback)
    }

    fn name(&self, idx: usize) -> &str {
        self.names.get(idx).map_or("", String::as_str)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn half_life_ms(&self) -> u64 {
        self.settings.failure_half_life_s * 1000
    }

    pub fn record(&self, idx: usize) -> FailureRecord {
        self.entry(idx).rec
    }

    pub fn health(&self, idx: usize) -> &Health {
        &self.entry(idx).health
    }

    pub fn breaker(&self, idx: usize) -> &Breaker {
        &self.entry(idx).breaker
    }

    pub fn circuit(&self, idx: usize, now: u64) -> CircuitState {
        self.entry(idx).breaker.state(now)
    }

    /// The weight factor of provider `idx` at `now`.
    pub fn penalty(&self, idx: usize, now: u64) -> f64 {
        self.entry(idx).rec.penalty(now, self.half_life_ms())
    }

    pub fn effective_failures(&self, idx: usize, now: u64) -> f64 {
        self.entry(idx).rec.effective(now, self.half_life_ms())
    }

    /// Whether selection may route to provider `idx` now: its circuit lets a
    /// request through and its health does not take it out of selection.
    pub fn available(&self, idx: usize, now: u64) -> bool {
        let e = self.entry(idx);
        e.breaker.available(now) && e.health.routable()
    }

    /// What selection should make of provider `idx` now.
    pub fn availability(&self, idx: usize, now: u64) -> Availability {
        let e = self.entry(idx);
        if !e.health.routable() {
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
        let Some(e) = self.entries.get_mut(idx) else {
            return Permit::Denied;
        };
        if !e.health.routable() {
            return Permit::Denied;
        }
        e.breaker.acquire(now)
    }

    /// A request is being routed: it deposits its share into the retry
    /// budget, and when its attempts are `forced` (every target unavailable)
    /// pays for the first of them. `false`: forced, and the budget is spent;
    /// the request must not go upstream.
    pub fn budget_request(&mut self, forced: bool, now: u64) -> bool {
        self.budget.deposit(now);
        !forced || self.budget.withdraw(now)
    }

    /// Pays for one more forced attempt; `false` when the budget is spent.
    pub fn withdraw_forced(&mut self, now: u64) -> bool {
        self.budget.withdraw(now)
    }

    pub fn retry_budget(&self) -> &RetryBudget {
        &self.budget
    }

    /// When it is worth asking again after the budget refused a request for
    /// these providers: the earliest circuit half-opens (its trial is not
    /// forced), or else the budget has a token again; at least a second on.
    pub fn unavailable_until(&self, providers: impl IntoIterator<Item = usize>, now: u64) -> u64 {
        providers
            .into_iter()
            .filter_map(|i| self.entry(i).breaker.retry_at_ms())
            .filter(|&t| t > now)
            .min()
            .or_else(|| self.budget.next_token_ms(now).filter(|&t| t > now))
            .unwrap_or(now + 1000)
    }

    fn circuit_event(&mut self, idx: usize, t: Option<Transition>, now: u64) {
        if let Some(t) = t {
            let line = json!({
                "level": if t.to == CircuitState::Open { "warn" } else { "info" },
                "msg": "circuit",
                "provider": self.name(idx),
                "from": t.from.as_str(),
                "to": t.to.as_str(),
                "cooldown_ms": self.entry(idx).breaker.shared.cooldown_ms,
                "at_ms": now,
            })
            .json_text();
            self.events.push(line);
        }
    }

    /// Traffic changed whether a misconfigured provider is in selection.
    fn selection_event(&mut self, idx: usize, kind: Option<ErrorKind>, now: u64) {
        let h = &self.entry(idx).health;
        let line = json!({
            "level": "warn",
            "msg": "health",
            "provider": self.name(idx),
            "from": h.status.as_str(),
            "to": h.status.as_str(),
            "in_selection": h.routable(),
            "error_kind": h.last_error,
            "because": match kind {
                Some(k) => format!("requests fail with {} as the probe did: out of selection", k.as_str()),
                None => "a request was answered: back in selection, still reported misconfigured".to_owned(),
            },
            "at_ms": now,
        })
        .json_text();
        self.events.push(line);
    }

    /// A traffic change that others should know waits out this isolate's
    /// jitter from now (if nothing was waiting already).
    fn note_pending(&mut self, idx: usize, now: u64) {
        let wants = self.wants_write(idx, now);
        if let Some(e) = self.entries.get_mut(idx) {
            if !wants {
                e.pending_since_ms = None;
            } else if e.pending_since_ms.is_none() {
                e.pending_since_ms = Some(now);
            }
        }
    }

    /// A request to provider `idx` failed with `kind` (a kind that counts
    /// against the provider).
    pub fn record_failure(&mut self, idx: usize, kind: ErrorKind, now: u64) {
        let hl = self.half_life_ms();
        let s = self.breaker;
        let Some(e) = self.entries.get_mut(idx) else { return };
        e.rec.record_failure(now, hl);
        let t = e.breaker.on_failure(now, &s);
        let confirmed = e.health.traffic_failed(kind, now);
        self.circuit_event(idx, t, now);
        if confirmed {
            self.selection_event(idx, Some(kind), now);
        }
        self.note_pending(idx, now);
    }

    pub fn record_success(&mut self, idx: usize, now: u64) {
        let s = self.breaker;
        let Some(e) = self.entries.get_mut(idx) else { return };
        e.rec.record_success(now);
        let t = e.breaker.on_success(now, &s);
        let back = e.health.traffic_answered(now);
        self.circuit_event(idx, t, now);
        if back {
            self.selection_event(idx, None, now);
        }
        self.note_pending(idx, now);
    }

    /// The provider answered, but refused the request for the request's own
    /// sake (content policy, context length): it is up, so a half-open trial
    /// counts as passed, and its key and model work; failure counts are left
    /// as they are.
    pub fn record_alive(&mut self, idx: usize, now: u64) {
        let s = self.breaker;
        let Some(e) = self.entries.get_mut(idx) else { return };
        let t = e.breaker.on_success(now, &s);
        let back = e.health.traffic_answered(now);
        self.circuit_event(idx, t, now);
        if back {
            self.selection_event(idx, None, now);
        }
        self.note_pending(idx, now);
    }

    /// Applies a health probe's result.
    pub fn record_probe(&mut self, idx: usize, r: ProbeResult, now: u64) {
        let hs = self.health;
        let bs = self.breaker;
        let name = self.name(idx).to_owned();
        let Some(e) = self.entries.get_mut(idx) else { return };
        let was_routable = e.health.routable();
        let change = e.health.observe(r, now, &hs);
        let t = match r.error {
            None => e.breaker.on_probe_success(now, &bs),
            Some(k) if k.counts_as_provider_failure() && !k.is_misconfiguration() => e.breaker.on_failure(now, &bs),
            Some(_) => None,
        };
        let h = &e.health;
        let routable = h.routable();
        let misconfigured = h.status == HealthStatus::Misconfigured;
        let status = h.status;
        let base = json!({
            "provider": name,
            "last_error": h.last_error,
            "latency_ms": h.last_latency_ms,
            "in_selection": routable,
            "at_ms": now,
        });
        if change.is_some() || routable != was_routable {
            let (from, to) = change.unwrap_or((status, status));
            let mut line = base.clone();
            if let Some(m) = line.as_object_mut() {
                m.insert("level".into(), json!(if routable && !misconfigured { "info" } else { "warn" }));
                m.insert("msg".into(), json!("health"));
                m.insert("from".into(), Value::from(from.as_str()));
                m.insert("to".into(), Value::from(to.as_str()));
            }
            self.events.push(line.json_text());
        }
        if let (true, Some(kind)) = (misconfigured, r.error) {
            // Loud on every such probe: an operator has something to fix
            // (a key, its scopes, a base URL or the probe setting).
            let mut line = base;
            if let Some(m) = line.as_object_mut() {
                m.insert("level".into(), json!("warn"));
                m.insert("msg".into(), json!("probe misconfigured"));
                m.insert("error_kind".into(), Value::from(kind.as_str()));
                m.insert(
                    "detail".into(),
                    json!(if routable {
                        "the probe was refused; requests still go to this provider unless they fail the same way"
                    } else {
                        "the probe was refused and requests fail the same way: out of selection"
                    }),
                );
            }
            self.events.push(line.json_text());
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

    /// How long a refresh may hold its lease: it takes at most about the
    /// read timeout, so one still holding it after twice that (and at least
    /// a second) was abandoned.
    fn lease_ms(&self) -> u64 {
        self.settings.read_timeout_ms.saturating_mul(2).max(1_000)
    }

    fn lease_free(&self, now: u64) -> bool {
        self.refresh_lease.is_none_or(|l| now >= l.until_ms)
    }

    pub fn refresh_due(&self, now: u64) -> bool {
        self.lease_free(now)
            && self.last_refresh_ms.is_none_or(|t| now.saturating_sub(t) >= self.settings.refresh_interval_s * 1000)
    }

    /// Takes the refresh lease, unless a live one is held.
    fn take_lease(&mut self, now: u64) -> Option<u64> {
        if !self.lease_free(now) {
            return None;
        }
        self.leases_taken += 1;
        let id = self.leases_taken;
        self.refresh_lease = Some(Lease { id, until_ms: now.saturating_add(self.lease_ms()) });
        Some(id)
    }

    fn end_refresh(&mut self, id: u64, now: u64) {
        if self.refresh_lease.is_some_and(|l| l.id == id) {
            self.refresh_lease = None;
        }
        self.last_refresh_ms = Some(now);
    }

    /// Whether this provider's state differs from the shared copy in a way
    /// worth a write.
    fn wants_write(&self, idx: usize, now: u64) -> bool {
        let Some(e) = self.entries.get(idx) else { return false };
        if e.circuit_news(now) || e.health_news() {
            return true; // a transition others do not know of
        }
        if e.breaker.shared.open {
            // While the circuit is open, the circuit says all there is to say.
            return false;
        }
        let hl = self.half_life_ms();
        let known = &e.shared_rec;
        // Levels are compared as of this isolate's last failure, so that a
        // rise still counts after the wait for a write slot (or the jitter)
        // has let it decay a little; a rise older than a half-life is old news.
        let at = e.rec.last_failure_ms;
        if e.rec.level(at, hl) > known.level(at, hl) && now.saturating_sub(at) < hl {
            return true; // worse than others know
        }
        if known.failures > 0.0 && e.rec.failures == 0.0 && e.rec.last_success_ms > known.last_failure_ms {
            return true; // recovered: let others stop penalising it
        }
        // Keep the shared streak from decaying away while failures go on.
        e.rec.effective(now, hl) >= 1.0 && e.rec.last_failure_ms.saturating_sub(known.last_failure_ms) >= hl / 2
    }

    /// When provider `idx` may be written next: its write slot, and the
    /// jitter of a change from traffic.
    fn write_at(&self, idx: usize) -> u64 {
        let e = self.entry(idx);
        let slot = e.last_write_ms.map_or(0, |t| t.saturating_add(self.settings.min_write_interval_s * 1000));
        let jitter = e.pending_since_ms.map_or(0, |t| t.saturating_add(self.write_jitter_ms));
        slot.max(jitter)
    }

    /// The earliest time a provider that wants a write may have one, if any
    /// is waiting for its slot.
    pub fn next_write_slot(&self, now: u64) -> Option<u64> {
        (0..self.entries.len())
            .filter(|&i| self.wants_write(i, now))
            .map(|i| self.write_at(i))
            .filter(|&t| t > now)
            .min()
    }

    /// Whether a request should leave upkeep behind it (a refresh, a write,
    /// or a write to wait for when nothing waits for it yet): in steady state
    /// none, and the request schedules nothing.
    pub fn upkeep_due(&self, now: u64) -> bool {
        self.refresh_due(now) || (0..self.entries.len()).any(|i| self.write_due(i, now)) || self.wait_for(now).is_some()
    }

    /// The write slot an after-response task should wait for, if one is
    /// coming soon enough (well within `waitUntil`'s time after the
    /// response) and no other task waits for it.
    fn wait_for(&self, now: u64) -> Option<u64> {
        if self.waiter_until_ms.is_some_and(|t| now < t) {
            return None;
        }
        self.next_write_slot(now).filter(|&at| at.saturating_sub(now) <= MAX_AFTER_RESPONSE_WAIT_MS)
    }

    fn take_waiter(&mut self, now: u64) -> Option<u64> {
        let at = self.wait_for(now)?;
        // Presumed lost (the task cancelled) a second after its slot.
        self.waiter_until_ms = Some(at.saturating_add(1_000));
        Some(at)
    }

    /// Providers whose state should be written now.
    pub fn due_writes(&self, now: u64) -> Vec<usize> {
        (0..self.entries.len()).filter(|&i| self.write_due(i, now)).collect()
    }

    fn write_due(&self, idx: usize, now: u64) -> bool {
        self.wants_write(idx, now) && self.write_at(idx) <= now
    }

    /// Folds a shared record into this isolate's view.
    pub fn merge_shared(&mut self, idx: usize, shared: &SharedRecord, now: u64) {
        let hl = self.half_life_ms();
        let Some(e) = self.entries.get_mut(idx) else { return };
        e.rec = e.rec.merge(&shared.failures, hl);
        e.shared_rec = shared.failures;
        if let Some(c) = &shared.circuit {
            e.breaker.merge_shared(c);
        }
        e.shared_circuit = shared.circuit;
        if let Some(h) = &shared.health {
            e.health.merge(h);
        }
        e.shared_health.clone_from(&shared.health);
        if !self.wants_write(idx, now) {
            if let Some(e) = self.entries.get_mut(idx) {
                e.pending_since_ms = None;
            }
        }
    }

    fn snapshot(&self, idx: usize) -> SharedRecord {
        let e = self.entry(idx);
        SharedRecord {
            failures: e.rec,
            circuit: Some(e.breaker.shared),
            health: (e.health.status != HealthStatus::Unknown).then(|| e.health.clone()),
            written_ms: 0,
        }
    }

    /// Claims the key's write slot before the write's awaits, so that a
    /// concurrent flush in this isolate does not write the same key again.
    /// What the store holds is left as it was until the write succeeds.
    fn claim_slot(&mut self, idx: usize, now: u64) {
        if let Some(e) = self.entries.get_mut(idx) {
            e.last_write_ms = Some(now);
        }
    }

    fn mark_written(&mut self, idx: usize, rec: &SharedRecord, now: u64) {
        let Some(e) = self.entries.get_mut(idx) else { return };
        e.shared_rec = rec.failures;
        e.shared_circuit = rec.circuit;
        e.shared_health.clone_from(&rec.health);
        e.last_write_ms = Some(now);
        e.pending_since_ms = None;
    }
}

fn decode(text: &str) -> Option<SharedRecord> {
    SharedRecord::read(&serde_json::from_str(text).ok()?)
}

/// Reads every provider's shared record and merges it in. The reads run
/// concurrently and are all bounded by `read_timeout_ms` (raced against
/// `clock.sleep`): a key that has not answered by then is left for the next
/// refresh, and the others are merged as they arrive. Errors are reported,
/// never fatal: the in-memory view goes on serving. A refresh already in
/// flight (holding a live lease) makes this one return at once.
pub async fn refresh<S: StateStore, C: Clock>(states: &RefCell<ProviderStates>, store: &S, clock: &C) -> Vec<String> {
    let (names, lease, timeout_ms) = {
        let mut s = states.borrow_mut();
        let Some(lease) = s.take_lease(clock.now_ms()) else {
            return Vec::new();
        };
        (s.names.clone(), lease, s.settings.read_timeout_ms)
    };
    let answered = RefCell::new(vec![false; names.len()]);
    let errors = RefCell::new(Vec::new());
    {
        type Read<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;
        let mut reads: Vec<Read<'_>> = names
            .iter()
            .enumerate()
            .map(|(idx, name)| {
                let (answered, errors) = (&answered, &errors);
                Box::pin(async move {
                    let got = store.get(&key_for(name)).await;
                    if let Some(a) = answered.borrow_mut().get_mut(idx) {
                        *a = true;
                    }
                    match got {
                        Ok(Some(text)) => match decode(&text) {
                            Some(rec) => states.borrow_mut().merge_shared(idx, &rec, clock.now_ms()),
                            None => errors.borrow_mut().push(format!("{name}: unreadable shared state")),
                        },
                        Ok(None) => {}
                        Err(e) => errors.borrow_mut().push(format!("{name}: {e}")),
                    }
                }) as Read<'_>
            })
            .collect();
        let mut timer = pin!(clock.sleep(timeout_ms));
        // The reads first: when they are all in, the timer is never started.
        std::future::poll_fn(|cx| {
            reads.retain_mut(|read| read.as_mut().poll(cx).is_pending());
            if reads.is_empty() || timer.as_mut().poll(cx).is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
    let mut errors = errors.into_inner();
    for (name, done) in names.iter().zip(answered.into_inner()) {
        if !done {
            errors.push(format!("{name}: no answer within {timeout_ms} ms"));
        }
    }
    states.borrow_mut().end_refresh(lease, clock.now_ms());
    errors
}

/// Writes the providers whose state changed, merging with the shared copy
/// first. Returns the providers whose keys were written, and any errors. A
/// write that the shared copy makes unneeded (another isolate wrote the same)
/// is skipped; a write that fails is retried at the key's next write slot.
pub async fn flush<S: StateStore>(states: &RefCell<ProviderStates>, store: &S, now: u64) -> (Vec<String>, Vec<String>) {
    let (due, ttl) = {
        let s = states.borrow();
        (s.due_writes(now), s.settings.kv_ttl_s)
    };
    let mut written = Vec::new();
    let mut errors = Vec::new();
    for idx in due {
        let name = states.borrow().name(idx).to_owned();
        let key = key_for(&name);
        states.borrow_mut().claim_slot(idx, now);
        let shared = match store.get(&key).await {
            Ok(t) => t.as_deref().and_then(decode),
            Err(e) => {
                errors.push(format!("{name}: {e}"));
                continue;
            }
        };
        let merged = {
            let mut s = states.borrow_mut();
            let mut just_written = false;
            if let Some(shared) = shared {
                s.merge_shared(idx, &shared, now);
                just_written = shared.written_ms > 0 && now.saturating_sub(shared.written_ms) < 1_000;
            }
            if !s.wants_write(idx, now) {
                // The shared copy already says it.
                continue;
            }
            if just_written {
                // Another isolate wrote the key under a second ago: ours waits
                // for this isolate's next slot (KV allows one write a second per key).
                continue;
            }
            let mut snap = s.snapshot(idx);
            snap.written_ms = now;
            snap
        };
        let text = serde_json::to_string(&merged).unwrap_or_default();
        match store.put(&key, text, ttl).await {
            Ok(()) => {
                states.borrow_mut().mark_written(idx, &merged, now);
                written.push(name);
            }
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    (written, errors)
}

/// The longest an after-response task waits for a write slot: `waitUntil`
/// work gets about 30 s after the response, and may be cancelled.
const MAX_AFTER_RESPONSE_WAIT_MS: u64 = 20_000;

/// [`flush`] after a response (in `waitUntil`): writes what is due, then, if a
/// change waits for its slot (or this isolate's jitter) and no other task
/// waits for it, waits for it and writes it, so that it does not depend on a
/// later request. At most one such wait per isolate at a time.
pub async fn flush_after_response<S: StateStore, C: Clock>(
    states: &RefCell<ProviderStates>,
    store: &S,
    clock: &C,
) -> (Vec<String>, Vec<String>) {
    let (mut written, mut errors) = flush(states, store, clock.now_ms()).await;
    let at = states.borrow_mut().take_waiter(clock.now_ms());
    if let Some(at) = at {
        clock.sleep(at.saturating_sub(clock.now_ms())).await;
        let (w, e) = flush(states, store, clock.now_ms()).await;
        written.extend(w);
        errors.extend(e);
        states.borrow_mut().waiter_until_ms = None;
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
    use crate::clock::FakeClock;
    use crate::health::{HealthSettings, ProbeResult};
    use crate::store::MemoryStore;
    use futures_executor::block_on;
    use futures_util::FutureExt;
    use std::cell::Cell;

    const FAIL: ErrorKind = ErrorKind::Server;

    #[test]
    fn a_stored_record_keeps_its_flat_shape_both_ways() {
        // As earlier versions wrote it: the failure record's fields at the top.
        let stored = r#"{"failures":2.5,"last_failure_ms":1000,"last_success_ms":900,"updated_ms":1000,
            "circuit":{"open":true,"opened_ms":1000,"cooldown_ms":30000,"changed_ms":1000},
            "health":{"status":"down","consecutive_successes":0,"consecutive_failures":3,"last_probe_ms":950,
              "last_latency_ms":12,"last_error":"timeout","last_error_ms":950,"changed_ms":950,
              "confirmed":false,"misconfigured_probes":0},
            "written_ms":1001}"#;
        let rec = decode(stored).unwrap();
        assert_eq!(
            rec.failures,
            FailureRecord { failures: 2.5, last_failure_ms: 1000, last_success_ms: 900, updated_ms: 1000 }
        );
        assert_eq!(rec.circuit.map(|c| (c.open, c.cooldown_ms)), Some((true, 30000)));
        let health = rec.health.clone().unwrap();
        assert_eq!((health.status, health.consecutive_failures), (HealthStatus::Down, 3));
        assert_eq!(rec.written_ms, 1001);
        let written: serde_json::Value = serde_json::to_value(&rec).unwrap();
        assert_eq!(written, serde_json::from_str::<serde_json::Value>(stored).unwrap());
        // Without the optional parts, and a record missing a required field.
        let bare = decode(r#"{"failures":0,"last_failure_ms":0,"last_success_ms":5,"updated_ms":5}"#).unwrap();
        assert_eq!((bare.circuit, bare.health.is_none(), bare.written_ms), (None, true, 0));
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            r#"{"failures":0.0,"last_failure_ms":0,"last_success_ms":5,"updated_ms":5,"written_ms":0}"#
        );
        assert!(decode(r#"{"last_failure_ms":0,"last_success_ms":5,"updated_ms":5}"#).is_none());
        // A part that is there must read: a broken circuit fails the record
        // (which the next write then replaces), a null one is no circuit.
        let with = |circuit: &str| {
            stored.replace(r#"{"open":true,"opened_ms":1000,"cooldown_ms":30000,"changed_ms":1000}"#, circuit)
        };
        assert!(decode(&with(r#"{"open":"yes","opened_ms":1000,"cooldown_ms":30000,"changed_ms":1000}"#)).is_none());
        assert_eq!(decode(&with("null")).map(|r| r.circuit), Some(None));
        assert!(decode("[]").is_none() && decode("not json").is_none());
    }

    fn settings() -> StateSettings {
        StateSettings {
            failure_half_life_s: 60,
            refresh_interval_s: 10,
            min_write_interval_s: 10,
            kv_ttl_s: 3600,
            mirror_write_interval_s: 60,
            read_timeout_ms: 500,
        }
    }
    fn states() -> RefCell<ProviderStates> {
        let breaker =
            BreakerSettings { consecutive_failures: 1_000_000, min_requests: 1_000_000, ..Default::default() };
        RefCell::new(ProviderStates::new(vec!["a".into(), "b".into()], settings(), breaker, HealthSettings::default()))
    }
    fn probe(error: Option<ErrorKind>) -> ProbeResult {
        ProbeResult { error, latency_ms: 5, completion: false }
    }
    fn shared(store: &MemoryStore, provider: &str) -> SharedRecord {
        decode(&store.data.borrow()[&key_for(provider)]).unwrap()
    }

    #[test]
    fn a_failure_storm_writes_a_handful_of_times() {
        let store = MemoryStore::default();
        let st = states();
        // 1,000 failures over 100 seconds, a flush after each (as wait_until would).
        for i in 0..1_000u64 {
            let now = 1_000_000 + i * 100;
            st.borrow_mut().record_failure(0, FAIL, now);
            block_on(flush(&st, &store, now));
        }
        let writes = store.writes.get();
        // At most one write per 10 s interval over 100 s, and only while the level rises.
        assert!((1..=11).contains(&writes), "{writes} writes");
        assert!(shared(&store, "a").failures.failures >= 16.0);
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
        block_on(refresh(&st, &store, &FakeClock::new(0)));
        st.borrow_mut().record_success(0, 1_000);
        assert!(!st.borrow().upkeep_due(1_000), "steady state: nothing to do after a request");
        st.borrow_mut().record_failure(0, FAIL, 2_000);
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
        st.borrow_mut().record_failure(0, FAIL, 0);
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
        let store = MemoryStore::default();
        let st = states();
        let clock = FakeClock::new(100_000);
        st.borrow_mut().record_failure(0, FAIL, 100_000);
        block_on(flush(&st, &store, 100_000));
        st.borrow_mut().record_success(0, 100_500);
        // A plain flush leaves it for later; the waiting one writes it.
        clock.set(100_500);
        let (written, _) = block_on(flush(&st, &store, 100_500));
        assert!(written.is_empty());
        let (written, _) = block_on(flush_waiting(&st, &store, &clock));
        assert_eq!(written, vec!["a".to_owned()]);
        assert_eq!(clock.now_ms(), 110_000, "waited for the 10 s slot");
        assert_eq!(shared(&store, "a").failures.failures, 0.0);
    }

    /// A store whose `put` fails a number of times, then works.
    #[derive(Default)]
    struct FlakyStore {
        inner: MemoryStore,
        put_failures: Cell<u32>,
    }
    impl StateStore for FlakyStore {
        async fn get(&self, key: &str) -> Result<Option<String>, String> {
            self.inner.get(key).await
        }
        async fn put(&self, key: &str, value: String, ttl_s: u64) -> Result<(), String> {
            if self.put_failures.get() > 0 {
                self.put_failures.set(self.put_failures.get() - 1);
                return Err("429 Too Many Requests".into());
            }
            self.inner.put(key, value, ttl_s).await
        }
    }

    #[test]
    fn a_failed_write_is_retried_at_the_next_write_slot() {
        let store = FlakyStore { put_failures: Cell::new(1), ..Default::default() };
        let breaker = BreakerSettings { consecutive_failures: 1, ..Default::default() };
        let st = RefCell::new(ProviderStates::new(vec!["a".into()], settings(), breaker, HealthSettings::default()));
        // The circuit opens: a transition other isolates must hear of.
        st.borrow_mut().record_failure(0, FAIL, 100_000);
        let (written, errors) = block_on(flush(&st, &store, 100_000));
        assert!(written.is_empty());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(st.borrow().next_write_slot(100_000), Some(110_000), "not taken as written");
        // Not before the slot (one write a second per key at most, and our own interval)...
        let (written, _) = block_on(flush(&st, &store, 105_000));
        assert!(written.is_empty());
        assert_eq!(st.borrow().next_write_slot(105_000), Some(110_000), "still waiting to be written");
        // ...then written.
        let (written, errors) = block_on(flush(&st, &store, 110_000));
        assert_eq!((written, errors), (vec!["a".to_owned()], vec![]));
        assert!(shared(&store.inner, "a").circuit.unwrap().open);
        assert!(st.borrow().due_writes(110_000).is_empty());
    }

    /// A store that never answers for some keys (each `get` of such a key
    /// stays pending for ever).
    #[derive(Default)]
    struct SlowStore {
        inner: MemoryStore,
        hanging: Vec<String>,
    }
    impl StateStore for SlowStore {
        async fn get(&self, key: &str) -> Result<Option<String>, String> {
            if self.hanging.iter().any(|k| k == key) {
                std::future::pending::<()>().await;
            }
            self.inner.get(key).await
        }
        async fn put(&self, key: &str, value: String, ttl_s: u64) -> Result<(), String> {
            self.inner.put(key, value, ttl_s).await
        }
    }

    fn three() -> RefCell<ProviderStates> {
        RefCell::new(ProviderStates::new(
            vec!["a".into(), "b".into(), "c".into()],
            settings(),
            BreakerSettings::default(),
            HealthSettings::default(),
        ))
    }

    fn with_failures(store: &MemoryStore, providers: &[&str], at: u64) {
        let w = three();
        for p in providers {
            let idx = w.borrow().names.iter().position(|n| n == p).unwrap();
            w.borrow_mut().record_failure(idx, FAIL, at);
        }
        block_on(flush(&w, store, at));
    }

    #[test]
    fn a_slow_key_holds_a_refresh_no_longer_than_the_read_timeout() {
        let store = SlowStore { hanging: vec![key_for("b")], ..Default::default() };
        with_failures(&store.inner, &["a", "b", "c"], 1_000);
        let st = three();
        let clock = FakeClock::new(2_000);
        let errors = block_on(refresh(&st, &store, &clock));
        assert!(clock.now_ms() - 2_000 <= 500, "returned within the 500 ms bound");
        assert_eq!(errors, vec!["b: no answer within 500 ms".to_owned()]);
        // The reads run side by side: the keys on either side of the slow one are in.
        assert_eq!(st.borrow().effective_failures(0, 1_000), 1.0);
        assert_eq!(st.borrow().effective_failures(1, 1_000), 0.0);
        assert_eq!(st.borrow().effective_failures(2, 1_000), 1.0);
        assert!(!st.borrow().never_loaded(), "a refresh with a slow key still counts as one");
    }

    #[test]
    fn a_quick_refresh_never_starts_its_timer() {
        let store = MemoryStore::default();
        with_failures(&store, &["a"], 1_000);
        let st = three();
        let clock = FakeClock::new(2_000);
        assert!(block_on(refresh(&st, &store, &clock)).is_empty());
        assert_eq!(clock.now_ms(), 2_000);
    }

    /// A clock whose sleeps never end (the runtime stopped running the task).
    struct StuckClock(Cell<u64>);
    impl Clock for StuckClock {
        fn now_ms(&self) -> u64 {
            self.0.get()
        }
        async fn sleep(&self, _ms: u64) {
            std::future::pending::<()>().await
        }
    }

    #[test]
    fn a_refresh_dropped_half_way_does_not_wedge_the_isolate() {
        let slow = SlowStore { hanging: vec![key_for("b")], ..Default::default() };
        with_failures(&slow.inner, &["a", "b"], 1_000);
        let st = three();
        let stuck = StuckClock(Cell::new(2_000));
        // Poll once, then drop it, as a cancelled waitUntil does.
        assert!(refresh(&st, &slow, &stuck).now_or_never().is_none());
        assert!(!st.borrow().refresh_due(2_100), "its lease still stands");
        assert!(block_on(refresh(&st, &slow.inner, &FakeClock::new(2_100))).is_empty());
        assert!(st.borrow().never_loaded(), "a second refresh does not run over the first's lease");
        // Once the lease has run out, a later refresh runs and reads everything.
        assert!(st.borrow().refresh_due(3_000));
        let clock = FakeClock::new(3_000);
        assert!(block_on(refresh(&st, &slow.inner, &clock)).is_empty());
        assert!(!st.borrow().never_loaded());
        assert_eq!(st.borrow().effective_failures(1, 1_000), 1.0);
        assert!(!st.borrow().refresh_due(3_001), "and the next is due an interval later");
        assert!(st.borrow().refresh_due(13_000));
    }

    /// One provider, an hour of one request a second and a cron probe a
    /// minute, with the shipped defaults; returns the KV writes.
    fn hour_of_traffic(provider_up: bool) -> u32 {
        let (writes, _, _) = fleet_hour(1, provider_up);
        writes
    }

    /// `n` isolates sharing one store, each with its own traffic (a request a
    /// second) for an hour, a cron probe a minute landing in one of them, and
    /// the shipped defaults. Returns the provider key's writes in the hour,
    /// the most in any one second, and the requests that went upstream.
    fn fleet_hour(n: u64, provider_up: bool) -> (u32, u32, u64) {
        let store = MemoryStore::default();
        let fleet: Vec<RefCell<ProviderStates>> = (0..n)
            .map(|i| {
                let st = ProviderStates::new(
                    vec!["a".into()],
                    StateSettings::default(),
                    BreakerSettings::default(),
                    HealthSettings::default(),
                );
                let st = RefCell::new(st);
                if n > 1 {
                    // What the edge does with the isolate's own random seed.
                    st.borrow_mut().seed_write_jitter(crate::rng::SplitMix64::new(i).next_u64());
                }
                st
            })
            .collect();
        let start = 1_000_000_000u64;
        let mut per_second = std::collections::HashMap::<u64, u32>::new();
        let mut upstream = 0;
        for s in 0..3_600u64 {
            for (i, st) in fleet.iter().enumerate() {
                // The isolates' requests are spread over the second.
                let now = start + s * 1000 + i as u64 * 1000 / n;
                let before = store.writes.get();
                if st.borrow().refresh_due(now) {
                    block_on(refresh(st, &store, &FakeClock::new(now)));
                }
                let permit = st.borrow_mut().acquire(0, now);
                if permit != Permit::Denied {
                    upstream += 1;
                    if provider_up {
                        st.borrow_mut().record_success(0, now);
                    } else {
                        st.borrow_mut().record_failure(0, FAIL, now);
                    }
                }
                if s % 60 == 0 && (s / 60) % n == i as u64 {
                    let error = (!provider_up).then_some(ErrorKind::Server);
                    st.borrow_mut().record_probe(0, probe(error), now);
                }
                block_on(flush(st, &store, now));
                *per_second.entry(s).or_default() += store.writes.get() - before;
            }
        }
        (store.writes.get(), per_second.values().copied().max().unwrap_or(0), upstream)
    }

    use crate::rng::Rng;

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
    fn kv_writes_per_key_per_hour_for_many_isolates() {
        println!(
            "isolates | outage: writes/key/hour, most in 1 s, requests upstream | health: writes/key/hour, most in 1 s"
        );
        for n in [1u64, 10, 100] {
            let (outage, outage_peak, upstream) = fleet_hour(n, false);
            let (healthy, healthy_peak, _) = fleet_hour(n, true);
            println!("{n:>8} | {outage:>6} {outage_peak:>3} {upstream:>7} | {healthy:>6} {healthy_peak:>3}");
            // KV allows one write a second per key: never more, whatever the fleet.
            assert!(
                outage_peak <= 1 && healthy_peak <= 1,
                "n={n}: {outage_peak} / {healthy_peak} writes in one second"
            );
            assert!(outage <= 40, "n={n}: {outage} writes in an hour of outage");
            assert!(healthy <= 1, "n={n}: {healthy} writes in an hour of health");
        }
    }

    #[test]
    fn a_write_another_isolate_has_just_made_is_skipped() {
        let store = MemoryStore::default();
        let breaker = BreakerSettings { consecutive_failures: 1, ..Default::default() };
        let make =
            || RefCell::new(ProviderStates::new(vec!["a".into()], settings(), breaker, HealthSettings::default()));
        let (x, y) = (make(), make());
        // Both see the provider fail at the same moment; their circuits open.
        x.borrow_mut().record_failure(0, FAIL, 1_000);
        y.borrow_mut().record_failure(0, FAIL, 1_001);
        assert_eq!(block_on(flush(&x, &store, 1_001)).0, vec!["a".to_owned()]);
        let (written, errors) = block_on(flush(&y, &store, 1_002));
        assert!(written.is_empty() && errors.is_empty(), "the shared copy already says the circuit is open");
        assert_eq!(store.writes.get(), 1);
        assert!(y.borrow().due_writes(30_000).is_empty(), "and y does not try again later");
    }

    #[test]
    fn traffic_writes_wait_out_the_isolates_jitter() {
        let store = MemoryStore::default();
        let st = states();
        st.borrow_mut().seed_write_jitter(12_345);
        let jitter = st.borrow().write_jitter_ms();
        assert_eq!(jitter, 2_345, "below the 10 s write interval");
        st.borrow_mut().record_failure(0, FAIL, 100_000);
        assert!(st.borrow().due_writes(100_000 + jitter - 1).is_empty());
        assert!(block_on(flush(&st, &store, 100_000 + jitter - 1)).0.is_empty());
        assert_eq!(st.borrow().next_write_slot(100_000), Some(100_000 + jitter));
        assert_eq!(block_on(flush(&st, &store, 100_000 + jitter)).0, vec!["a".to_owned()]);
        // A probe's change (the cron's, in one isolate) goes at once.
        st.borrow_mut().record_probe(1, probe(None), 200_000);
        assert_eq!(block_on(flush(&st, &store, 200_000)).0, vec!["b".to_owned()]);
    }

    #[test]
    fn a_waiting_write_goes_out_after_the_response_without_another_request() {
        let store = MemoryStore::default();
        let st = states();
        block_on(refresh(&st, &store, &FakeClock::new(100_000)));
        st.borrow_mut().seed_write_jitter(4_000);
        st.borrow_mut().record_failure(0, FAIL, 100_000);
        assert!(st.borrow().due_writes(100_000).is_empty(), "waiting out the jitter");
        assert!(st.borrow().upkeep_due(100_000), "so the request leaves a task behind");
        // A second request meanwhile leaves nothing: one task waits.
        assert_eq!(st.borrow_mut().take_waiter(100_000), Some(104_000));
        assert!(!st.borrow().upkeep_due(100_500));
        st.borrow_mut().waiter_until_ms = None;
        let clock = FakeClock::new(100_000);
        let (written, errors) = block_on(flush_after_response(&st, &store, &clock));
        assert_eq!((written, errors), (vec!["a".to_owned()], vec![]));
        assert_eq!(clock.now_ms(), 104_000);
        assert!(!st.borrow().upkeep_due(104_000), "then steady again");
        // A change waiting for the 10 s write slot: one task waits for it; if
        // that task is lost (cancelled), the write is simply due at its slot.
        st.borrow_mut().record_failure(0, FAIL, 104_100);
        st.borrow_mut().record_failure(0, FAIL, 104_100);
        assert_eq!(st.borrow_mut().take_waiter(104_100), Some(114_000));
        assert!(!st.borrow().upkeep_due(104_200));
        assert!(st.borrow().upkeep_due(114_000));
    }

    #[test]
    fn a_misconfigured_probe_leaves_the_provider_in_selection_until_traffic_agrees() {
        let st = states();
        st.borrow_mut().record_probe(0, probe(Some(ErrorKind::Auth)), 1_000);
        let events = st.borrow_mut().take_events();
        assert!(
            events.iter().any(|e| e.contains("\"msg\":\"probe misconfigured\"")
                && e.contains("\"level\":\"warn\"")
                && e.contains("\"error_kind\":\"auth_error\"")),
            "{events:?}"
        );
        assert_eq!(st.borrow().health(0).status, HealthStatus::Misconfigured);
        assert_eq!(st.borrow().availability(0, 1_000), Availability::Up);
        assert_eq!(st.borrow_mut().acquire(0, 1_000), Permit::Allowed);
        // Requests work: nothing changes, however many probes come.
        for t in 2..10 {
            st.borrow_mut().record_success(0, t * 1_000);
            st.borrow_mut().record_probe(0, probe(Some(ErrorKind::Auth)), t * 1_000 + 500);
        }
        assert_eq!(st.borrow().availability(0, 10_000), Availability::Up);
        // A server error is an outage's business, not the key's.
        st.borrow_mut().record_failure(0, ErrorKind::Server, 11_000);
        assert_eq!(st.borrow().availability(0, 11_000), Availability::Up);
        // A request refused for its key: traffic agrees with the probe.
        st.borrow_mut().record_failure(0, ErrorKind::Auth, 12_000);
        assert_eq!(st.borrow().availability(0, 12_000), Availability::Down);
        assert_eq!(st.borrow_mut().acquire(0, 12_000), Permit::Denied);
        let events = st.borrow_mut().take_events();
        assert!(events.iter().any(|e| e.contains("\"in_selection\":false")), "{events:?}");
        // Shared with the other isolates.
        let store = MemoryStore::default();
        block_on(flush(&st, &store, 12_000));
        let other = states();
        block_on(refresh(&other, &store, &FakeClock::new(12_500)));
        assert_eq!(other.borrow().availability(0, 12_500), Availability::Down);
        // A good probe puts it back.
        st.borrow_mut().record_probe(0, probe(None), 60_000);
        assert_eq!(st.borrow().availability(0, 60_000), Availability::Up);
    }

    #[test]
    fn the_retry_budget_pays_for_forced_attempts_only() {
        let st = states();
        let now = 1_000_000;
        // Requests that are not forced always go, and fill the budget.
        for _ in 0..100 {
            assert!(st.borrow_mut().budget_request(false, now));
        }
        // 100 × 0.2 deposited plus the 10-token floor.
        let mut forced = 0;
        while st.borrow_mut().withdraw_forced(now) {
            forced += 1;
        }
        assert_eq!(forced, 30);
        assert!(!st.borrow_mut().budget_request(true, now), "spent: a forced request does not go");
        assert!(st.borrow_mut().budget_request(false, now));
    }

    #[test]
    fn unavailable_until_is_the_earliest_half_open_time() {
        let breaker = BreakerSettings { consecutive_failures: 1, cooldown_ms: 30_000, ..Default::default() };
        let st = RefCell::new(ProviderStates::new(
            vec!["a".into(), "b".into()],
            settings(),
            breaker,
            HealthSettings::default(),
        ));
        st.borrow_mut().record_failure(0, FAIL, 1_000);
        st.borrow_mut().record_failure(1, FAIL, 5_000);
        assert_eq!(st.borrow().unavailable_until([0, 1], 10_000), 31_000);
        assert_eq!(st.borrow().unavailable_until([1], 10_000), 35_000);
        assert_eq!(st.borrow().unavailable_until([7], 10_000), 11_000, "an unknown index does not panic");
    }

    #[test]
    fn another_isolate_picks_up_shared_failures() {
        let store = MemoryStore::default();
        let a = states();
        for _ in 0..3 {
            a.borrow_mut().record_failure(1, FAIL, 5_000);
        }
        block_on(flush(&a, &store, 5_000));
        let b = states();
        assert!(b.borrow().never_loaded());
        assert!(block_on(refresh(&b, &store, &FakeClock::new(6_000))).is_empty());
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
        a.borrow_mut().record_failure(0, FAIL, 1_000);
        block_on(flush(&a, &store, 1_000));
        // b saw a second failure later than a's.
        b.borrow_mut().record_failure(0, FAIL, 2_000);
        b.borrow_mut().record_failure(0, FAIL, 2_000);
        block_on(flush(&b, &store, 2_000));
        let shared = decode(&store.data.borrow()[&key_for("a")]).unwrap().failures;
        assert_eq!(shared.last_failure_ms, 2_000);
        assert!(shared.failures >= 2.0);
    }

    #[test]
    fn an_unknown_provider_index_never_panics() {
        let st = states();
        let mut s = st.borrow_mut();
        s.record_failure(9, FAIL, 1);
        s.record_success(9, 1);
        s.record_alive(9, 1);
        s.record_probe(9, probe(None), 1);
        assert_eq!(s.acquire(9, 1), Permit::Denied);
        assert_eq!(s.health(9).status, HealthStatus::Unknown);
        assert_eq!(s.effective_failures(9, 1), 0.0);
    }
}
