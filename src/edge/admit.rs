//! Admitting a request: its gateway key (from the secret, or KV), then the
//! rate limit for that caller; and the rate limit of the admin endpoints.
//!
//! Rate limits use the Workers rate limiting binding (`limit({key})`) with
//! these keys:
//! - `key:<name>`: a caller with a gateway key;
//! - `ip:<cf-connecting-ip>`: an anonymous caller, and, before the KV read
//!   it would cost, a token that the secret does not hold (so random tokens
//!   cannot spend KV reads faster than the limit);
//! - `admin:<cf-connecting-ip>`: `/v1/status` and `/v1/mirror`, counted
//!   before the admin key is checked, so it cannot be guessed quickly.
//!
//! Requests without `cf-connecting-ip` (Cloudflare sets it on every request
//! from the internet; a Worker calling through a service binding, and local
//! tools, send none) all count as address `unknown`, and the isolate says so
//! once in its log. No other header (`x-forwarded-for`, `x-switchyard-*`)
//! chooses the bucket: clients set those.

use super::clock::WorkerClock;
use super::kv::KvState;
use super::web::Incoming;
use super::STATE_BINDING;
use crate::api::ApiError;
use crate::clock::Clock;
use crate::gateway::Gateway;
use crate::http::Reply;
use crate::json::JsonText as _;
use crate::keys::{Caller, KeyCheck};
use crate::log::RequestLog;
use crate::record::Outcome;
use crate::store::StateStore;
use std::cell::Cell;
use worker::{console_error, console_warn, Env};

/// The address that requests without `cf-connecting-ip` share.
pub const UNKNOWN_IP: &str = "unknown";

thread_local! {
    /// Whether this isolate has already said that callers without an address share a bucket.
    static WARNED_NO_IP: Cell<bool> = const { Cell::new(false) };
}

/// `Err` is the reply to send instead of serving the request.
pub async fn admit(gw: &Gateway, req: &Incoming, env: &Env, log: &mut RequestLog) -> Result<(), Reply> {
    let now = WorkerClock.now_ms();
    // Anthropic's clients send their key as `x-api-key`.
    let auth = req.header("authorization").or_else(|| req.header("x-api-key").map(|k| format!("Bearer {k}")));
    let sec = &gw.config.security;
    let mut check = gw.keys.check(auth.as_deref(), now);
    // The address's bucket has paid for this request already.
    let mut ip_counted = false;
    if let KeyCheck::LookUp(hash) = &check {
        // A KV read for a token nobody may have: the address pays first.
        if let Some(binding) = &sec.rate_limit_binding {
            ip_counted = true;
            if !rate_limit_ok(env, binding, &format!("ip:{}", client_ip(req))).await {
                log.outcome = Some(Outcome::RateLimited);
                return Err(too_many("too many requests from this address: slow down", sec.rate_limit_period_s));
            }
        }
        check = match KvState::bound(env, STATE_BINDING) {
            Some(kv) => match kv.get(&hash.kv_key()).await {
                Ok(stored) => gw.keys.admit_from_kv(hash, stored.as_deref(), now),
                Err(e) => {
                    console_error!(
                        "{}",
                        serde_json::json!({"level":"error","msg":"key look-up failed","detail":e}).json_text()
                    );
                    gw.keys.lookup_failed()
                }
            },
            None => gw.keys.lookup_failed(),
        };
    }
    let caller = match check {
        KeyCheck::Admitted(c) => c,
        KeyCheck::Refused(r) => {
            if r.status == 401 {
                log.outcome = Some(Outcome::Unauthorized);
            } else {
                log.outcome = Some(Outcome::ConfigError);
                log.error = gw.keys.secret_error().map(str::to_owned);
            }
            return Err(r);
        }
        KeyCheck::LookUp(_) => return Err(Reply::json(500, String::new())),
    };
    if let Some(binding) = &sec.rate_limit_binding {
        let key = match &caller {
            Caller::Key(k) => Some(format!("key:{}", k.name)),
            Caller::Anonymous if ip_counted => None,
            Caller::Anonymous => Some(format!("ip:{}", client_ip(req))),
        };
        if let Some(key) = key {
            if !rate_limit_ok(env, binding, &key).await {
                log.caller = Some(caller);
                log.outcome = Some(Outcome::RateLimited);
                return Err(too_many("too many requests for this key: slow down", sec.rate_limit_period_s));
            }
        }
    }
    log.caller = Some(caller);
    Ok(())
}

/// The rate limit of the admin endpoints, per client address, counted
/// before the admin key is checked.
pub async fn admit_admin(gw: &Gateway, req: &Incoming, env: &Env, log: &mut RequestLog) -> Result<(), Reply> {
    let sec = &gw.config.security;
    let Some(binding) = &sec.rate_limit_binding else {
        return Ok(());
    };
    if rate_limit_ok(env, binding, &format!("admin:{}", client_ip(req))).await {
        return Ok(());
    }
    log.outcome = Some(Outcome::RateLimited);
    Err(too_many("too many admin requests from this address: slow down", sec.rate_limit_period_s))
}

/// The client's address, from `cf-connecting-ip`; [`UNKNOWN_IP`] without
/// one (said once per isolate in the log).
fn client_ip(req: &Incoming) -> String {
    match req.header("cf-connecting-ip") {
        Some(ip) if !ip.trim().is_empty() => ip.trim().to_owned(),
        _ => {
            if !WARNED_NO_IP.with(|w| w.replace(true)) {
                console_warn!(
                    "{}",
                    serde_json::json!({
                        "level": "warn",
                        "msg": "no cf-connecting-ip",
                        "detail": "a request came without cf-connecting-ip (a service binding or a local tool): \
                                   all such callers share the rate limit bucket of address `unknown`; \
                                   a calling Worker can pass on its own client's cf-connecting-ip",
                    })
                    .json_text()
                );
            }
            UNKNOWN_IP.to_owned()
        }
    }
}

fn too_many(message: &str, period_s: u64) -> Reply {
    let mut r = Reply::error(&ApiError::new(429, "rate_limit_error", message).with_code("rate_limit_exceeded"));
    r.headers.push(("retry-after", period_s.to_string()));
    r
}

/// Asks the rate limiting binding (`limit({key})`). A missing or failing
/// binding lets the request through: the limit protects budgets, it must not
/// take the gateway down.
async fn rate_limit_ok(env: &Env, binding: &str, key: &str) -> bool {
    let Ok(limiter) = js_sys::Reflect::get(env, &binding.into()) else {
        return true;
    };
    let Ok(limit) = js_sys::Reflect::get(&limiter, &"limit".into()) else {
        return true;
    };
    let Some(limit) = wasm_bindgen::JsCast::dyn_ref::<js_sys::Function>(&limit) else {
        return true;
    };
    let arg = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&arg, &"key".into(), &key.into());
    let Ok(promise) = limit.call1(&limiter, &arg) else {
        return true;
    };
    let Ok(outcome) = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::from(promise)).await else {
        return true;
    };
    js_sys::Reflect::get(&outcome, &"success".into()).ok().and_then(|v| v.as_bool()).unwrap_or(true)
}
