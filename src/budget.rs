//! The retry budget for attempts forced through unavailable targets, after
//! tower's `retry::budget` and linkerd's retry budgets.
//!
//! When every eligible target of a route is unavailable (circuit open, or
//! health down), the gateway still tries them rather than answer "no healthy
//! providers" without trying. Left unbounded, a total outage would turn every
//! request into a full round of attempts at providers that are known to be
//! failing, just when a recovering provider can least afford it. So forced
//! attempts are paid for:
//!
//! - every request the gateway routes deposits `ratio` of a token;
//! - every forced attempt withdraws one whole token, and is not made when the
//!   balance is below one;
//! - deposits (and withdrawals) expire after `window`, so a quiet hour does
//!   not save up a storm of forced attempts;
//! - a reserve of `min_per_s` tokens a second (over the window) is always
//!   there, so that an isolate with little traffic still tries now and then.
//!
//! Over any window, forced attempts are therefore at most
//! `ratio × requests + min_per_s × window`. The budget is one per isolate and
//! not shared: it bounds what each isolate sends, wherever it is.
//!
//! Pure: time comes in as an argument, so tests drive it with a fake clock.

use crate::api::ApiError;
use crate::config::BreakerSettings;
use crate::http::Reply;

/// Balances are kept in thousandths of a token.
const TOKEN: i64 = 1000;
/// The window is kept as this many slots, in a ring; a slot's deposits and
/// withdrawals expire together.
const SLOTS: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryBudget {
    /// Thousandths of a token each request deposits.
    deposit: i64,
    /// Thousandths of a token always available over a window (the floor).
    reserve: i64,
    window_ms: u64,
    slot_ms: u64,
    /// The ring of slots: (slot start, balance in thousandths); a slot whose
    /// start is a window or more ago counts for nothing.
    slots: [(u64, i64); SLOTS],
}

impl RetryBudget {
    /// `ratio`: the share of a token each request deposits; `min_per_s`:
    /// tokens a second available whatever the traffic; `window_s`: how long
    /// deposits and withdrawals count.
    pub fn new(ratio: f64, min_per_s: f64, window_s: u64) -> Self {
        let window_ms = window_s.max(1) * 1000;
        RetryBudget {
            deposit: (ratio.max(0.0) * TOKEN as f64).round() as i64,
            reserve: (min_per_s.max(0.0) * window_s.max(1) as f64 * TOKEN as f64).round() as i64,
            window_ms,
            slot_ms: (window_ms / SLOTS as u64).max(1),
            slots: [(0, 0); SLOTS],
        }
    }

    pub fn from_settings(s: &BreakerSettings) -> Self {
        RetryBudget::new(s.retry_budget_ratio, s.retry_budget_min_per_s, s.retry_budget_window_s)
    }

    /// Where `now` falls in the ring.
    fn slot_of(&self, now: u64) -> usize {
        ((now / self.slot_ms) % SLOTS as u64) as usize
    }

    fn live(&self, start: u64, now: u64) -> bool {
        start <= now && start.saturating_add(self.window_ms) > now
    }

    /// Adds `amount` to the slot `now` falls in, starting it afresh if what
    /// it holds is from an earlier turn of the ring.
    fn add(&mut self, now: u64, amount: i64) {
        let start = now - now % self.slot_ms;
        let k = self.slot_of(now);
        if let Some(slot) = self.slots.get_mut(k) {
            if slot.0 != start {
                *slot = (start, 0);
            }
            slot.1 += amount;
        }
    }

    fn balance_at(&self, now: u64) -> i64 {
        let live: i64 = self.slots.iter().filter(|&&(start, _)| self.live(start, now)).map(|&(_, b)| b).sum();
        self.reserve + live
    }

    /// A request was routed: it deposits its share.
    pub fn deposit(&mut self, now: u64) {
        self.add(now, self.deposit);
    }

    /// Takes one token for a forced attempt; `false` (and nothing taken) when
    /// the balance is below one token.
    pub fn withdraw(&mut self, now: u64) -> bool {
        if self.balance_at(now) < TOKEN {
            return false;
        }
        self.add(now, -TOKEN);
        true
    }

    /// Tokens available now.
    pub fn tokens(&self, now: u64) -> f64 {
        self.balance_at(now) as f64 / TOKEN as f64
    }

    /// When a token will be available again if no request deposits one: as
    /// the oldest withdrawals expire. `None` if expiry alone never gets there.
    pub fn next_token_ms(&self, now: u64) -> Option<u64> {
        let mut balance = self.balance_at(now);
        if balance >= TOKEN {
            return Some(now);
        }
        // Oldest first: the ring from the slot after the current one round.
        let current = self.slot_of(now);
        for j in 1..=SLOTS {
            let Some(&(start, b)) = self.slots.get((current + j) % SLOTS) else { continue };
            if !self.live(start, now) {
                continue;
            }
            balance -= b;
            if balance >= TOKEN {
                return Some(start.saturating_add(self.window_ms));
            }
        }
        None
    }
}

/// The answer when every target is unavailable and the retry budget has
/// nothing left: an immediate 503, with no upstream attempt, that says when
/// the earliest circuit half-opens (`retry_at_ms`).
pub fn unavailable_reply(retry_at_ms: u64, now: u64) -> Reply {
    let retry_after_s = retry_at_ms.saturating_sub(now).div_ceil(1000).max(1);
    let e = ApiError::new(
        503,
        "upstream_error",
        format!(
            "every provider for this model is unavailable: their circuits are open (or their health checks fail) \
             and the budget for trying them anyway is spent; retry after {retry_after_s} s"
        ),
    )
    .with_code("all_providers_unavailable");
    let mut r = Reply::error(&e);
    r.headers.push(("retry-after", retry_after_s.to_string()));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake clock: the tests move `now` by hand.
    struct Clock(u64);
    impl Clock {
        fn tick(&mut self, ms: u64) -> u64 {
            self.0 += ms;
            self.0
        }
    }

    #[test]
    fn the_floor_allows_min_per_s_over_a_window_without_traffic() {
        let mut b = RetryBudget::new(0.2, 1.0, 10);
        let mut c = Clock(1_000_000);
        let mut taken = 0;
        for _ in 0..100 {
            if b.withdraw(c.0) {
                taken += 1;
            }
        }
        assert_eq!(taken, 10, "1 a second over a 10 s window");
        assert!(!b.withdraw(c.tick(5_000)), "still spent half a window later");
        // Once the window has passed, the withdrawals have expired.
        assert!(b.withdraw(c.tick(5_000)));
    }

    #[test]
    fn requests_deposit_a_share_of_a_token() {
        let mut b = RetryBudget::new(0.2, 0.0, 10);
        let mut c = Clock(1_000_000);
        assert!(!b.withdraw(c.0), "no floor, no traffic: nothing");
        for _ in 0..10 {
            b.deposit(c.tick(10));
        }
        assert!((b.tokens(c.0) - 2.0).abs() < 1e-9);
        assert!(b.withdraw(c.0));
        assert!(b.withdraw(c.0));
        assert!(!b.withdraw(c.0), "ten requests buy two forced attempts");
    }

    #[test]
    fn deposits_expire_after_the_window() {
        let mut b = RetryBudget::new(0.5, 0.0, 10);
        let mut c = Clock(1_000_000);
        for _ in 0..100 {
            b.deposit(c.0);
        }
        assert!(b.tokens(c.0) >= 50.0);
        c.tick(10_000);
        assert_eq!(b.tokens(c.0), 0.0, "a quiet window does not save up a storm");
        assert!(!b.withdraw(c.0));
    }

    #[test]
    fn under_sustained_load_forced_attempts_stay_within_ratio_and_floor() {
        let mut b = RetryBudget::new(0.2, 1.0, 10);
        let mut c = Clock(1_000_000);
        let start = c.0;
        let (mut requests, mut attempts) = (0u64, 0u64);
        // 100 requests a second for a minute, each wanting three forced attempts.
        for _ in 0..6_000 {
            b.deposit(c.tick(10));
            requests += 1;
            for _ in 0..3 {
                if b.withdraw(c.0) {
                    attempts += 1;
                }
            }
        }
        let secs = (c.0 - start) / 1000;
        let bound = requests as f64 * 0.2 + (secs + 10) as f64 * 1.0;
        assert!(attempts as f64 <= bound, "{attempts} forced attempts, bound {bound}");
        assert!(attempts as f64 >= requests as f64 * 0.2, "{attempts}: the deposits are spent");
    }

    #[test]
    fn next_token_is_when_the_oldest_withdrawal_expires() {
        let mut b = RetryBudget::new(0.0, 0.5, 10);
        let mut c = Clock(1_000_000);
        assert_eq!(b.next_token_ms(c.0), Some(c.0));
        assert!(b.withdraw(c.0));
        c.tick(2_000);
        assert!(b.withdraw(c.0));
        c.tick(2_000);
        assert!(b.withdraw(c.0));
        c.tick(2_000);
        assert!(b.withdraw(c.0));
        c.tick(2_000);
        assert!(b.withdraw(c.0));
        assert!(!b.withdraw(c.0), "5 tokens (0.5 a second over 10 s) spent");
        assert_eq!(b.next_token_ms(c.0), Some(1_010_000), "the first withdrawal comes back");
        let none = RetryBudget::new(0.0, 0.0, 10);
        assert_eq!(none.next_token_ms(c.0), None);
    }

    #[test]
    fn the_spent_budget_answer_is_a_503_with_retry_after() {
        let r = unavailable_reply(1_012_300, 1_000_000);
        assert_eq!(r.status, 503);
        assert!(r.headers.contains(&("retry-after", "13".to_owned())));
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"]["code"], "all_providers_unavailable");
        assert!(v["error"]["message"].as_str().unwrap().contains("circuits are open"));
        assert_eq!(unavailable_reply(0, 1_000_000).headers, vec![("retry-after", "1".to_owned())]);
    }
}
