//! Relaying a stream to the client: the upstream body is read with one
//! reader whose every `read()` is answered by one synchronous call into the
//! relay, and what it returns is written to a runtime-native pipe
//! (`IdentityTransformStream`) that the client reads.
//!
//! Per chunk that is the runtime's own read promise, one `then` with
//! callbacks made once per stream, and one write: no future woken through
//! the executor, no timer. (Measured on workerd, a `TransformStream` the
//! body is piped through costs more than this: the runtime then crosses
//! into JS twice per chunk, once for the pipe and once for the response.)
//! The driver below runs from `waitUntil` and acts between pumps: it writes
//! the output held back until the first token, tells the relay how the body
//! ended (its end, a break, the deadline), continues a broken answer
//! elsewhere, and writes the request's log line when the stream ends.
//!
//! The pump reads no further while more than `MAX_UNREAD_BYTES` it wrote are
//! unread by the client (it waits for its last write to complete), so a slow
//! client paces the upstream rather than the answer queueing in memory.

use super::clock::WorkerClock;
use super::upstream::{error_text, FetchBody, FetchUpstream, ReadResult};
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
use crate::stream::{Next, ReadEnd, StreamDriver};
use crate::upstream::UpstreamBody;
use std::cell::{Cell, OnceCell, RefCell};
use std::rc::{Rc, Weak};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStreamDefaultReader, WritableStreamDefaultWriter};
use worker::Context;

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

type Callback = Closure<dyn FnMut(JsValue)>;

/// The most a stream writes ahead of its client before the pump stops
/// reading the upstream until the client catches up: a slow client paces
/// the upstream instead of the answer queueing in the isolate's memory.
const MAX_UNREAD_BYTES: usize = 256 * 1024;

/// How a pump stopped.
enum Stopped {
    /// The body ended.
    End,
    /// A read failed (the body broke, or the deadline aborted it).
    Failed(JsValue),
    /// The relay needs no more of this body, or the client left.
    Done,
}

/// The pump: the relay (lent by the driver while it runs), the body's
/// reader, the client's writer, and the callbacks, made once per stream.
struct Pump {
    driver: RefCell<Option<ClientRelay>>,
    reader: RefCell<Option<ReadableStreamDefaultReader>>,
    writer: WritableStreamDefaultWriter,
    /// The read in flight: awaited before the callbacks are dropped.
    pending: RefCell<Option<js_sys::Promise>>,
    /// Resolves the driver's wait for this pump.
    wake: RefCell<Option<js_sys::Function>>,
    stopped: RefCell<Option<Stopped>>,
    /// The client went away (a write was rejected, or the pipe closed).
    gone: Cell<bool>,
    /// The pump waited for the client to take what it was sent.
    waited: Cell<bool>,
    /// Bytes written since the client last caught up, and the last write.
    unread: Cell<usize>,
    last_write: RefCell<Option<js_sys::Promise>>,
    buf: RefCell<Vec<u8>>,
    on_read: OnceCell<Callback>,
    on_fail: OnceCell<Callback>,
    on_ready: OnceCell<Callback>,
    on_gone: OnceCell<Callback>,
}

impl Pump {
    fn new(writer: WritableStreamDefaultWriter) -> Rc<Pump> {
        let pump = Rc::new(Pump {
            driver: RefCell::new(None),
            reader: RefCell::new(None),
            writer,
            pending: RefCell::new(None),
            wake: RefCell::new(None),
            stopped: RefCell::new(None),
            gone: Cell::new(false),
            waited: Cell::new(false),
            unread: Cell::new(0),
            last_write: RefCell::new(None),
            buf: RefCell::new(Vec::new()),
            on_read: OnceCell::new(),
            on_fail: OnceCell::new(),
            on_ready: OnceCell::new(),
            on_gone: OnceCell::new(),
        });
        // The callbacks hold the pump weakly: the driver owns it.
        let callback = |f: fn(&Pump, JsValue)| {
            let weak: Weak<Pump> = Rc::downgrade(&pump);
            Closure::<dyn FnMut(JsValue)>::new(move |v| {
                if let Some(p) = weak.upgrade() {
                    f(&p, v);
                }
            })
        };
        let _ = pump.on_read.set(callback(Pump::chunk));
        let _ = pump.on_fail.set(callback(|p, e| p.stop(Stopped::Failed(e))));
        let _ = pump.on_ready.set(callback(|p, _| p.read()));
        let _ = pump.on_gone.set(callback(|p, _| {
            p.gone.set(true);
            p.stop(Stopped::Done);
        }));
        // The pipe's end errors if the client cancels its side.
        if let Some(on_gone) = pump.on_gone.get() {
            let _ = pump.writer.closed().catch(on_gone);
        }
        pump
    }

    /// Writes `text` to the client; a rejected write means it left.
    fn write(&self, text: &str) {
        let chunk = js_sys::Uint8Array::from(text.as_bytes());
        let written = self.writer.write_with_chunk(&chunk);
        if let Some(on_gone) = self.on_gone.get() {
            let _ = written.catch(on_gone);
        }
        let unread = self.unread.get() + text.len();
        self.unread.set(unread);
        if unread > MAX_UNREAD_BYTES {
            // The pump waits on this one before it reads on.
            *self.last_write.borrow_mut() = Some(written);
        }
    }

    /// Reads the next chunk, or waits for the client to take what it has.
    fn read(&self) {
        if self.gone.get() {
            return self.stop(Stopped::Done);
        }
        let last_write = self.last_write.borrow_mut().take();
        if let Some(written) = last_write {
            // The pipe has no queue limit of its own (its writer's
            // `desiredSize` stays 1 however much is queued), so the pump
            // keeps count: with more than MAX_UNREAD_BYTES unread, it waits
            // until the client has read up to its last write (a pipe's
            // writes complete in order).
            self.unread.set(0);
            // Waiting for the client is not the upstream's silence: until the
            // client catches up only the request's deadline holds.
            if let Some(driver) = self.driver.borrow().as_ref() {
                driver.body().set_deadline(driver.relay().request_deadline());
            }
            self.waited.set(true);
            if let (Some(on_ready), Some(on_gone)) = (self.on_ready.get(), self.on_gone.get()) {
                let _ = written.then2(on_ready, on_gone);
            }
            return;
        }
        if self.waited.replace(false) {
            if let Some(driver) = self.driver.borrow_mut().as_mut() {
                driver.relay_mut().client_caught_up(WorkerClock.now_ms());
                let deadline = driver.relay().next_deadline();
                driver.body().set_deadline(deadline);
            }
        }
        let (Some(reader), Some(on_read), Some(on_fail)) =
            (self.reader.borrow().clone(), self.on_read.get(), self.on_fail.get())
        else {
            return self.stop(Stopped::Done);
        };
        let read = reader.read();
        let _ = read.then2(on_read, on_fail);
        *self.pending.borrow_mut() = Some(read);
    }

    /// One chunk (or the end) of the body.
    fn chunk(&self, result: JsValue) {
        self.pending.borrow_mut().take();
        let result: ReadResult = result.unchecked_into();
        if result.done() {
            return self.stop(Stopped::End);
        }
        let reading = {
            let mut guard = self.driver.borrow_mut();
            let Some(driver) = guard.as_mut() else {
                return self.stop(Stopped::Done);
            };
            let Ok(bytes) = result.value().dyn_into::<js_sys::Uint8Array>() else {
                return self.stop(Stopped::Failed("the upstream body yielded something other than bytes".into()));
            };
            let mut buf = self.buf.borrow_mut();
            buf.resize(bytes.length() as usize, 0);
            bytes.copy_to(&mut buf);
            let ready = driver.feed(&buf, WorkerClock.now_ms());
            if !ready.is_empty() {
                self.write(&ready);
            }
            let reading = driver.reading();
            if reading {
                let deadline = driver.relay().next_deadline();
                driver.body().set_deadline(deadline);
            }
            reading
        };
        if reading {
            self.read();
        } else {
            self.stop(Stopped::Done);
        }
    }

    /// Ends this pump and wakes the driver (once).
    fn stop(&self, how: Stopped) {
        if let Some(wake) = self.wake.borrow_mut().take() {
            *self.stopped.borrow_mut() = Some(how);
            let _ = wake.call0(&JsValue::UNDEFINED);
        }
    }

    /// Lends `driver` to the pump and reads `reader` until the pump stops;
    /// gives the driver back with how it stopped.
    async fn run(&self, driver: ClientRelay, reader: ReadableStreamDefaultReader) -> Option<(ClientRelay, Stopped)> {
        *self.driver.borrow_mut() = Some(driver);
        *self.reader.borrow_mut() = Some(reader);
        let woken = js_sys::Promise::new(&mut |resolve, _| *self.wake.borrow_mut() = Some(resolve));
        self.read();
        let _ = JsFuture::from(woken).await;
        let how = self.stopped.borrow_mut().take().unwrap_or(Stopped::Done);
        self.reader.borrow_mut().take();
        // Only `run` lends the driver (so this is always `Some`), and the
        // pump has stopped using it.
        let driver = self.driver.borrow_mut().take()?;
        Some((driver, how))
    }

    /// Waits for the read in flight (the callbacks must outlive it).
    async fn settled(&self) {
        let pending = self.pending.borrow_mut().take();
        if let Some(read) = pending {
            let _ = JsFuture::from(read).await;
        }
    }
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
) -> Result<web_sys::Response, JsValue> {
    let started = WorkerClock.now_ms().saturating_sub(job.log.latency_ms);
    // A runtime-native pipe: the pump writes into it and the client reads
    // the other end, so the runtime never calls back into wasm to pull.
    let pipe = identity_pipe()?;
    let writer = pipe.writable().get_writer()?;
    ctx.wait_until(async move {
        let StreamJob { gw, mut log, primary } = job;
        let pump = Pump::new(writer);
        let mut driver = relay;
        loop {
            if pump.gone.get() {
                // Dropping the relay (below) aborts the upstream.
                log.outcome = Some(Outcome::ClientClosed);
                break;
            }
            match driver.advance().await {
                Next::Emit(text) => {
                    if log.first_token_ms.is_none() {
                        log.first_token_ms = Some(WorkerClock.now_ms().saturating_sub(started));
                    }
                    pump.write(&text);
                }
                Next::End => break,
                Next::Read => {
                    let Some(reader) = driver.body_mut().reader() else {
                        driver.relay_mut().end(WorkerClock.now_ms());
                        continue;
                    };
                    let deadline = driver.relay().next_deadline();
                    driver.body_mut().set_deadline(deadline);
                    let Some((back, how)) = pump.run(driver, reader).await else { return };
                    driver = back;
                    settle(&mut driver, how);
                }
            }
        }
        let continuation = driver.continuation_attempts();
        end_stream(&gw, driver.relay(), continuation, &mut log, WorkerClock.now_ms());
        // An unfinished body is aborted here; its read in flight then settles.
        drop(driver);
        pump.settled().await;
        let _ = JsFuture::from(pump.writer.close()).await;
        // The mirror comparison (if any) waits for this.
        primary.set(log.answer.take());
        log.latency_ms = WorkerClock.now_ms().saturating_sub(started);
        log_request(&gw, &log);
        log_events(&gw);
    });
    super::web::respond_stream(&head, &pipe.readable(), request_id, cors)
}

/// Tells a relay still reading how its pump stopped: the body ended, the
/// deadline aborted it, or it broke. (A relay that stopped the pump itself,
/// or a client that left, leaves nothing to tell.)
fn settle(driver: &mut ClientRelay, how: Stopped) {
    if !driver.reading() {
        return;
    }
    let how = match how {
        Stopped::Done => return,
        Stopped::End => {
            // Read to the end: nothing left to abort.
            driver.body_mut().release();
            ReadEnd::Ended
        }
        Stopped::Failed(_) if driver.body().timed_out() => ReadEnd::TimedOut,
        Stopped::Failed(e) => ReadEnd::Broke(error_text(&e)),
    };
    driver.stopped(how, WorkerClock.now_ms());
}

/// workerd's `IdentityTransformStream` (a byte pipe implemented in the
/// runtime), or a standard `TransformStream` where it is missing.
fn identity_pipe() -> Result<web_sys::TransformStream, JsValue> {
    let global = js_sys::global();
    if let Ok(ctor) = js_sys::Reflect::get(&global, &"IdentityTransformStream".into()) {
        if let Some(ctor) = ctor.dyn_ref::<js_sys::Function>() {
            if let Ok(pipe) = js_sys::Reflect::construct(ctor, &js_sys::Array::new()) {
                return Ok(pipe.unchecked_into());
            }
        }
    }
    web_sys::TransformStream::new()
}
