//! The gateway's request handling, from a parsed HTTP request to a reply,
//! independent of the Workers runtime: the edge hands in the body and the
//! world (clock, upstream, randomness) and writes out the [`Reply`].

use crate::api::{ApiError, ChatRequest, Usage};
use crate::auth::{GatewayKeys, KeyEntry};
use crate::clock::Clock;
use crate::config::{Config, ProviderConfig, Target};
use crate::dispatch::{self, Accept, AttemptRecord, Outcome, Plan};
use crate::log::{attempts_json, RequestLog};
use crate::mirror::{Answer, MirrorJob, MirrorLedger, MirrorLink, MirrorResult, MirrorStats};
use crate::providers::{self, Format};
use crate::rng::Rng;
use crate::selection::{self, Needs};
use crate::state::ProviderStates;
use crate::stream::{Relay, Resume, Resumed, StreamAccept, StreamOutcome};
use crate::taxonomy::{ErrorKind, UpstreamError};
use crate::upstream::{TransportError, Upstream, UpstreamBody, UpstreamHead};
use serde_json::json;
use std::cell::RefCell;
use std::collections::HashMap;

pub const HEADER_PROVIDER: &str = "x-switchyard-provider";
pub const HEADER_MODEL: &str = "x-switchyard-model";
pub const HEADER_ATTEMPTS: &str = "x-switchyard-attempts";
pub const HEADER_ROUTE: &str = "x-switchyard-route";
pub const HEADER_REQUEST_ID: &str = "x-request-id";
/// Set to `served` when the mirror's answer was served because the primary failed.
pub const HEADER_MIRROR: &str = "x-switchyard-mirror";
/// A client's own fallback order, as a comma-separated list of target ids.
pub const HEADER_ORDER: &str = "x-switchyard-order";

/// What the edge writes back.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, body: String) -> Reply {
        Reply { status, headers: Vec::new(), body }
    }
    pub fn error(e: &ApiError) -> Reply {
        Reply::json(e.status, e.to_json())
    }
}

/// Which handler a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Models,
    Health,
    /// Provider health, circuits and weights; behind the admin key.
    Status,
    /// Mirror comparison aggregates; behind the admin key.
    Mirror,
    /// A CORS preflight (`OPTIONS`) on a known path.
    Preflight,
    NotFound,
    /// The path exists but not for this method; carries the allowed methods.
    MethodNotAllowed(&'static str),
}

pub fn endpoint(method: &str, path: &str) -> Endpoint {
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    const KNOWN: [&str; 5] = ["/v1/chat/completions", "/v1/models", "/v1/status", "/v1/mirror", "/healthz"];
    if method == "OPTIONS" && KNOWN.contains(&path) {
        return Endpoint::Preflight;
    }
    match (path, method) {
        ("/v1/chat/completions", "POST") => Endpoint::Chat,
        ("/v1/chat/completions", _) => Endpoint::MethodNotAllowed("POST"),
        ("/v1/models", "GET" | "HEAD") => Endpoint::Models,
        ("/v1/models", _) => Endpoint::MethodNotAllowed("GET"),
        ("/v1/status", "GET") => Endpoint::Status,
        ("/v1/mirror", "GET") => Endpoint::Mirror,
        ("/v1/mirror", _) => Endpoint::MethodNotAllowed("GET"),
        ("/v1/status", _) => Endpoint::MethodNotAllowed("GET"),
        ("/healthz", "GET" | "HEAD") => Endpoint::Health,
        ("/healthz", _) => Endpoint::MethodNotAllowed("GET"),
        _ => Endpoint::NotFound,
    }
}

/// Configuration, keys and provider state for one isolate.
pub struct Gateway {
    pub config: Config,
    /// API key per provider, read from Worker secrets once per isolate.
    keys: Vec<Option<String>>,
    pub states: RefCell<ProviderStates>,
    models_body: String,
    admin_key: Option<String>,
    /// Mirror comparison sums not yet written to the store.
    pub mirror_ledger: RefCell<MirrorLedger>,
    /// Gateway keys from the Worker secret, or why they could not be read.
    gateway_keys: Result<GatewayKeys, String>,
    /// KV key look-ups, cached for a minute (unknown keys too).
    key_cache: RefCell<HashMap<String, (Option<KeyEntry>, u64)>>,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    Anonymous,
    Key(KeyEntry),
}

impl Caller {
    /// The key's name (never the key), or `anonymous`.
    pub fn name(&self) -> &str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::Key(k) => &k.name,
        }
    }
    pub fn allows(&self, route: &str) -> bool {
        match self {
            Caller::Anonymous => true,
            Caller::Key(k) => k.allows(route),
        }
    }
}

/// The outcome of checking a request's gateway key.
#[derive(Debug)]
pub enum KeyCheck {
    Admitted(Caller),
    /// Not in the secret: look this hash up in KV, then [`Gateway::admit_from_kv`].
    LookUp(String),
    Refused(Reply),
}

/// How long a KV key look-up is trusted (revocation takes this long, plus KV's own propagation).
pub const KEY_CACHE_MS: u64 = 60_000;
const KEY_CACHE_MAX: usize = 1_000;

/// The Worker secret holding the admin key for `/v1/status`.
pub const ADMIN_KEY_SECRET: &str = "ADMIN_KEY";

impl Gateway {
    /// `secret(name)` looks a Worker secret up.
    pub fn new(config: Config, secret: impl Fn(&str) -> Option<String>) -> Gateway {
        let keys = config
            .providers
            .iter()
            .map(|p| p.key_secret.as_deref().and_then(&secret).filter(|k| !k.is_empty()))
            .collect();
        let states = RefCell::new(ProviderStates::new(
            config.providers.iter().map(|p| p.name.clone()).collect(),
            config.state,
            config.breaker,
            config.health,
        ));
        let models_body = json!({
            "object": "list",
            "data": config.routes.iter().map(|r| json!({
                "id": r.name,
                "object": "model",
                "created": 0,
                "owned_by": "switchyard",
            })).collect::<Vec<_>>(),
        })
        .to_string();
        let admin_key = secret(ADMIN_KEY_SECRET).filter(|k| !k.is_empty());
        let gateway_keys = match secret(&config.security.keys_secret) {
            None => Ok(GatewayKeys::default()),
            Some(json) => GatewayKeys::parse(&json)
                .map_err(|e| format!("the `{}` secret is not a valid key list: {e}", config.security.keys_secret)),
        };
        Gateway {
            config,
            keys,
            states,
            models_body,
            admin_key,
            mirror_ledger: RefCell::default(),
            gateway_keys,
            key_cache: RefCell::default(),
        }
    }

    /// Provider `idx`'s API key, for building its requests.
    pub(crate) fn key(&self, idx: usize) -> Option<&str> {
        self.keys.get(idx).and_then(|k| k.as_deref())
    }

    /// Whether provider `idx` has its API key (never the key itself).
    pub fn has_key(&self, idx: usize) -> bool {
        self.keys.get(idx).is_some_and(Option::is_some)
    }

    /// Checks a request's gateway key (`Authorization: Bearer sy_...`).
    pub fn check_key(&self, authorization: Option<&str>, now: u64) -> KeyCheck {
        let sec = &self.config.security;
        let Some(token) = crate::auth::bearer(authorization) else {
            if sec.anonymous {
                return KeyCheck::Admitted(Caller::Anonymous);
            }
            return KeyCheck::Refused(unauthorized(
                "this gateway needs a key: send `Authorization: Bearer <gateway key>`",
            ));
        };
        let keys = match &self.gateway_keys {
            Ok(k) => k,
            Err(e) => {
                return KeyCheck::Refused(Reply::error(
                    &ApiError::new(500, "configuration_error", e.clone()).with_code("invalid_config"),
                ))
            }
        };
        if !crate::auth::well_formed(token) {
            return self.unknown_key();
        }
        let hash = crate::auth::hash_key(token);
        if let Some(e) = keys.find(&hash) {
            return KeyCheck::Admitted(Caller::Key(e.clone()));
        }
        if !sec.kv_keys {
            return self.unknown_key();
        }
        match self.key_cache.borrow().get(&hash) {
            Some((entry, at)) if now.saturating_sub(*at) < KEY_CACHE_MS => match entry {
                Some(e) if !e.revoked => KeyCheck::Admitted(Caller::Key(e.clone())),
                _ => self.unknown_key(),
            },
            _ => KeyCheck::LookUp(hash),
        }
    }

    /// A bearer token that is no gateway key: refused, unless anonymous
    /// access is on (then it grants what no key grants, and nothing more;
    /// OpenAI SDKs always send some key).
    fn unknown_key(&self) -> KeyCheck {
        if self.config.security.anonymous {
            KeyCheck::Admitted(Caller::Anonymous)
        } else {
            KeyCheck::Refused(unauthorized("invalid gateway key"))
        }
    }

    /// Finishes a KV key look-up: `stored` is the KV value for the hash.
    pub fn admit_from_kv(&self, hash: &str, stored: Option<&str>, now: u64) -> KeyCheck {
        let entry = stored
            .and_then(|t| serde_json::from_str::<KeyEntry>(t).ok())
            .filter(|e| crate::auth::constant_time_eq(e.sha256.to_ascii_lowercase().as_bytes(), hash.as_bytes()));
        {
            let mut cache = self.key_cache.borrow_mut();
            if cache.len() >= KEY_CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash.to_owned(), (entry.clone(), now));
        }
        match entry {
            Some(e) if !e.revoked => KeyCheck::Admitted(Caller::Key(e)),
            _ => self.unknown_key(),
        }
    }

    /// Checks the admin key on an admin endpoint; `Err` is the reply to send.
    pub fn authorize_admin(&self, authorization: Option<&str>) -> Result<(), Reply> {
        let Some(expected) = &self.admin_key else {
            return Err(Reply::error(
                &ApiError::new(403, "permission_error", "admin endpoints are off: set the ADMIN_KEY Worker secret")
                    .with_code("admin_disabled"),
            ));
        };
        match crate::auth::bearer(authorization) {
            Some(token) if crate::auth::constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
            _ => {
                let mut r = Reply::error(
                    &ApiError::new(401, "authentication_error", "this endpoint needs the admin key as a bearer token")
                        .with_code("invalid_admin_key"),
                );
                r.headers.push(("www-authenticate", "Bearer".to_owned()));
                Err(r)
            }
        }
    }

    /// `GET /v1/status`: every provider's health, circuit, failure count and
    /// last probe, and every route's effective weights; and the KV reads and
    /// writes this isolate has made (`kv_ops`). No secrets.
    pub fn status(&self, now: u64, kv_ops: (u64, u64)) -> Reply {
        let states = self.states.borrow();
        let providers: Vec<serde_json::Value> = self
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
                    "key_configured": p.key_secret.is_none() || self.has_key(i),
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
        let routes: Vec<serde_json::Value> = self
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
                        })
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        Reply::json(
            200,
            json!({"now_ms": now, "providers": providers, "routes": routes, "kv_ops": {"reads": kv_ops.0, "writes": kv_ops.1, "scope": "this isolate since it started"}}).to_string(),
        )
    }

    pub fn models(&self) -> Reply {
        Reply::json(200, self.models_body.clone())
    }

    /// Handles `POST /v1/chat/completions`. Fills `log` as it goes; for a
    /// stream, the log line is finished by [`Gateway::end_stream`].
    #[allow(clippy::too_many_arguments)]
    pub async fn chat<C: Clock + Clone, U: Upstream, R: Rng, M: MirrorLink>(
        &self,
        body: &[u8],
        order_header: Option<&str>,
        log: &mut RequestLog,
        clock: &C,
        upstream: &U,
        rng: &mut R,
        mirror: &M,
    ) -> ChatReply<U::Body, C> {
        let started = clock.now_ms();
        log.started_ms = started;
        let reply = match self.prepare(body, order_header, log, clock, rng) {
            Err(reply) => ChatReply::Whole(reply),
            Ok(mut p) => {
                if let Some(job) = self.mirror_job(&p, clock.now_ms(), rng) {
                    // The mirror is one more subrequest: it comes out of the attempt budget.
                    p.budget = p.budget.saturating_sub(1).max(1);
                    mirror.start(job);
                    log.mirrored = true;
                }
                if p.req.is_stream() {
                    self.chat_stream(p, log, clock, upstream, rng, mirror).await
                } else {
                    ChatReply::Whole(self.chat_whole(p, log, clock, upstream, rng, mirror).await)
                }
            }
        };
        log.status = match &reply {
            ChatReply::Whole(r) => r.status,
            ChatReply::Stream { head, .. } => head.status,
        };
        log.latency_ms = clock.now_ms().saturating_sub(started);
        reply
    }

    /// Parses the request and chooses the targets, in order.
    fn prepare<'a, C: Clock, R: Rng>(
        &'a self,
        body: &[u8],
        order_header: Option<&str>,
        log: &mut RequestLog,
        clock: &C,
        rng: &mut R,
    ) -> Result<Prepared<'a>, Reply> {
        let req = ChatRequest::parse(body).map_err(|e| client_error(e, log))?;
        let Some(route) = self.config.route(&req.model) else {
            let names: Vec<&str> = self.config.routes.iter().map(|r| r.name.as_str()).collect();
            let mut e = ApiError::not_found(format!(
                "The model `{}` does not exist on this gateway. Available: {}",
                req.model,
                names.join(", ")
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
        log.stream = req.is_stream();
        if self.config.log_prompts {
            log.prompt = req.messages.last().and_then(|m| m.content.as_ref()).map(|c| c.text());
        }
        let header_order: Option<Vec<String>> =
            order_header.map(|h| h.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect());
        let client_order = req.gateway.as_ref().and_then(|g| g.order.clone()).or(header_order);
        let needs = Needs::of(&req);
        let eligible = selection::eligible(route, &needs, client_order.as_deref()).map_err(|e| client_error(e, log))?;
        let now = clock.now_ms();
        let states = self.states.borrow();
        let provider = |i: usize| route.targets[i].provider;
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
            self.config.when_all_unavailable,
        );
        log.forced = forced;
        Ok(Prepared { budget: route.policy.max_attempts, req, route, order, forced })
    }

    fn plan<'a>(&'a self, p: &'a Prepared<'a>) -> Plan<'a> {
        Plan {
            config: &self.config,
            route: p.route,
            order: &p.order,
            request: &p.req,
            keys: &self.keys,
            states: &self.states,
            forced: p.forced,
            max_attempts: p.budget,
        }
    }

    async fn chat_whole<C: Clock, U: Upstream, R: Rng, M: MirrorLink>(
        &self,
        p: Prepared<'_>,
        log: &mut RequestLog,
        clock: &C,
        upstream: &U,
        rng: &mut R,
        mirror: &M,
    ) -> Reply {
        let started = clock.now_ms();
        let mut accept = ReadWhole { now_s: started / 1000 };
        let d = dispatch::dispatch(&self.plan(&p), clock, upstream, rng, &mut accept).await;
        let route = p.route;
        let mut reply = match d.outcome {
            Outcome::Served { target, output } => {
                let t = &route.targets[target];
                let provider = self.config.provider_of(t);
                log.outcome = "ok";
                log.provider = Some(provider.name.clone());
                log.model = Some(output.model.clone());
                log.usage = output.usage;
                let mut answer = output.answer;
                answer.latency_ms = clock.now_ms().saturating_sub(started);
                log.answer = Some(answer);
                let mut r = Reply::json(200, output.body);
                r.headers.push((HEADER_PROVIDER, provider.name.clone()));
                r.headers.push((HEADER_MODEL, output.model));
                r
            }
            Outcome::Exhausted if log.mirrored => match self.mirror_answer(mirror, log).await {
                Some((body, mut headers)) => {
                    let mut r = Reply::json(200, body);
                    r.headers.append(&mut headers);
                    r
                }
                None => failure_reply(Outcome::<()>::Exhausted, &d.attempts, log),
            },
            other => failure_reply(other, &d.attempts, log),
        };
        reply.headers.push((HEADER_ATTEMPTS, d.attempts.len().to_string()));
        reply.headers.push((HEADER_ROUTE, route.name.clone()));
        log.attempts = d.attempts;
        reply
    }

    async fn chat_stream<C: Clock + Clone, U: Upstream, R: Rng, M: MirrorLink>(
        &self,
        p: Prepared<'_>,
        log: &mut RequestLog,
        clock: &C,
        upstream: &U,
        rng: &mut R,
        mirror: &M,
    ) -> ChatReply<U::Body, C> {
        let now = clock.now_ms();
        let policy = p.route.policy;
        let mut accept = StreamAccept {
            clock: clock.clone(),
            id: format!("chatcmpl-{}", log.request_id.trim_start_matches("sy-")),
            created: now / 1000,
            include_usage: p.req.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false),
            idle_timeout_ms: policy.stream_idle_timeout_ms,
        };
        let d = dispatch::dispatch(&self.plan(&p), clock, upstream, rng, &mut accept).await;
        let route = p.route;
        let attempts = d.attempts.len().to_string();
        match d.outcome {
            Outcome::Served { target, output } => {
                let t = &route.targets[target];
                let provider = self.config.provider_of(t);
                log.outcome = "ok";
                log.provider = Some(provider.name.clone());
                log.model = Some(t.model.clone());
                log.attempts = d.attempts;
                let headers = vec![
                    ("content-type", "text/event-stream; charset=utf-8".to_owned()),
                    ("cache-control", "no-cache".to_owned()),
                    (HEADER_PROVIDER, provider.name.clone()),
                    (HEADER_MODEL, t.model.clone()),
                    (HEADER_ATTEMPTS, attempts),
                    (HEADER_ROUTE, route.name.clone()),
                ];
                let used = log.attempts.len() as u32;
                let resume = self.continue_plan(&p, target, used, &accept);
                ChatReply::Stream { head: Reply { status: 200, headers, body: String::new() }, relay: output, resume }
            }
            Outcome::Exhausted if log.mirrored && self.mirror_answer_ready(mirror).await => {
                let Some((body, mut headers)) = self.mirror_answer(mirror, log).await else {
                    return ChatReply::Whole(failure_reply(Outcome::<()>::Exhausted, &d.attempts, log));
                };
                // The client asked for a stream: the mirror's whole answer, as one.
                headers.push(("content-type", "text/event-stream; charset=utf-8".to_owned()));
                headers.push((HEADER_ATTEMPTS, attempts));
                headers.push((HEADER_ROUTE, route.name.clone()));
                log.attempts = d.attempts;
                ChatReply::Whole(Reply { status: 200, headers, body: crate::stream::completion_as_sse(&body) })
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

    /// Decides whether this request is mirrored: the route has a mirror, the
    /// draw falls under its sample rate, and the mirror is not unavailable.
    fn mirror_job<R: Rng>(&self, p: &Prepared<'_>, now: u64, rng: &mut R) -> Option<MirrorJob> {
        let m = p.route.mirror.as_ref()?;
        if m.sample_rate <= 0.0 || rng.next_f64() >= m.sample_rate {
            return None;
        }
        if self.states.borrow().availability(m.target.provider, now) == selection::Availability::Down {
            return None;
        }
        let mut request = p.req.clone();
        request.stream = None;
        request.stream_options = None;
        Some(MirrorJob {
            route: p.route.name.clone(),
            target: m.target.clone(),
            request,
            key: self.key(m.target.provider).map(str::to_owned),
            deadline_ms: now + p.route.policy.deadline_ms,
        })
    }

    async fn mirror_answer_ready<M: MirrorLink>(&self, mirror: &M) -> bool {
        matches!(mirror.result().await, Some(MirrorResult::Answered { .. }))
    }

    /// The primary failed: serve the mirror's answer if it has one (waiting
    /// for it if it is still on its way).
    async fn mirror_answer<M: MirrorLink>(
        &self,
        mirror: &M,
        log: &mut RequestLog,
    ) -> Option<(String, Vec<(&'static str, String)>)> {
        match mirror.result().await? {
            MirrorResult::Answered { answer, body } => {
                log.outcome = "ok_from_mirror";
                log.provider = Some(answer.provider.clone());
                log.model = Some(answer.model.clone());
                log.usage = answer.usage.clone();
                let headers = vec![
                    (HEADER_PROVIDER, answer.provider.clone()),
                    (HEADER_MODEL, answer.model.clone()),
                    (HEADER_MIRROR, "served".to_owned()),
                ];
                Some((body, headers))
            }
            MirrorResult::Failed { .. } => None,
        }
    }

    /// The configured prices of the target that served, for cost figures.
    fn target_cost(&self, log: &RequestLog) -> crate::config::Cost {
        let route = log.route.as_deref().and_then(|r| self.config.route(r));
        route
            .and_then(|r| {
                r.targets.iter().find(|t| {
                    Some(t.model.as_str()) == log.model.as_deref()
                        && Some(self.config.provider_of(t).name.as_str()) == log.provider.as_deref()
                })
            })
            .map(|t| t.cost)
            .unwrap_or_default()
    }

    /// A mirror call ended: its outcome counts toward the mirror provider's
    /// health (a refusal of the request itself does not).
    pub fn mirror_finished(&self, job: &MirrorJob, r: &MirrorResult, now: u64) {
        let mut states = self.states.borrow_mut();
        match r {
            MirrorResult::Answered { .. } => states.record_success(job.target.provider, now),
            MirrorResult::Failed { kind, .. } if kind.counts_as_provider_failure() => {
                states.record_failure(job.target.provider, now)
            }
            MirrorResult::Failed { .. } => states.record_alive(job.target.provider, now),
        }
    }

    /// Compares a primary answer with its mirror's, adds the pair to the
    /// route's aggregates, and returns the pair's log line.
    pub fn mirror_pair(&self, request_id: &str, route: &str, primary: &Answer, m: &MirrorResult, now: u64) -> String {
        self.mirror_ledger.borrow_mut().add(route, primary, m, now);
        crate::mirror::pair_line(request_id, route, primary, m)
    }

    /// `GET /v1/mirror`: each mirrored route's aggregates, the shared totals
    /// (`shared`, read from the store) plus what this isolate has not
    /// written yet.
    pub fn mirror_report(&self, shared: &[(String, MirrorStats)]) -> Reply {
        let ledger = self.mirror_ledger.borrow();
        let routes: Vec<serde_json::Value> = self
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
        Reply::json(200, json!({ "routes": routes }).to_string())
    }

    /// Which targets may continue this stream if it breaks after content:
    /// those with the `prefill` capability, other than the one serving,
    /// within what is left of the attempt bound; `None` if the route does
    /// not allow it.
    fn continue_plan<C>(
        &self,
        p: &Prepared<'_>,
        served: usize,
        attempts_used: u32,
        accept: &StreamAccept<C>,
    ) -> Option<ContinuePlan> {
        let policy = &p.route.policy;
        if !policy.continue_on_failure {
            return None;
        }
        let budget = policy.max_attempts.saturating_sub(attempts_used) as usize;
        let candidates: Vec<usize> =
            p.order.iter().copied().filter(|&i| i != served && p.route.targets[i].caps.prefill).take(budget).collect();
        if candidates.is_empty() {
            return None;
        }
        let route = self.config.routes.iter().position(|r| r.name == p.route.name)?;
        Some(ContinuePlan {
            route,
            request: p.req.clone(),
            candidates,
            id: accept.id.clone(),
            created: accept.created,
            include_usage: accept.include_usage,
        })
    }

    /// A relayed stream has ended: count a mid-stream failure against its
    /// provider and complete the request's log line.
    pub fn end_stream<B, C: Clock, R>(&self, relay: &Relay<B, C, R>, log: &mut RequestLog, clock: &C) {
        let now = clock.now_ms();
        {
            let mut states = self.states.borrow_mut();
            for &(provider, kind) in &relay.failed_providers {
                if kind.counts_as_provider_failure() {
                    states.record_failure(provider, now);
                }
            }
        }
        if matches!(relay.outcome(), StreamOutcome::Complete) {
            log.answer = Some(Answer {
                provider: log.provider.clone().unwrap_or_default(),
                model: log.model.clone().unwrap_or_default(),
                text: relay.text.clone(),
                tool_calls: None,
                finish_reason: relay.finish_reason().map(str::to_owned),
                usage: relay.usage(),
                latency_ms: now.saturating_sub(log.started_ms),
                cost: relay.usage().map(|u| crate::mirror::cost_of(&u, &self.target_cost(log))),
            });
        }
        log.stream_chunks = Some(relay.chunks);
        log.stream_malformed = relay.malformed;
        log.usage = relay.usage().or(log.usage.take());
        log.continued_on = relay.continued_on.clone();
        match relay.outcome() {
            StreamOutcome::Failed(e) => {
                log.outcome = "stream_failed";
                log.error = Some(format!("{}: {}", e.kind.as_str(), e.message));
            }
            StreamOutcome::Complete if !relay.continued_on.is_empty() => log.outcome = "ok_continued",
            _ => {}
        }
    }
}

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

/// Continues a broken stream on the next prefill-capable target: the
/// request again, with the answer so far as a partial assistant message.
/// A target that refuses is passed over without a word to the client, who
/// gets the original failure if none continues.
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
            let t = &route.targets[ti];
            let now = self.clock.now_ms();
            if gw.states.borrow().availability(t.provider, now) == selection::Availability::Down {
                continue;
            }
            let provider = gw.config.provider_of(t);
            let mut req = self.plan.request.clone();
            req.messages.push(crate::api::Message {
                role: crate::api::Role::Assistant,
                content: Some(crate::api::Content::Text(prefill.to_owned())),
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
                        trimmed: partial[prefill.len()..].to_owned(),
                    });
                }
                Ok(head) if head.status >= 500 || head.status == 429 => {
                    gw.states.borrow_mut().record_failure(t.provider, self.clock.now_ms());
                }
                // A refusal (it cannot continue this) says nothing about its health.
                Ok(_) => {}
                Err(_) => gw.states.borrow_mut().record_failure(t.provider, self.clock.now_ms()),
            }
        }
        None
    }
}

/// A parsed request and its targets in the order to try them.
struct Prepared<'a> {
    /// Upstream attempts this request may make (less one if mirrored).
    budget: u32,
    req: ChatRequest,
    route: &'a crate::config::Route,
    order: Vec<usize>,
    forced: bool,
}

/// The answer to a chat request: whole, or a stream to relay. Short-lived,
/// so the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum ChatReply<B, C> {
    Whole(Reply),
    /// `head` has the status and headers; the body comes from `relay`.
    Stream {
        head: Reply,
        relay: Relay<B, C>,
        /// How to continue the stream if it breaks, where the route allows.
        resume: Option<ContinuePlan>,
    },
}

/// The reply when no target served: the provider's refusal, the client's
/// mistake, or the list of failed attempts.
fn failure_reply<T>(outcome: Outcome<T>, attempts: &[AttemptRecord], log: &mut RequestLog) -> Reply {
    match outcome {
        Outcome::Served { .. } => unreachable_reply(),
        Outcome::ToClient { status, error } => {
            log.outcome = "upstream_refused";
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
        Outcome::Rejected(e) => {
            log.outcome = "client_error";
            log.error = Some(e.message.clone());
            Reply::error(&e)
        }
        Outcome::Exhausted => {
            log.outcome = "exhausted";
            Reply::error(&exhausted_error(attempts))
        }
    }
}

fn unreachable_reply() -> Reply {
    Reply::error(&ApiError::new(500, "server_error", "internal error: a served outcome reached the failure path"))
}

/// Checks a chat request's content type and declared length before its body
/// is read: JSON only, and no larger than `max` bytes.
pub fn check_body_headers(content_type: Option<&str>, content_length: Option<&str>, max: u64) -> Option<ApiError> {
    if let Some(ct) = content_type {
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Some(
                ApiError::new(
                    415,
                    "invalid_request_error",
                    format!("send JSON (`content-type: application/json`), not `{mime}`"),
                )
                .with_code("unsupported_media_type"),
            );
        }
    }
    match content_length.map(|l| l.trim().parse::<u64>()) {
        Some(Ok(n)) if n > max => Some(too_large(max)),
        Some(Err(_)) => Some(ApiError::invalid("the content-length header is not a number")),
        _ => None,
    }
}

pub fn too_large(max: u64) -> ApiError {
    ApiError::new(413, "invalid_request_error", format!("the request body is larger than {max} bytes"))
        .with_code("request_too_large")
}

fn unauthorized(message: &str) -> Reply {
    let mut r = Reply::error(&ApiError::new(401, "authentication_error", message).with_code("invalid_api_key"));
    r.headers.push(("www-authenticate", "Bearer".to_owned()));
    r
}

fn client_error(e: ApiError, log: &mut RequestLog) -> Reply {
    log.outcome = "client_error";
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
        format!("all {} upstream attempts failed: {}", attempts.len(), summary.join("; "))
    };
    let mut e = ApiError::new(status, if status == 504 { "timeout_error" } else { "upstream_error" }, message);
    e.code = Some("all_providers_failed".into());
    e.attempts = Some(attempts_json(attempts, true));
    e
}

/// The non-streaming acceptor: reads the body whole and translates it.
struct ReadWhole {
    now_s: u64,
}

pub struct Completion {
    /// The OpenAI `chat.completion` body to send.
    pub body: String,
    pub model: String,
    pub usage: Option<Usage>,
    /// What a mirror comparison needs (latency filled in by the caller).
    pub answer: Answer,
}

impl<B: UpstreamBody> Accept<B> for ReadWhole {
    type Output = Completion;
    async fn accept(
        &mut self,
        target: &Target,
        provider: &ProviderConfig,
        head: UpstreamHead<B>,
        deadline_ms: u64,
    ) -> Result<Completion, UpstreamError> {
        let text = head.body.text(deadline_ms).await.map_err(|e| match e {
            TransportError::Timeout => {
                UpstreamError::new(ErrorKind::Timeout, "the response body did not arrive in time")
            }
            TransportError::Connect(m) => UpstreamError::new(ErrorKind::Connect, m),
        })?;
        let mut c = providers::parse_chat(provider.format, &text, self.now_s)
            .map_err(|m| UpstreamError::new(ErrorKind::Malformed, m))?;
        if c.model.is_empty() {
            c.model = target.model.clone();
        }
        let body = if provider.format == Format::OpenAi {
            // Already the client's format: pass it on untouched, every field kept.
            text
        } else {
            serde_json::to_string(&c).map_err(|e| UpstreamError::new(ErrorKind::Malformed, e.to_string()))?
        };
        let answer = Answer::from_completion(&c, &provider.name, target, 0);
        Ok(Completion { body, model: c.model, usage: c.usage, answer })
    }
}
