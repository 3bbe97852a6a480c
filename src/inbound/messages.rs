//! Anthropic Messages (`POST /v1/messages`) as a client API: its requests
//! become the gateway's internal request (kept whole beside it, for
//! Anthropic targets), and answers, stream events and errors are written
//! back as Anthropic's `message` object, its event sequence and its
//! `{"type":"error","error":{...}}` shape.
//!
//! What a translated (non-Anthropic) target gets: system text, text and
//! image blocks, tool use and results, tools (client tools; server tools
//! are left out and named in `x-switchyard-dropped-tools`), tool choice,
//! `max_tokens`, `stop_sequences`, `temperature`, `top_p`, `metadata.user_id`
//! and `output_config.format`. Thinking blocks in the history, `thinking`,
//! `top_k`, `cache_control` and fields the gateway does not know are for
//! Anthropic targets only and are left out elsewhere.

use crate::api::{
    ApiError, ChatCompletion, ChatRequest, Content, ContentPart, FunctionCall, FunctionDef, ImageUrl, Message,
    NamedFunction, Native, NativeApi, ResponseFormat, ResponseFormatKind, Role, Stop, Tool, ToolCall, ToolChoice,
    ToolChoiceMode, Usage,
};
use crate::event::{Emit, Event};
use crate::json::{object, Dig, JsonText as _};
use crate::taxonomy::{ErrorKind, UpstreamError};
use serde_json::{json, Map, Value};

/// Request headers an Anthropic target gets as the client sent them.
pub const PASSED_HEADERS: [&str; 2] = ["anthropic-version", "anthropic-beta"];

/// Reads a Messages request. `headers` are the client's `anthropic-*`
/// headers, kept for Anthropic targets.
pub fn parse(body: &[u8], headers: Vec<(String, String)>) -> Result<ChatRequest, ApiError> {
    let v = super::read_object(body, "a Messages request")?;
    let mut req = ChatRequest { model: model_of(&v)?, ..ChatRequest::default() };
    match v.get("max_tokens") {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => {
            req.max_tokens = n.as_u64().map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        }
        None => return Err(ApiError::invalid_param("max_tokens", "max_tokens: Field required")),
        Some(_) => return Err(ApiError::invalid_param("max_tokens", "`max_tokens` must be a positive integer")),
    }
    let mut system = Vec::new();
    match v.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => system.push(s.clone()),
        Some(Value::Array(blocks)) => {
            system.extend(blocks.iter().filter_map(|b| b.at("text").as_str()).map(str::to_owned))
        }
        Some(_) => return Err(ApiError::invalid_param("system", "`system` must be a string or a list of text blocks")),
    }
    let system: Vec<String> = system.into_iter().filter(|s| !s.is_empty()).collect();
    if !system.is_empty() {
        req.messages.push(message(Role::System, Some(Content::Text(crate::text::join(&system, "\n\n")))));
    }
    let Some(Value::Array(messages)) = v.get("messages") else {
        return Err(ApiError::invalid_param("messages", "`messages` must be a list of messages"));
    };
    if messages.is_empty() {
        return Err(ApiError::invalid_param("messages", "`messages` must hold at least one message"));
    }
    for (i, m) in messages.iter().enumerate() {
        translate_message(i, m, &mut req.messages)?;
    }
    req.temperature = number(&v, "temperature", 0.0, 1.0)?;
    req.top_p = number(&v, "top_p", 0.0, 1.0)?;
    match v.get("stop_sequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            let stops: Option<Vec<String>> = a.iter().map(|s| s.as_str().map(str::to_owned)).collect();
            let stops = stops.ok_or_else(|| {
                ApiError::invalid_param("stop_sequences", "`stop_sequences` must be a list of strings")
            })?;
            if !stops.is_empty() {
                req.stop = Some(Stop::Many(stops));
            }
        }
        Some(_) => return Err(ApiError::invalid_param("stop_sequences", "`stop_sequences` must be a list of strings")),
    }
    req.stream = v.get("stream").and_then(Value::as_bool);
    req.user = v.at("metadata").at("user_id").as_str().map(str::to_owned);
    let mut hosted = Vec::new();
    if let Some(tools) = v.get("tools").and_then(Value::as_array) {
        let mut defs = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            let name = t.at("name").as_str().unwrap_or_default();
            if name.is_empty() {
                return Err(ApiError::invalid_param(format!("tools.{i}.name"), "a tool needs a name"));
            }
            let client_tool = matches!(t.at("type").as_str(), None | Some("custom")) && t.get("input_schema").is_some();
            if !client_tool {
                // A server tool (web search, code execution, ...): Anthropic runs it.
                hosted.push(t.at("type").as_str().unwrap_or(name).to_owned());
                continue;
            }
            defs.push(Tool {
                kind: "function".into(),
                function: FunctionDef {
                    name: name.to_owned(),
                    description: t.at("description").as_str().map(str::to_owned),
                    parameters: t.get("input_schema").cloned(),
                    strict: t.at("strict").as_bool(),
                },
            });
        }
        if !defs.is_empty() {
            req.tools = Some(defs);
        }
    }
    if let Some(choice) = v.get("tool_choice").filter(|c| c.is_object()) {
        req.tool_choice = match choice.at("type").as_str() {
            Some("auto") => Some(ToolChoice::Mode(ToolChoiceMode::Auto)),
            Some("any") => Some(ToolChoice::Mode(ToolChoiceMode::Required)),
            Some("none") => Some(ToolChoice::Mode(ToolChoiceMode::None)),
            Some("tool") => Some(ToolChoice::Named {
                kind: "function".into(),
                function: NamedFunction { name: choice.at("name").as_str().unwrap_or_default().to_owned() },
            }),
            _ => {
                return Err(ApiError::invalid_param(
                    "tool_choice",
                    "`tool_choice.type` must be auto, any, tool or none",
                ))
            }
        };
        if choice.at("disable_parallel_tool_use").as_bool() == Some(true) {
            req.parallel_tool_calls = Some(false);
        }
        if req.tools.is_none() {
            req.tool_choice = None;
            req.parallel_tool_calls = None;
        }
    }
    let format = v.at("output_config").at("format");
    if format.at("type").as_str() == Some("json_schema") {
        req.response_format = Some(ResponseFormat {
            kind: ResponseFormatKind::JsonSchema,
            json_schema: Some(object([("name", "output".into()), ("schema", format.at("schema").clone())])),
        });
    }
    let Value::Object(body) = v else { return Err(ApiError::invalid("the request body must be a JSON object")) };
    req.native = Some(Box::new(Native {
        api: Some(NativeApi::Messages),
        body,
        headers,
        namespaced_tools: Vec::new(),
        hosted_tools: hosted,
    }));
    Ok(req)
}

pub(super) fn model_of(v: &Value) -> Result<String, ApiError> {
    match v.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => Ok(m.clone()),
        None => Err(ApiError::invalid_param("model", "model: Field required")),
        _ => Err(ApiError::invalid_param("model", "`model` must name a route or model")),
    }
}

pub(super) fn number(v: &Value, name: &str, lo: f64, hi: f64) -> Result<Option<f64>, ApiError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(Some(x)),
            _ => Err(ApiError::invalid_param(name, format!("`{name}` must be between {lo} and {hi}"))),
        },
        Some(_) => Err(ApiError::invalid_param(name, format!("`{name}` must be a number"))),
    }
}

pub(super) fn message(role: Role, content: Option<Content>) -> Message {
    Message { role, content, name: None, tool_calls: None, tool_call_id: None, extra: Map::new() }
}

/// One Messages turn as OpenAI messages: tool results become `tool`
/// messages (before the rest of the user's turn), tool uses an assistant's
/// `tool_calls`, a `system` turn (sent mid-conversation by some agents) a
/// system message.
fn translate_message(i: usize, m: &Value, out: &mut Vec<Message>) -> Result<(), ApiError> {
    let role = match m.at("role").as_str() {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("system") => Role::System,
        _ => return Err(ApiError::invalid_param(format!("messages.{i}.role"), "`role` must be user or assistant")),
    };
    let blocks: Vec<Value> = match m.get("content") {
        Some(Value::String(s)) => vec![object([("type", "text".into()), ("text", s.as_str().into())])],
        Some(Value::Array(b)) => b.clone(),
        _ => {
            return Err(ApiError::invalid_param(
                format!("messages.{i}.content"),
                "`content` must be a string or a list of content blocks",
            ))
        }
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        match b.at("type").as_str() {
            Some("text") => {
                if let Some(t) = b.at("text").as_str().filter(|t| !t.is_empty()) {
                    parts.push(ContentPart::Text { text: t.to_owned() });
                }
            }
            Some("image") => parts.push(ContentPart::ImageUrl { image_url: image_url(i, j, b.at("source"))? }),
            Some("tool_use") if role == Role::Assistant => calls.push(ToolCall {
                id: b.at("id").as_str().unwrap_or_default().to_owned(),
                kind: "function".into(),
                function: FunctionCall {
                    name: b.at("name").as_str().unwrap_or_default().to_owned(),
                    arguments: b.get("input").map_or_else(|| "{}".to_owned(), Value::json_text),
                },
            }),
            Some("tool_result") => {
                let mut text = match b.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(c)) => {
                        crate::text::join(&c.iter().filter_map(|x| x.at("text").as_str()).collect::<Vec<_>>(), "\n")
                    }
                    _ => String::new(),
                };
                if b.at("is_error").as_bool() == Some(true) {
                    text = format!("Error: {text}");
                }
                let mut tm = message(Role::Tool, Some(Content::Text(text)));
                tm.tool_call_id = Some(b.at("tool_use_id").as_str().unwrap_or_default().to_owned());
                out.push(tm);
            }
            // Thinking, documents, server tool blocks: for Anthropic targets only.
            _ => {}
        }
    }
    if role == Role::Assistant {
        if parts.is_empty() && calls.is_empty() {
            return Ok(());
        }
        let mut am = message(Role::Assistant, content_of(parts));
        if !calls.is_empty() {
            am.tool_calls = Some(calls);
        }
        out.push(am);
    } else if !parts.is_empty() {
        out.push(message(role, content_of(parts)));
    }
    Ok(())
}

/// Text parts alone become a string; anything else stays a list.
pub(super) fn content_of(parts: Vec<ContentPart>) -> Option<Content> {
    if parts.is_empty() {
        return None;
    }
    if parts.iter().all(|p| matches!(p, ContentPart::Text { .. })) {
        let text: Vec<&str> = parts
            .iter()
            .filter_map(|p| if let ContentPart::Text { text } = p { Some(text.as_str()) } else { None })
            .collect();
        return Some(Content::Text(crate::text::join(&text, "\n")));
    }
    Some(Content::Parts(parts))
}

fn image_url(i: usize, j: usize, source: &Value) -> Result<ImageUrl, ApiError> {
    let url = match source.at("type").as_str() {
        Some("base64") => {
            let media = source.at("media_type").as_str().unwrap_or("image/png");
            format!("data:{media};base64,{}", source.at("data").as_str().unwrap_or_default())
        }
        Some("url") => source.at("url").as_str().unwrap_or_default().to_owned(),
        _ => {
            return Err(ApiError::invalid_param(
                format!("messages.{i}.content.{j}.source"),
                "an image `source` must be base64 or url",
            ))
        }
    };
    Ok(ImageUrl { url, detail: None })
}

// ------------------------------------------------------------ answers

/// Anthropic's `stop_reason` for an OpenAI finish reason.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

fn usage_json(u: Option<&Usage>) -> Value {
    let u = u.cloned().unwrap_or_default();
    let cached = u.prompt_tokens_details.as_ref().map_or(0, |d| d.cached_tokens);
    object([
        ("input_tokens", u.prompt_tokens.saturating_sub(cached).into()),
        ("output_tokens", u.completion_tokens.into()),
        ("cache_read_input_tokens", cached.into()),
        ("cache_creation_input_tokens", 0.into()),
    ])
}

/// An OpenAI completion as an Anthropic `message` (choice 0).
pub fn render(c: &ChatCompletion) -> String {
    let choice = c.choices.first();
    let mut content = Vec::new();
    if let Some(m) = choice.map(|c| &c.message) {
        if let Some(r) = m.reasoning_content.as_deref().filter(|r| !r.is_empty()) {
            content.push(object([("type", "thinking".into()), ("thinking", r.into()), ("signature", "".into())]));
        }
        if let Some(t) = m.content.as_deref().filter(|t| !t.is_empty()) {
            content.push(object([("type", "text".into()), ("text", t.into())]));
        }
        for call in m.tool_calls.iter().flatten() {
            let input: Value = serde_json::from_str(&call.function.arguments).unwrap_or_else(|_| json!({}));
            content.push(object([
                ("type", "tool_use".into()),
                ("id", call.id.as_str().into()),
                ("name", call.function.name.as_str().into()),
                ("input", input),
            ]));
        }
    }
    object([
        ("id", message_id(&c.id).into()),
        ("type", "message".into()),
        ("role", "assistant".into()),
        ("model", c.model.as_str().into()),
        ("content", Value::Array(content)),
        ("stop_reason", stop_reason(choice.and_then(|c| c.finish_reason.as_deref())).into()),
        ("stop_sequence", Value::Null),
        ("usage", usage_json(c.usage.as_ref())),
    ])
    .json_text()
}

fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else {
        format!("msg_{}", id.strip_prefix("chatcmpl-").unwrap_or(id))
    }
}

/// Anthropic's error `type` for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        503 | 529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// An error in Anthropic's shape.
pub fn error_json(status: u16, message: &str) -> String {
    error_object(error_type(status), message).json_text()
}

/// `{"type":"error","error":{"type","message"}}`: a body and a stream event alike.
fn error_object(kind: &str, message: &str) -> Value {
    object([("type", "error".into()), ("error", object([("type", kind.into()), ("message", message.into())]))])
}

/// The gateway's OpenAI-shaped error body (`{"error":{"message",...}}`)
/// in Anthropic's shape; other bodies are kept.
pub fn reshape_error(status: u16, body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let message = v.at("error").at("message").as_str()?;
    Some(error_json(status, message))
}

fn stream_error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::Overloaded => "overloaded_error",
        ErrorKind::Timeout => "timeout_error",
        _ => "api_error",
    }
}

// ------------------------------------------------------------ streams

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    Tool,
}

/// Writes Anthropic's event sequence from the gateway's events: one
/// `message_start`, content blocks opened and closed as the kind of content
/// changes (thinking, text, each tool call), then `message_delta` with the
/// stop reason and usage, and `message_stop`. Choice 0 only: Messages has
/// no `n`.
#[derive(Debug, Clone)]
pub struct MessagesEmitter {
    id: String,
    model: String,
    adopt_names: bool,
    started: bool,
    /// The open block and its index; `next` is the index of the next block.
    open: Option<Block>,
    next: u32,
    finish: Option<String>,
    usage: Option<Usage>,
}

impl MessagesEmitter {
    pub fn new(id: String, model: String) -> MessagesEmitter {
        MessagesEmitter { id, model, adopt_names: true, started: false, open: None, next: 0, finish: None, usage: None }
    }

    fn write(out: &mut String, name: &str, data: &Value) -> u32 {
        out.push_str("event: ");
        out.push_str(name);
        out.push_str("\ndata: ");
        out.push_str(&data.json_text());
        out.push_str("\n\n");
        1
    }

    fn start(&mut self, out: &mut String) -> u32 {
        if self.started {
            return 0;
        }
        self.started = true;
        let input = self.usage.as_ref().map_or(0, |u| u.prompt_tokens);
        let message = object([
            ("id", message_id(&self.id).into()),
            ("type", "message".into()),
            ("role", "assistant".into()),
            ("model", self.model.as_str().into()),
            ("content", Value::Array(Vec::new())),
            ("stop_reason", Value::Null),
            ("stop_sequence", Value::Null),
            ("usage", object([("input_tokens", input.into()), ("output_tokens", 0.into())])),
        ]);
        Self::write(out, "message_start", &object([("type", "message_start".into()), ("message", message)]))
    }

    fn close(&mut self, out: &mut String) -> u32 {
        match self.open.take() {
            Some(_) => {
                let index = self.next.saturating_sub(1);
                Self::write(
                    out,
                    "content_block_stop",
                    &object([("type", "content_block_stop".into()), ("index", index.into())]),
                )
            }
            None => 0,
        }
    }

    /// Opens a block of `kind` unless one is open (tool calls always open
    /// anew); `block` is made only when a block opens, not per delta.
    fn open(&mut self, kind: Block, block: impl FnOnce() -> Value, out: &mut String) -> u32 {
        if self.open == Some(kind) && kind != Block::Tool {
            return 0;
        }
        let mut n = self.close(out);
        let index = self.next;
        self.next += 1;
        self.open = Some(kind);
        n += Self::write(
            out,
            "content_block_start",
            &object([("type", "content_block_start".into()), ("index", index.into()), ("content_block", block())]),
        );
        n
    }

    /// A `content_block_delta` of the open block: `{"type": kind, field: text}`.
    fn delta(&self, kind: &str, field: &str, text: &str, out: &mut String) -> u32 {
        let index = self.next.saturating_sub(1);
        out.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":");
        out.push_str(&index.to_string());
        out.push_str(",\"delta\":{\"type\":\"");
        out.push_str(kind);
        out.push_str("\",\"");
        out.push_str(field);
        out.push_str("\":");
        super::push_json_str(out, text);
        out.push_str("}}\n\n");
        1
    }
}

impl Emit for MessagesEmitter {
    fn emit(&mut self, ev: &Event, out: &mut String) -> u32 {
        match ev {
            Event::Usage(u) => {
                self.usage = Some(u.clone());
                0
            }
            Event::Start { id, model } => {
                self.adopt(id.as_deref(), model.as_deref());
                0
            }
            Event::Text { choice: 0, text } => {
                let mut n = self.start(out);
                n += self.open(Block::Text, || object([("type", "text".into()), ("text", "".into())]), out);
                n + self.delta("text_delta", "text", text, out)
            }
            Event::Reasoning { choice: 0, text } => {
                let mut n = self.start(out);
                n += self.open(
                    Block::Thinking,
                    || object([("type", "thinking".into()), ("thinking", "".into()), ("signature", "".into())]),
                    out,
                );
                n + self.delta("thinking_delta", "thinking", text, out)
            }
            Event::ToolStart { choice: 0, id, name, .. } => {
                let n = self.start(out);
                n + self.open(
                    Block::Tool,
                    || {
                        object([
                            ("type", "tool_use".into()),
                            ("id", id.as_str().into()),
                            ("name", name.as_str().into()),
                            ("input", Value::Object(Map::new())),
                        ])
                    },
                    out,
                )
            }
            Event::ToolArgs { choice: 0, args, .. } if self.open == Some(Block::Tool) => {
                self.delta("input_json_delta", "partial_json", args, out)
            }
            Event::Finish { choice: 0, reason } => {
                self.finish = Some(reason.clone());
                self.start(out)
            }
            _ => 0,
        }
    }

    fn complete(&mut self, out: &mut String) {
        self.start(out);
        self.close(out);
        let u = usage_json(self.usage.as_ref());
        let delta = object([
            ("type", "message_delta".into()),
            (
                "delta",
                object([("stop_reason", stop_reason(self.finish.as_deref()).into()), ("stop_sequence", Value::Null)]),
            ),
            ("usage", u),
        ]);
        Self::write(out, "message_delta", &delta);
        self.end(out);
    }

    fn end(&mut self, out: &mut String) {
        out.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    }

    fn fail(&mut self, e: &UpstreamError, out: &mut String) {
        Self::write(out, "error", &error_object(stream_error_type(e.kind), &e.message));
    }

    fn adopt(&mut self, id: Option<&str>, model: Option<&str>) {
        if self.adopt_names {
            if let Some(id) = id.filter(|s| !s.is_empty()) {
                self.id = id.to_owned();
            }
            if let Some(m) = model.filter(|s| !s.is_empty()) {
                self.model = m.to_owned();
            }
        }
    }

    fn forwarded(&mut self, event: Option<&str>, data: &str) {
        // A stream passed through: the client has its start and blocks.
        if event == Some("message_start") {
            self.started = true;
        }
        if event == Some("content_block_start") {
            self.next += 1;
            self.open = Some(if data.contains("\"tool_use\"") { Block::Tool } else { Block::Text });
        }
        if event == Some("content_block_stop") {
            self.open = None;
        }
    }

    fn continuation(&self) -> Box<dyn Emit> {
        let mut next = self.clone();
        next.adopt_names = false;
        next.started = true;
        Box::new(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/anthropic/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn a_recorded_request_becomes_the_internal_request_and_keeps_its_native_form() {
        let body = fixture("messages_request_tool_result.json");
        let req = parse(body.as_bytes(), vec![("anthropic-beta".into(), "x".into())]).unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(req.model, v["model"].as_str().unwrap());
        assert_eq!(req.max_tokens, v["max_tokens"].as_u64().map(|n| n as u32));
        // The assistant's tool_use became tool_calls, the tool_result a tool message.
        let asst = req.messages.iter().find(|m| m.role == Role::Assistant).unwrap();
        let call = &asst.tool_calls.as_ref().unwrap()[0];
        let tool = req.messages.iter().find(|m| m.role == Role::Tool).unwrap();
        assert_eq!(tool.tool_call_id.as_deref(), Some(call.id.as_str()));
        assert!(serde_json::from_str::<Value>(&call.function.arguments).unwrap().is_object());
        let native = req.native.as_ref().unwrap();
        assert_eq!(native.api, Some(NativeApi::Messages));
        assert_eq!(Value::Object(native.body.clone()), v);
        assert_eq!(native.headers, vec![("anthropic-beta".to_owned(), "x".to_owned())]);
    }

    #[test]
    fn system_blocks_images_and_tools_translate() {
        let body = br#"{"model":"m","max_tokens":50,"system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],
            "messages":[{"role":"user","content":[{"type":"text","text":"what is it?"},
              {"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]},
              {"role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":"s"},{"type":"text","text":"a cat"}]},
              {"role":"system","content":"mid-conversation note"},
              {"role":"user","content":"ok"}],
            "tools":[{"name":"get","description":"d","input_schema":{"type":"object"}},{"type":"web_search_20250305","name":"web_search"}],
            "tool_choice":{"type":"any","disable_parallel_tool_use":true},
            "stop_sequences":["a","b","c","d","e"],"temperature":0.5,"top_k":5,"thinking":{"type":"adaptive"},
            "context_management":{"edits":[]}}"#;
        let req = parse(body, Vec::new()).unwrap();
        assert_eq!(req.messages[0].role, Role::System);
        assert_eq!(req.messages[0].content, Some(Content::Text("Be brief.".into())));
        assert!(req.messages[1].content.as_ref().unwrap().has_image());
        // Thinking blocks are for Anthropic targets only.
        assert_eq!(req.messages[2].content, Some(Content::Text("a cat".into())));
        assert_eq!(req.messages[3].role, Role::System);
        assert_eq!(req.tools.as_ref().unwrap().len(), 1);
        assert_eq!(req.native.as_ref().unwrap().hosted_tools, vec!["web_search_20250305".to_owned()]);
        assert_eq!(req.tool_choice, Some(ToolChoice::Mode(ToolChoiceMode::Required)));
        assert_eq!(req.parallel_tool_calls, Some(false));
        assert_eq!(req.stop.as_ref().unwrap().to_vec().len(), 5);
        assert!(req.extra.is_empty(), "unknown fields stay in the native body only");
        assert!(req.native.unwrap().body.contains_key("context_management"));
    }

    #[test]
    fn mistakes_get_anthropic_style_messages_naming_the_field() {
        let e = parse(br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#, Vec::new()).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("max_tokens")));
        let e = parse(br#"{"model":"m","max_tokens":5,"messages":[{"role":"bot","content":"x"}]}"#, Vec::new())
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages.0.role"));
        let e = parse(br#"{"model":"m","max_tokens":5,"temperature":1.5,"messages":[]}"#, Vec::new()).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = parse(b"{not json", Vec::new()).unwrap_err();
        assert_eq!(e.status, 400);
        let shaped: Value = serde_json::from_str(&error_json(429, "slow down")).unwrap();
        assert_eq!(shaped, json!({"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}));
        let reshaped = reshape_error(404, &ApiError::not_found("no such model").to_json()).unwrap();
        let reshaped: Value = serde_json::from_str(&reshaped).unwrap();
        assert_eq!(reshaped["error"]["type"], "not_found_error");
        assert_eq!(reshaped["error"]["message"], "no such model");
    }

    #[test]
    fn a_completion_renders_as_a_message_with_tool_use_and_usage() {
        let c = crate::providers::openai::parse_response(&json!({
            "id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt",
            "choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":"Let me look.",
              "tool_calls":[{"id":"call_1","type":"function","function":{"name":"get","arguments":"{\"q\":1}"}}]}}],
            "usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4}}
        }).to_string()).unwrap();
        let m: Value = serde_json::from_str(&render(&c)).unwrap();
        assert_eq!(m["type"], "message");
        assert_eq!(m["id"], "msg_1");
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(m["content"][0], json!({"type":"text","text":"Let me look."}));
        assert_eq!(m["content"][1], json!({"type":"tool_use","id":"call_1","name":"get","input":{"q":1}}));
        assert_eq!(m["usage"]["input_tokens"], 6);
        assert_eq!(m["usage"]["cache_read_input_tokens"], 4);
        assert_eq!(m["usage"]["output_tokens"], 5);
    }

    fn events(sse: &str) -> Vec<(String, Value)> {
        let mut p = SseParser::default();
        let mut evs = Vec::new();
        p.feed(sse.as_bytes(), &mut evs).unwrap();
        evs.into_iter().map(|e| (e.event.unwrap_or_default(), serde_json::from_str(&e.data).unwrap())).collect()
    }

    #[test]
    fn events_become_anthropics_stream_sequence() {
        let mut em = MessagesEmitter::new("msg_x".into(), "m".into());
        let mut out = String::new();
        for ev in [
            Event::Start { id: Some("chatcmpl-9".into()), model: Some("gpt-x".into()) },
            Event::Reasoning { choice: 0, text: "think".into() },
            Event::Text { choice: 0, text: "Hel".into() },
            Event::Text { choice: 0, text: "lo".into() },
            Event::Text { choice: 1, text: "other choice".into() },
            Event::ToolStart { choice: 0, index: 0, id: "call_1".into(), name: "get".into() },
            Event::ToolArgs { choice: 0, index: 0, args: "{\"q\":".into() },
            Event::ToolArgs { choice: 0, index: 0, args: "1}".into() },
            Event::Finish { choice: 0, reason: "tool_calls".into() },
            Event::Usage(Usage { prompt_tokens: 3, completion_tokens: 7, total_tokens: 10, ..Usage::default() }),
        ] {
            em.emit(&ev, &mut out);
        }
        em.complete(&mut out);
        let evs = events(&out);
        let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        for (name, data) in &evs {
            assert_eq!(data["type"], name.as_str(), "data.type repeats the event name");
        }
        assert_eq!(evs[0].1["message"]["model"], "gpt-x");
        assert_eq!(evs[0].1["message"]["id"], "msg_9");
        assert_eq!(evs[1].1["content_block"]["type"], "thinking");
        assert_eq!(evs[4].1["index"], 1);
        assert_eq!(evs[5].1["delta"], json!({"type":"text_delta","text":"Hel"}));
        assert_eq!(evs[8].1["content_block"], json!({"type":"tool_use","id":"call_1","name":"get","input":{}}));
        assert_eq!(evs[10].1["delta"]["partial_json"], "1}");
        assert_eq!(evs[12].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(evs[12].1["usage"]["output_tokens"], 7);
    }

    #[test]
    fn a_broken_stream_ends_with_anthropics_error_event() {
        let mut em = MessagesEmitter::new("msg_x".into(), "m".into());
        let mut out = String::new();
        em.emit(&Event::Text { choice: 0, text: "partial".into() }, &mut out);
        em.fail(&UpstreamError::new(ErrorKind::Overloaded, "busy"), &mut out);
        let evs = events(&out);
        let (name, data) = evs.last().unwrap();
        assert_eq!(name, "error");
        assert_eq!(data, &json!({"type":"error","error":{"type":"overloaded_error","message":"busy"}}));
        assert!(!out.contains("message_stop"));
    }
}
