//! Relaying a stream to the client: a runtime-native pipe written from
//! `waitUntil`; the request's log line is written when the stream ends.

use super::clock::WorkerClock;
use super::upstream::{FetchBody, FetchUpstream};
use super::{log_events, log_request};
use crate::chat::end_stream;
use crate::clock::Clock;
use crate::continuation::Continuer;
use crate::gateway::Gateway;
use crate::http::Reply;
use crate::log::RequestLog;
use crate::record::{Answer, Outcome};
use crate::rng::SplitMix64;
use crate::slot::Slot;
use crate::stream::StreamDriver;
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::{Context, Result};

/// A stream on its way to the client, able to continue elsewhere.
pub type ClientRelay =
    StreamDriver<FetchBody, WorkerClock, Option<Continuer<Rc<Gateway>, FetchUpstream, WorkerClock, SplitMix64>>>;

/// What a relayed stream needs besides the relay.
pub struct StreamJob {
    pub gw: Rc<Gateway>,
    pub log: RequestLog,
    /// Where the primary's answer goes for the mirror comparison.
    pub primary: Slot<Option<Answer>>,
}

/// Starts relaying `relay` to the client and returns the response whose body
/// it feeds.
pub fn stream_response(
    ctx: &Context,
    head: Reply,
    relay: ClientRelay,
    job: StreamJob,
    request_id: &str,
    cors: &[(&'static str, String)],
) -> Result<web_sys::Response> {
    let started = WorkerClock.now_ms().saturating_sub(job.log.latency_ms);
    // A runtime-native pipe: the relay writes into it from `waitUntil` and
    // the client reads the other end, so the runtime never calls back into
    // wasm to pull a chunk.
    let pipe = identity_pipe()?;
    let writer = pipe.writable().get_writer().map_err(worker::Error::from)?;
    ctx.wait_until(async move {
        let StreamJob { gw, mut log, primary } = job;
        let mut relay = relay;
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
                log.outcome = Some(Outcome::ClientClosed);
                break;
            }
            if log.first_token_ms.is_none() {
                log.first_token_ms = Some(WorkerClock.now_ms().saturating_sub(started));
            }
            let chunk = js_sys::Uint8Array::from(text.as_bytes());
            let _ = writer.write_with_chunk(&chunk).catch(&on_reject);
        }
        let _ = JsFuture::from(writer.close()).await;
        drop(on_reject);
        let continuation = relay.continuation_attempts();
        end_stream(&gw, relay.relay(), continuation, &mut log, WorkerClock.now_ms());
        // The mirror comparison (if any) waits for this.
        primary.set(log.answer.take());
        log.latency_ms = WorkerClock.now_ms().saturating_sub(started);
        log_request(&gw, &log);
        log_events(&gw);
    });
    Ok(super::web::respond_stream(&head, &pipe.readable(), request_id, cors)?)
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
