//! The whole request flow in the core, natively: a scripted upstream and a
//! fake clock stand in for fetch and time, so every taxonomy decision of the
//! attempt loop is checked without a network.

use futures_executor::block_on;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use switchyard::chat::{chat, ChatInput, ChatReply, World};
use switchyard::clock::{Clock, FakeClock};
use switchyard::config::Config;
use switchyard::gateway::Gateway;
use switchyard::http::Reply;
use switchyard::inbound::ClientFormat;
use switchyard::log::RequestLog;
use switchyard::mirror::NoMirror;
use switchyard::record::Outcome;
use switchyard::rng::SplitMix64;
use switchyard::upstream::{TransportError, Upstream, UpstreamBody, UpstreamHead, UpstreamRequest};

/// What a scripted provider does for one request.
#[derive(Clone, Debug)]
enum Step {
    Ok(&'static str),
    Status(u16, String, Option<&'static str>),
    Hang,
    Reset,
}

struct Fake<'c> {
    clock: &'c FakeClock,
    /// Per URL prefix: scripted steps, then the default.
    scripts: RefCell<HashMap<String, (VecDeque<Step>, Step)>>,
    /// (url, clock time) of every request.
    seen: RefCell<Vec<(String, u64, Option<String>)>>,
}

impl<'c> Fake<'c> {
    fn new(clock: &'c FakeClock) -> Self {
        Fake { clock, scripts: RefCell::new(HashMap::new()), seen: RefCell::new(Vec::new()) }
    }
    fn provider(&self, base: &str, default: Step, script: Vec<Step>) {
        self.scripts.borrow_mut().insert(base.to_owned(), (script.into(), default));
    }
    fn calls(&self, base: &str) -> Vec<u64> {
        self.seen.borrow().iter().filter(|(u, _, _)| u.starts_with(base)).map(|(_, t, _)| *t).collect()
    }
}

struct Body(String);

impl UpstreamBody for Body {
    async fn text(self, _deadline_ms: u64, _max_bytes: u64) -> Result<String, TransportError> {
        Ok(self.0)
    }
    async fn chunk(&mut self, _deadline_ms: u64) -> Result<Option<Vec<u8>>, TransportError> {
        Ok((!self.0.is_empty()).then(|| std::mem::take(&mut self.0).into_bytes()))
    }
}

impl Upstream for Fake<'_> {
    type Body = Body;
    async fn send(&self, req: &UpstreamRequest, deadline_ms: u64) -> Result<UpstreamHead<Body>, TransportError> {
        // Scripts name providers as http://<host> (the config's base URLs are https).
        let url = req.url.replacen("https://", "http://", 1);
        self.seen.borrow_mut().push((url.clone(), self.clock.now_ms(), req.body.clone()));
        let step = {
            let mut scripts = self.scripts.borrow_mut();
            let (queue, default) = scripts
                .iter_mut()
                .find(|(k, _)| url.starts_with(k.as_str()))
                .map(|(_, v)| v)
                .expect("no provider scripted for this URL");
            queue.pop_front().unwrap_or_else(|| default.clone())
        };
        self.clock.advance(5);
        let head = |status, body: String, ra: Option<&str>| UpstreamHead {
            status,
            retry_after: ra.map(str::to_owned),
            retry_after_ms: None,
            body: Body(body),
        };
        match step {
            Step::Ok(model) => Ok(head(200, openai_completion(model), None)),
            Step::Status(s, body, ra) => Ok(head(s, body, ra)),
            Step::Hang => {
                self.clock.set(deadline_ms);
                Err(TransportError::Timeout)
            }
            Step::Reset => Err(TransportError::Connect("connection reset".into())),
        }
    }
}

fn openai_completion(model: &str) -> String {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    })
    .to_string()
}

fn openai_error(status: u16, code: &str, message: &str) -> Step {
    Step::Status(
        status,
        json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}})
            .to_string(),
        None,
    )
}

fn config(strategy: &str, targets: Value) -> Config {
    config_with(strategy, targets, json!({}))
}

/// A config with more top-level settings (`breaker`, `health`, ...).
fn config_with(strategy: &str, targets: Value, extra: Value) -> Config {
    let mut cfg = json!({
            "providers": {
                "a": {"format": "openai", "base_url": "https://a.test/v1", "key_secret": "A_KEY"},
                "b": {"format": "openai", "base_url": "https://b.test/v1", "key_secret": "B_KEY"},
                "c": {"format": "openai", "base_url": "https://c.test/v1", "key_secret": "C_KEY"}
            },
            "routes": {"chat": {"strategy": strategy, "targets": targets, "policy": {
                "attempt_timeout_ms": 1000, "deadline_ms": 5000, "max_attempts": 5, "retries_per_target": 1,
                "backoff_base_ms": 100, "backoff_max_ms": 400, "max_retry_after_ms": 2000
            }}}
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    Config::from_json(&cfg.to_string()).unwrap()
}

fn three() -> Value {
    json!([{"provider": "a", "model": "ma"}, {"provider": "b", "model": "mb"}, {"provider": "c", "model": "mc"}])
}

fn gateway(cfg: Config) -> Gateway {
    Gateway::new(cfg, |name| Some(format!("sk-secret-{name}")))
}

struct Answer {
    status: u16,
    headers: HashMap<&'static str, String>,
    body: Value,
    log: RequestLog,
}

fn ask(gw: &Gateway, fake: &Fake, clock: &FakeClock, body: Value) -> Answer {
    let mut log = RequestLog::default();
    let mut rng = SplitMix64::new(11);
    let body = body.to_string();
    let mut w = World { clock: &clock, upstream: fake, rng: &mut rng, mirror: &NoMirror };
    let reply = whole(block_on(chat(gw, ChatInput::new(ClientFormat::Chat, body.as_bytes()), &mut log, &mut w)));
    Answer {
        status: reply.status,
        headers: reply.headers.into_iter().collect(),
        body: serde_json::from_str(&reply.body).unwrap(),
        log,
    }
}

fn whole<B>(r: ChatReply<B>) -> Reply {
    match r {
        ChatReply::Whole(r) => r,
        ChatReply::Stream { .. } => panic!("expected a whole reply"),
    }
}

fn hello() -> Value {
    json!({"model": "chat", "messages": [{"role": "user", "content": "hello"}]})
}

#[test]
fn primary_500_then_secondary_answers() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.provider("http://a.test", Step::Status(500, "{}".into(), None), vec![]);
    fake.provider("http://b.test", Step::Ok("mb"), vec![]);
    let gw = gateway(config("priority", three()));
    let a = ask(&gw, &fake, &clock, hello());
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["x-switchyard-provider"], "b");
    assert_eq!(a.headers["x-switchyard-model"], "mb");
    // The 500 is retried once at `a` (bounded), then `b` answers.
    assert_eq!(a.headers["x-switchyard-attempts"], "3");
    assert_eq!(fake.calls("http://a.test").len(), 2);
    assert_eq!(a.log.attempts[0].kind.unwrap().as_str(), "server_error");
}

#[test]
fn a_single_500_is_retried_at_the_same_provider_after_backoff() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.provider("http://a.test", Step::Ok("ma"), vec![Step::Status(500, "{}".into(), None)]);
    fake.provider("http://b.test", Step::Ok("mb"), vec![]);
    let gw = gateway(config("priority", three()));
    let a = ask(&gw, &fake, &clock, hello());
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["x-switchyard-provider"], "a");
    let calls = fake.calls("http://a.test");
    assert_eq!(calls.len(), 2);
    let gap = calls[1] - calls[0];
    assert!((55..=105).contains(&gap), "backoff with jitter between 50 and 100 ms after the 5 ms attempt: {gap}");
    assert!(fake.calls("http://b.test").is_empty());
}

#[test]
fn retry_after_is_waited_out_but_never_undercut() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.provider(
        "http://a.test",
        Step::Ok("ma"),
        vec![Step::Status(
            429,
            json!({"error": {"message": "slow down", "code": "rate_limit_exceeded"}}).to_string(),
            Some("1"),
        )],
    );
    fake.provider("http://b.test", Step::Ok("mb"), vec![]);
    let gw = gateway(config("priority", three()));
    let a = ask(&gw, &fake, &clock, hello());
    assert_eq!(a.headers["x-switchyard-provider"], "a");
    let calls = fake.calls("http://a.test");
    assert!(calls[1] - calls[0] >= 1_000, "{calls:?}");
}

#[test]
fn a_retry_after_too_long_fails_over_at_once() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.provider("http://a.test", Step::Status(429, "{}".into(), Some("30")), vec![]);
    fake.provider("http://b.test", Step::Ok("mb"), vec![]);
    let gw = gateway(config("priority", three()));
    let a = ask(&gw, &fake, &clock, hello());
    assert_eq!(a.headers["x-switchyard-provider"], "b");
    assert_eq!(fake.calls("http://a.test").len(), 1);
}

#[test]
fn a_timeout_fails_over_without_waiting_twice() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.provider("http://a.test", Step::Hang, vec![]);
    fake.provider("http://b.test", Step::Ok("mb"), vec![]);
    let gw = gateway(config("priority", three()));
    let t0 = clock.now_ms();
    let a = ask(&gw, &fake, &clock, hello());
    assert_eq!(a.headers["x-switchyard-provider"], "b");
    assert_eq!(fake.calls("http://a.test").len(), 1);
    assert!(clock.now_ms() - t0 < 1_100);
}

#[test]
fn connection_errors_are_retried_then_fail_over() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.provider("http://a.test", Step::Reset, vec![]);
    fake.provider("http://b.test", Step::Ok("mb"), vec![]);
    let gw = gateway(config("priority", three()));
    let a = ask(&gw, &fake, &clock, hello());
    assert_eq!(a.headers["x-switchyard-provider"], "b");
    assert_eq!(fake.calls("http://a.test").len(), 2);
    assert_eq!(a.log.attempts[0].kind.unwrap().as_str(), "connect_error");
}

#[test]
fn context_length_goes_only_to_a_larger_window() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.provider(
        "http://a.test",
        openai_error(400, "context_length_exceeded", "maximum context length is 8192 tokens"),
        vec![],
    );
    fake.provider("http://b.test", Step::Ok("mb"), vec![]);
    fake.provider("http://c.test", Step::Ok("mc"), vec![]);
    let targets = json!([
        {"provider": "a", "model": "ma", "context_window": 8192},
        {"provider": "b", "model": "mb", "context_window": 8192},
        {"provider": "c", "model": "mc", "context_window": 200000}
    ]);
    let gw = gateway(config("priority", targets));
    let a = ask(&gw, &fake, &clock, hello());
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["x-switchyard-provider"], "c");
    assert!(fake.calls("http://b.test").is_empty(), "a target no larger is skipped");
    assert_eq!(fake.calls("http://a.test").len(), 1, "not retried");
    // A context-length error is the request's fault, not the provider's.
    assert_eq!(gw.states().effective_failures(0, clock.now_ms()), 0.0);
}

#[test]
fn context_length_with_no_larger_target_is_the_clients_400() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.provider(
        "http://a.test",
        openai_error(400, "context_length_exceeded", "maximum context length is 8192 tokens"),
        vec![],
    );
    fake.provider("http://b.test", Step::Ok("mb"), vec![]);
    let targets = json!([{"provider": "a", "model": "ma", "context_window": 8192}, {"provider": "b", "model": "mb", "context_window": 4096}]);
    let gw = gateway(config("priority", targets));
    let a = ask(&gw, &fake, &clock, hello());
    assert_eq!(a.status, 400);
    assert_eq!(a.body["error"]["code"], "context_length_exceeded");
    assert!(a.body["error"]["message"].as_str().unwrap().contains("8192"));
}

#[test]
fn content_policy_comes_back_with_the_providers_reason_and_no_retry() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.provider(
        "http://a.test",
        openai_error(400, "content_policy_violation", "Your request was rejected as a result of our safety system."),
        vec![],
    );
    fake.provider("http://b.test", Step::Ok("mb"), vec![]);
    let gw = gateway(config("priority", three()));
    let a = ask(&gw, &fake, &clock, hello());
    assert_eq!(a.status, 400);
    assert!(a.body["error"]["message"].as_str().unwrap().contains("safety system"));
    assert_eq!(a.body["error"]["code"], "content_policy");
    assert_eq!(fake.calls("http://a.test").len(), 1);
    assert!(fake.calls("http://b.test").is_empty());
    assert_eq!(a.log.outcome, Some(Outcome::UpstreamRefused));
}

#[test]
fn all_down_lists_every_attempt() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.provider("http://a.test", Step::Status(500, "{}".into(), None), vec![]);
    fake.provider("http://b.test", Step::Status(503, "{}".into(), None), vec![]);
    fake.provider("http://c.test", Step::Status(502, "{}".into(), None), vec![]);
    let gw = gateway(config("priority", three()));
    let a = ask(&gw, &fake, &clock, hello());
    assert_eq!(a.status, 503, "an overloaded provider makes it a 503");
    let attempts = a.body["error"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 5, "bounded by max_attempts");
    assert_eq!(attempts[0]["target"], "a/ma");
    assert_eq!(attempts[2]["outcome"], "overloaded");
    assert_eq!(a.headers["x-switchyard-attempts"], "5");
    assert_eq!(a.body["error"]["code"], "all_providers_failed");
}

#[test]
fn all_timeouts_make_a_504_within_the_deadline() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    for p in ["http://a.test", "http://b.test", "http://c.test"] {
        fake.provider(p, Step::Hang, vec![]);
    }
    let gw = gateway(config("priority", three()));
    let t0 = clock.now_ms();
    let a = ask(&gw, &fake, &clock, hello());
    assert_eq!(a.status, 504);
    assert!(clock.now_ms() - t0 <= 5_000, "the request deadline holds");
}

#[test]
fn a_broken_key_fails_over_and_is_flagged() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.provider(
        "http://a.test",
        openai_error(401, "invalid_api_key", "Incorrect API key provided: sk-secret-A_KEY."),
        vec![],
    );
    fake.provider("http://b.test", Step::Ok("mb"), vec![]);
    let gw = gateway(config("priority", three()));
    let a = ask(&gw, &fake, &clock, hello());
    assert_eq!(a.headers["x-switchyard-provider"], "b");
    assert_eq!(fake.calls("http://a.test").len(), 1, "a bad key is not retried");
    let line = a.log.to_line();
    assert!(line.contains("misconfigured"), "{line}");
    // The echoed key never reaches a log line or the stored message.
    assert!(!line.contains("sk-secret"), "{line}");
    assert!(a.log.attempts[0].message.as_deref().unwrap().contains("[redacted]"));
}

/// An upstream message is clipped to 500 characters; a key it echoes at any
/// offset around that boundary leaves nothing of itself (no prefix of 8 or
/// more characters) in the client's error or the log.
#[test]
fn an_echoed_key_straddling_the_clip_leaves_no_prefix() {
    let key = "sk-secret-A_KEY";
    for offset in 470..=510 {
        let clock = FakeClock::new(1_000_000);
        let fake = Fake::new(&clock);
        let message = format!("{}{key} is not allowed to use temperature", "x".repeat(offset));
        fake.provider("http://a.test", openai_error(400, "bad_param", &message), vec![]);
        let gw = gateway(config("priority", three()));
        let a = ask(&gw, &fake, &clock, hello());
        assert_eq!(a.status, 400, "offset {offset}");
        let sent = a.body["error"]["message"].as_str().unwrap().to_owned();
        let stored = a.log.attempts[0].message.clone().unwrap();
        for text in [&sent, &stored, &a.log.to_line()] {
            assert!(!text.contains(&key[..8]), "offset {offset}: {text}");
        }
        assert!(sent.len() < 520, "still clipped");
    }
}

#[test]
fn a_missing_secret_skips_the_provider_without_a_request() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.provider("http://a.test", Step::Ok("ma"), vec![]);
    fake.provider("http://b.test", Step::Ok("mb"), vec![]);
    let gw = Gateway::new(config("priority", three()), |name| (name != "A_KEY").then(|| "k".to_owned()));
    let a = ask(&gw, &fake, &clock, hello());
    assert_eq!(a.headers["x-switchyard-provider"], "b");
    assert!(fake.calls("http://a.test").is_empty());
    assert_eq!(a.log.attempts[0].kind.unwrap().as_str(), "missing_key");
}

#[test]
fn client_chosen_order_is_followed() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    for (p, m) in [("http://a.test", "ma"), ("http://b.test", "mb"), ("http://c.test", "mc")] {
        fake.provider(p, Step::Ok(m), vec![]);
    }
    let gw = gateway(config("priority", three()));
    let mut body = hello();
    body["switchyard"] = json!({"order": ["c", "a"]});
    let a = ask(&gw, &fake, &clock, body);
    assert_eq!(a.headers["x-switchyard-provider"], "c");
    // The gateway's own options never reach the provider.
    let sent = fake.seen.borrow()[0].2.clone().unwrap();
    assert!(!sent.contains("switchyard"), "{sent}");
    assert!(sent.contains("\"model\":\"mc\""), "{sent}");
}

#[test]
fn weighted_traffic_shifts_away_from_a_failing_provider() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.provider("http://a.test", Step::Status(500, "{}".into(), None), vec![]);
    fake.provider("http://b.test", Step::Ok("mb"), vec![]);
    let targets = json!([{"provider": "a", "model": "ma", "weight": 1}, {"provider": "b", "model": "mb", "weight": 1}]);
    let gw = gateway(config("weighted", targets));
    let mut first_at_a = 0;
    for i in 0..200u64 {
        let before = fake.calls("http://a.test").len();
        let mut log = RequestLog::default();
        let mut rng = SplitMix64::new(i);
        let body = hello().to_string();
        let mut w = World { clock: &&clock, upstream: &fake, rng: &mut rng, mirror: &NoMirror };
        let r = whole(block_on(chat(&gw, ChatInput::new(ClientFormat::Chat, body.as_bytes()), &mut log, &mut w)));
        assert_eq!(r.status, 200);
        if fake.calls("http://a.test").len() > before && log.attempts[0].provider == "a" {
            first_at_a += 1;
        }
        clock.advance(1_000);
    }
    // With equal weights `a` would be first half the time; its failures cut that sharply.
    assert!(first_at_a < 30, "a was tried first {first_at_a} times out of 200");
    assert!(first_at_a > 0, "a failing provider is never starved to zero");
}

#[test]
fn unknown_model_is_a_404_naming_the_routes() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    let gw = gateway(config("priority", three()));
    let a = ask(&gw, &fake, &clock, json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}));
    assert_eq!(a.status, 404);
    assert_eq!(a.body["error"]["code"], "model_not_found");
    assert!(a.body["error"]["message"].as_str().unwrap().contains("chat"));
}

#[test]
fn no_capable_target_is_a_400_that_says_why() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    let gw = gateway(config("priority", three()));
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    ]}]});
    let a = ask(&gw, &fake, &clock, body);
    assert_eq!(a.status, 400);
    assert!(a.body["error"]["message"].as_str().unwrap().contains("vision"));
    assert!(fake.seen.borrow().is_empty());
}

#[test]
fn priority_tries_a_provider_that_just_failed_twice_last() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    fake.provider("http://a.test", Step::Ok("ma"), vec![Step::Status(500, "{}".into(), None); 2]);
    fake.provider("http://b.test", Step::Ok("mb"), vec![]);
    let gw = gateway(config("priority", three()));
    // The first request meets a's two failures (the 500 and its retry), then b answers.
    assert_eq!(ask(&gw, &fake, &clock, hello()).headers["x-switchyard-provider"], "b");
    // a is healthy again, but two recent failures put it behind b and c.
    let r = ask(&gw, &fake, &clock, hello());
    assert_eq!(r.headers["x-switchyard-provider"], "b");
    assert_eq!(r.headers["x-switchyard-attempts"], "1");
    assert_eq!(fake.calls("http://a.test").len(), 2);
    // Once the count has decayed (a half-life: 300 s), a is first again.
    clock.advance(300_000);
    assert_eq!(ask(&gw, &fake, &clock, hello()).headers["x-switchyard-provider"], "a");
}

#[test]
fn a_total_outage_makes_at_most_budget_many_upstream_attempts() {
    let clock = FakeClock::new(1_000_000);
    let fake = Fake::new(&clock);
    for p in ["http://a.test", "http://b.test", "http://c.test"] {
        fake.provider(p, Step::Status(500, "{}".into(), None), vec![]);
    }
    let breaker = json!({"breaker": {
        "consecutive_failures": 1, "cooldown_ms": 600000, "max_cooldown_ms": 600000,
        "retry_budget_ratio": 0.2, "retry_budget_min_per_s": 1, "retry_budget_window_s": 10
    }});
    let gw = gateway(config_with("priority", three(), breaker));
    // The first request opens every circuit.
    let first = ask(&gw, &fake, &clock, hello());
    assert_eq!(first.status, 502);
    let half_open_at = (0..3).filter_map(|i| gw.states().breaker(i).retry_at_ms()).min().unwrap();
    let before = fake.seen.borrow().len();
    // Then 1,000 requests over 10 seconds, with every circuit open.
    let (n, step_ms) = (1_000u64, 10u64);
    let t0 = clock.now_ms();
    let (mut refused, mut tried) = (0, 0);
    for _ in 0..n {
        clock.advance(step_ms);
        let calls = fake.seen.borrow().len();
        let a = ask(&gw, &fake, &clock, hello());
        if fake.seen.borrow().len() == calls {
            // The budget is spent: an immediate 503, nothing sent upstream.
            refused += 1;
            assert_eq!(a.status, 503);
            assert_eq!(a.body["error"]["code"], "all_providers_unavailable");
            assert!(a.body["error"]["message"].as_str().unwrap().contains("circuits are open"));
            let retry_after: u64 = a.headers["retry-after"].parse().unwrap();
            // Until the earliest circuit half-opens (its trial needs no budget).
            assert_eq!(retry_after, (half_open_at - clock.now_ms()).div_ceil(1000));
        } else {
            tried += 1;
            assert!(a.log.forced);
        }
    }
    let attempts = fake.seen.borrow().len() - before;
    let secs = (clock.now_ms() - t0).div_ceil(1000);
    // ratio × requests + min_per_s × (time + one window).
    let bound = (0.2 * n as f64 + 1.0 * (secs + 10) as f64) as usize;
    println!(
        "total outage: {n} requests, {attempts} upstream attempts (bound {bound}), {tried} tried, {refused} refused"
    );
    assert!(attempts <= bound, "{attempts} upstream attempts for {n} requests (bound {bound})");
    assert!(attempts >= (0.2 * n as f64) as usize, "the budget is used: {attempts}");
    assert!(refused > n as usize / 2, "{refused} refused");
    assert!(tried > 0);
}
