//! What the translating adapters (Anthropic, Cohere) share: sampling
//! parameters mapped the same way for every format, tool definitions and the
//! JSON schema of a `response_format`, reasoning budgets, streamed tool
//! calls renumbered for OpenAI, and a whole answer assembled as an OpenAI
//! `chat.completion`.

use crate::api::{
    ApiError, ChatCompletion, ChatRequest, Choice, FunctionCall, ResponseFormatKind, ResponseMessage, Tool, ToolCall,
    Usage,
};
use crate::event::Event;
use serde_json::{json, Value};

/// An upstream error body as a JSON tree (`Null` when it is not JSON), read
/// field by field with [`crate::json::Dig`]: error bodies are rare, so one
/// generic parse serves every format instead of a derived reader each.
pub fn error_object(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// `temperature` in a 0..1 range: OpenAI accepts 0..2, Anthropic and Cohere
/// 0..1. Clamping (not scaling) keeps the common values (0, 0.2, 0.7, 1)
/// meaning the same on both sides.
pub fn temperature(req: &ChatRequest) -> Option<f64> {
    req.temperature.map(|t| t.clamp(0.0, 1.0))
}

/// `top_p`, sent only when it restricts anything: `1` (what clients send by
/// habit) is the default everywhere and is left out, for every format.
pub fn top_p(req: &ChatRequest) -> Option<f64> {
    req.top_p.filter(|p| *p < 1.0)
}

/// `stop` as a list, if any.
pub fn stop_sequences(req: &ChatRequest) -> Option<Vec<String>> {
    req.stop.as_ref().map(|s| s.to_vec()).filter(|v| !v.is_empty())
}

/// A tool definition's parts: name, description, and its JSON schema
/// (`{"type":"object"}` plus `empty_properties` when it has none).
pub struct ToolSpec<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub schema: Value,
}

pub fn tool_specs(tools: &[Tool], empty_properties: bool) -> Vec<ToolSpec<'_>> {
    tools
        .iter()
        .map(|t| ToolSpec {
            name: &t.function.name,
            description: t.function.description.as_deref(),
            schema: t.function.parameters.clone().unwrap_or_else(|| {
                if empty_properties {
                    json!({"type": "object", "properties": {}})
                } else {
                    json!({"type": "object"})
                }
            }),
        })
        .collect()
}

/// What `response_format` asks for.
pub enum OutputFormat<'a> {
    Text,
    JsonObject,
    /// A JSON schema.
    Schema(&'a Value),
}

pub fn output_format(req: &ChatRequest) -> Result<OutputFormat<'_>, ApiError> {
    let Some(rf) = &req.response_format else { return Ok(OutputFormat::Text) };
    match rf.kind {
        ResponseFormatKind::Text => Ok(OutputFormat::Text),
        ResponseFormatKind::JsonObject => Ok(OutputFormat::JsonObject),
        ResponseFormatKind::JsonSchema => {
            rf.json_schema.as_ref().and_then(|s| s.get("schema")).map(OutputFormat::Schema).ok_or_else(|| {
                ApiError::invalid_param(
                    "response_format.json_schema.schema",
                    "a `json_schema` response format needs `json_schema.schema`",
                )
            })
        }
    }
}

/// The thinking budget in tokens for an OpenAI `reasoning_effort`, for
/// formats that take a budget (Anthropic, Cohere). Anthropic's minimum is
/// 1,024. An effort not known here gets the medium budget.
pub fn reasoning_budget(effort: &str) -> u32 {
    match effort {
        "minimal" | "low" => 1_024,
        "high" => 16_384,
        "xhigh" | "max" => 32_768,
        _ => 4_096,
    }
}

/// Renumbers a provider's streamed tool calls into OpenAI's: the call's
/// position among the message's tool calls (providers number content blocks,
/// which also count text and thinking), and gives a call that got no
/// arguments at all `"{}"` when it ends, as a whole answer would.
#[derive(Debug, Default)]
pub struct ToolCalls {
    /// (the provider's block index, whether arguments were sent).
    calls: Vec<(Option<u64>, bool)>,
}

impl ToolCalls {
    /// A call starts; `args` is what its first event already carries.
    pub fn start(&mut self, block: Option<u64>, id: &str, name: &str, args: &str, out: &mut Vec<Event>) {
        let index = self.calls.len() as u32;
        self.calls.push((block, !args.is_empty()));
        out.push(Event::ToolStart { choice: 0, index, id: id.to_owned(), name: name.to_owned() });
        if !args.is_empty() {
            out.push(Event::ToolArgs { choice: 0, index, args: args.to_owned() });
        }
    }

    /// Which call an event is about: by its block index, else the latest.
    fn find(&mut self, block: Option<u64>) -> Option<(u32, &mut bool)> {
        let pos = match block {
            Some(b) => self.calls.iter().rposition(|c| c.0 == Some(b))?,
            None => self.calls.len().checked_sub(1)?,
        };
        self.calls.get_mut(pos).map(|c| (pos as u32, &mut c.1))
    }

    /// A piece of a call's arguments; `false` if no call is open for it.
    pub fn args(&mut self, block: Option<u64>, piece: &str, out: &mut Vec<Event>) -> bool {
        let Some((index, sent)) = self.find(block) else { return false };
        if !piece.is_empty() {
            *sent = true;
            out.push(Event::ToolArgs { choice: 0, index, args: piece.to_owned() });
        }
        true
    }

    /// A block ended; a tool call among them without arguments gets `{}`.
    pub fn end(&mut self, block: Option<u64>, out: &mut Vec<Event>) {
        if let Some((index, sent)) = self.find(block) {
            if !*sent {
                *sent = true;
                out.push(Event::ToolArgs { choice: 0, index, args: "{}".to_owned() });
            }
        }
    }
}

/// A whole answer's parts, to be written as an OpenAI `chat.completion`.
#[derive(Debug, Default)]
pub struct Assembled {
    pub id: String,
    pub model: String,
    pub text: String,
    pub reasoning: String,
    pub calls: Vec<ToolCall>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
}

impl Assembled {
    pub fn call(&mut self, id: &str, name: &str, arguments: String) {
        self.calls.push(ToolCall {
            id: id.to_owned(),
            kind: "function".to_owned(),
            function: FunctionCall { name: name.to_owned(), arguments },
        });
    }

    /// `content` is `null` for an answer that only calls tools.
    pub fn into_completion(self, now_s: u64) -> ChatCompletion {
        let content = if self.text.is_empty() && !self.calls.is_empty() { None } else { Some(self.text) };
        ChatCompletion {
            id: self.id,
            object: "chat.completion".to_owned(),
            created: now_s,
            model: self.model,
            choices: vec![Choice {
                index: 0,
                message: ResponseMessage {
                    role: "assistant".to_owned(),
                    content,
                    tool_calls: if self.calls.is_empty() { None } else { Some(self.calls) },
                    refusal: None,
                    reasoning_content: if self.reasoning.is_empty() { None } else { Some(self.reasoning) },
                },
                finish_reason: self.finish_reason,
                logprobs: None,
            }],
            usage: self.usage,
            system_fingerprint: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_p_is_mapped_the_same_for_every_format() {
        let req = |p: f64| {
            ChatRequest::parse(
                format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"top_p":{p}}}"#).as_bytes(),
            )
            .unwrap()
        };
        assert_eq!(top_p(&req(1.0)), None, "1 restricts nothing");
        assert_eq!(top_p(&req(0.9)), Some(0.9));
    }

    #[test]
    fn streamed_tool_calls_are_renumbered_and_get_empty_arguments() {
        let mut t = ToolCalls::default();
        let mut out = Vec::new();
        t.start(Some(2), "a", "f", "", &mut out);
        t.start(Some(5), "b", "g", "", &mut out);
        assert!(t.args(Some(2), "{\"x\":1}", &mut out));
        assert!(!ToolCalls::default().args(Some(9), "x", &mut out));
        t.end(Some(2), &mut out);
        t.end(Some(5), &mut out);
        assert_eq!(
            out[2..],
            [
                Event::ToolArgs { choice: 0, index: 0, args: "{\"x\":1}".into() },
                Event::ToolArgs { choice: 0, index: 1, args: "{}".into() },
            ]
        );
    }
}
