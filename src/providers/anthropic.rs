//! Anthropic Messages (`POST {base_url}/v1/messages`).
//!
//! Request translation (OpenAI Chat Completions -> Messages), field by field
//! (see `tests/fixtures/MAPPING.md`):
//!
//! - `system` / `developer` messages, wherever they stand, are lifted into the
//!   top-level `system` string, joined with a blank line (`"\n\n"`) in their
//!   original order. Only their text is kept.
//! - `max_tokens` is required by Anthropic: the client's `max_completion_tokens`,
//!   else its `max_tokens`, else the provider's `default_max_tokens`.
//! - `temperature` is clamped to 1.0 and `top_p` left out when it is 1 (as for
//!   every format: `providers::common`). Claude 4.x models refuse `temperature`
//!   and `top_p` together, so when both are given only `temperature` is sent.
//! - `reasoning_effort` (targets with the `reasoning` capability) ->
//!   `thinking: {type:"enabled", budget_tokens}` with the budget for that
//!   effort (`common::reasoning_budget`); `max_tokens` grows by the budget
//!   when it would not leave room for an answer. Thinking requires the
//!   default sampling, so `temperature` and `top_p` are not sent with it, and
//!   it cannot be combined with a forced tool choice (a 400).
//! - `stop` -> `stop_sequences`, `user` -> `metadata.user_id`.
//! - `tools` -> `{name, description, input_schema}`; `tool_choice` and
//!   `parallel_tool_calls` -> `tool_choice{type, name?, disable_parallel_tool_use?}`.
//!   Both are sent only when the request defines at least one tool.
//! - Messages: Anthropic wants alternating `user` / `assistant` turns, so
//!   adjacent turns of the same role are merged into one turn whose content
//!   blocks are concatenated. `tool` messages become `tool_result` blocks in a
//!   user turn (so several results in a row share one turn), and inside a user
//!   turn the `tool_result` blocks are moved first, as Anthropic requires. A turn
//!   that is a single plain text block is sent with string content. Empty text
//!   blocks are never sent (Anthropic rejects them); a turn left empty is dropped.
//! - `response_format`: `json_schema` -> `output_config.format{type:"json_schema",
//!   schema}`. Anthropic has no JSON-object mode, so `json_object` adds the
//!   instruction [`JSON_OBJECT_INSTRUCTION`] to the end of `system` (capability
//!   routing keeps JSON requests on targets marked `json`).
//! - Not supported, so capability routing never sends them here: `n > 1`,
//!   `logprobs` / `top_logprobs`. Rejected with a 400: `input_audio` / `file`
//!   content parts, non-image data URIs, the deprecated `function` role.
//! - Dropped (sampling hints with no Anthropic equivalent): `seed`,
//!   `frequency_penalty`, `presence_penalty`, message `name`, and unknown
//!   top-level fields.
//! - `stream: true` is sent when the client streams (and nothing otherwise);
//!   [`StreamDecoder`] reads that stream, [`parse_response`] the plain answer.
//!   `stream_options` is not sent: a Messages stream always reports usage.

// `ApiError` is large; the signatures are shared by every adapter (see mod.rs).
#![allow(clippy::result_large_err)]

use super::common::{self, Assembled, OutputFormat, ToolCalls};
use super::{clip, request_headers, Outbound};
use crate::api::{
    ApiError, ChatCompletion, ChatRequest, CompletionTokensDetails, Content, ContentPart, Message, Native, NativeApi,
    PromptTokensDetails, Role, ToolChoice, ToolChoiceMode, Usage,
};
use crate::event::{Decode, Event};
use crate::json::{object, Dig, Fields, JsonText as _};
use crate::json_view::{deserialize_view, text, View};
use crate::sse::SseEvent;
use crate::taxonomy::{looks_like_content_policy, looks_like_context_length, ErrorKind, UpstreamError};
use crate::upstream::UpstreamRequest;
use serde::de::MapAccess;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// Appended to `system` for `response_format: {"type":"json_object"}`.
pub const JSON_OBJECT_INSTRUCTION: &str = "Respond with a single JSON object and nothing else.";

/// Image media types the Messages API accepts in base64 sources.
const IMAGE_MEDIA_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

pub fn build_request(out: &Outbound, req: &ChatRequest) -> Result<UpstreamRequest, ApiError> {
    if let Some(native) = req.native.as_deref().filter(|n| n.api == Some(NativeApi::Messages)) {
        return Ok(native_request(out, native, "/v1/messages"));
    }
    let body = body_for(out, req)?;
    let headers = request_headers(out);
    Ok(UpstreamRequest {
        method: "POST",
        url: format!("{}/v1/messages", out.provider.base_url),
        headers,
        body: Some(body.json_text()),
    })
}

/// A Messages client's own request, with the target's model and the
/// client's `anthropic-version` and `anthropic-beta` headers (cache
/// control, thinking and beta fields kept as sent). `path` is the API's
/// (`/v1/messages`, `/v1/messages/count_tokens`).
pub fn native_request(out: &Outbound, native: &Native, path: &str) -> UpstreamRequest {
    let mut body = native.body.clone();
    body.insert("model".into(), Value::from(out.model));
    let mut headers = request_headers(out);
    for (name, value) in &native.headers {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        headers.push((name.clone(), value.clone()));
    }
    UpstreamRequest {
        method: "POST",
        url: format!("{}{path}", out.provider.base_url),
        headers,
        body: Some(Value::Object(body).json_text()),
    }
}

fn body_for(out: &Outbound, req: &ChatRequest) -> Result<Value, ApiError> {
    if req.choices() > 1 {
        return Err(ApiError::invalid_param("n", "n > 1 is not supported by anthropic"));
    }
    let mut body = Map::new();
    body.insert("model".into(), Value::from(out.model));
    let mut max_tokens = req.max_output_tokens().unwrap_or(out.provider.default_max_tokens);
    let thinking = req.reasoning_effort().map(common::reasoning_budget);
    if let Some(budget) = thinking {
        if matches!(req.tool_choice, Some(ToolChoice::Named { .. }) | Some(ToolChoice::Mode(ToolChoiceMode::Required)))
        {
            return Err(ApiError::invalid_param(
                "tool_choice",
                "anthropic cannot think (`reasoning_effort`) with a forced tool choice: use \"auto\" or \"none\"",
            ));
        }
        // budget_tokens must stay below max_tokens, with room for the answer.
        if max_tokens <= budget {
            max_tokens = max_tokens.saturating_add(budget);
        }
        body.insert("thinking".into(), object([("type", "enabled".into()), ("budget_tokens", budget.into())]));
    }
    body.insert("max_tokens".into(), Value::from(max_tokens));
    if req.is_stream() {
        body.insert("stream".into(), Value::Bool(true));
    }

    let (mut system, messages) = translate_messages(&req.messages)?;

    match common::output_format(req)? {
        OutputFormat::Text => {}
        OutputFormat::JsonObject => system.push(JSON_OBJECT_INSTRUCTION.to_owned()),
        OutputFormat::Schema(schema) => {
            body.insert(
                "output_config".into(),
                object([("format", object([("type", "json_schema".into()), ("schema", schema.clone())]))]),
            );
        }
    }
    system.retain(|s| !s.is_empty());
    if !system.is_empty() {
        body.insert("system".into(), Value::String(crate::text::join(&system, "\n\n")));
    }
    body.insert("messages".into(), Value::Array(messages));

    if thinking.is_none() {
        match (common::temperature(req), common::top_p(req)) {
            // Claude 4.x refuse the pair: temperature wins.
            (Some(t), _) => {
                body.insert("temperature".into(), Value::from(t));
            }
            (None, Some(p)) => {
                body.insert("top_p".into(), Value::from(p));
            }
            (None, None) => {}
        }
    }
    if let Some(v) = common::stop_sequences(req) {
        body.insert("stop_sequences".into(), Value::from(v));
    }
    if let Some(user) = &req.user {
        body.insert("metadata".into(), object([("user_id", user.as_str().into())]));
    }

    let tools = req.tools.as_deref().unwrap_or_default();
    if !tools.is_empty() {
        let defs: Vec<Value> = common::tool_specs(tools, false)
            .into_iter()
            .map(|t| {
                let mut d = Map::new();
                d.insert("name".into(), Value::from(t.name));
                if let Some(desc) = t.description {
                    d.insert("description".into(), Value::from(desc));
                }
                d.insert("input_schema".into(), t.schema);
                Value::Object(d)
            })
            .collect();
        body.insert("tools".into(), Value::Array(defs));
        if let Some(choice) = tool_choice(req) {
            body.insert("tool_choice".into(), choice);
        }
    }
    Ok(Value::Object(body))
}

/// `tool_choice` plus the inverted `parallel_tool_calls` flag.
fn tool_choice(req: &ChatRequest) -> Option<Value> {
    let no_parallel = req.parallel_tool_calls == Some(false);
    let mut choice = match &req.tool_choice {
        // `none` carries no `disable_parallel_tool_use` field.
        Some(ToolChoice::Mode(ToolChoiceMode::None)) => return Some(object([("type", "none".into())])),
        Some(ToolChoice::Mode(ToolChoiceMode::Auto)) => object([("type", "auto".into())]),
        Some(ToolChoice::Mode(ToolChoiceMode::Required)) => object([("type", "any".into())]),
        Some(ToolChoice::Named { function, .. }) => {
            object([("type", "tool".into()), ("name", function.name.as_str().into())])
        }
        None if no_parallel => object([("type", "auto".into())]),
        None => return None,
    };
    if no_parallel {
        if let Some(obj) = choice.as_object_mut() {
            obj.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    Some(choice)
}

/// One Anthropic turn under construction.
struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

/// Splits the OpenAI messages into the system texts and the Anthropic turns.
fn translate_messages(messages: &[Message]) -> Result<(Vec<String>, Vec<Value>), ApiError> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let (role, blocks) = match m.role {
            Role::System | Role::Developer => {
                if let Some(c) = &m.content {
                    system.push(c.text());
                }
                continue;
            }
            Role::User => ("user", user_blocks(i, m.content.as_ref())?),
            Role::Assistant => ("assistant", assistant_blocks(i, m)?),
            Role::Tool => {
                let content = m.content.as_ref().map(Content::text).unwrap_or_default();
                let id = m.tool_call_id.clone().unwrap_or_default();
                (
                    "user",
                    vec![object([
                        ("type", "tool_result".into()),
                        ("tool_use_id", id.into()),
                        ("content", content.into()),
                    ])],
                )
            }
            Role::Function => {
                return Err(ApiError::invalid_param(
                    format!("messages[{i}].role"),
                    "the deprecated `function` role is not supported by anthropic: use `tool` messages",
                ))
            }
        };
        if blocks.is_empty() {
            continue; // nothing but empty text: Anthropic rejects an empty turn
        }
        match turns.last_mut() {
            Some(last) if last.role == role => last.blocks.extend(blocks),
            _ => turns.push(Turn { role, blocks }),
        }
    }
    if turns.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "anthropic needs at least one non-empty user or assistant message besides the system prompt",
        ));
    }
    let out = turns
        .into_iter()
        .map(|mut t| {
            if t.role == "user" {
                // tool_result blocks must come first in a user turn.
                let (mut results, rest): (Vec<Value>, Vec<Value>) =
                    t.blocks.into_iter().partition(|b| b.at("type") == "tool_result");
                results.extend(rest);
                t.blocks = results;
            }
            object([("role", t.role.into()), ("content", turn_content(t.blocks))])
        })
        .collect();
    Ok((system, out))
}

/// A single plain text block is sent as string content; anything else as blocks.
fn turn_content(mut blocks: Vec<Value>) -> Value {
    if let [only] = blocks.as_mut_slice() {
        if only.at("type") == "text" && only.as_object().is_some_and(|o| o.len() == 2) {
            if let Some(Value::String(s)) = only.get_mut("text").map(Value::take) {
                return Value::String(s);
            }
        }
    }
    Value::Array(blocks)
}

/// A text block, or none for empty text (Anthropic rejects empty text blocks).
fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| object([("type", "text".into()), ("text", text.into())]))
}

fn user_blocks(i: usize, content: Option<&Content>) -> Result<Vec<Value>, ApiError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(s)) => Ok(text_block(s).into_iter().collect()),
        Some(Content::Parts(parts)) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                match p {
                    ContentPart::Text { text } => out.extend(text_block(text)),
                    ContentPart::ImageUrl { image_url } => out.push(image_block(&image_url.url).map_err(|msg| {
                        ApiError::invalid_param(format!("messages[{i}].content[{j}].image_url.url"), msg)
                    })?),
                    ContentPart::InputAudio { .. } => return Err(unsupported_part(i, j, "input_audio")),
                    ContentPart::File { .. } => return Err(unsupported_part(i, j, "file")),
                }
            }
            Ok(out)
        }
    }
}

fn unsupported_part(i: usize, j: usize, kind: &str) -> ApiError {
    ApiError::invalid_param(
        format!("messages[{i}].content[{j}]"),
        format!("`{kind}` content parts are not supported by anthropic"),
    )
}

/// An image URL as an Anthropic image block: base64 for `data:` URIs, a URL
/// source for http(s).
fn image_block(url: &str) -> Result<Value, String> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (header, data) = rest.split_once(',').ok_or("the data URI has no `,` before its data")?;
        let mut params = header.split(';');
        let media_type = params.next().unwrap_or_default().trim().to_ascii_lowercase();
        if !params.any(|p| p.trim().eq_ignore_ascii_case("base64")) {
            return Err("only base64 data URIs are supported by anthropic".to_owned());
        }
        let media_type = if media_type == "image/jpg" { "image/jpeg".to_owned() } else { media_type };
        if !IMAGE_MEDIA_TYPES.contains(&media_type.as_str()) {
            return Err(format!(
                "unsupported image type `{media_type}`: anthropic accepts image/jpeg, image/png, image/gif and image/webp"
            ));
        }
        return Ok(object([
            ("type", "image".into()),
            ("source", object([("type", "base64".into()), ("media_type", media_type.into()), ("data", data.into())])),
        ]));
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Ok(object([
            ("type", "image".into()),
            ("source", object([("type", "url".into()), ("url", url.into())])),
        ]));
    }
    Err("an image URL must be http(s) or a base64 data URI".to_owned())
}

fn assistant_blocks(i: usize, m: &Message) -> Result<Vec<Value>, ApiError> {
    let mut blocks = Vec::new();
    match &m.content {
        None => {}
        Some(Content::Text(s)) => blocks.extend(text_block(s)),
        Some(Content::Parts(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                match p {
                    ContentPart::Text { text } => blocks.extend(text_block(text)),
                    _ => {
                        return Err(ApiError::invalid_param(
                            format!("messages[{i}].content[{j}]"),
                            "assistant messages may only hold text parts",
                        ))
                    }
                }
            }
        }
    }
    for (j, c) in m.tool_calls.iter().flatten().enumerate() {
        let param = format!("messages[{i}].tool_calls[{j}].function.arguments");
        let input: Value = if c.function.arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&c.function.arguments)
                .map_err(|e| ApiError::invalid_param(param.clone(), format!("`{param}` is not valid JSON: {e}")))?
        };
        if !input.is_object() {
            return Err(ApiError::invalid_param(param.clone(), format!("`{param}` must be a JSON object")));
        }
        blocks.push(object([
            ("type", "tool_use".into()),
            ("id", c.id.as_str().into()),
            ("name", c.function.name.as_str().into()),
            ("input", input),
        ]));
    }
    Ok(blocks)
}

// ---------------------------------------------------------------- response

/// Anthropic's token counts, as its answers and stream events report them.
#[derive(Default, Clone)]
struct AnthropicUsage {
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    thinking_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// OpenAI's usage (MAPPING.md §5): the prompt counts cached tokens too.
    fn to_openai(&self) -> Usage {
        let cache_read = self.cache_read_input_tokens.unwrap_or(0);
        let prompt =
            self.input_tokens.saturating_add(self.cache_creation_input_tokens.unwrap_or(0)).saturating_add(cache_read);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: self.output_tokens,
            total_tokens: prompt + self.output_tokens,
            prompt_tokens_details: self.cache_read_input_tokens.map(|c| PromptTokensDetails { cached_tokens: c }),
            completion_tokens_details: self.thinking_tokens.map(|t| CompletionTokensDetails { reasoning_tokens: t }),
        }
    }

    /// Takes in the counts an answer or stream event reports
    /// (`message_start.message.usage`, `message_delta.usage`). They are
    /// cumulative, so each replaces the last.
    fn update(&mut self, u: &Value) {
        if let Some(n) = u.at("input_tokens").count() {
            self.input_tokens = n;
        }
        if let Some(n) = u.at("output_tokens").count() {
            self.output_tokens = n;
        }
        if let Some(n) = u.at("cache_creation_input_tokens").count() {
            self.cache_creation_input_tokens = Some(n);
        }
        if let Some(n) = u.at("cache_read_input_tokens").count() {
            self.cache_read_input_tokens = Some(n);
        }
        if let Some(n) = u.at("output_tokens_details").at("thinking_tokens").count() {
            self.thinking_tokens = Some(n);
        }
    }
}

/// OpenAI's `finish_reason` for an Anthropic `stop_reason` (MAPPING.md §4).
/// An unknown future value is reported as `stop`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything new.
        _ => "stop",
    }
}

/// Parses a Messages response. Text blocks are concatenated, `tool_use`
/// blocks become tool calls, `thinking` blocks become `reasoning_content`;
/// other blocks are skipped.
pub fn parse_response(body: &str, now_s: u64) -> Result<ChatCompletion, String> {
    let r: Value = serde_json::from_str(body).map_err(|e| format!("not an anthropic message: {e}"))?;
    let f = Fields::of(&r).ok_or("not an anthropic message: not a JSON object")?;
    match f.opt("type", Value::as_str) {
        Some(None | Some("message")) => {}
        Some(Some(kind)) => return Err(format!("expected an anthropic message, got type `{kind}`")),
        None => return Err("not an anthropic message: `type` is not a string".to_owned()),
    }
    let (Some(id), Some(model), Some(content)) = (f.str("id"), f.str("model"), r.at("content").as_array()) else {
        return Err("not an anthropic message: it needs a string `id` and `model` and a `content` list".to_owned());
    };
    let stop_reason =
        f.opt("stop_reason", Value::as_str).ok_or("not an anthropic message: `stop_reason` is not a string")?;
    let mut a = Assembled { id: id.to_owned(), model: model.to_owned(), ..Assembled::default() };
    for (i, block) in content.iter().enumerate() {
        match block.at("type").as_str() {
            Some("text") => a.text.push_str(block.at("text").as_str().unwrap_or_default()),
            Some("thinking") => a.reasoning.push_str(block.at("thinking").as_str().unwrap_or_default()),
            Some("tool_use") => {
                let (Some(id), Some(name)) = (block.at("id").as_str(), block.at("name").as_str()) else {
                    return Err(format!("content[{i}] is a tool_use block without id or name"));
                };
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                a.call(id, name, input.json_text());
            }
            _ => {}
        }
    }
    a.finish_reason = stop_reason.map(|s| finish_reason(s).to_owned());
    let usage = r.at("usage");
    a.usage = (!usage.is_null()).then(|| {
        let mut au = AnthropicUsage::default();
        au.update(usage);
        au.to_openai()
    });
    Ok(a.into_completion(now_s))
}

// ---------------------------------------------------------------- errors

/// Anthropic's own wording when input plus `max_tokens` overflow the window
/// ("input length and `max_tokens` exceed context limit: ..."), which the
/// shared phrase list does not cover.
fn anthropic_context_overflow(message: &str) -> bool {
    message.to_ascii_lowercase().contains("exceed context limit")
}

/// Classifies an error body `{type:"error", error:{type, message}}`; a body
/// that is not one falls back to the HTTP status.
pub fn classify_error(status: u16, body: &str) -> UpstreamError {
    let parsed = common::error_object(body);
    let detail = parsed.at("error");
    let message =
        detail.at("message").as_str().map_or_else(|| format!("upstream answered HTTP {status}"), str::to_owned);
    let refine_bad_request = || {
        if looks_like_context_length(&message) || anthropic_context_overflow(&message) {
            ErrorKind::ContextLength
        } else if looks_like_content_policy(&message) {
            ErrorKind::ContentPolicy
        } else {
            ErrorKind::BadRequest
        }
    };
    let kind = match detail.at("type").as_str() {
        Some("invalid_request_error") => refine_bad_request(),
        Some("authentication_error" | "permission_error" | "billing_error") => ErrorKind::Auth,
        Some("not_found_error") => ErrorKind::NotFound,
        Some("rate_limit_error") => ErrorKind::RateLimited,
        Some("request_too_large") => ErrorKind::ContextLength,
        // The provider's own processing timed out (a 504): retryable like other 5xx.
        Some("api_error" | "timeout_error") => ErrorKind::Server,
        Some("overloaded_error") => ErrorKind::Overloaded,
        _ if status == 400 => refine_bad_request(),
        _ => ErrorKind::from_status(status),
    };
    UpstreamError::new(kind, clip(&message))
}

// ---------------------------------------------------------------- streaming

/// Reads a Messages stream (MAPPING.md §6):
///
/// - `message_start` -> [`Event::Start`] with the message's id (`msg_...`, as
///   [`parse_response`] answers) and model, and the first usage counts.
/// - `text_delta` -> text; `thinking_delta` -> reasoning (signatures are
///   dropped: OpenAI's format has no place for them); a `tool_use` block
///   start -> a tool call (renumbered), its `input_json_delta` pieces -> its
///   arguments, `{}` at `content_block_stop` if it got none.
/// - `message_delta` -> usage and the mapped finish reason.
/// - `message_stop` -> [`Event::Done`]. Later events are ignored.
/// - `event: error` -> [`Event::Error`], classified as [`classify_error`]
///   does; Anthropic ends the stream after it.
#[derive(Default)]
pub struct StreamDecoder {
    /// The client speaks Messages: events are forwarded as they are.
    forward: bool,
    usage: Option<AnthropicUsage>,
    tools: ToolCalls,
    done: bool,
}

impl StreamDecoder {
    pub fn new(forward: bool) -> Self {
        StreamDecoder { forward, ..Self::default() }
    }

    fn update_usage(&mut self, u: &Value, out: &mut Vec<Event>) {
        if u.is_object() {
            let usage = self.usage.get_or_insert_with(AnthropicUsage::default);
            usage.update(u);
            out.push(Event::Usage(usage.to_openai()));
        }
    }

    fn block_start(&mut self, v: &Value, out: &mut Vec<Event>) {
        let block = v.at("content_block");
        match block.at("type").as_str() {
            Some("tool_use") => {
                let (Some(id), Some(name)) = (block.at("id").as_str(), block.at("name").as_str()) else {
                    out.push(Event::Malformed);
                    return;
                };
                self.tools.start(v.at("index").as_u64(), id, name, "", out);
            }
            // A text block starts empty; should it not, its text is content too.
            Some("text") => {
                if let Some(text) = block.at("text").as_str().filter(|t| !t.is_empty()) {
                    out.push(Event::Text { choice: 0, text: text.to_owned() });
                }
            }
            Some("thinking") => {
                if let Some(text) = block.at("thinking").as_str().filter(|t| !t.is_empty()) {
                    out.push(Event::Reasoning { choice: 0, text: text.to_owned() });
                }
            }
            // redacted_thinking, server tool blocks and their results.
            _ => {}
        }
    }

    fn block_delta(&mut self, v: &Value, out: &mut Vec<Event>) {
        let delta = v.at("delta");
        match delta.at("type").as_str() {
            Some("text_delta") => match delta.at("text").as_str() {
                Some("") => {}
                Some(text) => out.push(Event::Text { choice: 0, text: text.to_owned() }),
                None => out.push(Event::Malformed),
            },
            Some("thinking_delta") => match delta.at("thinking").as_str() {
                Some("") => {}
                Some(text) => out.push(Event::Reasoning { choice: 0, text: text.to_owned() }),
                None => out.push(Event::Malformed),
            },
            Some("input_json_delta") => {
                let ok = match delta.at("partial_json").as_str() {
                    Some(piece) => self.tools.args(v.at("index").as_u64(), piece, out),
                    None => false,
                };
                if !ok {
                    out.push(Event::Malformed);
                }
            }
            // signature_delta, citations_delta and newer ones.
            _ => {}
        }
    }
}

/// The event nearly every Anthropic stream event is: a text or thinking
/// delta, read without building a JSON tree.
#[derive(Default)]
struct DeltaEvent<'a> {
    kind: Option<Cow<'a, str>>,
    delta: Option<DeltaView<'a>>,
}

impl<'de> View<'de> for DeltaEvent<'de> {
    const FIELDS: &'static [&'static str] = &["type", "delta"];
    fn field<A: MapAccess<'de>>(&mut self, i: usize, map: &mut A) -> Result<(), A::Error> {
        match i {
            0 => self.kind = text(map)?,
            _ => self.delta = map.next_value()?,
        }
        Ok(())
    }
}

#[derive(Default)]
struct DeltaView<'a> {
    kind: Option<Cow<'a, str>>,
    text: Option<Cow<'a, str>>,
    thinking: Option<Cow<'a, str>>,
}

impl<'de> View<'de> for DeltaView<'de> {
    const FIELDS: &'static [&'static str] = &["type", "text", "thinking"];
    fn field<A: MapAccess<'de>>(&mut self, i: usize, map: &mut A) -> Result<(), A::Error> {
        match i {
            0 => self.kind = text(map)?,
            1 => self.text = text(map)?,
            _ => self.thinking = text(map)?,
        }
        Ok(())
    }
}

deserialize_view!(DeltaEvent, DeltaView);

impl StreamDecoder {
    /// A text or thinking delta, if `data` is one (`true` when handled).
    fn fast_delta(data: &str, out: &mut Vec<Event>) -> bool {
        let Ok(DeltaEvent { kind: Some(kind), delta: Some(delta) }) = serde_json::from_str::<DeltaEvent>(data) else {
            return false;
        };
        if kind != "content_block_delta" {
            return false;
        }
        match (delta.kind.as_deref().unwrap_or_default(), delta.text, delta.thinking) {
            ("text_delta", Some(t), _) => {
                if !t.is_empty() {
                    out.push(Event::Text { choice: 0, text: t.into_owned() });
                }
                true
            }
            ("thinking_delta", _, Some(t)) => {
                if !t.is_empty() {
                    out.push(Event::Reasoning { choice: 0, text: t.into_owned() });
                }
                true
            }
            _ => false,
        }
    }
}

impl Decode for StreamDecoder {
    fn decode(&mut self, ev: &SseEvent, out: &mut Vec<Event>) {
        if self.done {
            return;
        }
        if self.forward && !is_end(ev) {
            let event = ev.event.clone().filter(|e| !e.is_empty());
            out.push(Event::Forward { event, data: ev.data.clone() });
        }
        if Self::fast_delta(&ev.data, out) {
            return;
        }
        let Some(v) = crate::event::object_or_malformed(&ev.data, out) else { return };
        // `data.type` always equals the event name; the data is read first.
        match v.at("type").as_str().or(ev.event.as_deref()).unwrap_or_default() {
            "message_start" => {
                let m = v.at("message");
                let name = |k: &str| m.at(k).as_str().filter(|s| !s.is_empty()).map(str::to_owned);
                out.push(Event::Start { id: name("id"), model: name("model") });
                self.update_usage(m.at("usage"), out);
            }
            "content_block_start" => self.block_start(&v, out),
            "content_block_delta" => self.block_delta(&v, out),
            "content_block_stop" => self.tools.end(v.at("index").as_u64(), out),
            "message_delta" => {
                self.update_usage(v.at("usage"), out);
                if let Some(reason) = v.at("delta").at("stop_reason").as_str() {
                    out.push(Event::Finish { choice: 0, reason: finish_reason(reason).to_owned() });
                }
            }
            "message_stop" => {
                self.done = true;
                out.push(Event::Done);
            }
            "error" => out.push(Event::Error(stream_error(&v, &ev.data))),
            // ping, and event types added later.
            _ => {}
        }
    }
}

/// Whether an event ends the stream (`message_stop`), or is an error the
/// relay answers with its own: neither is forwarded.
fn is_end(ev: &SseEvent) -> bool {
    matches!(ev.event.as_deref(), Some("message_stop" | "error"))
        || ev.data.contains("\"type\":\"message_stop\"")
        || ev.data.starts_with("{\"type\":\"error\"")
}

/// An in-stream error event `{type:"error", error:{type, message}}`. It has no
/// HTTP status of its own: an unknown error type counts as a 500.
fn stream_error(v: &Value, data: &str) -> UpstreamError {
    let mut e = classify_error(500, data);
    if !v.at("error").at("message").is_string() {
        e.message = "anthropic sent an error event".to_owned();
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn read(path: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }
    fn fixture(name: &str) -> String {
        read(&format!("anthropic/{name}"))
    }
    fn fixture_json(name: &str) -> Value {
        serde_json::from_str(&fixture(name)).unwrap()
    }
    fn envelope(name: &str) -> (u16, String) {
        let v = fixture_json(name);
        (v["status"].as_u64().unwrap() as u16, v["body"].to_string())
    }
    fn config(extra: &str) -> Config {
        Config::from_json(&format!(
            r#"{{"providers":{{"claude":{{"format":"anthropic","base_url":"https://api.anthropic.com/",
                "key_secret":"K","headers":{{"anthropic-beta":"x"}}{extra}}}}},
                "routes":{{"chat":{{"targets":[{{"provider":"claude","model":"claude-sonnet-4-5-20250929"}}]}}}}}}"#
        ))
        .unwrap()
    }
    /// Translates `req` (JSON text) and returns the request and its parsed body.
    fn build_with(cfg: &Config, req: &str) -> Result<(UpstreamRequest, Value), ApiError> {
        let req = ChatRequest::parse(req.as_bytes()).unwrap();
        let out =
            Outbound { provider: &cfg.providers[0], model: "claude-sonnet-4-5-20250929", api_key: Some("sk-ant") };
        let r = build_request(&out, &req)?;
        let body = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
        Ok((r, body))
    }
    fn build(req: &str) -> Result<Value, ApiError> {
        build_with(&config(""), req).map(|(_, b)| b)
    }
    fn msgs(messages: &str) -> String {
        format!(r#"{{"model":"chat","messages":{messages}}}"#)
    }

    #[test]
    fn openai_fixture_request_translates() {
        let cfg = config("");
        let (r, body) = build_with(&cfg, &read("openai/chat_request.json")).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.url, "https://api.anthropic.com/v1/messages");
        for h in [
            ("x-api-key", "sk-ant"),
            ("anthropic-version", "2023-06-01"),
            ("content-type", "application/json"),
            ("anthropic-beta", "x"),
        ] {
            assert!(r.headers.contains(&(h.0.into(), h.1.into())), "{h:?} in {:?}", r.headers);
        }
        assert_eq!(body["model"], "claude-sonnet-4-5-20250929");
        assert_eq!(body["system"], "You are a helpful assistant.");
        assert_eq!(body["max_tokens"], 300);
        assert_eq!(body["temperature"], 0.7);
        assert!(body.get("top_p").is_none(), "top_p 1 is a no-op and is dropped");
        assert_eq!(body["stream"], true, "the fixture request streams");
        assert!(body.get("stream_options").is_none());
        assert_eq!(body["stop_sequences"], json!(["\n\nUser:"]));
        assert_eq!(body["tool_choice"], json!({"type": "auto"}));
        let openai: Value = serde_json::from_str(&read("openai/chat_request.json")).unwrap();
        let tool = &body["tools"][0];
        assert_eq!(tool["name"], "get_current_weather");
        assert_eq!(tool["description"], "Get the current weather in a given location");
        assert_eq!(tool["input_schema"], openai["tools"][0]["function"]["parameters"]);
        let recorded = fixture_json("messages_request.json");
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(tool), keys(&recorded["tools"][0]));
        let msgs = body["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0]["role"], "user");
        let content = msgs[0]["content"].as_array().unwrap();
        assert_eq!(
            content[0],
            json!({"type":"text","text":"What is in this image, and what is the weather like there today?"})
        );
        assert_eq!(content[1]["source"]["url"], openai["messages"][1]["content"][1]["image_url"]["url"]);
        assert_eq!(keys(&content[1]), keys(&recorded["messages"][0]["content"][1]));
        assert_eq!(keys(&content[1]["source"]), keys(&recorded["messages"][0]["content"][1]["source"]));
        // Without a key (a local proxy), no x-api-key header.
        let req = ChatRequest::parse(read("openai/chat_request.json").as_bytes()).unwrap();
        let r = build_request(&Outbound { provider: &cfg.providers[0], model: "m", api_key: None }, &req).unwrap();
        assert!(r.headers.iter().all(|(k, _)| k != "x-api-key"));
    }

    #[test]
    fn base64_image_matches_the_recorded_block() {
        let body = build(&read("openai/chat_request_image_base64.json")).unwrap();
        let recorded = fixture_json("messages_request.json");
        let content = &body["messages"][0]["content"];
        assert_eq!(content[0], json!({"type":"text","text":"What's in this image?"}));
        assert_eq!(content[1], recorded["messages"][0]["content"][0], "data URI split into media_type + data");
    }

    #[test]
    fn recorded_request_round_trips() {
        // The OpenAI request that means the same as anthropic/messages_request.json.
        let recorded = fixture_json("messages_request.json");
        let data = recorded["messages"][0]["content"][0]["source"]["data"].as_str().unwrap();
        let params = json!({"type":"function","function":{"name":"get_weather",
            "description":"Get the current weather in a given location",
            "parameters": recorded["tools"][0]["input_schema"]}});
        let req = json!({
            "model": "chat",
            "messages": [
                {"role":"system","content":"You are a helpful assistant. Answer concisely."},
                {"role":"user","content":[
                    {"type":"image_url","image_url":{"url": format!("data:image/jpeg;base64,{data}")}},
                    {"type":"image_url","image_url":{"url": recorded["messages"][0]["content"][1]["source"]["url"]}},
                    {"type":"text","text":"Compare these two images. Then tell me the weather in San Francisco."}]}
            ],
            "tools": [params], "tool_choice": "auto", "temperature": 0.7, "stop": "\n\nHuman:",
            "max_tokens": 1024, "stream": false
        });
        let body = build(&req.to_string()).unwrap();
        let mut expected = recorded.clone();
        expected.as_object_mut().unwrap().remove("stream");
        assert_eq!(body, expected);
    }

    #[test]
    fn tool_result_conversation_matches_the_recorded_request() {
        let recorded = fixture_json("messages_request_tool_result.json");
        let req = json!({
            "model": "chat",
            "max_completion_tokens": 1024,
            "messages": [
                {"role":"user","content":"What's the weather like in San Francisco?"},
                {"role":"assistant","content":"I'll check the current weather in San Francisco for you.",
                 "tool_calls":[{"id":"toolu_01A09q90qw90lq917835lq9","type":"function","function":{
                    "name":"get_weather","arguments":"{\"location\": \"San Francisco, CA\", \"unit\": \"celsius\"}"}}]},
                {"role":"tool","tool_call_id":"toolu_01A09q90qw90lq917835lq9","content":"15 degrees"}
            ],
            "tools": [{"type":"function","function":{"name":"get_weather",
                "description":"Get the current weather in a given location",
                "parameters": recorded["tools"][0]["input_schema"]}}]
        });
        assert_eq!(build(&req.to_string()).unwrap(), recorded);

        // The OpenAI fixture: developer message lifted, content:null assistant gives only tool_use.
        let body = build(&read("openai/chat_request_tool_result.json")).unwrap();
        assert_eq!(body["system"], "You are a helpful assistant.");
        assert_eq!(body["max_tokens"], 4096, "provider default");
        assert_eq!(
            body["messages"],
            json!([
                {"role":"user","content":"What is the weather like in Boston today?"},
                {"role":"assistant","content":[{"type":"tool_use","id":"call_abc123","name":"get_current_weather",
                    "input":{"location":"Boston, MA"}}]},
                {"role":"user","content":[{"type":"tool_result","tool_use_id":"call_abc123",
                    "content":"{\"temperature\": 22, \"unit\": \"celsius\", \"description\": \"Sunny\"}"}]}
            ])
        );
        assert!(body.get("tool_choice").is_none());
    }

    #[test]
    fn adjacent_turns_merge_and_systems_join() {
        let body = build(&msgs(
            r#"[{"role":"system","content":"A"},{"role":"user","content":"one"},{"role":"developer","content":"B"},
                {"role":"user","content":[{"type":"text","text":"two"}]},{"role":"assistant","content":"x"},
                {"role":"assistant","content":"y"}]"#,
        ))
        .unwrap();
        assert_eq!(body["system"], "A\n\nB");
        assert_eq!(
            body["messages"],
            json!([
                {"role":"user","content":[{"type":"text","text":"one"},{"type":"text","text":"two"}]},
                {"role":"assistant","content":[{"type":"text","text":"x"},{"type":"text","text":"y"}]}
            ])
        );
    }

    #[test]
    fn several_tool_results_share_one_user_turn() {
        let body = build(&msgs(
            r#"[{"role":"user","content":"weather in A and B?"},
                {"role":"assistant","content":"","tool_calls":[
                  {"id":"t1","type":"function","function":{"name":"w","arguments":"{\"city\":\"A\"}"}},
                  {"id":"t2","type":"function","function":{"name":"w","arguments":""}}]},
                {"role":"tool","tool_call_id":"t1","content":"sunny"},
                {"role":"tool","tool_call_id":"t2","content":[{"type":"text","text":"rain"}]},
                {"role":"user","content":"thanks, and C?"}]"#,
        ))
        .unwrap();
        let m = body["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[1]["content"],
            json!([{"type":"tool_use","id":"t1","name":"w","input":{"city":"A"}},
                   {"type":"tool_use","id":"t2","name":"w","input":{}}]),
            "empty text dropped, empty arguments become {{}}"
        );
        assert_eq!(
            m[2]["content"],
            json!([{"type":"tool_result","tool_use_id":"t1","content":"sunny"},
                   {"type":"tool_result","tool_use_id":"t2","content":"rain"},
                   {"type":"text","text":"thanks, and C?"}])
        );
        // A user text that slipped in before the results still puts the results first.
        let body = build(&msgs(
            r#"[{"role":"user","content":"q"},
                {"role":"assistant","tool_calls":[{"id":"t1","type":"function","function":{"name":"w","arguments":"{}"}}]},
                {"role":"user","content":"hurry"},{"role":"tool","tool_call_id":"t1","content":"ok"}]"#,
        ))
        .unwrap();
        assert_eq!(body["messages"][2]["content"][0]["type"], "tool_result");
        assert_eq!(body["messages"][2]["content"][1]["text"], "hurry");
    }

    #[test]
    fn invalid_tool_arguments_name_the_field() {
        let e = build(&msgs(
            r#"[{"role":"user","content":"q"},{"role":"assistant","tool_calls":[
                {"id":"a","type":"function","function":{"name":"f","arguments":"{}"}},
                {"id":"b","type":"function","function":{"name":"f","arguments":"{not json"}}]}]"#,
        ))
        .unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.param.as_deref(), Some("messages[1].tool_calls[1].function.arguments"));
        assert!(e.message.contains("messages[1].tool_calls[1].function.arguments"), "{}", e.message);
        let e = build(&msgs(
            r#"[{"role":"user","content":"q"},{"role":"assistant","tool_calls":[
                {"id":"a","type":"function","function":{"name":"f","arguments":"[1,2]"}}]}]"#,
        ))
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[1].tool_calls[0].function.arguments"));
    }

    #[test]
    fn sampling_limits_and_metadata() {
        let body = build(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1.7,"top_p":0.9,
            "max_tokens":50,"max_completion_tokens":70,"user":"u-42","seed":3,"presence_penalty":1,"stop":"END"}"#,
        )
        .unwrap();
        assert_eq!(body["temperature"], 1.0);
        assert!(body.get("top_p").is_none(), "Claude 4.x refuse temperature with top_p: temperature wins");
        let alone = build(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"top_p":0.9}"#).unwrap();
        assert_eq!((alone["top_p"].as_f64(), alone.get("temperature")), (Some(0.9), None));
        assert_eq!(body["max_tokens"], 70, "max_completion_tokens wins");
        assert_eq!(body["metadata"], json!({"user_id": "u-42"}));
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert_eq!(body["messages"], json!([{"role":"user","content":"hi"}]));
        for dropped in ["seed", "presence_penalty", "user", "stop", "max_completion_tokens"] {
            assert!(body.get(dropped).is_none(), "{dropped}");
        }
        let body = build(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":50}"#).unwrap();
        assert_eq!(body["max_tokens"], 50);
        let (_, body) =
            build_with(&config(r#","default_max_tokens":2048"#), &msgs(r#"[{"role":"user","content":"hi"}]"#)).unwrap();
        assert_eq!(body["max_tokens"], 2048);
        assert!(body.get("temperature").is_none() && body.get("system").is_none());
    }

    #[test]
    fn tool_choice_and_parallel_calls() {
        let with = |extra: &str| {
            build(&format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],
                   "tools":[{{"type":"function","function":{{"name":"f"}}}}]{extra}}}"#
            ))
            .unwrap()
        };
        let b = with("");
        assert_eq!(b["tools"], json!([{"name":"f","input_schema":{"type":"object"}}]));
        assert!(b.get("tool_choice").is_none());
        assert_eq!(with(r#","tool_choice":"none""#)["tool_choice"], json!({"type":"none"}));
        assert_eq!(with(r#","tool_choice":"auto""#)["tool_choice"], json!({"type":"auto"}));
        assert_eq!(with(r#","tool_choice":"required""#)["tool_choice"], json!({"type":"any"}));
        assert_eq!(
            with(r#","tool_choice":{"type":"function","function":{"name":"f"}}"#)["tool_choice"],
            json!({"type":"tool","name":"f"})
        );
        assert_eq!(
            with(r#","parallel_tool_calls":false"#)["tool_choice"],
            json!({"type":"auto","disable_parallel_tool_use":true})
        );
        assert_eq!(
            with(r#","tool_choice":"required","parallel_tool_calls":false"#)["tool_choice"],
            json!({"type":"any","disable_parallel_tool_use":true})
        );
        assert_eq!(with(r#","tool_choice":"none","parallel_tool_calls":false"#)["tool_choice"], json!({"type":"none"}));
        assert!(with(r#","parallel_tool_calls":true"#).get("tool_choice").is_none());
    }

    #[test]
    fn response_formats() {
        let b = build(
            r#"{"model":"m","messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"hi"}],
            "response_format":{"type":"json_object"}}"#,
        )
        .unwrap();
        assert_eq!(b["system"], format!("Be terse.\n\n{JSON_OBJECT_INSTRUCTION}"));
        assert!(b.get("output_config").is_none());
        let b = build(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],
            "response_format":{"type":"json_schema","json_schema":{"name":"x","strict":true,"schema":{"type":"object"}}}}"#)
        .unwrap();
        assert_eq!(b["output_config"], json!({"format":{"type":"json_schema","schema":{"type":"object"}}}));
        assert!(b.get("system").is_none());
        let e = build(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
        let b = build(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"text"}}"#)
            .unwrap();
        assert!(b.get("output_config").is_none() && b.get("system").is_none());
    }

    #[test]
    fn unsupported_inputs_are_client_errors() {
        let e = build(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":2}"#).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("n")));
        assert_eq!(e.message, "n > 1 is not supported by anthropic");
        assert!(build(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":1}"#).is_ok());
        let e = build(&msgs(r#"[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"input_audio","input_audio":{"data":"x","format":"wav"}}]}]"#)).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("messages[0].content[1]")));
        let e = build(&msgs(r#"[{"role":"user","content":[{"type":"file","file":{"file_id":"f"}}]}]"#)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
        let e = build(&msgs(r#"[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:application/pdf;base64,AAAA"}}]}]"#)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].image_url.url"));
        let e =
            build(&msgs(r#"[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]"#))
                .unwrap_err();
        assert_eq!(e.status, 400);
        let e = build(&msgs(
            r#"[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,rawbytes"}}]}]"#,
        ))
        .unwrap_err();
        assert_eq!(e.status, 400);
        let e = build(&msgs(r#"[{"role":"system","content":"only a system prompt"}]"#)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = build(&msgs(r#"[{"role":"user","content":"q"},{"role":"function","name":"f","content":"x"}]"#))
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[1].role"));
        // image/jpg is a common misspelling of image/jpeg.
        let b = build(&msgs(
            r#"[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/jpg;base64,AAAA"}}]}]"#,
        ))
        .unwrap();
        assert_eq!(b["messages"][0]["content"][0]["source"]["media_type"], "image/jpeg");
    }

    #[test]
    fn parses_recorded_responses() {
        let c = parse_response(&fixture("messages_response.json"), 1_700_000_000).unwrap();
        assert_eq!(c.id, "msg_01Egs18hRzhru3uGon3qesbA");
        assert_eq!(c.object, "chat.completion");
        assert_eq!(c.created, 1_700_000_000);
        assert_eq!(c.model, "claude-sonnet-4-5-20250929");
        assert_eq!(c.choices.len(), 1);
        assert_eq!(c.choices[0].message.role, "assistant");
        assert_eq!(c.choices[0].message.content.as_deref(), Some("Hi! My name is Claude. How can I help you today?"));
        assert!(c.choices[0].message.tool_calls.is_none());
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some("stop"));
        let u = c.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (249, 26, 275));
        assert_eq!(u.prompt_tokens_details, Some(PromptTokensDetails { cached_tokens: 0 }));

        let c = parse_response(&fixture("messages_response_minimal.json"), 1).unwrap();
        assert_eq!(c.model, "claude-3-5-sonnet-20240620");
        assert_eq!(c.choices[0].message.content.as_deref(), Some("Hi! My name is Claude."));
        let u = c.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (10, 25, 35));
        assert!(u.prompt_tokens_details.is_none());

        let c = parse_response(&fixture("messages_response_stop_sequence.json"), 1).unwrap();
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some("stop"));
        assert_eq!(c.choices[0].message.content.as_deref(), Some("Here is the first paragraph."));
        assert_eq!(c.usage.unwrap().total_tokens, 39);

        let c = parse_response(&fixture("messages_response_tool_use.json"), 1).unwrap();
        let m = &c.choices[0].message;
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(m.content.as_deref(), Some("I'll check the current weather in San Francisco for you."));
        let calls = m.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].id, "toolu_01A09q90qw90lq917835lq9");
        assert_eq!(calls[0].kind, "function");
        assert_eq!(calls[0].function.name, "get_weather");
        let args: Value = serde_json::from_str(&calls[0].function.arguments).unwrap();
        assert_eq!(args, json!({"location":"San Francisco, CA","unit":"celsius"}));
        assert_eq!(c.usage.unwrap().total_tokens, 561);
    }

    #[test]
    fn every_stop_reason_maps() {
        let reasons: Vec<String> = serde_json::from_str(&fixture("stop_reasons.json")).unwrap();
        let expected = [
            ("end_turn", "stop"),
            ("max_tokens", "length"),
            ("stop_sequence", "stop"),
            ("tool_use", "tool_calls"),
            ("pause_turn", "stop"),
            ("refusal", "content_filter"),
            ("model_context_window_exceeded", "length"),
        ];
        assert_eq!(reasons.len(), expected.len());
        for r in &reasons {
            let want = expected.iter().find(|(k, _)| k == r).unwrap().1;
            let body = json!({"id":"msg_1","type":"message","role":"assistant","model":"c","stop_reason":r,
                "content":[{"type":"text","text":"x"}],"usage":{"input_tokens":1,"output_tokens":1}});
            let c = parse_response(&body.to_string(), 0).unwrap();
            assert_eq!(c.choices[0].finish_reason.as_deref(), Some(want), "{r}");
        }
    }

    #[test]
    fn response_edge_cases() {
        // Thinking skipped, tool-only answer has null content, cache and thinking usage mapped.
        let body = r#"{"id":"msg_2","type":"message","role":"assistant","model":"c","stop_reason":"tool_use",
            "content":[{"type":"thinking","thinking":"hmm","signature":"s"},
                       {"type":"tool_use","id":"t1","name":"f","input":{}},
                       {"type":"tool_use","id":"t2","name":"g","input":{"a":[1,2]}}],
            "usage":{"input_tokens":5,"cache_creation_input_tokens":100,"cache_read_input_tokens":1000,
                     "output_tokens":20,"output_tokens_details":{"thinking_tokens":12}}}"#;
        let c = parse_response(body, 0).unwrap();
        let m = &c.choices[0].message;
        assert_eq!(m.content, None);
        let calls = m.tool_calls.as_ref().unwrap();
        assert_eq!(calls.iter().map(|c| c.function.arguments.as_str()).collect::<Vec<_>>(), ["{}", "{\"a\":[1,2]}"]);
        let u = c.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (1105, 20, 1125));
        assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, 1000);
        assert_eq!(u.completion_tokens_details.unwrap().reasoning_tokens, 12);
        // No text and no tool calls: empty string, not null.
        let c = parse_response(r#"{"id":"m","type":"message","model":"c","content":[],"stop_reason":"end_turn"}"#, 0)
            .unwrap();
        assert_eq!(c.choices[0].message.content.as_deref(), Some(""));
        assert!(c.usage.is_none());
        // Malformed bodies are errors, never panics.
        for bad in [
            "<html>",
            "{}",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            r#"{"id":"m","type":"error","model":"c","content":[]}"#,
            r#"{"id":"m","type":"message","model":"c","content":[{"type":"tool_use","input":{}}]}"#,
            r#"{"id":"m","type":"message","model":"c","content":"text"}"#,
            r#"{"id":"m","type":"message","content":[]}"#,
            r#"{"id":7,"type":"message","model":"c","content":[]}"#,
            r#"{"id":"m","type":1,"model":"c","content":[]}"#,
            r#"{"id":"m","model":"c","content":[],"stop_reason":3}"#,
            "[]",
        ] {
            assert!(parse_response(bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn classifies_recorded_errors() {
        let cases = [
            ("error_400_invalid_request.json", ErrorKind::BadRequest),
            ("error_400_prompt_too_long.json", ErrorKind::ContextLength),
            ("error_401_authentication.json", ErrorKind::Auth),
            ("error_404_not_found.json", ErrorKind::NotFound),
            ("error_429_rate_limit.json", ErrorKind::RateLimited),
            ("error_500_api_error.json", ErrorKind::Server),
            ("error_529_overloaded.json", ErrorKind::Overloaded),
        ];
        for (file, kind) in cases {
            let (status, body) = envelope(file);
            let e = classify_error(status, &body);
            assert_eq!(e.kind, kind, "{file}");
            let expected: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(e.message, clip(expected["error"]["message"].as_str().unwrap()), "{file}");
        }
        let long = format!(r#"{{"type":"error","error":{{"type":"api_error","message":"{}"}}}}"#, "x".repeat(800));
        assert!(classify_error(500, &long).message.len() < 510, "long messages are clipped");
    }

    #[test]
    fn classifies_other_errors() {
        let err = |t: &str, m: &str| {
            format!(r#"{{"type":"error","error":{{"type":"{t}","message":"{m}"}},"request_id":null}}"#)
        };
        let cases = [
            (403, err("permission_error", "no access"), ErrorKind::Auth),
            (403, err("billing_error", "credit balance too low"), ErrorKind::Auth),
            (
                413,
                err("request_too_large", "Request exceeds the maximum allowed number of bytes."),
                ErrorKind::ContextLength,
            ),
            (
                400,
                err(
                    "invalid_request_error",
                    "input length and `max_tokens` exceed context limit: 198000 + 4096 > 200000",
                ),
                ErrorKind::ContextLength,
            ),
            (
                400,
                err("invalid_request_error", "Output blocked by content filtering policy: content_filter"),
                ErrorKind::ContentPolicy,
            ),
            (504, err("timeout_error", "Request timed out"), ErrorKind::Server),
            (
                500,
                r#"{"type":"error","error":{"type":"api_error","message":"x","details":null}}"#.to_owned(),
                ErrorKind::Server,
            ),
            (418, err("brand_new_error", "?"), ErrorKind::BadRequest),
            (503, "upstream connect error".to_owned(), ErrorKind::Overloaded),
            (502, "<html>bad gateway</html>".to_owned(), ErrorKind::Server),
            (401, String::new(), ErrorKind::Auth),
            (400, r#"{"error":{"message":"prompt is too long"}}"#.to_owned(), ErrorKind::ContextLength),
        ];
        for (status, body, kind) in cases {
            assert_eq!(classify_error(status, &body).kind, kind, "{status} {body}");
        }
        assert_eq!(classify_error(502, "<html>").message, "upstream answered HTTP 502");
    }

    use crate::providers::openai::stream_test::{self as st, summarise, StreamItem};

    fn stream(file: &str, include_usage: bool) -> (Vec<StreamItem>, Option<Usage>) {
        let mut t = st::Translator::new(Box::new(StreamDecoder::new(false)), include_usage);
        let items = st::run(&mut t, &fixture(file));
        (items, t.usage())
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
    fn recorded_text_streams_translate() {
        let cases = [
            (
                "stream_text.sse",
                "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
                "claude-opus-4-1-20250805",
                "Hello!",
                (25, 15, 40),
            ),
            (
                "stream_sdk_text.sse",
                "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK",
                "claude-3-opus-latest",
                "Hello there!",
                (11, 6, 17),
            ),
        ];
        for (file, id, model, text, (p, c, t)) in cases {
            let (items, usage) = stream(file, false);
            let s = summarise(&items);
            assert_eq!(s.text, text, "{file}");
            assert_eq!(s.finish, ["stop"], "{file}");
            assert!(s.calls.is_empty(), "{file}");
            assert_eq!((s.dones, s.malformed, s.errors.len()), (1, 0, 0), "{file}");
            assert!(s.usage_chunks.is_empty(), "no usage chunk without include_usage ({file})");
            let u = usage.unwrap();
            assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (p, c, t), "{file}");
            assert_eq!(s.chunks[0]["choices"][0]["delta"], json!({"role":"assistant","content":""}), "{file}");
            for c in &s.chunks {
                assert_eq!((c["id"].as_str(), c["model"].as_str()), (Some(id), Some(model)), "{file}");
                assert_eq!(c["created"], 1_700_000_000, "{file}");
            }
            let last = s.chunks.last().unwrap();
            assert_eq!(last["choices"][0]["delta"], json!({}), "{file}");
        }
    }

    #[test]
    fn recorded_tool_streams_renumber_the_tool_call() {
        let cases = [
            (
                "stream_tool_use.sse",
                "Okay, let's check the weather for San Francisco, CA:",
                "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                json!({"location":"San Francisco, CA","unit":"fahrenheit"}),
                (472, 89),
            ),
            (
                "stream_sdk_tool_use.sse",
                "I'll check the current weather in Paris for you.",
                "toolu_01NRLabsLyVHZPKxbKvkfSMn",
                json!({"location":"Paris"}),
                (377, 65),
            ),
        ];
        for (file, text, id, args, (p, c)) in cases {
            let (items, usage) = stream(file, true);
            let s = summarise(&items);
            assert_eq!(s.text, text, "{file}");
            // The tool is content block 1, and tool call 0.
            assert_eq!(s.calls.len(), 1, "{file}");
            assert_eq!(s.calls[0].id, id, "{file}");
            assert_eq!(s.calls[0].name, "get_weather", "{file}");
            assert_eq!(s.calls[0].args(), args, "{file}");
            assert_eq!(s.finish, ["tool_calls"], "{file}");
            assert_eq!(s.dones, 1, "{file}");
            let u = usage.unwrap();
            assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (p, c, p + c), "{file}");
            // include_usage: the usage chunk comes right before Done.
            assert_eq!(s.usage_chunks.len(), 1, "{file}");
            let StreamItem::Chunk { json, .. } = &items[items.len() - 2] else { panic!("{file}") };
            let v: Value = serde_json::from_str(json).unwrap();
            assert_eq!(v["choices"], json!([]), "{file}");
            assert_eq!(v["usage"], serde_json::to_value(&u).unwrap(), "{file}");
            assert_eq!(v["id"], s.chunks[0]["id"], "{file}");
        }
        let (items, _) = stream("stream_sdk_tool_use.sse", true);
        let usage_chunk = summarise(&items).usage_chunks.remove(0);
        assert_eq!(
            usage_chunk["usage"],
            json!({"prompt_tokens":377,"completion_tokens":65,"total_tokens":442,
                   "prompt_tokens_details":{"cached_tokens":0}})
        );
    }

    #[test]
    fn an_overloaded_error_event_ends_the_stream() {
        let (items, usage) = stream("stream_error_overloaded.sse", true);
        let s = summarise(&items);
        assert_eq!(s.text, "Sure, here is");
        assert_eq!(s.dones, 0);
        assert!(s.finish.is_empty());
        let StreamItem::Error(e) = items.last().unwrap() else { panic!("{items:?}") };
        assert_eq!(e.kind, ErrorKind::Overloaded);
        assert_eq!(e.message, "Overloaded");
        assert!(items[..items.len() - 1].iter().any(StreamItem::has_content));
        assert_eq!(usage.unwrap().prompt_tokens, 25);

        let one = |data: &str| {
            let mut out = Vec::new();
            st::Translator::new(Box::new(StreamDecoder::new(false)), false)
                .on_event(&SseEvent { event: Some("error".into()), data: data.to_owned() }, &mut out);
            match out.as_slice() {
                [StreamItem::Error(e)] => e.clone(),
                other => panic!("{data}: {other:?}"),
            }
        };
        let err = |t: &str| format!(r#"{{"type":"error","error":{{"type":"{t}","message":"m","details":null}}}}"#);
        assert_eq!(one(&err("api_error")).kind, ErrorKind::Server);
        assert_eq!(one(&err("rate_limit_error")).kind, ErrorKind::RateLimited);
        assert_eq!(one(&err("overloaded_error")).kind, ErrorKind::Overloaded);
        assert_eq!(one(&err("something_new")).kind, ErrorKind::Server);
        let e = one(r#"{"type":"error","error":{}}"#);
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Server, "anthropic sent an error event"));
    }

    #[test]
    fn thinking_blocks_and_several_tools() {
        let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        let mut sse = ev(
            "message_start",
            json!({"type":"message_start","message":{"id":"msg_x","model":"claude-x","content":[],
                "usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":100,"output_tokens":1}}}),
        );
        for (i, block, deltas) in [
            (
                0,
                json!({"type":"thinking","thinking":""}),
                vec![
                    json!({"type":"thinking_delta","thinking":"hmm"}),
                    json!({"type":"signature_delta","signature":"sig"}),
                ],
            ),
            (
                1,
                json!({"type":"text","text":""}),
                vec![json!({"type":"text_delta","text":"Checking."}), json!({"type":"text_delta","text":""})],
            ),
            (
                2,
                json!({"type":"tool_use","id":"t_a","name":"f","input":{}}),
                vec![json!({"type":"input_json_delta","partial_json":""})],
            ),
            (
                3,
                json!({"type":"tool_use","id":"t_b","name":"g","input":{}}),
                vec![
                    json!({"type":"input_json_delta","partial_json":"{\"a\":"}),
                    json!({"type":"input_json_delta","partial_json":"[1,2]}"}),
                ],
            ),
        ] {
            sse += &ev("content_block_start", json!({"type":"content_block_start","index":i,"content_block":block}));
            for d in deltas {
                sse += &ev("content_block_delta", json!({"type":"content_block_delta","index":i,"delta":d}));
            }
            sse += &ev("content_block_stop", json!({"type":"content_block_stop","index":i}));
        }
        sse += &ev("brand_new_event", json!({"type":"brand_new_event"}));
        sse += &ev(
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":"tool_use"},
                   "usage":{"output_tokens":40,"output_tokens_details":{"thinking_tokens":12}}}),
        );
        sse += &ev("message_stop", json!({"type":"message_stop"}));
        sse += &ev("message_stop", json!({"type":"message_stop"}));
        let mut t = st::Translator::new(Box::new(StreamDecoder::new(false)), true);
        let items = st::run(&mut t, &sse);
        let s = summarise(&items);
        assert_eq!(s.text, "Checking.");
        assert_eq!(s.calls.len(), 2);
        assert_eq!((s.calls[0].id.as_str(), s.calls[0].name.as_str()), ("t_a", "f"));
        assert_eq!(s.calls[0].args(), json!({}), "a call without input gets {{}}");
        assert_eq!((s.calls[1].id.as_str(), s.calls[1].name.as_str()), ("t_b", "g"));
        assert_eq!(s.calls[1].args(), json!({"a":[1,2]}));
        assert_eq!((s.dones, s.malformed), (1, 0), "one Done despite two message_stop");
        let u = t.usage().unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (115, 40, 155));
        assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, 100);
        assert_eq!(u.completion_tokens_details.unwrap().reasoning_tokens, 12);
        assert_eq!(s.usage_chunks[0]["usage"]["total_tokens"], 155);
        assert!(s.chunks.iter().all(|c| c["id"] == "msg_x" && c["model"] == "claude-x"));
    }

    #[test]
    fn unreadable_events_are_skipped() {
        let sse = fixture("stream_text.sse").replacen(
            "event: ping\n",
            "event: content_block_delta\ndata: {\"type\": \"content_block_del\n\n\
             event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":7,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"x\"}}\n\n\
             event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":5,\"content_block\":{\"type\":\"tool_use\"}}\n\n\
             data: [1]\n\nevent: ping\n",
            1,
        );
        let mut t = st::Translator::new(Box::new(StreamDecoder::new(false)), false);
        let s = summarise(&st::run(&mut t, &sse));
        assert_eq!(s.malformed, 4);
        assert_eq!(s.text, "Hello!");
        assert_eq!((s.dones, s.finish.len()), (1, 1));
        assert!(s.calls.is_empty());
        assert_eq!(t.usage().unwrap().completion_tokens, 15);
    }

    #[test]
    fn without_message_start_the_meta_names_the_chunks() {
        let mut out = Vec::new();
        let mut t = st::Translator::new(Box::new(StreamDecoder::new(false)), true);
        for data in [
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens"}}"#,
            r#"{"type":"message_stop"}"#,
        ] {
            t.on_event(&SseEvent { event: None, data: data.into() }, &mut out);
        }
        let s = summarise(&out);
        assert_eq!(s.finish, ["length"]);
        assert!(s.usage_chunks.is_empty(), "no usage reported, no usage chunk");
        assert!(t.usage().is_none());
        assert!(s.chunks.iter().all(|c| c["id"] == "chatcmpl-gateway" && c["model"] == "gpt-4o-mini"));
    }
}
