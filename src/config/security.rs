//! Who may call the gateway, from where, how much and how big: gateway keys,
//! CORS, request limits and rate limits.

use super::{err, ConfigError};
use serde::Deserialize;

/// Who may call the gateway, from where, how much and how big.
#[derive(Debug, Clone, PartialEq)]
pub struct Security {
    /// Requests without a gateway key are served (off unless turned on).
    pub anonymous: bool,
    /// The Worker secret holding the gateway keys' hashes (a JSON list).
    pub keys_secret: String,
    /// Also look keys up in KV (`sy:v1:key:<sha256>`), for keys revocable
    /// without a redeploy.
    pub kv_keys: bool,
    /// Origins allowed to call from a browser; `*` for any (never with credentials).
    pub cors_origins: Vec<String>,
    pub cors_credentials: bool,
    pub cors_max_age_s: u64,
    /// Largest request body accepted.
    pub max_body_bytes: u64,
    /// Largest upstream answer read whole (and answer text kept from a stream).
    pub max_answer_bytes: u64,
    /// Largest upstream error body read (the rest is not read).
    pub max_error_body_bytes: u64,
    /// Largest SSE line or event in an upstream stream.
    pub max_stream_event_bytes: u64,
    /// The rate limiting binding (declared in wrangler.toml), if any.
    pub rate_limit_binding: Option<String>,
    /// The binding's period, for Retry-After.
    pub rate_limit_period_s: u64,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            anonymous: false,
            keys_secret: "GATEWAY_KEYS".to_owned(),
            kv_keys: true,
            cors_origins: Vec::new(),
            cors_credentials: false,
            cors_max_age_s: 600,
            max_body_bytes: 1024 * 1024,
            max_answer_bytes: 8 * 1024 * 1024,
            max_error_body_bytes: 64 * 1024,
            max_stream_event_bytes: 1024 * 1024,
            rate_limit_binding: None,
            rate_limit_period_s: 60,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    anonymous: Option<bool>,
    keys_secret: Option<String>,
    kv_keys: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCors {
    allowed_origins: Option<Vec<String>>,
    allow_credentials: Option<bool>,
    max_age_s: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    max_body_bytes: Option<u64>,
    max_answer_bytes: Option<u64>,
    max_error_body_bytes: Option<u64>,
    max_stream_event_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {
    binding: String,
    period_s: Option<u64>,
}

/// The security-related sections of the raw config.
pub(super) struct RawSecurity<'a> {
    pub auth: &'a RawAuth,
    pub cors: &'a RawCors,
    pub limits: &'a RawLimits,
    pub rate_limit: &'a Option<RawRateLimit>,
}

pub(super) fn validate(raw: &RawSecurity) -> Result<Security, ConfigError> {
    let d = Security::default();
    let origins = raw.cors.allowed_origins.clone().unwrap_or_default();
    for (i, o) in origins.iter().enumerate() {
        let ok = o == "*"
            || ((o.starts_with("https://") || o.starts_with("http://"))
                && !o.ends_with('/')
                && o.matches('/').count() == 2);
        if !ok {
            return Err(err(
                format!("cors.allowed_origins[{i}]"),
                "an origin is `scheme://host[:port]` with no path, or `*`",
            ));
        }
    }
    let credentials = raw.cors.allow_credentials.unwrap_or(false);
    if credentials && origins.iter().any(|o| o == "*") {
        return Err(err("cors.allow_credentials", "browsers refuse `*` with credentials: list the origins"));
    }
    let max_body_bytes = raw.limits.max_body_bytes.unwrap_or(d.max_body_bytes);
    if !(1024..=100 * 1024 * 1024).contains(&max_body_bytes) {
        return Err(err("limits.max_body_bytes", "must be between 1 KiB and 100 MiB"));
    }
    let cap = |name: &str, v: Option<u64>, default: u64| -> Result<u64, ConfigError> {
        let v = v.unwrap_or(default);
        if (1024..=64 * 1024 * 1024).contains(&v) {
            Ok(v)
        } else {
            Err(err(format!("limits.{name}"), "must be between 1 KiB and 64 MiB"))
        }
    };
    let max_answer_bytes = cap("max_answer_bytes", raw.limits.max_answer_bytes, d.max_answer_bytes)?;
    let max_error_body_bytes = cap("max_error_body_bytes", raw.limits.max_error_body_bytes, d.max_error_body_bytes)?;
    let max_stream_event_bytes =
        cap("max_stream_event_bytes", raw.limits.max_stream_event_bytes, d.max_stream_event_bytes)?;
    let keys_secret = raw.auth.keys_secret.clone().unwrap_or(d.keys_secret);
    if keys_secret.is_empty() {
        return Err(err("auth.keys_secret", "must name a Worker secret"));
    }
    let (rate_limit_binding, rate_limit_period_s) = match &raw.rate_limit {
        None => (None, d.rate_limit_period_s),
        Some(r) if r.binding.is_empty() => return Err(err("rate_limit.binding", "must name the binding")),
        Some(r) => (Some(r.binding.clone()), r.period_s.unwrap_or(60).max(1)),
    };
    Ok(Security {
        anonymous: raw.auth.anonymous.unwrap_or(false),
        keys_secret,
        kv_keys: raw.auth.kv_keys.unwrap_or(true),
        cors_origins: origins,
        cors_credentials: credentials,
        cors_max_age_s: raw.cors.max_age_s.unwrap_or(d.cors_max_age_s),
        max_body_bytes,
        max_answer_bytes,
        max_error_body_bytes,
        max_stream_event_bytes,
        rate_limit_binding,
        rate_limit_period_s,
    })
}
