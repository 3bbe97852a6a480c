//! The error taxonomy: what kind of failure an upstream outcome is, and what
//! that kind means for the dispatcher.
//!
//! Adapters classify a provider's error body into an [`ErrorKind`]; the retry
//! policy (`retry.rs`) turns a kind into a decision.

/// What went wrong with one upstream attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Connection refused, reset or DNS failure before a response head.
    Connect,
    /// No response (or no complete body) within the attempt timeout.
    Timeout,
    /// 429: the provider asks us to slow down.
    RateLimited,
    /// 503 / 529: the provider says it is overloaded.
    Overloaded,
    /// 500, 502, 504 and other 5xx.
    Server,
    /// 401 / 403 (and Cohere's 498, billing 402): the key is broken.
    Auth,
    /// 404 for the model: the target is misconfigured.
    NotFound,
    /// 400 because the prompt is longer than the model's context window.
    ContextLength,
    /// 400 because the content was refused by the provider's policy.
    ContentPolicy,
    /// Any other 4xx caused by the request itself.
    BadRequest,
    /// A 2xx whose body could not be understood.
    Malformed,
    /// The provider's key secret is not set in this deployment.
    MissingKey,
}

/// Where a failure goes after the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Worth another attempt at the same provider (with backoff).
    Retryable,
    /// Not worth repeating at this provider, but another one may serve.
    FailOver,
    /// Fail over only to a target with a larger context window.
    LargerContext,
    /// The request itself is at fault: answer the client with the reason.
    ToClient,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect_error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Server => "server_error",
            ErrorKind::Auth => "auth_error",
            ErrorKind::NotFound => "not_found",
            ErrorKind::ContextLength => "context_length_exceeded",
            ErrorKind::ContentPolicy => "content_policy",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Malformed => "malformed_response",
            ErrorKind::MissingKey => "missing_key",
        }
    }

    pub fn disposition(self) -> Disposition {
        match self {
            ErrorKind::Connect | ErrorKind::RateLimited | ErrorKind::Overloaded | ErrorKind::Server => {
                Disposition::Retryable
            }
            ErrorKind::Timeout
            | ErrorKind::Auth
            | ErrorKind::NotFound
            | ErrorKind::Malformed
            | ErrorKind::MissingKey => Disposition::FailOver,
            ErrorKind::ContextLength => Disposition::LargerContext,
            ErrorKind::ContentPolicy | ErrorKind::BadRequest => Disposition::ToClient,
        }
    }

    /// Whether the outcome counts against the provider's health. Failures
    /// caused by the request (context length, policy, bad request) do not.
    pub fn counts_as_provider_failure(self) -> bool {
        !matches!(self, ErrorKind::ContextLength | ErrorKind::ContentPolicy | ErrorKind::BadRequest)
    }

    /// A kind an operator must fix (broken or missing key, wrong model name):
    /// logged loudly.
    pub fn is_misconfiguration(self) -> bool {
        matches!(self, ErrorKind::Auth | ErrorKind::NotFound | ErrorKind::MissingKey)
    }

    /// The default kind for an HTTP status when the body says nothing more.
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            300..=399 => ErrorKind::NotFound,
            401 | 402 | 403 | 498 => ErrorKind::Auth,
            404 => ErrorKind::NotFound,
            408 => ErrorKind::Timeout,
            413 => ErrorKind::ContextLength,
            429 => ErrorKind::RateLimited,
            503 | 529 => ErrorKind::Overloaded,
            500..=599 => ErrorKind::Server,
            _ => ErrorKind::BadRequest,
        }
    }
}

/// A classified upstream failure.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamError {
    pub kind: ErrorKind,
    /// The provider's own message, with anything key-like removed.
    pub message: String,
}

impl UpstreamError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        UpstreamError { kind, message: message.into() }
    }
}

/// Phrases providers use when they refuse content on policy grounds.
pub fn looks_like_content_policy(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    ["content_policy", "content policy", "content management policy", "safety system", "content_filter", "flagged"]
        .iter()
        .any(|p| t.contains(p))
}

/// Phrases providers use when the prompt exceeds the context window.
pub fn looks_like_context_length(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "context_length_exceeded",
        "context length",
        "maximum context",
        "prompt is too long",
        "too many tokens",
        "context window",
        "context limit",
    ]
    .iter()
    .any(|p| t.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taxonomy_follows_the_guide() {
        use Disposition::*;
        assert_eq!(ErrorKind::Connect.disposition(), Retryable);
        assert_eq!(ErrorKind::Server.disposition(), Retryable);
        assert_eq!(ErrorKind::RateLimited.disposition(), Retryable);
        assert_eq!(ErrorKind::Timeout.disposition(), FailOver);
        assert_eq!(ErrorKind::Auth.disposition(), FailOver);
        assert_eq!(ErrorKind::ContextLength.disposition(), LargerContext);
        assert_eq!(ErrorKind::ContentPolicy.disposition(), ToClient);
        assert_eq!(ErrorKind::BadRequest.disposition(), ToClient);
        assert!(ErrorKind::Auth.counts_as_provider_failure());
        assert!(ErrorKind::Timeout.counts_as_provider_failure());
        assert!(!ErrorKind::ContextLength.counts_as_provider_failure());
        assert!(!ErrorKind::ContentPolicy.counts_as_provider_failure());
        assert!(!ErrorKind::BadRequest.counts_as_provider_failure());
    }

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(ErrorKind::from_status(401), ErrorKind::Auth);
        assert_eq!(ErrorKind::from_status(403), ErrorKind::Auth);
        assert_eq!(ErrorKind::from_status(429), ErrorKind::RateLimited);
        assert_eq!(ErrorKind::from_status(529), ErrorKind::Overloaded);
        assert_eq!(ErrorKind::from_status(503), ErrorKind::Overloaded);
        assert_eq!(ErrorKind::from_status(502), ErrorKind::Server);
        assert_eq!(ErrorKind::from_status(422), ErrorKind::BadRequest);
    }
}
