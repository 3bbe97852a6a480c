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
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

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
        Some(Box::pin(async move {
            let (error, latency_ms) = match built {
                Ok(req) => probe_one(p.format, &req, out.api_key, cfg.probe_timeout_ms, clock, upstream).await,
                Err(kind) => (Some(kind), 0),
            };
            (i, ProbeResult { error, latency_ms, completion })
        }) as Probing<'_>)
    });
    let results = run_all(probes.collect()).await;
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

type Probing<'a> = Pin<Box<dyn Future<Output = (usize, ProbeResult)> + 'a>>;

/// Runs the probes at once (each is bounded by the probe timeout) and
/// returns their results in configuration order. Polled in place, as the
/// state refresh polls its reads: a general join would be more code in the
/// bundle for a list this short.
async fn run_all(mut pending: Vec<Probing<'_>>) -> Vec<(usize, ProbeResult)> {
    let mut done = Vec::with_capacity(pending.len());
    poll_fn(|cx| {
        pending.retain_mut(|probe| match probe.as_mut().poll(cx) {
            Poll::Ready(result) => {
                done.push(result);
                false
            }
            Poll::Pending => true,
        });
        if pending.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    crate::short_sort::sort_by_key(&mut done, |&(i, _)| i);
    done
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A probe that is pending for `polls` polls (waking itself each time),
    /// noting when it starts and when it finishes.
    fn probe<'a>(i: usize, polls: usize, trace: &'a RefCell<Vec<String>>) -> Probing<'a> {
        Box::pin(async move {
            trace.borrow_mut().push(format!("start {i}"));
            for _ in 0..polls {
                let mut yielded = false;
                poll_fn(|cx| {
                    if yielded {
                        Poll::Ready(())
                    } else {
                        yielded = true;
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                })
                .await;
            }
            trace.borrow_mut().push(format!("end {i}"));
            (i, ProbeResult { error: None, latency_ms: polls as u64, completion: false })
        })
    }

    #[test]
    fn probes_run_at_once_and_come_back_in_configuration_order() {
        let trace = RefCell::new(Vec::new());
        // The first provider is the slowest to answer, the last the fastest.
        let probes = vec![probe(0, 3, &trace), probe(1, 2, &trace), probe(2, 0, &trace)];
        let results = futures_executor::block_on(run_all(probes));
        let order: Vec<(usize, u64)> = results.iter().map(|(i, r)| (*i, r.latency_ms)).collect();
        assert_eq!(order, [(0, 3), (1, 2), (2, 0)]);
        let trace = trace.into_inner();
        // Every probe started before the first one finished.
        let first_end = trace.iter().position(|t| t.starts_with("end")).unwrap();
        assert_eq!(&trace[..first_end], ["start 0", "start 1", "start 2"]);
        assert_eq!(&trace[first_end..], ["end 2", "end 1", "end 0"]);
    }

    #[test]
    fn no_probes_is_no_results() {
        assert!(futures_executor::block_on(run_all(Vec::new())).is_empty());
    }
}
