//! Streaming: OpenAI-format SSE to the client from any provider's stream.
//!
//! - [`relay`] is the state machine that decides what the client sees: it is
//!   fed bytes, ends and deadlines, and holds everything back until the
//!   first token, so that a failure before it fails over invisibly.
//! - [`encode`] writes OpenAI chunks from decoded events, the error event
//!   that ends a broken answer, and a whole answer replayed as a stream.
//! - [`drive`] runs a relay against an upstream body: the attempt loop's
//!   acceptor for streams (until the first token), and the driver that
//!   relays the rest and continues a broken answer elsewhere.

pub mod drive;
pub mod encode;
pub mod relay;

pub use drive::{Resume, StreamAccept, StreamDriver, Streaming};
pub use encode::{completion_as_sse, error_event};
pub use relay::{Relay, Source, State, StreamSpec, FINISH_GRACE_MS};
