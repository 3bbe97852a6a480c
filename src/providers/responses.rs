//! The OpenAI Responses API as an upstream wire, for a Responses client
//! and a provider that serves `/responses` itself (`responses = true`):
//! the client's request goes as it is (with the target's model), the
//! answer comes back as it is, and the gateway reads from it what it must
//! know (text, reasoning, tool calls, finish, usage, errors). Its errors
//! are OpenAI's.

use super::{request_headers, Outbound};
use crate::api::{
    ApiError, ChatCompletion, ChatRequest, Choice, CompletionTokensDetails, FunctionCall, PromptTokensDetails,
    ResponseMessage, ToolCall, Usage,
};
use crate::event::{Decode, Event};
use crate::json::{Dig, JsonText as _};
use crate::sse::SseEvent;
use crate::taxonomy::{ErrorKind, UpstreamError};
use crate::upstream::UpstreamRequest;
use serde_json::{json, Value};

/// The client's Responses body, with the target's model.
pub fn build_request(out: &Outbound, req: &ChatRequest) -> Result<UpstreamRequest, ApiError> {
    let Some(native) = req.native.as_deref() else {
        return Err(ApiError::new(500, "server_error", "a Responses target needs a Responses request"));
    };
    let mut body = native.body.clone();
    body.insert("model".into(), Value::from(out.model));
    Ok(UpstreamRequest {
        method: "POST",
        url: format!("{}/responses", out.provider.base_url),
        headers: request_headers(out),
        body: Some(Value::Object(body).json_text()),
    })
}

/// A Responses `usage` object in Chat terms.
fn usage_of(u: &Value) -> Option<Usage> {
    if !u.is_object() {
        return None;
    }
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let (input, output) = (n(u.at("input_tokens")), n(u.at("output_tokens")));
    Some(Usage {
        prompt_tokens: input,
        completion_tokens: output,
        total_tokens: u.at("total_tokens").as_u64().unwrap_or(input + output),
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: n(u.at("input_tokens_details").at("cached_tokens")),
        }),
        completion_tokens_details: Some(CompletionTokensDetails {
            reasoning_tokens: n(u.at("output_tokens_details").at("reasoning_tokens")),
        }),
    })
}

/// The finish reason a finished response stands for.
fn finish_of(r: &Value, has_calls: bool) -> &'static str {
    match r.at("status").as_str() {
        Some("incomplete") if r.at("incomplete_details").at("reason").as_str() == Some("content_filter") => {
            "content_filter"
        }
        Some("incomplete") => "length",
        _ if has_calls => "tool_calls",
        _ => "stop",
    }
}

/// Reads a whole `response` object in Chat terms (for the log, the mirror
/// and a continuation's prefill); the client gets the body itself.
pub fn parse_response(body: &str) -> Result<ChatCompletion, UpstreamError> {
    let r: Value = serde_json::from_str(body)
        .map_err(|e| UpstreamError::new(ErrorKind::Malformed, format!("not a response object: {e}")))?;
    if !r.at("error").is_null() || r.at("status").as_str() == Some("failed") {
        return Err(super::openai::stream_error(&json!({"error": r.at("error")}), body));
    }
    let Some(items) = r.at("output").as_array() else {
        return Err(UpstreamError::new(ErrorKind::Malformed, "the response has no output"));
    };
    let (mut text, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
    for item in items {
        match item.at("type").as_str() {
            Some("message") => {
                for part in item.at("content").as_array().into_iter().flatten() {
                    text.push_str(part.at("text").as_str().unwrap_or_default());
                }
            }
            Some("reasoning") => {
                for part in item.at("summary").as_array().into_iter().flatten() {
                    reasoning.push_str(part.at("text").as_str().unwrap_or_default());
                }
            }
            Some("function_call") => calls.push(ToolCall {
                id: item.at("call_id").as_str().unwrap_or_default().to_owned(),
                kind: "function".into(),
                function: FunctionCall {
                    name: item.at("name").as_str().unwrap_or_default().to_owned(),
                    arguments: item.at("arguments").as_str().unwrap_or_default().to_owned(),
                },
            }),
            _ => {}
        }
    }
    let finish = finish_of(&r, !calls.is_empty());
    Ok(ChatCompletion {
        id: r.at("id").as_str().unwrap_or_default().to_owned(),
        object: "chat.completion".into(),
        created: r.at("created_at").as_u64().unwrap_or(0),
        model: r.at("model").as_str().unwrap_or_default().to_owned(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".into(),
                content: Some(text),
                tool_calls: (!calls.is_empty()).then_some(calls),
                refusal: None,
                reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
            },
            finish_reason: Some(finish.to_owned()),
            logprobs: None,
        }],
        usage: usage_of(r.at("usage")),
        system_fingerprint: None,
    })
}

/// Reads a Responses stream. With `forward`, every event goes to the
/// client as it is but the errors, which the relay answers in its own
/// words (`error`, `response.failed`). Function calls are numbered in the
/// order they start; the terminal event carries usage and the finish.
#[derive(Default)]
pub struct StreamDecoder {
    forward: bool,
    /// `output_index` of each function call, in the order they started.
    calls: Vec<u64>,
    done: bool,
}

impl StreamDecoder {
    pub fn new(forward: bool) -> Self {
        StreamDecoder { forward, ..Self::default() }
    }

    fn call_index(&self, v: &Value) -> Option<u32> {
        let at = v.at("output_index").as_u64()?;
        self.calls.iter().position(|i| *i == at).and_then(|p| u32::try_from(p).ok())
    }
}

impl Decode for StreamDecoder {
    fn decode(&mut self, ev: &SseEvent, out: &mut Vec<Event>) {
        if self.done {
            return;
        }
        let Some(v) = crate::event::object_or_malformed(&ev.data, out) else { return };
        let kind = v.at("type").as_str().or(ev.event.as_deref()).unwrap_or_default();
        let is_error = matches!(kind, "error" | "response.failed");
        if self.forward && !is_error {
            let event = ev.event.clone().filter(|e| !e.is_empty());
            out.push(Event::Forward { event, data: ev.data.clone() });
        }
        match kind {
            "response.created" => {
                let r = v.at("response");
                let name = |k: &str| r.at(k).as_str().filter(|s| !s.is_empty()).map(str::to_owned);
                out.push(Event::Start { id: name("id"), model: name("model") });
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                if let Some(t) = v.at("delta").as_str().filter(|t| !t.is_empty()) {
                    out.push(Event::Text { choice: 0, text: t.to_owned() });
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                if let Some(t) = v.at("delta").as_str().filter(|t| !t.is_empty()) {
                    out.push(Event::Reasoning { choice: 0, text: t.to_owned() });
                }
            }
            "response.output_item.added" if v.at("item").at("type").as_str() == Some("function_call") => {
                let item = v.at("item");
                self.calls.push(v.at("output_index").as_u64().unwrap_or(u64::MAX));
                let index = u32::try_from(self.calls.len().saturating_sub(1)).unwrap_or(0);
                let id = item.at("call_id").as_str().unwrap_or_default().to_owned();
                let name = item.at("name").as_str().unwrap_or_default().to_owned();
                out.push(Event::ToolStart { choice: 0, index, id, name });
            }
            "response.function_call_arguments.delta" => match (self.call_index(&v), v.at("delta").as_str()) {
                (Some(index), Some(args)) if !args.is_empty() => {
                    out.push(Event::ToolArgs { choice: 0, index, args: args.to_owned() })
                }
                (Some(_), Some(_)) => {}
                _ => out.push(Event::Malformed),
            },
            "response.completed" | "response.incomplete" => {
                let r = v.at("response");
                if let Some(u) = usage_of(r.at("usage")) {
                    out.push(Event::Usage(u));
                }
                out.push(Event::Finish { choice: 0, reason: finish_of(r, !self.calls.is_empty()).to_owned() });
                self.done = true;
                out.push(Event::Done);
            }
            "error" => {
                // Documented flat, recorded nested under `error`: read both.
                let e = if v.at("error").is_object() { v.at("error").clone() } else { v.clone() };
                out.push(Event::Error(super::openai::stream_error(&json!({"error": e}), &ev.data)));
            }
            "response.failed" => {
                let e = v.at("response").at("error").clone();
                self.done = true;
                out.push(Event::Error(super::openai::stream_error(&json!({"error": e}), &ev.data)));
            }
            // Lifecycle, part and item boundaries, hosted-tool progress.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/openai-responses/{name}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
    }

    fn decode(name: &str, forward: bool) -> Vec<Event> {
        let mut p = SseParser::default();
        let mut evs = Vec::new();
        p.feed(fixture(name).as_bytes(), &mut evs).unwrap();
        let mut d = StreamDecoder::new(forward);
        let mut out = Vec::new();
        for e in &evs {
            d.decode(e, &mut out);
        }
        out
    }

    fn text(evs: &[Event]) -> String {
        evs.iter().filter_map(|e| if let Event::Text { text, .. } = e { Some(text.as_str()) } else { None }).collect()
    }

    #[test]
    fn recorded_streams_yield_text_calls_usage_and_the_end() {
        let evs = decode("stream_text.sse", false);
        assert_eq!(text(&evs), "Hi there! How can I assist you today?");
        assert!(matches!(evs.first(), Some(Event::Start { id: Some(_), .. })));
        assert!(evs.contains(&Event::Finish { choice: 0, reason: "stop".into() }));
        assert!(evs.iter().any(|e| matches!(e, Event::Usage(u) if u.prompt_tokens == 37 && u.completion_tokens == 11)));
        assert_eq!(evs.last(), Some(&Event::Done));

        let evs = decode("stream_function_call_recorded.sse", false);
        let args: String = evs
            .iter()
            .filter_map(|e| if let Event::ToolArgs { args, .. } = e { Some(args.as_str()) } else { None })
            .collect();
        assert!(serde_json::from_str::<Value>(&args).unwrap().is_object());
        assert!(evs.iter().any(|e| matches!(e, Event::ToolStart { index: 0, .. })));
        assert!(evs.contains(&Event::Finish { choice: 0, reason: "tool_calls".into() }));

        let evs = decode("stream_reasoning_function_call_recorded.sse", false);
        assert!(evs.iter().any(|e| matches!(e, Event::Reasoning { .. })));
    }

    #[test]
    fn passed_through_events_are_forwarded_but_errors_are_not() {
        let evs = decode("stream_text.sse", true);
        let forwarded = evs.iter().filter(|e| matches!(e, Event::Forward { .. })).count();
        assert_eq!(forwarded, 18, "every event of the stream, the terminal one included");
        let evs = decode("stream_error_recorded.sse", true);
        assert_eq!(evs.iter().filter(|e| matches!(e, Event::Forward { .. })).count(), 2);
        let err = evs.iter().find_map(|e| if let Event::Error(e) = e { Some(e) } else { None }).unwrap();
        assert_eq!(err.kind, ErrorKind::RateLimited);
        let evs = decode("stream_failed.sse", false);
        assert!(evs.iter().any(|e| matches!(e, Event::Error(_))));
    }

    #[test]
    fn whole_responses_read_in_chat_terms() {
        let c = parse_response(&fixture("response_text.json")).unwrap();
        assert!(!c.choices[0].message.content.as_deref().unwrap().is_empty());
        assert!(c.usage.is_some());
        let c = parse_response(&fixture("response_function_call.json")).unwrap();
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert!(c.choices[0].message.tool_calls.as_ref().unwrap()[0].id.starts_with("call_"));
        let c = parse_response(&fixture("response_incomplete_max_output_tokens.json")).unwrap();
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some("length"));
        let c = parse_response(&fixture("response_reasoning_recorded.json")).unwrap();
        assert!(c.choices[0].message.reasoning_content.is_some());
    }
}
