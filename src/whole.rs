//! The acceptor for answers read whole (chat without streaming, token
//! counts, embeddings): reads the body within its bound, then hands the
//! text to the endpoint's [`Finish`], whose failure (an answer that cannot
//! be read) fails over like any other. One acceptor type for every
//! endpoint, so the attempt loop is compiled once for all of them.

use crate::api::Usage;
use crate::config::{ProviderConfig, Target};
use crate::dispatch::Accept;
use crate::record::Answer;
use crate::taxonomy::{ErrorKind, UpstreamError};
use crate::upstream::{TransportError, UpstreamBody, UpstreamHead};

/// An answer as the client gets it.
#[derive(Debug, Default)]
pub struct Completion {
    /// The body to send, in the client's format.
    pub body: String,
    pub model: String,
    pub usage: Option<Usage>,
    /// What a mirror comparison needs (latency filled in by the caller).
    pub answer: Answer,
}

/// Turns an upstream's 2xx body into the client's answer.
pub trait Finish {
    fn finish(&self, target: &Target, provider: &ProviderConfig, text: String) -> Result<Completion, UpstreamError>;
}

/// Reads a 2xx body whole and finishes it.
pub struct ReadWhole<'a> {
    /// Largest answer read.
    pub max_bytes: u64,
    pub finish: &'a dyn Finish,
}

impl<B: UpstreamBody> Accept<B> for ReadWhole<'_> {
    type Output = Completion;
    async fn accept(
        &mut self,
        target: &Target,
        provider: &ProviderConfig,
        _key: Option<&str>,
        head: UpstreamHead<B>,
        deadline_ms: u64,
    ) -> Result<Completion, UpstreamError> {
        let text = head.body.text(deadline_ms, self.max_bytes).await.map_err(|e| match e {
            TransportError::Timeout => {
                UpstreamError::new(ErrorKind::Timeout, "the response body did not arrive in time")
            }
            TransportError::Connect(m) => UpstreamError::new(ErrorKind::Connect, m),
            TransportError::TooLarge(n) => {
                UpstreamError::new(ErrorKind::Malformed, format!("the answer is larger than {n} bytes"))
            }
        })?;
        self.finish.finish(target, provider, text)
    }
}
