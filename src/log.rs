//! The structured log line: one JSON object per request, built once and
//! written once. No secrets, and no prompt text unless the operator asks.

use crate::api::Usage;
use crate::config::RequestLogs;
use crate::record::{Answer, AttemptRecord, Outcome};
use serde_json::{Map, Value};

/// Whether `log` gets its line under the `log_requests` setting.
pub fn wanted(setting: RequestLogs, log: &RequestLog) -> bool {
    match setting {
        RequestLogs::All => true,
        RequestLogs::Off => false,
        RequestLogs::Errors => {
            !matches!(log.outcome, Some(Outcome::Ok) | None)
                || log.status >= 400
                || log.attempts.iter().any(|a| a.kind.is_some())
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct RequestLog {
    pub request_id: String,
    pub method: String,
    pub path: String,
    pub route: Option<String>,
    pub status: u16,
    /// How the request ended; `None` until a handler says.
    pub outcome: Option<Outcome>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub attempts: Vec<AttemptRecord>,
    pub usage: Option<Usage>,
    /// The answer's cost under the serving target's prices (priced targets only).
    pub cost_usd: Option<f64>,
    pub latency_ms: u64,
    /// Streams: when the first token reached the client, from the start.
    pub first_token_ms: Option<u64>,
    /// The client error's message, for 4xx answers the gateway gave itself.
    pub error: Option<String>,
    /// Every target's circuit was open (or its health down) and they were
    /// tried anyway.
    pub forced: bool,
    pub stream: bool,
    /// When the request started (clock time), for stream latencies.
    pub started_ms: u64,
    /// Who called (checked before the handler; scopes are enforced on it).
    pub caller: Option<crate::keys::Caller>,
    /// The request was mirrored.
    pub mirrored: bool,
    /// The primary's answer, for the mirror comparison (never logged).
    pub answer: Option<Answer>,
    /// Chunks relayed to the client (streams only).
    pub stream_chunks: Option<u32>,
    /// Malformed upstream events skipped (streams only).
    pub stream_malformed: u32,
    /// Targets that continued a broken stream.
    pub continued_on: Vec<String>,
    /// Hosted tools left out because the serving target cannot run them.
    pub dropped_tools: Option<String>,
    /// Set only when `log_prompts` is on.
    pub prompt: Option<String>,
}

pub fn attempts_json(attempts: &[AttemptRecord], with_messages: bool) -> Value {
    Value::Array(
        attempts
            .iter()
            .map(|a| {
                let mut m = Map::new();
                m.insert("target".into(), Value::from(a.target.as_str()));
                m.insert("provider".into(), Value::from(a.provider.as_str()));
                m.insert("model".into(), Value::from(a.model.as_str()));
                m.insert("status".into(), Value::from(a.status));
                m.insert("outcome".into(), Value::from(a.kind.map_or("ok", |k| k.as_str())));
                m.insert("latency_ms".into(), Value::from(a.latency_ms));
                if with_messages {
                    if let Some(msg) = &a.message {
                        m.insert("message".into(), Value::from(msg.as_str()));
                    }
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// A JSON object written field by field into one string: the log line is
/// built once per request, so it skips the intermediate JSON tree (a map of
/// values, then printed) and the code a derived serialiser would add.
struct JsonObject {
    out: String,
}

impl JsonObject {
    fn new(capacity: usize) -> JsonObject {
        let mut out = String::with_capacity(capacity);
        out.push('{');
        JsonObject { out }
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        crate::inbound::push_json_str(&mut self.out, value);
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    fn num(&mut self, key: &str, value: u64) {
        use std::fmt::Write;
        self.key(key);
        let _ = write!(self.out, "{value}");
    }

    fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.out.push_str(json);
    }

    fn end(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

impl RequestLog {
    pub fn to_line(&self) -> String {
        let level = match self.status {
            500.. => "error",
            400.. => "warn",
            _ => "info",
        };
        let mut o = JsonObject::new(384);
        o.str("level", level);
        o.str("msg", "request");
        o.str("request_id", &self.request_id);
        o.str("method", &self.method);
        o.str("path", &self.path);
        o.opt_str("caller", self.caller.as_ref().map(|c| c.name()));
        o.opt_str("route", self.route.as_deref());
        o.num("status", u64::from(self.status));
        o.str("outcome", self.outcome.map_or("", Outcome::as_str));
        o.opt_str("provider", self.provider.as_deref());
        o.opt_str("model", self.model.as_deref());
        if !self.attempts.is_empty() {
            let mut list = String::from("[");
            for (i, a) in self.attempts.iter().enumerate() {
                if i > 0 {
                    list.push(',');
                }
                let mut e = JsonObject::new(96);
                e.str("target", &a.target);
                e.str("provider", &a.provider);
                e.str("model", &a.model);
                match a.status {
                    Some(s) => e.num("status", u64::from(s)),
                    None => e.raw("status", "null"),
                }
                e.str("outcome", a.kind.map_or("ok", |k| k.as_str()));
                e.num("latency_ms", a.latency_ms);
                list.push_str(&e.end());
            }
            list.push(']');
            o.raw("attempts", &list);
        }
        if self.attempts.iter().any(|a| a.kind.is_some_and(|k| k.is_misconfiguration())) {
            o.str("alert", "a provider key or model is misconfigured: see attempts");
        }
        if self.stream {
            o.raw("stream", "true");
        }
        if self.mirrored {
            o.raw("mirrored", "true");
        }
        if let Some(c) = self.stream_chunks {
            o.num("chunks", u64::from(c));
        }
        if self.stream_malformed > 0 {
            o.num("malformed_chunks", u64::from(self.stream_malformed));
        }
        o.opt_str("dropped_tools", self.dropped_tools.as_deref());
        if !self.continued_on.is_empty() {
            o.raw("continued_on", &serde_json::to_string(&self.continued_on).unwrap_or_default());
        }
        if self.forced {
            o.str("forced", "every target was unavailable (circuit open or down); tried anyway");
        }
        if let Some(u) = &self.usage {
            let mut e = JsonObject::new(96);
            e.num("prompt_tokens", u.prompt_tokens);
            e.num("completion_tokens", u.completion_tokens);
            if u.prompt_tokens_details.is_some() {
                e.num("cached_tokens", crate::usage::cached_tokens(u));
            }
            if u.completion_tokens_details.is_some() {
                e.num("reasoning_tokens", crate::usage::reasoning_tokens(u));
            }
            o.raw("usage", &e.end());
        }
        // JSON has no NaN or infinity: such a cost is left out.
        if let Some(c) = self.cost_usd.filter(|c| c.is_finite()) {
            o.raw("cost_usd", &serde_json::to_string(&c).unwrap_or_else(|_| "null".to_owned()));
        }
        o.num("latency_ms", self.latency_ms);
        if let Some(t) = self.first_token_ms {
            o.num("first_token_ms", t);
        }
        o.opt_str("error", self.error.as_deref());
        o.opt_str("prompt", self.prompt.as_deref());
        o.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_logs_keep_what_the_setting_asks_for() {
        use crate::taxonomy::ErrorKind;
        let ok = RequestLog { status: 200, outcome: Some(Outcome::Ok), ..Default::default() };
        let attempt = |kind| AttemptRecord {
            target: "a".into(),
            provider: "a".into(),
            model: "m".into(),
            status: None,
            kind,
            latency_ms: 1,
            message: None,
        };
        let failed_over = RequestLog { attempts: vec![attempt(Some(ErrorKind::Server)), attempt(None)], ..ok.clone() };
        let refused = RequestLog { status: 401, outcome: Some(Outcome::Unauthorized), ..Default::default() };
        let broken = RequestLog { status: 200, outcome: Some(Outcome::StreamFailed), ..Default::default() };
        for (mode, expect) in [
            (RequestLogs::All, [true, true, true, true]),
            (RequestLogs::Errors, [false, true, true, true]),
            (RequestLogs::Off, [false, false, false, false]),
        ] {
            let got = [&ok, &failed_over, &refused, &broken].map(|l| wanted(mode, l));
            assert_eq!(got, expect, "{mode:?}");
        }
        assert_eq!(RequestLogs::parse("errors"), Some(RequestLogs::Errors));
        assert_eq!(RequestLogs::parse("some"), None);
    }

    #[test]
    fn the_line_is_one_json_object_with_the_fields_set_and_no_others() {
        use crate::taxonomy::ErrorKind;
        let attempt = |target: &str, kind: Option<ErrorKind>, message: Option<&str>| AttemptRecord {
            target: target.into(),
            provider: target.into(),
            model: "m".into(),
            status: kind.map(|_| 503),
            kind,
            latency_ms: 7,
            message: message.map(str::to_owned),
        };
        let log = RequestLog {
            request_id: "sy-1".into(),
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            route: Some("fast".into()),
            status: 200,
            outcome: Some(Outcome::Ok),
            provider: Some("b".into()),
            attempts: vec![attempt("a", Some(ErrorKind::Server), Some("overloaded")), attempt("b", None, None)],
            usage: Some(Usage { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7, ..Default::default() }),
            cost_usd: Some(f64::NAN),
            latency_ms: 12,
            stream: true,
            stream_chunks: Some(9),
            ..Default::default()
        };
        let line: Value = serde_json::from_str(&log.to_line()).expect("the line is JSON");
        assert_eq!(
            line,
            serde_json::json!({
                "level": "info", "msg": "request", "request_id": "sy-1", "method": "POST",
                "path": "/v1/chat/completions", "route": "fast", "status": 200, "outcome": "ok",
                "provider": "b",
                // A provider's message goes to the client's error body, never the log.
                "attempts": [
                    {"target": "a", "provider": "a", "model": "m", "status": 503, "outcome": "server_error", "latency_ms": 7},
                    {"target": "b", "provider": "b", "model": "m", "status": null, "outcome": "ok", "latency_ms": 7}
                ],
                "stream": true, "chunks": 9,
                "usage": {"prompt_tokens": 3, "completion_tokens": 4},
                "latency_ms": 12
            })
        );
        let with_messages = attempts_json(&log.attempts, true);
        assert_eq!(with_messages[0]["message"], "overloaded");
        assert!(with_messages[1].get("message").is_none());
        let failed = RequestLog { status: 502, error: Some("a \"quoted\"\nline \u{1}".into()), ..log };
        let line = failed.to_line();
        assert!(line.starts_with(r#"{"level":"error","msg":"request""#), "{line}");
        assert!(!line.contains('\n'), "one line: {line}");
        let parsed: Value = serde_json::from_str(&line).expect("still JSON");
        assert_eq!(parsed["error"], "a \"quoted\"\nline \u{1}");
    }
}
