//! Upstream HTTP on Workers: `fetch` raced against a timer, aborted through an
//! `AbortController` when the deadline passes. Redirects are not followed, so
//! a request can only ever reach the configured base URLs.

use super::clock::WorkerClock;
use crate::clock::Clock;
use crate::upstream::{TransportError, Upstream, UpstreamBody, UpstreamHead, UpstreamRequest};
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use std::pin::pin;
use std::time::Duration;
use wasm_bindgen::JsValue;
use worker::{
    AbortController, ByteStream, Delay, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response,
};

pub struct FetchUpstream;

pub struct FetchBody {
    response: Response,
    controller: AbortController,
    stream: Option<ByteStream>,
}

fn remaining(deadline_ms: u64) -> Duration {
    Duration::from_millis(deadline_ms.saturating_sub(WorkerClock.now_ms()))
}

impl Upstream for FetchUpstream {
    type Body = FetchBody;

    async fn send(&self, req: &UpstreamRequest, deadline_ms: u64) -> Result<UpstreamHead<FetchBody>, TransportError> {
        let connect = |e: worker::Error| TransportError::Connect(e.to_string());
        let headers = Headers::new();
        for (k, v) in &req.headers {
            headers.set(k, v).map_err(connect)?;
        }
        let mut init = RequestInit::new();
        init.with_method(if req.method == "GET" { Method::Get } else { Method::Post })
            .with_headers(headers)
            .with_redirect(RequestRedirect::Manual)
            .with_body(req.body.as_deref().map(JsValue::from_str));
        let request = Request::new_with_init(&req.url, &init).map_err(connect)?;
        let controller = AbortController::default();
        let signal = controller.signal();
        let fetch = Fetch::Request(request);
        let outcome = {
            let sent = fetch.send_with_signal(&signal);
            let timer = Delay::from(remaining(deadline_ms));
            match select(pin!(sent), pin!(timer)).await {
                Either::Left((r, _)) => Some(r),
                Either::Right(_) => None,
            }
        };
        match outcome {
            Some(Ok(response)) => {
                let h = response.headers();
                let get = |name: &str| h.get(name).ok().flatten();
                Ok(UpstreamHead {
                    status: response.status_code(),
                    retry_after: get("retry-after"),
                    retry_after_ms: get("retry-after-ms"),
                    content_type: get("content-type"),
                    body: FetchBody { response, controller, stream: None },
                })
            }
            Some(Err(e)) => Err(connect(e)),
            None => {
                controller.abort();
                Err(TransportError::Timeout)
            }
        }
    }
}

impl UpstreamBody for FetchBody {
    async fn chunk(&mut self, deadline_ms: u64) -> Result<Option<Vec<u8>>, TransportError> {
        if self.stream.is_none() {
            self.stream = Some(self.response.stream().map_err(|e| TransportError::Connect(e.to_string()))?);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        let outcome = {
            let next = stream.next();
            let timer = Delay::from(remaining(deadline_ms));
            match select(next, pin!(timer)).await {
                Either::Left((r, _)) => Some(r),
                Either::Right(_) => None,
            }
        };
        match outcome {
            Some(Some(Ok(bytes))) => Ok(Some(bytes)),
            Some(Some(Err(e))) => Err(TransportError::Connect(e.to_string())),
            Some(None) => Ok(None),
            // The caller decides what a timeout means (a stall, or a grace
            // period over); the connection is aborted when the body drops.
            None => Err(TransportError::Timeout),
        }
    }

    async fn text(mut self, deadline_ms: u64) -> Result<String, TransportError> {
        let outcome = {
            let read = self.response.text();
            let timer = Delay::from(remaining(deadline_ms));
            match select(pin!(read), pin!(timer)).await {
                Either::Left((r, _)) => Some(r),
                Either::Right(_) => None,
            }
        };
        match outcome {
            Some(Ok(text)) => Ok(text),
            Some(Err(e)) => Err(TransportError::Connect(e.to_string())),
            None => {
                std::mem::take(&mut self.controller).abort();
                Err(TransportError::Timeout)
            }
        }
    }
}

impl Drop for FetchBody {
    /// A body dropped unread (a failed-over stream, a stalled one) is
    /// aborted, so the upstream connection does not linger.
    fn drop(&mut self) {
        let controller = std::mem::take(&mut self.controller);
        controller.abort();
    }
}
