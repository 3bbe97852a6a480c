//! Streaming: OpenAI-format SSE to the client from any provider's stream.
//!
//! - [`relay`] is the state machine that decides what the client sees: it is
//!   fed bytes, ends and deadlines, and holds everything back until the
//!   first token, so that a failure before it fails over invisibly.
//! - The client's stream is written by its API's emitter (`inbound`): OpenAI
//!   chunks, and the error event that ends a broken answer.
//! - [`drive`] runs a relay against an upstream body: the attempt loop's
//!   acceptor for streams (until the first token), and the driver that
//!   relays the rest and continues a broken answer elsewhere.

pub mod drive;
pub mod relay;

pub use crate::inbound::chat::{completion_as_sse, error_event};
pub use drive::{Next, ReadEnd, Resume, StreamAccept, StreamDriver, Streaming};
pub use relay::{Relay, Source, State, StreamSpec, FINISH_GRACE_MS};
