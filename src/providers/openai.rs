//! OpenAI Chat Completions, and any OpenAI-compatible host (Groq, Together,
//! Mistral, vLLM, Ollama, DeepSeek...) addressed by its base URL.
//!
//! The client already speaks this format, so the request goes out as the
//! client sent it, with `model` replaced by the target's upstream model and the
//! gateway's own options removed; unknown fields pass through. A streamed
//! request always asks for `stream_options.include_usage`, so that every
//! streamed answer's tokens are known; the usage chunk reaches the client
//! only if it asked for it.
//!
//! Answers pass through too: a whole answer's body as it came (read
//! leniently for its model and usage), and each stream event's `data` text
//! ([`StreamDecoder`] reads what the gateway must know from it).

use super::common::error_object;
use super::{clip, request_headers, Outbound};
use crate::api::{ApiError, ChatCompletion, ChatRequest, Choice, CompletionView, NotAnAnswer, ResponseMessage};
use crate::api::{FunctionCall, Outgoing, StreamOptions, ToolCall, Usage};
use crate::event::{Decode, Event};
use crate::json::Dig;
use crate::json_view::{deserialize_view, text, View};
use crate::sse::SseEvent;
use crate::taxonomy::{looks_like_content_policy, looks_like_context_length, ErrorKind, UpstreamError};
use crate::upstream::UpstreamRequest;
use serde::de::{IgnoredAny, MapAccess};
use serde_json::Value;
use std::borrow::Cow;

pub fn build_request(out: &Outbound, req: &ChatRequest) -> Result<UpstreamRequest, ApiError> {
    let headers = request_headers(out);
    let body = body_for(req, out.model)?;
    Ok(UpstreamRequest {
        method: "POST",
        url: format!("{}/chat/completions", out.provider.base_url),
        headers,
        body: Some(body),
    })
}

/// The request body with `model` set to the upstream model, and usage asked
/// for when it streams. `switchyard` options are never serialised (see
/// `ChatRequest::gateway`); the request is written where it lies, not copied.
fn body_for(req: &ChatRequest, model: &str) -> Result<String, ApiError> {
    let mut stream_options = req.stream_options.clone();
    if req.is_stream() {
        let mut opts =
            stream_options.take().unwrap_or(StreamOptions { include_usage: None, extra: Default::default() });
        opts.include_usage = Some(true);
        stream_options = Some(opts);
    }
    serde_json::to_string(&Outgoing { model, stream_options, request: req })
        .map_err(|e| ApiError::new(500, "server_error", format!("could not encode the upstream request: {e}")))
}

/// Reads a whole answer, leniently: content as a string or as text parts,
/// usage with missing or `null` parts, missing `index` or `total_tokens`,
/// extra fields. An `error` object in a 2xx body is the provider's error.
pub fn parse_response(body: &str) -> Result<ChatCompletion, UpstreamError> {
    let c = match CompletionView::read(body) {
        Ok(c) => c,
        Err(NotAnAnswer::Error(v)) => return Err(stream_error(&v, body)),
        Err(NotAnAnswer::NoChoices) => {
            return Err(UpstreamError::new(ErrorKind::Malformed, "the response has no choices"))
        }
        Err(NotAnAnswer::Unreadable(e)) => {
            return Err(UpstreamError::new(ErrorKind::Malformed, format!("not a chat.completion: {e}")))
        }
    };
    let tool_calls: Vec<ToolCall> = c
        .tool_calls
        .iter()
        .map(|(id, name, arguments)| ToolCall {
            id: id.clone(),
            kind: "function".to_owned(),
            function: FunctionCall { name: name.clone(), arguments: arguments.clone() },
        })
        .collect();
    Ok(ChatCompletion {
        id: c.id,
        object: "chat.completion".to_owned(),
        created: c.created,
        model: c.model,
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".to_owned(),
                content: Some(c.text),
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                refusal: None,
                reasoning_content: c.reasoning,
            },
            finish_reason: c.finish_reason,
            logprobs: None,
        }],
        usage: c.usage,
        system_fingerprint: None,
    })
}

/// Classifies an error body `{error: {message, type, code}}`; what is not
/// there (or not a string) falls back to the HTTP status.
pub fn classify_error(status: u16, body: &str) -> UpstreamError {
    let parsed = error_object(body);
    let detail = parsed.at("error");
    let message =
        detail.at("message").as_str().map_or_else(|| format!("upstream answered HTTP {status}"), str::to_owned);
    let code = detail.at("code").as_str().unwrap_or_default();
    let kind_field = detail.at("type").as_str().unwrap_or_default();
    let mut kind = ErrorKind::from_status(status);
    if (400..500).contains(&status) && status != 429 && status != 401 && status != 403 && status != 404 {
        if code == "context_length_exceeded" || looks_like_context_length(&message) {
            kind = ErrorKind::ContextLength;
        } else if code == "content_policy_violation"
            || code == "content_filter"
            || kind_field == "content_filter"
            || looks_like_content_policy(&message)
        {
            kind = ErrorKind::ContentPolicy;
        }
    }
    if status == 404 && code != "model_not_found" && !message.to_ascii_lowercase().contains("model") {
        // A 404 that is not about the model means a wrong base URL: still the operator's to fix.
        kind = ErrorKind::NotFound;
    }
    UpstreamError::new(kind, clip(&message))
}

// ---------------------------------------------------------------- streaming

/// Reads an OpenAI stream that passes through: every chunk is forwarded
/// verbatim ([`Event::Forward`] with its `data` text, never re-encoded),
/// followed by the facts the gateway reads from it: each choice's text,
/// reasoning (`delta.reasoning_content`, or `delta.reasoning` as newer vLLM
/// names it), tool call fragments and finish reason, and usage.
/// `data: [DONE]` ends the stream; a top-level `error` object mid-stream is
/// an [`Event::Error`]. A usage-only chunk (`choices: []`) is not forwarded
/// unless the client asked for usage (the gateway asks on its behalf).
pub struct StreamDecoder {
    forward: bool,
    client_wants_usage: bool,
    started: bool,
    done: bool,
}

impl StreamDecoder {
    pub fn new(forward: bool, client_wants_usage: bool) -> Self {
        StreamDecoder { forward, client_wants_usage, started: false, done: false }
    }
}

/// What the gateway reads from a streamed chunk, borrowed from its text.
#[derive(Default)]
struct ChunkView<'a> {
    error: bool,
    id: Option<Cow<'a, str>>,
    model: Option<Cow<'a, str>>,
    /// Read by [`Usage::read`] (rare: one chunk a stream).
    usage: Option<Value>,
    choices: Option<Vec<ChoiceView<'a>>>,
}

impl<'de> View<'de> for ChunkView<'de> {
    const FIELDS: &'static [&'static str] = &["error", "id", "model", "usage", "choices"];
    fn field<A: MapAccess<'de>>(&mut self, i: usize, map: &mut A) -> Result<(), A::Error> {
        match i {
            0 => self.error = map.next_value::<Option<IgnoredAny>>()?.is_some(),
            1 => self.id = text(map)?,
            2 => self.model = text(map)?,
            3 => self.usage = map.next_value()?,
            _ => self.choices = map.next_value()?,
        }
        Ok(())
    }
}

#[derive(Default)]
struct ChoiceView<'a> {
    index: Option<u32>,
    delta: Option<DeltaView<'a>>,
    finish_reason: Option<Cow<'a, str>>,
}

impl<'de> View<'de> for ChoiceView<'de> {
    const FIELDS: &'static [&'static str] = &["index", "delta", "finish_reason"];
    fn field<A: MapAccess<'de>>(&mut self, i: usize, map: &mut A) -> Result<(), A::Error> {
        match i {
            0 => self.index = map.next_value()?,
            1 => self.delta = map.next_value()?,
            _ => self.finish_reason = text(map)?,
        }
        Ok(())
    }
}

#[derive(Default)]
struct DeltaView<'a> {
    content: Option<Cow<'a, str>>,
    reasoning_content: Option<Cow<'a, str>>,
    reasoning: Option<Cow<'a, str>>,
    tool_calls: Option<Vec<ToolView<'a>>>,
}

impl<'de> View<'de> for DeltaView<'de> {
    const FIELDS: &'static [&'static str] = &["content", "reasoning_content", "reasoning", "tool_calls"];
    fn field<A: MapAccess<'de>>(&mut self, i: usize, map: &mut A) -> Result<(), A::Error> {
        match i {
            0 => self.content = text(map)?,
            1 => self.reasoning_content = text(map)?,
            2 => self.reasoning = text(map)?,
            _ => self.tool_calls = map.next_value()?,
        }
        Ok(())
    }
}

/// A tool call's piece; `function` holds its name and arguments.
#[derive(Default)]
struct ToolView<'a> {
    index: Option<u32>,
    id: Option<Cow<'a, str>>,
    function: Option<FunctionView<'a>>,
}

impl<'de> View<'de> for ToolView<'de> {
    const FIELDS: &'static [&'static str] = &["index", "id", "function"];
    fn field<A: MapAccess<'de>>(&mut self, i: usize, map: &mut A) -> Result<(), A::Error> {
        match i {
            0 => self.index = map.next_value()?,
            1 => self.id = text(map)?,
            _ => self.function = map.next_value()?,
        }
        Ok(())
    }
}

#[derive(Default)]
struct FunctionView<'a> {
    name: Option<Cow<'a, str>>,
    arguments: Option<Cow<'a, str>>,
}

impl<'de> View<'de> for FunctionView<'de> {
    const FIELDS: &'static [&'static str] = &["name", "arguments"];
    fn field<A: MapAccess<'de>>(&mut self, i: usize, map: &mut A) -> Result<(), A::Error> {
        match i {
            0 => self.name = text(map)?,
            _ => self.arguments = text(map)?,
        }
        Ok(())
    }
}

deserialize_view!(ChunkView, ChoiceView, DeltaView, ToolView, FunctionView);

impl Decode for StreamDecoder {
    fn decode(&mut self, ev: &SseEvent, out: &mut Vec<Event>) {
        if crate::event::at_done_marker(&mut self.done, ev, out) {
            return;
        }
        let chunk = serde_json::from_str::<ChunkView>(&ev.data);
        let usage = chunk.as_ref().ok().and_then(|c| c.usage.as_ref()).filter(|u| u.is_object()).map(Usage::read);
        let c = match chunk {
            Ok(c) if !c.error && (c.choices.is_some() || usage.is_some()) => c,
            Ok(_) | Err(_) => {
                // An error object (or not a chunk at all).
                match serde_json::from_str::<Value>(&ev.data) {
                    Ok(v) if !v.at("error").is_null() => out.push(Event::Error(stream_error(&v, &ev.data))),
                    _ => out.push(Event::Malformed),
                }
                return;
            }
        };
        let choices = c.choices.unwrap_or_default();
        if self.forward && (!choices.is_empty() || self.client_wants_usage) {
            out.push(Event::Forward { event: None, data: ev.data.clone() });
        }
        if !self.started {
            self.started = true;
            out.push(Event::Start { id: c.id.map(Cow::into_owned), model: c.model.map(Cow::into_owned) });
        }
        for (pos, ch) in choices.into_iter().enumerate() {
            let choice = ch.index.unwrap_or(pos as u32);
            if let Some(d) = ch.delta {
                if let Some(r) = d.reasoning_content.or(d.reasoning).filter(|r| !r.is_empty()) {
                    out.push(Event::Reasoning { choice, text: r.into_owned() });
                }
                if let Some(t) = d.content.filter(|t| !t.is_empty()) {
                    out.push(Event::Text { choice, text: t.into_owned() });
                }
                for (k, t) in d.tool_calls.into_iter().flatten().enumerate() {
                    let index = t.index.unwrap_or(k as u32);
                    let f = t.function;
                    let (name, args) = f.map_or((None, None), |f| (f.name, f.arguments));
                    if let Some(id) = t.id {
                        let name = name.map(Cow::into_owned).unwrap_or_default();
                        out.push(Event::ToolStart { choice, index, id: id.into_owned(), name });
                    }
                    if let Some(a) = args.filter(|a| !a.is_empty()) {
                        out.push(Event::ToolArgs { choice, index, args: a.into_owned() });
                    }
                }
            }
            if let Some(reason) = ch.finish_reason {
                out.push(Event::Finish { choice, reason: reason.into_owned() });
            }
        }
        if let Some(u) = usage {
            out.push(Event::Usage(u));
        }
    }
}

/// Classifies an `{"error":{...}}` object sent inside a stream (or in a 2xx
/// body). There is no HTTP status to go by, so one is read from the error
/// where a host puts it there (`code: 429`, `status: 503`), else implied by
/// its `code` / `type`, else taken as 500; [`classify_error`] does the rest.
pub(crate) fn stream_error(body: &Value, data: &str) -> UpstreamError {
    let e = body.at("error");
    let status = [e.at("code"), e.at("status"), body.at("status")]
        .iter()
        .find_map(|v| v.as_u64())
        .filter(|s| (400..600).contains(s))
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or_else(|| implied_status(e));
    let mut err = classify_error(status, data);
    if !e.at("message").is_string() {
        err.message = "the upstream stream carried an error".to_owned();
    }
    err
}

/// The HTTP status an error's `code` (checked first) or `type` stands for.
fn implied_status(e: &Value) -> u16 {
    for name in [e.at("code").as_str(), e.at("type").as_str()].into_iter().flatten() {
        match name {
            "rate_limit_exceeded" | "rate_limit_error" | "insufficient_quota" | "tokens" | "requests" => return 429,
            "invalid_api_key" | "authentication_error" | "invalid_authentication" => return 401,
            "permission_error" | "permission_denied" | "insufficient_permissions" => return 403,
            "model_not_found" | "not_found_error" => return 404,
            "context_length_exceeded" | "content_policy_violation" | "content_filter" | "invalid_request_error" => {
                return 400
            }
            "overloaded_error" | "server_overloaded" | "service_unavailable" => return 503,
            _ => {}
        }
    }
    // `server_error` covers both 500 and 503; only the message tells them apart.
    let message = e.at("message").as_str().unwrap_or_default().to_ascii_lowercase();
    if message.contains("overloaded") {
        503
    } else {
        500
    }
}

/// Test helpers shared by the adapters' stream tests: a decoder run over a
/// recorded stream, with the chunks the client would get (forwarded as they
/// are, or written by the relay's encoder).
#[cfg(test)]
pub(crate) mod stream_test {
    use crate::api::Usage;
    use crate::event::Emit;
    use crate::event::{Decode, Event};
    use crate::inbound::chat::ChatEmitter;
    use crate::sse::{SseEvent, SseParser};
    use crate::taxonomy::UpstreamError;
    use serde_json::Value;

    /// One thing the client's stream gets from one upstream event.
    #[derive(Debug, Clone, PartialEq)]
    pub enum StreamItem {
        Chunk { json: String, text: String, tool_delta: bool, finish_reason: Option<String> },
        Done,
        Error(UpstreamError),
        Malformed,
    }

    impl StreamItem {
        pub fn has_content(&self) -> bool {
            matches!(self, StreamItem::Chunk { text, tool_delta, .. } if !text.is_empty() || *tool_delta)
        }
    }

    pub fn events(text: &str) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(text.as_bytes(), &mut out).unwrap();
        p.finish(&mut out);
        out
    }

    /// A decoder and the encoder the relay would write its chunks with.
    pub struct Translator {
        dec: Box<dyn Decode>,
        enc: ChatEmitter,
        usage: Option<Usage>,
    }

    impl Translator {
        pub fn new(dec: Box<dyn Decode>, include_usage: bool) -> Self {
            let enc = ChatEmitter::new("chatcmpl-gateway".into(), 1_700_000_000, "gpt-4o-mini".into(), include_usage);
            Translator { dec, enc, usage: None }
        }

        /// The same, with chunks named after `model` until the stream names one.
        pub fn named(dec: Box<dyn Decode>, model: &str, include_usage: bool) -> Self {
            let mut t = Self::new(dec, include_usage);
            t.enc.model = model.to_owned();
            t
        }

        pub fn usage(&self) -> Option<Usage> {
            self.usage.clone()
        }

        pub fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<StreamItem>) {
            let mut facts = Vec::new();
            self.dec.decode(ev, &mut facts);
            let forwarded = facts.iter().find_map(|f| match f {
                Event::Forward { data, .. } => Some(data.clone()),
                _ => None,
            });
            let passthrough = forwarded.is_some();
            if let Some(json) = forwarded {
                let mut text = String::new();
                let mut tool_delta = false;
                let mut finish_reason = None;
                for f in &facts {
                    match f {
                        Event::Text { text: t, .. } => text.push_str(t),
                        Event::ToolStart { .. } | Event::ToolArgs { .. } => tool_delta = true,
                        Event::Finish { reason, .. } => finish_reason = finish_reason.or(Some(reason.clone())),
                        _ => {}
                    }
                }
                out.push(StreamItem::Chunk { json, text, tool_delta, finish_reason });
            }
            for f in facts {
                match f {
                    Event::Forward { .. } => {}
                    Event::Error(e) => out.push(StreamItem::Error(e)),
                    Event::Malformed => out.push(StreamItem::Malformed),
                    Event::Done => {
                        if !passthrough {
                            let mut sse = String::new();
                            self.enc.complete(&mut sse);
                            push_chunks(&sse, out);
                        }
                        out.push(StreamItem::Done);
                    }
                    other => {
                        if let Event::Usage(u) = &other {
                            self.usage = Some(u.clone());
                        }
                        if !passthrough {
                            let mut sse = String::new();
                            self.enc.emit(&other, &mut sse);
                            push_chunks(&sse, out);
                        }
                    }
                }
            }
        }
    }

    /// The encoder's SSE output as chunk items.
    fn push_chunks(sse: &str, out: &mut Vec<StreamItem>) {
        for data in sse.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).filter(|d| *d != "[DONE]") {
            let v: Value = serde_json::from_str(data).unwrap();
            let choices = v["choices"].as_array().cloned().unwrap_or_default();
            let text: String = choices.iter().filter_map(|c| c["delta"]["content"].as_str()).collect();
            let tool_delta = choices.iter().any(|c| c["delta"].get("tool_calls").is_some());
            let finish_reason = choices.iter().find_map(|c| c["finish_reason"].as_str()).map(str::to_owned);
            out.push(StreamItem::Chunk { json: data.to_owned(), text, tool_delta, finish_reason });
        }
    }

    pub fn run(t: &mut Translator, text: &str) -> Vec<StreamItem> {
        let mut out = Vec::new();
        for ev in events(text) {
            t.on_event(&ev, &mut out);
        }
        out
    }

    /// A reassembled tool call.
    #[derive(Debug, Default, Clone, PartialEq)]
    pub struct Call {
        pub id: String,
        pub name: String,
        pub arguments: String,
    }

    impl Call {
        pub fn args(&self) -> Value {
            serde_json::from_str(&self.arguments).unwrap_or_else(|e| panic!("{}: {e}", self.arguments))
        }
    }

    /// What a client would reassemble from the items.
    #[derive(Debug, Default)]
    pub struct Summary {
        pub text: String,
        pub calls: Vec<Call>,
        pub finish: Vec<String>,
        pub chunks: Vec<Value>,
        pub usage_chunks: Vec<Value>,
        pub dones: usize,
        pub malformed: usize,
        pub errors: Vec<crate::taxonomy::UpstreamError>,
    }

    /// Checks every chunk's shape and the single `Done` at the very end (when
    /// there is one), and reassembles text and tool calls from the JSON.
    pub fn summarise(items: &[StreamItem]) -> Summary {
        let mut s = Summary::default();
        for (i, item) in items.iter().enumerate() {
            match item {
                StreamItem::Chunk { json, text, tool_delta, finish_reason } => {
                    let v: Value = serde_json::from_str(json).unwrap();
                    assert_chunk(&v);
                    let choices = v["choices"].as_array().unwrap();
                    let mut json_text = String::new();
                    let mut has_calls = false;
                    for c in choices {
                        json_text.push_str(c["delta"]["content"].as_str().unwrap_or_default());
                        for tc in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
                            has_calls = true;
                            let idx = tc["index"].as_u64().unwrap() as usize;
                            if s.calls.len() <= idx {
                                s.calls.resize(idx + 1, Call::default());
                            }
                            let call = &mut s.calls[idx];
                            if let Some(id) = tc["id"].as_str() {
                                assert!(call.id.is_empty(), "a second id for call {idx}");
                                assert_eq!(tc["type"], "function");
                                call.id = id.to_owned();
                            }
                            if let Some(n) = tc["function"]["name"].as_str() {
                                call.name = n.to_owned();
                            }
                            call.arguments.push_str(tc["function"]["arguments"].as_str().unwrap_or_default());
                        }
                    }
                    assert_eq!(&json_text, text, "{json}");
                    assert_eq!(*tool_delta, has_calls, "{json}");
                    let json_finish = choices.iter().find_map(|c| c["finish_reason"].as_str());
                    assert_eq!(json_finish, finish_reason.as_deref(), "{json}");
                    s.text.push_str(text);
                    s.finish.extend(finish_reason.clone());
                    if choices.is_empty() {
                        assert!(v["usage"].is_object(), "{json}");
                        s.usage_chunks.push(v.clone());
                    }
                    s.chunks.push(v);
                }
                StreamItem::Done => {
                    assert_eq!(i, items.len() - 1, "Done is the last item");
                    s.dones += 1;
                }
                StreamItem::Error(e) => s.errors.push(e.clone()),
                StreamItem::Malformed => s.malformed += 1,
            }
        }
        for (i, c) in s.calls.iter().enumerate() {
            assert!(!c.id.is_empty() && !c.name.is_empty(), "call {i}: {c:?}");
        }
        s
    }

    /// A valid `chat.completion.chunk`.
    pub fn assert_chunk(v: &Value) {
        assert_eq!(v["object"], "chat.completion.chunk", "{v}");
        assert!(v["id"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
        assert!(v["model"].is_string(), "{v}");
        assert!(v["created"].is_u64(), "{v}");
        for c in v["choices"].as_array().unwrap() {
            assert!(c["index"].is_u64(), "{v}");
            assert!(c["delta"].is_object(), "{v}");
            assert!(c.get("finish_reason").is_some(), "{v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::stream_test::{self as st, summarise, StreamItem};
    use super::*;
    use crate::config::Config;
    use crate::sse::SseEvent;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/openai/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }
    fn envelope(name: &str) -> (u16, String) {
        let v: Value = serde_json::from_str(&fixture(name)).unwrap();
        (v["status"].as_u64().unwrap() as u16, v["body"].to_string())
    }
    fn config() -> Config {
        Config::from_json(
            r#"{"providers":{"oa":{"format":"openai","base_url":"https://api.example.com/v1","key_secret":"K"}},
                "routes":{"chat":{"targets":[{"provider":"oa","model":"gpt-4o-mini"}]}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn request_swaps_model_and_keeps_every_other_field() {
        let cfg = config();
        let req = ChatRequest::parse(fixture("chat_request.json").replace("gpt-4o-mini", "chat").as_bytes()).unwrap();
        let out = Outbound { provider: &cfg.providers[0], model: "gpt-4o-mini-2024-07-18", api_key: Some("sk-test") };
        let r = build_request(&out, &req).unwrap();
        assert_eq!(r.url, "https://api.example.com/v1/chat/completions");
        assert!(r.headers.contains(&("authorization".into(), "Bearer sk-test".into())));
        let sent: Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
        let mut expected: Value = serde_json::from_str(&fixture("chat_request.json")).unwrap();
        expected["model"] = "gpt-4o-mini-2024-07-18".into();
        if expected["stream"] == true {
            // Every stream asks for usage, whatever the client asked.
            expected["stream_options"]["include_usage"] = true.into();
        }
        // Numbers are re-encoded as floats: `1` becomes `1.0`, the same JSON number.
        expected["top_p"] = 1.0.into();
        assert_eq!(sent, expected);

        // The model and stream options are written once, the target's.
        for (stream, opts, want) in [
            (true, r#","stream_options":{"x":1}"#, serde_json::json!({"include_usage": true, "x": 1})),
            (true, "", serde_json::json!({"include_usage": true})),
            (false, r#","stream_options":{"include_usage":false}"#, serde_json::json!({"include_usage": false})),
            (false, "", Value::Null),
        ] {
            let body =
                format!(r#"{{"model":"chat","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}{opts}}}"#);
            let r = build_request(&out, &ChatRequest::parse(body.as_bytes()).unwrap()).unwrap();
            let text = r.body.unwrap();
            assert_eq!(
                (text.matches("\"model\"").count(), text.matches("stream_options").count()),
                (1, usize::from(!want.is_null())),
                "{text}"
            );
            let sent: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                (&sent["model"], &sent["stream_options"]),
                (&Value::from("gpt-4o-mini-2024-07-18"), &want),
                "{body}"
            );
        }
    }

    #[test]
    fn fields_the_gateway_does_not_read_go_on_in_the_clients_order() {
        let cfg = config();
        let out = Outbound { provider: &cfg.providers[0], model: "m", api_key: None };
        let body = r#"{"zeta":1,"model":"chat","alpha":2,"tools":[{"type":"function","function":{"name":"f"}}],
            "messages":[{"role":"user","content":"hi"}],"mid":{"b":1,"a":2},"tool_choice":"auto","beta":3}"#;
        let text = build_request(&out, &ChatRequest::parse(body.as_bytes()).unwrap()).unwrap().body.unwrap();
        let at = |k: &str| text.find(&format!("\"{k}\"")).unwrap_or_else(|| panic!("{k} missing: {text}"));
        assert!(at("zeta") < at("alpha") && at("alpha") < at("mid") && at("mid") < at("beta"), "{text}");
        assert!(text.contains(r#""mid":{"b":1,"a":2}"#), "objects inside keep their order too: {text}");
    }

    #[test]
    fn parses_responses() {
        let c = parse_response(&fixture("chat_response.json")).unwrap();
        assert_eq!(c.model, "gpt-4o-mini-2024-07-18");
        assert_eq!(c.usage.as_ref().unwrap().total_tokens, 29);
        let c = parse_response(&fixture("chat_response_tool_calls.json")).unwrap();
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(c.choices[0].message.tool_calls.as_ref().unwrap()[0].function.name, "get_current_weather");
        assert_eq!(parse_response("{\"id\":1}").unwrap_err().kind, ErrorKind::Malformed);
        assert_eq!(parse_response("<html>").unwrap_err().kind, ErrorKind::Malformed);
    }

    #[test]
    fn valid_but_unusual_answers_are_read_leniently() {
        let base: Value = serde_json::from_str(&fixture("chat_response.json")).unwrap();
        let variant = |f: &dyn Fn(&mut Value)| {
            let mut v = base.clone();
            f(&mut v);
            parse_response(&v.to_string())
        };
        // Content as an array of text parts.
        let c = variant(&|v| {
            v["choices"][0]["message"]["content"] =
                serde_json::json!([{"type":"text","text":"a"},{"type":"text","text":"b"}])
        })
        .unwrap();
        assert_eq!(c.choices[0].message.content.as_deref(), Some("ab"));
        // cached_tokens: null, missing total_tokens, missing index, extra fields anywhere.
        let c = variant(&|v| {
            v["usage"]["prompt_tokens_details"] = serde_json::json!({"cached_tokens": null});
            v["usage"].as_object_mut().unwrap().remove("total_tokens");
            v["choices"][0].as_object_mut().unwrap().remove("index");
            v["x_extra"] = serde_json::json!({"a": [1]});
            v["choices"][0]["message"]["x_extra"] = serde_json::json!(true);
        })
        .unwrap();
        let u = c.usage.unwrap();
        assert_eq!((u.total_tokens, u.prompt_tokens_details), (u.prompt_tokens + u.completion_tokens, None));
        // No usage at all, a float count, a reasoning text.
        let c = variant(&|v| {
            v.as_object_mut().unwrap().remove("usage");
            v["choices"][0]["message"]["reasoning_content"] = "think".into();
        })
        .unwrap();
        assert_eq!((c.usage, c.choices[0].message.reasoning_content.as_deref()), (None, Some("think")));
        let c = variant(&|v| v["usage"]["completion_tokens"] = serde_json::json!(9.0)).unwrap();
        assert_eq!(c.usage.unwrap().completion_tokens, 9);
        // A 200 whose body is an error is the provider's error, not a malformed answer.
        let e = parse_response(
            r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::RateLimited);
    }

    #[test]
    fn classifies_recorded_errors() {
        let cases = [
            ("error_400_context_length_exceeded.json", ErrorKind::ContextLength),
            ("error_401_invalid_api_key.json", ErrorKind::Auth),
            ("error_429_rate_limit_exceeded.json", ErrorKind::RateLimited),
            ("error_500_server_error.json", ErrorKind::Server),
            ("error_503_overloaded.json", ErrorKind::Overloaded),
        ];
        for (file, kind) in cases {
            let (status, body) = envelope(file);
            assert_eq!(classify_error(status, &body).kind, kind, "{file}");
        }
        let policy = r#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#;
        let e = classify_error(400, policy);
        assert_eq!(e.kind, ErrorKind::ContentPolicy);
        assert!(e.message.contains("safety system"));
        assert_eq!(classify_error(400, "{\"error\":{\"message\":\"bad temperature\"}}").kind, ErrorKind::BadRequest);
        assert_eq!(classify_error(502, "<html>bad gateway</html>").kind, ErrorKind::Server);
    }

    #[test]
    fn an_error_body_is_read_field_by_field() {
        // Hosts that copy OpenAI's envelope loosely: a numeric code, a missing
        // message. What is there still counts; what is not falls back.
        let e = classify_error(400, r#"{"error":{"message":"prompt too long: context length exceeded","code":400}}"#);
        assert_eq!(e.kind, ErrorKind::ContextLength);
        let e = classify_error(400, r#"{"error":{"type":"content_filter","message":7}}"#);
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::ContentPolicy, "upstream answered HTTP 400"));
        let e = classify_error(404, r#"{"error":"no such model"}"#);
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::NotFound, "upstream answered HTTP 404"));
    }

    fn tr(include_usage: bool) -> st::Translator {
        st::Translator::new(Box::new(StreamDecoder::new(true, include_usage)), include_usage)
    }

    #[test]
    fn recorded_streams_pass_through_byte_for_byte() {
        let cases = [
            ("chat_stream_text_usage.sse", "Hello! How can I help you today?", "stop", (19, 10, 29)),
            ("chat_stream_tool_calls.sse", "", "tool_calls", (44, 16, 60)),
            ("chat_stream_finish_length.sse", "{\"", "length", (79, 1, 80)),
        ];
        for (file, text, finish, (p, c, t)) in cases {
            let sse = fixture(file);
            let mut tr = tr(true);
            let items = st::run(&mut tr, &sse);
            let s = summarise(&items);
            assert_eq!(s.text, text, "{file}");
            assert_eq!(s.finish, [finish], "{file}");
            assert_eq!((s.dones, s.malformed, s.errors.len()), (1, 0, 0), "{file}");
            assert!(matches!(items.last(), Some(StreamItem::Done)), "{file}");
            let u = tr.usage().unwrap();
            assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (p, c, t), "{file}");
            assert_eq!(s.usage_chunks.len(), 1, "{file}");
            // Every chunk is the upstream's data text, unchanged and in order.
            let data: Vec<String> = st::events(&sse).into_iter().map(|e| e.data).filter(|d| d != "[DONE]").collect();
            let jsons: Vec<&String> = items
                .iter()
                .filter_map(|i| match i {
                    StreamItem::Chunk { json, .. } => Some(json),
                    _ => None,
                })
                .collect();
            assert_eq!(jsons.len(), data.len(), "{file}");
            for (j, d) in jsons.iter().zip(&data) {
                assert_eq!(*j, d, "{file}");
            }
        }
        let s = summarise(&st::run(&mut tr(false), &fixture("chat_stream_tool_calls.sse")));
        assert_eq!(s.calls.len(), 1);
        assert_eq!(s.calls[0].id, "call_4XzlGBLtUe9dy3GVNV4jhq7h");
        assert_eq!(s.calls[0].name, "get_weather");
        assert_eq!(s.calls[0].args(), serde_json::json!({"city": "New York City"}));
    }

    #[test]
    fn a_streamed_request_always_asks_for_usage_and_the_client_gets_it_only_if_it_asked() {
        let cfg = config();
        let out = Outbound { provider: &cfg.providers[0], model: "m", api_key: None };
        let req = |body: &str| ChatRequest::parse(body.as_bytes()).unwrap();
        let sent = |body: &str| -> Value {
            serde_json::from_str(build_request(&out, &req(body)).unwrap().body.as_deref().unwrap()).unwrap()
        };
        let s = sent(r#"{"model":"c","stream":true,"messages":[{"role":"user","content":"x"}]}"#);
        assert_eq!(s["stream_options"]["include_usage"], true);
        let s = sent(
            r#"{"model":"c","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"x"}]}"#,
        );
        assert_eq!(s["stream_options"]["include_usage"], true);
        let s = sent(r#"{"model":"c","messages":[{"role":"user","content":"x"}]}"#);
        assert!(s.get("stream_options").is_none(), "not for a whole answer");
        // The usage chunk is dropped when the client did not ask, but read.
        let sse = fixture("chat_stream_text_usage.sse");
        let mut quiet = tr(false);
        let s = summarise(&st::run(&mut quiet, &sse));
        assert!(s.usage_chunks.is_empty());
        assert_eq!(quiet.usage().unwrap().total_tokens, 29);
    }

    #[test]
    fn reasoning_deltas_are_read_under_either_name() {
        let sse = st_fixture("chat_stream_reasoning_content_deepseek.sse");
        let mut facts = Vec::new();
        let mut d = StreamDecoder::new(true, false);
        for ev in st::events(&sse) {
            d.decode(&ev, &mut facts);
        }
        let reasoning: String = facts
            .iter()
            .filter_map(|f| match f {
                Event::Reasoning { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        let text: String = facts
            .iter()
            .filter_map(|f| match f {
                Event::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert!(reasoning.starts_with("We need to count"), "{reasoning}");
        assert!(text.starts_with("The word"), "{text}");
        // The first activity is reasoning, long before any text.
        assert!(matches!(facts.iter().find(|f| f.is_activity()), Some(Event::Reasoning { .. })));
        assert!(facts.iter().any(|f| matches!(f, Event::Usage(u) if u.completion_tokens_details.as_ref().is_some_and(|d| d.reasoning_tokens > 0))));
        assert_eq!(facts.last(), Some(&Event::Done));
        // Newer vLLM: `reasoning`.
        let mut out = Vec::new();
        StreamDecoder::new(true, false).decode(
            &SseEvent { event: None, data: r#"{"id":"x","choices":[{"index":0,"delta":{"reasoning":"hm"}}]}"#.into() },
            &mut out,
        );
        assert!(out.contains(&Event::Reasoning { choice: 0, text: "hm".into() }), "{out:?}");
    }

    #[test]
    fn every_choice_of_n_is_read_on_its_own() {
        let mut out = Vec::new();
        let mut d = StreamDecoder::new(true, false);
        for data in [
            r#"{"id":"x","choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{"content":"b"}}]}"#,
            r#"{"id":"x","choices":[{"index":1,"delta":{},"finish_reason":"stop"}]}"#,
        ] {
            d.decode(&SseEvent { event: None, data: data.into() }, &mut out);
        }
        assert!(out.contains(&Event::Text { choice: 1, text: "b".into() }));
        assert!(out.contains(&Event::Finish { choice: 1, reason: "stop".into() }));
        assert!(!out.iter().any(|f| matches!(f, Event::Finish { choice: 0, .. })));
    }

    fn st_fixture(name: &str) -> String {
        fixture(name)
    }

    #[test]
    fn a_stream_without_a_usage_chunk_has_no_usage() {
        let sse = fixture("chat_stream_text_usage.sse");
        let without: String =
            sse.split("\n\n").filter(|e| !e.contains("\"choices\":[]")).map(|e| format!("{e}\n\n")).collect();
        let mut tr = tr(false);
        let s = summarise(&st::run(&mut tr, &without));
        assert_eq!(s.text, "Hello! How can I help you today?");
        assert!(s.usage_chunks.is_empty());
        assert_eq!(tr.usage(), None);
    }

    #[test]
    fn errors_inside_a_stream_are_classified() {
        // The recorded error bodies, sent mid-stream where no status is known.
        let cases = [
            ("error_400_context_length_exceeded.json", ErrorKind::ContextLength),
            ("error_401_invalid_api_key.json", ErrorKind::Auth),
            ("error_429_rate_limit_exceeded.json", ErrorKind::RateLimited),
            ("error_500_server_error.json", ErrorKind::Server),
            ("error_503_overloaded.json", ErrorKind::Overloaded),
        ];
        for (file, kind) in cases {
            let (_, body) = envelope(file);
            let sse = format!(
                "{}{}",
                fixture("chat_stream_text_usage.sse")
                    .split("\n\n")
                    .take(3)
                    .map(|e| format!("{e}\n\n"))
                    .collect::<String>(),
                crate::sse::data_event(&body)
            );
            let items = st::run(&mut tr(false), &sse);
            let StreamItem::Error(e) = items.last().unwrap() else { panic!("{file}: {items:?}") };
            assert_eq!(e.kind, kind, "{file}");
            let expected: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(e.message, clip(expected["error"]["message"].as_str().unwrap()));
            assert!(items[..items.len() - 1].iter().any(StreamItem::has_content), "{file}");
        }
        let one = |data: &str| {
            let mut out = Vec::new();
            tr(false).on_event(&SseEvent { event: None, data: data.to_owned() }, &mut out);
            out
        };
        let kind = |data: &str| match one(data).as_slice() {
            [StreamItem::Error(e)] => e.kind,
            other => panic!("{data}: {other:?}"),
        };
        assert_eq!(kind(r#"{"error":{"message":"slow down","code":429}}"#), ErrorKind::RateLimited);
        assert_eq!(kind(r#"{"error":{"message":"x"},"status":503}"#), ErrorKind::Overloaded);
        assert_eq!(kind(r#"{"error":{"message":"x","type":"rate_limit_error"}}"#), ErrorKind::RateLimited);
        assert_eq!(kind(r#"{"error":{"message":"x","type":"brand_new"}}"#), ErrorKind::Server);
        assert_eq!(kind(r#"{"error":"boom"}"#), ErrorKind::Server);
        assert_eq!(kind(r#"{"error":{"type":"invalid_request_error","message":"bad"}}"#), ErrorKind::BadRequest);
        // `error: null` is no error.
        assert!(matches!(
            one(r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{}}],"error":null}"#)
                .as_slice(),
            [StreamItem::Chunk { .. }]
        ));
    }

    #[test]
    fn unreadable_events_are_skipped() {
        let sse = fixture("chat_stream_text_usage.sse");
        let mut parts: Vec<String> = sse.split("\n\n").map(|e| format!("{e}\n\n")).collect();
        parts.insert(2, "data: {\"id\":\"chatcmpl-x\",\"choi\n\n".to_owned());
        parts.insert(4, "data: [1,2]\n\n".to_owned());
        parts.insert(5, "data: {\"id\":\"x\"}\n\n".to_owned());
        let mut tr = tr(false);
        let items = st::run(&mut tr, &parts.concat());
        let s = summarise(&items);
        assert_eq!(s.malformed, 3);
        assert_eq!(s.text, "Hello! How can I help you today?");
        assert_eq!((s.dones, s.finish.len()), (1, 1));
        assert_eq!(tr.usage().unwrap().total_tokens, 29);
        // Nothing after [DONE], and no second Done.
        let mut out = Vec::new();
        tr.on_event(&SseEvent { event: None, data: "[DONE]".into() }, &mut out);
        assert!(out.is_empty());
    }
}
