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
    /// as it is (its `event:` name, if any, and `data` text) when the relay
    /// passes the stream through. The facts it carries follow as separate
    /// events. End markers are never forwarded: the client's stream format
    /// writes its own end.
    Forward { event: Option<String>, data: String },
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

/// An event's data as a JSON object, or `None` with [`Event::Malformed`]
/// pushed (the event is skipped and counted).
pub fn object_or_malformed(data: &str, out: &mut Vec<Event>) -> Option<serde_json::Value> {
    match serde_json::from_str::<serde_json::Value>(data) {
        Ok(v @ serde_json::Value::Object(_)) => Some(v),
        _ => {
            out.push(Event::Malformed);
            None
        }
    }
}

/// Reads a provider's stream, one SSE event at a time.
pub trait Decode {
    fn decode(&mut self, ev: &SseEvent, out: &mut Vec<Event>);
}

/// Writes the client's stream (in the format of the API it called) from
/// the gateway's events.
pub trait Emit {
    /// Appends what `ev` becomes; returns the number of events written.
    fn emit(&mut self, ev: &Event, out: &mut String) -> u32;
    /// The answer is whole: what closes a translated stream (a usage event
    /// where the format has one, then its end).
    fn complete(&mut self, out: &mut String);
    /// The end alone, for a stream passed through (its usage went through).
    fn end(&mut self, out: &mut String);
    /// The answer broke after content: the format's error event, with no end.
    fn fail(&mut self, e: &UpstreamError, out: &mut String);
    /// The upstream's own id and model, for later events of a stream passed
    /// through (should a continuation follow it).
    fn adopt(&mut self, id: Option<&str>, model: Option<&str>);
    /// An upstream event was passed through to the client as it is (its
    /// `event:` name and data): what the emitter must know to carry on
    /// the stream after it (numbering, open blocks).
    fn forwarded(&mut self, _event: Option<&str>, _data: &str) {}
    /// An emitter that carries on this stream elsewhere: same id and names,
    /// no second start.
    fn continuation(&self) -> Box<dyn Emit>;
}
