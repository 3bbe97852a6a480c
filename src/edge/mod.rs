//! The edge shell: the Workers entry points and the implementations of the
//! core's traits with workers-rs. Kept thin: decisions live in the core.

mod clock;
mod kv;
mod timer;
mod upstream;

use crate::api::ApiError;
use crate::clock::Clock;
use crate::config::Config;
use crate::cors;
use crate::gateway::{
    endpoint, Caller, ChatReply, Continuer, Endpoint, Gateway, KeyCheck, Reply, HEADER_ORDER, HEADER_REQUEST_ID,
};
use crate::log::RequestLog;
use crate::mirror::{self, Answer, MirrorJob, MirrorLink, MirrorResult};
use crate::rng::{Rng, SplitMix64};
use crate::slot::Slot;
use crate::store::StateStore;
use crate::stream::Relay;
use crate::{probe, state};
use clock::WorkerClock;
use kv::KvState;
use std::cell::Cell;
use std::cell::RefCell;
use std::rc::Rc;
use upstream::{FetchBody, FetchUpstream};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::{
    console_error, console_log, event, Context, Env, Headers, Request, Response, ResponseBody, Result, ScheduleContext,
    ScheduledEvent,
};

/// The KV namespace binding holding shared provider state.
const STATE_BINDING: &str = "STATE";
const CONFIG_BINDING: &str = "SWITCHYARD_CONFIG";

thread_local! {
    /// Parsed once per isolate: the gateway, or the configuration error that
    /// every request is answered with until the config is fixed.
    static GATEWAY: RefCell<Option<std::result::Result<Rc<Gateway>, String>>> = const { RefCell::new(None) };
    static RNG: RefCell<Option<SplitMix64>> = const { RefCell::new(None) };
}

fn gateway(env: &Env) -> std::result::Result<Rc<Gateway>, String> {
    GATEWAY.with(|cell| cell.borrow_mut().get_or_insert_with(|| load_gateway(env)).clone())
}

fn load_gateway(env: &Env) -> std::result::Result<Rc<Gateway>, String> {
    let raw = js_sys::Reflect::get(env, &CONFIG_BINDING.into()).map_err(|_| missing_config())?;
    let text = if let Some(s) = raw.as_string() {
        s
    } else if raw.is_object() {
        js_sys::JSON::stringify(&raw)
            .ok()
            .and_then(|s| s.as_string())
            .ok_or_else(|| format!("`{CONFIG_BINDING}` could not be read as JSON"))?
    } else {
        return Err(missing_config());
    };
    let config = Config::from_json(&text).map_err(|e| e.to_string())?;
    let gw = Gateway::new(config, |name| env.secret(name).ok().map(|s| s.to_string()));
    Ok(Rc::new(gw))
}

fn missing_config() -> String {
    format!("the `{CONFIG_BINDING}` variable is not set: declare it in wrangler.toml under [vars]")
}

/// A per-request generator, seeded from the isolate's (itself seeded from the
/// platform's randomness), so that concurrent requests never share a borrow.
fn request_rng() -> SplitMix64 {
    RNG.with(|cell| {
        let mut slot = cell.borrow_mut();
        let rng = slot.get_or_insert_with(|| {
            let mut seed = [0u8; 8];
            // getrandom cannot fail on Workers; fall back to the clock if it somehow does.
            let s = match getrandom::fill(&mut seed) {
                Ok(()) => u64::from_le_bytes(seed),
                Err(_) => worker::Date::now().as_millis(),
            };
            SplitMix64::new(s)
        });
        SplitMix64::new(rng.next_u64())
    })
}

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let clock = WorkerClock;
    let mut rng = request_rng();
    let request_id = format!("sy-{:016x}", rng.next_u64());
    let method = req.method().to_string();
    let path = req.path();
    let mut log =
        RequestLog { request_id: request_id.clone(), method: method.clone(), path: path.clone(), ..Default::default() };

    let gw = match gateway(&env) {
        Ok(gw) => gw,
        Err(message) => {
            let e = ApiError::new(500, "configuration_error", message).with_code("invalid_config");
            log.status = 500;
            log.outcome = "config_error";
            log.error = Some(e.message.clone());
            console_error!("{}", log.to_line());
            return respond(Reply::error(&e), &request_id, &[]);
        }
    };

    let header = |name: &str| req.headers().get(name).ok().flatten();
    let origin = header("origin");
    let cors = cors::response_headers(origin.as_deref(), &gw.config.security);
    let ep = endpoint(&method, &path);
    let refused = match ep {
        Endpoint::Chat | Endpoint::Models => admit(&gw, &req, &env, &mut log).await.err(),
        _ => None,
    };
    let reply = match ep {
        _ if refused.is_some() => refused.unwrap_or_else(|| Reply::json(500, String::new())),
        Endpoint::Preflight => {
            let (status, headers) = cors::preflight(
                origin.as_deref(),
                header("access-control-request-method").as_deref(),
                header("access-control-request-headers").as_deref(),
                &gw.config.security,
            );
            log.status = status;
            log.outcome = if status == 204 { "ok" } else { "cors_refused" };
            log_request(&gw, &log);
            let body = if status == 204 {
                String::new()
            } else {
                ApiError::new(403, "permission_error", "this origin may not call the gateway").to_json()
            };
            return respond(Reply { status, headers, body }, &request_id, &[]);
        }
        Endpoint::Chat => {
            let mirror = EdgeMirror { gw: gw.clone(), ctx: &ctx, slot: Slot::new(), started: Cell::new(false) };
            let primary: Slot<Option<Answer>> = Slot::new();
            let reply = chat(&gw, req, &env, &mut log, &clock, &mut rng, &mirror).await;
            if mirror.started.get() {
                compare_after_response(&gw, &env, &ctx, &log, mirror.slot.clone(), primary.clone());
            }
            match reply {
                ChatReply::Whole(reply) => {
                    primary.set(log.answer.take());
                    reply
                }
                ChatReply::Stream { head, relay, resume } => {
                    // The attempts before the stream started are recorded by now.
                    schedule_upkeep(&gw, &env, &ctx);
                    let resume = resume.map(|plan| Continuer { gw: gw.clone(), plan, upstream: FetchUpstream, clock });
                    return stream_response(
                        gw,
                        &ctx,
                        head,
                        relay.with_resume(resume),
                        log,
                        &request_id,
                        primary,
                        &cors,
                    );
                }
            }
        }
        Endpoint::Mirror => {
            let auth = req.headers().get("authorization").ok().flatten();
            match gw.authorize_admin(auth.as_deref()) {
                Err(r) => r,
                Ok(()) => {
                    let routes: Vec<&str> =
                        gw.config.routes.iter().filter(|r| r.mirror.is_some()).map(|r| r.name.as_str()).collect();
                    let shared = match env.kv(STATE_BINDING) {
                        Ok(kv) => mirror::read_shared(&KvState(kv), &routes).await,
                        Err(_) => Vec::new(),
                    };
                    gw.mirror_report(&shared)
                }
            }
        }
        Endpoint::Models => gw.models(),
        Endpoint::Status => {
            let auth = req.headers().get("authorization").ok().flatten();
            match gw.authorize_admin(auth.as_deref()) {
                Err(r) => r,
                Ok(()) => {
                    // An admin read may pay for a fresh look at the shared state.
                    let now = clock.now_ms();
                    if let Ok(kv) = env.kv(STATE_BINDING) {
                        if gw.states.borrow().refresh_due(now) {
                            log_errors("state refresh failed", state::refresh(&gw.states, &KvState(kv), now).await);
                        }
                    }
                    gw.status(clock.now_ms(), kv::op_counts())
                }
            }
        }
        Endpoint::Health => Reply::json(200, r#"{"status":"ok"}"#.to_owned()),
        Endpoint::NotFound => {
            Reply::error(&ApiError::not_found(format!("no route for {method} {path}")).with_code("unknown_url"))
        }
        Endpoint::MethodNotAllowed(allow) => {
            let mut r = Reply::error(
                &ApiError::new(405, "invalid_request_error", format!("{method} is not allowed on {path}; use {allow}"))
                    .with_code("method_not_allowed"),
            );
            r.headers.push(("allow", allow.to_owned()));
            r
        }
    };
    if log.status == 0 {
        log.status = reply.status;
    }
    if log.outcome.is_empty() {
        log.outcome = if reply.status < 400 { "ok" } else { "client_error" };
    }
    log_request(&gw, &log);
    log_events(&gw);
    schedule_upkeep(&gw, &env, &ctx);
    respond(reply, &request_id, &cors)
}

/// Admits a request to the API: its gateway key (from the secret, or KV),
/// then the rate limit for that key. `Err` is the reply to send instead.
async fn admit(gw: &Gateway, req: &Request, env: &Env, log: &mut RequestLog) -> std::result::Result<(), Reply> {
    let now = WorkerClock.now_ms();
    let auth = req.headers().get("authorization").ok().flatten();
    let mut check = gw.check_key(auth.as_deref(), now);
    if let KeyCheck::LookUp(hash) = &check {
        let stored = match env.kv(STATE_BINDING) {
            Ok(kv) => KvState(kv).get(&format!("{}{hash}", crate::auth::KEY_PREFIX_KV)).await.ok().flatten(),
            Err(_) => None,
        };
        check = gw.admit_from_kv(hash, stored.as_deref(), now);
    }
    let caller = match check {
        KeyCheck::Admitted(c) => c,
        KeyCheck::Refused(r) => {
            log.outcome = if r.status == 401 { "unauthorized" } else { "config_error" };
            return Err(r);
        }
        KeyCheck::LookUp(_) => return Err(Reply::json(500, String::new())),
    };
    let sec = &gw.config.security;
    if let Some(binding) = &sec.rate_limit_binding {
        let key = match &caller {
            Caller::Key(k) => format!("key:{}", k.name),
            Caller::Anonymous => {
                format!("ip:{}", req.headers().get("cf-connecting-ip").ok().flatten().unwrap_or_default())
            }
        };
        if !rate_limit_ok(env, binding, &key).await {
            log.caller = Some(caller);
            log.outcome = "rate_limited";
            let mut r = Reply::error(
                &ApiError::new(429, "rate_limit_error", "too many requests for this key: slow down")
                    .with_code("rate_limit_exceeded"),
            );
            r.headers.push(("retry-after", sec.rate_limit_period_s.to_string()));
            return Err(r);
        }
    }
    log.caller = Some(caller);
    Ok(())
}

/// Asks the rate limiting binding (`limit({key})`). A missing or failing
/// binding lets the request through: the limit protects budgets, it must not
/// take the gateway down.
async fn rate_limit_ok(env: &Env, binding: &str, key: &str) -> bool {
    let Ok(limiter) = js_sys::Reflect::get(env, &binding.into()) else {
        return true;
    };
    let Ok(limit) = js_sys::Reflect::get(&limiter, &"limit".into()) else {
        return true;
    };
    let Some(limit) = wasm_bindgen::JsCast::dyn_ref::<js_sys::Function>(&limit) else {
        return true;
    };
    let arg = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&arg, &"key".into(), &key.into());
    let Ok(promise) = limit.call1(&limiter, &arg) else {
        return true;
    };
    let Ok(outcome) = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::from(promise)).await else {
        return true;
    };
    js_sys::Reflect::get(&outcome, &"success".into()).ok().and_then(|v| v.as_bool()).unwrap_or(true)
}

/// Shared state upkeep after the response (`waitUntil`): a refresh when due,
/// and the writes of whatever changed.
fn schedule_upkeep(gw: &Rc<Gateway>, env: &Env, ctx: &Context) {
    if !gw.states.borrow().upkeep_due(WorkerClock.now_ms()) {
        return; // steady state: no task, no promise
    }
    if let Ok(kv) = env.kv(STATE_BINDING) {
        let gw = gw.clone();
        ctx.wait_until(async move {
            let store = KvState(kv);
            let now = worker::Date::now().as_millis();
            if gw.states.borrow().refresh_due(now) {
                log_errors("state refresh failed", state::refresh(&gw.states, &store, now).await);
            }
            log_flush(state::flush(&gw.states, &store, now).await);
        });
    }
}

/// A stream on its way to the client, able to continue elsewhere.
type ClientRelay = Relay<FetchBody, WorkerClock, Option<Continuer<Rc<Gateway>, FetchUpstream, WorkerClock>>>;

/// Relays a stream to the client chunk by chunk; the request's log line is
/// written when the stream ends, with how it ended.
#[allow(clippy::too_many_arguments)]
fn stream_response(
    gw: Rc<Gateway>,
    ctx: &Context,
    head: Reply,
    relay: ClientRelay,
    log: RequestLog,
    request_id: &str,
    primary: Slot<Option<Answer>>,
    cors: &[(&'static str, String)],
) -> Result<Response> {
    let started = WorkerClock.now_ms().saturating_sub(log.latency_ms);
    // A runtime-native pipe: the relay writes into it from `waitUntil` and
    // the client reads the other end, so the runtime never calls back into
    // wasm to pull a chunk.
    let pipe = identity_pipe()?;
    let writer = pipe.writable().get_writer().map_err(worker::Error::from)?;
    ctx.wait_until(async move {
        let mut relay = relay;
        let mut log = log;
        // A write is not awaited (that would cost a promise round trip per
        // chunk): answers are small, so they may queue in the pipe. A write
        // rejected because the client went away is noted, and the next
        // chunk stops the relay.
        let gone = Rc::new(Cell::new(false));
        let on_reject = {
            let gone = gone.clone();
            wasm_bindgen::closure::Closure::<dyn FnMut(wasm_bindgen::JsValue)>::new(move |_| gone.set(true))
        };
        while let Some(text) = relay.next().await {
            if gone.get() {
                // Stop reading upstream (dropping the relay aborts it) and
                // record how the stream ended.
                log.outcome = "client_closed";
                break;
            }
            let chunk = js_sys::Uint8Array::from(text.as_bytes());
            let _ = writer.write_with_chunk(&chunk).catch(&on_reject);
        }
        let _ = JsFuture::from(writer.close()).await;
        drop(on_reject);
        gw.end_stream(&relay, &mut log, &WorkerClock);
        // The mirror comparison (if any) waits for this.
        primary.set(log.answer.take());
        log.latency_ms = WorkerClock.now_ms().saturating_sub(started);
        log_request(&gw, &log);
        log_events(&gw);
    });
    let headers = Headers::new();
    headers.set(HEADER_REQUEST_ID, request_id)?;
    for (k, v) in cors.iter().chain(&head.headers) {
        headers.set(k, v)?;
    }
    Ok(Response::from_body(ResponseBody::Stream(pipe.readable()))?.with_status(head.status).with_headers(headers))
}

/// workerd's `IdentityTransformStream` (a byte pipe implemented in the
/// runtime), or a standard `TransformStream` where it is missing.
fn identity_pipe() -> Result<web_sys::TransformStream> {
    let global = js_sys::global();
    if let Ok(ctor) = js_sys::Reflect::get(&global, &"IdentityTransformStream".into()) {
        if let Some(ctor) = ctor.dyn_ref::<js_sys::Function>() {
            if let Ok(pipe) = js_sys::Reflect::construct(ctor, &js_sys::Array::new()) {
                return Ok(pipe.unchecked_into());
            }
        }
    }
    Ok(web_sys::TransformStream::new()?)
}

/// Runs mirror calls in `waitUntil`, so that the client never waits for
/// them, and hands their result to whoever asks.
struct EdgeMirror<'a> {
    gw: Rc<Gateway>,
    ctx: &'a Context,
    slot: Slot<MirrorResult>,
    started: Cell<bool>,
}

impl MirrorLink for EdgeMirror<'_> {
    fn start(&self, job: MirrorJob) {
        self.started.set(true);
        let gw = self.gw.clone();
        let slot = self.slot.clone();
        self.ctx.wait_until(async move {
            let r = mirror::run(&gw.config, &job, &WorkerClock, &FetchUpstream).await;
            gw.mirror_finished(&job, &r, WorkerClock.now_ms());
            slot.set(r);
        });
    }

    async fn result(&self) -> Option<MirrorResult> {
        if !self.started.get() {
            return None;
        }
        Some(self.slot.wait().await)
    }
}

/// After the response (and, for a stream, after its last chunk): compare the
/// primary's answer with the mirror's, log the pair, and share the route's
/// aggregates within KV's write limits.
fn compare_after_response(
    gw: &Rc<Gateway>,
    env: &Env,
    ctx: &Context,
    log: &RequestLog,
    mirror: Slot<MirrorResult>,
    primary: Slot<Option<Answer>>,
) {
    let gw = gw.clone();
    let kv = env.kv(STATE_BINDING).ok();
    let request_id = log.request_id.clone();
    let route = log.route.clone().unwrap_or_default();
    ctx.wait_until(async move {
        let m = mirror.wait().await;
        let Some(p) = primary.wait().await else {
            // No primary answer to compare (it failed, or the mirror served).
            if let MirrorResult::Failed { .. } = m {
                gw.mirror_ledger.borrow_mut().add(&route, &Answer::default(), &m, WorkerClock.now_ms());
            }
            return;
        };
        let now = WorkerClock.now_ms();
        console_log!("{}", gw.mirror_pair(&request_id, &route, &p, &m, now));
        if let Some(kv) = kv {
            let interval = gw.config.state.mirror_write_interval_s * 1000;
            let (written, errors) =
                mirror::flush(&gw.mirror_ledger, &KvState(kv), now, interval, gw.config.state.kv_ttl_s).await;
            log_flush((written, errors));
        }
    });
}

#[allow(clippy::too_many_arguments)]
async fn chat(
    gw: &Gateway,
    mut req: Request,
    env: &Env,
    log: &mut RequestLog,
    clock: &WorkerClock,
    rng: &mut SplitMix64,
    mirror: &EdgeMirror<'_>,
) -> ChatReply<FetchBody, WorkerClock> {
    // A new isolate reads the shared state before its first decision; after
    // that, refreshes happen after responses.
    if gw.states.borrow().never_loaded() {
        if let Ok(kv) = env.kv(STATE_BINDING) {
            let now = worker::Date::now().as_millis();
            log_errors("state refresh failed", state::refresh(&gw.states, &KvState(kv), now).await);
        }
    }
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let max = gw.config.security.max_body_bytes;
    if let Some(e) =
        crate::gateway::check_body_headers(header("content-type").as_deref(), header("content-length").as_deref(), max)
    {
        log.outcome = "client_error";
        log.error = Some(e.message.clone());
        return ChatReply::Whole(Reply::error(&e));
    }
    let body = match req.bytes().await {
        Ok(b) if b.len() as u64 > max => {
            return ChatReply::Whole(Reply::error(&crate::gateway::too_large(max)));
        }
        Ok(b) => b,
        Err(_) => return ChatReply::Whole(Reply::error(&ApiError::invalid("the request body could not be read"))),
    };
    let order = req.headers().get(HEADER_ORDER).ok().flatten();
    gw.chat(&body, order.as_deref(), log, clock, &FetchUpstream, rng, mirror).await
}

/// The cron trigger: probe every provider, fold the results into health and
/// circuits, and share the transitions through KV.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let gw = match gateway(&env) {
        Ok(gw) => gw,
        Err(message) => {
            log_errors("health check skipped", vec![message]);
            return;
        }
    };
    let clock = WorkerClock;
    let kv = env.kv(STATE_BINDING).ok().map(KvState);
    // Start from what other isolates know, so transitions are judged right.
    if let Some(store) = &kv {
        log_errors("state refresh failed", state::refresh(&gw.states, store, clock.now_ms()).await);
    }
    let results = probe::probe_all(&gw, &clock, &FetchUpstream).await;
    let summary: Vec<serde_json::Value> = results
        .iter()
        .map(|(name, r)| {
            serde_json::json!({
                "provider": name,
                "outcome": r.error.map_or("ok", |k| k.as_str()),
                "latency_ms": r.latency_ms,
            })
        })
        .collect();
    console_log!("{}", serde_json::json!({"level":"info","msg":"health check","probes":summary}));
    log_events(&gw);
    if let Some(store) = &kv {
        // The cron run can afford to wait for a key's write slot, so that a
        // transition right after another is not left unwritten.
        log_flush(state::flush_waiting(&gw.states, store, &clock).await);
    }
}

/// The request's log line, if `log_requests` wants it.
fn log_request(gw: &Gateway, log: &RequestLog) {
    if gw.config.log_requests.wants(log) {
        console_log!("{}", log.to_line());
    }
}

/// Logs circuit and health transitions as structured events.
fn log_events(gw: &Gateway) {
    let events = gw.states.borrow_mut().take_events();
    for e in events {
        console_log!("{}", e);
    }
}

/// Every KV write is logged: they are rare by design, and this is how an
/// operator (and the tests) can count them.
fn log_flush((written, errors): (Vec<String>, Vec<String>)) {
    for provider in written {
        console_log!("{}", serde_json::json!({"level":"debug","msg":"state written","provider":provider}));
    }
    log_errors("state write failed", errors);
}

fn log_errors(what: &str, errors: Vec<String>) {
    for e in errors {
        console_error!("{}", serde_json::json!({"level":"error","msg":what,"detail":e}));
    }
}

fn respond(reply: Reply, request_id: &str, cors: &[(&'static str, String)]) -> Result<Response> {
    let headers = Headers::new();
    if !reply.body.is_empty() {
        headers.set("content-type", "application/json")?;
    }
    headers.set(HEADER_REQUEST_ID, request_id)?;
    for (k, v) in cors.iter().chain(&reply.headers) {
        headers.set(k, v)?;
    }
    Ok(Response::ok(reply.body)?.with_status(reply.status).with_headers(headers))
}

#[cfg(test)]
mod tests;
