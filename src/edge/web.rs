//! The runtime's own Request, Headers and Response, used directly on the
//! request path: workers-rs's wrappers would convert each of them (and parse
//! the URL with the `url` crate) for what the gateway reads in a few calls.
//! This module is the one place that bypasses the `worker` crate; entry
//! points, env, KV and cron still go through it.

use crate::api::ApiError;
use crate::http::{header_value, Reply, HEADER_REQUEST_ID};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// An incoming request and its headers object.
pub struct Incoming {
    pub req: web_sys::Request,
    headers: web_sys::Headers,
}

impl Incoming {
    pub fn new(req: web_sys::Request) -> Incoming {
        let headers = req.headers();
        Incoming { req, headers }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).ok().flatten()
    }

    pub fn method(&self) -> String {
        self.req.method()
    }

    /// The path of the request's URL (no query).
    pub fn path(&self) -> String {
        crate::http::path_of(&self.req.url()).to_owned()
    }

    /// Reads the body, at most `max` bytes. A body that declares its length
    /// (already checked against `max`) is read by the runtime in one piece;
    /// one that does not is counted as it arrives and refused the moment it
    /// passes `max`. `Err(None)`: the body could not be read.
    pub async fn body(&self, max: u64) -> Result<Vec<u8>, Option<ApiError>> {
        if self.header("content-length").is_some() {
            let buf = self.req.array_buffer().map_err(|_| None)?;
            let buf = JsFuture::from(buf).await.map_err(|_| None)?;
            return Ok(js_sys::Uint8Array::new(&buf).to_vec());
        }
        let Some(stream) = self.req.body() else {
            return Ok(Vec::new());
        };
        let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
        let mut out = Vec::new();
        loop {
            let result = JsFuture::from(reader.read()).await.map_err(|_| None)?;
            if js_sys::Reflect::get(&result, &"done".into()).ok().and_then(|d| d.as_bool()) == Some(true) {
                return Ok(out);
            }
            let value = js_sys::Reflect::get(&result, &"value".into()).map_err(|_| None)?;
            let bytes: js_sys::Uint8Array = value.dyn_into().map_err(|_| None)?;
            if out.len() as u64 + u64::from(bytes.length()) > max {
                let _ = reader.cancel();
                return Err(Some(crate::http::too_large(max)));
            }
            out.extend_from_slice(&bytes.to_vec());
        }
    }
}

/// The runtime's Headers with the request id, the CORS headers and the
/// reply's own. Header values are made safe first: setting one never fails.
pub fn headers(request_id: &str, cors: &[(&'static str, String)], own: &[(&'static str, String)]) -> web_sys::Headers {
    // `Headers::new` cannot fail; a fresh object is the fallback all the same.
    let h = web_sys::Headers::new().unwrap_or_else(|_| JsValue::from(js_sys::Object::new()).unchecked_into());
    let _ = h.set(HEADER_REQUEST_ID, request_id);
    for (k, v) in cors.iter().chain(own) {
        let _ = h.set(k, &header_value(v));
    }
    h
}

/// A whole reply as the runtime's Response.
pub fn respond(reply: Reply, request_id: &str, cors: &[(&'static str, String)]) -> Result<web_sys::Response, JsValue> {
    let h = headers(request_id, cors, &reply.headers);
    if !reply.body.is_empty() && !reply.headers.iter().any(|(k, _)| *k == "content-type") {
        let _ = h.set("content-type", "application/json");
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(reply.status);
    init.set_headers(&h);
    let body = (!reply.body.is_empty()).then_some(reply.body.as_str());
    web_sys::Response::new_with_opt_str_and_init(body, &init)
}

/// A streamed reply: `readable` is its body.
pub fn respond_stream(
    head: &Reply,
    readable: &web_sys::ReadableStream,
    request_id: &str,
    cors: &[(&'static str, String)],
) -> Result<web_sys::Response, JsValue> {
    let init = web_sys::ResponseInit::new();
    init.set_status(head.status);
    init.set_headers(&headers(request_id, cors, &head.headers));
    web_sys::Response::new_with_opt_readable_stream_and_init(Some(readable), &init)
}
