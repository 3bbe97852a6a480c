//! The Workers Analytics Engine data point written for each answer (the
//! edge writes it when the `ANALYTICS` dataset is bound). Its column layout
//! is what the SQL in the README reads:
//!
//! | column | value |
//! |---|---|
//! | `index1` | route |
//! | `blob1`..`blob6` | route, provider, model, gateway key name, outcome, attempts (as text) |
//! | `double1`..`double5` | latency ms, time to first token ms (0 if not a stream), prompt tokens, completion tokens, cost USD |

use crate::log::RequestLog;
use crate::record::Outcome;

/// The dataset binding's name in wrangler.toml.
pub const BINDING: &str = "ANALYTICS";

#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub index: String,
    pub blobs: [String; 6],
    pub doubles: [f64; 5],
}

/// The point for a finished request: chat answers only (those with a route).
pub fn point(log: &RequestLog) -> Option<Point> {
    let route = log.route.clone()?;
    let usage = log.usage.as_ref();
    Some(Point {
        index: route.clone(),
        blobs: [
            route,
            log.provider.clone().unwrap_or_default(),
            log.model.clone().unwrap_or_default(),
            log.caller.as_ref().map(|c| c.name().to_owned()).unwrap_or_default(),
            log.outcome.map_or("", Outcome::as_str).to_owned(),
            log.attempts.len().to_string(),
        ],
        doubles: [
            log.latency_ms as f64,
            log.first_token_ms.unwrap_or(0) as f64,
            usage.map_or(0, |u| u.prompt_tokens) as f64,
            usage.map_or(0, |u| u.completion_tokens) as f64,
            log.cost_usd.unwrap_or(0.0),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Usage;

    #[test]
    fn a_point_per_answer_with_the_documented_columns() {
        assert_eq!(point(&RequestLog::default()), None, "not a chat request");
        let log = RequestLog {
            route: Some("chat".into()),
            provider: Some("openai".into()),
            model: Some("gpt-4o-mini".into()),
            outcome: Some(Outcome::Ok),
            latency_ms: 420,
            first_token_ms: Some(90),
            usage: Some(Usage { prompt_tokens: 12, completion_tokens: 7, ..Default::default() }),
            cost_usd: Some(0.25),
            ..Default::default()
        };
        let p = point(&log).unwrap();
        assert_eq!(p.index, "chat");
        assert_eq!(p.blobs, ["chat", "openai", "gpt-4o-mini", "", "ok", "0"].map(String::from));
        assert_eq!(p.doubles, [420.0, 90.0, 12.0, 7.0, 0.25]);
    }
}
