//! The edge shell: the Workers entry points and the implementations of the
//! core's traits with workers-rs. Kept thin: decisions live in the core.

mod admit;
mod alloc;
mod analytics;
mod clock;
mod kv;
mod mirror;
mod relay;
mod timer;
mod upstream;
mod web;

use crate::api::ApiError;
use crate::chat::{self, ChatInput, ChatReply, World};
use crate::clock::Clock;
use crate::config::Config;
use crate::continuation::Continuer;
use crate::cors;
use crate::gateway::Gateway;
use crate::http::{endpoint, Endpoint, Reply, HEADER_ORDER};
use crate::inbound::ClientFormat;
use crate::json::JsonText as _;
use crate::log::RequestLog;
use crate::mirror::NoMirror;
use crate::probe;
use crate::record::{Answer, Outcome};
use crate::rng::{Rng, SplitMix64};
use crate::slot::Slot;
use clock::WorkerClock;
use kv::KvState;
use mirror::EdgeMirror;
use relay::StreamJob;
use std::cell::RefCell;
use std::rc::Rc;
use upstream::{FetchBody, FetchUpstream};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;
use worker::{console_error, console_log, event, Context, Env, ScheduleContext, ScheduledEvent};

/// The KV namespace binding holding shared provider state.
pub(crate) const STATE_BINDING: &str = "STATE";
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
    let gw = Gateway::new(config, |name| secret(env, name));
    // Isolates spread their KV writes apart, each by its own jitter.
    gw.seed_write_jitter(request_rng().next_u64());
    Ok(Rc::new(gw))
}

/// A secret (or plain variable) by name: the env object's string property.
fn secret(env: &Env, name: &str) -> Option<String> {
    js_sys::Reflect::get(env, &name.into()).ok()?.as_string()
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
                Err(_) => js_sys::Date::now() as u64,
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

/// The fetch entry point, written out rather than made by workers-rs's
/// `#[event(fetch)]`: that glue turns a handler's error into a boxed
/// `worker::Error` and formats it, which links the text and `Debug` of every
/// error workers-rs knows (routing, email, serialisation) into the bundle.
/// The handler here fails only if the runtime refuses to build a Response;
/// the client then gets a JSON 500 and the log says why.
#[wasm_bindgen]
pub async fn fetch(req: web_sys::Request, env: Env, ctx: worker::worker_sys::Context) -> Result<JsValue, JsValue> {
    let ctx = Context::new(ctx);
    let mut rng = request_rng();
    let request_id = format!("sy-{:016x}", rng.next_u64());
    match handle(req, env, ctx, rng, &request_id).await {
        Ok(response) => Ok(response.into()),
        Err(e) => {
            let detail = js_sys::JSON::stringify(&e).ok().and_then(|s| s.as_string()).unwrap_or_default();
            console_error!(
                "{}",
                serde_json::json!({"level":"error","msg":"response not built","request_id":request_id,"detail":detail})
                    .json_text()
            );
            let e = ApiError::new(500, "api_error", "the gateway could not build its response");
            web::respond(Reply::error(&e), &request_id, &[]).map(JsValue::from)
        }
    }
}

async fn handle(
    req: web_sys::Request,
    env: Env,
    ctx: Context,
    mut rng: SplitMix64,
    request_id: &str,
) -> Result<web_sys::Response, JsValue> {
    let clock = WorkerClock;
    let req = web::Incoming::new(req);
    let method = req.method();
    let path = req.path();
    let mut log = RequestLog {
        request_id: request_id.to_owned(),
        method: method.clone(),
        path: path.clone(),
        ..Default::default()
    };

    let gw = match gateway(&env) {
        Ok(gw) => gw,
        Err(message) => {
            let e = ApiError::new(500, "configuration_error", message).with_code("invalid_config");
            log.status = 500;
            log.outcome = Some(Outcome::ConfigError);
            log.error = Some(e.message.clone());
            console_error!("{}", log.to_line());
            return web::respond(Reply::error(&e), request_id, &[]);
        }
    };

    analytics::bind(&env);
    let header = |name: &str| req.header(name);
    let origin = header("origin");
    let cors = cors::response_headers(origin.as_deref(), &gw.config.security);
    let ep = endpoint(&method, &path);
    let refused = match ep {
        Endpoint::Chat
        | Endpoint::Messages
        | Endpoint::CountTokens
        | Endpoint::Responses
        | Endpoint::Embeddings
        | Endpoint::Models
        | Endpoint::Model => admit::admit(&gw, &req, &env, &mut log).await.err(),
        Endpoint::Status | Endpoint::Mirror | Endpoint::Usage | Endpoint::Metrics => {
            admit::admit_admin(&gw, &req, &env, &mut log).await.err()
        }
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
            log.outcome = Some(if status == 204 { Outcome::Ok } else { Outcome::CorsRefused });
            log_request(&gw, &log);
            let body = if status == 204 {
                String::new()
            } else {
                ApiError::new(403, "permission_error", "this origin may not call the gateway").to_json()
            };
            return web::respond(Reply { status, headers, body }, request_id, &[]);
        }
        Endpoint::Chat | Endpoint::Messages | Endpoint::Responses => {
            let api = match ep {
                Endpoint::Messages => ClientFormat::Messages,
                Endpoint::Responses => ClientFormat::Responses,
                _ => ClientFormat::Chat,
            };
            let mirror = EdgeMirror::new(gw.clone(), &ctx);
            let primary: Slot<Option<Answer>> = Slot::new();
            let reply = serve_chat(&gw, req, &env, &mut log, &mut rng, &mirror, api).await;
            if mirror.started.get() {
                mirror::compare_after_response(&gw, &env, &ctx, &log, mirror.slot.clone(), primary.clone());
            }
            match reply {
                ChatReply::Whole(reply) => {
                    primary.set(log.answer.take());
                    reply
                }
                ChatReply::Stream { head, stream, resume } => {
                    // The attempts before the stream started are recorded by now.
                    schedule_upkeep(&gw, &env, &ctx);
                    let resume = resume.map(|plan| {
                        Continuer::new(gw.clone(), plan, FetchUpstream, clock, SplitMix64::new(rng.next_u64()))
                    });
                    let job = StreamJob { gw, log, primary };
                    let driver = crate::stream::StreamDriver::new(stream, clock, resume);
                    return relay::stream_response(&ctx, head, driver, job, request_id, &cors);
                }
            }
        }
        Endpoint::Mirror => {
            let auth = req.header("authorization");
            match gw.admin.authorize(auth.as_deref()) {
                Err(r) => r,
                Ok(()) => {
                    let routes: Vec<&str> =
                        gw.config.routes.iter().filter(|r| r.mirror.is_some()).map(|r| r.name.as_str()).collect();
                    let shared = match KvState::bound(&env, STATE_BINDING) {
                        Some(kv) => crate::mirror::read_shared(&kv, &routes).await,
                        None => Vec::new(),
                    };
                    crate::admin::mirror_report(&gw, &shared)
                }
            }
        }
        Endpoint::CountTokens => match read_body(&gw, &req, &mut log).await {
            Err(r) => r,
            Ok(body) => {
                let headers = anthropic_headers(&req);
                let mut w = World { clock: &WorkerClock, upstream: &FetchUpstream, rng: &mut rng, mirror: &NoMirror };
                crate::count_tokens::count_tokens(&gw, &body, headers, &mut log, &mut w).await
            }
        },
        Endpoint::Embeddings => match read_body(&gw, &req, &mut log).await {
            Err(r) => r,
            Ok(body) => {
                let mut w = World { clock: &WorkerClock, upstream: &FetchUpstream, rng: &mut rng, mirror: &NoMirror };
                crate::embeddings::embeddings(&gw, &body, &mut log, &mut w).await
            }
        },
        Endpoint::ResponsesSocket => crate::http::upgrade_refused(),
        Endpoint::Usage | Endpoint::Metrics => match gw.admin.authorize(req.header("authorization").as_deref()) {
            Err(r) => r,
            Ok(()) if ep == Endpoint::Metrics => {
                let now = clock.now_ms();
                Reply::json(200, gw.metrics.borrow().to_json(now).json_text())
            }
            Ok(()) => usage(&gw, &env).await,
        },
        Endpoint::Models => gw.models(),
        Endpoint::Model => gw.model(&crate::http::model_id(&path).unwrap_or_default()),
        Endpoint::Status => {
            let auth = req.header("authorization");
            match gw.admin.authorize(auth.as_deref()) {
                Err(r) => r,
                Ok(()) => {
                    // An admin read may pay for a fresh look at the shared state.
                    let now = clock.now_ms();
                    if let Some(kv) = KvState::bound(&env, STATE_BINDING) {
                        if gw.refresh_due(now) {
                            log_errors("state refresh failed", gw.refresh_state(&kv, &clock).await);
                        }
                    }
                    crate::admin::status(&gw, clock.now_ms(), kv::op_counts())
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
    let reply = anthropic_shaped(ep, reply);
    if log.status == 0 {
        log.status = reply.status;
    }
    if log.outcome.is_none() {
        log.outcome = Some(if reply.status < 400 { Outcome::Ok } else { Outcome::ClientError });
    }
    log_request(&gw, &log);
    log_events(&gw);
    schedule_upkeep(&gw, &env, &ctx);
    web::respond(reply, request_id, &cors)
}

/// Shared state upkeep after the response (`waitUntil`): a refresh when due,
/// and the writes of whatever changed.
fn schedule_upkeep(gw: &Rc<Gateway>, env: &Env, ctx: &Context) {
    if !gw.upkeep_due(WorkerClock.now_ms()) {
        return; // steady state: no task, no promise
    }
    if let Some(store) = KvState::bound(env, STATE_BINDING) {
        let gw = gw.clone();
        ctx.wait_until(async move {
            let now = js_sys::Date::now() as u64;
            if gw.refresh_due(now) {
                log_errors("state refresh failed", gw.refresh_state(&store, &WorkerClock).await);
            }
            log_flush(gw.flush_state_after_response(&store, &WorkerClock).await);
        });
    }
}

/// Reads a chat request's body (within the size limit) and serves it.
/// Errors on the Messages paths (the gateway's own: keys, rate limits, bad
/// paths) in Anthropic's shape, as its clients expect.
fn anthropic_shaped(ep: Endpoint, mut reply: Reply) -> Reply {
    if matches!(ep, Endpoint::Messages | Endpoint::CountTokens) && reply.status >= 400 {
        if let Some(body) = ClientFormat::Messages.error_body(reply.status, &reply.body) {
            reply.body = body;
        }
    }
    reply
}

/// The client's `anthropic-*` headers, passed on to Anthropic targets.
fn anthropic_headers(req: &web::Incoming) -> Vec<(String, String)> {
    crate::inbound::messages::PASSED_HEADERS
        .iter()
        .filter_map(|name| req.header(name).map(|v| ((*name).to_owned(), v)))
        .collect()
}

/// Reads a JSON request body within the configured bound.
async fn read_body(gw: &Gateway, req: &web::Incoming, log: &mut RequestLog) -> Result<Vec<u8>, Reply> {
    let header = |name: &str| req.header(name);
    let max = gw.config.security.max_body_bytes;
    if let Some(e) =
        crate::http::check_body_headers(header("content-type").as_deref(), header("content-length").as_deref(), max)
    {
        log.outcome = Some(Outcome::ClientError);
        log.error = Some(e.message.clone());
        return Err(Reply::error(&e));
    }
    match req.body(max).await {
        Ok(b) if b.len() as u64 > max => {
            log.outcome = Some(Outcome::ClientError);
            Err(Reply::error(&crate::http::too_large(max)))
        }
        Ok(b) => Ok(b),
        Err(Some(e)) => {
            log.outcome = Some(Outcome::ClientError);
            Err(Reply::error(&e))
        }
        Err(None) => Err(Reply::error(&ApiError::invalid("the request body could not be read"))),
    }
}

async fn serve_chat(
    gw: &Gateway,
    req: web::Incoming,
    env: &Env,
    log: &mut RequestLog,
    rng: &mut SplitMix64,
    mirror: &EdgeMirror<'_>,
    api: ClientFormat,
) -> ChatReply<FetchBody> {
    // A new isolate reads the shared state before its first decision; after
    // that, refreshes happen after responses.
    if gw.state_never_loaded() {
        if let Some(kv) = KvState::bound(env, STATE_BINDING) {
            // The reads run concurrently, bounded by state.read_timeout_ms.
            log_errors("state refresh failed", gw.refresh_state(&kv, &WorkerClock).await);
        }
    }
    let body = match read_body(gw, &req, log).await {
        Ok(b) => b,
        Err(r) => return ChatReply::Whole(r),
    };
    let order = req.header(HEADER_ORDER);
    let headers = if api == ClientFormat::Messages { anthropic_headers(&req) } else { Vec::new() };
    let mut w = World { clock: &WorkerClock, upstream: &FetchUpstream, rng, mirror };
    let input = ChatInput { api, body: &body, headers, order_header: order.as_deref() };
    chat::chat(gw, input, log, &mut w).await
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
    let kv = KvState::bound(&env, STATE_BINDING);
    // Start from what other isolates know, so transitions are judged right.
    if let Some(store) = &kv {
        log_errors("state refresh failed", gw.refresh_state(store, &clock).await);
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
    console_log!("{}", serde_json::json!({"level":"info","msg":"health check","probes":summary}).json_text());
    log_events(&gw);
    if let Some(store) = &kv {
        // The cron run can afford to wait for a key's write slot, so that a
        // transition right after another is not left unwritten.
        log_flush(gw.flush_state_waiting(store, &clock).await);
    }
}

/// The request's log line, if `log_requests` wants it; and its accounting
/// (this isolate's metrics, the Analytics Engine point), once per request.
pub(crate) fn log_request(gw: &Gateway, log: &RequestLog) {
    if crate::log::wanted(gw.config.log_requests, log) {
        console_log!("{}", log.to_line());
    }
    gw.metrics.borrow_mut().record(log, WorkerClock.now_ms());
    analytics::write(log);
}

/// `GET /v1/usage`: the fleet's figures from the Analytics Engine SQL API
/// when `CF_ACCOUNT_ID` and `CF_ANALYTICS_TOKEN` are set, else this
/// isolate's, said to be only that.
async fn usage(gw: &Gateway, env: &Env) -> Reply {
    use crate::fleet;
    let text = |name: &str| secret(env, name).filter(|s| !s.is_empty());
    let now = WorkerClock.now_ms();
    let (Some(account_id), Some(token)) = (text("CF_ACCOUNT_ID"), text("CF_ANALYTICS_TOKEN")) else {
        return crate::admin::usage_isolate(
            gw,
            now,
            "fleet figures need the CF_ACCOUNT_ID and CF_ANALYTICS_TOKEN secrets and the ANALYTICS dataset binding",
        );
    };
    let base = text("ANALYTICS_SQL_URL").unwrap_or_else(|| fleet::DEFAULT_BASE.to_owned());
    let dataset = text("ANALYTICS_DATASET").unwrap_or_else(|| fleet::DEFAULT_DATASET.to_owned());
    if !fleet::base_ok(&base) || !fleet::dataset_ok(&dataset) {
        let e = ApiError::new(500, "configuration_error", "ANALYTICS_SQL_URL must be https:// (http:// only to a loopback host) and ANALYTICS_DATASET letters, digits and _");
        return Reply::error(&e);
    }
    let src = fleet::Source { base, account_id, token, dataset };
    match fleet::query(&FetchUpstream, &src, fleet::usage_sql(&src.dataset), now + 10_000).await {
        Ok(rows) => Reply::json(200, fleet::usage_json(rows, now).json_text()),
        Err(e) => Reply::error(&ApiError::new(502, "upstream_error", format!("fleet usage unavailable: {e}"))),
    }
}

/// Logs circuit and health transitions as structured events.
pub(crate) fn log_events(gw: &Gateway) {
    let events = gw.take_events();
    for e in events {
        console_log!("{}", e);
    }
}

/// Every KV write is logged: they are rare by design, and this is how an
/// operator (and the tests) can count them.
pub(crate) fn log_flush((written, errors): (Vec<String>, Vec<String>)) {
    for provider in written {
        console_log!("{}", serde_json::json!({"level":"debug","msg":"state written","provider":provider}).json_text());
    }
    log_errors("state write failed", errors);
}

fn log_errors(what: &str, errors: Vec<String>) {
    for e in errors {
        console_error!("{}", serde_json::json!({"level":"error","msg":what,"detail":e}).json_text());
    }
}

#[cfg(test)]
mod tests;
