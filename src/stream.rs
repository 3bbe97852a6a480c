//! Streaming: OpenAI-format SSE to the client from any provider's stream.
//!
//! Two phases:
//! - [`StreamAccept`] is the attempt loop's acceptor for streams. It reads the
//!   upstream stream until the first content chunk, within the route's
//!   time-to-first-token limit (the attempt's deadline). Anything that goes
//!   wrong before then (an error event inside a 200, a stream that ends or
//!   stalls, a timeout) is an ordinary attempt failure: the loop fails over
//!   and the client never sees it.
//! - [`Relay`] then hands the client what was buffered and everything after,
//!   chunk by chunk as it arrives. Once content has been sent, a failure (a
//!   stall longer than the idle timeout, a cut, an upstream error event) ends
//!   the client's stream with an SSE error event in OpenAI's error shape and
//!   no `[DONE]`, so a broken answer can never pass for a complete one; or,
//!   where the route allows and a target can continue a partial answer, the
//!   relay continues it there ([`Resume`]).
//!
//! A malformed event is skipped and counted. A stream that finishes (a
//! `finish_reason` was seen) but never sends its end marker is finalised
//! after a short grace period.

use crate::clock::Clock;
use crate::config::{ProviderConfig, Target};
use crate::dispatch::Accept;
use crate::providers::{self, StreamItem, StreamMeta, StreamTranslator};
use crate::sse::{data_event, SseEvent, SseParser, DONE};
use crate::taxonomy::{ErrorKind, UpstreamError};
use crate::upstream::{TransportError, UpstreamBody, UpstreamHead};
use serde_json::json;
use std::collections::VecDeque;

/// After a `finish_reason`, how long to wait for the provider's end marker
/// (and OpenAI's usage chunk) before finalising the stream ourselves.
pub const FINISH_GRACE_MS: u64 = 1_000;

/// Continues a broken answer elsewhere: given the text sent so far, starts a
/// stream that carries on from it, or says no.
pub trait Resume<B> {
    async fn resume(&mut self, partial: &str) -> Option<Resumed<B>>;
}

/// A continuation stream, ready to relay.
pub struct Resumed<B> {
    pub body: B,
    pub translator: Box<dyn StreamTranslator>,
    pub provider: usize,
    pub target: String,
    /// Trailing whitespace cut from the partial answer before it was sent as
    /// the prefill (Anthropic rejects a prefill that ends in whitespace); the
    /// continuation's first text repeats it, and it is dropped there.
    pub trimmed: String,
}

/// No continuation.
pub struct NoResume;

impl<B> Resume<B> for NoResume {
    async fn resume(&mut self, _partial: &str) -> Option<Resumed<B>> {
        None
    }
}

impl<B, R: Resume<B>> Resume<B> for Option<R> {
    async fn resume(&mut self, partial: &str) -> Option<Resumed<B>> {
        match self {
            Some(r) => r.resume(partial).await,
            None => None,
        }
    }
}

/// How a relayed stream ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamOutcome {
    /// Still running.
    Open,
    /// A whole answer, ended with `[DONE]`.
    Complete,
    /// Ended with an error event.
    Failed(UpstreamError),
}

/// What the client stream is being fed from.
struct Source<B> {
    body: B,
    parser: SseParser,
    translator: Box<dyn StreamTranslator>,
    provider: usize,
}

pub struct Relay<B, C, R = NoResume> {
    source: Source<B>,
    clock: C,
    resume: R,
    pending: VecDeque<String>,
    events: Vec<SseEvent>,
    items: Vec<StreamItem>,
    finish: Option<String>,
    upstream_done: bool,
    ended: bool,
    /// Drop the next role-only chunk (the start of a continuation).
    skip_role: bool,
    /// A chunk with text, a tool call or a finish has been buffered.
    content_seen: bool,
    /// Whitespace to drop from the start of the next content (see [`Resumed`]).
    strip: String,
    idle_timeout_ms: u64,
    /// Content text sent so far.
    pub text: String,
    pub chunks: u32,
    pub malformed: u32,
    /// Providers whose streams failed mid-answer (to count against them).
    pub failed_providers: Vec<(usize, ErrorKind)>,
    /// Targets that continued the answer.
    pub continued_on: Vec<String>,
    outcome: StreamOutcome,
}

impl<B, C, R> Relay<B, C, R> {
    pub fn outcome(&self) -> &StreamOutcome {
        &self.outcome
    }

    /// The finish reason seen, if any.
    pub fn finish_reason(&self) -> Option<&str> {
        self.finish.as_deref()
    }

    /// Usage as the current source reported it.
    pub fn usage(&self) -> Option<crate::api::Usage> {
        self.source.translator.usage()
    }
}

impl<B: UpstreamBody, C: Clock, R: Resume<B>> Relay<B, C, R> {
    pub fn with_resume<R2: Resume<B>>(self, resume: R2) -> Relay<B, C, R2> {
        Relay {
            source: self.source,
            clock: self.clock,
            resume,
            pending: self.pending,
            events: self.events,
            items: self.items,
            finish: self.finish,
            upstream_done: self.upstream_done,
            ended: self.ended,
            skip_role: self.skip_role,
            content_seen: self.content_seen,
            strip: self.strip,
            idle_timeout_ms: self.idle_timeout_ms,
            text: self.text,
            chunks: self.chunks,
            malformed: self.malformed,
            failed_providers: self.failed_providers,
            continued_on: self.continued_on,
            outcome: self.outcome,
        }
    }

    /// Translates events from `bytes` (or the end of the stream, for `None`);
    /// returns the first error event met, if any.
    fn absorb(&mut self, bytes: Option<&[u8]>) -> Option<UpstreamError> {
        self.events.clear();
        match bytes {
            Some(b) => self.source.parser.feed(b, &mut self.events),
            None => self.source.parser.finish(&mut self.events),
        }
        self.items.clear();
        for ev in &self.events {
            self.source.translator.on_event(ev, &mut self.items);
        }
        let mut error = None;
        for item in self.items.drain(..) {
            match item {
                StreamItem::Chunk { mut json, mut text, tool_delta, finish_reason } => {
                    if !self.strip.is_empty() && !text.is_empty() {
                        let strip = std::mem::take(&mut self.strip);
                        if let Some(rest) = text.strip_prefix(strip.as_str()) {
                            json = replace_content(&json, rest).unwrap_or(json);
                            text = rest.to_owned();
                        }
                    }
                    let role_only = text.is_empty() && !tool_delta && finish_reason.is_none();
                    if self.skip_role && role_only {
                        continue;
                    }
                    if !role_only {
                        self.skip_role = false;
                    }
                    self.pending.push_back(data_event(&json));
                    self.content_seen |= !role_only;
                    self.text.push_str(&text);
                    self.chunks += 1;
                    if finish_reason.is_some() {
                        self.finish = finish_reason;
                    }
                }
                StreamItem::Done => {
                    self.upstream_done = true;
                    self.source.body.release();
                }
                StreamItem::Malformed => self.malformed += 1,
                StreamItem::Error(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        error
    }

    /// Whether anything the client would count as answer has been buffered.
    fn has_content(&self) -> bool {
        self.content_seen
    }

    /// The next piece of the client's stream (every event ready so far), or
    /// `None` once it has ended.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(mut p) = self.pending.pop_front() {
                // Everything ready goes out as one piece: one write to the
                // client instead of one per event.
                while let Some(more) = self.pending.pop_front() {
                    p.push_str(&more);
                }
                return Some(p);
            }
            if self.ended {
                return None;
            }
            if self.upstream_done {
                self.complete_or_fail().await;
                continue;
            }
            let wait = if self.finish.is_some() { FINISH_GRACE_MS } else { self.idle_timeout_ms };
            let deadline = self.clock.now_ms() + wait;
            match self.source.body.chunk(deadline).await {
                Ok(Some(bytes)) => {
                    if let Some(e) = self.absorb(Some(&bytes)) {
                        if self.finish.is_none() {
                            self.fail(e).await;
                        }
                    }
                }
                Ok(None) => {
                    let e = self.absorb(None);
                    self.upstream_done = true;
                    if let (Some(e), None) = (e, &self.finish) {
                        self.fail(e).await;
                    }
                }
                Err(TransportError::Timeout) => {
                    if self.finish.is_some() {
                        // Finished, but the end marker never came: finalise now.
                        self.upstream_done = true;
                    } else {
                        let e = UpstreamError::new(
                            ErrorKind::Timeout,
                            format!("the upstream stream stalled: nothing for {wait} ms"),
                        );
                        self.fail(e).await;
                    }
                }
                Err(TransportError::Connect(m)) => {
                    if self.finish.is_some() {
                        self.upstream_done = true;
                    } else {
                        let e = UpstreamError::new(ErrorKind::Connect, format!("the upstream stream broke: {m}"));
                        self.fail(e).await;
                    }
                }
            }
        }
    }

    /// The upstream stream is over: `[DONE]` if the answer finished, an
    /// error if it was cut short.
    async fn complete_or_fail(&mut self) {
        if self.finish.is_some() {
            self.pending.push_back(DONE.to_owned());
            self.ended = true;
            self.outcome = StreamOutcome::Complete;
        } else {
            let e = UpstreamError::new(ErrorKind::Malformed, "the upstream stream ended before the answer finished");
            self.fail(e).await;
        }
    }

    /// A failure after content was sent: continue elsewhere if possible,
    /// else end the client's stream with an error event (and no `[DONE]`).
    async fn fail(&mut self, e: UpstreamError) {
        self.failed_providers.push((self.source.provider, e.kind));
        if let Some(next) = self.resume.resume(&self.text).await {
            self.continued_on.push(next.target);
            self.source = Source {
                body: next.body,
                parser: SseParser::new(),
                translator: next.translator,
                provider: next.provider,
            };
            self.upstream_done = false;
            self.finish = None;
            self.skip_role = true;
            self.strip = next.trimmed;
            return;
        }
        self.pending.push_back(error_event(&e));
        self.ended = true;
        self.outcome = StreamOutcome::Failed(e);
    }
}

/// The chunk with its first choice's `delta.content` replaced.
fn replace_content(json: &str, content: &str) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(json).ok()?;
    *v.get_mut("choices")?.get_mut(0)?.get_mut("delta")?.get_mut("content")? = content.into();
    Some(v.to_string())
}

/// A whole `chat.completion` as a short OpenAI stream (role, content, tool
/// calls, finish, `[DONE]`), for a streaming client served a whole answer.
pub fn completion_as_sse(body: &str) -> String {
    let Ok(c) = serde_json::from_str::<crate::api::ChatCompletion>(body) else {
        return error_event(&UpstreamError::new(ErrorKind::Malformed, "the answer could not be read"));
    };
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        data_event(
            &json!({"id": c.id, "object": "chat.completion.chunk", "created": c.created, "model": c.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            .to_string(),
        )
    };
    let mut out = chunk(json!({"role": "assistant", "content": ""}), None);
    let choice = c.choices.first();
    if let Some(text) = choice.and_then(|ch| ch.message.content.as_deref()).filter(|t| !t.is_empty()) {
        out.push_str(&chunk(json!({"content": text}), None));
    }
    if let Some(calls) = choice.and_then(|ch| ch.message.tool_calls.as_ref()) {
        let deltas: Vec<serde_json::Value> = calls
            .iter()
            .enumerate()
            .map(|(i, t)| {
                json!({"index": i, "id": t.id, "type": "function",
                "function": {"name": t.function.name, "arguments": t.function.arguments}})
            })
            .collect();
        out.push_str(&chunk(json!({"tool_calls": deltas}), None));
    }
    let finish = choice.and_then(|ch| ch.finish_reason.as_deref()).unwrap_or("stop");
    out.push_str(&chunk(json!({}), Some(finish)));
    out.push_str(DONE);
    out
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
        .to_string(),
    )
}

/// The acceptor for streaming attempts.
pub struct StreamAccept<C> {
    pub clock: C,
    pub id: String,
    pub created: u64,
    pub include_usage: bool,
    pub idle_timeout_ms: u64,
}

impl<B: UpstreamBody, C: Clock + Clone> Accept<B> for StreamAccept<C> {
    type Output = Relay<B, C>;

    async fn accept(
        &mut self,
        target: &Target,
        provider: &ProviderConfig,
        head: UpstreamHead<B>,
        deadline_ms: u64,
    ) -> Result<Relay<B, C>, UpstreamError> {
        let meta = StreamMeta {
            id: self.id.clone(),
            created: self.created,
            model: target.model.clone(),
            include_usage: self.include_usage,
        };
        let mut relay = Relay {
            source: Source {
                body: head.body,
                parser: SseParser::new(),
                translator: providers::stream_translator(provider.format, meta),
                provider: target.provider,
            },
            clock: self.clock.clone(),
            resume: NoResume,
            pending: VecDeque::new(),
            events: Vec::new(),
            items: Vec::new(),
            finish: None,
            upstream_done: false,
            ended: false,
            skip_role: false,
            content_seen: false,
            strip: String::new(),
            idle_timeout_ms: self.idle_timeout_ms,
            text: String::new(),
            chunks: 0,
            malformed: 0,
            failed_providers: Vec::new(),
            continued_on: Vec::new(),
            outcome: StreamOutcome::Open,
        };
        // Read until the first content; any failure before it fails over.
        while !relay.has_content() {
            if relay.upstream_done {
                return Err(UpstreamError::new(ErrorKind::Malformed, "the stream ended before any content"));
            }
            match relay.source.body.chunk(deadline_ms).await {
                Ok(Some(bytes)) => {
                    if let Some(e) = relay.absorb(Some(&bytes)) {
                        return Err(e);
                    }
                }
                Ok(None) => {
                    if let Some(e) = relay.absorb(None) {
                        return Err(e);
                    }
                    relay.upstream_done = true;
                    if !relay.has_content() {
                        return Err(UpstreamError::new(ErrorKind::Malformed, "the stream ended before any content"));
                    }
                }
                Err(TransportError::Timeout) => {
                    return Err(UpstreamError::new(ErrorKind::Timeout, "no first token within the time limit"))
                }
                Err(TransportError::Connect(m)) => return Err(UpstreamError::new(ErrorKind::Connect, m)),
            }
        }
        Ok(relay)
    }
}
