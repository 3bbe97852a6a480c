//! The retry policy: after a failed attempt, try the same target again (and
//! after how long), move on to the next target, or give up and answer the
//! client. Exponential backoff with jitter; Retry-After honoured when it fits
//! the deadline and never undercut.

use crate::config::Policy;
use crate::rng::Rng;
use crate::taxonomy::{Disposition, ErrorKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try the same target again after this many milliseconds.
    RetrySame { wait_ms: u64 },
    /// Move on to the next target.
    FailOver,
    /// Move on, but only to targets with a larger context window.
    LargerContext,
    /// Stop and give the client the provider's reason.
    ToClient,
}

/// What the policy needs to know about the failed attempt.
#[derive(Debug, Clone, Copy)]
pub struct Failure {
    pub kind: ErrorKind,
    /// The provider's Retry-After, in milliseconds from now.
    pub retry_after_ms: Option<u64>,
    /// Attempts already made at this target, this one included (1 for the first).
    pub attempts_at_target: u32,
    /// Time left before the request's deadline.
    pub time_left_ms: u64,
}

pub fn decide<R: Rng>(f: Failure, policy: &Policy, rng: &mut R) -> Decision {
    match f.kind.disposition() {
        Disposition::ToClient => Decision::ToClient,
        Disposition::LargerContext => Decision::LargerContext,
        Disposition::FailOver => Decision::FailOver,
        Disposition::Retryable => {
            if f.attempts_at_target > policy.retries_per_target {
                return Decision::FailOver;
            }
            let wait_ms = match f.retry_after_ms {
                // Never sooner than asked; only if the wait is reasonable and
                // leaves time for the attempt itself.
                Some(ra) if ra > policy.max_retry_after_ms => return Decision::FailOver,
                Some(ra) => ra,
                None => backoff_ms(f.attempts_at_target, policy, rng),
            };
            // The retry must leave room for a reasonable attempt: at least
            // the wait plus a quarter of an attempt timeout.
            if wait_ms + policy.attempt_timeout_ms / 4 >= f.time_left_ms {
                return Decision::FailOver;
            }
            Decision::RetrySame { wait_ms }
        }
    }
}

/// Exponential backoff with "equal jitter": half the delay is fixed and half
/// random, so retries spread out but never fire at once.
/// `attempt` is 1 for the wait after the first failure.
pub fn backoff_ms<R: Rng>(attempt: u32, policy: &Policy, rng: &mut R) -> u64 {
    let exp = attempt.saturating_sub(1).min(20);
    let d = policy.backoff_base_ms.saturating_mul(1u64 << exp).min(policy.backoff_max_ms);
    let half = d / 2;
    half + (rng.next_f64() * (d - half) as f64) as u64
}

/// Reads `retry-after-ms` (milliseconds) or `retry-after` (seconds, or an
/// HTTP date), as the OpenAI and Anthropic SDKs do: the `-ms` header first.
pub fn parse_retry_after(retry_after: Option<&str>, retry_after_ms: Option<&str>, now_ms: u64) -> Option<u64> {
    if let Some(ms) = retry_after_ms.and_then(|v| scaled_up(v.trim(), 0)) {
        return Some(ms);
    }
    let v = retry_after?.trim();
    if v.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '-') {
        return scaled_up(v, 3);
    }
    let at = parse_http_date(v)?;
    Some(at.saturating_sub(now_ms))
}

/// A non-negative decimal (`2`, `0.25`) times 10^`shift`, rounded up and
/// saturating; `None` for anything else. Written out rather than through
/// `str::parse::<f64>`, whose parser would be in the bundle for this alone.
fn scaled_up(s: &str, shift: u32) -> Option<u64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if (int.is_empty() && frac.is_empty()) || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digit = |b: u8| u64::from(b - b'0');
    let mut v = int.bytes().fold(0u64, |v, b| v.saturating_mul(10).saturating_add(digit(b)));
    let mut frac = frac.bytes();
    for _ in 0..shift {
        v = v.saturating_mul(10).saturating_add(frac.next().map_or(0, digit));
    }
    if frac.any(|b| b != b'0') {
        v = v.saturating_add(1);
    }
    Some(v)
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into epoch milliseconds.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let rest = s.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let m: u64 = hms.next()?.parse().ok()?;
    let sec: u64 = hms.next()?.parse().ok()?;
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day as i64);
    if days < 0 {
        return None;
    }
    Some(((days as u64 * 86_400) + h * 3600 + m * 60 + sec) * 1000)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn policy() -> Policy {
        Policy {
            attempt_timeout_ms: 1_000,
            deadline_ms: 10_000,
            max_attempts: 6,
            retries_per_target: 1,
            backoff_base_ms: 100,
            backoff_max_ms: 1_000,
            max_retry_after_ms: 3_000,
            allow_client_order: true,
            ..Policy::default()
        }
    }
    fn f(kind: ErrorKind, ra: Option<u64>, n: u32, left: u64) -> Failure {
        Failure { kind, retry_after_ms: ra, attempts_at_target: n, time_left_ms: left }
    }

    #[test]
    fn decisions_follow_the_taxonomy() {
        let p = policy();
        let mut r = SplitMix64::new(3);
        assert!(matches!(decide(f(ErrorKind::Server, None, 1, 9_000), &p, &mut r), Decision::RetrySame { .. }));
        assert!(matches!(decide(f(ErrorKind::Connect, None, 1, 9_000), &p, &mut r), Decision::RetrySame { .. }));
        assert_eq!(decide(f(ErrorKind::Server, None, 2, 9_000), &p, &mut r), Decision::FailOver, "retries are bounded");
        assert_eq!(decide(f(ErrorKind::Timeout, None, 1, 9_000), &p, &mut r), Decision::FailOver);
        assert_eq!(decide(f(ErrorKind::Auth, None, 1, 9_000), &p, &mut r), Decision::FailOver);
        assert_eq!(decide(f(ErrorKind::ContextLength, None, 1, 9_000), &p, &mut r), Decision::LargerContext);
        assert_eq!(decide(f(ErrorKind::ContentPolicy, None, 1, 9_000), &p, &mut r), Decision::ToClient);
        assert_eq!(decide(f(ErrorKind::BadRequest, None, 1, 9_000), &p, &mut r), Decision::ToClient);
    }

    #[test]
    fn retry_after_is_honoured_only_when_it_fits() {
        let p = policy();
        let mut r = SplitMix64::new(3);
        assert_eq!(
            decide(f(ErrorKind::RateLimited, Some(2_000), 1, 9_000), &p, &mut r),
            Decision::RetrySame { wait_ms: 2_000 }
        );
        // Longer than the gateway is willing to wait.
        assert_eq!(decide(f(ErrorKind::RateLimited, Some(4_000), 1, 9_000), &p, &mut r), Decision::FailOver);
        // Does not fit the deadline.
        assert_eq!(decide(f(ErrorKind::RateLimited, Some(2_000), 1, 2_100), &p, &mut r), Decision::FailOver);
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = policy();
        let mut r = SplitMix64::new(9);
        for attempt in 1..10 {
            let full = (100u64 << (attempt - 1)).min(1_000);
            for _ in 0..200 {
                let d = backoff_ms(attempt, &p, &mut r);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d}");
            }
        }
        let spread: std::collections::HashSet<u64> = (0..50).map(|_| backoff_ms(3, &p, &mut r)).collect();
        assert!(spread.len() > 10, "jitter spreads retries");
    }

    #[test]
    fn parses_retry_after_forms() {
        assert_eq!(parse_retry_after(Some("2"), None, 0), Some(2_000));
        assert_eq!(parse_retry_after(Some("0.5"), None, 0), Some(500));
        assert_eq!(parse_retry_after(Some("2"), Some("1500"), 0), Some(1_500));
        assert_eq!(parse_retry_after(Some("soon"), None, 0), None);
        assert_eq!(parse_retry_after(Some("-3"), None, 0), None);
        assert_eq!(parse_retry_after(Some("1.0001"), None, 0), Some(1_001), "rounded up to the millisecond");
        assert_eq!(parse_retry_after(Some(" 3 "), Some("2.5"), 0), Some(3), "the -ms header first, rounded up");
        assert_eq!(parse_retry_after(Some("4"), Some("-1"), 0), Some(4_000), "a broken -ms header is passed over");
        assert_eq!(parse_retry_after(Some("4"), Some("soon"), 0), Some(4_000));
        assert_eq!(parse_retry_after(Some(".5"), None, 0), Some(500));
        assert_eq!(parse_retry_after(Some("."), None, 0), None);
        assert_eq!(parse_retry_after(Some("1.2.3"), None, 0), None);
        assert_eq!(parse_retry_after(Some("99999999999999999999999"), None, 0), Some(u64::MAX), "saturates");
        assert_eq!(parse_retry_after(None, None, 0), None);
        let at = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(at, 784_111_777_000);
        assert_eq!(parse_retry_after(Some("Sun, 06 Nov 1994 08:49:37 GMT"), None, at - 3_000), Some(3_000));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37"), None);
    }
}
