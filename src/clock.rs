//! The clock trait: wall time in milliseconds and a way to wait.
//!
//! On Workers the edge implements it with `Date.now()` and `Delay`; in tests a
//! fake clock advances only when told to (or when something sleeps).

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

pub trait Clock {
    fn now_ms(&self) -> Millis;
    /// Waits `ms` milliseconds.
    async fn sleep(&self, ms: u64);
}

/// A clock for tests: time moves only through `advance` and `sleep`.
#[derive(Debug, Default)]
pub struct FakeClock {
    now: std::cell::Cell<Millis>,
}

impl FakeClock {
    pub fn new(start: Millis) -> Self {
        FakeClock { now: std::cell::Cell::new(start) }
    }
    pub fn advance(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
    }
    pub fn set(&self, t: Millis) {
        self.now.set(t);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> Millis {
        self.now.get()
    }
    async fn sleep(&self, ms: u64) {
        self.advance(ms);
    }
}

impl<C: Clock> Clock for &C {
    fn now_ms(&self) -> Millis {
        (**self).now_ms()
    }
    async fn sleep(&self, ms: u64) {
        (**self).sleep(ms).await
    }
}
