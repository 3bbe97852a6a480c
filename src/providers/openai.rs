//! OpenAI Chat Completions, and any OpenAI-compatible host (Groq, Together,
//! Mistral, vLLM, Ollama...) addressed by its base URL.
//!
//! The client already speaks this format, so the request goes out as the
//! client sent it, with `model` replaced by the target's upstream model and the
//! gateway's own options removed; unknown fields pass through.

use super::{clip, request_headers, Outbound};
use crate::api::{ApiError, ChatCompletion, ChatRequest};
use crate::taxonomy::{looks_like_content_policy, looks_like_context_length, ErrorKind, UpstreamError};
use crate::upstream::UpstreamRequest;
use serde::Deserialize;

pub fn build_request(out: &Outbound, req: &ChatRequest) -> Result<UpstreamRequest, ApiError> {
    let headers = request_headers(out);
    let body = body_for(req, out.model)?;
    Ok(UpstreamRequest {
        method: "POST",
        url: format!("{}/chat/completions", out.provider.base_url),
        headers,
        body: Some(body),
    })
}

/// The request body with `model` set to the upstream model. `switchyard`
/// options are never serialised (see `ChatRequest::gateway`).
fn body_for(req: &ChatRequest, model: &str) -> Result<String, ApiError> {
    let mut v = serde_json::to_value(req).map_err(|e| {
        ApiError::new(
            500,
            "server_error",
            format!("could not encode the upstream request: {e}"),
        )
    })?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("model".to_owned(), serde_json::Value::String(model.to_owned()));
    }
    Ok(v.to_string())
}

pub fn parse_response(body: &str) -> Result<ChatCompletion, String> {
    let c: ChatCompletion = serde_json::from_str(body).map_err(|e| format!("not a chat.completion: {e}"))?;
    if c.choices.is_empty() {
        return Err("the response has no choices".to_owned());
    }
    Ok(c)
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

pub fn classify_error(status: u16, body: &str) -> UpstreamError {
    let parsed: Option<ErrorDetail> = serde_json::from_str::<ErrorBody>(body).ok().map(|b| b.error);
    let message = parsed
        .as_ref()
        .and_then(|d| d.message.clone())
        .unwrap_or_else(|| format!("upstream answered HTTP {status}"));
    let code = parsed
        .as_ref()
        .and_then(|d| d.code.as_ref())
        .and_then(|c| c.as_str().map(str::to_owned))
        .unwrap_or_default();
    let kind_field = parsed.as_ref().and_then(|d| d.kind.clone()).unwrap_or_default();
    let mut kind = ErrorKind::from_status(status);
    if (400..500).contains(&status) && status != 429 && status != 401 && status != 403 && status != 404 {
        if code == "context_length_exceeded" || looks_like_context_length(&message) {
            kind = ErrorKind::ContextLength;
        } else if code == "content_policy_violation"
            || code == "content_filter"
            || kind_field == "content_filter"
            || looks_like_content_policy(&message)
        {
            kind = ErrorKind::ContentPolicy;
        }
    }
    if status == 404 && code != "model_not_found" && !message.to_ascii_lowercase().contains("model") {
        // A 404 that is not about the model means a wrong base URL: still the operator's to fix.
        kind = ErrorKind::NotFound;
    }
    UpstreamError::new(kind, clip(&message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::Value;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/openai/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }
    fn envelope(name: &str) -> (u16, String) {
        let v: Value = serde_json::from_str(&fixture(name)).unwrap();
        (v["status"].as_u64().unwrap() as u16, v["body"].to_string())
    }
    fn config() -> Config {
        Config::from_json(
            r#"{"providers":{"oa":{"format":"openai","base_url":"https://api.example.com/v1","key_secret":"K"}},
                "routes":{"chat":{"targets":[{"provider":"oa","model":"gpt-4o-mini"}]}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn request_swaps_model_and_keeps_every_other_field() {
        let cfg = config();
        let req = ChatRequest::parse(fixture("chat_request.json").replace("gpt-4o-mini", "chat").as_bytes()).unwrap();
        let out = Outbound {
            provider: &cfg.providers[0],
            model: "gpt-4o-mini-2024-07-18",
            api_key: Some("sk-test"),
        };
        let r = build_request(&out, &req).unwrap();
        assert_eq!(r.url, "https://api.example.com/v1/chat/completions");
        assert!(r.headers.contains(&("authorization".into(), "Bearer sk-test".into())));
        let sent: Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
        let mut expected: Value = serde_json::from_str(&fixture("chat_request.json")).unwrap();
        expected["model"] = "gpt-4o-mini-2024-07-18".into();
        // Numbers are re-encoded as floats: `1` becomes `1.0`, the same JSON number.
        expected["top_p"] = 1.0.into();
        assert_eq!(sent, expected);
    }

    #[test]
    fn parses_responses() {
        let c = parse_response(&fixture("chat_response.json")).unwrap();
        assert_eq!(c.model, "gpt-4o-mini-2024-07-18");
        assert_eq!(c.usage.as_ref().unwrap().total_tokens, 29);
        let c = parse_response(&fixture("chat_response_tool_calls.json")).unwrap();
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(
            c.choices[0].message.tool_calls.as_ref().unwrap()[0].function.name,
            "get_current_weather"
        );
        assert!(parse_response("{\"id\":1}").is_err());
        assert!(parse_response("<html>").is_err());
    }

    #[test]
    fn classifies_recorded_errors() {
        let cases = [
            ("error_400_context_length_exceeded.json", ErrorKind::ContextLength),
            ("error_401_invalid_api_key.json", ErrorKind::Auth),
            ("error_429_rate_limit_exceeded.json", ErrorKind::RateLimited),
            ("error_500_server_error.json", ErrorKind::Server),
            ("error_503_overloaded.json", ErrorKind::Overloaded),
        ];
        for (file, kind) in cases {
            let (status, body) = envelope(file);
            assert_eq!(classify_error(status, &body).kind, kind, "{file}");
        }
        let policy = r#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#;
        let e = classify_error(400, policy);
        assert_eq!(e.kind, ErrorKind::ContentPolicy);
        assert!(e.message.contains("safety system"));
        assert_eq!(
            classify_error(400, "{\"error\":{\"message\":\"bad temperature\"}}").kind,
            ErrorKind::BadRequest
        );
        assert_eq!(classify_error(502, "<html>bad gateway</html>").kind, ErrorKind::Server);
    }
}
