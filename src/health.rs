//! Health from the cron trigger's probes, as a pure rule (after pingora's
//! health check: the I/O of probing is apart from the rule that flips a
//! provider between healthy and not after N consecutive observations).
//!
//! - `unknown` until the first probe;
//! - `down` after `unhealthy_after` consecutive failed probes: the provider
//!   leaves selection;
//! - `misconfigured` when a probe is refused for the key (401/403) or the
//!   endpoint is wrong (404): reported as such, not as an outage, and also out
//!   of selection, since every request would fail the same way;
//! - `recovering` on the first successful probe after that: traffic returns;
//! - `healthy` after `healthy_after` consecutive successes.

pub use crate::config::HealthSettings;
use crate::taxonomy::ErrorKind;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Unknown,
    Healthy,
    Recovering,
    Down,
    Misconfigured,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Unknown => "unknown",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Recovering => "recovering",
            HealthStatus::Down => "down",
            HealthStatus::Misconfigured => "misconfigured",
        }
    }
    /// Whether requests may be routed to a provider in this state.
    pub fn routable(self) -> bool {
        !matches!(self, HealthStatus::Down | HealthStatus::Misconfigured)
    }
}

/// One probe's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeResult {
    /// `None` when the probe succeeded.
    pub error: Option<ErrorKind>,
    pub latency_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    pub last_probe_ms: u64,
    pub last_latency_ms: u64,
    /// The taxonomy name of the last probe failure.
    pub last_error: Option<String>,
    pub last_error_ms: u64,
    /// When `status` last changed; the newer change wins a merge.
    pub changed_ms: u64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            status: HealthStatus::Unknown,
            consecutive_successes: 0,
            consecutive_failures: 0,
            last_probe_ms: 0,
            last_latency_ms: 0,
            last_error: None,
            last_error_ms: 0,
            changed_ms: 0,
        }
    }
}

impl Health {
    /// Applies a probe result; returns the old and new status on a transition.
    pub fn observe(&mut self, r: ProbeResult, now: u64, s: &HealthSettings) -> Option<(HealthStatus, HealthStatus)> {
        let from = self.status;
        self.last_probe_ms = now;
        self.last_latency_ms = r.latency_ms;
        let to = match r.error {
            None => {
                self.consecutive_successes += 1;
                self.consecutive_failures = 0;
                match from {
                    HealthStatus::Down | HealthStatus::Misconfigured => {
                        if self.consecutive_successes >= s.healthy_after {
                            HealthStatus::Healthy
                        } else {
                            HealthStatus::Recovering
                        }
                    }
                    HealthStatus::Recovering if self.consecutive_successes < s.healthy_after => {
                        HealthStatus::Recovering
                    }
                    _ => HealthStatus::Healthy,
                }
            }
            Some(kind) => {
                self.consecutive_failures += 1;
                self.consecutive_successes = 0;
                self.last_error = Some(kind.as_str().to_owned());
                self.last_error_ms = now;
                if kind.is_misconfiguration() {
                    HealthStatus::Misconfigured
                } else if self.consecutive_failures >= s.unhealthy_after || from == HealthStatus::Recovering {
                    HealthStatus::Down
                } else {
                    from
                }
            }
        };
        if to != from {
            self.status = to;
            self.changed_ms = now;
            Some((from, to))
        } else {
            None
        }
    }

    /// Folds in another isolate's view: the newer observation wins.
    pub fn merge(&mut self, other: &Health) {
        if other.changed_ms > self.changed_ms
            || (other.changed_ms == self.changed_ms && other.last_probe_ms > self.last_probe_ms)
        {
            *self = other.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> ProbeResult {
        ProbeResult { error: None, latency_ms: 12 }
    }
    fn fail(k: ErrorKind) -> ProbeResult {
        ProbeResult { error: Some(k), latency_ms: 5 }
    }

    #[test]
    fn goes_down_after_consecutive_failures_and_recovers_in_two_steps() {
        let s = HealthSettings::default();
        let mut h = Health::default();
        assert_eq!(h.observe(ok(), 1, &s), Some((HealthStatus::Unknown, HealthStatus::Healthy)));
        assert_eq!(h.observe(fail(ErrorKind::Server), 2, &s), None, "one failure is a blip");
        assert_eq!(h.status, HealthStatus::Healthy);
        assert_eq!(h.observe(fail(ErrorKind::Timeout), 3, &s), Some((HealthStatus::Healthy, HealthStatus::Down)));
        assert!(!h.status.routable());
        assert_eq!(h.last_error.as_deref(), Some("timeout"));
        assert_eq!(h.observe(ok(), 4, &s), Some((HealthStatus::Down, HealthStatus::Recovering)));
        assert!(h.status.routable(), "traffic returns while recovering");
        assert_eq!(h.observe(ok(), 5, &s), Some((HealthStatus::Recovering, HealthStatus::Healthy)));
        assert_eq!(h.changed_ms, 5);
        assert_eq!(h.last_latency_ms, 12);
    }

    #[test]
    fn a_failure_while_recovering_goes_straight_back_down() {
        let s = HealthSettings::default();
        let mut h = Health::default();
        h.observe(fail(ErrorKind::Server), 1, &s);
        h.observe(fail(ErrorKind::Server), 2, &s);
        h.observe(ok(), 3, &s);
        assert_eq!(h.observe(fail(ErrorKind::Server), 4, &s), Some((HealthStatus::Recovering, HealthStatus::Down)));
    }

    #[test]
    fn a_rejected_key_is_misconfiguration_not_an_outage() {
        let s = HealthSettings::default();
        let mut h = Health::default();
        assert_eq!(h.observe(fail(ErrorKind::Auth), 1, &s), Some((HealthStatus::Unknown, HealthStatus::Misconfigured)));
        assert_eq!(h.last_error.as_deref(), Some("auth_error"));
        assert!(!h.status.routable());
    }

    #[test]
    fn merge_keeps_the_newer_change() {
        let s = HealthSettings { unhealthy_after: 1, healthy_after: 1 };
        let mut a = Health::default();
        a.observe(fail(ErrorKind::Server), 10, &s);
        let mut b = Health::default();
        b.observe(ok(), 5, &s);
        b.merge(&a);
        assert_eq!(b.status, HealthStatus::Down);
        a.merge(&Health::default());
        assert_eq!(a.status, HealthStatus::Down);
    }
}
