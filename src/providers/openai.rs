//! OpenAI Chat Completions, and any OpenAI-compatible host (Groq, Together,
//! Mistral, vLLM, Ollama...) addressed by its base URL.
//!
//! The client already speaks this format, so the request goes out as the
//! client sent it, with `model` replaced by the target's upstream model and the
//! gateway's own options removed; unknown fields pass through.
//!
//! Streams pass through too ([`StreamState`]): each chunk goes to the client
//! as the upstream wrote it. This module also owns the `chat.completion.chunk`
//! shape ([`ChunkWriter`]) that the translating adapters write.

use super::{clip, request_headers, Outbound, StreamItem, StreamMeta, StreamTranslator};
use crate::api::{ApiError, ChatCompletion, ChatRequest, Usage};
use crate::sse::SseEvent;
use crate::taxonomy::{looks_like_content_policy, looks_like_context_length, ErrorKind, UpstreamError};
use crate::upstream::UpstreamRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// The request body with `model` set to the upstream model. `switchyard`
/// options are never serialised (see `ChatRequest::gateway`).
fn body_for(req: &ChatRequest, model: &str) -> Result<String, ApiError> {
    // Serialised straight from the typed request (no intermediate `Value`).
    let mut out = req.clone();
    out.model = model.to_owned();
    serde_json::to_string(&out)
        .map_err(|e| ApiError::new(500, "server_error", format!("could not encode the upstream request: {e}")))
}

pub fn parse_response(body: &str) -> Result<ChatCompletion, String> {
    let c: ChatCompletion = serde_json::from_str(body).map_err(|e| format!("not a chat.completion: {e}"))?;
    if c.choices.is_empty() {
        return Err("the response has no choices".to_owned());
    }
    Ok(c)
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

pub fn classify_error(status: u16, body: &str) -> UpstreamError {
    let parsed: Option<ErrorDetail> = serde_json::from_str::<ErrorBody>(body).ok().map(|b| b.error);
    let message =
        parsed.as_ref().and_then(|d| d.message.clone()).unwrap_or_else(|| format!("upstream answered HTTP {status}"));
    let code =
        parsed.as_ref().and_then(|d| d.code.as_ref()).and_then(|c| c.as_str().map(str::to_owned)).unwrap_or_default();
    let kind_field = parsed.as_ref().and_then(|d| d.kind.clone()).unwrap_or_default();
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

/// Passes an OpenAI stream through: every chunk is handed on verbatim (its
/// `data` text, never re-encoded), with its text, tool call and finish reason
/// read out for the gateway. `data: [DONE]` ends the stream; a top-level
/// `error` object mid-stream becomes [`StreamItem::Error`].
pub struct StreamState {
    usage: Option<Usage>,
    done: bool,
}

impl StreamState {
    /// The meta is not needed: upstream chunks already carry id, model and
    /// `created`, and usage comes only if the client asked for it.
    pub fn new(_meta: StreamMeta) -> Self {
        StreamState { usage: None, done: false }
    }

    /// The general path: the event as a `Value`.
    fn on_value(&mut self, ev: &SseEvent, out: &mut Vec<StreamItem>) {
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            out.push(StreamItem::Malformed);
            return;
        };
        if v.get("error").is_some_and(|e| !e.is_null()) {
            out.push(StreamItem::Error(stream_error(&v, &ev.data)));
            return;
        }
        let usage = v.get("usage").filter(|u| !u.is_null());
        let choices = match v.get("choices") {
            Some(Value::Array(c)) => c.as_slice(),
            // A usage-only chunk without `choices` (some compatible hosts).
            None if usage.is_some() => &[],
            _ => {
                out.push(StreamItem::Malformed);
                return;
            }
        };
        if let Some(u) = usage.and_then(|u| Usage::deserialize(u).ok()) {
            self.usage = Some(u);
        }
        let mut text = String::new();
        for c in choices {
            if let Some(t) = c["delta"]["content"].as_str() {
                text.push_str(t);
            }
        }
        out.push(StreamItem::Chunk {
            json: ev.data.clone(),
            text,
            tool_delta: choices.iter().any(|c| c["delta"].get("tool_calls").is_some_and(|t| !t.is_null())),
            finish_reason: choices.iter().find_map(|c| c["finish_reason"].as_str()).map(str::to_owned),
        });
    }
}

/// What the gateway reads from a streamed chunk, borrowed from its text.
#[derive(Deserialize)]
struct ChunkView<'a> {
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default, borrow)]
    choices: Option<Vec<ChoiceView<'a>>>,
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaView<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<serde::de::IgnoredAny>,
}

impl StreamTranslator for StreamState {
    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<StreamItem>) {
        if super::at_end(&mut self.done, ev, out) {
            return;
        }
        // The common chunk is read into a borrowed view (no map per object);
        // anything it does not fit (an error, odd types) takes the general path.
        if let Ok(c) = serde_json::from_str::<ChunkView>(&ev.data) {
            if c.error.is_none() && (c.choices.is_some() || c.usage.is_some()) {
                if c.usage.is_some() {
                    self.usage = c.usage;
                }
                let choices = c.choices.unwrap_or_default();
                let mut text = String::new();
                for d in choices.iter().filter_map(|c| c.delta.as_ref()) {
                    text.push_str(d.content.as_deref().unwrap_or_default());
                }
                out.push(StreamItem::Chunk {
                    json: ev.data.clone(),
                    text,
                    tool_delta: choices.iter().any(|c| c.delta.as_ref().is_some_and(|d| d.tool_calls.is_some())),
                    finish_reason: choices.iter().find_map(|c| c.finish_reason.as_deref()).map(str::to_owned),
                });
                return;
            }
        }
        self.on_value(ev, out);
    }

    fn usage(&self) -> Option<Usage> {
        self.usage.clone()
    }
}

/// Classifies an `{"error":{...}}` object sent inside a stream. There is no
/// HTTP status to go by (the stream began with a 200), so one is read from the
/// error where a host puts it there (`code: 429`, `status: 503`), else implied
/// by its `code` / `type`, else taken as 500; [`classify_error`] does the rest.
fn stream_error(body: &Value, data: &str) -> UpstreamError {
    let e = &body["error"];
    let status = [&e["code"], &e["status"], &body["status"]]
        .iter()
        .find_map(|v| v.as_u64())
        .filter(|s| (400..600).contains(s))
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or_else(|| implied_status(e));
    let mut err = classify_error(status, data);
    if !e["message"].is_string() {
        err.message = "the upstream stream carried an error".to_owned();
    }
    err
}

/// The HTTP status an error's `code` (checked first) or `type` stands for.
fn implied_status(e: &Value) -> u16 {
    for name in [e["code"].as_str(), e["type"].as_str()].into_iter().flatten() {
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
    let message = e["message"].as_str().unwrap_or_default().to_ascii_lowercase();
    if message.contains("overloaded") {
        503
    } else {
        500
    }
}

/// The `delta` of a `chat.completion.chunk` choice; empty fields are left out
/// (a finish chunk has `"delta":{}`).
#[derive(Debug, Default, Serialize)]
pub(crate) struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallDelta<'a>>,
}

impl<'a> Delta<'a> {
    /// The first chunk of a stream: `{"role":"assistant","content":""}`.
    pub fn role() -> Self {
        Delta { role: Some("assistant"), content: Some(""), ..Delta::default() }
    }
    pub fn content(text: &'a str) -> Self {
        Delta { content: Some(text), ..Delta::default() }
    }
    pub fn tool_call(call: ToolCallDelta<'a>) -> Self {
        Delta { tool_calls: vec![call], ..Delta::default() }
    }
}

/// One fragment of a streamed tool call. The first fragment of a call carries
/// `id`, `type` and `function.name`; later ones only `arguments` pieces.
/// `index` is the call's position among the message's tool calls.
#[derive(Debug, Serialize)]
pub(crate) struct ToolCallDelta<'a> {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionDelta<'a>,
}

#[derive(Debug, Serialize)]
pub(crate) struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub arguments: &'a str,
}

impl<'a> ToolCallDelta<'a> {
    pub fn start(index: usize, id: &'a str, name: &'a str, arguments: &'a str) -> Self {
        ToolCallDelta {
            index,
            id: Some(id),
            kind: Some("function"),
            function: FunctionDelta { name: Some(name), arguments },
        }
    }
    pub fn arguments(index: usize, piece: &'a str) -> Self {
        ToolCallDelta { index, id: None, kind: None, function: FunctionDelta { name: None, arguments: piece } }
    }
}

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a Usage>,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'a str>,
}

/// Writes `chat.completion.chunk`s for a translated stream, all with the same
/// `id`, `created` and `model`.
#[derive(Debug, Clone)]
pub(crate) struct ChunkWriter {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl ChunkWriter {
    pub fn new(meta: &StreamMeta) -> Self {
        ChunkWriter { id: meta.id.clone(), created: meta.created, model: meta.model.clone() }
    }

    /// A chunk with one choice.
    pub fn chunk(&self, delta: Delta, finish_reason: Option<&str>) -> StreamItem {
        let text = delta.content.unwrap_or_default().to_owned();
        let tool_delta = !delta.tool_calls.is_empty();
        let choices = vec![ChoiceOut { index: 0, delta, finish_reason }];
        match self.encode(choices, None) {
            Some(json) => StreamItem::Chunk { json, text, tool_delta, finish_reason: finish_reason.map(str::to_owned) },
            None => StreamItem::Malformed,
        }
    }

    /// The `include_usage` chunk: no choices, `usage` set.
    pub fn usage_chunk(&self, usage: &Usage) -> StreamItem {
        match self.encode(Vec::new(), Some(usage)) {
            Some(json) => StreamItem::Chunk { json, text: String::new(), tool_delta: false, finish_reason: None },
            None => StreamItem::Malformed,
        }
    }

    fn encode(&self, choices: Vec<ChoiceOut>, usage: Option<&Usage>) -> Option<String> {
        serde_json::to_string(&ChunkOut {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        })
        .ok()
    }
}

/// Test helpers shared by the adapters' stream tests.
#[cfg(test)]
pub(crate) mod stream_test {
    use crate::providers::{StreamItem, StreamTranslator};
    use crate::sse::{SseEvent, SseParser};
    use serde_json::Value;

    pub fn events(text: &str) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(text.as_bytes(), &mut out);
        p.finish(&mut out);
        out
    }

    pub fn run(t: &mut dyn StreamTranslator, text: &str) -> Vec<StreamItem> {
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
    use super::stream_test::{self as st, summarise};
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_borrowed_chunk_view_reads_every_event_as_the_general_path_does() {
        let mut events = Vec::new();
        let mut parser = crate::sse::SseParser::new();
        for name in ["chat_stream_text_usage.sse", "chat_stream_tool_calls.sse", "chat_stream_finish_length.sse"] {
            parser.feed(fixture(name).as_bytes(), &mut events);
        }
        let odd = [
            r#"{"choices":[{"index":0,"delta":{"content":"a \"quoted\" \u00e9 line\n"},"finish_reason":null}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
            r#"{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
            r#"{"error":{"message":"overloaded","type":"server_error","code":null}}"#,
            r#"{"choices":[{"delta":{"content":7}}]}"#,
            r#"{"choices":{"not":"a list"}}"#,
            r#"{"id":"x"}"#,
            "not json",
        ];
        for data in odd {
            events.push(SseEvent { event: None, data: data.to_owned() });
        }
        assert!(events.len() > 20);
        for ev in events.iter().filter(|e| e.data != "[DONE]") {
            let (mut fast, mut general) = (StreamState::new(meta(true)), StreamState::new(meta(true)));
            let (mut a, mut b) = (Vec::new(), Vec::new());
            fast.on_event(ev, &mut a);
            general.on_value(ev, &mut b);
            assert_eq!(a, b, "{}", ev.data);
            assert_eq!(fast.usage(), general.usage(), "{}", ev.data);
        }
    }

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
        // Numbers are re-encoded as floats: `1` becomes `1.0`, the same JSON number.
        expected["top_p"] = 1.0.into();
        assert_eq!(sent, expected);
    }

    #[test]
    fn parses_responses() {
        let c = parse_response(&fixture("chat_response.json")).unwrap();
        assert_eq!(c.model, "gpt-4o-mini-2024-07-18");
        assert_eq!(c.usage.as_ref().unwrap().total_tokens, 29);
        let c = parse_response(&fixture("chat_response_tool_calls.json")).unwrap();
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(c.choices[0].message.tool_calls.as_ref().unwrap()[0].function.name, "get_current_weather");
        assert!(parse_response("{\"id\":1}").is_err());
        assert!(parse_response("<html>").is_err());
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

    fn meta(include_usage: bool) -> StreamMeta {
        StreamMeta { id: "chatcmpl-gateway".into(), created: 1_700_000_000, model: "gpt-4o-mini".into(), include_usage }
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
            let mut tr = StreamState::new(meta(true));
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
        let s = summarise(&st::run(&mut StreamState::new(meta(false)), &fixture("chat_stream_tool_calls.sse")));
        assert_eq!(s.calls.len(), 1);
        assert_eq!(s.calls[0].id, "call_4XzlGBLtUe9dy3GVNV4jhq7h");
        assert_eq!(s.calls[0].name, "get_weather");
        assert_eq!(s.calls[0].args(), serde_json::json!({"city": "New York City"}));
    }

    #[test]
    fn a_stream_without_a_usage_chunk_has_no_usage() {
        let sse = fixture("chat_stream_text_usage.sse");
        let without: String =
            sse.split("\n\n").filter(|e| !e.contains("\"choices\":[]")).map(|e| format!("{e}\n\n")).collect();
        let mut tr = StreamState::new(meta(false));
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
            let items = st::run(&mut StreamState::new(meta(false)), &sse);
            let StreamItem::Error(e) = items.last().unwrap() else { panic!("{file}: {items:?}") };
            assert_eq!(e.kind, kind, "{file}");
            let expected: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(e.message, clip(expected["error"]["message"].as_str().unwrap()));
            assert!(items[..items.len() - 1].iter().any(StreamItem::has_content), "{file}");
        }
        let one = |data: &str| {
            let mut out = Vec::new();
            StreamState::new(meta(false)).on_event(&SseEvent { event: None, data: data.to_owned() }, &mut out);
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
            one(r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"error":null}"#)
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
        let mut tr = StreamState::new(meta(false));
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
