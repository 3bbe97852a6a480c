//! Streaming through the whole core, natively: scripted upstream streams on a
//! fake clock, through the attempt loop (failover before the first token)
//! and the relay (errors, stalls, cuts and grace after it).

use futures_executor::block_on;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use switchyard::chat::{chat, end_stream, ChatInput, ChatReply, World};
use switchyard::clock::{Clock, FakeClock};
use switchyard::config::Config;
use switchyard::continuation::Continuer;
use switchyard::gateway::Gateway;
use switchyard::inbound::ClientFormat;
use switchyard::log::RequestLog;
use switchyard::mirror::NoMirror;
use switchyard::record::Outcome;
use switchyard::rng::SplitMix64;
use switchyard::stream::{Next, ReadEnd, StreamDriver};
use switchyard::upstream::{TransportError, Upstream, UpstreamBody, UpstreamHead, UpstreamRequest};

/// One step of a scripted body: wait `after_ms`, then deliver.
#[derive(Clone, Debug)]
enum Piece {
    Bytes(u64, String),
    End(u64),
}

#[derive(Clone, Debug)]
enum Script {
    Status(u16, String),
    Stream(Vec<Piece>),
}

struct Body<'c> {
    clock: &'c FakeClock,
    pieces: VecDeque<Piece>,
    released: Rc<Cell<u32>>,
}

impl UpstreamBody for Body<'_> {
    async fn text(mut self, deadline_ms: u64, _max_bytes: u64) -> Result<String, TransportError> {
        let mut out = String::new();
        while let Some(b) = self.chunk(deadline_ms).await? {
            out.push_str(&String::from_utf8_lossy(&b));
        }
        Ok(out)
    }
    async fn chunk(&mut self, deadline_ms: u64) -> Result<Option<Vec<u8>>, TransportError> {
        let Some(p) = self.pieces.front().cloned() else {
            // A body that never ends: a stall.
            self.clock.set(self.clock.now_ms().max(deadline_ms));
            return Err(TransportError::Timeout);
        };
        let after = match &p {
            Piece::Bytes(a, _) | Piece::End(a) => *a,
        };
        if self.clock.now_ms() + after > deadline_ms {
            self.clock.set(deadline_ms);
            // Keep the piece: time has passed, so it is that much closer.
            if let Some(Piece::Bytes(a, _) | Piece::End(a)) = self.pieces.front_mut() {
                *a -= (*a).min(after.min(deadline_ms.saturating_sub(self.clock.now_ms())));
            }
            return Err(TransportError::Timeout);
        }
        self.clock.advance(after);
        self.pieces.pop_front();
        Ok(match p {
            Piece::Bytes(_, b) => Some(b.into_bytes()),
            Piece::End(_) => None,
        })
    }
    fn release(&mut self) {
        self.released.set(self.released.get() + 1);
    }
}

struct Fake<'c> {
    clock: &'c FakeClock,
    scripts: RefCell<HashMap<&'static str, VecDeque<Script>>>,
    seen: RefCell<Vec<(String, Value)>>,
    /// Bodies the relay released as read to their end (not to be aborted).
    released: Rc<Cell<u32>>,
}

impl<'c> Fake<'c> {
    fn new(clock: &'c FakeClock) -> Self {
        Fake { clock, scripts: RefCell::new(HashMap::new()), seen: RefCell::new(Vec::new()), released: Rc::default() }
    }
    fn script(&self, host: &'static str, s: Vec<Script>) {
        self.scripts.borrow_mut().insert(host, s.into());
    }
    fn calls(&self, host: &str) -> usize {
        self.seen.borrow().iter().filter(|(u, _)| u.contains(host)).count()
    }
}

impl<'c> Upstream for Fake<'c> {
    type Body = Body<'c>;
    async fn send(&self, req: &UpstreamRequest, _deadline_ms: u64) -> Result<UpstreamHead<Body<'c>>, TransportError> {
        let body: Value = serde_json::from_str(req.body.as_deref().unwrap_or("null")).unwrap();
        self.seen.borrow_mut().push((req.url.clone(), body));
        let host = ["a.test", "b.test", "c.test"].into_iter().find(|h| req.url.contains(h)).unwrap();
        let step = self.scripts.borrow_mut().get_mut(host).and_then(VecDeque::pop_front).expect("scripted");
        self.clock.advance(2);
        let head = |status, pieces: Vec<Piece>| UpstreamHead {
            status,
            retry_after: None,
            retry_after_ms: None,
            body: Body { clock: self.clock, pieces: pieces.into(), released: self.released.clone() },
        };
        Ok(match step {
            Script::Status(s, b) => head(s, vec![Piece::Bytes(0, b), Piece::End(0)]),
            Script::Stream(pieces) => head(200, pieces),
        })
    }
}

fn chunk(text: &str) -> String {
    let c = json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",
        "choices":[{"index":0,"delta":{"content":text},"finish_reason":null}]});
    format!("data: {c}\n\n")
}
fn role() -> String {
    let c = json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",
        "choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]});
    format!("data: {c}\n\n")
}
fn finish() -> String {
    let c = json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",
        "choices":[{"index":0,"delta":{},"finish_reason":"stop"}]});
    format!("data: {c}\n\n")
}
const DONE: &str = "data: [DONE]\n\n";

/// A healthy OpenAI stream of `n` words, `gap` ms apart.
fn words(n: usize, gap: u64) -> Vec<Piece> {
    let mut v = vec![Piece::Bytes(5, role())];
    for i in 0..n {
        v.push(Piece::Bytes(gap, chunk(&format!("w{i} "))));
    }
    v.push(Piece::Bytes(gap, finish()));
    v.push(Piece::Bytes(1, DONE.into()));
    v.push(Piece::End(0));
    v
}

fn config() -> Config {
    config_with(json!([{"provider": "a", "model": "ma"}, {"provider": "c", "model": "mc"}]))
}

fn config_with(targets: Value) -> Config {
    Config::from_json(
        &json!({
            "providers": {
                "a": {"format": "openai", "base_url": "http://a.test/v1"},
                "b": {"format": "anthropic", "base_url": "http://b.test"},
                "c": {"format": "openai", "base_url": "http://c.test/v1"}
            },
            "routes": {"chat": {"strategy": "priority",
                "targets": targets,
                "policy": {"first_token_timeout_ms": 500, "stream_idle_timeout_ms": 300,
                           "retries_per_target": 0, "deadline_ms": 60000, "attempt_timeout_ms": 1000}}}
        })
        .to_string(),
    )
    .unwrap()
}

struct Streamed {
    provider: String,
    pieces: Vec<String>,
    log: RequestLog,
}

impl Streamed {
    fn text(&self) -> String {
        self.pieces
            .iter()
            .filter_map(|p| p.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
            .collect()
    }
    fn ended_with_done(&self) -> bool {
        self.pieces.last().map(String::as_str) == Some(DONE)
    }
    fn error(&self) -> Option<Value> {
        let last = self.pieces.last()?.strip_prefix("data: ")?;
        let v: Value = serde_json::from_str(last.trim()).ok()?;
        v.get("error").cloned()
    }
}

/// How a test drives a stream: by the driver's own reads (`next`), or by a
/// pump like the one on Workers, which reads the body itself, feeds the
/// driver what it read (here re-cut into pieces of at most N bytes, so
/// events and characters are split anywhere) and tells it how the body
/// stopped.
#[derive(Clone, Copy, Debug)]
enum Drive {
    Next,
    Pump(usize),
}

fn stream(gw: &Gateway, fake: &Fake, clock: &FakeClock) -> Result<Streamed, Value> {
    stream_by(gw, fake, clock, Drive::Next)
}

fn stream_by(gw: &Gateway, fake: &Fake, clock: &FakeClock, drive: Drive) -> Result<Streamed, Value> {
    let body = json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut log = RequestLog { request_id: "sy-1".into(), ..Default::default() };
    let mut rng = SplitMix64::new(1);
    let body = body.to_string();
    let mut w = World { clock: &clock, upstream: fake, rng: &mut rng, mirror: &NoMirror };
    match block_on(chat(gw, ChatInput::new(ClientFormat::Chat, body.as_bytes()), &mut log, &mut w)) {
        ChatReply::Whole(r) => Err(serde_json::from_str(&r.body).unwrap()),
        ChatReply::Stream { head, stream, resume } => {
            let resume = resume.map(|plan| Continuer::new(gw, plan, fake, clock, SplitMix64::new(2)));
            let mut relay = StreamDriver::new(stream, clock, resume);
            assert_eq!(
                head.headers.iter().find(|h| h.0 == "content-type").unwrap().1,
                "text/event-stream; charset=utf-8"
            );
            let provider = head.headers.iter().find(|h| h.0 == "x-switchyard-provider").unwrap().1.clone();
            let mut pieces = Vec::new();
            // A piece may carry several events: split them for the assertions.
            let mut push = |p: String| pieces.extend(p.split_inclusive("\n\n").map(str::to_owned));
            match drive {
                Drive::Next => {
                    while let Some(p) = block_on(relay.next()) {
                        push(p);
                    }
                }
                Drive::Pump(size) => loop {
                    match block_on(relay.advance()) {
                        Next::Emit(p) => push(p),
                        Next::End => break,
                        Next::Read => 'pump: loop {
                            let deadline = relay.relay().next_deadline();
                            match block_on(relay.body_mut().chunk(deadline)) {
                                Ok(Some(bytes)) => {
                                    for piece in bytes.chunks(size) {
                                        push(relay.feed(piece, clock.now_ms()));
                                        if !relay.reading() {
                                            break 'pump;
                                        }
                                    }
                                }
                                Ok(None) => {
                                    relay.stopped(ReadEnd::Ended, clock.now_ms());
                                    break;
                                }
                                Err(e) => {
                                    relay.stopped(e.into(), clock.now_ms());
                                    break;
                                }
                            }
                        },
                    }
                },
            }
            pieces.retain(|p| !p.is_empty());
            let attempts = relay.continuation_attempts();
            end_stream(gw, relay.relay(), attempts, &mut log, clock.now_ms());
            Ok(Streamed { provider, pieces, log })
        }
    }
}

#[test]
fn a_healthy_stream_is_relayed_whole_and_ends_with_done() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.script("a.test", vec![Script::Stream(words(60, 10))]);
    let gw = Gateway::new(config(), |_| None);
    let s = stream(&gw, &fake, &clock).unwrap();
    assert_eq!(s.provider, "a");
    assert_eq!(s.text(), (0..60).map(|i| format!("w{i} ")).collect::<String>());
    assert!(s.ended_with_done());
    assert_eq!(s.pieces.iter().filter(|p| p.as_str() == DONE).count(), 1);
    assert_eq!(s.log.outcome, Some(Outcome::Ok));
    assert_eq!(fake.released.get(), 1, "a stream read to [DONE] is released, not aborted");
}

#[test]
fn an_error_status_before_the_stream_fails_over() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.script("a.test", vec![Script::Status(503, "{}".into())]);
    fake.script("c.test", vec![Script::Stream(words(3, 10))]);
    let gw = Gateway::new(config(), |_| None);
    let s = stream(&gw, &fake, &clock).unwrap();
    assert_eq!(s.provider, "c");
    assert!(s.ended_with_done());
}

#[test]
fn an_error_event_before_any_content_fails_over_invisibly() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    let err = "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n";
    fake.script(
        "a.test",
        vec![Script::Stream(vec![Piece::Bytes(5, role()), Piece::Bytes(5, err.into()), Piece::End(0)])],
    );
    fake.script("c.test", vec![Script::Stream(words(3, 10))]);
    let gw = Gateway::new(config(), |_| None);
    let s = stream(&gw, &fake, &clock).unwrap();
    assert_eq!(s.provider, "c");
    assert_eq!(s.text(), "w0 w1 w2 ");
    assert!(s.ended_with_done());
    assert!(gw.states().effective_failures(0, clock.now_ms()) > 0.9, "a's failure counted");
}

#[test]
fn a_slow_first_token_fails_over_to_a_healthy_fallback() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    let mut slow = words(3, 10);
    slow[1] = Piece::Bytes(2_000, chunk("late "));
    fake.script("a.test", vec![Script::Stream(slow)]);
    fake.script("c.test", vec![Script::Stream(words(3, 10))]);
    let gw = Gateway::new(config(), |_| None);
    let t0 = clock.now_ms();
    let s = stream(&gw, &fake, &clock).unwrap();
    assert_eq!(s.provider, "c");
    assert!(!s.text().contains("late"));
    assert!(clock.now_ms() - t0 < 1_000, "gave up on a at the 500 ms first-token limit");
    assert_eq!(s.log.attempts[0].kind.unwrap().as_str(), "timeout");
}

#[test]
fn a_cut_after_content_ends_with_an_error_event_and_no_done() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    let mut cut = words(60, 10);
    cut.truncate(41); // role + 40 words, then the connection ends
    cut.push(Piece::End(5));
    fake.script("a.test", vec![Script::Stream(cut)]);
    let gw = Gateway::new(config(), |_| None);
    let s = stream(&gw, &fake, &clock).unwrap();
    assert_eq!(s.text(), (0..40).map(|i| format!("w{i} ")).collect::<String>());
    assert!(!s.ended_with_done(), "a cut answer never ends with [DONE]");
    let e = s.error().expect("an error event ends the stream");
    assert_eq!(e["code"], "stream_cut");
    assert_eq!(e["type"], "upstream_error");
    assert_eq!(s.log.outcome, Some(Outcome::StreamFailed));
    assert!(gw.states().effective_failures(0, clock.now_ms()) > 0.9, "the cut counts against a");
    assert_eq!(fake.calls("c.test"), 0, "no continuation without a prefill-capable target");
    assert_eq!(fake.released.get(), 0, "a cut stream is never released as finished");
}

#[test]
fn a_stall_after_content_ends_with_an_error_event_within_the_idle_timeout() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    let mut stall = words(20, 10);
    stall.truncate(11); // role + 10 words, then silence
    fake.script("a.test", vec![Script::Stream(stall)]);
    let gw = Gateway::new(config(), |_| None);
    let s = stream(&gw, &fake, &clock).unwrap();
    assert_eq!(s.text().split_whitespace().count(), 10);
    assert_eq!(s.error().unwrap()["code"], "stream_stalled");
    assert!(!s.ended_with_done());
}

#[test]
fn a_malformed_chunk_is_skipped_and_counted() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    let mut w = words(20, 10);
    w[10] = Piece::Bytes(10, "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\n\n".into());
    fake.script("a.test", vec![Script::Stream(w)]);
    let gw = Gateway::new(config(), |_| None);
    let s = stream(&gw, &fake, &clock).unwrap();
    assert!(s.ended_with_done());
    assert_eq!(s.text().split_whitespace().count(), 19);
    assert_eq!(s.log.stream_malformed, 1);
}

#[test]
fn a_finish_without_done_is_finalised_promptly() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    let mut w = words(5, 10);
    w.truncate(7); // role, 5 words, finish; no [DONE] and the connection stays open
    fake.script("a.test", vec![Script::Stream(w)]);
    let gw = Gateway::new(config(), |_| None);
    let t0 = clock.now_ms();
    let s = stream(&gw, &fake, &clock).unwrap();
    assert!(s.ended_with_done());
    assert!(clock.now_ms() - t0 <= 5 + 2 + 70 + 1_000, "finalised within the grace period");
    assert_eq!(s.log.outcome, Some(Outcome::Ok));
}

#[test]
fn an_error_event_after_content_reaches_the_client() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    let mut w = words(10, 10);
    w.truncate(6);
    w.push(Piece::Bytes(5, "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n".into()));
    w.push(Piece::End(0));
    fake.script("a.test", vec![Script::Stream(w)]);
    let gw = Gateway::new(config(), |_| None);
    let s = stream(&gw, &fake, &clock).unwrap();
    assert_eq!(s.text().split_whitespace().count(), 5);
    let e = s.error().unwrap();
    assert_eq!(e["code"], "stream_error");
    assert!(e["message"].as_str().unwrap().contains("overloaded"));
}

/// Anthropic's stream of the given text pieces (the continuation side).
fn anthropic_stream(pieces: &[String]) -> Vec<Piece> {
    let ev = |name: &str, data: Value| Piece::Bytes(5, format!("event: {name}\ndata: {data}\n\n"));
    let mut v = vec![
        ev(
            "message_start",
            json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",
            "model":"mb","content":[],"stop_reason":null,"usage":{"input_tokens":10,"output_tokens":1}}}),
        ),
        ev(
            "content_block_start",
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ),
    ];
    for p in pieces {
        v.push(ev(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":p}}),
        ));
    }
    v.push(ev("content_block_stop", json!({"type":"content_block_stop","index":0})));
    v.push(ev("message_delta", json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":20}})));
    v.push(ev("message_stop", json!({"type":"message_stop"})));
    v.push(Piece::End(0));
    v
}

fn cut_after(n: usize) -> Vec<Piece> {
    let mut cut = words(60, 10);
    cut.truncate(n + 1);
    cut.push(Piece::End(5));
    cut
}

#[test]
fn a_cut_stream_continues_on_a_prefill_capable_fallback_into_exactly_the_full_answer() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.script("a.test", vec![Script::Stream(cut_after(40))]);
    // The model continues right after the prefill, so its text starts with the space.
    let rest: Vec<String> = (40..60).map(|i| format!(" w{i}")).chain([" ".to_owned()]).collect();
    fake.script("b.test", vec![Script::Stream(anthropic_stream(&rest))]);
    let targets =
        json!([{"provider": "a", "model": "ma"}, {"provider": "b", "model": "mb", "capabilities": ["prefill"]}]);
    let gw = Gateway::new(config_with(targets), |_| None);
    let s = stream(&gw, &fake, &clock).unwrap();
    let full: String = (0..60).map(|i| format!("w{i} ")).collect();
    assert_eq!(s.text(), full, "one whole answer, no doubled space");
    assert!(s.ended_with_done());
    assert_eq!(s.log.outcome, Some(Outcome::OkContinued));
    assert_eq!(s.log.continued_on, vec!["b/mb".to_owned()]);
    // b was asked to continue from the partial answer, without its trailing space.
    let seen = fake.seen.borrow();
    let sent = &seen.iter().find(|(u, _)| u.contains("b.test")).unwrap().1;
    let last = sent["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["role"], "assistant");
    let partial: String = (0..40).map(|i| format!("w{i} ")).collect();
    assert_eq!(last["content"].as_str().unwrap(), partial.trim_end());
    // Only one role chunk reached the client.
    assert_eq!(s.pieces.iter().filter(|p| p.contains("\"role\":\"assistant\"")).count(), 1);
    assert!(gw.states().effective_failures(0, clock.now_ms()) > 0.9, "a's cut still counts against it");
}

#[test]
fn a_fallback_that_refuses_to_continue_leaves_the_original_error() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.script("a.test", vec![Script::Stream(cut_after(40))]);
    let refusal = json!({"type":"error","error":{"type":"invalid_request_error","message":"This model does not support assistant message prefill."}});
    fake.script("b.test", vec![Script::Status(400, refusal.to_string())]);
    let targets =
        json!([{"provider": "a", "model": "ma"}, {"provider": "b", "model": "mb", "capabilities": ["prefill"]}]);
    let gw = Gateway::new(config_with(targets), |_| None);
    let s = stream(&gw, &fake, &clock).unwrap();
    assert_eq!(fake.calls("b.test"), 1, "the continuation was tried");
    let e = s.error().unwrap();
    assert_eq!(e["code"], "stream_cut", "the client sees the original failure");
    assert!(!e["message"].as_str().unwrap().contains("prefill"), "not the fallback's rejection");
    assert!(!s.ended_with_done());
    assert_eq!(gw.states().effective_failures(1, clock.now_ms()), 0.0, "a refusal is not a failure");
}

#[test]
fn no_continuation_when_the_route_forbids_it() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.script("a.test", vec![Script::Stream(cut_after(10))]);
    let targets =
        json!([{"provider": "a", "model": "ma"}, {"provider": "b", "model": "mb", "capabilities": ["prefill"]}]);
    let mut config = config_with(targets);
    config.routes[0].policy.continue_on_failure = false;
    let gw = Gateway::new(config, |_| None);
    let s = stream(&gw, &fake, &clock).unwrap();
    assert_eq!(fake.calls("b.test"), 0);
    assert_eq!(s.error().unwrap()["code"], "stream_cut");
}

#[test]
fn a_continuation_is_an_attempt_in_the_log_and_keeps_the_streams_id() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.script("a.test", vec![Script::Stream(cut_after(40))]);
    let rest: Vec<String> = (40..60).map(|i| format!(" w{i}")).chain([" ".to_owned()]).collect();
    fake.script("b.test", vec![Script::Stream(anthropic_stream(&rest))]);
    let targets =
        json!([{"provider": "a", "model": "ma"}, {"provider": "b", "model": "mb", "capabilities": ["prefill"]}]);
    let gw = Gateway::new(config_with(targets), |_| None);
    let s = stream(&gw, &fake, &clock).unwrap();
    let targets: Vec<&str> = s.log.attempts.iter().map(|a| a.target.as_str()).collect();
    assert_eq!(targets, ["a/ma", "b/mb"], "the continuation is in the log line's attempts");
    assert_eq!(s.log.attempts[1].kind, None);
    assert_eq!(s.log.provider.as_deref(), Some("b"), "the answer finished on b");
    let ids: Vec<String> = s
        .pieces
        .iter()
        .filter_map(|p| p.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect();
    assert!(ids.len() > 40 && ids.iter().all(|id| id == "c1"), "one id for the whole answer: {ids:?}");
}

#[test]
fn a_continuation_asks_the_breaker_first() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.script("a.test", vec![Script::Stream(cut_after(10))]);
    let targets =
        json!([{"provider": "a", "model": "ma"}, {"provider": "b", "model": "mb", "capabilities": ["prefill"]}]);
    let gw = Gateway::new(config_with(targets), |_| None);
    // b's circuit is open: no continuation request reaches it.
    for _ in 0..10 {
        gw.states_mut().record_failure(1, switchyard::taxonomy::ErrorKind::Server, clock.now_ms());
    }
    let s = stream(&gw, &fake, &clock).unwrap();
    assert_eq!(fake.calls("b.test"), 0, "an open circuit denies the continuation its permit");
    assert_eq!(s.error().unwrap()["code"], "stream_cut");
}

#[test]
fn a_continuation_waits_at_most_the_time_left() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    // a breaks after 10 words, 100 ms apart: about 1 s of the 1.5 s deadline gone.
    let mut cut = words(60, 100);
    cut.truncate(11);
    cut.push(Piece::End(5));
    fake.script("a.test", vec![Script::Stream(cut)]);
    // b takes 2 s to its first token: past the request's deadline.
    let mut slow = anthropic_stream(&[" w10".to_owned()]);
    slow.insert(0, Piece::Bytes(2_000, ": waking up\n\n".to_owned()));
    fake.script("b.test", vec![Script::Stream(slow)]);
    let targets = json!([{"provider": "a", "model": "ma"},
        {"provider": "b", "model": "mb", "capabilities": ["prefill"]}]);
    let mut config = config_with(targets);
    config.routes[0].policy.deadline_ms = 1_500;
    config.routes[0].policy.first_token_timeout_ms = 1_000;
    config.routes[0].policy.attempt_timeout_ms = 1_000;
    config.routes[0].policy.stream_idle_timeout_ms = 1_000;
    let gw = Gateway::new(config, |_| None);
    let start = clock.now_ms();
    let s = stream(&gw, &fake, &clock).unwrap();
    assert_eq!(fake.calls("b.test"), 1);
    assert!(clock.now_ms() - start <= 1_500, "the stream ended by the deadline ({} ms)", clock.now_ms() - start);
    assert!(s.error().is_some());
    assert_eq!(s.log.attempts.last().and_then(|a| a.kind), Some(switchyard::taxonomy::ErrorKind::Timeout));
}

#[test]
fn a_providers_own_timeout_applies_to_its_streams() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    // The first token after 800 ms: past the route's 500 ms, within a's own 2 s.
    let mut slow = words(3, 10);
    slow[0] = Piece::Bytes(800, role());
    fake.script("a.test", vec![Script::Stream(slow)]);
    let mut config = config();
    config.providers[0].timeout_ms = Some(2_000);
    let gw = Gateway::new(config, |_| None);
    let s = stream(&gw, &fake, &clock).unwrap();
    assert_eq!(s.provider, "a");
    assert_eq!(fake.calls("c.test"), 0);
}

#[test]
fn a_reasoning_model_that_thinks_past_the_first_token_limit_is_not_failed_over() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    let think = |t: &str| {
        let c = json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",
            "choices":[{"index":0,"delta":{"reasoning_content":t},"finish_reason":null}]});
        format!("data: {c}\n\n")
    };
    // 2 s of thinking in 200 ms steps, then the answer: the route allows 500 ms to the first token.
    let mut pieces = vec![Piece::Bytes(5, role())];
    for i in 0..10 {
        pieces.push(Piece::Bytes(200, think(&format!("step {i}. "))));
    }
    pieces.extend(words(3, 10).into_iter().skip(1));
    fake.script("a.test", vec![Script::Stream(pieces)]);
    let gw = Gateway::new(config(), |_| None);
    let s = stream(&gw, &fake, &clock).unwrap();
    assert_eq!(s.provider, "a");
    assert_eq!(fake.calls("c.test"), 0, "thinking is activity");
    assert!(s.ended_with_done());
    assert_eq!(s.text(), "w0 w1 w2 ");
    assert_eq!(gw.states().effective_failures(0, clock.now_ms()), 0.0);
    let reasoning: usize = s.pieces.iter().filter(|p| p.contains("reasoning_content")).count();
    assert_eq!(reasoning, 10, "the thinking reaches the client");
}

#[test]
fn a_pump_feeding_pieces_of_any_size_relays_exactly_what_the_driver_reads() {
    // Multibyte text; several events in one upstream chunk; a piece size of
    // one byte splits every `data:` and every character.
    let multibyte: Vec<Piece> = {
        let mut v = vec![Piece::Bytes(5, role() + &chunk("héllo ") + &chunk("✓ ") + &chunk("日本語 "))];
        v.extend((0..20).map(|i| Piece::Bytes(10, chunk(&format!("🎉{i} ")))));
        v.push(Piece::Bytes(10, finish() + DONE));
        v.push(Piece::End(0));
        v
    };
    let stalled = {
        let mut v = words(30, 10);
        v.truncate(21);
        v
    };
    let error_after = {
        let mut v = words(30, 10);
        v.truncate(11);
        v.push(Piece::Bytes(5, "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n".into()));
        v.push(Piece::End(0));
        v
    };
    let rest: Vec<String> = (40..60).map(|i| format!(" w{i}")).chain([" ".to_owned()]).collect();
    let prefill =
        json!([{"provider": "a", "model": "ma"}, {"provider": "b", "model": "mb", "capabilities": ["prefill"]}]);
    // (name, a's stream, b's stream if any, the route's targets)
    type Scenario = (&'static str, Vec<Piece>, Option<Vec<Piece>>, Value);
    let scenarios: Vec<Scenario> = vec![
        ("healthy, multibyte, events together", multibyte, None, json!([{"provider": "a", "model": "ma"}])),
        ("stalled after content", stalled, None, json!([{"provider": "a", "model": "ma"}])),
        ("an error event after content", error_after, None, json!([{"provider": "a", "model": "ma"}])),
        ("cut, continued elsewhere", cut_after(40), Some(anthropic_stream(&rest)), prefill),
    ];
    for (name, a, b, targets) in scenarios {
        let run = |drive: Drive| {
            let clock = FakeClock::new(1_000_000);
            let fake = Fake::new(&clock);
            fake.script("a.test", vec![Script::Stream(a.clone())]);
            if let Some(b) = &b {
                fake.script("b.test", vec![Script::Stream(b.clone())]);
            }
            let gw = Gateway::new(config_with(targets.clone()), |_| None);
            let s = stream_by(&gw, &fake, &clock, drive).unwrap();
            (s.pieces.clone(), s.text(), s.log.outcome, fake.released.get())
        };
        let expected = run(Drive::Next);
        assert!(!expected.1.is_empty(), "{name}: some text");
        for size in [1, 2, 3, 7, 64, 1 << 20] {
            assert_eq!(run(Drive::Pump(size)), expected, "{name}: pieces of {size} bytes");
        }
    }
}
