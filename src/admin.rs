//! The admin views: `GET /v1/status` (provider health, circuits, weights
//! and this isolate's KV operations) and `GET /v1/mirror` (each mirrored
//! route's comparison aggregates). Both sit behind the admin key
//! ([`crate::keys::AdminKey`]) and show no secrets.

use crate::gateway::Gateway;
use crate::http::Reply;
use crate::json::JsonText as _;
use crate::mirror::MirrorStats;
use crate::selection;
use serde_json::json;

/// `GET /v1/status`: every provider's health, circuit, failure count and
/// last probe, and every route's effective weights; and the KV reads and
/// writes this isolate has made (`kv_ops`). No secrets.
pub fn status(gw: &Gateway, now: u64, kv_ops: (u64, u64)) -> Reply {
    let states = gw.states();
    let providers: Vec<serde_json::Value> = gw
        .config
        .providers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let rec = states.record(i);
            let h = states.health(i);
            let b = states.breaker(i);
            json!({
                "name": p.name,
                "format": p.format.as_str(),
                "base_url": p.base_url,
                "key_configured": p.key_secret.is_none() || gw.has_key(i),
                "available": states.available(i, now),
                "health": {
                    "status": h.status.as_str(),
                    "last_probe_ms": (h.last_probe_ms > 0).then_some(h.last_probe_ms),
                    "last_probe_latency_ms": (h.last_probe_ms > 0).then_some(h.last_latency_ms),
                    "consecutive_probe_failures": h.consecutive_failures,
                    "consecutive_probe_successes": h.consecutive_successes,
                    "changed_ms": (h.changed_ms > 0).then_some(h.changed_ms),
                },
                "circuit": {
                    "state": b.state(now).as_str(),
                    "cooldown_ms": b.shared.cooldown_ms,
                    "retry_at_ms": b.retry_at_ms(),
                    "consecutive_failures": b.consecutive_failures(),
                },
                "failures": states.effective_failures(i, now),
                "penalty": states.penalty(i, now),
                "last_failure_ms": (rec.last_failure_ms > 0).then_some(rec.last_failure_ms),
                "last_success_ms": (rec.last_success_ms > 0).then_some(rec.last_success_ms),
                "last_error": h.last_error,
                "last_error_ms": (h.last_error_ms > 0).then_some(h.last_error_ms),
            })
        })
        .collect();
    let routes: Vec<serde_json::Value> = gw
        .config
        .routes
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "strategy": format!("{:?}", r.strategy).to_ascii_lowercase(),
                "targets": r.targets.iter().map(|t| {
                    let available = states.available(t.provider, now);
                    json!({
                        "target": t.id,
                        "weight": t.weight,
                        "effective_weight": if available {
                            selection::effective_weight(t, states.effective_failures(t.provider, now))
                        } else { 0.0 },
                        "available": available,
                        "cost": {"input": t.cost.input, "output": t.cost.output},
                    })
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    Reply::json(
        200,
        json!({"now_ms": now, "providers": providers, "routes": routes, "kv_ops": {"reads": kv_ops.0, "writes": kv_ops.1, "scope": "this isolate since it started"}}).json_text(),
    )
}

/// `GET /v1/mirror`: each mirrored route's aggregates, the shared totals
/// (`shared`, read from the store) plus what this isolate has not
/// written yet.
pub fn mirror_report(gw: &Gateway, shared: &[(String, MirrorStats)]) -> Reply {
    let ledger = gw.mirror_ledger();
    let routes: Vec<serde_json::Value> = gw
        .config
        .routes
        .iter()
        .filter_map(|r| {
            let m = r.mirror.as_ref()?;
            let mut total = shared.iter().find(|(n, _)| n == &r.name).map(|(_, s)| s.clone()).unwrap_or_default();
            if let Some(p) = ledger.pending(&r.name) {
                total.merge(p);
            }
            Some(json!({
                "route": r.name,
                "primary_targets": r.targets.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
                "mirror": m.target.id,
                "sample_rate": m.sample_rate,
                "stats": total.summary(),
            }))
        })
        .collect();
    Reply::json(200, json!({ "routes": routes }).json_text())
}

/// `GET /v1/usage` without the Analytics Engine SQL API: this isolate's
/// last hour, per route and provider, and said to be only that. `why` tells
/// the operator how to get fleet figures.
pub fn usage_isolate(gw: &Gateway, now: u64, why: &str) -> Reply {
    let m = gw.metrics.borrow();
    let totals = |v: &[crate::metrics::Series]| -> Vec<serde_json::Value> {
        v.iter()
            .map(|s| {
                let t = s.totals(now);
                json!({"name": s.name, "requests": t.requests, "prompt_tokens": t.prompt_tokens,
                       "completion_tokens": t.completion_tokens, "cost_usd": t.cost_usd})
            })
            .collect()
    };
    Reply::json(
        200,
        json!({"scope": "isolate", "window": "this isolate's last hour", "note": why, "now_ms": now,
               "routes": totals(&m.routes), "providers": totals(&m.providers)})
        .json_text(),
    )
}
