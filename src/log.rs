//! The structured log line: one JSON object per request, built once and
//! written once. No secrets, and no prompt text unless the operator asks.

use crate::api::Usage;
use crate::config::RequestLogs;
use crate::record::{Answer, AttemptRecord, Outcome};
use serde_json::{json, Map, Value};

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
                m.insert("target".into(), json!(a.target));
                m.insert("provider".into(), json!(a.provider));
                m.insert("model".into(), json!(a.model));
                m.insert("status".into(), json!(a.status));
                m.insert("outcome".into(), json!(a.kind.map_or("ok", |k| k.as_str())));
                m.insert("latency_ms".into(), json!(a.latency_ms));
                if with_messages {
                    if let Some(msg) = &a.message {
                        m.insert("message".into(), json!(msg));
                    }
                }
                Value::Object(m)
            })
            .collect(),
    )
}

impl RequestLog {
    pub fn to_line(&self) -> String {
        let mut m = Map::new();
        m.insert(
            "level".into(),
            json!(if self.status >= 500 {
                "error"
            } else if self.status >= 400 {
                "warn"
            } else {
                "info"
            }),
        );
        m.insert("msg".into(), json!("request"));
        m.insert("request_id".into(), json!(self.request_id));
        m.insert("method".into(), json!(self.method));
        m.insert("path".into(), json!(self.path));
        if let Some(c) = &self.caller {
            m.insert("caller".into(), json!(c.name()));
        }
        if let Some(r) = &self.route {
            m.insert("route".into(), json!(r));
        }
        m.insert("status".into(), json!(self.status));
        m.insert("outcome".into(), json!(self.outcome.map_or("", Outcome::as_str)));
        if let Some(p) = &self.provider {
            m.insert("provider".into(), json!(p));
        }
        if let Some(p) = &self.model {
            m.insert("model".into(), json!(p));
        }
        if !self.attempts.is_empty() {
            m.insert("attempts".into(), attempts_json(&self.attempts, false));
        }
        if self.attempts.iter().any(|a| a.kind.is_some_and(|k| k.is_misconfiguration())) {
            m.insert("alert".into(), json!("a provider key or model is misconfigured: see attempts"));
        }
        if self.stream {
            m.insert("stream".into(), json!(true));
        }
        if self.mirrored {
            m.insert("mirrored".into(), json!(true));
        }
        if let Some(c) = self.stream_chunks {
            m.insert("chunks".into(), json!(c));
        }
        if self.stream_malformed > 0 {
            m.insert("malformed_chunks".into(), json!(self.stream_malformed));
        }
        if let Some(d) = &self.dropped_tools {
            m.insert("dropped_tools".into(), json!(d));
        }
        if !self.continued_on.is_empty() {
            m.insert("continued_on".into(), json!(self.continued_on));
        }
        if self.forced {
            m.insert("forced".into(), json!("every target was unavailable (circuit open or down); tried anyway"));
        }
        if let Some(u) = &self.usage {
            m.insert("usage".into(), crate::usage::to_json(u));
        }
        if let Some(c) = self.cost_usd {
            m.insert("cost_usd".into(), json!(c));
        }
        m.insert("latency_ms".into(), json!(self.latency_ms));
        if let Some(t) = self.first_token_ms {
            m.insert("first_token_ms".into(), json!(t));
        }
        if let Some(e) = &self.error {
            m.insert("error".into(), json!(e));
        }
        if let Some(p) = &self.prompt {
            m.insert("prompt".into(), json!(p));
        }
        Value::Object(m).to_string()
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
}
