//! The stream relay as a state machine with no I/O and no timer of its own
//! (after quinn-proto's `Connection`): the driver feeds it what happened —
//! bytes from the upstream ([`Relay::feed`]), the end of the body
//! ([`Relay::end`]), a broken connection ([`Relay::broke`]), a deadline that
//! passed ([`Relay::tick`]) — and drains what it wants done: bytes for the
//! client ([`Relay::take_output`]), the time it next needs waking
//! ([`Relay::next_deadline`]), and its [`State`].
//!
//! A relay serves one client stream from one upstream source at a time:
//!
//! - **Probation**: until the first token (text, reasoning, a tool call or
//!   a finish) nothing goes to the client. A failure now (an error event, an
//!   early end, a cut, no first token by the deadline) is an ordinary
//!   attempt failure: [`State::Refused`], and the attempt loop fails over.
//! - **Flowing**: output is released as it comes. After every choice has
//!   its finish reason, the relay waits a short grace for the end marker
//!   (and OpenAI's usage chunk), then completes by itself.
//! - A failure after content is [`State::Broken`]: the driver may continue
//!   the answer on another target ([`Relay::prefill`], [`Relay::splice`]) or
//!   end it with an error event and no `[DONE]` ([`Relay::give_up`]).
//!
//! When the upstream speaks the client's format (OpenAI to OpenAI), its
//! events go out as they came (`passthrough`); otherwise the relay writes
//! OpenAI chunks from the decoded events.

use crate::api::Usage;
use crate::event::Emit;
use crate::event::{Decode, Event};
use crate::inbound::{self, ClientFormat, StreamNames};
use crate::sse::{SseEvent, SseParser};
use crate::taxonomy::{ErrorKind, UpstreamError};

/// After every choice finished, how long to wait for the provider's end
/// marker (and OpenAI's usage chunk) before completing the stream.
pub const FINISH_GRACE_MS: u64 = 1_000;

/// What is fixed for the whole client stream.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// The API the client called: the format of its stream.
    pub client: ClientFormat,
    /// `chatcmpl-...` id for translated chunks, until an upstream names its own.
    pub id: String,
    pub created: u64,
    /// The client asked for `stream_options.include_usage`.
    pub include_usage: bool,
    /// Choices the client asked for (`n`).
    pub choices: u32,
    /// Longest silence once content flows.
    pub idle_timeout_ms: u64,
    /// The request's deadline (clock time): bounds the whole stream.
    pub deadline_ms: u64,
    /// Largest SSE line or event, and largest output held before the first token.
    pub max_event_bytes: usize,
    /// Largest answer text kept (for continuation and the mirror comparison).
    pub max_text_bytes: usize,
    /// Responses: flattened namespaced tools, named as the client knows them.
    pub namespaced: Vec<(String, String, String)>,
}

/// Where a relay's events come from.
pub struct Source {
    /// Index of the provider in the configuration.
    pub provider: usize,
    /// `provider/model`.
    pub target: String,
    /// The target's upstream model (chunk `model` until the upstream names one).
    pub model: String,
    pub decoder: Box<dyn Decode>,
    /// Forward the upstream's events as they are (it speaks the client's format).
    pub passthrough: bool,
    /// The provider's key, redacted from any error text the stream carries.
    pub key: Option<String>,
}

/// Where the relay is.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Reading, nothing sent to the client yet.
    Probation,
    /// Content flows to the client.
    Flowing,
    /// A whole answer, ended with `[DONE]`.
    Complete,
    /// Failed before any content: the attempt failed (fail over).
    Refused(UpstreamError),
    /// Failed after content: continue elsewhere, or give up.
    Broken(UpstreamError),
    /// Ended with an error event.
    Failed(UpstreamError),
}

#[derive(Debug, Clone, Copy, Default)]
struct Choice {
    finished: bool,
}

pub struct Relay {
    spec: StreamSpec,
    parser: SseParser,
    decoder: Box<dyn Decode>,
    passthrough: bool,
    encoder: Box<dyn Emit>,
    provider: usize,
    target: String,
    key: Option<String>,
    state: State,
    /// Before the first token: the time limit for it.
    probation_deadline: u64,
    last_activity_ms: u64,
    /// When every choice had finished.
    finished_at: Option<u64>,
    out: String,
    /// Whitespace to drop from the start of the next text (a continuation's
    /// first text repeats what was trimmed off the prefill).
    strip: String,
    choices: Vec<Choice>,
    tool_seen: bool,
    text: String,
    text_truncated: bool,
    /// Choice 0's tool calls: (name, arguments).
    tool_calls: Vec<(String, String)>,
    finish: Option<String>,
    usage: Option<Usage>,
    upstream_done: bool,
    /// Events relayed to the client.
    pub chunks: u32,
    /// Upstream events that could not be read.
    pub malformed: u32,
    /// Providers whose streams failed mid-answer, and how.
    pub failed_providers: Vec<(usize, ErrorKind)>,
    /// Targets that continued the answer.
    pub continued_on: Vec<String>,
    events: Vec<SseEvent>,
    facts: Vec<Event>,
}

impl Relay {
    /// A relay for `source`, started at `now`, with `probation_deadline` the
    /// time allowed until the first token.
    pub fn new(spec: StreamSpec, source: Source, now: u64, probation_deadline: u64) -> Relay {
        let names = StreamNames {
            id: spec.id.clone(),
            created: spec.created,
            model: source.model.clone(),
            include_usage: spec.include_usage,
            namespaced: spec.namespaced.clone(),
        };
        let encoder = inbound::emitter(spec.client, names);
        Relay::with_encoder(spec, source, encoder, String::new(), now, probation_deadline)
    }

    fn with_encoder(
        spec: StreamSpec,
        source: Source,
        encoder: Box<dyn Emit>,
        strip: String,
        now: u64,
        probation_deadline: u64,
    ) -> Relay {
        let choices = vec![Choice::default(); spec.choices.max(1) as usize];
        Relay {
            parser: SseParser::with_limit(spec.max_event_bytes),
            spec,
            decoder: source.decoder,
            passthrough: source.passthrough,
            encoder,
            provider: source.provider,
            target: source.target,
            key: source.key,
            state: State::Probation,
            probation_deadline,
            last_activity_ms: now,
            finished_at: None,
            out: String::new(),
            strip,
            choices,
            tool_seen: false,
            text: String::new(),
            text_truncated: false,
            tool_calls: Vec::new(),
            finish: None,
            usage: None,
            upstream_done: false,
            chunks: 0,
            malformed: 0,
            failed_providers: Vec::new(),
            continued_on: Vec::new(),
            events: Vec::new(),
            facts: Vec::new(),
        }
    }

    // ------------------------------------------------------------ getters

    pub fn state(&self) -> &State {
        &self.state
    }
    pub fn provider(&self) -> usize {
        self.provider
    }
    pub fn target(&self) -> &str {
        &self.target
    }
    /// Choice 0's answer text so far (reasoning left out).
    pub fn text(&self) -> &str {
        &self.text
    }
    /// Choice 0's finish reason.
    pub fn finish_reason(&self) -> Option<&str> {
        self.finish.as_deref()
    }
    /// Choice 0's tool calls, (name, arguments).
    pub fn tool_calls(&self) -> &[(String, String)] {
        &self.tool_calls
    }
    /// Token usage as the upstream reported it.
    pub fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }
    /// Whether the upstream sent its end marker (nothing more will come, and
    /// its connection need not be aborted).
    pub fn upstream_done(&self) -> bool {
        self.upstream_done
    }

    /// When the driver must call [`Relay::tick`] if nothing else happens.
    pub fn next_deadline(&self) -> u64 {
        let d = match (&self.state, self.finished_at) {
            (State::Probation, _) => self.probation_deadline,
            (State::Flowing, Some(t)) => t.saturating_add(FINISH_GRACE_MS),
            (State::Flowing, None) => self.last_activity_ms.saturating_add(self.spec.idle_timeout_ms),
            _ => u64::MAX,
        };
        d.min(self.spec.deadline_ms)
    }

    /// The request's deadline: it bounds the whole stream, whatever else.
    pub fn request_deadline(&self) -> u64 {
        self.spec.deadline_ms
    }

    /// The relay stopped reading for a while because its client had not
    /// taken what it was sent: the upstream's silence counts from `now`,
    /// not from its last event.
    pub fn client_caught_up(&mut self, now: u64) {
        if self.state == State::Flowing {
            self.last_activity_ms = self.last_activity_ms.max(now);
        }
    }

    /// Bytes ready for the client (none during probation).
    pub fn take_output(&mut self) -> String {
        if self.state == State::Probation {
            return String::new();
        }
        std::mem::take(&mut self.out)
    }

    /// Whether anything is ready for the client.
    pub fn has_output(&self) -> bool {
        self.state != State::Probation && !self.out.is_empty()
    }

    // ------------------------------------------------------------ input

    /// Bytes from the upstream body.
    pub fn feed(&mut self, bytes: &[u8], now: u64) {
        if !self.reading() {
            return;
        }
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        let fed = self.parser.feed(bytes, &mut events);
        self.absorb(&events, now);
        self.events = events;
        if fed.is_err() && self.reading() {
            let e = UpstreamError::new(
                ErrorKind::Malformed,
                format!("an upstream stream event exceeded {} bytes", self.spec.max_event_bytes),
            );
            self.fail(e);
        }
    }

    /// The upstream body ended.
    pub fn end(&mut self, now: u64) {
        if !self.reading() {
            return;
        }
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        self.parser.finish(&mut events);
        self.absorb(&events, now);
        self.events = events;
        if self.reading() {
            self.finish_or_fail("the upstream stream ended before the answer finished");
        }
    }

    /// The upstream connection broke.
    pub fn broke(&mut self, message: &str, _now: u64) {
        if !self.reading() {
            return;
        }
        if self.all_finished() {
            self.complete();
        } else {
            let m = format!("the upstream stream broke: {}", self.redact(message));
            self.fail(UpstreamError::new(ErrorKind::Connect, m));
        }
    }

    /// Time passed; `now` at or after [`Relay::next_deadline`] acts on it.
    pub fn tick(&mut self, now: u64) {
        if now < self.next_deadline() || !self.reading() {
            return;
        }
        if self.finished_at.is_some() && self.state == State::Flowing {
            // Finished, but the end marker never came: complete now.
            self.complete();
            return;
        }
        let e = if now >= self.spec.deadline_ms {
            UpstreamError::new(ErrorKind::Timeout, "the answer did not finish within the request's deadline")
        } else if self.state == State::Probation {
            UpstreamError::new(ErrorKind::Timeout, "no first token within the time limit")
        } else {
            UpstreamError::new(
                ErrorKind::Timeout,
                format!("the upstream stream stalled: nothing for {} ms", self.spec.idle_timeout_ms),
            )
        };
        self.fail(e);
    }

    // ------------------------------------------------------------ commands

    /// The text a continuation would be asked to carry on from, if this
    /// broken stream may be continued: one choice, no tool call begun
    /// (prefill cannot resume JSON arguments honestly), some text, all kept.
    pub fn prefill(&self) -> Option<&str> {
        if !matches!(self.state, State::Broken(_)) || self.spec.choices > 1 || self.tool_seen || self.text_truncated {
            return None;
        }
        let p = self.text.trim_end();
        (!p.is_empty()).then_some(p)
    }

    /// A relay for a continuation of this stream from `source`: its chunks
    /// keep this stream's id and model and send no second role chunk, and
    /// the whitespace trimmed off the prefill is dropped from its first text.
    pub fn continuation(&self, source: Source, now: u64, probation_deadline: u64) -> Relay {
        let trimmed = self.text.get(self.text.trim_end().len()..).unwrap_or_default().to_owned();
        let encoder = self.encoder.continuation();
        let mut r = Relay::with_encoder(self.spec.clone(), source, encoder, trimmed, now, probation_deadline);
        r.passthrough = false;
        r
    }

    /// Carries on from `next`, a continuation that reached its first token.
    pub fn splice(&mut self, next: Relay) {
        if let State::Broken(e) = &self.state {
            self.failed_providers.push((self.provider, e.kind));
        }
        self.continued_on.push(next.target.clone());
        self.parser = next.parser;
        self.decoder = next.decoder;
        self.passthrough = false;
        self.encoder = next.encoder;
        self.provider = next.provider;
        self.target = next.target;
        self.key = next.key;
        self.last_activity_ms = next.last_activity_ms;
        self.finished_at = next.finished_at;
        self.strip = next.strip;
        self.out.push_str(&next.out);
        self.append_text(&next.text);
        self.tool_seen |= next.tool_seen;
        self.tool_calls.extend(next.tool_calls);
        self.choices = next.choices;
        self.finish = next.finish;
        self.usage = next.usage.or(self.usage.take());
        self.upstream_done = next.upstream_done;
        self.chunks += next.chunks;
        self.malformed += next.malformed;
        self.state = match next.state {
            State::Probation => State::Flowing,
            s => s,
        };
    }

    /// Ends a broken stream with an error event (and no `[DONE]`).
    pub fn give_up(&mut self) {
        if let State::Broken(e) = std::mem::replace(&mut self.state, State::Probation) {
            self.failed_providers.push((self.provider, e.kind));
            self.encoder.fail(&e, &mut self.out);
            self.state = State::Failed(e);
        }
    }

    // ------------------------------------------------------------ inside

    fn reading(&self) -> bool {
        matches!(self.state, State::Probation | State::Flowing)
    }

    fn all_finished(&self) -> bool {
        self.choices.iter().all(|c| c.finished)
    }

    fn redact(&self, text: &str) -> String {
        crate::dispatch::redact(text, self.key.as_deref())
    }

    fn absorb(&mut self, events: &[SseEvent], now: u64) {
        for ev in events {
            let mut facts = std::mem::take(&mut self.facts);
            facts.clear();
            self.decoder.decode(ev, &mut facts);
            for fact in facts.drain(..) {
                if !self.reading() {
                    break;
                }
                self.apply(fact, now);
            }
            self.facts = facts;
            if !self.reading() {
                return;
            }
        }
        if self.state == State::Probation && self.out.len() > self.spec.max_event_bytes {
            let e = UpstreamError::new(ErrorKind::Malformed, "the upstream sent too much before the first token");
            self.fail(e);
        }
    }

    fn apply(&mut self, fact: Event, now: u64) {
        if fact.is_activity() {
            self.last_activity_ms = now;
            if self.state == State::Probation {
                self.state = State::Flowing;
            }
        }
        let fact = match fact {
            Event::Forward { event, data } => {
                if self.passthrough {
                    self.encoder.forwarded(event.as_deref(), &data);
                    if let Some(name) = event {
                        self.out.push_str("event: ");
                        self.out.push_str(&name);
                        self.out.push('\n');
                    }
                    self.out.push_str("data: ");
                    self.out.push_str(&data);
                    self.out.push_str("\n\n");
                    self.chunks += 1;
                }
                return;
            }
            Event::Error(mut e) => {
                if !self.all_finished() {
                    e.message = self.redact(&e.message);
                    self.fail(e);
                }
                return;
            }
            Event::Malformed => {
                self.malformed += 1;
                return;
            }
            Event::Done => {
                self.upstream_done = true;
                self.finish_or_fail("the upstream stream ended before the answer finished");
                return;
            }
            Event::Text { choice, text } => {
                let text = if !self.strip.is_empty() && !text.is_empty() {
                    let strip = std::mem::take(&mut self.strip);
                    text.strip_prefix(strip.as_str()).map(str::to_owned).unwrap_or(text)
                } else {
                    text
                };
                if choice == 0 {
                    self.append_text(&text);
                }
                if text.is_empty() {
                    return;
                }
                Event::Text { choice, text }
            }
            Event::ToolStart { choice, index, id, name } => {
                self.tool_seen = true;
                if choice == 0 && self.tool_calls.len() < 128 {
                    self.tool_calls.push((name.clone(), String::new()));
                }
                Event::ToolStart { choice, index, id, name }
            }
            Event::ToolArgs { choice, index, args } => {
                self.tool_seen = true;
                if choice == 0 {
                    if let Some((_, a)) = self.tool_calls.get_mut(index as usize) {
                        if a.len() + args.len() <= self.spec.max_text_bytes {
                            a.push_str(&args);
                        }
                    }
                }
                Event::ToolArgs { choice, index, args }
            }
            Event::Finish { choice, reason } => {
                if choice == 0 {
                    self.finish = Some(reason.clone());
                }
                match self.choices.get_mut(choice as usize) {
                    Some(c) => c.finished = true,
                    None => {
                        // More choices than asked for: track them too.
                        self.choices.resize(choice as usize + 1, Choice::default());
                        if let Some(c) = self.choices.last_mut() {
                            c.finished = true;
                        }
                    }
                }
                if self.all_finished() && self.finished_at.is_none() {
                    self.finished_at = Some(now);
                }
                Event::Finish { choice, reason }
            }
            Event::Usage(u) => {
                self.usage = Some(u.clone());
                Event::Usage(u)
            }
            other => other,
        };
        if self.passthrough {
            if let Event::Start { id, model } = &fact {
                self.encoder.adopt(id.as_deref(), model.as_deref());
            }
        } else {
            self.chunks += self.encoder.emit(&fact, &mut self.out);
        }
    }

    fn append_text(&mut self, text: &str) {
        if self.text.len() + text.len() > self.spec.max_text_bytes {
            self.text_truncated = true;
            return;
        }
        self.text.push_str(text);
    }

    /// The upstream's stream is over: complete if every choice finished.
    fn finish_or_fail(&mut self, why: &str) {
        if self.all_finished() {
            self.complete();
        } else if self.state == State::Probation {
            self.fail(UpstreamError::new(ErrorKind::Malformed, "the stream ended before any content"));
        } else {
            self.fail(UpstreamError::new(ErrorKind::Malformed, why));
        }
    }

    fn complete(&mut self) {
        if self.passthrough {
            self.encoder.end(&mut self.out);
        } else {
            self.encoder.complete(&mut self.out);
        }
        self.state = State::Complete;
    }

    fn fail(&mut self, e: UpstreamError) {
        self.state = if self.state == State::Probation { State::Refused(e) } else { State::Broken(e) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Format;
    use serde_json::{json, Value};

    const T0: u64 = 1_000_000;

    fn spec(choices: u32, include_usage: bool) -> StreamSpec {
        StreamSpec {
            client: ClientFormat::Chat,
            id: "chatcmpl-gw".into(),
            created: 7,
            include_usage,
            choices,
            idle_timeout_ms: 1_000,
            deadline_ms: T0 + 60_000,
            max_event_bytes: 4_096,
            max_text_bytes: 1 << 20,
            namespaced: Vec::new(),
        }
    }

    fn source(format: Format, client_usage: bool) -> Source {
        Source {
            provider: 0,
            target: "p/m".into(),
            model: "target-model".into(),
            decoder: crate::providers::decoder(format, format == Format::OpenAi, client_usage),
            passthrough: format == Format::OpenAi,
            key: Some("sk-secret-key-1234".into()),
        }
    }

    fn relay(format: Format, choices: u32, include_usage: bool) -> Relay {
        Relay::new(spec(choices, include_usage), source(format, include_usage), T0, T0 + 5_000)
    }

    fn oai(v: Value) -> String {
        format!("data: {v}\n\n")
    }
    fn delta(choice: u32, d: Value, finish: Option<&str>) -> String {
        oai(json!({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "up",
            "choices": [{"index": choice, "delta": d, "finish_reason": finish}]}))
    }
    fn anth(kind: &str, v: Value) -> String {
        format!("event: {kind}\ndata: {v}\n\n")
    }

    /// The data payloads the client got.
    fn client(out: &str) -> Vec<Value> {
        out.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| if d == "[DONE]" { json!("[DONE]") } else { serde_json::from_str(d).unwrap() })
            .collect()
    }

    #[test]
    fn reasoning_is_the_first_token_and_is_forwarded_but_not_answer_text() {
        // An Anthropic stream that thinks first: the first thinking delta
        // releases the stream (no first-token timeout), and is sent as
        // `reasoning_content`.
        let mut r = relay(Format::Anthropic, 1, false);
        r.feed(
            anth("message_start", json!({"type":"message_start","message":{"id":"msg_1","model":"claude","usage":{"input_tokens":5,"output_tokens":1}}}))
                .as_bytes(),
            T0,
        );
        r.feed(anth("content_block_start", json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}})).as_bytes(), T0);
        assert_eq!(*r.state(), State::Probation, "the role chunk is no token");
        r.feed(anth("content_block_delta", json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me think"}})).as_bytes(), T0 + 4_000);
        assert_eq!(*r.state(), State::Flowing);
        // Thinking keeps the stream alive: the idle deadline moves with it.
        assert_eq!(r.next_deadline(), T0 + 5_000);
        r.feed(
            anth(
                "content_block_delta",
                json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Answer."}}),
            )
            .as_bytes(),
            T0 + 4_500,
        );
        r.feed(
            anth(
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}),
            )
            .as_bytes(),
            T0 + 4_600,
        );
        r.feed(anth("message_stop", json!({"type":"message_stop"})).as_bytes(), T0 + 4_700);
        assert_eq!(*r.state(), State::Complete);
        let c = client(&r.take_output());
        assert_eq!(c[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
        assert_eq!(c[1]["choices"][0]["delta"], json!({"reasoning_content": "Let me think"}));
        assert_eq!(c[2]["choices"][0]["delta"], json!({"content": "Answer."}));
        assert_eq!(c.last(), Some(&json!("[DONE]")));
        assert!(c.iter().filter_map(|c| c["id"].as_str()).all(|id| id == "msg_1"));
        assert_eq!(r.text(), "Answer.", "reasoning stays out of the answer text (the mirror compares this)");
        assert_eq!(r.usage().map(|u| u.completion_tokens), Some(9));
    }

    #[test]
    fn an_openai_reasoning_stream_passes_through_and_counts_as_activity() {
        let mut r = relay(Format::OpenAi, 1, false);
        let first = delta(0, json!({"role":"assistant","content":null,"reasoning_content":""}), None);
        r.feed(format!(": keep-alive\n\n{first}").as_bytes(), T0);
        assert_eq!(*r.state(), State::Probation);
        let thinking = delta(0, json!({"content":null,"reasoning":"hmm"}), None);
        r.feed(thinking.as_bytes(), T0 + 100);
        assert_eq!(*r.state(), State::Flowing);
        assert_eq!(r.take_output(), format!("{first}{thinking}"), "the upstream's bytes, as they came");
    }

    #[test]
    fn each_choice_finishes_on_its_own() {
        let mut r = relay(Format::OpenAi, 2, false);
        r.feed(delta(0, json!({"content":"a"}), None).as_bytes(), T0);
        r.feed(delta(1, json!({"content":"b"}), None).as_bytes(), T0);
        r.feed(delta(0, json!({}), Some("stop")).as_bytes(), T0 + 10);
        // Choice 1 is still answering: no grace yet, the idle limit applies.
        assert_eq!(r.next_deadline(), T0 + 10 + 1_000);
        r.tick(T0 + 900);
        assert_eq!(*r.state(), State::Flowing);
        r.feed(delta(1, json!({"content":" more"}), None).as_bytes(), T0 + 500);
        r.feed(delta(1, json!({}), Some("length")).as_bytes(), T0 + 600);
        assert_eq!(r.next_deadline(), T0 + 600 + FINISH_GRACE_MS, "every choice finished: the grace for [DONE]");
        r.tick(T0 + 600 + FINISH_GRACE_MS);
        assert_eq!(*r.state(), State::Complete);
        assert_eq!((r.text(), r.finish_reason()), ("a", Some("stop")), "the mirror compares choice 0");
        assert!(r.take_output().ends_with(crate::sse::DONE));
        assert_eq!(r.prefill(), None);
    }

    #[test]
    fn the_usage_chunk_reaches_only_a_client_that_asked_but_usage_is_always_read() {
        let usage =
            oai(json!({"id":"chatcmpl-up","object":"chat.completion.chunk","created":1,"model":"up","choices":[],
            "usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}));
        for asked in [false, true] {
            let mut r = relay(Format::OpenAi, 1, asked);
            r.feed(delta(0, json!({"content":"hi"}), None).as_bytes(), T0);
            r.feed(delta(0, json!({}), Some("stop")).as_bytes(), T0);
            r.feed(format!("{usage}data: [DONE]\n\n").as_bytes(), T0);
            assert_eq!(*r.state(), State::Complete);
            let out = r.take_output();
            assert_eq!(out.contains("\"choices\":[]"), asked, "{out}");
            assert_eq!(r.usage().map(|u| u.total_tokens), Some(7));
        }
        // A translated stream: the usage chunk is written only if asked.
        for asked in [false, true] {
            let mut r = relay(Format::Anthropic, 1, asked);
            r.feed(
                anth(
                    "message_start",
                    json!({"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":2}}}),
                )
                .as_bytes(),
                T0,
            );
            r.feed(
                anth(
                    "content_block_delta",
                    json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}),
                )
                .as_bytes(),
                T0,
            );
            r.feed(
                anth(
                    "message_delta",
                    json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}),
                )
                .as_bytes(),
                T0,
            );
            r.feed(anth("message_stop", json!({"type":"message_stop"})).as_bytes(), T0);
            let c = client(&r.take_output());
            assert_eq!(c.iter().any(|c| c["choices"] == json!([])), asked);
            assert_eq!(r.usage().map(|u| u.total_tokens), Some(5));
        }
    }

    #[test]
    fn a_stream_broken_inside_a_tool_call_is_never_continued() {
        let mut r = relay(Format::OpenAi, 1, false);
        r.feed(delta(0, json!({"content":"Let me look."}), None).as_bytes(), T0);
        r.broke("reset", T0);
        assert!(matches!(r.state(), State::Broken(_)));
        assert_eq!(r.prefill(), Some("Let me look."), "plain text may be continued");
        let mut r = relay(Format::OpenAi, 1, false);
        r.feed(delta(0, json!({"content":"Let me look."}), None).as_bytes(), T0);
        r.feed(delta(0, json!({"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"f","arguments":"{\"ci"}}]}), None).as_bytes(), T0);
        r.broke("reset", T0);
        assert_eq!(r.prefill(), None, "prefill cannot resume JSON arguments");
        r.give_up();
        let out = r.take_output();
        assert!(out.contains("stream_cut") && !out.contains("[DONE]"), "{out}");
        assert!(matches!(r.state(), State::Failed(_)));
    }

    #[test]
    fn a_continuation_keeps_the_stream_id_sends_no_second_role_and_drops_the_repeated_space() {
        let mut r = relay(Format::OpenAi, 1, false);
        r.feed(delta(0, json!({"role":"assistant","content":""}), None).as_bytes(), T0);
        r.feed(delta(0, json!({"content":"Hello "}), None).as_bytes(), T0);
        let _ = r.take_output();
        r.broke("reset", T0 + 10);
        assert_eq!(r.prefill(), Some("Hello"), "trailing whitespace is trimmed for the prefill");
        let mut next = r.continuation(source(Format::Anthropic, false), T0 + 20, T0 + 5_000);
        next.feed(
            anth("message_start", json!({"type":"message_start","message":{"id":"msg_other","model":"claude"}}))
                .as_bytes(),
            T0 + 30,
        );
        next.feed(
            anth(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" world"}}),
            )
            .as_bytes(),
            T0 + 30,
        );
        assert_eq!(*next.state(), State::Flowing);
        r.splice(next);
        r.feed(
            anth("message_delta", json!({"type":"message_delta","delta":{"stop_reason":"end_turn"}})).as_bytes(),
            T0 + 40,
        );
        r.feed(anth("message_stop", json!({"type":"message_stop"})).as_bytes(), T0 + 40);
        assert_eq!(*r.state(), State::Complete);
        let c = client(&r.take_output());
        assert!(c.iter().all(|c| c == "[DONE]" || c["id"] == "chatcmpl-up"), "{c:?}");
        assert!(c.iter().all(|c| c["choices"][0]["delta"].get("role").is_none()), "{c:?}");
        assert_eq!(c[0]["choices"][0]["delta"]["content"], "world");
        assert_eq!(r.text(), "Hello world");
        assert_eq!(r.continued_on, ["p/m"]);
        assert_eq!(r.failed_providers.len(), 1);
    }

    #[test]
    fn the_request_deadline_bounds_the_whole_stream() {
        let mut s = spec(1, false);
        s.deadline_ms = T0 + 2_500;
        let mut r = Relay::new(s, source(Format::OpenAi, false), T0, T0 + 5_000);
        assert_eq!(r.next_deadline(), T0 + 2_500, "the first token waits at most the time left");
        for t in 0..4 {
            r.feed(delta(0, json!({"content":"x"}), None).as_bytes(), T0 + t * 600);
        }
        assert_eq!(r.next_deadline(), T0 + 2_500, "idle waits stop at the deadline too");
        r.tick(T0 + 2_500);
        let State::Broken(e) = r.state() else { panic!("{:?}", r.state()) };
        assert!(e.message.contains("deadline"), "{}", e.message);
    }

    #[test]
    fn a_line_without_end_is_a_malformed_stream_not_a_growing_buffer() {
        let mut r = relay(Format::OpenAi, 1, false);
        r.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"", T0);
        for _ in 0..100 {
            r.feed(&[b'a'; 100], T0);
        }
        let State::Refused(e) = r.state() else { panic!("{:?}", r.state()) };
        assert_eq!(e.kind, ErrorKind::Malformed);
        // After content, the same ends the answer with an error.
        let mut r = relay(Format::OpenAi, 1, false);
        r.feed(delta(0, json!({"content":"ok"}), None).as_bytes(), T0);
        r.feed(&[b'a'; 5_000], T0);
        assert!(matches!(r.state(), State::Broken(e) if e.kind == ErrorKind::Malformed));
    }

    #[test]
    fn bytes_split_anywhere_give_the_same_stream() {
        let text = "héllo ✓ 日本語 🎉";
        let mut whole = String::new();
        whole.push_str(&anth("message_start", json!({"type":"message_start","message":{"id":"m","model":"c"}})));
        for w in text.split(' ') {
            whole.push_str(&anth(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":format!("{w} ")}}),
            ));
        }
        whole.push_str(
            &anth("message_delta", json!({"type":"message_delta","delta":{"stop_reason":"end_turn"}}))
                .replace('\n', "\r\n"),
        );
        whole.push_str(&anth("message_stop", json!({"type":"message_stop"})));
        let run = |pieces: Vec<&[u8]>| {
            let mut r = relay(Format::Anthropic, 1, false);
            let mut out = String::new();
            for p in pieces {
                r.feed(p, T0);
                out.push_str(&r.take_output());
            }
            (out, r.state().clone(), r.text().to_owned())
        };
        let expected = run(vec![whole.as_bytes()]);
        assert_eq!(expected.1, State::Complete);
        assert_eq!(expected.2.trim_end(), text);
        for size in [1, 2, 3, 5, 7, 64] {
            assert_eq!(run(whole.as_bytes().chunks(size).collect()), expected, "pieces of {size} bytes");
        }
    }

    #[test]
    fn an_error_event_after_content_is_redacted_and_ends_the_answer() {
        let mut r = relay(Format::OpenAi, 1, false);
        r.feed(delta(0, json!({"content":"partial"}), None).as_bytes(), T0);
        r.feed(
            oai(json!({"error":{"message":"bad key sk-secret-key-1234 used","type":"server_error"}})).as_bytes(),
            T0,
        );
        let State::Broken(e) = r.state().clone() else { panic!() };
        assert!(!e.message.contains("sk-secret"), "{}", e.message);
        r.give_up();
        let out = r.take_output();
        assert!(!out.contains("sk-secret") && out.contains("[redacted]"), "{out}");
    }

    #[test]
    fn time_spent_waiting_for_a_slow_client_is_not_the_upstreams_silence() {
        let mut r = relay(Format::OpenAi, 1, false);
        r.feed(delta(0, json!({"content":"x"}), None).as_bytes(), T0);
        let idle = r.next_deadline() - T0;
        // The client took 10 idle periods to read what it had.
        let later = T0 + 10 * idle;
        r.client_caught_up(later);
        assert_eq!(r.next_deadline(), (later + idle).min(r.request_deadline()));
        r.tick(later + 1);
        assert_eq!(*r.state(), State::Flowing, "not stalled: the upstream was not asked for anything");
    }

    #[test]
    fn a_finish_without_end_marker_completes_after_the_grace() {
        let mut r = relay(Format::OpenAi, 1, false);
        r.feed(delta(0, json!({"content":"x"}), Some("stop")).as_bytes(), T0);
        assert_eq!(r.next_deadline(), T0 + FINISH_GRACE_MS);
        r.tick(T0 + FINISH_GRACE_MS - 1);
        assert_eq!(*r.state(), State::Flowing);
        r.tick(T0 + FINISH_GRACE_MS);
        assert_eq!(*r.state(), State::Complete);
        assert!(!r.upstream_done(), "no end marker: the connection is still to be closed");
    }
}
