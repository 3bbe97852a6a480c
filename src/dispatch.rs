//! The attempt loop: send the request to each target in order, retrying and
//! failing over as the retry policy decides, within the attempt bound, the
//! per-attempt timeout and the request deadline.
//!
//! What to do with a successful response head is the caller's [`Accept`]:
//! the non-streaming path reads and translates the body; a streaming path can
//! check the first events and hand the rest on. Failures found there (a
//! malformed body, a timeout while reading) fail over like any other.

use crate::api::{ApiError, ChatRequest};
use crate::breaker::Permit;
use crate::clock::Clock;
use crate::config::{Config, ProviderConfig, Route, Target};
use crate::providers::{self, Outbound};
pub use crate::record::AttemptRecord;
use crate::retry::{self, Decision, Failure};
use crate::rng::Rng;
use crate::state::ProviderStates;
use crate::taxonomy::{ErrorKind, UpstreamError};
use crate::upstream::{TransportError, Upstream, UpstreamBody, UpstreamHead, UpstreamRequest};
use std::cell::RefCell;

/// A request the attempt loop can send to any target: it builds the
/// target's upstream request in its wire format.
pub trait Build {
    fn build(&self, out: &Outbound) -> Result<UpstreamRequest, ApiError>;
    /// The answer streams (the attempt lasts until the first token).
    fn is_stream(&self) -> bool;
}

impl Build for ChatRequest {
    fn build(&self, out: &Outbound) -> Result<UpstreamRequest, ApiError> {
        providers::build_chat(out, self)
    }
    fn is_stream(&self) -> bool {
        ChatRequest::is_stream(self)
    }
}

/// Turns a 2xx response head into the attempt's result.
pub trait Accept<B> {
    type Output;
    /// `key` is the provider's key (for redacting what the body may echo).
    async fn accept(
        &mut self,
        target: &Target,
        provider: &ProviderConfig,
        key: Option<&str>,
        head: UpstreamHead<B>,
        deadline_ms: u64,
    ) -> Result<Self::Output, UpstreamError>;
}

#[derive(Debug)]
pub enum Dispatched<T> {
    /// Target `target` (an index into the route's targets) answered.
    Served { target: usize, output: T },
    /// The request itself was refused upstream; the client gets the reason.
    ToClient { status: u16, error: UpstreamError },
    /// No target could even be asked (the request cannot be expressed in any
    /// eligible target's format).
    Rejected(ApiError),
    /// Every attempt failed, or the bounds ran out.
    Exhausted,
}

impl<T> Dispatched<T> {
    /// The same outcome with the answer put through `f`; `None` from `f`
    /// makes a served outcome `Exhausted`.
    pub fn map_output<U>(self, f: impl FnOnce(T) -> Option<U>) -> Dispatched<U> {
        match self {
            Dispatched::Served { target, output } => match f(output) {
                Some(output) => Dispatched::Served { target, output },
                None => Dispatched::Exhausted,
            },
            Dispatched::ToClient { status, error } => Dispatched::ToClient { status, error },
            Dispatched::Rejected(e) => Dispatched::Rejected(e),
            Dispatched::Exhausted => Dispatched::Exhausted,
        }
    }
}

#[derive(Debug)]
pub struct Dispatch<T> {
    pub attempts: Vec<AttemptRecord>,
    pub outcome: Dispatched<T>,
}

/// An attempt's result: the status and output, or the status (if any), the
/// classified failure and the provider's Retry-After.
type AttemptResult<T> = Result<(u16, T), (Option<u16>, UpstreamError, Option<u64>)>;

/// Everything the loop reads; grouped to keep the signature short.
pub struct Plan<'a> {
    pub config: &'a Config,
    pub route: &'a Route,
    pub order: &'a [usize],
    /// What to send: builds each target's upstream request.
    pub request: &'a dyn Build,
    /// API key per provider (index as in `config.providers`).
    pub keys: &'a [Option<String>],
    pub states: &'a RefCell<ProviderStates>,
    /// Every target was unavailable and is tried anyway: circuit permits are
    /// not asked for; each attempt after the first spends the retry budget.
    pub forced: bool,
    /// Upstream attempts allowed (the route's bound, less any mirror call).
    pub max_attempts: u32,
    /// The request's deadline (clock time): no attempt starts or waits past it.
    pub deadline_ms: u64,
}

/// Takes the key out of an upstream's text: some providers echo the key
/// they were sent in their error bodies. Every occurrence goes, and so does
/// a prefix of it (at least [`MIN_KEY_PREFIX`] characters) that ends the
/// text, before a clip's `...` or not: what is left of a key that a clip
/// (or a body cut short) split.
pub fn redact(text: &str, key: Option<&str>) -> String {
    redacted(text, key).into_owned()
}

/// The shortest key prefix [`redact`] takes off the end of a text.
pub const MIN_KEY_PREFIX: usize = 8;

fn redacted<'a>(text: &'a str, key: Option<&str>) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    const MARK: &str = "[redacted]";
    let Some(k) = key.filter(|k| k.len() >= 4) else {
        return Cow::Borrowed(text);
    };
    let mut out = if text.contains(k) { Cow::Owned(text.replace(k, MARK)) } else { Cow::Borrowed(text) };
    let (body, dots) = match out.strip_suffix("...") {
        Some(b) => (b, "..."),
        None => (&*out, ""),
    };
    let cut = (MIN_KEY_PREFIX..k.len())
        .rev()
        .filter_map(|n| k.get(..n))
        .find(|prefix| body.ends_with(prefix))
        .and_then(|prefix| body.get(..body.len() - prefix.len()));
    if let Some(kept) = cut {
        out = Cow::Owned(format!("{kept}{MARK}{dots}"));
    }
    out
}

/// Classifies an upstream's error body with the key taken out first (the
/// raw body, before the adapter clips its message, so that a key straddling
/// the clip cannot leave its first characters behind), and out of the
/// message again (a key the body held escaped).
pub fn classify_redacted(format: providers::Format, status: u16, body: &str, key: Option<&str>) -> UpstreamError {
    let mut e = providers::classify_error(format, status, &redacted(body, key));
    if key.is_some() {
        e.message = redact(&e.message, key);
    }
    e
}

pub async fn dispatch<C, U, R, A>(
    plan: &Plan<'_>,
    clock: &C,
    upstream: &U,
    rng: &mut R,
    accept: &mut A,
) -> Dispatch<A::Output>
where
    C: Clock,
    U: Upstream,
    R: Rng,
    A: Accept<U::Body>,
{
    let mut slot = Slot { accept, output: None };
    let Dispatch { attempts, outcome } = attempt_loop(plan, clock, upstream, rng, &mut slot).await;
    // The loop reports a target served only after its accept stored an
    // output, so the output is always there.
    let output = slot.output;
    Dispatch { attempts, outcome: outcome.map_output(|()| output) }
}

/// An [`Accept`] seen by the attempt loop: it keeps its output itself, so
/// that one copy of the loop serves every kind of output (the loop is the
/// largest async function in the gateway; one copy per output type doubled
/// it in the bundle).
trait AcceptInto<B> {
    fn accept_into<'a>(
        &'a mut self,
        target: &'a Target,
        provider: &'a ProviderConfig,
        key: Option<&'a str>,
        head: UpstreamHead<B>,
        deadline_ms: u64,
    ) -> Accepting<'a>
    where
        B: 'a;
}

/// An accept step under way; done when the output is stored.
type Accepting<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), UpstreamError>> + 'a>>;

struct Slot<'x, A: Accept<B>, B> {
    accept: &'x mut A,
    output: Option<A::Output>,
}

impl<A: Accept<B>, B> AcceptInto<B> for Slot<'_, A, B> {
    fn accept_into<'a>(
        &'a mut self,
        target: &'a Target,
        provider: &'a ProviderConfig,
        key: Option<&'a str>,
        head: UpstreamHead<B>,
        deadline_ms: u64,
    ) -> Accepting<'a>
    where
        B: 'a,
    {
        Box::pin(async move {
            let out = self.accept.accept(target, provider, key, head, deadline_ms).await?;
            self.output = Some(out);
            Ok(())
        })
    }
}

async fn attempt_loop<C, U, R>(
    plan: &Plan<'_>,
    clock: &C,
    upstream: &U,
    rng: &mut R,
    accept: &mut dyn AcceptInto<U::Body>,
) -> Dispatch<()>
where
    C: Clock,
    U: Upstream,
    R: Rng,
{
    let policy = &plan.route.policy;
    let deadline = plan.deadline_ms;
    let mut attempts_left = plan.max_attempts;
    let mut attempts: Vec<AttemptRecord> = Vec::new();
    let mut min_context: Option<u64> = None;
    let mut context_error: Option<(u16, UpstreamError)> = None;
    let mut build_error: Option<ApiError> = None;

    'targets: for &ti in plan.order {
        let Some(target) = plan.route.targets.get(ti) else { continue };
        if min_context.is_some_and(|mc| target.context_window <= mc) {
            continue;
        }
        let provider = plan.config.provider_of(target);
        let key = plan.keys.get(target.provider).and_then(|k| k.as_deref());
        let record = |status, kind, latency_ms, message| AttemptRecord {
            target: target.id.clone(),
            provider: provider.name.clone(),
            model: target.model.clone(),
            status,
            kind,
            latency_ms,
            message,
        };
        if provider.key_secret.is_some() && key.is_none() {
            let secret = provider.key_secret.as_deref().unwrap_or_default();
            attempts.push(record(
                None,
                Some(ErrorKind::MissingKey),
                0,
                Some(format!("the Worker secret `{secret}` is not set")),
            ));
            continue;
        }
        let out = Outbound { provider, model: &target.model, api_key: key };
        let upstream_req = match plan.request.build(&out) {
            Ok(r) => r,
            Err(e) => {
                build_error.get_or_insert(e);
                continue;
            }
        };
        let mut at_target = 0u32;
        loop {
            let now = clock.now_ms();
            if attempts_left == 0 || now >= deadline {
                break 'targets;
            }
            if plan.forced {
                // Forced attempts spend the retry budget (the first was paid
                // for when the request was planned): spent, and it stops.
                if attempts_left < plan.max_attempts && !plan.states.borrow_mut().withdraw_forced(now) {
                    break 'targets;
                }
            } else if plan.states.borrow_mut().acquire(target.provider, now) == Permit::Denied {
                // The circuit opened (or its one trial is out): move on.
                continue 'targets;
            }
            attempts_left -= 1;
            at_target += 1;
            // A stream's attempt lasts until its first token: the
            // time-to-first-token limit, or the provider's own timeout.
            let timeout = provider.timeout_ms.unwrap_or(if plan.request.is_stream() {
                policy.first_token_timeout_ms
            } else {
                policy.attempt_timeout_ms
            });
            let attempt_deadline = (now + timeout).min(deadline);
            let result: AttemptResult<()> = match upstream.send(&upstream_req, attempt_deadline).await {
                Ok(head) if (200..300).contains(&head.status) => {
                    let status = head.status;
                    match accept.accept_into(target, provider, key, head, attempt_deadline).await {
                        Ok(out) => Ok((status, out)),
                        Err(e) => Err((Some(status), e, None)),
                    }
                }
                Ok(head) => {
                    let status = head.status;
                    let ra = retry::parse_retry_after(
                        head.retry_after.as_deref(),
                        head.retry_after_ms.as_deref(),
                        clock.now_ms(),
                    );
                    let body = head
                        .body
                        .text(attempt_deadline, plan.config.security.max_error_body_bytes)
                        .await
                        .unwrap_or_default();
                    Err((Some(status), classify_redacted(provider.format, status, &body, key), ra))
                }
                Err(TransportError::Timeout) => Err((
                    None,
                    UpstreamError::new(ErrorKind::Timeout, format!("no response within {timeout} ms")),
                    None,
                )),
                Err(TransportError::Connect(m)) => Err((None, UpstreamError::new(ErrorKind::Connect, m), None)),
                Err(TransportError::TooLarge(n)) => Err((
                    None,
                    UpstreamError::new(ErrorKind::Malformed, format!("the response is larger than {n} bytes")),
                    None,
                )),
            };
            let ended = clock.now_ms();
            let latency = ended.saturating_sub(now);
            match result {
                Ok((status, output)) => {
                    plan.states.borrow_mut().record_success(target.provider, ended);
                    attempts.push(record(Some(status), None, latency, None));
                    return Dispatch { attempts, outcome: Dispatched::Served { target: ti, output } };
                }
                Err((status, mut err, retry_after_ms)) => {
                    err.message = redact(&err.message, key);
                    attempts.push(record(status, Some(err.kind), latency, Some(err.message.clone())));
                    if err.kind.counts_as_provider_failure() {
                        plan.states.borrow_mut().record_failure(target.provider, err.kind, ended);
                    } else {
                        plan.states.borrow_mut().record_alive(target.provider, ended);
                    }
                    let failure = Failure {
                        kind: err.kind,
                        retry_after_ms,
                        attempts_at_target: at_target,
                        time_left_ms: deadline.saturating_sub(ended),
                    };
                    match retry::decide(failure, policy, rng) {
                        Decision::RetrySame { wait_ms } => {
                            if attempts_left == 0 {
                                break 'targets;
                            }
                            clock.sleep(wait_ms).await;
                        }
                        Decision::FailOver => continue 'targets,
                        Decision::LargerContext => {
                            min_context = Some(min_context.unwrap_or(0).max(target.context_window));
                            context_error = Some((status.unwrap_or(400), err));
                            continue 'targets;
                        }
                        Decision::ToClient => {
                            return Dispatch {
                                attempts,
                                outcome: Dispatched::ToClient { status: status.unwrap_or(400), error: err },
                            };
                        }
                    }
                }
            }
        }
    }

    let last_was_context = attempts.last().is_some_and(|a| a.kind == Some(ErrorKind::ContextLength));
    let outcome = if let (Some((status, error)), true) = (context_error, last_was_context) {
        // The prompt is too long for every target left to try: the client
        // must shorten it, so say so rather than "all providers failed".
        Dispatched::ToClient { status, error }
    } else if attempts.is_empty() {
        match build_error {
            Some(e) => Dispatched::Rejected(e),
            None => Dispatched::Exhausted,
        }
    } else {
        Dispatched::Exhausted
    };
    Dispatch { attempts, outcome }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Format;

    const KEY: &str = "sk-ant-api03-Zx9_kq2LmN4pR7sT0vW3yB6dF8hJ1";

    fn body(format: Format, message: &str) -> String {
        let m = serde_json::to_string(message).unwrap();
        match format {
            Format::OpenAi => format!(r#"{{"error":{{"message":{m},"type":"invalid_request_error","code":null}}}}"#),
            Format::Anthropic => {
                format!(r#"{{"type":"error","error":{{"type":"invalid_request_error","message":{m}}}}}"#)
            }
            Format::Cohere => format!(r#"{{"message":{m}}}"#),
        }
    }

    /// The key at every offset around the 500-character clip, in each
    /// format's error body, plainly and JSON-escaped (which the raw body's
    /// redaction cannot see): no 8-character prefix of it survives.
    #[test]
    fn a_key_at_any_offset_around_the_clip_leaves_no_prefix() {
        for format in [Format::OpenAi, Format::Anthropic, Format::Cohere] {
            for offset in 440..=520 {
                let message = format!("{}{KEY} was refused", "x".repeat(offset));
                let plain = body(format, &message);
                let escaped = plain.replacen("sk-ant", "\\u0073k-ant", 1);
                assert!(!escaped.contains(KEY));
                for raw in [plain, escaped] {
                    let e = classify_redacted(format, 400, &raw, Some(KEY));
                    assert!(!e.message.contains(&KEY[..MIN_KEY_PREFIX]), "{format:?} {offset}: {}", e.message);
                    assert!(e.message.len() <= 520, "{format:?} {offset}: clipped");
                }
            }
        }
    }

    #[test]
    fn redaction_takes_whole_keys_and_trailing_prefixes() {
        let k = Some("sk-secret-0123456789");
        assert_eq!(
            redact("bad key sk-secret-0123456789, again sk-secret-0123456789", k),
            "bad key [redacted], again [redacted]"
        );
        assert_eq!(redact("cut at sk-secret-01...", k), "cut at [redacted]...");
        assert_eq!(redact("cut at sk-secret-01", k), "cut at [redacted]");
        assert_eq!(redact("ends with sk-secre...", k), "ends with [redacted]...");
        assert_eq!(
            redact("too short to tell: sk-secr...", Some("sk-other-0123456789")),
            "too short to tell: sk-secr..."
        );
        assert_eq!(redact("sk-secre", k), "[redacted]", "8 characters are enough");
        assert_eq!(redact("sk-secr", k), "sk-secr", "7 are not");
        assert_eq!(redact("nothing here", k), "nothing here");
        assert_eq!(redact("no key configured sk-secret-0123456789", None), "no key configured sk-secret-0123456789");
    }
}
