//! The upstream HTTP trait: how the core sends a request to a provider.
//!
//! An attempt yields a response head whose body is read separately, so the
//! non-streaming path reads it whole while a streaming path can forward it.
//! The edge implements this with the Workers fetch API; tests use scripted fakes.

/// A request to a provider, built by an adapter in `providers`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

/// Transport-level failure (no usable HTTP response).
#[derive(Debug, Clone, PartialEq)]
pub enum TransportError {
    /// Nothing (or no complete body) arrived before the deadline.
    Timeout,
    /// Connection refused, reset, DNS failure...
    Connect(String),
    /// The body is larger than the reader allowed; it was not read further.
    TooLarge(u64),
}

impl TransportError {
    /// What went wrong, in words for a log line or an error message.
    pub fn describe(&self) -> String {
        match self {
            TransportError::Timeout => "nothing arrived in time".to_owned(),
            TransportError::Connect(m) => m.clone(),
            TransportError::TooLarge(n) => format!("the body is larger than {n} bytes"),
        }
    }
}

/// A response head: status and the few headers the gateway acts on
/// (`retry-after` only matters, and is only read, on a failure).
#[derive(Debug)]
pub struct UpstreamHead<B> {
    pub status: u16,
    /// `retry-after` (seconds or an HTTP date).
    pub retry_after: Option<String>,
    /// `retry-after-ms` (OpenAI and Anthropic send it).
    pub retry_after_ms: Option<String>,
    pub body: B,
}

/// A response body not yet read.
pub trait UpstreamBody {
    /// Reads the whole body as text, giving up at `deadline_ms` (clock time),
    /// or as soon as more than `max_bytes` have arrived (checked as bytes
    /// arrive, so a huge body is never held whole).
    async fn text(self, deadline_ms: u64, max_bytes: u64) -> Result<String, TransportError>;
    /// Reads the next piece of a streamed body as it arrives; `None` at the
    /// end. Gives up at `deadline_ms`.
    async fn chunk(&mut self, deadline_ms: u64) -> Result<Option<Vec<u8>>, TransportError>;
    /// The stream reached its end marker: nothing more will be read, and the
    /// connection need not be aborted when the body is dropped (aborting a
    /// finished fetch costs the runtime more than the rest of the stream's
    /// bookkeeping).
    fn release(&mut self) {}
}

/// Sends requests upstream.
pub trait Upstream {
    type Body: UpstreamBody;
    /// Sends `req` and waits for the response head until `deadline_ms`
    /// (clock time), after which the attempt is abandoned as a timeout.
    async fn send(&self, req: &UpstreamRequest, deadline_ms: u64) -> Result<UpstreamHead<Self::Body>, TransportError>;
}

impl<T: Upstream> Upstream for &T {
    type Body = T::Body;
    async fn send(&self, req: &UpstreamRequest, deadline_ms: u64) -> Result<UpstreamHead<Self::Body>, TransportError> {
        (**self).send(req, deadline_ms).await
    }
}
