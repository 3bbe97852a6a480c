//! What an answer used and what it cost: the token counts a provider
//! reported (already in OpenAI's shape, whatever the provider's format) and
//! their price under the serving target's configured `cost`.
//!
//! Prompt tokens include cached ones (OpenAI counts them in `prompt_tokens`;
//! the Anthropic decoder adds `cache_read_input_tokens` and
//! `cache_creation_input_tokens` to the prompt, and Cohere's `cached_tokens`
//! are part of its input). Cached tokens are priced at the cached price when
//! one is configured, else at the input price; cache writes at the input
//! price. Reasoning tokens are part of the completion and priced with it.

use crate::api::Usage;
use crate::config::Cost;
use serde_json::Value;

/// Cached prompt tokens, where reported.
pub fn cached_tokens(u: &Usage) -> u64 {
    u.prompt_tokens_details.as_ref().map_or(0, |d| d.cached_tokens).min(u.prompt_tokens)
}

/// Reasoning tokens, where reported.
pub fn reasoning_tokens(u: &Usage) -> u64 {
    u.completion_tokens_details.as_ref().map_or(0, |d| d.reasoning_tokens)
}

/// Whether a target has any price configured (a cost figure means something).
pub fn priced(c: &Cost) -> bool {
    c.input > 0.0 || c.output > 0.0 || c.cached.is_some_and(|p| p > 0.0)
}

/// The answer's cost in US dollars (prices are per million tokens).
pub fn cost_usd(u: &Usage, c: &Cost) -> f64 {
    let cached = cached_tokens(u);
    let fresh = u.prompt_tokens - cached;
    let cached_price = c.cached.unwrap_or(c.input);
    (fresh as f64 * c.input + cached as f64 * cached_price + u.completion_tokens as f64 * c.output) / 1_000_000.0
}

/// The usage as the log line carries it.
pub fn to_json(u: &Usage) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("prompt_tokens".into(), Value::from(u.prompt_tokens));
    m.insert("completion_tokens".into(), Value::from(u.completion_tokens));
    if u.prompt_tokens_details.is_some() {
        m.insert("cached_tokens".into(), Value::from(cached_tokens(u)));
    }
    if u.completion_tokens_details.is_some() {
        m.insert("reasoning_tokens".into(), Value::from(reasoning_tokens(u)));
    }
    Value::Object(m)
}

/// A cost as header text: dollars with up to ten decimals, no exponent.
pub fn header(cost: f64) -> String {
    let s = format!("{cost:.10}");
    let s = s.trim_end_matches('0');
    s.strip_suffix('.').unwrap_or(s).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{parse_chat, Format};
    use serde_json::json;

    fn price(input: f64, output: f64, cached: Option<f64>) -> Cost {
        Cost { input, output, cached }
    }

    fn usage_of(format: Format, body: &str) -> Usage {
        parse_chat(format, body, 0).unwrap().usage.unwrap()
    }

    #[test]
    fn openai_usage_with_cached_and_reasoning_tokens() {
        let body = r#"{"id":"x","object":"chat.completion","created":0,"model":"gpt-4o",
            "choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500,
            "prompt_tokens_details":{"cached_tokens":400},"completion_tokens_details":{"reasoning_tokens":200}}}"#;
        let u = usage_of(Format::OpenAi, body);
        assert_eq!((cached_tokens(&u), reasoning_tokens(&u)), (400, 200));
        // 600 fresh at 2.5, 400 cached at 1.25, 500 out at 10 (reasoning included).
        let c = cost_usd(&u, &price(2.5, 10.0, Some(1.25)));
        assert!((c - (600.0 * 2.5 + 400.0 * 1.25 + 500.0 * 10.0) / 1e6).abs() < 1e-12, "{c}");
        // Without a cached price, cached tokens cost the input price.
        let c = cost_usd(&u, &price(2.5, 10.0, None));
        assert!((c - (1000.0 * 2.5 + 500.0 * 10.0) / 1e6).abs() < 1e-12, "{c}");
        assert_eq!(
            to_json(&u),
            json!({"prompt_tokens":1000,"completion_tokens":500,"cached_tokens":400,"reasoning_tokens":200})
        );
    }

    #[test]
    fn anthropic_cache_reads_are_cached_and_cache_writes_are_input() {
        let body = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5",
            "content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn",
            "usage":{"input_tokens":10,"cache_creation_input_tokens":100,"cache_read_input_tokens":1000,"output_tokens":50}}"#;
        let u = usage_of(Format::Anthropic, body);
        assert_eq!(u.prompt_tokens, 1110);
        assert_eq!(cached_tokens(&u), 1000);
        let c = cost_usd(&u, &price(3.0, 15.0, Some(0.3)));
        let want = (110.0 * 3.0 + 1000.0 * 0.3 + 50.0 * 15.0) / 1e6;
        assert!((c - want).abs() < 1e-12, "{c} vs {want}");
    }

    #[test]
    fn cohere_billed_units_and_cached_tokens() {
        let body = r#"{"id":"c1","finish_reason":"COMPLETE","message":{"role":"assistant","content":[{"type":"text","text":"hi"}]},
            "usage":{"billed_units":{"input_tokens":200,"output_tokens":30},"tokens":{"input_tokens":200,"output_tokens":30},"cached_tokens":50}}"#;
        let u = usage_of(Format::Cohere, body);
        assert_eq!((u.prompt_tokens, u.completion_tokens, cached_tokens(&u)), (200, 30, 50));
        let c = cost_usd(&u, &price(2.5, 10.0, Some(0.5)));
        assert!((c - (150.0 * 2.5 + 50.0 * 0.5 + 30.0 * 10.0) / 1e6).abs() < 1e-12, "{c}");
    }

    #[test]
    fn unpriced_targets_and_odd_counts() {
        assert!(!priced(&Cost::default()));
        assert!(priced(&price(0.0, 0.1, None)));
        // A provider claiming more cached tokens than the prompt never goes negative.
        let mut u = Usage { prompt_tokens: 10, completion_tokens: 0, ..Default::default() };
        u.prompt_tokens_details = Some(crate::api::PromptTokensDetails { cached_tokens: 99 });
        assert_eq!(cached_tokens(&u), 10);
        assert_eq!(cost_usd(&u, &price(1.0, 1.0, Some(0.0))), 0.0);
        assert_eq!(header(0.000_012_3), "0.0000123");
        assert_eq!(header(1.5), "1.5");
        assert_eq!(header(0.0), "0");
    }
}
