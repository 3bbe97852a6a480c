//! What an upstream stream says, in the gateway's own terms: the events
//! every provider's stream decoder yields and the relay acts on, whatever
//! the wire format. A decoder reads one SSE event at a time and pushes the
//! facts it carries; the relay decides what the client sees.

use crate::api::Usage;
use crate::sse::SseEvent;
use crate::taxonomy::UpstreamError;

/// One fact from an upstream stream. `choice` is the OpenAI choice index
/// (always 0 for formats without `n`); `index` is a tool call's position
/// among that choice's tool calls.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The upstream's own event, already in the client's format: forwarded
    /// as it is (its `data` text) when the relay passes the stream through.
    /// The facts it carries follow as separate events.
    Forward(String),
    /// The message starts; the upstream's id and model where it names them.
    Start { id: Option<String>, model: Option<String> },
    /// Answer text.
    Text { choice: u32, text: String },
    /// Reasoning (thinking) text, before or beside the answer.
    Reasoning { choice: u32, text: String },
    /// A tool call begins.
    ToolStart { choice: u32, index: u32, id: String, name: String },
    /// A piece of a tool call's JSON arguments.
    ToolArgs { choice: u32, index: u32, args: String },
    /// A choice is finished, with OpenAI's finish reason.
    Finish { choice: u32, reason: String },
    /// Token counts so far (cumulative: each replaces the last).
    Usage(Usage),
    /// The provider's end-of-stream marker (`[DONE]`, `message_stop`).
    Done,
    /// An error event inside the stream.
    Error(UpstreamError),
    /// An event that could not be read; skipped and counted.
    Malformed,
}

impl Event {
    /// Whether the event is part of the answer: text, reasoning, a tool
    /// call or a finish. The first such event is the stream's first token.
    pub fn is_activity(&self) -> bool {
        matches!(
            self,
            Event::Text { .. }
                | Event::Reasoning { .. }
                | Event::ToolStart { .. }
                | Event::ToolArgs { .. }
                | Event::Finish { .. }
        )
    }
}

/// For streams that end with `data: [DONE]` (OpenAI, Cohere): true when the
/// stream is already over or `ev` ends it (then [`Event::Done`] is pushed
/// once).
pub fn at_done_marker(done: &mut bool, ev: &SseEvent, out: &mut Vec<Event>) -> bool {
    if *done {
        return true;
    }
    if ev.data.trim() == "[DONE]" {
        *done = true;
        out.push(Event::Done);
        return true;
    }
    false
}

/// Reads a provider's stream, one SSE event at a time.
pub trait Decode {
    fn decode(&mut self, ev: &SseEvent, out: &mut Vec<Event>);
}
