//! The APIs clients call. Each is a codec at the edge of the core: its
//! requests become the gateway's internal request, and the gateway's
//! answers, stream events and errors are written back in its own shape.
//! Everything between (selection, the attempt loop, the relay, mirroring,
//! logging) is one implementation for all of them.

pub mod chat;

use crate::event::Emit;

/// Which API the client called, and so which format it hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFormat {
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    Chat,
}

/// What a client stream is named until an upstream names it.
#[derive(Debug, Clone)]
pub struct StreamNames {
    pub id: String,
    pub created: u64,
    pub model: String,
    /// The client asked for usage in the stream (OpenAI's `include_usage`).
    pub include_usage: bool,
}

/// The emitter for a client stream in `format`.
pub fn emitter(format: ClientFormat, names: StreamNames) -> Box<dyn Emit> {
    match format {
        ClientFormat::Chat => {
            Box::new(chat::ChatEmitter::new(names.id, names.created, names.model, names.include_usage))
        }
    }
}
