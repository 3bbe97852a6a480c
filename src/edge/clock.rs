//! The clock on Workers: `Date.now()` and `setTimeout` (through `Delay`).
//! On the deployed platform time advances only across I/O, which is all the
//! gateway measures.

use crate::clock::{Clock, Millis};
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerClock;

impl Clock for WorkerClock {
    fn now_ms(&self) -> Millis {
        // `Date.now()` itself: no `Date` object per reading.
        js_sys::Date::now() as Millis
    }
    async fn sleep(&self, ms: u64) {
        worker::Delay::from(Duration::from_millis(ms)).await
    }
}
