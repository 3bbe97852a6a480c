//! Driving a [`Relay`] with an upstream body: reading chunks within the
//! relay's next deadline and feeding it what happened. Two uses:
//!
//! - [`StreamAccept`], the attempt loop's acceptor for streams, reads until
//!   the first token: a failure before it fails over like any attempt.
//! - [`StreamDriver`] relays the rest to the client, piece by piece, and
//!   when the answer breaks after content, asks its [`Resume`] for a
//!   continuation before it gives up with an error event.

use super::relay::{Relay, Source, State, StreamSpec};
use crate::api::NativeApi;
use crate::clock::Clock;
use crate::config::{ProviderConfig, Target};
use crate::dispatch::Accept;
use crate::inbound::ClientFormat;
use crate::providers::Wire;
use crate::record::AttemptRecord;
use crate::taxonomy::UpstreamError;
use crate::upstream::{TransportError, UpstreamBody, UpstreamHead};

/// A stream that reached its first token: its body and its relay.
pub struct Streaming<B> {
    pub body: B,
    pub relay: Relay,
}

/// Reads once, within the relay's next deadline, and feeds the relay.
pub(crate) async fn step<B: UpstreamBody, C: Clock>(body: &mut B, relay: &mut Relay, clock: &C) {
    let deadline = relay.next_deadline();
    let read = body.chunk(deadline).await;
    let now = clock.now_ms();
    match read {
        Ok(Some(bytes)) => relay.feed(&bytes, now),
        Ok(None) => relay.end(now),
        Err(e) => stopped(relay, ReadEnd::from(e), now),
    }
}

/// How reading a body stopped, other than by the relay's own choice.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadEnd {
    /// The body ended.
    Ended,
    /// The deadline passed (and aborted the read), whatever the clock reads.
    TimedOut,
    /// The connection broke.
    Broke(String),
}

impl From<TransportError> for ReadEnd {
    fn from(e: TransportError) -> ReadEnd {
        match e {
            TransportError::Timeout => ReadEnd::TimedOut,
            TransportError::Connect(m) => ReadEnd::Broke(m),
            TransportError::TooLarge(_) => ReadEnd::Broke("the body was too large".to_owned()),
        }
    }
}

/// Tells `relay` how reading stopped; nothing if it no longer reads.
fn stopped(relay: &mut Relay, how: ReadEnd, now: u64) {
    match how {
        ReadEnd::Ended => relay.end(now),
        ReadEnd::TimedOut => {
            let deadline = relay.next_deadline();
            relay.tick(now.max(deadline));
        }
        ReadEnd::Broke(m) => relay.broke(&m, now),
    }
}

/// Reads `body` until the relay has its first token (or has failed).
pub async fn until_first_token<B: UpstreamBody, C: Clock>(
    body: &mut B,
    relay: &mut Relay,
    clock: &C,
) -> Result<(), UpstreamError> {
    while *relay.state() == State::Probation {
        step(body, relay, clock).await;
    }
    match relay.state() {
        State::Refused(e) => Err(e.clone()),
        _ => Ok(()),
    }
}

/// Reads a 2xx stream head's body into `relay` until the first token.
pub async fn first_token<B: UpstreamBody, C: Clock>(
    head: UpstreamHead<B>,
    mut relay: Relay,
    clock: &C,
) -> Result<Streaming<B>, UpstreamError> {
    let mut body = head.body;
    until_first_token(&mut body, &mut relay, clock).await?;
    Ok(Streaming { body, relay })
}

/// The source a 2xx stream head becomes: the decoder of the wire the
/// request went out on (`native`: the request's own API, if it was sent as
/// the client wrote it), passed through when that wire is the client's own
/// API.
pub fn source(
    target: &Target,
    provider: &ProviderConfig,
    key: Option<&str>,
    client: ClientFormat,
    native: Option<NativeApi>,
    client_wants_usage: bool,
) -> Source {
    let wire = Wire::of(provider, native);
    let passthrough = match client {
        ClientFormat::Chat => wire == Wire::Chat,
        ClientFormat::Messages | ClientFormat::Responses => wire.native().is_some() && wire.native() == native,
    };
    Source {
        provider: target.provider,
        target: target.id.clone(),
        model: target.model.clone(),
        decoder: wire.decoder(passthrough, client_wants_usage),
        passthrough,
        key: key.map(str::to_owned),
    }
}

/// The acceptor for streaming attempts: reads until the first token within
/// the attempt's deadline (the time-to-first-token limit).
pub struct StreamAccept<C> {
    pub clock: C,
    pub spec: StreamSpec,
}

impl<B: UpstreamBody, C: Clock> Accept<B> for StreamAccept<C> {
    type Output = Streaming<B>;

    async fn accept(
        &mut self,
        target: &Target,
        provider: &ProviderConfig,
        key: Option<&str>,
        head: UpstreamHead<B>,
        deadline_ms: u64,
    ) -> Result<Streaming<B>, UpstreamError> {
        let source =
            source(target, provider, key, self.spec.client, self.spec.client.native(), self.spec.include_usage);
        let relay = Relay::new(self.spec.clone(), source, self.clock.now_ms(), deadline_ms);
        first_token(head, relay, &self.clock).await
    }
}

/// Continues a broken answer elsewhere: given the broken relay, a stream
/// that carries on from it (already at its first token), or nothing.
pub trait Resume<B> {
    async fn resume(&mut self, broken: &Relay) -> Option<Streaming<B>>;
    /// The upstream attempts made for continuations, for the log.
    fn attempts(&mut self) -> Vec<AttemptRecord> {
        Vec::new()
    }
}

/// No continuation.
pub struct NoResume;

impl<B> Resume<B> for NoResume {
    async fn resume(&mut self, _broken: &Relay) -> Option<Streaming<B>> {
        None
    }
}

impl<B, R: Resume<B>> Resume<B> for Option<R> {
    async fn resume(&mut self, broken: &Relay) -> Option<Streaming<B>> {
        match self {
            Some(r) => r.resume(broken).await,
            None => None,
        }
    }
    fn attempts(&mut self) -> Vec<AttemptRecord> {
        self.as_mut().map(Resume::attempts).unwrap_or_default()
    }
}

/// Relays a stream to the client, piece by piece.
pub struct StreamDriver<B, C, R = NoResume> {
    body: B,
    relay: Relay,
    clock: C,
    resume: R,
    released: bool,
}

impl<B: UpstreamBody, C: Clock, R: Resume<B>> StreamDriver<B, C, R> {
    pub fn new(s: Streaming<B>, clock: C, resume: R) -> Self {
        StreamDriver { body: s.body, relay: s.relay, clock, resume, released: false }
    }

    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// The upstream attempts continuations made.
    pub fn continuation_attempts(&mut self) -> Vec<AttemptRecord> {
        self.resume.attempts()
    }

    pub fn relay_mut(&mut self) -> &mut Relay {
        &mut self.relay
    }

    pub fn body(&self) -> &B {
        &self.body
    }

    pub fn body_mut(&mut self) -> &mut B {
        &mut self.body
    }

    /// Bytes the caller read from the body (a pump reading it for the
    /// driver): fed to the relay, and what is now ready for the client.
    pub fn feed(&mut self, bytes: &[u8], now: u64) -> String {
        self.relay.feed(bytes, now);
        self.relay.take_output()
    }

    /// Whether the relay still wants the body (a pump reads on while so).
    pub fn reading(&self) -> bool {
        matches!(self.relay.state(), State::Probation | State::Flowing)
    }

    /// The caller's reading of the body stopped by itself: it ended, broke
    /// or timed out.
    pub fn stopped(&mut self, how: ReadEnd, now: u64) {
        stopped(&mut self.relay, how, now);
    }

    /// What comes next, short of reading the body: output ready for the
    /// client, the end, or a read (by [`step`], or by a pump that calls
    /// [`StreamDriver::feed`] per chunk while [`StreamDriver::reading`], and
    /// [`StreamDriver::stopped`] if the body stops first).
    /// A broken answer is continued elsewhere here, if it can be.
    pub async fn advance(&mut self) -> Next {
        loop {
            if self.relay.upstream_done() && !self.released {
                // Read to its end marker: nothing to abort.
                self.released = true;
                self.body.release();
            }
            let out = self.relay.take_output();
            if !out.is_empty() {
                return Next::Emit(out);
            }
            match self.relay.state() {
                State::Complete | State::Failed(_) | State::Refused(_) => return Next::End,
                State::Broken(_) => {
                    if self.relay.prefill().is_some() {
                        if let Some(next) = self.resume.resume(&self.relay).await {
                            // The broken body is dropped (aborted) here.
                            self.body = next.body;
                            self.released = false;
                            self.relay.splice(next.relay);
                            continue;
                        }
                    }
                    self.relay.give_up();
                }
                State::Probation | State::Flowing => return Next::Read,
            }
        }
    }

    /// The next piece of the client's stream (every event ready so far), or
    /// `None` once it has ended.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            match self.advance().await {
                Next::Emit(out) => return Some(out),
                Next::End => return None,
                Next::Read => step(&mut self.body, &mut self.relay, &self.clock).await,
            }
        }
    }
}

/// What a [`StreamDriver`] needs next.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Bytes for the client.
    Emit(String),
    /// More of the upstream body.
    Read,
    /// The client's stream has ended.
    End,
}
