//! Request mirroring: a sampled request also goes to a mirror target, never
//! delaying the client; the two answers are compared after the response,
//! and aggregates per route are shared through the store within KV's write
//! limits.
//!
//! Similarity is the cosine similarity of the two answers' word-count
//! vectors (split at spaces and punctuation, ASCII compared case-blind).
//! It is linear in the length of the texts (a Levenshtein distance would be
//! quadratic, paid in a Worker's CPU time), needs no model, tolerates a
//! reordering of the same content, and reads naturally: 1.0 for the same
//! words in the same proportions, 0.0 for no word in common. It does not see
//! meaning: "yes" and "no" score 0, a paraphrase with other words scores low.

use crate::api::{ChatCompletion, ChatRequest, Usage};
use crate::clock::Clock;
pub use crate::config::MirrorConfig;
use crate::config::{Config, Cost, Target};
use crate::json::{Fields, JsonText as _};
use crate::providers::{self, Outbound};
pub use crate::record::Answer;
use crate::store::StateStore;
use crate::taxonomy::{ErrorKind, UpstreamError};
use crate::upstream::{TransportError, Upstream, UpstreamBody};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// The comparison's view of a whole answer (choice 0).
pub fn answer_of(c: &ChatCompletion, provider: &str, target: &Target, latency_ms: u64) -> Answer {
    let choice = c.choices.first();
    let text = choice.and_then(|ch| ch.message.content.clone()).unwrap_or_default();
    let tool_calls = choice.map(|ch| {
        ch.message
            .tool_calls
            .iter()
            .flatten()
            .map(|t| (t.function.name.clone(), t.function.arguments.clone()))
            .collect()
    });
    Answer {
        provider: provider.to_owned(),
        model: c.model.clone(),
        text,
        tool_calls,
        finish_reason: choice.and_then(|ch| ch.finish_reason.clone()),
        usage: c.usage.clone(),
        latency_ms,
        cost: c.usage.as_ref().map(|u| cost_of(u, &target.cost)),
    }
}

pub fn cost_of(u: &Usage, c: &Cost) -> f64 {
    crate::usage::cost_usd(u, c)
}

/// The mirror's outcome: its answer (and the completion with its OpenAI
/// body, to serve them if the primary fails), or why it failed. Made once per mirrored request, so the
/// size difference between the variants does not matter.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum MirrorResult {
    Answered { answer: Answer, completion: ChatCompletion, body: String },
    Failed { kind: ErrorKind, latency_ms: u64 },
}

/// A sampled request's mirror call, prepared on the request path.
#[derive(Debug, Clone)]
pub struct MirrorJob {
    pub route: String,
    pub target: Target,
    /// The request as the mirror gets it (never streamed).
    pub request: ChatRequest,
    pub key: Option<String>,
    pub deadline_ms: u64,
}

/// Runs the mirror call: send, read, translate. Never fails the client.
pub async fn run<C: Clock, U: Upstream>(config: &Config, job: &MirrorJob, clock: &C, upstream: &U) -> MirrorResult {
    let start = clock.now_ms();
    let provider = config.provider_of(&job.target);
    let out = Outbound { provider, model: &job.target.model, api_key: job.key.as_deref() };
    let failed = |kind, clock: &C| MirrorResult::Failed { kind, latency_ms: clock.now_ms().saturating_sub(start) };
    if provider.key_secret.is_some() && job.key.is_none() {
        return failed(ErrorKind::MissingKey, clock);
    }
    let Ok(req) = providers::build_chat(&out, &job.request) else {
        return failed(ErrorKind::BadRequest, clock);
    };
    let head = match upstream.send(&req, job.deadline_ms).await {
        Ok(h) => h,
        Err(TransportError::Timeout) => return failed(ErrorKind::Timeout, clock),
        Err(TransportError::Connect(_) | TransportError::TooLarge(_)) => return failed(ErrorKind::Connect, clock),
    };
    let status = head.status;
    let text = match head.body.text(job.deadline_ms, config.security.max_answer_bytes).await {
        Ok(t) => t,
        Err(TransportError::Timeout) => return failed(ErrorKind::Timeout, clock),
        Err(TransportError::Connect(_)) => return failed(ErrorKind::Connect, clock),
        Err(TransportError::TooLarge(_)) => return failed(ErrorKind::Malformed, clock),
    };
    if !(200..300).contains(&status) {
        let UpstreamError { kind, .. } =
            crate::dispatch::classify_redacted(provider.format, status, &text, job.key.as_deref());
        return failed(kind, clock);
    }
    let latency = clock.now_ms().saturating_sub(start);
    match providers::parse_chat(provider.format, &text, start / 1000) {
        Ok(mut c) => {
            if c.model.is_empty() {
                c.model = job.target.model.clone();
            }
            let answer = answer_of(&c, &provider.name, &job.target, latency);
            let body = if provider.format == providers::Format::OpenAi {
                text
            } else {
                serde_json::to_string(&c).unwrap_or_default()
            };
            MirrorResult::Answered { answer, completion: c, body }
        }
        Err(e) => failed(e.kind, clock),
    }
}

/// How the gateway starts a mirror call and learns its result. The edge
/// runs the call on its own (in `waitUntil`), so the client never waits for
/// it; the gateway asks for the result only when the primary failed.
pub trait MirrorLink {
    fn start(&self, job: MirrorJob);
    /// The mirror's result, once it has one; `None` if none was started.
    async fn result(&self) -> Option<MirrorResult>;
}

/// No mirroring.
pub struct NoMirror;

impl MirrorLink for NoMirror {
    fn start(&self, _job: MirrorJob) {}
    async fn result(&self) -> Option<MirrorResult> {
        None
    }
}

/// One primary/mirror pair, compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The texts are equal once whitespace is normalised (and tool calls agree).
    pub agree: bool,
    pub similarity: f64,
    /// Tool calls agree in name and (JSON-equal) arguments; `None` if unknown.
    pub tools_agree: Option<bool>,
    pub finish_agree: bool,
}

pub fn normalise_ws(s: &str) -> String {
    crate::text::join(&s.split_whitespace().collect::<Vec<_>>(), " ")
}

/// Whether `c` is part of a word: ASCII letters and digits, and any other
/// character but the Latin-1, general, CJK and fullwidth punctuation and
/// space blocks. Plain range checks: Unicode's full tables (what
/// `char::is_alphanumeric` and `to_lowercase` need) would add 11 KiB
/// gzipped to the bundle for a similarity measure that does not need them.
fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    !matches!(c as u32, 0x80..=0xBF | 0xD7 | 0xF7 | 0x2000..=0x206F | 0x3000..=0x303F | 0xFF00..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65)
}

/// How often each word occurs. Kept in serde_json's own map, whose code the
/// bundle has anyway, rather than a map of another type compiled for this
/// alone (with the standard library's hasher beside serde_json's).
fn word_counts(s: &str) -> Map<String, Value> {
    let mut m = Map::new();
    // Words are compared case-blind in ASCII; other scripts as written.
    for w in s.split(|c: char| !is_word_char(c)).filter(|w| !w.is_empty()) {
        let w = w.to_ascii_lowercase();
        match m.get_mut(&w) {
            Some(n) => *n = Value::from(n.as_u64().unwrap_or(0) + 1),
            None => {
                m.insert(w, Value::from(1u64));
            }
        }
    }
    m
}

/// Cosine similarity of word-count vectors (see the module docs).
pub fn similarity(a: &str, b: &str) -> f64 {
    let (x, y) = (word_counts(a), word_counts(b));
    if x.is_empty() && y.is_empty() {
        return 1.0;
    }
    let count = |n: &Value| n.as_u64().unwrap_or(0) as f64;
    let dot: f64 = x.iter().filter_map(|(w, n)| y.get(w).map(|m| count(n) * count(m))).sum();
    let norm = |v: &Map<String, Value>| v.values().map(|n| count(n) * count(n)).sum::<f64>().sqrt();
    let d = norm(&x) * norm(&y);
    if d == 0.0 {
        0.0
    } else {
        (dot / d).clamp(0.0, 1.0)
    }
}

fn same_json(a: &str, b: &str) -> bool {
    match (serde_json::from_str::<serde_json::Value>(a), serde_json::from_str::<serde_json::Value>(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

pub fn compare(primary: &Answer, mirror: &Answer) -> Comparison {
    let tools_agree = match (&primary.tool_calls, &mirror.tool_calls) {
        (Some(p), Some(m)) => {
            Some(p.len() == m.len() && p.iter().zip(m).all(|(a, b)| a.0 == b.0 && same_json(&a.1, &b.1)))
        }
        _ => None,
    };
    let text_agree = normalise_ws(&primary.text) == normalise_ws(&mirror.text);
    Comparison {
        agree: text_agree && tools_agree != Some(false),
        similarity: similarity(&primary.text, &mirror.text),
        tools_agree,
        finish_agree: primary.finish_reason == mirror.finish_reason,
    }
}

/// The structured log line for one pair.
pub fn pair_line(request_id: &str, route: &str, primary: &Answer, mirror: &MirrorResult) -> String {
    let side = |a: &Answer| {
        json!({
            "provider": a.provider, "model": a.model, "latency_ms": a.latency_ms,
            "finish_reason": a.finish_reason,
            "prompt_tokens": a.usage.as_ref().map(|u| u.prompt_tokens),
            "completion_tokens": a.usage.as_ref().map(|u| u.completion_tokens),
            "cost_usd": a.cost,
        })
    };
    let mut line = json!({
        "level": "info", "msg": "mirror", "request_id": request_id, "route": route,
        "primary": side(primary),
    });
    if let Some(obj) = line.as_object_mut() {
        match mirror {
            MirrorResult::Answered { answer, .. } => {
                let c = compare(primary, answer);
                obj.insert("mirror".into(), side(answer));
                obj.insert("agree".into(), c.agree.into());
                obj.insert("similarity".into(), ((c.similarity * 1000.0).round() / 1000.0).into());
                obj.insert("tools_agree".into(), c.tools_agree.into());
                obj.insert("finish_agree".into(), c.finish_agree.into());
                obj.insert("latency_diff_ms".into(), (answer.latency_ms as i64 - primary.latency_ms as i64).into());
                if let (Some(p), Some(m)) = (primary.cost, answer.cost) {
                    obj.insert("cost_diff_usd".into(), (m - p).into());
                }
            }
            MirrorResult::Failed { kind, latency_ms } => {
                obj.insert("mirror".into(), json!({"outcome": kind.as_str(), "latency_ms": latency_ms}));
                obj.insert("level".into(), "warn".into());
            }
        }
    }
    line.json_text()
}

/// Aggregates of a route's pairs (sums, so that they add up across isolates).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MirrorStats {
    pub pairs: u64,
    pub agreed: u64,
    pub similarity_sum: f64,
    pub primary_latency_ms_sum: u64,
    pub mirror_latency_ms_sum: u64,
    pub primary_cost_usd_sum: f64,
    pub mirror_cost_usd_sum: f64,
    pub mirror_failures: u64,
    pub updated_ms: u64,
}

impl MirrorStats {
    /// Reads the stored aggregates (`None`: not a copy of them; those of
    /// earlier versions have no `updated_ms`).
    pub fn parse(text: &str) -> Option<MirrorStats> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let f = Fields::of(&v)?;
        Some(MirrorStats {
            pairs: f.u64("pairs")?,
            agreed: f.u64("agreed")?,
            similarity_sum: f.f64("similarity_sum")?,
            primary_latency_ms_sum: f.u64("primary_latency_ms_sum")?,
            mirror_latency_ms_sum: f.u64("mirror_latency_ms_sum")?,
            primary_cost_usd_sum: f.f64("primary_cost_usd_sum")?,
            mirror_cost_usd_sum: f.f64("mirror_cost_usd_sum")?,
            mirror_failures: f.u64("mirror_failures")?,
            updated_ms: f.or("updated_ms", 0, Fields::u64)?,
        })
    }

    pub fn add(&mut self, primary: &Answer, mirror: &MirrorResult, now: u64) {
        match mirror {
            MirrorResult::Answered { answer, .. } => {
                let c = compare(primary, answer);
                self.pairs += 1;
                self.agreed += c.agree as u64;
                self.similarity_sum += c.similarity;
                self.primary_latency_ms_sum += primary.latency_ms;
                self.mirror_latency_ms_sum += answer.latency_ms;
                self.primary_cost_usd_sum += primary.cost.unwrap_or(0.0);
                self.mirror_cost_usd_sum += answer.cost.unwrap_or(0.0);
            }
            MirrorResult::Failed { .. } => self.mirror_failures += 1,
        }
        self.updated_ms = now;
    }

    pub fn merge(&mut self, o: &MirrorStats) {
        self.pairs += o.pairs;
        self.agreed += o.agreed;
        self.similarity_sum += o.similarity_sum;
        self.primary_latency_ms_sum += o.primary_latency_ms_sum;
        self.mirror_latency_ms_sum += o.mirror_latency_ms_sum;
        self.primary_cost_usd_sum += o.primary_cost_usd_sum;
        self.mirror_cost_usd_sum += o.mirror_cost_usd_sum;
        self.mirror_failures += o.mirror_failures;
        self.updated_ms = self.updated_ms.max(o.updated_ms);
    }

    pub fn is_empty(&self) -> bool {
        self.pairs == 0 && self.mirror_failures == 0
    }

    /// Rates and means, for the status endpoint.
    pub fn summary(&self) -> serde_json::Value {
        let n = self.pairs.max(1) as f64;
        json!({
            "pairs": self.pairs,
            "agreement_rate": if self.pairs > 0 { Some(self.agreed as f64 / n) } else { None },
            "mean_similarity": if self.pairs > 0 { Some(self.similarity_sum / n) } else { None },
            "mean_primary_latency_ms": if self.pairs > 0 { Some(self.primary_latency_ms_sum as f64 / n) } else { None },
            "mean_mirror_latency_ms": if self.pairs > 0 { Some(self.mirror_latency_ms_sum as f64 / n) } else { None },
            "mean_latency_diff_ms": if self.pairs > 0 {
                Some((self.mirror_latency_ms_sum as f64 - self.primary_latency_ms_sum as f64) / n)
            } else { None },
            "primary_cost_usd": self.primary_cost_usd_sum,
            "mirror_cost_usd": self.mirror_cost_usd_sum,
            "mirror_failures": self.mirror_failures,
            "updated_ms": self.updated_ms,
        })
    }
}

pub const MIRROR_KEY_PREFIX: &str = "sy:v1:m:";

/// Per-route aggregates not yet shared, and when each route last wrote: a
/// route's entry is found by a look down a short list (a deployment has a
/// handful of mirrored routes).
#[derive(Debug, Default)]
pub struct MirrorLedger {
    pending: Vec<(String, MirrorStats)>,
    last_write_ms: Vec<(String, u64)>,
}

impl MirrorLedger {
    pub fn add(&mut self, route: &str, primary: &Answer, mirror: &MirrorResult, now: u64) {
        match self.pending.iter_mut().find(|(r, _)| r == route) {
            Some((_, s)) => s.add(primary, mirror, now),
            None => {
                let mut s = MirrorStats::default();
                s.add(primary, mirror, now);
                self.pending.push((route.to_owned(), s));
            }
        }
    }

    /// What this isolate holds for `route` that the store does not have yet.
    pub fn pending(&self, route: &str) -> Option<&MirrorStats> {
        self.pending.iter().find(|(r, _)| r == route).map(|(_, s)| s)
    }

    /// Routes whose pending aggregates may be written now (at most one write
    /// per route per `interval_ms`); their pending sums are handed over.
    pub fn take_due(&mut self, now: u64, interval_ms: u64) -> Vec<(String, MirrorStats)> {
        let mut due = Vec::new();
        for (route, stats) in std::mem::take(&mut self.pending) {
            let last = self.last_write_ms.iter_mut().find(|(r, _)| *r == route);
            let ready = !stats.is_empty() && last.as_ref().is_none_or(|(_, t)| now.saturating_sub(*t) >= interval_ms);
            if !ready {
                self.pending.push((route, stats));
                continue;
            }
            match last {
                Some((_, t)) => *t = now,
                None => self.last_write_ms.push((route.clone(), now)),
            }
            due.push((route, stats));
        }
        due
    }

    /// A write failed: keep the sums for the next one.
    pub fn give_back(&mut self, route: String, stats: MirrorStats) {
        match self.pending.iter_mut().find(|(r, _)| *r == route) {
            Some((_, s)) => s.merge(&stats),
            None => self.pending.push((route, stats)),
        }
    }
}

/// Reads the shared aggregates of the given routes (those with a mirror);
/// a route without any yet, or unreadable, is left out.
pub async fn read_shared<S: StateStore>(store: &S, routes: &[&str]) -> Vec<(String, MirrorStats)> {
    let mut out = Vec::new();
    for route in routes {
        if let Ok(Some(t)) = store.get(&format!("{MIRROR_KEY_PREFIX}{route}")).await {
            if let Some(stats) = MirrorStats::parse(&t) {
                out.push((route.to_string(), stats));
            }
        }
    }
    out
}

/// Adds the due sums to the shared aggregates (read, add, write). Concurrent
/// isolates can lose each other's additions in the same second: the
/// aggregates are statistics, not accounts.
pub async fn flush<S: StateStore>(
    ledger: &std::cell::RefCell<MirrorLedger>,
    store: &S,
    now: u64,
    interval_ms: u64,
    ttl_s: u64,
) -> (Vec<String>, Vec<String>) {
    let due = ledger.borrow_mut().take_due(now, interval_ms);
    let mut written = Vec::new();
    let mut errors = Vec::new();
    for (route, delta) in due {
        let key = format!("{MIRROR_KEY_PREFIX}{route}");
        let mut total = match store.get(&key).await {
            Ok(t) => t.and_then(|t| MirrorStats::parse(&t)).unwrap_or_default(),
            Err(e) => {
                errors.push(format!("{route}: {e}"));
                ledger.borrow_mut().give_back(route, delta);
                continue;
            }
        };
        total.merge(&delta);
        match store.put(&key, serde_json::to_string(&total).unwrap_or_default(), ttl_s).await {
            Ok(()) => written.push(key),
            Err(e) => {
                errors.push(format!("{route}: {e}"));
                ledger.borrow_mut().give_back(route, delta);
            }
        }
    }
    (written, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_at_punctuation_in_any_script() {
        let w = word_counts("Hello, WORLD — hello; 你好，世界。Über");
        assert_eq!(w.get("hello"), Some(&Value::from(2)));
        assert_eq!(w.get("world"), Some(&Value::from(1)));
        assert_eq!(w.get("你好"), Some(&Value::from(1)));
        assert_eq!(w.get("世界"), Some(&Value::from(1)));
        assert_eq!(w.get("Über"), Some(&Value::from(1)));
        assert_eq!(w.len(), 5);
    }

    fn completion() -> ChatCompletion {
        ChatCompletion {
            id: "c".into(),
            object: "chat.completion".into(),
            created: 1,
            model: "m".into(),
            choices: vec![],
            usage: None,
            system_fingerprint: None,
        }
    }

    fn answer(text: &str, latency: u64) -> Answer {
        Answer {
            provider: "p".into(),
            model: "m".into(),
            text: text.into(),
            tool_calls: Some(vec![]),
            finish_reason: Some("stop".into()),
            usage: Some(Usage { prompt_tokens: 10, completion_tokens: 20, total_tokens: 30, ..Default::default() }),
            latency_ms: latency,
            cost: Some(0.001),
        }
    }

    #[test]
    fn identical_answers_agree_whatever_the_whitespace() {
        let c = compare(&answer("Paris is  the capital.\n", 10), &answer(" Paris is the capital.", 20));
        assert!(c.agree);
        assert!((c.similarity - 1.0).abs() < 1e-9);
        assert_eq!(c.tools_agree, Some(true));
    }

    #[test]
    fn divergent_answers_are_reported_as_such() {
        let c = compare(&answer("Paris is the capital of France.", 10), &answer("Lyon is a city in France.", 20));
        assert!(!c.agree);
        assert!(c.similarity > 0.2 && c.similarity < 0.7, "{}", c.similarity);
        let c = compare(&answer("yes", 1), &answer("no", 1));
        assert_eq!(c.similarity, 0.0);
    }

    #[test]
    fn similarity_is_symmetric_and_ignores_case_and_order() {
        assert!((similarity("The cat sat", "sat the CAT") - 1.0).abs() < 1e-9);
        let (a, b) = ("one two three four", "two four six");
        assert!((similarity(a, b) - similarity(b, a)).abs() < 1e-12);
        assert_eq!(similarity("", ""), 1.0);
        assert_eq!(similarity("word", ""), 0.0);
    }

    #[test]
    fn tool_calls_compare_arguments_as_json() {
        let mut a = answer("", 1);
        let mut b = answer("", 1);
        a.tool_calls = Some(vec![("get_weather".into(), r#"{"city":"Paris","unit":"c"}"#.into())]);
        b.tool_calls = Some(vec![("get_weather".into(), r#"{"unit": "c", "city": "Paris"}"#.into())]);
        assert_eq!(compare(&a, &b).tool_calls_agree(), Some(true));
        b.tool_calls = Some(vec![("get_weather".into(), r#"{"city":"Lyon"}"#.into())]);
        assert_eq!(compare(&a, &b).tool_calls_agree(), Some(false));
        assert!(!compare(&a, &b).agree);
    }

    impl Comparison {
        fn tool_calls_agree(&self) -> Option<bool> {
            self.tools_agree
        }
    }

    #[test]
    fn stats_add_and_merge() {
        let mut s = MirrorStats::default();
        let p = answer("a b c", 100);
        s.add(
            &p,
            &MirrorResult::Answered { answer: answer("a b c", 300), completion: completion(), body: String::new() },
            5,
        );
        s.add(
            &p,
            &MirrorResult::Answered { answer: answer("x y z", 200), completion: completion(), body: String::new() },
            6,
        );
        s.add(&p, &MirrorResult::Failed { kind: ErrorKind::Timeout, latency_ms: 9 }, 7);
        assert_eq!((s.pairs, s.agreed, s.mirror_failures), (2, 1, 1));
        let sum = s.summary();
        assert_eq!(sum["agreement_rate"], 0.5);
        assert_eq!(sum["mean_latency_diff_ms"], 150.0);
        let mut t = s.clone();
        t.merge(&s);
        assert_eq!(t.pairs, 4);
    }

    #[test]
    fn the_ledger_writes_each_route_at_most_once_per_interval() {
        use crate::store::MemoryStore;
        use futures_executor::block_on;
        let store = MemoryStore::default();
        let ledger = std::cell::RefCell::new(MirrorLedger::default());
        let p = answer("a", 1);
        let m = MirrorResult::Answered { answer: answer("a", 2), completion: completion(), body: String::new() };
        for i in 0..100u64 {
            ledger.borrow_mut().add("chat", &p, &m, i * 100);
            block_on(flush(&ledger, &store, i * 100, 5_000, 3600));
        }
        // 10 s of pairs, one write per 5 s.
        assert_eq!(store.writes.get(), 2);
        ledger.borrow_mut().add("chat", &p, &m, 20_000);
        block_on(flush(&ledger, &store, 20_000, 5_000, 3600));
        let total = MirrorStats::parse(&store.data.borrow()["sy:v1:m:chat"]).unwrap();
        // What is written reads back whole; a copy missing a sum is none.
        assert_eq!(MirrorStats::parse(&serde_json::to_string(&total).unwrap()).as_ref(), Some(&total));
        assert!(MirrorStats::parse(r#"{"pairs":1,"agreed":1}"#).is_none());
        assert_eq!(total.pairs, 101 - ledger.borrow().pending("chat").map_or(0, |s| s.pairs));
        assert_eq!(total.agreed, total.pairs);
        let shared = block_on(read_shared(&store, &["chat", "other"]));
        assert_eq!(shared.len(), 1);
        assert_eq!(shared[0].1, total);
    }

    /// A store whose writes fail while `down` is set.
    #[derive(Default)]
    struct FlakyStore {
        inner: crate::store::MemoryStore,
        down: std::cell::Cell<bool>,
    }

    impl StateStore for FlakyStore {
        async fn get(&self, key: &str) -> Result<Option<String>, String> {
            self.inner.get(key).await
        }
        async fn put(&self, key: &str, value: String, ttl_s: u64) -> Result<(), String> {
            if self.down.get() {
                return Err("down".into());
            }
            self.inner.put(key, value, ttl_s).await
        }
    }

    #[test]
    fn routes_keep_their_own_write_slots_and_a_failed_write_loses_no_pair() {
        use futures_executor::block_on;
        let store = FlakyStore::default();
        let ledger = std::cell::RefCell::new(MirrorLedger::default());
        let p = answer("a", 1);
        let m = MirrorResult::Answered { answer: answer("a", 2), completion: completion(), body: String::new() };
        let shared = |route: &str| {
            store.inner.data.borrow().get(&format!("{MIRROR_KEY_PREFIX}{route}")).and_then(|t| MirrorStats::parse(t))
        };
        ledger.borrow_mut().add("chat", &p, &m, 0);
        let (written, _) = block_on(flush(&ledger, &store, 0, 5_000, 3600));
        assert_eq!(written, ["sy:v1:m:chat"]);
        // A second route writes at once; the first waits for its slot.
        ledger.borrow_mut().add("code", &p, &m, 1_000);
        ledger.borrow_mut().add("chat", &p, &m, 1_000);
        let (written, _) = block_on(flush(&ledger, &store, 1_000, 5_000, 3600));
        assert_eq!(written, ["sy:v1:m:code"]);
        assert_eq!(ledger.borrow().pending("chat").map(|s| s.pairs), Some(1));
        // The store is down when chat's slot comes: its pairs are kept, with
        // those that arrive meanwhile, and written whole at the next slot.
        store.down.set(true);
        let (written, errors) = block_on(flush(&ledger, &store, 6_000, 5_000, 3600));
        assert!(written.is_empty() && errors.len() == 1, "{errors:?}");
        ledger.borrow_mut().add("chat", &p, &m, 7_000);
        assert_eq!(ledger.borrow().pending("chat").map(|s| s.pairs), Some(2));
        store.down.set(false);
        block_on(flush(&ledger, &store, 11_000, 5_000, 3600));
        assert_eq!(shared("chat").map(|s| s.pairs), Some(3));
        assert_eq!(shared("code").map(|s| s.pairs), Some(1));
        assert_eq!(ledger.borrow().pending("chat"), None);
    }
}
