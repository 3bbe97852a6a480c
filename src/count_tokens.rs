//! `POST /v1/messages/count_tokens`: Anthropic's token count for a
//! Messages request. Only an Anthropic target can count as Anthropic
//! does, so the request goes to the route's Anthropic targets (with
//! failover between them); a route without one answers 404, and clients
//! then estimate locally. The gateway never makes a number up.

use crate::api::{ApiError, Native, NativeApi};
use crate::chat::{client_error, find_route, World};
use crate::clock::Clock;
use crate::config::{Format, ProviderConfig, Target};
use crate::dispatch::Build;
use crate::gateway::Gateway;
use crate::http::Reply;
use crate::log::RequestLog;
use crate::providers::{anthropic, Outbound};
use crate::rng::Rng;
use crate::serve::{serve_whole, Targets};
use crate::taxonomy::UpstreamError;
use crate::upstream::{Upstream, UpstreamRequest};
use crate::whole::{Completion, Finish};

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
    let to = Targets { route, order: &order, forced: false };
    serve_whole(gw, to, &req, &AsIs, log, w).await
}
