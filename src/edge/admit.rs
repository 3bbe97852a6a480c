//! Admitting a request to the API: its gateway key (from the secret, or KV),
//! then the rate limit for that caller.

use super::clock::WorkerClock;
use super::kv::KvState;
use super::STATE_BINDING;
use crate::api::ApiError;
use crate::clock::Clock;
use crate::gateway::Gateway;
use crate::http::Reply;
use crate::keys::{Caller, KeyCheck};
use crate::log::RequestLog;
use crate::record::Outcome;
use crate::store::StateStore;
use worker::{Env, Request};

/// `Err` is the reply to send instead of serving the request.
pub async fn admit(gw: &Gateway, req: &Request, env: &Env, log: &mut RequestLog) -> Result<(), Reply> {
    let now = WorkerClock.now_ms();
    let auth = req.headers().get("authorization").ok().flatten();
    let mut check = gw.keys.check(auth.as_deref(), now);
    if let KeyCheck::LookUp(hash) = &check {
        let stored = match env.kv(STATE_BINDING) {
            Ok(kv) => KvState(kv).get(&format!("{}{hash}", crate::auth::KEY_PREFIX_KV)).await.ok().flatten(),
            Err(_) => None,
        };
        check = gw.keys.admit_from_kv(hash, stored.as_deref(), now);
    }
    let caller = match check {
        KeyCheck::Admitted(c) => c,
        KeyCheck::Refused(r) => {
            log.outcome = Some(if r.status == 401 { Outcome::Unauthorized } else { Outcome::ConfigError });
            return Err(r);
        }
        KeyCheck::LookUp(_) => return Err(Reply::json(500, String::new())),
    };
    let sec = &gw.config.security;
    if let Some(binding) = &sec.rate_limit_binding {
        let key = match &caller {
            Caller::Key(k) => format!("key:{}", k.name),
            Caller::Anonymous => {
                format!("ip:{}", req.headers().get("cf-connecting-ip").ok().flatten().unwrap_or_default())
            }
        };
        if !rate_limit_ok(env, binding, &key).await {
            log.caller = Some(caller);
            log.outcome = Some(Outcome::RateLimited);
            let mut r = Reply::error(
                &ApiError::new(429, "rate_limit_error", "too many requests for this key: slow down")
                    .with_code("rate_limit_exceeded"),
            );
            r.headers.push(("retry-after", sec.rate_limit_period_s.to_string()));
            return Err(r);
        }
    }
    log.caller = Some(caller);
    Ok(())
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
