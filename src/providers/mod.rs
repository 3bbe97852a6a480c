//! Provider wire formats. One adapter per format, each a pure translation:
//! an OpenAI request out, the provider's response in, and the provider's error
//! bodies classified into the taxonomy. No I/O here.

pub mod anthropic;
pub mod cohere;
pub mod openai;

use crate::api::{ApiError, ChatCompletion, ChatRequest};
use crate::config::ProviderConfig;
use crate::taxonomy::UpstreamError;
use crate::upstream::UpstreamRequest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenAI Chat Completions, and every OpenAI-compatible host.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Cohere Chat v2.
    Cohere,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "openai" => Some(Format::OpenAi),
            "anthropic" => Some(Format::Anthropic),
            "cohere" => Some(Format::Cohere),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Format::OpenAi => "openai",
            Format::Anthropic => "anthropic",
            Format::Cohere => "cohere",
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
    match out.provider.format {
        Format::OpenAi => openai::build_request(out, req),
        Format::Anthropic => anthropic::build_request(out, req),
        Format::Cohere => cohere::build_request(out, req),
    }
}

/// Parses a successful (2xx) chat response into an OpenAI `chat.completion`.
/// `now_s` fills `created` where the provider gives no timestamp.
pub fn parse_chat(format: Format, body: &str, now_s: u64) -> Result<ChatCompletion, String> {
    match format {
        Format::OpenAi => openai::parse_response(body),
        Format::Anthropic => anthropic::parse_response(body, now_s),
        Format::Cohere => cohere::parse_response(body, now_s),
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

/// Headers every provider request carries.
pub(crate) fn common_headers(out: &Outbound) -> Vec<(String, String)> {
    let mut h = vec![("content-type".to_owned(), "application/json".to_owned())];
    for (k, v) in &out.provider.headers {
        h.push((k.clone(), v.clone()));
    }
    h
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
