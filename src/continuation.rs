//! Continuing a stream that broke after content: the request again, on a
//! target with the `prefill` capability, with the answer so far as a partial
//! assistant message, so that the client still receives one whole answer.

use crate::api::{ChatRequest, Content, Message, Role};
use crate::clock::Clock;
use crate::config::{Config, Route};
use crate::gateway::Gateway;
use crate::providers;
use crate::selection;
use crate::stream::{Resume, Resumed, StreamAccept};
use crate::upstream::Upstream;

/// How a stream that breaks after content may be continued.
#[derive(Debug, Clone)]
pub struct ContinuePlan {
    route: usize,
    request: ChatRequest,
    /// Prefill-capable targets (indexes into the route's), in order.
    candidates: Vec<usize>,
    id: String,
    created: u64,
    include_usage: bool,
}

/// Which targets may continue this stream if it breaks after content: those
/// with the `prefill` capability, other than the one serving, within what is
/// left of the attempt bound; `None` if the route does not allow it.
pub fn plan<C>(
    config: &Config,
    route: &Route,
    req: &ChatRequest,
    order: &[usize],
    served: usize,
    attempts_used: u32,
    accept: &StreamAccept<C>,
) -> Option<ContinuePlan> {
    let policy = &route.policy;
    if !policy.continue_on_failure {
        return None;
    }
    let budget = policy.max_attempts.saturating_sub(attempts_used) as usize;
    let candidates: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| i != served && route.targets.get(i).is_some_and(|t| t.caps.prefill))
        .take(budget)
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let route = config.routes.iter().position(|r| r.name == route.name)?;
    Some(ContinuePlan {
        route,
        request: req.clone(),
        candidates,
        id: accept.id.clone(),
        created: accept.created,
        include_usage: accept.include_usage,
    })
}

/// Continues a broken stream on the next prefill-capable target. A target
/// that refuses is passed over without a word to the client, who gets the
/// original failure if none continues.
pub struct Continuer<G, U, C> {
    pub gw: G,
    pub plan: ContinuePlan,
    pub upstream: U,
    pub clock: C,
}

impl<G: std::ops::Deref<Target = Gateway>, U: Upstream, C: Clock> Resume<U::Body> for Continuer<G, U, C> {
    async fn resume(&mut self, partial: &str) -> Option<Resumed<U::Body>> {
        let prefill = partial.trim_end();
        if prefill.is_empty() {
            return None;
        }
        let gw = &*self.gw;
        let route = gw.config.routes.get(self.plan.route)?;
        while !self.plan.candidates.is_empty() {
            let ti = self.plan.candidates.remove(0);
            let Some(t) = route.targets.get(ti) else { continue };
            let now = self.clock.now_ms();
            if gw.states().availability(t.provider, now) == selection::Availability::Down {
                continue;
            }
            let provider = gw.config.provider_of(t);
            let mut req = self.plan.request.clone();
            req.messages.push(Message {
                role: Role::Assistant,
                content: Some(Content::Text(prefill.to_owned())),
                name: None,
                tool_calls: None,
                tool_call_id: None,
                extra: Default::default(),
            });
            let out = providers::Outbound { provider, model: &t.model, api_key: gw.key(t.provider) };
            let Ok(upstream_req) = providers::build_chat(&out, &req) else {
                continue;
            };
            let deadline = now + route.policy.first_token_timeout_ms;
            match self.upstream.send(&upstream_req, deadline).await {
                Ok(head) if (200..300).contains(&head.status) => {
                    let meta = providers::StreamMeta {
                        id: self.plan.id.clone(),
                        created: self.plan.created,
                        model: t.model.clone(),
                        include_usage: self.plan.include_usage,
                    };
                    return Some(Resumed {
                        body: head.body,
                        translator: providers::stream_translator(provider.format, meta),
                        provider: t.provider,
                        target: t.id.clone(),
                        trimmed: partial.get(prefill.len()..).unwrap_or_default().to_owned(),
                    });
                }
                Ok(head) if head.status >= 500 || head.status == 429 => {
                    let kind = crate::taxonomy::ErrorKind::from_status(head.status);
                    gw.states_mut().record_failure(t.provider, kind, self.clock.now_ms());
                }
                // A refusal (it cannot continue this) says nothing about its health.
                Ok(_) => {}
                Err(e) => {
                    let kind = match e {
                        crate::upstream::TransportError::Timeout => crate::taxonomy::ErrorKind::Timeout,
                        crate::upstream::TransportError::Connect(_) => crate::taxonomy::ErrorKind::Connect,
                    };
                    gw.states_mut().record_failure(t.provider, kind, self.clock.now_ms());
                }
            }
        }
        None
    }
}
