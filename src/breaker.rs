//! The circuit breaker for one provider, as a pure state machine.
//!
//! - **Closed**: traffic flows. The circuit opens after `consecutive_failures`
//!   failures in a row, or when at least `min_requests` outcomes in the
//!   current window of `window_s` seconds fail at `failure_ratio` or more.
//! - **Open**: no traffic until `cooldown` has passed since opening.
//! - **Half-open** (derived from time, never stored): one trial request at a
//!   time goes through. Success closes the circuit and resets the cooldown;
//!   failure opens it again with the cooldown doubled, up to `max_cooldown`.
//! - A successful health probe closes an open circuit at once.
//!
//! Because half-open is derived from the open time and the cooldown, every
//! isolate that knows when the circuit opened agrees on when it half-opens
//! without another write.

pub use crate::config::BreakerSettings;
use crate::json::Fields;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// Whether a request may go to the provider now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// The circuit is closed.
    Allowed,
    /// The circuit is half-open and this request is its one trial.
    Trial,
    /// Open, or half-open with a trial already in flight.
    Denied,
}

/// A change of state worth telling other isolates about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: CircuitState,
    pub to: CircuitState,
}

/// The part of the breaker shared through the store.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SharedCircuit {
    /// `true` while open (half-open is derived from `opened_ms + cooldown_ms`).
    pub open: bool,
    pub opened_ms: u64,
    pub cooldown_ms: u64,
    /// When this circuit last changed state; the newer change wins a merge.
    pub changed_ms: u64,
}

impl SharedCircuit {
    /// Reads a stored copy (`None`: not one).
    pub fn read(v: &Value) -> Option<SharedCircuit> {
        let f = Fields::of(v)?;
        Some(SharedCircuit {
            open: f.bool("open")?,
            opened_ms: f.u64("opened_ms")?,
            cooldown_ms: f.u64("cooldown_ms")?,
            changed_ms: f.u64("changed_ms")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    pub shared: SharedCircuit,
    consecutive: u32,
    window_start_ms: u64,
    window_requests: u32,
    window_failures: u32,
    /// When the current half-open trial started, if one is in flight.
    trial_started_ms: Option<u64>,
}

impl Breaker {
    pub fn new(settings: &BreakerSettings) -> Self {
        Breaker {
            shared: SharedCircuit { open: false, opened_ms: 0, cooldown_ms: settings.cooldown_ms, changed_ms: 0 },
            consecutive: 0,
            window_start_ms: 0,
            window_requests: 0,
            window_failures: 0,
            trial_started_ms: None,
        }
    }

    pub fn state(&self, now: u64) -> CircuitState {
        if !self.shared.open {
            CircuitState::Closed
        } else if now >= self.shared.opened_ms.saturating_add(self.shared.cooldown_ms) {
            CircuitState::HalfOpen
        } else {
            CircuitState::Open
        }
    }

    /// When an open circuit half-opens.
    pub fn retry_at_ms(&self) -> Option<u64> {
        self.shared.open.then(|| self.shared.opened_ms + self.shared.cooldown_ms)
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    /// Asks to send a request. A trial that has not reported back within a
    /// cooldown is presumed lost, and another may start.
    pub fn acquire(&mut self, now: u64) -> Permit {
        match self.state(now) {
            CircuitState::Closed => Permit::Allowed,
            CircuitState::Open => Permit::Denied,
            CircuitState::HalfOpen => match self.trial_started_ms {
                Some(t) if now.saturating_sub(t) < self.shared.cooldown_ms => Permit::Denied,
                _ => {
                    self.trial_started_ms = Some(now);
                    Permit::Trial
                }
            },
        }
    }

    /// Would `acquire` let a request through now (without taking the trial)?
    pub fn available(&self, now: u64) -> bool {
        match self.state(now) {
            CircuitState::Closed => true,
            CircuitState::Open => false,
            CircuitState::HalfOpen => {
                self.trial_started_ms.is_none_or(|t| now.saturating_sub(t) >= self.shared.cooldown_ms)
            }
        }
    }

    fn roll_window(&mut self, now: u64, s: &BreakerSettings) {
        if now.saturating_sub(self.window_start_ms) >= s.window_s * 1000 {
            self.window_start_ms = now;
            self.window_requests = 0;
            self.window_failures = 0;
        }
    }

    fn close(&mut self, now: u64, s: &BreakerSettings) -> Option<Transition> {
        let from = self.state(now);
        self.consecutive = 0;
        self.trial_started_ms = None;
        if !self.shared.open {
            return None;
        }
        self.shared = SharedCircuit {
            open: false,
            opened_ms: self.shared.opened_ms,
            cooldown_ms: s.cooldown_ms,
            changed_ms: now,
        };
        self.window_start_ms = now;
        self.window_requests = 0;
        self.window_failures = 0;
        Some(Transition { from, to: CircuitState::Closed })
    }

    fn open(&mut self, now: u64, cooldown_ms: u64) -> Option<Transition> {
        let from = self.state(now);
        self.trial_started_ms = None;
        self.shared = SharedCircuit { open: true, opened_ms: now, cooldown_ms, changed_ms: now };
        Some(Transition { from, to: CircuitState::Open })
    }

    pub fn on_success(&mut self, now: u64, s: &BreakerSettings) -> Option<Transition> {
        self.roll_window(now, s);
        self.window_requests += 1;
        self.close(now, s)
    }

    pub fn on_failure(&mut self, now: u64, s: &BreakerSettings) -> Option<Transition> {
        self.roll_window(now, s);
        self.window_requests += 1;
        self.window_failures += 1;
        self.consecutive = self.consecutive.saturating_add(1);
        match self.state(now) {
            // The trial failed: open again for twice as long.
            CircuitState::HalfOpen => {
                let cooldown = self.shared.cooldown_ms.saturating_mul(2).min(s.max_cooldown_ms);
                self.open(now, cooldown)
            }
            // A request forced through an open circuit (every provider was
            // open) failed: the circuit stays as it is.
            CircuitState::Open => None,
            CircuitState::Closed => {
                let by_count = self.consecutive >= s.consecutive_failures;
                let by_ratio = self.window_requests >= s.min_requests
                    && self.window_failures as f64 >= s.failure_ratio * self.window_requests as f64;
                if by_count || by_ratio {
                    self.open(now, s.cooldown_ms)
                } else {
                    None
                }
            }
        }
    }

    /// A health probe succeeded: the provider answers, so close the circuit.
    pub fn on_probe_success(&mut self, now: u64, s: &BreakerSettings) -> Option<Transition> {
        self.close(now, s)
    }

    /// Folds in another isolate's view: the newer change wins.
    pub fn merge_shared(&mut self, other: &SharedCircuit) {
        if other.changed_ms > self.shared.changed_ms {
            if self.shared.open != other.open {
                self.trial_started_ms = None;
                self.consecutive = 0;
            }
            self.shared = *other;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> BreakerSettings {
        BreakerSettings {
            consecutive_failures: 3,
            failure_ratio: 0.5,
            min_requests: 10,
            window_s: 60,
            cooldown_ms: 1_000,
            max_cooldown_ms: 4_000,
            ..Default::default()
        }
    }

    #[test]
    fn opens_after_consecutive_failures() {
        let s = s();
        let mut b = Breaker::new(&s);
        assert_eq!(b.on_failure(0, &s), None);
        assert_eq!(b.on_failure(1, &s), None);
        assert_eq!(b.acquire(2), Permit::Allowed);
        let t = b.on_failure(2, &s).unwrap();
        assert_eq!((t.from, t.to), (CircuitState::Closed, CircuitState::Open));
        assert_eq!(b.acquire(3), Permit::Denied);
        assert_eq!(b.state(1_001), CircuitState::Open);
        assert_eq!(b.retry_at_ms(), Some(1_002));
    }

    #[test]
    fn a_success_resets_the_consecutive_count() {
        let s = s();
        let mut b = Breaker::new(&s);
        b.on_failure(0, &s);
        b.on_failure(0, &s);
        b.on_success(0, &s);
        b.on_failure(0, &s);
        b.on_failure(0, &s);
        assert_eq!(b.state(0), CircuitState::Closed);
    }

    #[test]
    fn opens_on_failure_ratio_over_the_window() {
        let s = s();
        let mut b = Breaker::new(&s);
        // Alternating outcomes never make 3 in a row, but half of 10 fail.
        for i in 0..9 {
            if i % 2 == 0 {
                assert_eq!(b.on_failure(i, &s), None);
            } else {
                b.on_success(i, &s);
            }
        }
        assert_eq!(b.state(9), CircuitState::Closed);
        assert!(b.on_success(9, &s).is_none());
        assert_eq!(b.on_failure(10, &s).map(|t| t.to), Some(CircuitState::Open));
    }

    #[test]
    fn the_window_forgets_old_outcomes() {
        let s = s();
        let mut b = Breaker::new(&s);
        for i in 0..8 {
            if i % 2 == 0 {
                b.on_failure(i, &s);
            } else {
                b.on_success(i, &s);
            }
        }
        // A minute later the window starts again.
        for i in 0..4 {
            b.on_success(60_000 + i, &s);
        }
        assert!(b.on_failure(60_010, &s).is_none());
    }

    #[test]
    fn half_open_lets_one_trial_through_at_a_time() {
        let s = s();
        let mut b = Breaker::new(&s);
        for _ in 0..3 {
            b.on_failure(0, &s);
        }
        assert_eq!(b.acquire(999), Permit::Denied);
        assert_eq!(b.state(1_000), CircuitState::HalfOpen);
        assert!(b.available(1_000));
        assert_eq!(b.acquire(1_000), Permit::Trial);
        assert!(!b.available(1_001));
        assert_eq!(b.acquire(1_001), Permit::Denied, "one trial at a time");
        let t = b.on_success(1_050, &s).unwrap();
        assert_eq!((t.from, t.to), (CircuitState::HalfOpen, CircuitState::Closed));
        assert_eq!(b.acquire(1_051), Permit::Allowed);
    }

    #[test]
    fn a_failed_trial_doubles_the_cooldown_up_to_the_cap() {
        let s = s();
        let mut b = Breaker::new(&s);
        for _ in 0..3 {
            b.on_failure(0, &s);
        }
        let mut now = 0;
        for expected in [2_000, 4_000, 4_000] {
            now += b.shared.cooldown_ms;
            assert_eq!(b.acquire(now), Permit::Trial);
            let t = b.on_failure(now, &s).unwrap();
            assert_eq!((t.from, t.to), (CircuitState::HalfOpen, CircuitState::Open));
            assert_eq!(b.shared.cooldown_ms, expected);
            assert_eq!(b.state(now + expected - 1), CircuitState::Open);
            assert_eq!(b.state(now + expected), CircuitState::HalfOpen);
        }
        // Closing resets the cooldown.
        b.on_success(now + 4_000, &s);
        assert_eq!(b.shared.cooldown_ms, 1_000);
    }

    #[test]
    fn a_lost_trial_is_replaced_after_a_cooldown() {
        let s = s();
        let mut b = Breaker::new(&s);
        for _ in 0..3 {
            b.on_failure(0, &s);
        }
        assert_eq!(b.acquire(1_000), Permit::Trial);
        assert_eq!(b.acquire(1_999), Permit::Denied);
        assert_eq!(b.acquire(2_000), Permit::Trial);
    }

    #[test]
    fn a_probe_success_closes_an_open_circuit() {
        let s = s();
        let mut b = Breaker::new(&s);
        for _ in 0..3 {
            b.on_failure(0, &s);
        }
        let t = b.on_probe_success(10, &s).unwrap();
        assert_eq!((t.from, t.to), (CircuitState::Open, CircuitState::Closed));
        assert_eq!(b.on_probe_success(20, &s), None, "already closed: no transition");
    }

    #[test]
    fn merging_takes_the_newer_change() {
        let s = s();
        let mut a = Breaker::new(&s);
        let mut b = Breaker::new(&s);
        for _ in 0..3 {
            a.on_failure(100, &s);
        }
        b.merge_shared(&a.shared);
        assert_eq!(b.state(150), CircuitState::Open);
        // An older view does not undo it.
        let stale = SharedCircuit { open: false, opened_ms: 0, cooldown_ms: 1_000, changed_ms: 50 };
        b.merge_shared(&stale);
        assert_eq!(b.state(150), CircuitState::Open);
    }
}
