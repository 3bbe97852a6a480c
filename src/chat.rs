//! A chat completion request from body to reply: parse, choose the targets
//! (capabilities, strategy, availability), start the mirror if sampled, run
//! the attempt loop, and turn its outcome into the client's answer (whole,
//! or a stream to relay), filling the request's log line as it goes.

use crate::api::{ApiError, ChatCompletion, ChatRequest, NativeApi};
use crate::clock::Clock;
use crate::config::{Cost, ProviderConfig, Route, Target};
use crate::continuation::{self, ContinuePlan};
use crate::dispatch::{self, Dispatched, Plan};
use crate::gateway::Gateway;
use crate::http::{
    header_value, Reply, HEADER_ATTEMPTS, HEADER_DROPPED_TOOLS, HEADER_MODEL, HEADER_PROVIDER, HEADER_ROUTE,
};
use crate::inbound::ClientFormat;
use crate::log::{attempts_json, RequestLog};
use crate::mirror::MirrorLink;
use crate::mirroring;
use crate::providers::Wire;
use crate::record::{Answer, AttemptRecord, Outcome};
use crate::rng::Rng;
use crate::selection::{self, Needs};
use crate::stream::{Relay, State, StreamAccept, StreamSpec, Streaming};
use crate::taxonomy::{ErrorKind, UpstreamError};
use crate::upstream::Upstream;
use crate::whole::{Completion, Finish, ReadWhole};

/// What a request works with besides the gateway: time, the network, its
/// own randomness and the mirror link.
pub struct World<'a, C, U, R, M> {
    pub clock: &'a C,
    pub upstream: &'a U,
    pub rng: &'a mut R,
    pub mirror: &'a M,
}

/// The request as the edge read it.
pub struct ChatInput<'a> {
    /// The API the client called.
    pub api: ClientFormat,
    pub body: &'a [u8],
    /// Headers passed on to a target of the client's own API
    /// (`anthropic-version`, `anthropic-beta`).
    pub headers: Vec<(String, String)>,
    /// The `x-switchyard-order` header, if sent.
    pub order_header: Option<&'a str>,
}

impl<'a> ChatInput<'a> {
    /// A request to `api` with this body, no extra headers and no order.
    pub fn new(api: ClientFormat, body: &'a [u8]) -> ChatInput<'a> {
        ChatInput { api, body, headers: Vec::new(), order_header: None }
    }
}

/// The answer to a chat request: whole, or a stream to relay. Short-lived,
/// so the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum ChatReply<B> {
    Whole(Reply),
    /// `head` has the status and headers; the body comes from `stream`
    /// (at its first token), through a [`crate::stream::StreamDriver`].
    Stream {
        head: Reply,
        stream: Streaming<B>,
        /// How to continue the stream if it breaks, where the route allows.
        resume: Option<ContinuePlan>,
    },
}

/// A parsed request and its targets in the order to try them.
struct Prepared<'a> {
    /// Upstream attempts this request may make (less one if mirrored).
    budget: u32,
    /// The request's deadline (clock time).
    deadline_ms: u64,
    req: ChatRequest,
    api: ClientFormat,
    route: &'a Route,
    order: Vec<usize>,
    forced: bool,
}

/// Handles `POST /v1/chat/completions`. Fills `log` as it goes; for a
/// stream, the log line is finished by [`end_stream`].
pub async fn chat<C: Clock + Clone, U: Upstream, R: Rng, M: MirrorLink>(
    gw: &Gateway,
    input: ChatInput<'_>,
    log: &mut RequestLog,
    w: &mut World<'_, C, U, R, M>,
) -> ChatReply<U::Body> {
    let started = w.clock.now_ms();
    log.started_ms = started;
    let reply = match prepare(gw, &input, log, w.clock, w.rng) {
        Err(reply) => ChatReply::Whole(reply),
        Ok(mut p) => {
            if let Some(job) = mirroring::job(gw, p.route, &p.req, w.clock.now_ms(), w.rng) {
                // The mirror is one more subrequest: it comes out of the attempt budget.
                p.budget = p.budget.saturating_sub(1).max(1);
                w.mirror.start(job);
                log.mirrored = true;
            }
            if p.req.is_stream() {
                chat_stream(gw, p, log, w).await
            } else {
                ChatReply::Whole(chat_whole(gw, p, log, w).await)
            }
        }
    };
    let reply = match reply {
        ChatReply::Whole(r) => ChatReply::Whole(shaped(input.api, r)),
        other => other,
    };
    log.status = match &reply {
        ChatReply::Whole(r) => r.status,
        ChatReply::Stream { head, .. } => head.status,
    };
    log.latency_ms = w.clock.now_ms().saturating_sub(started);
    reply
}

/// Parses the request and chooses the targets, in order.
fn prepare<'a, C: Clock, R: Rng>(
    gw: &'a Gateway,
    input: &ChatInput<'_>,
    log: &mut RequestLog,
    clock: &C,
    rng: &mut R,
) -> Result<Prepared<'a>, Reply> {
    let req = match input.api {
        ClientFormat::Chat => ChatRequest::parse(input.body),
        ClientFormat::Messages => crate::inbound::messages::parse(input.body, input.headers.clone()),
        ClientFormat::Responses => crate::inbound::responses::parse(input.body),
    }
    .map_err(|e| client_error(e, log))?;
    let route = find_route(gw, &req.model, log)?;
    log.stream = req.is_stream();
    if gw.config.log_prompts {
        log.prompt = req.messages.last().and_then(|m| m.content.as_ref()).map(|c| c.text());
    }
    let header_order: Option<Vec<String>> =
        input.order_header.map(|h| h.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect());
    let client_order = req.gateway.as_ref().and_then(|g| g.order.clone()).or(header_order);
    let needs = Needs::of(&req);
    let format = |t: &Target| gw.config.provider_of(t).format;
    let mut eligible =
        selection::eligible(route, format, &needs, client_order.as_deref()).map_err(|e| client_error(e, log))?;
    if let Some(field) = native_only(route, &req) {
        // Only a target of the client's own API can serve this request.
        let api = req.native.as_ref().and_then(|n| n.api);
        eligible
            .retain(|&i| route.targets.get(i).is_some_and(|t| Wire::of(gw.config.provider_of(t), api).native() == api));
        if eligible.is_empty() {
            let e = ApiError::invalid_param(
                field.0,
                format!(
                    "route `{}` has no target that serves {} natively, which `{}` needs",
                    route.name, field.1, field.0
                ),
            )
            .with_code("unsupported_parameter");
            return Err(client_error(e, log));
        }
    }
    let now = clock.now_ms();
    let states = gw.states();
    let provider = |i: usize| route.targets.get(i).map_or(usize::MAX, |t| t.provider);
    let order = selection::order(
        route,
        eligible,
        |i| states.effective_failures(provider(i), now),
        client_order.is_some(),
        &needs,
        rng,
    );
    let (order, forced) = selection::keep_available(
        order,
        |i| states.availability(provider(i), now),
        |i| states.record(provider(i)).last_failure_ms,
        gw.config.when_all_unavailable,
    );
    drop(states);
    log.forced = forced;
    let mut states = gw.states_mut();
    if !states.budget_request(forced, now) {
        // Every target is unavailable and the budget for trying anyway is spent.
        let retry_at = states.unavailable_until(order.iter().map(|&i| provider(i)), now);
        let reply = crate::budget::unavailable_reply(retry_at, now);
        log.forced = false;
        log.outcome = Some(Outcome::Exhausted);
        log.error = Some("every target unavailable and the retry budget spent: no attempt made".into());
        return Err(reply);
    }
    drop(states);
    let deadline_ms = now + route.policy.deadline_ms;
    Ok(Prepared { budget: route.policy.max_attempts, deadline_ms, req, api: input.api, route, order, forced })
}

fn plan<'a>(gw: &'a Gateway, p: &'a Prepared<'a>) -> Plan<'a> {
    Plan {
        config: &gw.config,
        route: p.route,
        order: &p.order,
        request: &p.req,
        keys: gw.provider_keys(),
        states: gw.states_cell(),
        forced: p.forced,
        max_attempts: p.budget,
        deadline_ms: p.deadline_ms,
    }
}

async fn chat_whole<C: Clock, U: Upstream, R: Rng, M: MirrorLink>(
    gw: &Gateway,
    p: Prepared<'_>,
    log: &mut RequestLog,
    w: &mut World<'_, C, U, R, M>,
) -> Reply {
    let started = w.clock.now_ms();
    let finish = ChatFinish {
        now_s: started / 1000,
        client: p.api,
        native: p.req.native.as_ref().and_then(|n| n.api),
        namespaced: p.req.native.as_ref().map(|n| n.namespaced_tools.clone()).unwrap_or_default(),
    };
    let mut accept = ReadWhole { max_bytes: gw.config.security.max_answer_bytes, finish: &finish };
    let d = dispatch::dispatch(&plan(gw, &p), w.clock, w.upstream, w.rng, &mut accept).await;
    let route = p.route;
    let mut reply = match d.outcome {
        Dispatched::Served { target, output } => {
            let provider = route.targets.get(target).map(|t| gw.config.provider_of(t));
            log.outcome = Some(Outcome::Ok);
            log.provider = provider.map(|p| p.name.clone());
            log.model = Some(output.model.clone());
            let cost = route.targets.get(target).map(|t| t.cost).filter(crate::usage::priced);
            log.cost_usd = cost.zip(output.usage.as_ref()).map(|(c, u)| crate::usage::cost_usd(u, &c));
            log.usage = output.usage;
            let mut answer = output.answer;
            answer.latency_ms = w.clock.now_ms().saturating_sub(started);
            log.answer = Some(answer);
            let mut r = Reply::json(200, output.body);
            r.headers.push((HEADER_PROVIDER, provider.map(|p| p.name.clone()).unwrap_or_default()));
            r.headers.push((HEADER_MODEL, header_value(&output.model)));
            if let Some(dropped) = provider.and_then(|pc| dropped_tools(pc, &p.req)) {
                log.dropped_tools = Some(dropped.clone());
                r.headers.push((HEADER_DROPPED_TOOLS, dropped));
            }
            if let Some(c) = log.cost_usd {
                r.headers.push((crate::http::HEADER_COST, crate::usage::header(c)));
            }
            r
        }
        Dispatched::Exhausted if log.mirrored => match mirroring::serve(w.mirror, log).await {
            Some(mirroring::Served { completion, body, mut headers }) => {
                let body = in_client_format(p.api, &p.req, &completion, body);
                let mut r = Reply::json(200, body);
                r.headers.append(&mut headers);
                r
            }
            None => failure_reply(Dispatched::<()>::Exhausted, &d.attempts, log),
        },
        other => failure_reply(other, &d.attempts, log),
    };
    reply.headers.push((HEADER_ATTEMPTS, d.attempts.len().to_string()));
    reply.headers.push((HEADER_ROUTE, route.name.clone()));
    log.attempts = d.attempts;
    reply
}

async fn chat_stream<C: Clock + Clone, U: Upstream, R: Rng, M: MirrorLink>(
    gw: &Gateway,
    p: Prepared<'_>,
    log: &mut RequestLog,
    w: &mut World<'_, C, U, R, M>,
) -> ChatReply<U::Body> {
    let now = w.clock.now_ms();
    let policy = p.route.policy;
    let sec = &gw.config.security;
    let spec = StreamSpec {
        client: p.api,
        id: format!("{}{}", p.api.id_prefix(), log.request_id.strip_prefix("sy-").unwrap_or(&log.request_id)),
        created: now / 1000,
        include_usage: p.req.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false),
        choices: p.req.choices(),
        idle_timeout_ms: policy.stream_idle_timeout_ms,
        deadline_ms: p.deadline_ms,
        max_event_bytes: usize::try_from(sec.max_stream_event_bytes).unwrap_or(usize::MAX),
        max_text_bytes: usize::try_from(sec.max_answer_bytes).unwrap_or(usize::MAX),
        namespaced: p.req.native.as_ref().map(|n| n.namespaced_tools.clone()).unwrap_or_default(),
    };
    let mut accept = StreamAccept { clock: w.clock.clone(), spec };
    let d = dispatch::dispatch(&plan(gw, &p), w.clock, w.upstream, w.rng, &mut accept).await;
    let route = p.route;
    let attempts = d.attempts.len().to_string();
    match d.outcome {
        Dispatched::Served { target, output } => {
            let Some(t) = route.targets.get(target) else {
                return ChatReply::Whole(unreachable_reply());
            };
            let provider = gw.config.provider_of(t);
            log.outcome = Some(Outcome::Ok);
            log.provider = Some(provider.name.clone());
            log.model = Some(t.model.clone());
            log.attempts = d.attempts;
            let mut headers = vec![
                ("content-type", "text/event-stream; charset=utf-8".to_owned()),
                ("cache-control", "no-cache".to_owned()),
                (HEADER_PROVIDER, provider.name.clone()),
                (HEADER_MODEL, header_value(&t.model)),
                (HEADER_ATTEMPTS, attempts),
                (HEADER_ROUTE, route.name.clone()),
            ];
            if let Some(dropped) = dropped_tools(provider, &p.req) {
                log.dropped_tools = Some(dropped.clone());
                headers.push((HEADER_DROPPED_TOOLS, dropped));
            }
            let used = log.attempts.len() as u32 + u32::from(log.mirrored);
            let resume = continuation::plan(&gw.config, route, &p.req, &p.order, target, used, p.deadline_ms);
            ChatReply::Stream { head: Reply { status: 200, headers, body: String::new() }, stream: output, resume }
        }
        Dispatched::Exhausted if log.mirrored && mirroring::answered(w.mirror).await => {
            let Some(mirroring::Served { completion: c, body, mut headers }) = mirroring::serve(w.mirror, log).await
            else {
                return ChatReply::Whole(failure_reply(Dispatched::<()>::Exhausted, &d.attempts, log));
            };
            // The client asked for a stream: the mirror's whole answer, as one.
            headers.push(("content-type", "text/event-stream; charset=utf-8".to_owned()));
            headers.push((HEADER_ATTEMPTS, attempts));
            headers.push((HEADER_ROUTE, route.name.clone()));
            log.attempts = d.attempts;
            let body = match p.api {
                ClientFormat::Chat => crate::stream::completion_as_sse(&body),
                api => {
                    let names = crate::inbound::StreamNames {
                        id: c.id.clone(),
                        created: c.created,
                        model: c.model.clone(),
                        include_usage: false,
                        namespaced: p.req.native.as_ref().map(|n| n.namespaced_tools.clone()).unwrap_or_default(),
                    };
                    crate::inbound::replay(api, &c, names)
                }
            };
            ChatReply::Whole(Reply { status: 200, headers, body })
        }
        other => {
            let mut reply = failure_reply(other, &d.attempts, log);
            reply.headers.push((HEADER_ATTEMPTS, attempts));
            reply.headers.push((HEADER_ROUTE, route.name.clone()));
            log.attempts = d.attempts;
            ChatReply::Whole(reply)
        }
    }
}

/// A relayed stream has ended: count its mid-stream failures against their
/// providers and complete the request's log line (with the continuation's
/// attempts, if any).
pub fn end_stream(gw: &Gateway, relay: &Relay, continuation: Vec<AttemptRecord>, log: &mut RequestLog, now: u64) {
    {
        let mut states = gw.states_mut();
        for &(provider, kind) in &relay.failed_providers {
            if kind.counts_as_provider_failure() {
                states.record_failure(provider, kind, now);
            }
        }
    }
    if let Some(last) = relay.continued_on.last() {
        // The answer finished on the continuation's target.
        if let Some(t) =
            log.route.as_deref().and_then(|r| gw.config.route(r)).and_then(|r| r.targets.iter().find(|t| &t.id == last))
        {
            log.provider = Some(gw.config.provider_of(t).name.clone());
            log.model = Some(t.model.clone());
        }
    }
    let usage = relay.usage().cloned();
    if *relay.state() == State::Complete {
        log.answer = Some(Answer {
            provider: log.provider.clone().unwrap_or_default(),
            model: log.model.clone().unwrap_or_default(),
            text: relay.text().to_owned(),
            tool_calls: Some(relay.tool_calls().to_vec()),
            finish_reason: relay.finish_reason().map(str::to_owned),
            usage: usage.clone(),
            latency_ms: now.saturating_sub(log.started_ms),
            cost: usage.as_ref().map(|u| crate::mirror::cost_of(u, &target_cost(gw, log))),
        });
    }
    log.stream_chunks = Some(relay.chunks);
    log.stream_malformed = relay.malformed;
    log.usage = usage.or(log.usage.take());
    let cost = target_cost(gw, log);
    if crate::usage::priced(&cost) {
        log.cost_usd = log.usage.as_ref().map(|u| crate::usage::cost_usd(u, &cost));
    }
    log.continued_on = relay.continued_on.clone();
    log.attempts.extend(continuation);
    match relay.state() {
        State::Failed(e) | State::Broken(e) => {
            if log.outcome != Some(Outcome::ClientClosed) {
                log.outcome = Some(Outcome::StreamFailed);
            }
            log.error = Some(format!("{}: {}", e.kind.as_str(), e.message));
        }
        State::Complete if !relay.continued_on.is_empty() => log.outcome = Some(Outcome::OkContinued),
        _ => {}
    }
}

/// The configured prices of the target that served, for cost figures.
fn target_cost(gw: &Gateway, log: &RequestLog) -> Cost {
    let route = log.route.as_deref().and_then(|r| gw.config.route(r));
    route
        .and_then(|r| {
            r.targets.iter().find(|t| {
                Some(t.model.as_str()) == log.model.as_deref()
                    && Some(gw.config.provider_of(t).name.as_str()) == log.provider.as_deref()
            })
        })
        .map(|t| t.cost)
        .unwrap_or_default()
}

/// The route a request names (by name or alias), if the caller may use it.
pub(crate) fn find_route<'a>(gw: &'a Gateway, model: &str, log: &mut RequestLog) -> Result<&'a Route, Reply> {
    let Some(route) = gw.config.route(model) else {
        let names: Vec<&str> = gw.config.routes.iter().map(|r| r.name.as_str()).collect();
        let mut e = ApiError::not_found(format!(
            "The model `{model}` does not exist on this gateway. Available: {}",
            crate::text::join(&names, ", ")
        ))
        .with_code("model_not_found");
        e.param = Some("model".into());
        return Err(client_error(e, log));
    };
    log.route = Some(route.name.clone());
    if let Some(caller) = &log.caller {
        if !caller.allows(&route.name) {
            let e = ApiError::new(
                403,
                "permission_error",
                format!("the key `{}` may not use the model `{}`", caller.name(), route.name),
            )
            .with_code("model_not_allowed");
            return Err(client_error(e, log));
        }
    }
    Ok(route)
}

/// The reply when no target served: the provider's refusal, the client's
/// mistake, or the list of failed attempts.
pub(crate) fn failure_reply<T>(outcome: Dispatched<T>, attempts: &[AttemptRecord], log: &mut RequestLog) -> Reply {
    // The answer itself is never needed here: one body for every kind.
    unserved_reply(outcome.map_output(|_| Some(())), attempts, log)
}

fn unserved_reply(outcome: Dispatched<()>, attempts: &[AttemptRecord], log: &mut RequestLog) -> Reply {
    match outcome {
        Dispatched::Served { .. } => unreachable_reply(),
        Dispatched::ToClient { status, error } => {
            log.outcome = Some(Outcome::UpstreamRefused);
            let last = attempts.last();
            let who = last.map_or(String::new(), |a| format!("{} ({}): ", a.provider, a.model));
            let status = if (400..500).contains(&status) { status } else { 400 };
            let mut e = ApiError::invalid(format!("{who}{}", error.message)).with_code(error.kind.as_str());
            e.status = status;
            if let Some(a) = last {
                log.provider = Some(a.provider.clone());
            }
            e.attempts = Some(attempts_json(attempts, true));
            log.error = Some(e.message.clone());
            Reply::error(&e)
        }
        Dispatched::Rejected(e) => {
            log.outcome = Some(Outcome::ClientError);
            log.error = Some(e.message.clone());
            Reply::error(&e)
        }
        Dispatched::Exhausted => {
            log.outcome = Some(Outcome::Exhausted);
            Reply::error(&exhausted_error(attempts))
        }
    }
}

fn unreachable_reply() -> Reply {
    Reply::error(&ApiError::new(500, "server_error", "internal error: a served outcome reached the failure path"))
}

pub(crate) fn client_error(e: ApiError, log: &mut RequestLog) -> Reply {
    log.outcome = Some(Outcome::ClientError);
    log.error = Some(e.message.clone());
    Reply::error(&e)
}

/// The error when every attempt failed: 504 when they all timed out, 503 when
/// providers were overloaded or rate limited, 502 otherwise; with the list of
/// attempts.
pub fn exhausted_error(attempts: &[AttemptRecord]) -> ApiError {
    let kinds: Vec<ErrorKind> = attempts.iter().filter_map(|a| a.kind).collect();
    let status = if !kinds.is_empty() && kinds.iter().all(|k| *k == ErrorKind::Timeout) {
        504
    } else if kinds.iter().any(|k| matches!(k, ErrorKind::RateLimited | ErrorKind::Overloaded)) {
        503
    } else {
        502
    };
    let summary: Vec<String> = attempts
        .iter()
        .map(|a| {
            let kind = a.kind.map_or("ok", |k| k.as_str());
            match a.status {
                Some(s) => format!("{} {kind} (HTTP {s})", a.target),
                None => format!("{} {kind}", a.target),
            }
        })
        .collect();
    let message = if attempts.is_empty() {
        "no upstream attempt could be made within the request's bounds".to_owned()
    } else {
        format!("all {} upstream attempts failed: {}", attempts.len(), crate::text::join(&summary, "; "))
    };
    let mut e = ApiError::new(status, if status == 504 { "timeout_error" } else { "upstream_error" }, message);
    e.code = Some("all_providers_failed".into());
    e.attempts = Some(attempts_json(attempts, true));
    e
}

/// How a chat answer read whole becomes the client's: parsed in the
/// gateway's terms (for the log and the mirror), and written in the
/// client's format (passed on untouched where the target spoke it).
struct ChatFinish {
    now_s: u64,
    /// The API the client called: the answer is written in its shape.
    client: ClientFormat,
    /// The request's own API, for a target that speaks it.
    native: Option<NativeApi>,
    namespaced: Vec<(String, String, String)>,
}

impl Finish for ChatFinish {
    fn finish(&self, target: &Target, provider: &ProviderConfig, text: String) -> Result<Completion, UpstreamError> {
        let wire = Wire::of(provider, self.native);
        let mut c = wire.parse(provider.format, &text, self.now_s)?;
        if c.model.is_empty() {
            c.model = target.model.clone();
        }
        let same = match self.client {
            ClientFormat::Chat => wire == Wire::Chat,
            _ => wire.native().is_some() && wire.native() == self.native,
        };
        let body = if same {
            // Already the client's format: pass it on untouched, every field kept.
            text
        } else if let Some(body) = self.client.render(&c, &self.namespaced) {
            body
        } else {
            serde_json::to_string(&c).map_err(|e| UpstreamError::new(ErrorKind::Malformed, e.to_string()))?
        };
        let answer = crate::mirror::answer_of(&c, &provider.name, target, 0);
        Ok(Completion { body, model: c.model, usage: c.usage, answer })
    }
}

/// A reply in the shape of the API the client called: error bodies are
/// written as that API writes them.
fn shaped(api: ClientFormat, mut r: Reply) -> Reply {
    if r.status >= 400 {
        if let Some(body) = api.error_body(r.status, &r.body) {
            r.body = body;
        }
    }
    r
}

/// The mirror's answer in the client's format: its OpenAI `body` as it is,
/// or the completion rendered in the client's API.
fn in_client_format(api: ClientFormat, req: &ChatRequest, c: &ChatCompletion, body: String) -> String {
    let namespaced = req.native.as_ref().map(|n| n.namespaced_tools.as_slice()).unwrap_or_default();
    api.render(c, namespaced).unwrap_or(body)
}

/// Why only a target of the client's own API may serve the request, if it
/// must: (the field, what it needs).
fn native_only(route: &Route, req: &ChatRequest) -> Option<(&'static str, &'static str)> {
    let native = req.native.as_deref()?;
    let what = match native.api {
        Some(NativeApi::Responses) => "the Responses API",
        Some(NativeApi::Messages) => "the Messages API",
        None => return None,
    };
    if native.api == Some(NativeApi::Responses) {
        if let Some(field) = crate::inbound::responses::stateful_field(native) {
            return Some((field, what));
        }
    }
    if !native.hosted_tools.is_empty() && route.hosted_tools == crate::config::HostedTools::Reject {
        return Some(("tools", what));
    }
    None
}

/// The hosted tools left out of the request for `provider` (which cannot
/// run them), for the client to see.
fn dropped_tools(provider: &ProviderConfig, req: &ChatRequest) -> Option<String> {
    let native = req.native.as_deref()?;
    if native.hosted_tools.is_empty() || Wire::of(provider, native.api).native() == native.api {
        return None;
    }
    Some(header_value(&crate::text::join(&native.hosted_tools, ",")))
}
