//! Deadlines for upstream reads, on one shared timer per isolate.
//!
//! Every upstream read races a deadline: the response head against the
//! attempt's timeout, each streamed chunk against the idle timeout. A
//! `setTimeout` per deadline (what `worker::Delay` does) was one of the larger
//! costs per request in the benchmark, and per chunk for streams. Here all
//! pending deadlines sit in one ordered map, and a single `setTimeout` is armed
//! for the earliest. A new deadline later than that (the usual case: the same
//! timeout from a later start) costs no JavaScript call at all; a deadline
//! that is cancelled (the read finished first) is removed from the map. When
//! the timeout fires it wakes whatever is due and arms itself for the next.

use crate::clock::Clock;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;

use super::clock::WorkerClock;

/// (deadline in clock ms, unique id)
type Key = (u64, u64);

#[derive(Default)]
struct Wheel {
    pending: BTreeMap<Key, Waker>,
    next_id: u64,
    /// The armed timeout: its handle and when it fires.
    armed: Option<(i32, u64)>,
    callback: Option<Closure<dyn FnMut()>>,
}

thread_local! {
    static WHEEL: RefCell<Wheel> = RefCell::new(Wheel::default());
}

fn scope() -> web_sys::WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

impl Wheel {
    /// Makes sure a timeout fires no later than the earliest deadline.
    fn arm(&mut self, now: u64) {
        let Some(&(earliest, _)) = self.pending.keys().next() else {
            return;
        };
        if let Some((id, fires_at)) = self.armed {
            if fires_at <= earliest {
                return;
            }
            scope().clear_timeout_with_handle(id);
            self.armed = None;
        }
        let callback = self.callback.get_or_insert_with(|| Closure::new(fire));
        let wait = earliest.saturating_sub(now).clamp(1, i32::MAX as u64) as i32;
        if let Ok(id) =
            scope().set_timeout_with_callback_and_timeout_and_arguments_0(callback.as_ref().unchecked_ref(), wait)
        {
            self.armed = Some((id, now + wait as u64));
        }
    }
}

/// The timeout fired: wake every deadline that is due, arm for the next.
fn fire() {
    let now = WorkerClock.now_ms();
    let due: Vec<Waker> = WHEEL.with(|w| {
        let mut w = w.borrow_mut();
        w.armed = None;
        let later = w.pending.split_off(&(now + 1, 0));
        let due = std::mem::replace(&mut w.pending, later);
        w.arm(now);
        due.into_values().collect()
    });
    // Woken outside the borrow: a woken task may register a new deadline.
    for waker in due {
        waker.wake();
    }
}

/// One reader's deadline slot (a body keeps one for its life).
#[derive(Default)]
pub struct Timer {
    key: Option<Key>,
}

impl Timer {
    /// Resolves once the clock reaches `deadline_ms`.
    pub fn until(&mut self, deadline_ms: u64) -> Until<'_> {
        Until { timer: self, deadline_ms }
    }

    fn cancel(&mut self) {
        if let Some(key) = self.key.take() {
            WHEEL.with(|w| w.borrow_mut().pending.remove(&key));
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.cancel();
    }
}

pub struct Until<'a> {
    timer: &'a mut Timer,
    deadline_ms: u64,
}

impl Future for Until<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = WorkerClock.now_ms();
        let deadline = self.deadline_ms;
        if now >= deadline {
            self.timer.cancel();
            return Poll::Ready(());
        }
        let key = match self.timer.key {
            Some(k) if k.0 == deadline => k,
            _ => {
                self.timer.cancel();
                let id = WHEEL.with(|w| {
                    let mut w = w.borrow_mut();
                    w.next_id += 1;
                    w.next_id
                });
                (deadline, id)
            }
        };
        self.timer.key = Some(key);
        WHEEL.with(|w| {
            let mut w = w.borrow_mut();
            // (Re)registered with the current waker: the deadline may be
            // awaited from another task than last time.
            w.pending.insert(key, cx.waker().clone());
            w.arm(now);
        });
        Poll::Pending
    }
}

impl Drop for Until<'_> {
    /// A race the read won: the deadline is no longer anyone's concern.
    fn drop(&mut self) {
        self.timer.cancel();
    }
}
