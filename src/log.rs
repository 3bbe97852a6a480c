//! The structured log line: one JSON object per request, built once and
//! written once. No secrets, and no prompt text unless the operator asks.

use crate::api::Usage;
use crate::config::RequestLogs;
use crate::record::{Answer, AttemptRecord, Outcome};
use serde::{Serialize, Serializer};
use serde_json::Value;

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

/// The attempts as the log line and error bodies list them.
pub fn attempts_json(attempts: &[AttemptRecord], with_messages: bool) -> Value {
    serde_json::to_value(Attempts { attempts, with_messages }).unwrap_or(Value::Null)
}

/// The attempts, serialised straight from the records.
struct Attempts<'a> {
    attempts: &'a [AttemptRecord],
    with_messages: bool,
}

impl Serialize for Attempts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.attempts.iter().map(|a| AttemptLine {
            target: &a.target,
            provider: &a.provider,
            model: &a.model,
            status: a.status,
            outcome: a.kind.map_or("ok", |k| k.as_str()),
            latency_ms: a.latency_ms,
            message: if self.with_messages { a.message.as_deref() } else { None },
        }))
    }
}

#[derive(Serialize)]
struct AttemptLine<'a> {
    target: &'a str,
    provider: &'a str,
    model: &'a str,
    status: Option<u16>,
    outcome: &'static str,
    latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

/// The log line's fields, borrowed from the request's record and written
/// by one serialiser pass (no intermediate JSON tree).
#[derive(Serialize)]
struct Line<'a> {
    level: &'static str,
    msg: &'static str,
    request_id: &'a str,
    method: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    caller: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    status: u16,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<Attempts<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<&'static str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    mirrored: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    chunks: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    malformed_chunks: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped_tools: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    continued_on: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    forced: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<crate::usage::UsageLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_usd: Option<f64>,
    latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_token_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<&'a str>,
}

impl RequestLog {
    pub fn to_line(&self) -> String {
        let level = match self.status {
            500.. => "error",
            400.. => "warn",
            _ => "info",
        };
        let misconfigured = self.attempts.iter().any(|a| a.kind.is_some_and(|k| k.is_misconfiguration()));
        let line = Line {
            level,
            msg: "request",
            request_id: &self.request_id,
            method: &self.method,
            path: &self.path,
            caller: self.caller.as_ref().map(|c| c.name()),
            route: self.route.as_deref(),
            status: self.status,
            outcome: self.outcome.map_or("", Outcome::as_str),
            provider: self.provider.as_deref(),
            model: self.model.as_deref(),
            attempts: (!self.attempts.is_empty())
                .then_some(Attempts { attempts: &self.attempts, with_messages: false }),
            alert: misconfigured.then_some("a provider key or model is misconfigured: see attempts"),
            stream: self.stream,
            mirrored: self.mirrored,
            chunks: self.stream_chunks,
            malformed_chunks: (self.stream_malformed > 0).then_some(self.stream_malformed),
            dropped_tools: self.dropped_tools.as_deref(),
            continued_on: &self.continued_on,
            forced: self.forced.then_some("every target was unavailable (circuit open or down); tried anyway"),
            usage: self.usage.as_ref().map(crate::usage::UsageLine::of),
            // JSON has no NaN or infinity (the tree this replaced wrote null).
            cost_usd: self.cost_usd.filter(|c| c.is_finite()),
            latency_ms: self.latency_ms,
            first_token_ms: self.first_token_ms,
            error: self.error.as_deref(),
            prompt: self.prompt.as_deref(),
        };
        // Serialising borrowed strings and numbers cannot fail.
        serde_json::to_string(&line).unwrap_or_default()
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
        let failed = RequestLog { status: 502, ..log };
        assert!(failed.to_line().starts_with(r#"{"level":"error","msg":"request""#));
    }
}
