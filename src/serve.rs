//! Serving a request whose answer is read whole and passed on (token
//! counts, embeddings): the attempt loop over the targets chosen, then the
//! reply with the gateway's headers and the request's log line filled in.

use crate::chat::{failure_reply, World};
use crate::clock::Clock;
use crate::config::Route;
use crate::dispatch::{self, Build, Dispatched, Plan};
use crate::gateway::Gateway;
use crate::http::{header_value, Reply, HEADER_ATTEMPTS, HEADER_MODEL, HEADER_PROVIDER, HEADER_ROUTE};
use crate::log::RequestLog;
use crate::record::Outcome;
use crate::rng::Rng;
use crate::upstream::Upstream;
use crate::whole::{Finish, ReadWhole};

/// Where a whole answer goes: the route's targets in `order` (`forced`:
/// they are all unavailable and tried anyway).
pub struct Targets<'a> {
    pub route: &'a Route,
    pub order: &'a [usize],
    pub forced: bool,
}

pub async fn serve_whole<C: Clock, U: Upstream, R: Rng, M>(
    gw: &Gateway,
    to: Targets<'_>,
    request: &dyn Build,
    finish: &dyn Finish,
    log: &mut RequestLog,
    w: &mut World<'_, C, U, R, M>,
) -> Reply {
    let route = to.route;
    log.forced = to.forced;
    let plan = Plan {
        config: &gw.config,
        route,
        order: to.order,
        request,
        keys: gw.provider_keys(),
        states: gw.states_cell(),
        forced: to.forced,
        max_attempts: route.policy.max_attempts,
        deadline_ms: w.clock.now_ms() + route.policy.deadline_ms,
    };
    let mut accept = ReadWhole { max_bytes: gw.config.security.max_answer_bytes, finish };
    let d = dispatch::dispatch(&plan, w.clock, w.upstream, w.rng, &mut accept).await;
    let mut reply = match d.outcome {
        Dispatched::Served { target, output } => {
            let t = route.targets.get(target);
            let provider = t.map(|t| gw.config.provider_of(t).name.clone()).unwrap_or_default();
            log.outcome = Some(Outcome::Ok);
            log.provider = Some(provider.clone());
            log.model = t.map(|t| t.model.clone());
            log.usage = output.usage;
            let mut r = Reply::json(200, output.body);
            r.headers.push((HEADER_PROVIDER, provider));
            r.headers.push((HEADER_MODEL, t.map(|t| header_value(&t.model)).unwrap_or_default()));
            r
        }
        other => failure_reply(other, &d.attempts, log),
    };
    reply.headers.push((HEADER_ATTEMPTS, d.attempts.len().to_string()));
    reply.headers.push((HEADER_ROUTE, route.name.clone()));
    log.attempts = d.attempts;
    reply
}
