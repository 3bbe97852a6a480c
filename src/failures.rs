//! Failure accounting for one provider: a failure count that decays with a
//! half-life, reset by a success, and the weight penalty derived from it.
//!
//! The record is what KV holds per provider; two copies of it (this isolate's
//! and another's) merge without losing the newest events.

use serde::Serialize;

/// Failures beyond this count no longer lower a target's weight, so a target
/// keeps at least 0.5^16 of its weight: never starved to exactly zero.
pub const MAX_PENALTY_FAILURES: f64 = 16.0;

/// 0.5^x, the decay and penalty curve, without the maths library: `powf`
/// and `exp2` bring a 4 KiB table of constants into the wasm bundle. The
/// whole part of `x` is an exact power of two (its exponent bits); the
/// fraction `f` in [0, 1) is e^(-f ln 2) from its series, summed to the 17th
/// term (the rest is below 1e-19): within a few units in the last place of
/// `powf`, and whole numbers come out exact.
pub fn half_pow(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x >= 1075.0 {
        return 0.0; // below the smallest subnormal
    }
    if x <= -1024.0 {
        return f64::INFINITY;
    }
    let whole = x.floor();
    let t = (x - whole) * std::f64::consts::LN_2;
    // e^-t = 1 - t(1 - t/2(1 - t/3(...))), innermost term first.
    let mut fraction = 1.0;
    let mut k = 17.0;
    while k >= 1.0 {
        fraction = 1.0 - t * fraction / k;
        k -= 1.0;
    }
    // 2^-n for n in [-1023, 1074]: one factor per step the exponent field can hold.
    let mut n = whole as i64;
    let mut result = fraction;
    while n > 1022 {
        result *= f64::from_bits(1 << 52); // 2^-1022
        n -= 1022;
    }
    result * f64::from_bits(((1023 - n) as u64) << 52)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct FailureRecord {
    /// Failure count as of `last_failure_ms`; it decays from then on.
    pub failures: f64,
    pub last_failure_ms: u64,
    pub last_success_ms: u64,
    /// When this record last changed.
    pub updated_ms: u64,
}

impl FailureRecord {
    /// The failure count at `now`, decayed by `half_life_ms` since the last failure.
    pub fn effective(&self, now: u64, half_life_ms: u64) -> f64 {
        if self.failures <= 0.0 {
            return 0.0;
        }
        let age = now.saturating_sub(self.last_failure_ms) as f64;
        self.failures * half_pow(age / half_life_ms.max(1) as f64)
    }

    pub fn record_failure(&mut self, now: u64, half_life_ms: u64) {
        self.failures = self.effective(now, half_life_ms) + 1.0;
        self.last_failure_ms = now;
        self.updated_ms = now;
    }

    pub fn record_success(&mut self, now: u64) {
        self.failures = 0.0;
        self.last_success_ms = now;
        self.updated_ms = now;
    }

    /// The factor a target's weight is multiplied by: 0.5^failures, with the
    /// count capped so that the factor never reaches zero.
    pub fn penalty(&self, now: u64, half_life_ms: u64) -> f64 {
        half_pow(self.effective(now, half_life_ms).min(MAX_PENALTY_FAILURES))
    }

    /// The whole-number failure level, the unit in which changes are worth
    /// sharing (see `state.rs`).
    pub fn level(&self, now: u64, half_life_ms: u64) -> u32 {
        self.effective(now, half_life_ms).min(MAX_PENALTY_FAILURES).floor() as u32
    }

    /// Merges two views of the same provider. The newest success and failure
    /// times both survive; a success newer than every failure clears the
    /// count; otherwise the larger count (decayed to the newer failure time) wins.
    pub fn merge(&self, other: &FailureRecord, half_life_ms: u64) -> FailureRecord {
        let last_failure_ms = self.last_failure_ms.max(other.last_failure_ms);
        let last_success_ms = self.last_success_ms.max(other.last_success_ms);
        let updated_ms = self.updated_ms.max(other.updated_ms);
        let failures = if last_success_ms > last_failure_ms {
            0.0
        } else {
            self.effective(last_failure_ms, half_life_ms).max(other.effective(last_failure_ms, half_life_ms))
        };
        FailureRecord { failures, last_failure_ms, last_success_ms, updated_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const HL: u64 = 60_000;

    #[test]
    fn half_pow_agrees_with_powf_and_is_exact_at_whole_numbers() {
        // Fine steps where decay and penalties live, coarse ones out to the
        // subnormal range.
        let fine = (0..200_000).map(|i| i as f64 * 0.000_123_4);
        let coarse = (0..10_000).map(|i| i as f64 * 0.1073);
        for x in fine.chain(coarse).chain([-3.5, -0.25, 1e-300, 0.999_999_999_999]) {
            let (got, want) = (half_pow(x), 0.5f64.powf(x));
            let tolerance = 4.0 * f64::EPSILON * want + f64::from_bits(1); // the last ulps, or a subnormal step
            assert!((got - want).abs() <= tolerance, "0.5^{x}: {got} against {want}");
        }
        for k in -1023..=1074 {
            assert_eq!(half_pow(k as f64), 0.5f64.powi(k), "0.5^{k}");
        }
    }

    #[test]
    fn half_pow_at_the_edges() {
        assert!(half_pow(f64::NAN).is_nan());
        assert_eq!(half_pow(f64::INFINITY), 0.0);
        assert_eq!(half_pow(1075.0), 0.0);
        assert_eq!(half_pow(1e12), 0.0);
        assert_eq!(half_pow(f64::NEG_INFINITY), f64::INFINITY);
        assert_eq!(half_pow(-1023.5), f64::INFINITY);
        assert_eq!(half_pow(-0.0), 1.0);
        // The penalty for the capped count keeps a target's weight above zero.
        assert_eq!(half_pow(MAX_PENALTY_FAILURES), 1.0 / 65_536.0);
    }

    #[test]
    fn failures_decay_by_half_each_half_life() {
        let mut r = FailureRecord::default();
        r.record_failure(1_000, HL);
        r.record_failure(1_000, HL);
        assert_eq!(r.effective(1_000, HL), 2.0);
        assert!((r.effective(1_000 + HL, HL) - 1.0).abs() < 1e-9);
        assert!((r.effective(1_000 + 2 * HL, HL) - 0.5).abs() < 1e-9);
        // An hour later a provider is no longer penalised.
        assert!(r.penalty(1_000 + 3_600_000, HL) > 0.999);
    }

    #[test]
    fn penalty_halves_per_failure_and_never_reaches_zero() {
        let mut r = FailureRecord::default();
        assert_eq!(r.penalty(0, HL), 1.0);
        r.record_failure(0, HL);
        assert_eq!(r.penalty(0, HL), 0.5);
        r.record_failure(0, HL);
        assert_eq!(r.penalty(0, HL), 0.25);
        for _ in 0..10_000 {
            r.record_failure(0, HL);
        }
        assert!(r.penalty(0, HL) > 0.0);
        assert_eq!(r.level(0, HL), 16);
    }

    #[test]
    fn success_resets() {
        let mut r = FailureRecord::default();
        r.record_failure(0, HL);
        r.record_success(10);
        assert_eq!(r.effective(10, HL), 0.0);
        assert_eq!(r.penalty(10, HL), 1.0);
        assert_eq!(r.last_success_ms, 10);
    }

    #[test]
    fn merge_keeps_newest_events() {
        let mut a = FailureRecord::default();
        a.record_failure(100, HL);
        a.record_failure(100, HL);
        let mut b = FailureRecord::default();
        b.record_failure(200, HL);
        let m = a.merge(&b, HL);
        assert_eq!(m.last_failure_ms, 200);
        assert!(m.failures > 1.9 && m.failures <= 2.0, "{m:?}");
        // A success after all failures clears the count, whichever side saw it.
        let mut c = FailureRecord::default();
        c.record_success(300);
        assert_eq!(m.merge(&c, HL).failures, 0.0);
        assert_eq!(c.merge(&m, HL).failures, 0.0);
        // Merging is symmetric.
        assert_eq!(a.merge(&b, HL), b.merge(&a, HL));
    }
}
