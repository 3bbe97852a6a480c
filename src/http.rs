//! HTTP-level pieces of the gateway that do not depend on the runtime: the
//! reply the edge writes, which handler a method and path go to, the
//! gateway's own headers, and the checks made on a request before its body is
//! read.

use crate::api::ApiError;

pub const HEADER_PROVIDER: &str = "x-switchyard-provider";
pub const HEADER_MODEL: &str = "x-switchyard-model";
pub const HEADER_ATTEMPTS: &str = "x-switchyard-attempts";
pub const HEADER_ROUTE: &str = "x-switchyard-route";
pub const HEADER_REQUEST_ID: &str = "x-request-id";
/// Set to `served` when the mirror's answer was served because the primary failed.
pub const HEADER_MIRROR: &str = "x-switchyard-mirror";
/// Hosted tools (web search, code execution, ...) left out of a request
/// because the target that served it cannot run them.
pub const HEADER_DROPPED_TOOLS: &str = "x-switchyard-dropped-tools";
/// The answer's cost in US dollars (non-streaming answers from priced targets).
pub const HEADER_COST: &str = "x-switchyard-cost-usd";
/// A client's own fallback order, as a comma-separated list of target ids.
pub const HEADER_ORDER: &str = "x-switchyard-order";

/// What the edge writes back.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, body: String) -> Reply {
        Reply { status, headers: Vec::new(), body }
    }
    pub fn error(e: &ApiError) -> Reply {
        Reply::json(e.status, e.to_json())
    }
}

/// Which handler a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    /// Anthropic Messages.
    Messages,
    /// Anthropic's token count for a Messages request.
    CountTokens,
    /// OpenAI Responses.
    Responses,
    /// A WebSocket upgrade on the Responses path: HTTP only here.
    ResponsesSocket,
    Embeddings,
    Models,
    /// One model (route) by id: `GET /v1/models/{id}`.
    Model,
    Health,
    /// Provider health, circuits and weights; behind the admin key.
    Status,
    /// Mirror comparison aggregates; behind the admin key.
    Mirror,
    /// Usage and cost (fleet or this isolate); behind the admin key.
    Usage,
    /// This isolate's rolling metrics; behind the admin key.
    Metrics,
    /// A CORS preflight (`OPTIONS`) on a known path.
    Preflight,
    NotFound,
    /// The path exists but not for this method; carries the allowed methods.
    MethodNotAllowed(&'static str),
}

pub fn endpoint(method: &str, path: &str) -> Endpoint {
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    const KNOWN: [&str; 11] = [
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/responses",
        "/v1/embeddings",
        "/v1/models",
        "/v1/status",
        "/v1/mirror",
        "/v1/usage",
        "/v1/metrics",
        "/healthz",
    ];
    let model = path.strip_prefix("/v1/models/").filter(|id| !id.is_empty());
    if method == "OPTIONS" && (KNOWN.contains(&path) || model.is_some()) {
        return Endpoint::Preflight;
    }
    if model.is_some() {
        return match method {
            "GET" | "HEAD" => Endpoint::Model,
            _ => Endpoint::MethodNotAllowed("GET"),
        };
    }
    match (path, method) {
        ("/v1/chat/completions", "POST") => Endpoint::Chat,
        ("/v1/chat/completions", _) => Endpoint::MethodNotAllowed("POST"),
        ("/v1/messages", "POST") => Endpoint::Messages,
        ("/v1/messages/count_tokens", "POST") => Endpoint::CountTokens,
        ("/v1/messages" | "/v1/messages/count_tokens", _) => Endpoint::MethodNotAllowed("POST"),
        ("/v1/responses", "POST") => Endpoint::Responses,
        ("/v1/responses", "GET") => Endpoint::ResponsesSocket,
        ("/v1/responses", _) => Endpoint::MethodNotAllowed("POST"),
        ("/v1/embeddings", "POST") => Endpoint::Embeddings,
        ("/v1/embeddings", _) => Endpoint::MethodNotAllowed("POST"),
        ("/v1/models", "GET" | "HEAD") => Endpoint::Models,
        ("/v1/models", _) => Endpoint::MethodNotAllowed("GET"),
        ("/v1/status", "GET") => Endpoint::Status,
        ("/v1/mirror", "GET") => Endpoint::Mirror,
        ("/v1/mirror", _) => Endpoint::MethodNotAllowed("GET"),
        ("/v1/status", _) => Endpoint::MethodNotAllowed("GET"),
        ("/v1/usage", "GET") => Endpoint::Usage,
        ("/v1/metrics", "GET") => Endpoint::Metrics,
        ("/v1/usage" | "/v1/metrics", _) => Endpoint::MethodNotAllowed("GET"),
        ("/healthz", "GET" | "HEAD") => Endpoint::Health,
        ("/healthz", _) => Endpoint::MethodNotAllowed("GET"),
        _ => Endpoint::NotFound,
    }
}

/// The id in `/v1/models/{id}` (percent-escapes of `/` and spaces undone:
/// ids such as `org/model` arrive escaped).
pub fn model_id(path: &str) -> Option<String> {
    let raw = path.strip_prefix("/v1/models/")?.trim_end_matches('/');
    Some(raw.replace("%2F", "/").replace("%2f", "/").replace("%20", " "))
}

/// The 426 that tells a Responses client to use HTTP, not a WebSocket.
pub fn upgrade_refused() -> Reply {
    Reply::error(
        &ApiError::new(
            426,
            "invalid_request_error",
            "this gateway serves the Responses API over HTTP only: send POST /v1/responses",
        )
        .with_code("websocket_not_supported"),
    )
}

/// Checks a chat request's content type and declared length before its body
/// is read: JSON only, and no larger than `max` bytes.
pub fn check_body_headers(content_type: Option<&str>, content_length: Option<&str>, max: u64) -> Option<ApiError> {
    if let Some(ct) = content_type {
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Some(
                ApiError::new(
                    415,
                    "invalid_request_error",
                    format!("send JSON (`content-type: application/json`), not `{mime}`"),
                )
                .with_code("unsupported_media_type"),
            );
        }
    }
    match content_length.map(|l| l.trim().parse::<u64>()) {
        Some(Ok(n)) if n > max => Some(too_large(max)),
        Some(Err(_)) => Some(ApiError::invalid("the content-length header is not a number")),
        _ => None,
    }
}

pub fn too_large(max: u64) -> ApiError {
    ApiError::new(413, "invalid_request_error", format!("the request body is larger than {max} bytes"))
        .with_code("request_too_large")
}

pub fn unauthorized(message: &str) -> Reply {
    let mut r = Reply::error(&ApiError::new(401, "authentication_error", message).with_code("invalid_api_key"));
    r.headers.push(("www-authenticate", "Bearer".to_owned()));
    r
}

/// The path of a request URL (`https://host/v1/models?x` is `/v1/models`).
pub fn path_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(url, |i| url.get(i + 3..).unwrap_or_default());
    let path = after_scheme.find('/').and_then(|i| after_scheme.get(i..)).unwrap_or("/");
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path.get(..end).unwrap_or(path)
}

/// A header value that any runtime accepts: visible ASCII and spaces only.
/// Upstream strings (a model name) may hold CR/LF or non-Latin-1
/// characters, which would make setting the header fail after a paid
/// answer; those become `?`.
pub fn header_value(s: &str) -> String {
    let clean: String = s.chars().map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '?' }).collect();
    clean.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_come_from_urls() {
        assert_eq!(path_of("https://gw.example/v1/chat/completions?beta=true"), "/v1/chat/completions");
        assert_eq!(path_of("http://127.0.0.1:8787/v1/models#x"), "/v1/models");
        assert_eq!(path_of("https://gw.example"), "/");
        assert_eq!(path_of("https://gw.example/"), "/");
    }

    #[test]
    fn the_dashboard_path_is_left_to_the_static_assets() {
        // Deployed, the asset layer answers every method on /dashboard before
        // the worker runs (405 for those it does not serve); a request that
        // reaches the worker means the assets are missing.
        assert_eq!(endpoint("GET", "/dashboard"), Endpoint::NotFound);
        assert_eq!(endpoint("POST", "/dashboard/"), Endpoint::NotFound);
        assert_eq!(endpoint("GET", "/v1/metrics/"), Endpoint::Metrics);
        assert_eq!(endpoint("DELETE", "/v1/usage"), Endpoint::MethodNotAllowed("GET"));
    }

    #[test]
    fn header_values_are_sanitised() {
        assert_eq!(header_value("gpt-4o-mini-2024-07-18"), "gpt-4o-mini-2024-07-18");
        assert_eq!(header_value("模型\r\nx-injected: 1"), "????x-injected: 1");
        assert_eq!(header_value("café\t"), "caf??");
    }
}
