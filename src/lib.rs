//! Switchyard: an LLM gateway for Cloudflare Workers.
//!
//! The crate is a pure core plus a thin edge shell. Everything outside `edge`
//! is plain Rust with no dependency on the `worker` crate: it compiles for the
//! host and is tested with `cargo test`. It reaches the outside world only
//! through the small traits in [`clock`], [`rng`], [`store`] and [`upstream`].
//! The `edge` module implements those traits with workers-rs and exists only
//! when compiling for wasm32.
#![allow(async_fn_in_trait)]
// A panic resets the whole wasm instance (and every in-memory state with
// it): outside tests, no unwrap and no indexing that could panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod analytics;
pub mod api;
pub mod auth;
pub mod breaker;
pub mod budget;
pub mod chat;
pub mod clock;
pub mod config;
pub mod continuation;
pub mod cors;
pub mod count_tokens;
pub mod dispatch;
pub mod embeddings;
pub mod event;
pub mod failures;
pub mod fleet;
pub mod gateway;
pub mod health;
pub mod http;
pub mod inbound;
pub mod json;
pub mod json_path;
pub mod json_view;
pub mod keys;
pub mod log;
pub mod metrics;
pub mod mirror;
pub mod mirroring;
pub mod probe;
pub mod providers;
pub mod record;
pub mod retry;
pub mod rng;
pub mod selection;
pub mod serve;
pub mod short_sort;
pub mod slot;
pub mod sse;
pub mod state;
pub mod store;
pub mod stream;
pub mod taxonomy;
pub mod text;
pub mod upstream;
pub mod usage;
pub mod whole;

#[cfg(target_arch = "wasm32")]
mod edge;
