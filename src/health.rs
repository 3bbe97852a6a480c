//! Health from the cron trigger's probes, as a pure rule (after pingora's
//! health check: the I/O of probing is apart from the rule that flips a
//! provider between healthy and not after N consecutive observations).
//!
//! - `unknown` until the first probe;
//! - `down` after `unhealthy_after` consecutive failed probes: the provider
//!   leaves selection;
//! - `misconfigured` when a probe is refused for the key (401/403), finds no
//!   endpoint (404) or has no key to send: reported as such (and logged
//!   loudly), not as an outage. It stays in selection on the probe's word
//!   alone, because the probe may be wrong about requests: a restricted
//!   OpenAI key without the model-read scope gets 403 on `GET /models` while
//!   its completions work, and many OpenAI-compatible hosts have no
//!   `/models` at all. It leaves selection (`confirmed`) only when real
//!   traffic fails the same way (auth, or not found) after the probe said
//!   so, or after `unhealthy_after` such probes in a row from a completion
//!   probe (which asks what requests ask), or at once for a missing secret.
//!   A success in traffic puts it back into selection; a good probe clears
//!   the status;
//! - `recovering` on the first successful probe after that: traffic returns;
//! - `healthy` after `healthy_after` consecutive successes.

pub use crate::config::HealthSettings;
use crate::json::Fields;
use crate::taxonomy::ErrorKind;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

    /// The status `as_str` names.
    pub fn parse(s: &str) -> Option<HealthStatus> {
        [
            HealthStatus::Unknown,
            HealthStatus::Healthy,
            HealthStatus::Recovering,
            HealthStatus::Down,
            HealthStatus::Misconfigured,
        ]
        .into_iter()
        .find(|h| h.as_str() == s)
    }
}

/// One probe's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeResult {
    /// `None` when the probe succeeded.
    pub error: Option<ErrorKind>,
    pub latency_ms: u64,
    /// The probe was a completion (`probe = "completion"`): it asks what
    /// requests ask, so its misconfiguration answers are believed after
    /// `unhealthy_after` in a row; a models-list probe's never are.
    pub completion: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    pub status: HealthStatus,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    pub last_probe_ms: u64,
    pub last_latency_ms: u64,
    /// The taxonomy name of the last probe failure.
    pub last_error: Option<String>,
    pub last_error_ms: u64,
    /// When `status` (or `confirmed`) last changed; the newer change wins a merge.
    pub changed_ms: u64,
    /// While `misconfigured`: traffic (or enough completion probes) agreed
    /// with the probe, and the provider is out of selection.
    #[serde(default)]
    pub confirmed: bool,
    /// Misconfigured probes in a row with the same error kind.
    pub misconfigured_probes: u32,
}

impl Health {
    /// Reads a stored copy (`None`: not one). Records written before
    /// `confirmed` and `misconfigured_probes` existed read them as `false`
    /// and 0.
    pub fn read(v: &Value) -> Option<Health> {
        let f = Fields::of(v)?;
        Some(Health {
            status: HealthStatus::parse(f.str("status")?)?,
            consecutive_successes: f.u32("consecutive_successes")?,
            consecutive_failures: f.u32("consecutive_failures")?,
            last_probe_ms: f.u64("last_probe_ms")?,
            last_latency_ms: f.u64("last_latency_ms")?,
            last_error: f.opt("last_error", |e| e.as_str().map(str::to_owned))?,
            last_error_ms: f.u64("last_error_ms")?,
            changed_ms: f.u64("changed_ms")?,
            confirmed: f.or("confirmed", false, Fields::bool)?,
            misconfigured_probes: f.or("misconfigured_probes", 0, Fields::u32)?,
        })
    }
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
            confirmed: false,
            misconfigured_probes: 0,
        }
    }
}

impl Health {
    /// Whether requests may be routed to the provider: not `down`, and not
    /// `misconfigured` with traffic agreeing.
    pub fn routable(&self) -> bool {
        match self.status {
            HealthStatus::Down => false,
            HealthStatus::Misconfigured => !self.confirmed,
            _ => true,
        }
    }

    /// Applies a probe result; returns the old and new status on a transition
    /// (a change of `confirmed` alone is not one: compare [`Health::routable`]).
    pub fn observe(&mut self, r: ProbeResult, now: u64, s: &HealthSettings) -> Option<(HealthStatus, HealthStatus)> {
        let from = self.status;
        let was_confirmed = self.confirmed;
        self.last_probe_ms = now;
        self.last_latency_ms = r.latency_ms;
        let to = match r.error {
            None => {
                self.consecutive_successes += 1;
                self.consecutive_failures = 0;
                self.misconfigured_probes = 0;
                self.confirmed = false;
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
                let same = from == HealthStatus::Misconfigured && self.last_error.as_deref() == Some(kind.as_str());
                self.consecutive_failures += 1;
                self.consecutive_successes = 0;
                self.last_error = Some(kind.as_str().to_owned());
                self.last_error_ms = now;
                if kind.is_misconfiguration() {
                    self.misconfigured_probes = if same { self.misconfigured_probes.saturating_add(1) } else { 1 };
                    // Agreement seen before (traffic, or earlier probes) stands
                    // while the probes keep saying the same.
                    let completion_agrees = r.completion && self.misconfigured_probes >= s.unhealthy_after;
                    // A missing secret is certain: no request can carry a key
                    // this deployment does not have.
                    self.confirmed = (same && self.confirmed) || completion_agrees || kind == ErrorKind::MissingKey;
                    HealthStatus::Misconfigured
                } else {
                    self.misconfigured_probes = 0;
                    self.confirmed = false;
                    if self.consecutive_failures >= s.unhealthy_after || from == HealthStatus::Recovering {
                        HealthStatus::Down
                    } else {
                        from
                    }
                }
            }
        };
        if to != from || self.confirmed != was_confirmed {
            self.changed_ms = now;
        }
        if to != from {
            self.status = to;
            Some((from, to))
        } else {
            None
        }
    }

    /// A request to the provider failed with `kind`. When the probes said
    /// `misconfigured` for the same kind, traffic agrees and the provider
    /// leaves selection; returns whether that happened now.
    pub fn traffic_failed(&mut self, kind: ErrorKind, now: u64) -> bool {
        let agrees = self.status == HealthStatus::Misconfigured
            && !self.confirmed
            && kind.is_misconfiguration()
            && self.last_error.as_deref() == Some(kind.as_str());
        if agrees {
            self.confirmed = true;
            self.changed_ms = now;
        }
        agrees
    }

    /// A request to the provider got an answer: whatever the probes say, its
    /// requests work, so it goes back into selection (still reported as
    /// `misconfigured` until a good probe). Returns whether that happened now.
    pub fn traffic_answered(&mut self, now: u64) -> bool {
        let back = self.confirmed;
        if back {
            self.confirmed = false;
            self.changed_ms = now;
        }
        back
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
        ProbeResult { error: None, latency_ms: 12, completion: false }
    }
    fn fail(k: ErrorKind) -> ProbeResult {
        ProbeResult { error: Some(k), latency_ms: 5, completion: false }
    }
    fn fail_completion(k: ErrorKind) -> ProbeResult {
        ProbeResult { error: Some(k), latency_ms: 5, completion: true }
    }

    #[test]
    fn goes_down_after_consecutive_failures_and_recovers_in_two_steps() {
        let s = HealthSettings::default();
        let mut h = Health::default();
        assert_eq!(h.observe(ok(), 1, &s), Some((HealthStatus::Unknown, HealthStatus::Healthy)));
        assert_eq!(h.observe(fail(ErrorKind::Server), 2, &s), None, "one failure is a blip");
        assert_eq!(h.status, HealthStatus::Healthy);
        assert_eq!(h.observe(fail(ErrorKind::Timeout), 3, &s), Some((HealthStatus::Healthy, HealthStatus::Down)));
        assert!(!h.routable());
        assert_eq!(h.last_error.as_deref(), Some("timeout"));
        assert_eq!(h.observe(ok(), 4, &s), Some((HealthStatus::Down, HealthStatus::Recovering)));
        assert!(h.routable(), "traffic returns while recovering");
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
        assert!(h.routable(), "the probe's word alone does not take it out of traffic");
    }

    #[test]
    fn misconfigured_models_probes_never_take_a_provider_out_of_selection() {
        // A restricted key (403 on /models) or a host without /models (404):
        // however many probes say so, requests still go there.
        let s = HealthSettings::default();
        for kind in [ErrorKind::Auth, ErrorKind::NotFound] {
            let mut h = Health::default();
            for t in 1..=10 {
                h.observe(fail(kind), t, &s);
                assert_eq!(h.status, HealthStatus::Misconfigured);
                assert!(h.routable(), "{kind:?} after {t} probes");
            }
            assert_eq!(h.misconfigured_probes, 10);
            assert_eq!(h.changed_ms, 1, "one transition, not one per probe");
        }
    }

    #[test]
    fn traffic_failing_the_same_way_confirms_the_probe() {
        let s = HealthSettings::default();
        let mut h = Health::default();
        h.observe(fail(ErrorKind::Auth), 1, &s);
        assert!(!h.traffic_failed(ErrorKind::Server, 2), "an outage is not a broken key");
        assert!(!h.traffic_failed(ErrorKind::NotFound, 3), "another kind does not agree");
        assert!(h.routable());
        assert!(h.traffic_failed(ErrorKind::Auth, 4));
        assert!(!h.routable(), "traffic agrees: out of selection");
        assert_eq!(h.changed_ms, 4, "shared as a change");
        // Further probes saying the same keep it out.
        h.observe(fail(ErrorKind::Auth), 5, &s);
        assert!(!h.routable());
        // A success in traffic puts it back, still reported.
        assert!(h.traffic_answered(6));
        assert!(h.routable());
        assert_eq!(h.status, HealthStatus::Misconfigured);
        // A good probe clears it.
        assert!(h.traffic_failed(ErrorKind::Auth, 7));
        h.observe(ok(), 8, &s);
        assert!(h.routable());
        assert_eq!(h.status, HealthStatus::Recovering);
        assert!(!h.confirmed);
        // Traffic failing with auth while the probes are fine changes nothing here.
        assert!(!h.traffic_failed(ErrorKind::Auth, 9));
    }

    #[test]
    fn completion_probes_are_believed_after_unhealthy_after_in_a_row() {
        let s = HealthSettings { unhealthy_after: 3, healthy_after: 2 };
        let mut h = Health::default();
        h.observe(fail_completion(ErrorKind::NotFound), 1, &s);
        h.observe(fail_completion(ErrorKind::NotFound), 2, &s);
        assert!(h.routable());
        h.observe(fail_completion(ErrorKind::NotFound), 3, &s);
        assert!(!h.routable(), "three completion probes in a row agree");
        assert_eq!(h.changed_ms, 3);
        // Another kind starts the count again.
        h.observe(fail_completion(ErrorKind::Auth), 4, &s);
        assert!(h.routable());
        assert_eq!(h.misconfigured_probes, 1);
    }

    #[test]
    fn a_missing_secret_is_out_of_selection_at_once() {
        let s = HealthSettings::default();
        let mut h = Health::default();
        h.observe(fail(ErrorKind::MissingKey), 1, &s);
        assert_eq!(h.status, HealthStatus::Misconfigured);
        assert!(!h.routable());
    }

    #[test]
    fn records_without_the_new_fields_still_read() {
        let old = r#"{"status":"misconfigured","consecutive_successes":0,"consecutive_failures":1,"last_probe_ms":1,
            "last_latency_ms":1,"last_error":"auth_error","last_error_ms":1,"changed_ms":1}"#;
        let h = Health::read(&serde_json::from_str(old).unwrap()).unwrap();
        assert!(h.routable());
        assert_eq!((h.confirmed, h.misconfigured_probes, h.last_error.as_deref()), (false, 0, Some("auth_error")));
        // Every status reads back as it is written.
        for status in [HealthStatus::Unknown, HealthStatus::Down, HealthStatus::Misconfigured] {
            let h = Health { status, last_error: None, ..Health::default() };
            assert_eq!(Health::read(&serde_json::to_value(&h).unwrap()), Some(h));
        }
        // A record of another shape is none.
        assert_eq!(Health::read(&serde_json::from_str(&old.replace("misconfigured", "sick")).unwrap()), None);
        assert_eq!(Health::read(&serde_json::from_str(&old.replace(":1,", ":-1,")).unwrap()), None);
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
