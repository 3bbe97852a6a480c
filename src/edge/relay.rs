//! Relaying a stream to the client: the runtime pipes the upstream body
//! through a `TransformStream` whose `transform` is one synchronous call
//! into the relay per chunk, and the client reads the other side.
//!
//! Nothing of ours runs per chunk but that call: no read promise, no future
//! woken through the executor, no write promise. The pipe honours the
//! client's pace (the transform is not called while the client's side is
//! full), and a client that leaves cancels the readable side, which the
//! transformer's `cancel` notes. The driver below runs from `waitUntil`
//! and acts only between pipes: it writes the output held back until the
//! first token, tells the relay how the body ended (its end, a break, the
//! deadline), continues a broken answer on another target by piping the
//! next body into the same stream, and writes the request's log line when
//! the stream ends.

use super::clock::WorkerClock;
use super::upstream::{error_text, FetchBody, FetchUpstream};
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
use crate::stream::{Next, State, StreamDriver};
use crate::upstream::UpstreamBody;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, TransformStreamDefaultController};
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

/// What the driver and the transform share. The driver hands the relay to
/// the transform only while a pipe runs, and takes it back when it stops.
struct Shared {
    driver: RefCell<Option<ClientRelay>>,
    /// Stops the running pipe: the relay needs no more of this body.
    stop: RefCell<Option<AbortController>>,
    /// The client cancelled its side: it left.
    gone: Cell<bool>,
}

/// The transform: one chunk of the upstream body into the relay, and what
/// the relay has ready out to the client.
fn transform(shared: &Shared, buf: &mut Vec<u8>, chunk: JsValue, out: &TransformStreamDefaultController) -> std::result::Result<(), JsValue> {
    let mut guard = shared.driver.borrow_mut();
    let Some(driver) = guard.as_mut() else {
        return Ok(());
    };
    let Some(bytes) = chunk.dyn_ref::<js_sys::Uint8Array>() else {
        return Ok(());
    };
    buf.resize(bytes.length() as usize, 0);
    bytes.copy_to(buf);
    let ready = driver.feed(buf, WorkerClock.now_ms());
    if matches!(driver.relay().state(), State::Probation | State::Flowing) {
        let deadline = driver.relay().next_deadline();
        driver.body_mut().set_deadline(deadline);
    } else if let Some(stop) = shared.stop.borrow().as_ref() {
        // Finished, broken or failed: the driver takes it from here.
        stop.abort();
    }
    if !ready.is_empty() {
        out.enqueue_with_chunk(&js_sys::Uint8Array::from(ready.as_bytes()))?;
    }
    Ok(())
}

/// A `TransformStream` running [`transform`], its controller, and the
/// callbacks it calls (kept alive as long as the stream).
struct ClientStream {
    stream: web_sys::TransformStream,
    out: TransformStreamDefaultController,
    _transform: Closure<dyn FnMut(JsValue, TransformStreamDefaultController) -> std::result::Result<(), JsValue>>,
    _cancel: Closure<dyn FnMut(JsValue)>,
}

fn client_stream(shared: &Rc<Shared>) -> Result<ClientStream> {
    let controller: Rc<RefCell<Option<TransformStreamDefaultController>>> = Rc::default();
    let start = {
        let controller = controller.clone();
        Closure::<dyn FnMut(TransformStreamDefaultController)>::new(move |c| *controller.borrow_mut() = Some(c))
    };
    let transform_cb = {
        let shared = shared.clone();
        let mut buf = Vec::new();
        Closure::<dyn FnMut(JsValue, TransformStreamDefaultController) -> std::result::Result<(), JsValue>>::new(
            move |chunk, out: TransformStreamDefaultController| transform(&shared, &mut buf, chunk, &out),
        )
    };
    let cancel = {
        let shared = shared.clone();
        Closure::<dyn FnMut(JsValue)>::new(move |_| {
            shared.gone.set(true);
            if let Some(stop) = shared.stop.borrow().as_ref() {
                stop.abort();
            }
        })
    };
    let transformer = js_sys::Object::new();
    js_sys::Reflect::set(&transformer, &"start".into(), start.as_ref())?;
    js_sys::Reflect::set(&transformer, &"transform".into(), transform_cb.as_ref())?;
    js_sys::Reflect::set(&transformer, &"cancel".into(), cancel.as_ref())?;
    let stream = web_sys::TransformStream::new_with_transformer(&transformer)?;
    // `start` ran in the constructor.
    let out = controller.borrow_mut().take().ok_or_else(|| worker::Error::from("TransformStream did not start"))?;
    Ok(ClientStream { stream, out, _transform: transform_cb, _cancel: cancel })
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
    let shared = Rc::new(Shared { driver: RefCell::new(None), stop: RefCell::new(None), gone: Cell::new(false) });
    let client = client_stream(&shared)?;
    let readable = client.stream.readable();
    ctx.wait_until(async move {
        let StreamJob { gw, mut log, primary } = job;
        let mut driver = relay;
        let writable = client.stream.writable();
        loop {
            if shared.gone.get() {
                // Dropping the relay (below) aborts the upstream.
                log.outcome = Some(Outcome::ClientClosed);
                break;
            }
            match driver.advance().await {
                Next::Emit(text) => {
                    if log.first_token_ms.is_none() {
                        log.first_token_ms = Some(WorkerClock.now_ms().saturating_sub(started));
                    }
                    if client.out.enqueue_with_chunk(&js_sys::Uint8Array::from(text.as_bytes())).is_err() {
                        shared.gone.set(true);
                    }
                }
                Next::End => break,
                Next::Read => {
                    let Ok(stop) = AbortController::new() else { break };
                    let Some(pipe) = driver.body_mut().pipe_to(&writable, &stop.signal()) else {
                        driver.relay_mut().end(WorkerClock.now_ms());
                        continue;
                    };
                    let deadline = driver.relay().next_deadline();
                    driver.body_mut().set_deadline(deadline);
                    *shared.stop.borrow_mut() = Some(stop);
                    *shared.driver.borrow_mut() = Some(driver);
                    let piped = JsFuture::from(pipe).await;
                    shared.stop.borrow_mut().take();
                    // Only this loop takes the relay back, and nothing else holds it now.
                    let Some(back) = shared.driver.borrow_mut().take() else { return };
                    driver = back;
                    if shared.gone.get() {
                        continue;
                    }
                    settle(&mut driver, piped);
                }
            }
        }
        client.out.terminate();
        let continuation = driver.continuation_attempts();
        end_stream(&gw, driver.relay(), continuation, &mut log, WorkerClock.now_ms());
        drop(driver);
        // The mirror comparison (if any) waits for this.
        primary.set(log.answer.take());
        log.latency_ms = WorkerClock.now_ms().saturating_sub(started);
        log_request(&gw, &log);
        log_events(&gw);
        drop(client);
    });
    Ok(super::web::respond_stream(&head, &readable, request_id, cors)?)
}

/// Tells a relay still reading how its pipe stopped: the body ended, the
/// deadline aborted it, or it broke. (A relay that stopped the pipe itself
/// has nothing to learn.)
fn settle(driver: &mut ClientRelay, piped: std::result::Result<JsValue, JsValue>) {
    let now = WorkerClock.now_ms();
    let timed_out = driver.body_mut().timed_out();
    let relay = driver.relay_mut();
    if !matches!(relay.state(), State::Probation | State::Flowing) {
        return;
    }
    match piped {
        Ok(_) => {
            relay.end(now);
            driver.body_mut().release();
        }
        Err(_) if timed_out => {
            let deadline = relay.next_deadline();
            relay.tick(now.max(deadline));
        }
        Err(e) => relay.broke(&error_text(&e), now),
    }
}
