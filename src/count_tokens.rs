//! `POST /v1/messages/count_tokens`: Anthropic's token count for a
//! Messages request. Only an Anthropic target can count as Anthropic
//! does, so the request goes to the route's Anthropic targets (with
//! failover between them); a route without one answers 404, and clients
//! then estimate locally. The gateway never makes a number up.

use crate::api::{ApiError, Native, NativeApi};
use crate::chat::{client_error, failure_reply, find_route, World};
use crate::clock::Clock;
use crate::config::{Format, ProviderConfig, Target};
use crate::dispatch::{self, Build, Dispatched, Plan};
use crate::gateway::Gateway;
use crate::http::{Reply, HEADER_ATTEMPTS, HEADER_PROVIDER, HEADER_ROUTE};
use crate::log::RequestLog;
use crate::providers::{anthropic, Outbound};
use crate::record::Outcome;
use crate::rng::Rng;
use crate::taxonomy::UpstreamError;
use crate::upstream::{Upstream, UpstreamRequest};
use crate::whole::{Completion, Finish, ReadWhole};

struct CountRequest(Native);

impl Build for CountRequest {
    fn build(&self, out: &Outbound) -> Result<UpstreamRequest, ApiError> {
        Ok(anthropic::native_request(out, &self.0, "/v1/messages/count_tokens"))
    }
    fn is_stream(&self) -> bool {
        false
    }
}

/// The count is Anthropic's own answer, passed on as it is.
struct AsIs;

impl Finish for AsIs {
    fn finish(&self, _target: &Target, _provider: &ProviderConfig, text: String) -> Result<Completion, UpstreamError> {
        Ok(Completion { body: text, ..Completion::default() })
    }
}

pub async fn count_tokens<C: Clock, U: Upstream, R: Rng, M>(
    gw: &Gateway,
    body: &[u8],
    headers: Vec<(String, String)>,
    log: &mut RequestLog,
    w: &mut World<'_, C, U, R, M>,
) -> Reply {
    let v = match crate::inbound::read_object(body, "a token count request") {
        Ok(v) => v,
        Err(e) => return client_error(e, log),
    };
    let model = match v.get("model").and_then(|m| m.as_str()) {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ => return client_error(ApiError::invalid_param("model", "model: Field required"), log),
    };
    let route = match find_route(gw, &model, log) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let order: Vec<usize> = (0..route.targets.len())
        .filter(|&i| route.targets.get(i).is_some_and(|t| gw.config.provider_of(t).format == Format::Anthropic))
        .collect();
    if order.is_empty() {
        let e = ApiError::not_found(format!(
            "route `{}` has no Anthropic target, so tokens cannot be counted as Anthropic counts them",
            route.name
        ))
        .with_code("count_tokens_unavailable");
        return client_error(e, log);
    }
    let serde_json::Value::Object(body) = v else {
        return client_error(ApiError::invalid("the request body must be a JSON object"), log);
    };
    let req = CountRequest(Native { api: Some(NativeApi::Messages), body, headers, ..Native::default() });
    let now = w.clock.now_ms();
    let plan = Plan {
        config: &gw.config,
        route,
        order: &order,
        request: &req,
        keys: gw.provider_keys(),
        states: gw.states_cell(),
        forced: false,
        max_attempts: route.policy.max_attempts,
        deadline_ms: now + route.policy.deadline_ms,
    };
    let mut accept = ReadWhole { max_bytes: gw.config.security.max_answer_bytes, finish: &AsIs };
    let d = dispatch::dispatch(&plan, w.clock, w.upstream, w.rng, &mut accept).await;
    let mut reply = match d.outcome {
        Dispatched::Served { target, output } => {
            let provider = route.targets.get(target).map(|t| gw.config.provider_of(t).name.clone());
            log.outcome = Some(Outcome::Ok);
            log.provider.clone_from(&provider);
            let mut r = Reply::json(200, output.body);
            r.headers.push((HEADER_PROVIDER, provider.unwrap_or_default()));
            r
        }
        other => failure_reply(other, &d.attempts, log),
    };
    reply.headers.push((HEADER_ATTEMPTS, d.attempts.len().to_string()));
    reply.headers.push((HEADER_ROUTE, route.name.clone()));
    log.attempts = d.attempts;
    reply
}
