//! Upstream HTTP on Workers: the runtime's `fetch`, with a deadline that
//! aborts it through its `AbortController` when it passes (`timer.rs`).
//! Redirects are not followed, so a request can only ever reach the
//! configured base URLs.
//!
//! This talks to the Fetch API through `web_sys` rather than `worker::Fetch`:
//! a whole body of known length is read by the runtime (`Response.text()`,
//! native code) instead of chunk by chunk through wasm, and a streamed body
//! is read with one reader and one deadline timer for its whole life; each
//! read is a plain promise, never raced against a timer of its own.

use super::timer::Deadline;
use crate::upstream::{TransportError, Upstream, UpstreamBody, UpstreamHead, UpstreamRequest};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, ReadableStreamDefaultReader, RequestInit, RequestRedirect};

pub struct FetchUpstream;

pub struct FetchBody {
    response: web_sys::Response,
    /// Set while the connection may need aborting (dropped unread).
    controller: Option<AbortController>,
    reader: Option<ReadableStreamDefaultReader>,
    deadline: Deadline,
}

#[wasm_bindgen]
extern "C" {
    /// What `reader.read()` resolves to.
    pub(crate) type ReadResult;
    #[wasm_bindgen(method, getter)]
    pub(crate) fn done(this: &ReadResult) -> bool;
    #[wasm_bindgen(method, getter)]
    pub(crate) fn value(this: &ReadResult) -> JsValue;
}

pub(crate) fn error_text(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    e.as_string().unwrap_or_else(|| "the request failed".to_owned())
}

fn connect(e: JsValue) -> TransportError {
    TransportError::Connect(error_text(&e))
}

/// Awaits `promise` under `deadline`: a rejection after the deadline passed
/// (it aborted the fetch) is a timeout.
async fn wait(promise: js_sys::Promise, deadline: &Deadline) -> Result<JsValue, TransportError> {
    let r = JsFuture::from(promise).await;
    if deadline.timed_out() {
        return Err(TransportError::Timeout);
    }
    r.map_err(connect)
}

impl Upstream for FetchUpstream {
    type Body = FetchBody;

    async fn send(&self, req: &UpstreamRequest, deadline_ms: u64) -> Result<UpstreamHead<FetchBody>, TransportError> {
        let headers = web_sys::Headers::new().map_err(connect)?;
        for (k, v) in &req.headers {
            headers.set(k, v).map_err(connect)?;
        }
        let controller = AbortController::new().map_err(connect)?;
        let init = RequestInit::new();
        init.set_method(req.method);
        init.set_headers(&headers);
        init.set_redirect(RequestRedirect::Manual);
        init.set_signal(Some(&controller.signal()));
        if let Some(body) = &req.body {
            init.set_body(&JsValue::from_str(body));
        }
        let deadline = Deadline::new(controller.clone());
        deadline.set(deadline_ms);
        let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let response = wait(scope.fetch_with_str_and_init(&req.url, &init), &deadline).await?;
        let response: web_sys::Response = response.unchecked_into();
        let status = response.status();
        // Retry hints matter only on a failure: a success reads no header.
        let (retry_after, retry_after_ms) = if (200..300).contains(&status) {
            (None, None)
        } else {
            let h = response.headers();
            let get = |name: &str| h.get(name).ok().flatten();
            (get("retry-after"), get("retry-after-ms"))
        };
        Ok(UpstreamHead {
            status,
            retry_after,
            retry_after_ms,
            body: FetchBody { response, controller: Some(controller), reader: None, deadline },
        })
    }
}

impl FetchBody {
    /// The body's reader (made on first use), for a caller that reads it
    /// with callbacks of its own; `None`: the body has no stream.
    pub fn reader(&mut self) -> Option<ReadableStreamDefaultReader> {
        if self.reader.is_none() {
            self.reader = Some(self.response.body()?.get_reader().unchecked_into());
        }
        self.reader.clone()
    }

    /// Moves the deadline of what is read next (cheap: no clock read or timer
    /// call while the armed timeout fires no later than `deadline_ms`).
    pub fn set_deadline(&self, deadline_ms: u64) {
        self.deadline.set(deadline_ms);
    }

    /// Whether the deadline passed (and aborted the fetch).
    pub fn timed_out(&self) -> bool {
        self.deadline.timed_out()
    }
}

impl UpstreamBody for FetchBody {
    async fn chunk(&mut self, deadline_ms: u64) -> Result<Option<Vec<u8>>, TransportError> {
        let Some(reader) = self.reader() else {
            return Ok(None);
        };
        self.deadline.set(deadline_ms);
        let result: ReadResult = wait(reader.read(), &self.deadline).await?.unchecked_into();
        if result.done() {
            // Read to the end: nothing left to abort, nothing to wait for.
            self.release();
            return Ok(None);
        }
        let bytes = result
            .value()
            .dyn_into::<js_sys::Uint8Array>()
            .map_err(|_| TransportError::Connect("the upstream body yielded something other than bytes".to_owned()))?;
        Ok(Some(bytes.to_vec()))
    }

    async fn text(mut self, deadline_ms: u64, max_bytes: u64) -> Result<String, TransportError> {
        let declared =
            self.response.headers().get("content-length").ok().flatten().and_then(|l| l.trim().parse::<u64>().ok());
        match declared {
            // Too large by its own account: not read at all (dropping aborts it).
            Some(n) if n > max_bytes => return Err(TransportError::TooLarge(max_bytes)),
            Some(_) => {}
            // No length: read piece by piece, counting, so that a body without
            // end is never held whole.
            None => {
                let mut bytes = Vec::new();
                while let Some(piece) = self.chunk(deadline_ms).await? {
                    if (bytes.len() + piece.len()) as u64 > max_bytes {
                        return Err(TransportError::TooLarge(max_bytes));
                    }
                    bytes.extend_from_slice(&piece);
                }
                return Ok(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
        // A declared length within bounds: the runtime reads it (native code).
        self.deadline.set(deadline_ms);
        let text = wait(self.response.text().map_err(connect)?, &self.deadline).await?;
        self.controller = None;
        self.deadline.disarm();
        Ok(text.as_string().unwrap_or_default())
    }

    fn release(&mut self) {
        self.controller = None;
        self.deadline.disarm();
    }
}

impl Drop for FetchBody {
    /// A body dropped unread (a failed-over stream, a stalled one) is
    /// aborted, so the upstream connection does not linger.
    fn drop(&mut self) {
        if let Some(controller) = self.controller.take() {
            controller.abort();
        }
    }
}
