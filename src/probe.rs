//! Health probes, as the cron trigger runs them: every configured provider
//! probed concurrently, each bounded by the probe timeout, the results
//! classified with the same taxonomy as requests and folded into the
//! provider's health and circuit.

use crate::clock::Clock;
use crate::config::Probe;
use crate::gateway::Gateway;
use crate::health::ProbeResult;
use crate::providers::{self, Outbound};
use crate::taxonomy::ErrorKind;
use crate::upstream::{TransportError, Upstream, UpstreamBody, UpstreamRequest};
use futures_util::future::join_all;

/// A probe reads at most this much of an answer (only that it came matters)
/// and of an error body.
const ANSWER_CAP: u64 = 1 << 20;
const ERROR_CAP: u64 = 64 * 1024;

/// Probes every provider and records the results. Returns the providers
/// probed with their results, in configuration order.
pub async fn probe_all<C: Clock, U: Upstream>(gw: &Gateway, clock: &C, upstream: &U) -> Vec<(String, ProbeResult)> {
    let cfg = &gw.config;
    let probes = cfg.providers.iter().enumerate().filter_map(|(i, p)| {
        let out = Outbound { provider: p, model: "", api_key: gw.key(i) };
        let built = if p.key_secret.is_some() && out.api_key.is_none() {
            Err(ErrorKind::MissingKey)
        } else {
            match providers::build_probe(&out) {
                Ok(Some(r)) => Ok(r),
                Ok(None) => return None,
                Err(_) => Err(ErrorKind::BadRequest),
            }
        };
        let completion = matches!(p.probe, Probe::Completion(_));
        Some(async move {
            let (error, latency_ms) = match built {
                Ok(req) => probe_one(p.format, &req, out.api_key, cfg.probe_timeout_ms, clock, upstream).await,
                Err(kind) => (Some(kind), 0),
            };
            (i, ProbeResult { error, latency_ms, completion })
        })
    });
    let results = join_all(probes).await;
    let now = clock.now_ms();
    let mut states = gw.states_mut();
    results
        .into_iter()
        .map(|(i, r)| {
            states.record_probe(i, r, now);
            (cfg.providers.get(i).map(|p| p.name.clone()).unwrap_or_default(), r)
        })
        .collect()
}

async fn probe_one<C: Clock, U: Upstream>(
    format: providers::Format,
    req: &UpstreamRequest,
    key: Option<&str>,
    timeout_ms: u64,
    clock: &C,
    upstream: &U,
) -> (Option<ErrorKind>, u64) {
    let start = clock.now_ms();
    let deadline = start + timeout_ms;
    let error = match upstream.send(req, deadline).await {
        Ok(head) if (200..300).contains(&head.status) => match head.body.text(deadline, ANSWER_CAP).await {
            Ok(_) => None,
            Err(TransportError::Timeout) => Some(ErrorKind::Timeout),
            Err(TransportError::Connect(_)) => Some(ErrorKind::Connect),
            Err(TransportError::TooLarge(_)) => None,
        },
        Ok(head) => {
            let status = head.status;
            let body = head.body.text(deadline, ERROR_CAP).await.unwrap_or_default();
            Some(crate::dispatch::classify_redacted(format, status, &body, key).kind)
        }
        Err(TransportError::Timeout) => Some(ErrorKind::Timeout),
        Err(TransportError::Connect(_) | TransportError::TooLarge(_)) => Some(ErrorKind::Connect),
    };
    (error, clock.now_ms().saturating_sub(start))
}
