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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::providers::Wire;
    use crate::sse::SseParser;
    use serde_json::Value;

    fn fixture(path: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// A recorded upstream stream, decoded and written for `client`: the
    /// client's events (name, data) and the facts the decoder read.
    fn translate(wire: Wire, path: &str, client: ClientFormat) -> (Vec<(String, Value)>, Vec<Event>) {
        let mut events = Vec::new();
        SseParser::default().feed(fixture(path).as_bytes(), &mut events).unwrap();
        let mut decoder = wire.decoder(false, false);
        let names =
            StreamNames { id: "x".into(), created: 1, model: "m".into(), include_usage: true, namespaced: Vec::new() };
        let mut em = emitter(client, names);
        let (mut out, mut facts) = (String::new(), Vec::new());
        for ev in &events {
            let mut f = Vec::new();
            decoder.decode(ev, &mut f);
            for fact in &f {
                em.emit(fact, &mut out);
            }
            facts.extend(f);
        }
        em.complete(&mut out);
        let mut written = Vec::new();
        SseParser::default().feed(out.as_bytes(), &mut written).unwrap();
        let written = written
            .into_iter()
            .filter(|e| e.data.trim() != "[DONE]")
            .map(|e| (e.event.unwrap_or_default(), serde_json::from_str(&e.data).unwrap()))
            .collect();
        (written, facts)
    }

    fn upstream_text(facts: &[Event]) -> String {
        facts
            .iter()
            .filter_map(|f| if let Event::Text { choice: 0, text } = f { Some(text.as_str()) } else { None })
            .collect()
    }

    fn client_text(client: ClientFormat, evs: &[(String, Value)]) -> String {
        evs.iter()
            .filter_map(|(name, v)| match client {
                ClientFormat::Chat => v["choices"][0]["delta"]["content"].as_str(),
                ClientFormat::Messages if v["delta"]["type"] == "text_delta" => v["delta"]["text"].as_str(),
                ClientFormat::Responses if name == "response.output_text.delta" => v["delta"].as_str(),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_recorded_provider_stream_reads_whole_in_every_client_format() {
        let streams = [
            (Wire::Chat, "openai/chat_stream_text_usage.sse"),
            (Wire::Chat, "openai/chat_stream_tool_calls.sse"),
            (Wire::Chat, "openai/chat_stream_reasoning_content_deepseek.sse"),
            (Wire::Anthropic, "anthropic/stream_text.sse"),
            (Wire::Anthropic, "anthropic/stream_thinking.sse"),
            (Wire::Anthropic, "anthropic/stream_tool_use.sse"),
            (Wire::Cohere, "cohere/chat_stream_text.sse"),
            (Wire::Cohere, "cohere/chat_stream_tool_calls.sse"),
            (Wire::Responses, "openai-responses/stream_text_recorded.sse"),
            (Wire::Responses, "openai-responses/stream_function_call_recorded.sse"),
        ];
        for (wire, path) in streams {
            for client in [ClientFormat::Chat, ClientFormat::Messages, ClientFormat::Responses] {
                let (evs, facts) = translate(wire, path, client);
                let at = format!("{path} as {client:?}");
                assert_eq!(client_text(client, &evs), upstream_text(&facts), "{at}: the text, whole and in order");
                let calls = facts.iter().filter(|f| matches!(f, Event::ToolStart { choice: 0, .. })).count();
                assert!(!upstream_text(&facts).is_empty() || calls > 0, "{at}: the recording says something");
                let (first, last) = (&evs.first().unwrap().0, evs.last().unwrap());
                match client {
                    ClientFormat::Messages => {
                        assert_eq!(first, "message_start", "{at}");
                        assert_eq!(last.0, "message_stop", "{at}");
                        let uses = evs.iter().filter(|(_, v)| v["content_block"]["type"] == "tool_use").count();
                        assert_eq!(uses, calls, "{at}: one tool_use block per call");
                    }
                    ClientFormat::Responses => {
                        assert_eq!(first, "response.created", "{at}");
                        assert!(last.0 == "response.completed" || last.0 == "response.incomplete", "{at}");
                        let items = last.1["response"]["output"].as_array().unwrap();
                        assert_eq!(items.iter().filter(|i| i["type"] == "function_call").count(), calls, "{at}");
                        for (k, (_, v)) in evs.iter().enumerate() {
                            assert_eq!(v["sequence_number"], k as u64, "{at}");
                        }
                    }
                    ClientFormat::Chat => {}
                }
            }
        }
    }
}
