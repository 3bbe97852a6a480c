//! Cohere Chat v2 (`POST {base_url}/v2/chat`).
//!
//! Request translation (OpenAI Chat Completions -> Chat v2), field by field
//! (see `tests/fixtures/MAPPING.md`):
//!
//! - Messages map one to one: `system` / `developer` -> `system` (text only),
//!   `user` (string, or `text` and `image_url` parts), `assistant` (text content
//!   and `tool_calls`, whose `arguments` stay a JSON string), `tool` ->
//!   `{role:"tool", tool_call_id, content:<string>}`. Turns are not merged.
//! - `temperature` is clamped to 1.0; `top_p` -> `p`, left out when it is 1
//!   (as for every format: `providers::common`) and otherwise clamped into
//!   Cohere's 0.01..0.99. `frequency_penalty` and `presence_penalty` are
//!   clamped into Cohere's 0..1 (OpenAI allows -2..2).
//! - `max_completion_tokens` (else `max_tokens`) -> `max_tokens`; `stop` ->
//!   `stop_sequences`; `seed` as is.
//! - `reasoning_effort` (targets with the `reasoning` capability) ->
//!   `thinking: {type:"enabled", token_budget}` with the budget for that
//!   effort (`common::reasoning_budget`).
//! - `tools` keep OpenAI's shape (`parameters` defaults to an empty object
//!   schema; `strict` is dropped). `tool_choice`: `required` -> `"REQUIRED"`,
//!   `none` -> `"NONE"`, `auto` -> left out; a named function cannot be forced
//!   on Cohere and is a 400. `tool_choice` is sent only with tools.
//! - `response_format`: `json_object` -> `{type:"json_object"}`, `json_schema`
//!   -> `{type:"json_object", json_schema:<the schema>}`.
//! - Not supported, so capability routing never sends them here: `n > 1`,
//!   `logprobs`, `parallel_tool_calls: false`. Rejected with a 400:
//!   `input_audio` / `file` parts, the deprecated `function` role. Dropped:
//!   `user`, message `name`, unknown top-level fields.
//! - `stream: true` is sent when the client streams (and nothing otherwise);
//!   [`StreamDecoder`] reads that stream, [`parse_response`] the plain
//!   answer. `stream_options` is not sent: a Chat v2 stream always reports
//!   usage.

// `ApiError` is large; the signatures are shared by every adapter (see mod.rs).
#![allow(clippy::result_large_err)]

use super::common::{self, Assembled, OutputFormat, ToolCalls};
use super::{clip, request_headers, Outbound};
use crate::api::{
    ApiError, ChatCompletion, ChatRequest, Content, ContentPart, Message, PromptTokensDetails, Role, ToolChoice,
    ToolChoiceMode, Usage,
};
use crate::event::{Decode, Event};
use crate::json::{object, Dig, JsonText as _};
use crate::sse::SseEvent;
use crate::taxonomy::{looks_like_content_policy, looks_like_context_length, ErrorKind, UpstreamError};
use crate::upstream::UpstreamRequest;
use serde_json::{Map, Value};

pub fn build_request(out: &Outbound, req: &ChatRequest) -> Result<UpstreamRequest, ApiError> {
    let body = body_for(out, req)?;
    let headers = request_headers(out);
    Ok(UpstreamRequest {
        method: "POST",
        url: format!("{}/v2/chat", out.provider.base_url),
        headers,
        body: Some(body.json_text()),
    })
}

fn body_for(out: &Outbound, req: &ChatRequest) -> Result<Value, ApiError> {
    if req.choices() > 1 {
        return Err(ApiError::invalid_param("n", "n > 1 is not supported by cohere"));
    }
    let mut body = Map::new();
    body.insert("model".into(), Value::from(out.model));
    let messages = req.messages.iter().enumerate().map(|(i, m)| message(i, m)).collect::<Result<Vec<_>, _>>()?;
    body.insert("messages".into(), Value::Array(messages));
    if req.is_stream() {
        body.insert("stream".into(), Value::Bool(true));
    }
    if let Some(effort) = req.reasoning_effort() {
        body.insert(
            "thinking".into(),
            object([("type", "enabled".into()), ("token_budget", common::reasoning_budget(effort).into())]),
        );
    }

    let tools = req.tools.as_deref().unwrap_or_default();
    let choice = match &req.tool_choice {
        Some(ToolChoice::Named { .. }) => {
            return Err(ApiError::invalid_param(
                "tool_choice",
                "cohere cannot force a named tool: use \"required\", \"auto\" or \"none\"",
            ))
        }
        Some(ToolChoice::Mode(ToolChoiceMode::Required)) => Some("REQUIRED"),
        Some(ToolChoice::Mode(ToolChoiceMode::None)) => Some("NONE"),
        Some(ToolChoice::Mode(ToolChoiceMode::Auto)) | None => None,
    };
    if !tools.is_empty() {
        let defs: Vec<Value> = common::tool_specs(tools, true)
            .into_iter()
            .map(|t| {
                let mut f = Map::new();
                f.insert("name".into(), Value::from(t.name));
                if let Some(d) = t.description {
                    f.insert("description".into(), Value::from(d));
                }
                f.insert("parameters".into(), t.schema);
                object([("type", "function".into()), ("function", Value::Object(f))])
            })
            .collect();
        body.insert("tools".into(), Value::Array(defs));
        if let Some(c) = choice {
            body.insert("tool_choice".into(), Value::from(c));
        }
    }

    match common::output_format(req)? {
        OutputFormat::Text => {}
        OutputFormat::JsonObject => {
            body.insert("response_format".into(), object([("type", "json_object".into())]));
        }
        OutputFormat::Schema(schema) => {
            body.insert(
                "response_format".into(),
                object([("type", "json_object".into()), ("json_schema", schema.clone())]),
            );
        }
    }

    if let Some(t) = common::temperature(req) {
        body.insert("temperature".into(), Value::from(t));
    }
    if let Some(p) = common::top_p(req) {
        body.insert("p".into(), Value::from(p.clamp(0.01, 0.99)));
    }
    if let Some(m) = req.max_output_tokens() {
        body.insert("max_tokens".into(), Value::from(m));
    }
    if let Some(v) = common::stop_sequences(req) {
        body.insert("stop_sequences".into(), Value::from(v));
    }
    if let Some(seed) = req.seed {
        body.insert("seed".into(), Value::from(seed));
    }
    if let Some(f) = req.frequency_penalty {
        body.insert("frequency_penalty".into(), Value::from(f.clamp(0.0, 1.0)));
    }
    if let Some(p) = req.presence_penalty {
        body.insert("presence_penalty".into(), Value::from(p.clamp(0.0, 1.0)));
    }
    Ok(Value::Object(body))
}

fn text_of(m: &Message) -> String {
    m.content.as_ref().map(Content::text).unwrap_or_default()
}

fn message(i: usize, m: &Message) -> Result<Value, ApiError> {
    Ok(match m.role {
        Role::System | Role::Developer => object([("role", "system".into()), ("content", text_of(m).into())]),
        Role::User => object([("role", "user".into()), ("content", user_content(i, m.content.as_ref())?)]),
        Role::Assistant => {
            let mut out = Map::new();
            out.insert("role".into(), Value::from("assistant"));
            if let Some(Content::Parts(parts)) = &m.content {
                if let Some(j) = parts.iter().position(|p| !matches!(p, ContentPart::Text { .. })) {
                    return Err(ApiError::invalid_param(
                        format!("messages[{i}].content[{j}]"),
                        "assistant messages may only hold text parts",
                    ));
                }
            }
            let calls = m.tool_calls.as_deref().unwrap_or_default();
            let text = text_of(m);
            if !text.is_empty() || calls.is_empty() {
                out.insert("content".into(), Value::from(text));
            }
            if !calls.is_empty() {
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|c| {
                        object([
                            ("id", c.id.as_str().into()),
                            ("type", "function".into()),
                            (
                                "function",
                                object([
                                    ("name", c.function.name.as_str().into()),
                                    ("arguments", c.function.arguments.as_str().into()),
                                ]),
                            ),
                        ])
                    })
                    .collect();
                out.insert("tool_calls".into(), Value::Array(calls));
            }
            Value::Object(out)
        }
        Role::Tool => object([
            ("role", "tool".into()),
            ("tool_call_id", m.tool_call_id.clone().unwrap_or_default().into()),
            ("content", text_of(m).into()),
        ]),
        Role::Function => {
            return Err(ApiError::invalid_param(
                format!("messages[{i}].role"),
                "the deprecated `function` role is not supported by cohere: use `tool` messages",
            ))
        }
    })
}

fn user_content(i: usize, content: Option<&Content>) -> Result<Value, ApiError> {
    match content {
        None => Ok(Value::from("")),
        Some(Content::Text(s)) => Ok(Value::from(s.as_str())),
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| match p {
                ContentPart::Text { text } => Ok(object([("type", "text".into()), ("text", text.as_str().into())])),
                ContentPart::ImageUrl { image_url } => {
                    let mut img = Map::new();
                    img.insert("url".into(), Value::from(image_url.url.as_str()));
                    if let Some(d) = &image_url.detail {
                        img.insert("detail".into(), Value::from(d.as_str()));
                    }
                    Ok(object([("type", "image_url".into()), ("image_url", Value::Object(img))]))
                }
                ContentPart::InputAudio { .. } => Err(unsupported_part(i, j, "input_audio")),
                ContentPart::File { .. } => Err(unsupported_part(i, j, "file")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
    }
}

fn unsupported_part(i: usize, j: usize, kind: &str) -> ApiError {
    ApiError::invalid_param(
        format!("messages[{i}].content[{j}]"),
        format!("`{kind}` content parts are not supported by cohere"),
    )
}

// ---------------------------------------------------------------- response

/// OpenAI's `finish_reason` for a Cohere one; `ERROR` is a failed generation.
/// An unknown future value is reported as `stop`.
pub fn finish_reason(reason: &str) -> Result<&'static str, String> {
    match reason {
        "MAX_TOKENS" | "TIMEOUT" => Ok("length"),
        "TOOL_CALL" => Ok("tool_calls"),
        "ERROR" => Err("cohere ended the generation with finish_reason ERROR".to_owned()),
        // COMPLETE, STOP_SEQUENCE and anything new.
        _ => Ok("stop"),
    }
}

/// `usage.tokens` (what the model processed) falling back to `usage.billed_units`.
fn usage(u: &Value) -> Option<Usage> {
    let pick = |field: &str| u.at("tokens").at(field).count().or_else(|| u.at("billed_units").at(field).count());
    let (input, output) = (pick("input_tokens"), pick("output_tokens"));
    if input.is_none() && output.is_none() {
        return None;
    }
    let (input, output) = (input.unwrap_or(0), output.unwrap_or(0));
    Some(Usage {
        prompt_tokens: input,
        completion_tokens: output,
        total_tokens: input + output,
        prompt_tokens_details: u.at("cached_tokens").count().map(|c| PromptTokensDetails { cached_tokens: c }),
        completion_tokens_details: None,
    })
}

/// Parses a Chat v2 response. Text blocks are concatenated; `thinking`
/// blocks (or else the `tool_plan`) become `reasoning_content`.
///
/// Cohere's response names no model, so `model` is left empty here: the
/// gateway fills in the target's model name.
pub fn parse_response(body: &str, now_s: u64) -> Result<ChatCompletion, String> {
    let r: Value = serde_json::from_str(body).map_err(|e| format!("not a cohere chat response: {e}"))?;
    let Some(id) = r.at("id").as_str() else {
        return Err("not a cohere chat response: it needs a string `id`".to_owned());
    };
    let message = r.at("message");
    if !message.is_object() {
        return Err("not a cohere chat response: it needs a `message` object".to_owned());
    }
    let mut a = Assembled { id: id.to_owned(), ..Assembled::default() };
    a.finish_reason = match r.at("finish_reason") {
        Value::Null => None,
        Value::String(s) => Some(finish_reason(s)?.to_owned()),
        _ => return Err("not a cohere chat response: `finish_reason` is not a string".to_owned()),
    };
    match message.at("content") {
        Value::Null => {}
        Value::String(s) => a.text.push_str(s),
        Value::Array(blocks) => {
            for b in blocks {
                match b.at("type").as_str() {
                    Some("text") => a.text.push_str(b.at("text").as_str().unwrap_or_default()),
                    Some("thinking") => a.reasoning.push_str(b.at("thinking").as_str().unwrap_or_default()),
                    _ => {}
                }
            }
        }
        _ => return Err("message.content is neither a list of blocks nor a string".to_owned()),
    }
    if a.reasoning.is_empty() {
        a.reasoning = message.at("tool_plan").as_str().unwrap_or_default().to_owned();
    }
    let calls = match message.at("tool_calls") {
        Value::Null => &[][..],
        Value::Array(calls) => calls,
        _ => return Err("message.tool_calls is not a list".to_owned()),
    };
    for (i, v) in calls.iter().enumerate() {
        let (Some(id), Some(name)) = (v.at("id").as_str(), v.at("function").at("name").as_str()) else {
            return Err(format!("message.tool_calls[{i}] has no id or function name"));
        };
        let arguments = match v.at("function").at("arguments") {
            Value::String(s) => s.clone(),
            Value::Null => "{}".to_owned(),
            other => other.json_text(),
        };
        a.call(id, name, arguments);
    }
    a.usage = usage(r.at("usage"));
    Ok(a.into_completion(now_s))
}

// ---------------------------------------------------------------- errors

/// Classifies an error body `{id?, message}`. Cohere's bodies carry no type,
/// so the status decides; a 400 or 422 is refined by its message (context
/// length, content policy). 498 (invalid token) is an auth error and 499
/// (request cancelled) a server error.
pub fn classify_error(status: u16, body: &str) -> UpstreamError {
    let message = common::error_object(body)
        .at("message")
        .as_str()
        .map_or_else(|| format!("upstream answered HTTP {status}"), str::to_owned);
    let kind = match status {
        400 | 422 if looks_like_context_length(&message) => ErrorKind::ContextLength,
        400 | 422 if looks_like_content_policy(&message) => ErrorKind::ContentPolicy,
        499 => ErrorKind::Server,
        _ => ErrorKind::from_status(status),
    };
    UpstreamError::new(kind, clip(&message))
}

// ---------------------------------------------------------------- streaming

/// Reads a Chat v2 stream (MAPPING.md §6):
///
/// - `message-start` -> [`Event::Start`] with the event's `id` (as
///   [`parse_response`] answers).
/// - `content-delta` text -> text, its `thinking` -> reasoning, and
///   `tool-plan-delta` -> reasoning; `tool-call-start` -> a tool call (with
///   the `arguments` it carries, usually `""`), `tool-call-delta` -> its
///   arguments, `{}` at `tool-call-end` if it got none.
/// - `message-end` -> usage, the mapped finish reason, then [`Event::Done`]. A
///   `finish_reason` of `ERROR` is an [`Event::Error`] (kind `Server`).
/// - `data: [DONE]` -> `Done` if `message-end` has not already ended the
///   stream. Events after the end are ignored.
#[derive(Default)]
pub struct StreamDecoder {
    tools: ToolCalls,
    done: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The tool call object of a tool-call event (a list is tolerated: its first).
    fn call(v: &Value) -> &Value {
        let call = v.at("delta").at("message").at("tool_calls");
        if call.is_array() {
            call.nth(0)
        } else {
            call
        }
    }

    fn message_end(&mut self, v: &Value, out: &mut Vec<Event>) {
        let delta = v.at("delta");
        if let Some(u) = usage(delta.at("usage")) {
            out.push(Event::Usage(u));
        }
        self.done = true;
        match delta.at("finish_reason").as_str().map(finish_reason) {
            Some(Err(message)) => {
                out.push(Event::Error(UpstreamError::new(ErrorKind::Server, message)));
                return;
            }
            Some(Ok(reason)) => out.push(Event::Finish { choice: 0, reason: reason.to_owned() }),
            None => {}
        }
        out.push(Event::Done);
    }
}

impl Decode for StreamDecoder {
    fn decode(&mut self, ev: &SseEvent, out: &mut Vec<Event>) {
        if crate::event::at_done_marker(&mut self.done, ev, out) {
            return;
        }
        let Some(v) = crate::event::object_or_malformed(&ev.data, out) else { return };
        // `data.type` always equals the event name; the data is read first.
        match v.at("type").as_str().or(ev.event.as_deref()).unwrap_or_default() {
            "message-start" => {
                let id = v.at("id").as_str().filter(|s| !s.is_empty()).map(str::to_owned);
                out.push(Event::Start { id, model: None });
            }
            "content-delta" => {
                let content = v.at("delta").at("message").at("content");
                if let Some(text) = content.at("text").as_str().filter(|t| !t.is_empty()) {
                    out.push(Event::Text { choice: 0, text: text.to_owned() });
                }
                if let Some(text) = content.at("thinking").as_str().filter(|t| !t.is_empty()) {
                    out.push(Event::Reasoning { choice: 0, text: text.to_owned() });
                }
            }
            "tool-plan-delta" => {
                if let Some(text) = v.at("delta").at("message").at("tool_plan").as_str().filter(|t| !t.is_empty()) {
                    out.push(Event::Reasoning { choice: 0, text: text.to_owned() });
                }
            }
            "tool-call-start" => {
                let call = Self::call(&v);
                let f = call.at("function");
                let (Some(id), Some(name)) = (call.at("id").as_str(), f.at("name").as_str()) else {
                    out.push(Event::Malformed);
                    return;
                };
                let args = f.at("arguments").as_str().unwrap_or_default();
                self.tools.start(v.at("index").as_u64(), id, name, args, out);
            }
            "tool-call-delta" => {
                let ok = match Self::call(&v).at("function").at("arguments").as_str() {
                    Some(piece) => self.tools.args(v.at("index").as_u64(), piece, out),
                    None => false,
                };
                if !ok {
                    out.push(Event::Malformed);
                }
            }
            "tool-call-end" => self.tools.end(v.at("index").as_u64(), out),
            "message-end" => self.message_end(&v, out),
            // content-start / -end, citation-*, debug, and newer ones.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn read(path: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }
    fn fixture(name: &str) -> String {
        read(&format!("cohere/{name}"))
    }
    fn fixture_json(name: &str) -> Value {
        serde_json::from_str(&fixture(name)).unwrap()
    }
    fn envelope(name: &str) -> (u16, String) {
        let v = fixture_json(name);
        (v["status"].as_u64().unwrap() as u16, v["body"].to_string())
    }
    fn config() -> Config {
        Config::from_json(
            r#"{"providers":{"co":{"format":"cohere","base_url":"https://api.cohere.com","key_secret":"K",
                "headers":{"x-client-name":"switchyard"}}},
                "routes":{"chat":{"targets":[{"provider":"co","model":"command-a-03-2025"}]}}}"#,
        )
        .unwrap()
    }
    fn build_as(model: &str, req: &str) -> Result<(UpstreamRequest, Value), ApiError> {
        let cfg = config();
        let req = ChatRequest::parse(req.as_bytes()).unwrap();
        let r = build_request(&Outbound { provider: &cfg.providers[0], model, api_key: Some("co-key") }, &req)?;
        let body = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
        Ok((r, body))
    }
    fn build(req: &str) -> Result<Value, ApiError> {
        build_as("command-a-03-2025", req).map(|(_, b)| b)
    }
    fn without(mut v: Value, keys: &[&str]) -> Value {
        for k in keys {
            v.as_object_mut().unwrap().remove(*k);
        }
        v
    }

    #[test]
    fn openai_fixture_request_translates() {
        let (r, body) = build_as("command-a-03-2025", &read("openai/chat_request.json")).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.url, "https://api.cohere.com/v2/chat");
        for h in
            [("authorization", "Bearer co-key"), ("content-type", "application/json"), ("x-client-name", "switchyard")]
        {
            assert!(r.headers.contains(&(h.0.into(), h.1.into())), "{h:?} in {:?}", r.headers);
        }
        let openai: Value = serde_json::from_str(&read("openai/chat_request.json")).unwrap();
        assert_eq!(body["model"], "command-a-03-2025");
        assert_eq!(body["messages"][0], json!({"role":"system","content":"You are a helpful assistant."}));
        assert_eq!(body["messages"][1], openai["messages"][1], "user parts keep OpenAI's shape");
        assert_eq!(body["tools"], openai["tools"], "tools keep OpenAI's shape");
        assert!(body.get("tool_choice").is_none(), "auto is Cohere's default");
        assert_eq!(body["max_tokens"], 300);
        assert_eq!(body["temperature"], 0.7);
        assert!(body.get("p").is_none(), "top_p 1 restricts nothing: left out, as for every format");
        assert_eq!(body["stop_sequences"], json!(["\n\nUser:"]));
        assert_eq!(body["stream"], true, "the fixture request streams");
        for dropped in ["stream_options", "top_p", "stop", "max_completion_tokens"] {
            assert!(body.get(dropped).is_none(), "{dropped}");
        }
        let cfg = config();
        let req = ChatRequest::parse(read("openai/chat_request.json").as_bytes()).unwrap();
        let r = build_request(&Outbound { provider: &cfg.providers[0], model: "m", api_key: None }, &req).unwrap();
        assert!(r.headers.iter().all(|(k, _)| k != "authorization"));
    }

    #[test]
    fn image_requests_match_the_recorded_shape() {
        let body = build(&read("openai/chat_request_image_base64.json")).unwrap();
        let openai: Value = serde_json::from_str(&read("openai/chat_request_image_base64.json")).unwrap();
        assert_eq!(body["messages"][0]["content"], openai["messages"][0]["content"], "data URI and detail kept");
        assert_eq!(body["max_tokens"], 300);

        // The OpenAI request that means the same as cohere/chat_request_image.json.
        let recorded = fixture_json("chat_request_image.json");
        let req = json!({"model":"chat","messages":recorded["messages"],"stream":false});
        let (_, body) = build_as("command-a-vision-07-2025", &req.to_string()).unwrap();
        assert_eq!(body, without(recorded, &["stream"]));
    }

    #[test]
    fn tool_result_conversation_matches_the_recorded_request() {
        let recorded = fixture_json("chat_request_tool_message_string.json");
        let req = json!({
            "model": "chat",
            "messages": [
                {"role":"user","content":"What were the sales on 2023-09-29?"},
                {"role":"assistant","content":null,"tool_calls": recorded["messages"][1]["tool_calls"]},
                {"role":"tool","tool_call_id":"query_daily_sales_report_hgxxmkby3wta",
                 "content": recorded["messages"][2]["content"]}
            ],
            "tools": recorded["tools"],
            "tool_choice": "required"
        });
        let (_, body) = build_as("command-a-plus-05-2026", &req.to_string()).unwrap();
        let mut expected = without(recorded, &["stream"]);
        // OpenAI has no tool_plan, so the translation has none.
        expected["messages"][1].as_object_mut().unwrap().remove("tool_plan");
        assert_eq!(body, expected);

        let body = build(&read("openai/chat_request_tool_result.json")).unwrap();
        assert_eq!(
            body["messages"],
            json!([
                {"role":"system","content":"You are a helpful assistant."},
                {"role":"user","content":"What is the weather like in Boston today?"},
                {"role":"assistant","tool_calls":[{"id":"call_abc123","type":"function","function":{
                    "name":"get_current_weather","arguments":"{\"location\": \"Boston, MA\"}"}}]},
                {"role":"tool","tool_call_id":"call_abc123",
                 "content":"{\"temperature\": 22, \"unit\": \"celsius\", \"description\": \"Sunny\"}"}
            ])
        );
        assert!(body.get("max_tokens").is_none(), "Cohere defaults to the model's maximum");
    }

    #[test]
    fn assistant_text_with_tool_calls_and_parts() {
        let body = build(
            r#"{"model":"m","messages":[{"role":"user","content":"q"},
                {"role":"assistant","content":[{"type":"text","text":"Let me "},{"type":"text","text":"check."}],
                 "tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"a","content":[{"type":"text","text":"42"}]},
                {"role":"tool","tool_call_id":"b","content":"43"},
                {"role":"assistant","content":"done"}]}"#,
        )
        .unwrap();
        let m = body["messages"].as_array().unwrap();
        assert_eq!(m.len(), 5, "no merging for cohere");
        assert_eq!(m[1]["content"], "Let me check.");
        assert_eq!(m[1]["tool_calls"][0]["function"]["arguments"], "{}");
        assert_eq!(m[2], json!({"role":"tool","tool_call_id":"a","content":"42"}));
        assert_eq!(m[4], json!({"role":"assistant","content":"done"}));
    }

    #[test]
    fn sampling_parameters_are_clamped() {
        let body = build(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1.8,"top_p":0,
                "frequency_penalty":-1.5,"presence_penalty":1.5,"seed":42,"max_tokens":64,"stop":"END","user":"u"}"#,
        )
        .unwrap();
        assert_eq!(body["temperature"], 1.0);
        assert_eq!(body["p"], 0.01);
        assert_eq!(body["frequency_penalty"], 0.0);
        assert_eq!(body["presence_penalty"], 1.0);
        assert_eq!(body["seed"], 42);
        assert_eq!(body["max_tokens"], 64);
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert!(body.get("user").is_none());
        let body = build(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"top_p":0.5,"presence_penalty":0.4}"#).unwrap();
        assert_eq!((body["temperature"].as_f64(), body["p"].as_f64()), (Some(0.2), Some(0.5)));
        assert_eq!(body["presence_penalty"], 0.4);
    }

    #[test]
    fn tool_choice_modes() {
        let with = |extra: &str| {
            build(&format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],
                   "tools":[{{"type":"function","function":{{"name":"f","strict":true}}}}]{extra}}}"#
            ))
        };
        let b = with("").unwrap();
        assert_eq!(
            b["tools"],
            json!([{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{}}}}])
        );
        assert!(b.get("tool_choice").is_none());
        assert_eq!(with(r#","tool_choice":"required""#).unwrap()["tool_choice"], "REQUIRED");
        assert_eq!(with(r#","tool_choice":"none""#).unwrap()["tool_choice"], "NONE");
        assert!(with(r#","tool_choice":"auto","parallel_tool_calls":false"#).unwrap().get("tool_choice").is_none());
        let e = with(r#","tool_choice":{"type":"function","function":{"name":"f"}}"#).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("tool_choice")));
        assert!(e.message.contains("cohere cannot force a named tool"), "{}", e.message);
    }

    #[test]
    fn response_formats() {
        let with = |rf: &str| {
            build(&format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"response_format":{rf}}}"#))
        };
        assert_eq!(with(r#"{"type":"json_object"}"#).unwrap()["response_format"], json!({"type":"json_object"}));
        let schema = json!({"type":"object","properties":{"a":{"type":"string"}},"required":["a"]});
        let b =
            with(&json!({"type":"json_schema","json_schema":{"name":"x","strict":true,"schema":schema}}).to_string())
                .unwrap();
        assert_eq!(b["response_format"], json!({"type":"json_object","json_schema":schema}));
        assert!(with(r#"{"type":"text"}"#).unwrap().get("response_format").is_none());
        assert_eq!(with(r#"{"type":"json_schema","json_schema":{"name":"x"}}"#).unwrap_err().status, 400);
    }

    #[test]
    fn unsupported_inputs_are_client_errors() {
        let e = build(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":3}"#).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("n")));
        let e =
            build(r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#)
                .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
        let e = build(r#"{"model":"m","messages":[{"role":"user","content":"q"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"file","file":{}}]}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[1].content[1]"));
        let e = build(r#"{"model":"m","messages":[{"role":"function","name":"f","content":"x"}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
    }

    #[test]
    fn parses_recorded_responses() {
        let c = parse_response(&fixture("chat_response.json"), 1_700_000_000).unwrap();
        assert_eq!(c.id, "c14c80c3-18eb-4519-9460-6c92edd8cfb4");
        assert_eq!((c.object.as_str(), c.created, c.model.as_str()), ("chat.completion", 1_700_000_000, ""));
        assert!(c.choices[0].message.content.as_deref().unwrap().starts_with("LLMs stand for Large Language Models"));
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some("stop"));
        let u = c.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (71, 418, 489), "tokens, not billed_units");

        let c = parse_response(&fixture("chat_response_max_tokens.json"), 0).unwrap();
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(
            c.choices[0].message.content.as_deref(),
            Some("LLMs stand for Large Language Models, which are a type of neural")
        );
        assert_eq!(c.usage.unwrap().total_tokens, 83);

        for file in ["chat_response_tool_calls.json", "chat_response_tool_calls_tool_plan.json"] {
            let c = parse_response(&fixture(file), 0).unwrap();
            let m = &c.choices[0].message;
            assert_eq!(c.choices[0].finish_reason.as_deref(), Some("tool_calls"), "{file}");
            assert_eq!(m.content, None, "thinking and tool_plan are not content ({file})");
            let calls = m.tool_calls.as_ref().unwrap();
            assert_eq!(calls.len(), 2);
            assert_eq!(calls[0].id, "query_daily_sales_report_hgxxmkby3wta");
            assert_eq!(calls[0].function.name, "query_daily_sales_report");
            assert_eq!(calls[0].function.arguments, "{\"day\": \"2023-09-29\"}");
            assert_eq!(calls[1].function.name, "query_product_catalog");
            assert_eq!(calls[1].function.arguments, "{\"category\": \"Electronics\"}");
            let u = c.usage.unwrap();
            assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (1032, 124, 1156));
            assert!(u.prompt_tokens_details.is_none());
        }
    }

    #[test]
    fn every_finish_reason_maps() {
        let reasons: Vec<String> = serde_json::from_str(&fixture("finish_reasons.json")).unwrap();
        let expected = [
            ("COMPLETE", Some("stop")),
            ("STOP_SEQUENCE", Some("stop")),
            ("MAX_TOKENS", Some("length")),
            ("TOOL_CALL", Some("tool_calls")),
            ("ERROR", None),
            ("TIMEOUT", Some("length")),
        ];
        assert_eq!(reasons.len(), expected.len());
        for r in &reasons {
            let want = expected.iter().find(|(k, _)| k == r).unwrap().1;
            let body = json!({"id":"x","finish_reason":r,"message":{"role":"assistant","content":[{"type":"text","text":"t"}]}});
            match want {
                Some(w) => assert_eq!(
                    parse_response(&body.to_string(), 0).unwrap().choices[0].finish_reason.as_deref(),
                    Some(w),
                    "{r}"
                ),
                None => assert!(parse_response(&body.to_string(), 0).unwrap_err().contains("ERROR")),
            }
        }
    }

    #[test]
    fn response_edge_cases() {
        // billed_units fallback, float counts, cached tokens, several text blocks.
        let c = parse_response(
            r#"{"id":"x","finish_reason":"COMPLETE","message":{"role":"assistant","content":[
                {"type":"thinking","thinking":"hm"},{"type":"text","text":"a"},{"type":"text","text":"b"}]},
                "usage":{"billed_units":{"input_tokens":5.0,"output_tokens":7},"cached_tokens":3}}"#,
            0,
        )
        .unwrap();
        assert_eq!(c.choices[0].message.content.as_deref(), Some("ab"));
        let u = c.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (5, 7, 12));
        assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, 3);
        let c = parse_response(r#"{"id":"x","finish_reason":"COMPLETE","message":{"role":"assistant"},"usage":{}}"#, 0)
            .unwrap();
        assert_eq!(c.choices[0].message.content.as_deref(), Some(""));
        assert!(c.usage.is_none());
        for bad in [
            "<html>",
            "{}",
            r#"{"message":"internal server error"}"#,
            r#"{"id":"x","message":{"content":42}}"#,
            r#"{"id":"x","message":{"tool_calls":[{"type":"function","function":{"arguments":"{}"}}]}}"#,
            r#"{"id":"x","message":{"tool_calls":{}}}"#,
            r#"{"id":"x","message":"hi"}"#,
            r#"{"id":"x","message":{},"finish_reason":1}"#,
            r#"{"id":1,"message":{}}"#,
        ] {
            assert!(parse_response(bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn classifies_recorded_errors() {
        let cases = [
            ("error_400_invalid_request.json", ErrorKind::BadRequest),
            ("error_400_too_many_tokens.json", ErrorKind::ContextLength),
            ("error_401_unauthorized.json", ErrorKind::Auth),
            ("error_429_rate_limit.json", ErrorKind::RateLimited),
            ("error_500_internal.json", ErrorKind::Server),
        ];
        for (file, kind) in cases {
            let (status, body) = envelope(file);
            let e = classify_error(status, &body);
            assert_eq!(e.kind, kind, "{file}");
            let expected: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(e.message, clip(expected["message"].as_str().unwrap()), "{file}");
        }
    }

    #[test]
    fn classifies_cohere_statuses() {
        let cases = [
            (498, r#"{"message":"invalid or blocked token"}"#, ErrorKind::Auth),
            (499, r#"{"message":"request cancelled"}"#, ErrorKind::Server),
            (402, r#"{"message":"billing limit reached"}"#, ErrorKind::Auth),
            (404, r#"{"message":"model 'x' not found"}"#, ErrorKind::NotFound),
            (400, r#"{"message":"blocked by our content policy"}"#, ErrorKind::ContentPolicy),
            (422, r#"{"message":"too many tokens"}"#, ErrorKind::ContextLength),
            (429, r#"{"message":"too many tokens per minute"}"#, ErrorKind::RateLimited),
            (503, r#"{"id":"x","message":"service unavailable"}"#, ErrorKind::Overloaded),
            (504, "", ErrorKind::Server),
            (400, "not json", ErrorKind::BadRequest),
        ];
        for (status, body, kind) in cases {
            assert_eq!(classify_error(status, body).kind, kind, "{status} {body}");
        }
        assert_eq!(classify_error(504, "").message, "upstream answered HTTP 504");
    }

    use crate::providers::openai::stream_test::{self as st, summarise, StreamItem};

    fn stream(sse: &str, include_usage: bool) -> (Vec<StreamItem>, Option<Usage>) {
        let mut t = st::Translator::named(Box::new(StreamDecoder::new()), "command-a-03-2025", include_usage);
        let items = st::run(&mut t, sse);
        (items, t.usage())
    }
    fn ev(name: &str, data: Value) -> String {
        format!("event: {name}\ndata: {data}\n\n")
    }

    #[test]
    fn build_request_streams_only_when_asked() {
        for (stream, want) in [("true", Some(true)), ("false", None), ("null", None)] {
            let b = build(&format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"stream":{stream},
                   "stream_options":{{"include_usage":true}}}}"#
            ))
            .unwrap();
            assert_eq!(b.get("stream").and_then(Value::as_bool), want, "{stream}");
            assert!(b.get("stream_options").is_none());
        }
    }

    #[test]
    fn recorded_text_stream_translates() {
        for include_usage in [false, true] {
            let (items, usage) = stream(&fixture("chat_stream_text.sse"), include_usage);
            let s = summarise(&items);
            assert_eq!(
                s.text,
                "LLMs stand for Large Language Models, which are a type of neural network model \
                 specialized in processing and generating human language."
            );
            assert_eq!(s.finish, ["stop"]);
            assert!(s.calls.is_empty());
            assert_eq!((s.dones, s.malformed, s.errors.len()), (1, 0, 0), "[DONE] after message-end");
            let u = usage.unwrap();
            assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (71, 26, 97), "tokens");
            assert_eq!(s.chunks[0]["choices"][0]["delta"], json!({"role":"assistant","content":""}));
            for c in &s.chunks {
                assert_eq!(c["id"], "29f14a5a-11de-4cae-9800-25e4747408ea");
                assert_eq!(
                    (c["model"].as_str(), c["created"].as_u64()),
                    (Some("command-a-03-2025"), Some(1_700_000_000))
                );
            }
            if include_usage {
                assert_eq!(s.usage_chunks.len(), 1);
                assert_eq!(
                    s.usage_chunks[0]["usage"],
                    json!({"prompt_tokens":71,"completion_tokens":26,"total_tokens":97})
                );
                // finish chunk, usage chunk, Done.
                assert!(matches!(&items[items.len() - 3], StreamItem::Chunk { finish_reason: Some(_), .. }));
                assert!(
                    matches!(&items[items.len() - 2], StreamItem::Chunk { finish_reason: None, text, .. } if text.is_empty())
                );
            } else {
                assert!(s.usage_chunks.is_empty());
            }
        }
    }

    #[test]
    fn recorded_tool_stream_translates() {
        let (items, usage) = stream(&fixture("chat_stream_tool_calls.sse"), true);
        let s = summarise(&items);
        assert_eq!(s.text, "", "the tool plan is not content");
        assert_eq!(s.calls.len(), 2);
        assert_eq!(s.calls[0].id, "query_daily_sales_report_j3f0adww9pmr");
        assert_eq!(s.calls[0].name, "query_daily_sales_report");
        assert_eq!(s.calls[0].args(), json!({"day": "2023-09-29"}));
        assert_eq!(s.calls[1].id, "query_product_catalog_c66nf11r6s8g");
        assert_eq!(s.calls[1].name, "query_product_catalog");
        assert_eq!(s.calls[1].args(), json!({"category": "Electronics"}));
        assert_eq!(s.finish, ["tool_calls"]);
        assert_eq!(s.dones, 1);
        let u = usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (1589, 135, 1724));
        assert_eq!(s.usage_chunks[0]["usage"]["total_tokens"], 1724);
    }

    #[test]
    fn tool_calls_are_renumbered_and_argument_less_calls_get_an_object() {
        let call = |id: &str, name: &str| json!({"message":{"tool_calls":{"id":id,"type":"function","function":{"name":name,"arguments":""}}}});
        let args = |a: &str| json!({"message":{"tool_calls":{"function":{"arguments":a}}}});
        let sse = [
            ev("message-start", json!({"type":"message-start","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}})),
            ev("content-start", json!({"type":"content-start","index":0,"delta":{"message":{"content":{"type":"thinking","thinking":""}}}})),
            ev("content-delta", json!({"type":"content-delta","index":0,"delta":{"message":{"content":{"thinking":"hm"}}}})),
            ev("content-end", json!({"type":"content-end","index":0})),
            // Cohere's index counting the content block too: renumbered to 0 and 1.
            ev("tool-call-start", json!({"type":"tool-call-start","index":1,"delta":call("a","f")})),
            ev("tool-call-end", json!({"type":"tool-call-end","index":1})),
            ev("tool-call-start", json!({"type":"tool-call-start","index":2,"delta":call("b","g")})),
            ev("tool-call-delta", json!({"type":"tool-call-delta","index":2,"delta":args("{\"x\":")})),
            ev("tool-call-delta", json!({"type":"tool-call-delta","delta":args("1}")})),
            ev("tool-call-end", json!({"type":"tool-call-end","index":2})),
            ev("citation-start", json!({"type":"citation-start","index":0})),
            ev("debug", json!({"type":"debug"})),
            ev("message-end", json!({"type":"message-end","delta":{"finish_reason":"TOOL_CALL",
                "usage":{"billed_units":{"input_tokens":5.0,"output_tokens":7},"cached_tokens":2}}})),
        ]
        .concat();
        let (items, usage) = stream(&sse, false);
        let s = summarise(&items);
        assert_eq!(s.calls.len(), 2);
        assert_eq!((s.calls[0].id.as_str(), s.calls[0].args()), ("a", json!({})));
        assert_eq!((s.calls[1].id.as_str(), s.calls[1].args()), ("b", json!({"x":1})));
        assert_eq!((s.text.as_str(), s.dones, s.malformed), ("", 1, 0));
        assert!(s.chunks.iter().all(|c| c["id"] == "chatcmpl-gateway"), "no id on message-start");
        let u = usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (5, 7, 12), "billed_units fallback");
        assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, 2);
    }

    #[test]
    fn an_error_finish_is_a_server_error() {
        let sse = fixture("chat_stream_text.sse").replace("\"COMPLETE\"", "\"ERROR\"");
        let (items, usage) = stream(&sse, true);
        let s = summarise(&items);
        assert!(s.text.starts_with("LLMs stand for"));
        assert!(s.finish.is_empty() && s.usage_chunks.is_empty());
        assert_eq!(s.dones, 0, "the error ends the stream; the later [DONE] is ignored");
        let StreamItem::Error(e) = items.last().unwrap() else { panic!("{items:?}") };
        assert_eq!(e.kind, ErrorKind::Server);
        assert!(e.message.contains("ERROR"));
        assert_eq!(usage.unwrap().total_tokens, 97);
    }

    #[test]
    fn done_without_message_end_still_ends_the_stream() {
        let sse = fixture("chat_stream_text.sse");
        let cut = sse.find("event: message-end").unwrap();
        let sse = format!("{}data: [DONE]\n\n", &sse[..cut]);
        let (items, usage) = stream(&sse, true);
        let s = summarise(&items);
        assert_eq!(s.dones, 1);
        assert!(s.finish.is_empty() && s.usage_chunks.is_empty());
        assert!(usage.is_none());
        assert!(s.text.ends_with("human language."));
    }

    #[test]
    fn unreadable_events_are_skipped() {
        let sse = fixture("chat_stream_text.sse").replacen(
            "event: content-start\n",
            "event: content-delta\ndata: {\"type\":\"content-delta\",\"index\":0,\"del\n\n\
             event: tool-call-delta\ndata: {\"type\":\"tool-call-delta\",\"index\":4,\"delta\":{\"message\":{\"tool_calls\":{\"function\":{\"arguments\":\"x\"}}}}}\n\n\
             event: tool-call-start\ndata: {\"type\":\"tool-call-start\",\"index\":0,\"delta\":{\"message\":{\"tool_calls\":{}}}}\n\n\
             data: 42\n\nevent: content-start\n",
            1,
        );
        let (items, usage) = stream(&sse, false);
        let s = summarise(&items);
        assert_eq!(s.malformed, 4);
        assert!(s.calls.is_empty());
        assert_eq!((s.dones, s.finish.len()), (1, 1));
        assert!(s.text.starts_with("LLMs stand for Large"));
        assert_eq!(usage.unwrap().total_tokens, 97);
    }
}
