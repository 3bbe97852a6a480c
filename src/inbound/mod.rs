//! The APIs clients call. Each is a codec at the edge of the core: its
//! requests become the gateway's internal request, and the gateway's
//! answers, stream events and errors are written back in its own shape.
//! Everything between (selection, the attempt loop, the relay, mirroring,
//! logging) is one implementation for all of them.

pub mod chat;
pub mod messages;
pub mod responses;

use crate::api::{ApiError, ChatCompletion, NativeApi};
use crate::event::Emit;
use serde_json::Value;

/// Which API the client called, and so which format it hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFormat {
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    Chat,
    /// Anthropic Messages (`/v1/messages`).
    Messages,
    /// OpenAI Responses (`/v1/responses`).
    Responses,
}

impl ClientFormat {
    /// The native API of a request in this format, if it has one.
    pub fn native(self) -> Option<NativeApi> {
        match self {
            ClientFormat::Chat => None,
            ClientFormat::Messages => Some(NativeApi::Messages),
            ClientFormat::Responses => Some(NativeApi::Responses),
        }
    }

    /// A stream's id prefix in this format.
    pub fn id_prefix(self) -> &'static str {
        match self {
            ClientFormat::Chat => "chatcmpl-",
            ClientFormat::Messages => "msg_",
            ClientFormat::Responses => "resp_",
        }
    }

    /// A whole answer in this format, from the gateway's completion.
    pub fn render(self, c: &ChatCompletion, namespaced: &[(String, String, String)]) -> Option<String> {
        match self {
            ClientFormat::Chat => None,
            ClientFormat::Messages => Some(messages::render(c)),
            ClientFormat::Responses => Some(responses::render(c, namespaced)),
        }
    }

    /// An error body in this API's shape, from the gateway's OpenAI-shaped one.
    pub fn error_body(self, status: u16, body: &str) -> Option<String> {
        match self {
            ClientFormat::Messages => messages::reshape_error(status, body),
            ClientFormat::Chat | ClientFormat::Responses => None,
        }
    }
}

/// Appends `s` as a JSON string (quoted and escaped): for the events
/// written once per token, without building a JSON tree for each.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        Err(_) => out.push_str("\"\""),
    }
}

/// A request body that must be a JSON object.
pub(crate) fn read_object(body: &[u8], what: &str) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::invalid("the request body is not valid UTF-8 JSON"))?;
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::invalid(format!("the request body must be {what} (a JSON object)"))),
        Err(e) => Err(ApiError::invalid(format!("the request body is not valid JSON: {e}"))),
    }
}

/// What a client stream is named until an upstream names it.
#[derive(Debug, Clone)]
pub struct StreamNames {
    pub id: String,
    pub created: u64,
    pub model: String,
    /// The client asked for usage in the stream (OpenAI's `include_usage`).
    pub include_usage: bool,
    /// Responses: flattened namespaced tools, mapped back in tool calls.
    pub namespaced: Vec<(String, String, String)>,
}

/// The emitter for a client stream in `format`.
pub fn emitter(format: ClientFormat, names: StreamNames) -> Box<dyn Emit> {
    match format {
        ClientFormat::Chat => {
            Box::new(chat::ChatEmitter::new(names.id, names.created, names.model, names.include_usage))
        }
        ClientFormat::Messages => Box::new(messages::MessagesEmitter::new(names.id, names.model)),
        ClientFormat::Responses => {
            Box::new(responses::ResponsesEmitter::new(names.id, names.created, names.model, names.namespaced))
        }
    }
}

/// A whole completion as a short stream in `format` (an answer that was
/// not streamed, such as the mirror's, for a client that asked for a stream).
pub fn replay(format: ClientFormat, c: &ChatCompletion, names: StreamNames) -> String {
    use crate::event::Event;
    let mut em = emitter(format, names);
    let mut out = String::new();
    em.emit(&Event::Start { id: Some(c.id.clone()), model: Some(c.model.clone()) }, &mut out);
    if let Some(u) = &c.usage {
        em.emit(&Event::Usage(u.clone()), &mut out);
    }
    if let Some(ch) = c.choices.first() {
        let m = &ch.message;
        if let Some(r) = m.reasoning_content.clone().filter(|r| !r.is_empty()) {
            em.emit(&Event::Reasoning { choice: 0, text: r }, &mut out);
        }
        if let Some(t) = m.content.clone().filter(|t| !t.is_empty()) {
            em.emit(&Event::Text { choice: 0, text: t }, &mut out);
        }
        for (k, call) in m.tool_calls.iter().flatten().enumerate() {
            let index = u32::try_from(k).unwrap_or(u32::MAX);
            let (id, name) = (call.id.clone(), call.function.name.clone());
            em.emit(&Event::ToolStart { choice: 0, index, id, name }, &mut out);
            em.emit(&Event::ToolArgs { choice: 0, index, args: call.function.arguments.clone() }, &mut out);
        }
        let reason = ch.finish_reason.clone().unwrap_or_else(|| "stop".to_owned());
        em.emit(&Event::Finish { choice: 0, reason }, &mut out);
    }
    em.complete(&mut out);
    out
}
