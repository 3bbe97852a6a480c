//! OpenAI Chat Completions as the client's stream format:
//! `chat.completion.chunk` events written from the gateway's [`Event`]s (for
//! streams that are translated, and for continuations), the SSE error event
//! that ends a broken answer, and a whole completion replayed as a short
//! stream.

use crate::api::Usage;
use crate::event::{Emit, Event};
use crate::json::JsonText as _;
use crate::sse::{data_event, DONE};
use crate::taxonomy::{ErrorKind, UpstreamError};
use serde::Serialize;
use serde_json::json;

/// The `delta` of a chunk's choice; empty fields are left out (a finish
/// chunk has `"delta":{}`).
#[derive(Debug, Default, Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallDelta<'a>>,
}

/// One fragment of a streamed tool call. The first fragment of a call
/// carries `id`, `type` and `function.name`; later ones only `arguments`.
#[derive(Debug, Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Debug, Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
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

/// Writes `chat.completion.chunk`s, all with the same `id`, `created` and
/// `model`.
#[derive(Debug, Clone)]
pub struct ChatEmitter {
    pub id: String,
    pub created: u64,
    pub model: String,
    /// The client asked for `stream_options.include_usage`: the usage chunk
    /// goes out before `[DONE]`.
    pub include_usage: bool,
    /// The upstream's id and model may replace `id` and `model` (its own
    /// stream); a continuation keeps the stream's.
    pub adopt_names: bool,
    role_sent: bool,
    usage: Option<Usage>,
}

impl ChatEmitter {
    pub fn new(id: String, created: u64, model: String, include_usage: bool) -> ChatEmitter {
        ChatEmitter { id, created, model, include_usage, adopt_names: true, role_sent: false, usage: None }
    }

    /// Whether the role chunk has gone out (a continuation sends none).
    pub fn role_sent(&self) -> bool {
        self.role_sent
    }

    /// Takes the upstream's own id and model for later chunks.
    fn take_names(&mut self, id: Option<&str>, model: Option<&str>) {
        if self.adopt_names {
            if let Some(id) = id.filter(|s| !s.is_empty()) {
                self.id = id.to_owned();
            }
            if let Some(m) = model.filter(|s| !s.is_empty()) {
                self.model = m.to_owned();
            }
        }
    }

    /// Marks the role chunk as sent, for a stream continued from another.
    pub fn continuing(mut self) -> ChatEmitter {
        self.role_sent = true;
        self.adopt_names = false;
        self
    }

    fn chunk(&self, index: u32, delta: Delta, finish_reason: Option<&str>, out: &mut String) {
        self.write(vec![ChoiceOut { index, delta, finish_reason }], None, out);
    }

    fn write(&self, choices: Vec<ChoiceOut>, usage: Option<&Usage>, out: &mut String) {
        let c = ChunkOut {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        };
        // Serialising these types cannot fail (no maps with non-string keys).
        if let Ok(json) = serde_json::to_string(&c) {
            out.push_str("data: ");
            out.push_str(&json);
            out.push_str("\n\n");
        }
    }

    fn role(&mut self, index: u32, out: &mut String) {
        if !self.role_sent {
            self.role_sent = true;
            let delta = Delta { role: Some("assistant"), content: Some(""), ..Delta::default() };
            self.chunk(index, delta, None, out);
        }
    }

    /// The `include_usage` chunk (no choices, `usage` set), once, if the
    /// client asked and the upstream reported usage.
    pub fn usage_chunk(&mut self, out: &mut String) {
        if self.include_usage {
            if let Some(u) = self.usage.take() {
                self.write(Vec::new(), Some(&u), out);
            }
        }
    }
}

impl Emit for ChatEmitter {
    /// Appends the chunk(s) an event becomes; returns how many.
    fn emit(&mut self, ev: &Event, out: &mut String) -> u32 {
        let before = out.len();
        match ev {
            Event::Start { id, model } => {
                self.take_names(id.as_deref(), model.as_deref());
                self.role(0, out);
            }
            Event::Text { choice, text } => {
                self.role(*choice, out);
                self.chunk(*choice, Delta { content: Some(text), ..Delta::default() }, None, out);
            }
            Event::Reasoning { choice, text } => {
                self.role(*choice, out);
                self.chunk(*choice, Delta { reasoning_content: Some(text), ..Delta::default() }, None, out);
            }
            Event::ToolStart { choice, index, id, name } => {
                self.role(*choice, out);
                let call = ToolCallDelta {
                    index: *index,
                    id: Some(id),
                    kind: Some("function"),
                    function: FunctionDelta { name: Some(name), arguments: "" },
                };
                self.chunk(*choice, Delta { tool_calls: vec![call], ..Delta::default() }, None, out);
            }
            Event::ToolArgs { choice, index, args } => {
                let call = ToolCallDelta {
                    index: *index,
                    id: None,
                    kind: None,
                    function: FunctionDelta { name: None, arguments: args },
                };
                self.chunk(*choice, Delta { tool_calls: vec![call], ..Delta::default() }, None, out);
            }
            Event::Finish { choice, reason } => {
                self.role(*choice, out);
                self.chunk(*choice, Delta::default(), Some(reason), out);
            }
            Event::Usage(u) => self.usage = Some(u.clone()),
            Event::Done | Event::Forward { .. } | Event::Error(_) | Event::Malformed => {}
        }
        out.get(before..).map_or(0, |s| s.matches("\n\n").count() as u32)
    }

    fn complete(&mut self, out: &mut String) {
        self.usage_chunk(out);
        self.end(out);
    }

    fn end(&mut self, out: &mut String) {
        out.push_str(DONE);
    }

    fn fail(&mut self, e: &UpstreamError, out: &mut String) {
        out.push_str(&error_event(e));
    }

    /// A stream that passes through still needs the upstream's names,
    /// should a continuation follow; its role chunk went through.
    fn adopt(&mut self, id: Option<&str>, model: Option<&str>) {
        self.take_names(id, model);
        self.role_sent = true;
    }

    fn continuation(&self) -> Box<dyn Emit> {
        Box::new(self.clone().continuing())
    }
}

/// An SSE event carrying an error in OpenAI's shape: the OpenAI SDKs raise
/// on it, so a broken answer never passes for a complete one.
pub fn error_event(e: &UpstreamError) -> String {
    let code = match e.kind {
        ErrorKind::Timeout => "stream_stalled",
        ErrorKind::Connect | ErrorKind::Malformed => "stream_cut",
        _ => "stream_error",
    };
    data_event(
        &json!({"error": {
            "message": format!("the answer was cut off: {}", e.message),
            "type": "upstream_error",
            "param": null,
            "code": code,
        }})
        .json_text(),
    )
}

/// A whole `chat.completion` as a short OpenAI stream (role, reasoning,
/// content, tool calls, finish, `[DONE]`), for a streaming client served a
/// whole answer (the mirror's, when the primary failed).
pub fn completion_as_sse(body: &str) -> String {
    let Some(c) = crate::api::CompletionView::parse(body) else {
        return error_event(&UpstreamError::new(ErrorKind::Malformed, "the answer could not be read"));
    };
    let mut enc = ChatEmitter::new(c.id.clone(), c.created, c.model.clone(), false);
    let mut out = String::new();
    enc.emit(&Event::Start { id: None, model: None }, &mut out);
    if let Some(r) = c.reasoning.as_deref().filter(|t| !t.is_empty()) {
        enc.emit(&Event::Reasoning { choice: 0, text: r.to_owned() }, &mut out);
    }
    if !c.text.is_empty() {
        enc.emit(&Event::Text { choice: 0, text: c.text.clone() }, &mut out);
    }
    for (i, (id, name, args)) in c.tool_calls.iter().enumerate() {
        let index = i as u32;
        enc.emit(&Event::ToolStart { choice: 0, index, id: id.clone(), name: name.clone() }, &mut out);
        enc.emit(&Event::ToolArgs { choice: 0, index, args: args.clone() }, &mut out);
    }
    let finish = c.finish_reason.clone().unwrap_or_else(|| "stop".to_owned());
    enc.emit(&Event::Finish { choice: 0, reason: finish }, &mut out);
    enc.end(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn chunks(sse: &str) -> Vec<Value> {
        sse.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn events_become_openai_chunks() {
        let mut e = ChatEmitter::new("chatcmpl-x".into(), 7, "m".into(), true);
        let mut out = String::new();
        e.emit(&Event::Start { id: Some("msg_1".into()), model: Some("claude".into()) }, &mut out);
        e.emit(&Event::Reasoning { choice: 0, text: "hmm".into() }, &mut out);
        e.emit(&Event::Text { choice: 0, text: "Hi".into() }, &mut out);
        e.emit(&Event::ToolStart { choice: 0, index: 0, id: "t1".into(), name: "f".into() }, &mut out);
        e.emit(&Event::ToolArgs { choice: 0, index: 0, args: "{}".into() }, &mut out);
        e.emit(&Event::Finish { choice: 0, reason: "tool_calls".into() }, &mut out);
        let usage = Usage { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7, ..Default::default() };
        e.emit(&Event::Usage(usage), &mut out);
        e.complete(&mut out);
        let c = chunks(&out);
        assert_eq!(c.len(), 7);
        assert!(c.iter().all(|c| c["id"] == "msg_1" && c["model"] == "claude" && c["created"] == 7));
        assert_eq!(c[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
        assert_eq!(c[1]["choices"][0]["delta"], json!({"reasoning_content": "hmm"}));
        assert_eq!(c[2]["choices"][0]["delta"], json!({"content": "Hi"}));
        assert_eq!(c[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"], "f");
        assert_eq!(c[5]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(c[6]["choices"], json!([]));
        assert_eq!(c[6]["usage"]["total_tokens"], 7);
    }

    #[test]
    fn a_continuation_keeps_the_names_and_sends_no_role() {
        let mut e = ChatEmitter::new("chatcmpl-x".into(), 7, "m".into(), false).continuing();
        let mut out = String::new();
        e.emit(&Event::Start { id: Some("other".into()), model: Some("other".into()) }, &mut out);
        e.emit(&Event::Text { choice: 0, text: "more".into() }, &mut out);
        e.emit(&Event::Usage(Usage::default()), &mut out);
        e.complete(&mut out);
        let c = chunks(&out);
        assert_eq!(c.len(), 1, "{out}");
        assert!(out.ends_with(DONE));
        assert_eq!((c[0]["id"].as_str(), c[0]["model"].as_str()), (Some("chatcmpl-x"), Some("m")));
    }

    #[test]
    fn a_whole_answer_replays_as_a_stream() {
        let body = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,
            "message":{"role":"assistant","content":"Hello","reasoning_content":"think"},"finish_reason":"stop"}]}"#;
        let sse = completion_as_sse(body);
        assert!(sse.ends_with(DONE));
        let c = chunks(&sse);
        let text: String = c.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(text, "Hello");
        assert_eq!(c[1]["choices"][0]["delta"]["reasoning_content"], "think");
        assert!(completion_as_sse("nope").contains("stream_cut"));
    }
}
