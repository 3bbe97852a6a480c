//! Provider wire formats. One adapter per format, each a pure translation:
//! an OpenAI request out, the provider's response in, and the provider's error
//! bodies classified into the taxonomy. No I/O here.

pub mod anthropic;
pub mod cohere;
pub mod common;
pub mod openai;
pub mod responses;

use crate::api::{ApiError, ChatCompletion, ChatRequest, NativeApi};
pub use crate::config::Format;
use crate::config::{Probe, ProviderConfig};
use crate::event::Decode;
use crate::json::JsonText as _;
use crate::taxonomy::{ErrorKind, UpstreamError};
use crate::upstream::UpstreamRequest;

/// The decoder for a format's stream. `forward`: the client speaks this
/// format, so the upstream's events are forwarded as they are (the facts
/// still read from them). `client_wants_usage`: the client asked for
/// `stream_options.include_usage` (an OpenAI stream's usage chunk is
/// forwarded only then).
pub fn decoder(format: Format, forward: bool, client_wants_usage: bool) -> Box<dyn Decode> {
    match format {
        Format::OpenAi => Box::new(openai::StreamDecoder::new(forward, client_wants_usage)),
        Format::Anthropic => Box::new(anthropic::StreamDecoder::new(forward)),
        Format::Cohere => Box::new(cohere::StreamDecoder::new()),
    }
}

/// What an attempt speaks on the wire: the provider's format, except that a
/// Responses request to a provider that serves Responses goes as Responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Chat,
    Responses,
    Anthropic,
    Cohere,
}

impl Wire {
    /// The wire of a request whose native API is `native` to `provider`.
    pub fn of(provider: &ProviderConfig, native: Option<NativeApi>) -> Wire {
        match provider.format {
            Format::OpenAi if provider.responses && native == Some(NativeApi::Responses) => Wire::Responses,
            Format::OpenAi => Wire::Chat,
            Format::Anthropic => Wire::Anthropic,
            Format::Cohere => Wire::Cohere,
        }
    }

    /// The client API this wire is, if any: its answers pass through.
    pub fn native(self) -> Option<NativeApi> {
        match self {
            Wire::Anthropic => Some(NativeApi::Messages),
            Wire::Responses => Some(NativeApi::Responses),
            Wire::Chat | Wire::Cohere => None,
        }
    }

    /// The decoder for this wire's stream (see [`decoder`]).
    pub fn decoder(self, forward: bool, client_wants_usage: bool) -> Box<dyn Decode> {
        match self {
            Wire::Responses => Box::new(responses::StreamDecoder::new(forward)),
            Wire::Chat => decoder(Format::OpenAi, forward, client_wants_usage),
            Wire::Anthropic => decoder(Format::Anthropic, forward, client_wants_usage),
            Wire::Cohere => decoder(Format::Cohere, forward, client_wants_usage),
        }
    }

    /// Parses a whole 2xx answer in Chat terms (see [`parse_chat`]).
    pub fn parse(self, format: Format, body: &str, now_s: u64) -> Result<ChatCompletion, UpstreamError> {
        match self {
            Wire::Responses => responses::parse_response(body),
            _ => parse_chat(format, body, now_s),
        }
    }
}

/// Where an adapter sends a request: the provider, the upstream model, the key.
#[derive(Debug, Clone, Copy)]
pub struct Outbound<'a> {
    pub provider: &'a ProviderConfig,
    pub model: &'a str,
    pub api_key: Option<&'a str>,
}

/// Builds the chat request for the target's wire format.
pub fn build_chat(out: &Outbound, req: &ChatRequest) -> Result<UpstreamRequest, ApiError> {
    let native = req.native.as_ref().and_then(|n| n.api);
    match out.provider.format {
        Format::OpenAi if Wire::of(out.provider, native) == Wire::Responses => responses::build_request(out, req),
        Format::OpenAi => openai::build_request(out, req),
        Format::Anthropic => anthropic::build_request(out, req),
        Format::Cohere => cohere::build_request(out, req),
    }
}

/// Parses a successful (2xx) chat response into an OpenAI `chat.completion`.
/// `now_s` fills `created` where the provider gives no timestamp. An answer
/// that cannot be read is `Malformed`; an OpenAI-format 2xx that carries an
/// error object is classified as that error.
pub fn parse_chat(format: Format, body: &str, now_s: u64) -> Result<ChatCompletion, UpstreamError> {
    let malformed = |m: String| UpstreamError::new(ErrorKind::Malformed, m);
    match format {
        Format::OpenAi => openai::parse_response(body),
        Format::Anthropic => anthropic::parse_response(body, now_s).map_err(malformed),
        Format::Cohere => cohere::parse_response(body, now_s).map_err(malformed),
    }
}

/// Classifies a non-2xx response.
pub fn classify_error(format: Format, status: u16, body: &str) -> UpstreamError {
    match format {
        Format::OpenAi => openai::classify_error(status, body),
        Format::Anthropic => anthropic::classify_error(status, body),
        Format::Cohere => cohere::classify_error(status, body),
    }
}

/// Headers of every request to this provider: content type, the configured
/// extra headers, and the key in its header (`key_header`: the format's own
/// unless configured; `authorization` carries it as `Bearer <key>`).
pub fn request_headers(out: &Outbound) -> Vec<(String, String)> {
    let mut h = vec![("content-type".to_owned(), "application/json".to_owned())];
    for (k, v) in &out.provider.headers {
        h.push((k.clone(), v.clone()));
    }
    if let Some(key) = out.api_key {
        let name = &out.provider.key_header;
        let value = if name == "authorization" { format!("Bearer {key}") } else { key.to_owned() };
        h.push((name.clone(), value));
    }
    if out.provider.format == Format::Anthropic {
        h.push(("anthropic-version".to_owned(), out.provider.anthropic_version.clone()));
    }
    h
}

/// The cron trigger's health probe for a provider: its list-models endpoint
/// (authenticated, no tokens), or a one-token completion when configured.
/// `None` when the provider is not probed.
pub fn build_probe(out: &Outbound) -> Result<Option<UpstreamRequest>, ApiError> {
    match &out.provider.probe {
        Probe::Off => Ok(None),
        Probe::Models => {
            let path = match out.provider.format {
                // OpenAI-compatible base URLs already end in /v1.
                Format::OpenAi => "/models",
                // Cohere's model list lives only under /v1.
                Format::Anthropic | Format::Cohere => "/v1/models",
            };
            let mut headers = request_headers(out);
            headers.retain(|(k, _)| k != "content-type");
            Ok(Some(UpstreamRequest {
                method: "GET",
                url: format!("{}{path}", out.provider.base_url),
                headers,
                body: None,
            }))
        }
        Probe::Completion(model) => {
            let body = serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": "ping"}],
                "max_tokens": 1,
            })
            .json_text();
            let req = ChatRequest::parse(body.as_bytes())?;
            let probe_out = Outbound { model, ..*out };
            build_chat(&probe_out, &req).map(Some)
        }
    }
}

/// Shortens an upstream message so that error bodies stay small.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 500;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn cfg(probe: &str) -> Config {
        Config::from_json(&format!(
            r#"{{"providers":{{
                "o":{{"format":"openai","base_url":"http://127.0.0.1:1/v1","key_secret":"K"{probe}}},
                "a":{{"format":"anthropic","base_url":"http://127.0.0.1:2","key_secret":"K"}},
                "c":{{"format":"cohere","base_url":"http://127.0.0.1:3","key_secret":"K"}}}},
              "routes":{{"r":{{"targets":[{{"provider":"o","model":"m"}}]}}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn probes_hit_each_formats_model_list_with_its_auth() {
        let c = cfg("");
        let urls: Vec<(String, Vec<(String, String)>)> = c
            .providers
            .iter()
            .map(|p| {
                let r = build_probe(&Outbound { provider: p, model: "", api_key: Some("sk-k") }).unwrap().unwrap();
                assert_eq!(r.method, "GET");
                assert!(r.body.is_none());
                (r.url, r.headers)
            })
            .collect();
        // Providers are kept in the order written: o, a, c.
        assert_eq!(urls[0].0, "http://127.0.0.1:1/v1/models");
        assert_eq!(urls[1].0, "http://127.0.0.1:2/v1/models");
        assert!(urls[1].1.contains(&("x-api-key".into(), "sk-k".into())));
        assert!(urls[1].1.contains(&("anthropic-version".into(), "2023-06-01".into())));
        assert_eq!(urls[2].0, "http://127.0.0.1:3/v1/models");
        assert!(urls[2].1.contains(&("authorization".into(), "Bearer sk-k".into())));
    }

    #[test]
    fn the_key_goes_in_the_configured_header() {
        let c = Config::from_json(
            r#"{"providers":{
                "azure":{"format":"openai","base_url":"https://x.openai.azure.com/openai/v1","key_secret":"K",
                         "key_header":"api-key"},
                "proxy":{"format":"anthropic","base_url":"https://proxy.example","key_secret":"K",
                         "key_header":"Authorization"}},
              "routes":{"r":{"targets":[{"provider":"azure","model":"m"}]}}}"#,
        )
        .unwrap();
        let headers = |name: &str| {
            let p = c.providers.iter().find(|p| p.name == name).unwrap();
            let req = ChatRequest::parse(br#"{"model":"r","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
            build_chat(&Outbound { provider: p, model: "m", api_key: Some("sk-k") }, &req).unwrap().headers
        };
        let azure = headers("azure");
        assert!(azure.contains(&("api-key".into(), "sk-k".into())), "{azure:?}");
        assert!(azure.iter().all(|(k, _)| k != "authorization"));
        let proxy = headers("proxy");
        assert!(proxy.contains(&("authorization".into(), "Bearer sk-k".into())), "{proxy:?}");
        assert!(proxy.iter().all(|(k, _)| k != "x-api-key"));
        assert!(proxy.contains(&("anthropic-version".into(), "2023-06-01".into())));
    }

    #[test]
    fn a_completion_probe_asks_for_one_token() {
        let c = cfg(r#","probe":"completion","probe_model":"tiny""#);
        let p = c.providers.iter().find(|p| p.name == "o").unwrap();
        let r = build_probe(&Outbound { provider: p, model: "", api_key: None }).unwrap().unwrap();
        assert_eq!(r.url, "http://127.0.0.1:1/v1/chat/completions");
        let body: serde_json::Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["model"], "tiny");
        assert_eq!(body["max_tokens"], 1);
        let off = cfg(r#","probe":"off""#);
        let p = off.providers.iter().find(|p| p.name == "o").unwrap();
        assert!(build_probe(&Outbound { provider: p, model: "", api_key: None }).unwrap().is_none());
    }
}
