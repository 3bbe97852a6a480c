//! Settings for shared state, the circuit breaker and health checks: their
//! defaults, and their validation from the raw config.

use super::read::read_struct;
use super::{err, AllUnavailable, ConfigError};

/// How provider state is shared through KV.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StateSettings {
    /// Failures lose half their weight every this many seconds.
    pub failure_half_life_s: u64,
    /// An isolate re-reads the shared state at most this often.
    pub refresh_interval_s: u64,
    /// A provider's KV key is written at most this often.
    pub min_write_interval_s: u64,
    /// Expiry of state keys in KV (at least 60, KV's minimum).
    pub kv_ttl_s: u64,
    /// A route's mirror aggregates are written at most this often per isolate.
    pub mirror_write_interval_s: u64,
    /// Longest wait for one KV read of a refresh (the reads run concurrently,
    /// so a refresh, even the one a new isolate's first request waits for,
    /// takes at most about this long).
    pub read_timeout_ms: u64,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            failure_half_life_s: 300,
            refresh_interval_s: 10,
            min_write_interval_s: 10,
            kv_ttl_s: 86_400,
            mirror_write_interval_s: 60,
            read_timeout_ms: 500,
        }
    }
}

/// When a provider's circuit opens and how it recovers (see `breaker.rs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    pub consecutive_failures: u32,
    pub failure_ratio: f64,
    pub min_requests: u32,
    pub window_s: u64,
    pub cooldown_ms: u64,
    pub max_cooldown_ms: u64,
    /// The retry budget for attempts forced through unavailable targets (see
    /// `budget.rs`): each request deposits this fraction of a token...
    pub retry_budget_ratio: f64,
    /// ...forced attempts may also spend this many tokens a second whatever
    /// the traffic...
    pub retry_budget_min_per_s: f64,
    /// ...and deposits expire after this many seconds.
    pub retry_budget_window_s: u64,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            consecutive_failures: 5,
            failure_ratio: 0.5,
            min_requests: 10,
            window_s: 60,
            cooldown_ms: 30_000,
            max_cooldown_ms: 300_000,
            retry_budget_ratio: 0.2,
            retry_budget_min_per_s: 1.0,
            retry_budget_window_s: 10,
        }
    }
}

/// How many probe results flip a provider's health (see `health.rs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthSettings {
    pub unhealthy_after: u32,
    pub healthy_after: u32,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings { unhealthy_after: 2, healthy_after: 2 }
    }
}

#[derive(Default)]
pub(super) struct RawBreaker {
    consecutive_failures: Option<u32>,
    failure_ratio: Option<f64>,
    min_requests: Option<u32>,
    window_s: Option<u64>,
    cooldown_ms: Option<u64>,
    max_cooldown_ms: Option<u64>,
    when_all_unavailable: Option<String>,
    retry_budget_ratio: Option<f64>,
    retry_budget_min_per_s: Option<f64>,
    retry_budget_window_s: Option<u64>,
}

#[derive(Default)]
pub(super) struct RawHealth {
    unhealthy_after: Option<u32>,
    healthy_after: Option<u32>,
    probe_timeout_ms: Option<u64>,
}

#[derive(Default)]
pub(super) struct RawState {
    failure_half_life_s: Option<u64>,
    refresh_interval_s: Option<u64>,
    min_write_interval_s: Option<u64>,
    kv_ttl_s: Option<u64>,
    mirror_write_interval_s: Option<u64>,
    read_timeout_ms: Option<u64>,
}

/// The validated state, breaker and health settings.
pub(super) struct Resilience {
    pub state: StateSettings,
    pub breaker: BreakerSettings,
    pub health: HealthSettings,
    pub probe_timeout_ms: u64,
    pub when_all_unavailable: AllUnavailable,
}

read_struct!(RawBreaker {
    required: [],
    optional: [
        consecutive_failures,
        failure_ratio,
        min_requests,
        window_s,
        cooldown_ms,
        max_cooldown_ms,
        when_all_unavailable,
        retry_budget_ratio,
        retry_budget_min_per_s,
        retry_budget_window_s,
    ],
});
read_struct!(RawHealth { required: [], optional: [unhealthy_after, healthy_after, probe_timeout_ms] });
read_struct!(RawState {
    required: [],
    optional: [
        failure_half_life_s,
        refresh_interval_s,
        min_write_interval_s,
        kv_ttl_s,
        mirror_write_interval_s,
        read_timeout_ms
    ],
});

pub(super) fn validate(
    raw_state: &RawState,
    raw_breaker: &RawBreaker,
    raw_health: &RawHealth,
) -> Result<Resilience, ConfigError> {
    let d = StateSettings::default();
    let s = raw_state;
    let state = StateSettings {
        failure_half_life_s: s.failure_half_life_s.unwrap_or(d.failure_half_life_s),
        refresh_interval_s: s.refresh_interval_s.unwrap_or(d.refresh_interval_s),
        min_write_interval_s: s.min_write_interval_s.unwrap_or(d.min_write_interval_s),
        kv_ttl_s: s.kv_ttl_s.unwrap_or(d.kv_ttl_s),
        mirror_write_interval_s: s.mirror_write_interval_s.unwrap_or(d.mirror_write_interval_s).max(1),
        read_timeout_ms: s.read_timeout_ms.unwrap_or(d.read_timeout_ms),
    };
    if !(1..=30_000).contains(&state.read_timeout_ms) {
        return Err(err("state.read_timeout_ms", "must be between 1 and 30000"));
    }
    if state.failure_half_life_s == 0 {
        return Err(err("state.failure_half_life_s", "must be greater than 0"));
    }
    if state.min_write_interval_s < 1 {
        return Err(err("state.min_write_interval_s", "must be at least 1 (KV allows one write per second per key)"));
    }
    if state.kv_ttl_s < 60 {
        return Err(err("state.kv_ttl_s", "must be at least 60 (KV's minimum expiration TTL)"));
    }
    let db = BreakerSettings::default();
    let b = raw_breaker;
    let breaker = BreakerSettings {
        consecutive_failures: b.consecutive_failures.unwrap_or(db.consecutive_failures),
        failure_ratio: b.failure_ratio.unwrap_or(db.failure_ratio),
        min_requests: b.min_requests.unwrap_or(db.min_requests),
        window_s: b.window_s.unwrap_or(db.window_s),
        cooldown_ms: b.cooldown_ms.unwrap_or(db.cooldown_ms),
        max_cooldown_ms: b.max_cooldown_ms.unwrap_or(db.max_cooldown_ms),
        retry_budget_ratio: b.retry_budget_ratio.unwrap_or(db.retry_budget_ratio),
        retry_budget_min_per_s: b.retry_budget_min_per_s.unwrap_or(db.retry_budget_min_per_s),
        retry_budget_window_s: b.retry_budget_window_s.unwrap_or(db.retry_budget_window_s),
    };
    if !(0.0..=1000.0).contains(&breaker.retry_budget_ratio) {
        return Err(err("breaker.retry_budget_ratio", "must be between 0 and 1000"));
    }
    if !(0.0..=1000.0).contains(&breaker.retry_budget_min_per_s) {
        return Err(err("breaker.retry_budget_min_per_s", "must be between 0 and 1000"));
    }
    if !(1..=3600).contains(&breaker.retry_budget_window_s) {
        return Err(err("breaker.retry_budget_window_s", "must be between 1 and 3600"));
    }
    if breaker.consecutive_failures == 0 {
        return Err(err("breaker.consecutive_failures", "must be at least 1"));
    }
    if !(breaker.failure_ratio > 0.0 && breaker.failure_ratio <= 1.0) {
        return Err(err("breaker.failure_ratio", "must be in (0, 1]"));
    }
    if breaker.window_s == 0 {
        return Err(err("breaker.window_s", "must be greater than 0"));
    }
    if breaker.cooldown_ms == 0 {
        return Err(err("breaker.cooldown_ms", "must be greater than 0"));
    }
    if breaker.max_cooldown_ms < breaker.cooldown_ms {
        return Err(err("breaker.max_cooldown_ms", "must be at least cooldown_ms"));
    }
    let when_all_unavailable = match b.when_all_unavailable.as_deref().unwrap_or("least_recently_failed") {
        "least_recently_failed" => AllUnavailable::LeastRecentlyFailed,
        "strategy_order" => AllUnavailable::StrategyOrder,
        other => {
            return Err(err(
                "breaker.when_all_unavailable",
                format!("unknown value `{other}`: use least_recently_failed or strategy_order"),
            ))
        }
    };
    let dh = HealthSettings::default();
    let health = HealthSettings {
        unhealthy_after: raw_health.unhealthy_after.unwrap_or(dh.unhealthy_after),
        healthy_after: raw_health.healthy_after.unwrap_or(dh.healthy_after),
    };
    if health.unhealthy_after == 0 || health.healthy_after == 0 {
        return Err(err("health", "unhealthy_after and healthy_after must be at least 1"));
    }
    let probe_timeout_ms = raw_health.probe_timeout_ms.unwrap_or(5_000);
    if probe_timeout_ms == 0 {
        return Err(err("health.probe_timeout_ms", "must be greater than 0"));
    }
    Ok(Resilience { state, breaker, health, probe_timeout_ms, when_all_unavailable })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(state: &str, breaker: &str) -> Result<Resilience, ConfigError> {
        let s = <RawState as super::super::read::Read>::read(&serde_json::from_str(state).unwrap(), "state").unwrap();
        let b =
            <RawBreaker as super::super::read::Read>::read(&serde_json::from_str(breaker).unwrap(), "breaker").unwrap();
        validate(&s, &b, &RawHealth::default())
    }

    #[test]
    fn read_timeout_and_retry_budget_have_defaults_and_bounds() {
        let r = check("{}", "{}").ok().unwrap();
        assert_eq!(r.state.read_timeout_ms, 500);
        assert_eq!(
            (r.breaker.retry_budget_ratio, r.breaker.retry_budget_min_per_s, r.breaker.retry_budget_window_s),
            (0.2, 1.0, 10)
        );
        let r = check(r#"{"read_timeout_ms": 250}"#, r#"{"retry_budget_ratio": 0, "retry_budget_min_per_s": 0}"#);
        assert_eq!(r.ok().unwrap().state.read_timeout_ms, 250);
        let field = |state: &str, breaker: &str| check(state, breaker).err().unwrap().field;
        assert_eq!(field(r#"{"read_timeout_ms": 0}"#, "{}"), "state.read_timeout_ms");
        assert_eq!(field("{}", r#"{"retry_budget_ratio": -0.1}"#), "breaker.retry_budget_ratio");
        assert_eq!(field("{}", r#"{"retry_budget_min_per_s": -1}"#), "breaker.retry_budget_min_per_s");
        assert_eq!(field("{}", r#"{"retry_budget_window_s": 0}"#), "breaker.retry_budget_window_s");
    }
}
