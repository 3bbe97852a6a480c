//! Records shared by the modules that make a request's answer and the one
//! that logs it: each upstream attempt, the answer a mirror comparison needs,
//! and how the request ended. A leaf: it depends only on the API types and the
//! taxonomy, so that the log line can be built from typed outcomes without the
//! log importing the modules that produce them.

use crate::api::Usage;
use crate::taxonomy::ErrorKind;

/// One upstream attempt, as logged and reported.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub target: String,
    pub provider: String,
    pub model: String,
    pub status: Option<u16>,
    /// `None` for a success.
    pub kind: Option<ErrorKind>,
    pub latency_ms: u64,
    /// The provider's message (redacted), for the client's error body; never logged.
    pub message: Option<String>,
}

/// How a request ended, as the log line's `outcome` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (a whole answer, or a stream that completed).
    Ok,
    /// A stream broke after content and was continued on another target.
    OkContinued,
    /// The primary failed; the mirror's answer was served.
    OkFromMirror,
    /// The gateway refused the request itself (bad input, unknown route, scope).
    ClientError,
    /// A provider refused the request for the request's own sake.
    UpstreamRefused,
    /// Every attempt failed, or the bounds ran out.
    Exhausted,
    /// A stream broke after content and ended with an error event.
    StreamFailed,
    /// The client went away before the stream ended.
    ClientClosed,
    /// No valid gateway key.
    Unauthorized,
    /// Over the caller's rate limit.
    RateLimited,
    /// The configuration (or a secret it names) is invalid.
    ConfigError,
    /// A CORS preflight from an origin that may not call.
    CorsRefused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::OkContinued => "ok_continued",
            Outcome::OkFromMirror => "ok_from_mirror",
            Outcome::ClientError => "client_error",
            Outcome::UpstreamRefused => "upstream_refused",
            Outcome::Exhausted => "exhausted",
            Outcome::StreamFailed => "stream_failed",
            Outcome::ClientClosed => "client_closed",
            Outcome::Unauthorized => "unauthorized",
            Outcome::RateLimited => "rate_limited",
            Outcome::ConfigError => "config_error",
            Outcome::CorsRefused => "cors_refused",
        }
    }

    /// Whether the client got a whole answer.
    pub fn answered(self) -> bool {
        matches!(self, Outcome::Ok | Outcome::OkContinued | Outcome::OkFromMirror)
    }
}

/// What a mirror comparison needs from either side of a pair.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub provider: String,
    pub model: String,
    /// The answer text of choice 0 (reasoning left out).
    pub text: String,
    /// `(name, arguments)` of each tool call; `None` when not known.
    pub tool_calls: Option<Vec<(String, String)>>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub latency_ms: u64,
    /// Dollars, from the target's configured prices.
    pub cost: Option<f64>,
}
