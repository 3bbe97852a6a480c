//! Continuing a stream that broke after content: the request again, on a
//! target with the `prefill` capability, with the answer so far as a
//! partial assistant message, so that the client still receives one whole
//! answer.
//!
//! A continuation is an ordinary attempt: it goes through the attempt loop
//! (`dispatch`) with a one-target plan per candidate, so it asks the
//! breaker for a permit, is bounded by the request's deadline and what is
//! left of its attempt bound, and is recorded (in the log line's `attempts`
//! and in the provider's health) like any other. A target that refuses the
//! prefill (a 4xx, as Claude 4.6 and later models answer) is passed over
//! without counting against its provider; the client then gets the
//! original failure.

use crate::api::{ChatRequest, Content, Message, Role};
use crate::clock::Clock;
use crate::config::{Config, ProviderConfig, Route, Target};
use crate::dispatch::{self, Accept, Dispatched, Plan};
use crate::gateway::Gateway;
use crate::inbound::ClientFormat;
use crate::record::AttemptRecord;
use crate::rng::Rng;
use crate::stream::drive::{first_token, source};
use crate::stream::{Relay, Resume, Streaming};
use crate::taxonomy::UpstreamError;
use crate::upstream::{Upstream, UpstreamBody, UpstreamHead};

/// How a stream that breaks after content may be continued.
#[derive(Debug, Clone)]
pub struct ContinuePlan {
    route: usize,
    request: ChatRequest,
    /// Prefill-capable targets (indexes into the route's), in order.
    candidates: Vec<usize>,
    /// Upstream attempts left to the request.
    attempts_left: u32,
    /// The request's deadline (clock time).
    deadline_ms: u64,
}

/// Which targets may continue this stream if it breaks after content: those
/// with the `prefill` capability, other than the one serving, in the
/// request's order; `None` if the route does not allow it or the attempt
/// bound is spent.
pub fn plan(
    config: &Config,
    route: &Route,
    req: &ChatRequest,
    order: &[usize],
    served: usize,
    attempts_used: u32,
    deadline_ms: u64,
) -> Option<ContinuePlan> {
    let policy = &route.policy;
    let attempts_left = policy.max_attempts.saturating_sub(attempts_used);
    if !policy.continue_on_failure || attempts_left == 0 || req.choices() > 1 {
        return None;
    }
    let candidates: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| i != served && route.targets.get(i).is_some_and(|t| t.caps.prefill))
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let route = config.routes.iter().position(|r| r.name == route.name)?;
    Some(ContinuePlan { route, request: req.clone(), candidates, attempts_left, deadline_ms })
}

/// Continues broken streams for one request.
pub struct Continuer<G, U, C, R> {
    pub gw: G,
    pub plan: ContinuePlan,
    pub upstream: U,
    pub clock: C,
    pub rng: R,
    /// Every continuation attempt, for the log.
    pub attempts: Vec<AttemptRecord>,
}

impl<G: std::ops::Deref<Target = Gateway>, U: Upstream, C: Clock, R: Rng> Continuer<G, U, C, R> {
    pub fn new(gw: G, plan: ContinuePlan, upstream: U, clock: C, rng: R) -> Self {
        Continuer { gw, plan, upstream, clock, rng, attempts: Vec::new() }
    }
}

/// Reads a continuation's stream until its first token, in a relay that
/// carries on from the broken one.
struct ContinueAccept<'a, C> {
    broken: &'a Relay,
    clock: &'a C,
}

impl<B: UpstreamBody, C: Clock> Accept<B> for ContinueAccept<'_, C> {
    type Output = Streaming<B>;

    async fn accept(
        &mut self,
        target: &Target,
        provider: &ProviderConfig,
        key: Option<&str>,
        head: UpstreamHead<B>,
        deadline_ms: u64,
    ) -> Result<Streaming<B>, UpstreamError> {
        let src = source(target, provider, key, ClientFormat::Chat, None, false);
        let relay = self.broken.continuation(src, self.clock.now_ms(), deadline_ms);
        first_token(head, relay, self.clock).await
    }
}

impl<G, U, C, R> Resume<U::Body> for Continuer<G, U, C, R>
where
    G: std::ops::Deref<Target = Gateway>,
    U: Upstream,
    C: Clock,
    R: Rng,
{
    async fn resume(&mut self, broken: &Relay) -> Option<Streaming<U::Body>> {
        let prefill = broken.prefill()?.to_owned();
        let gw = &*self.gw;
        let route = gw.config.routes.get(self.plan.route)?;
        let mut req = self.plan.request.clone();
        // A continuation is the gateway's own request (a prefill), never
        // the client's native one.
        req.native = None;
        req.messages.push(Message {
            role: Role::Assistant,
            content: Some(Content::Text(prefill)),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            extra: Default::default(),
        });
        while !self.plan.candidates.is_empty() && self.plan.attempts_left > 0 {
            let ti = self.plan.candidates.remove(0);
            let order = [ti];
            let plan = Plan {
                config: &gw.config,
                route,
                order: &order,
                request: &req,
                keys: gw.provider_keys(),
                states: gw.states_cell(),
                forced: false,
                max_attempts: self.plan.attempts_left,
                deadline_ms: self.plan.deadline_ms,
            };
            let mut accept = ContinueAccept { broken, clock: &self.clock };
            let d = dispatch::dispatch(&plan, &self.clock, &self.upstream, &mut self.rng, &mut accept).await;
            self.plan.attempts_left = self.plan.attempts_left.saturating_sub(d.attempts.len() as u32);
            self.attempts.extend(d.attempts);
            if let Dispatched::Served { output, .. } = d.outcome {
                return Some(output);
            }
        }
        None
    }

    fn attempts(&mut self) -> Vec<AttemptRecord> {
        std::mem::take(&mut self.attempts)
    }
}
