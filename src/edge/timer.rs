//! A deadline timer that can be waited on many times: one `setTimeout` per
//! idle period rather than one per read.
//!
//! A stream is read as a race between the next chunk and a deadline that
//! moves later with every chunk. `worker::Delay` would create a closure, a
//! `setTimeout` and a `clearTimeout` per chunk, and it keeps the first waker it
//! was polled with. Here the timeout stays armed while deadlines only move
//! later; when it fires early (the deadline moved on) it is armed again for
//! what is left. Every poll records the current waker, so the timer can be
//! awaited from whichever task reads the body.
//!
//! The timer belongs to one body, so to one request: a timeout set during a
//! request is the runtime's to cancel when that request ends, so one timer
//! shared by the isolate's requests would leave the others waiting on a
//! timeout that never fires (tried, and reverted for that reason).

use crate::clock::Clock;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;

use super::clock::WorkerClock;

#[derive(Default)]
struct Shared {
    waker: RefCell<Option<Waker>>,
    /// The armed timeout's handle, cleared when it fires.
    armed: Cell<Option<i32>>,
}

#[derive(Default)]
pub struct Timer {
    shared: Rc<Shared>,
    /// When the armed timeout fires (clock ms).
    fires_at: Cell<u64>,
    callback: Option<Closure<dyn FnMut()>>,
}

fn scope() -> web_sys::WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

impl Timer {
    /// Resolves once the clock reaches `deadline_ms`.
    pub fn until(&mut self, deadline_ms: u64) -> Until<'_> {
        Until { timer: self, deadline_ms }
    }

    fn arm(&mut self, now: u64, deadline_ms: u64) {
        if let Some(id) = self.shared.armed.get() {
            if self.fires_at.get() <= deadline_ms {
                return; // fires in time; polled again then
            }
            scope().clear_timeout_with_handle(id);
        }
        let shared = self.shared.clone();
        let callback = self.callback.get_or_insert_with(|| {
            Closure::new(move || {
                shared.armed.set(None);
                if let Some(w) = shared.waker.borrow_mut().take() {
                    w.wake();
                }
            })
        });
        let wait = deadline_ms.saturating_sub(now).clamp(1, i32::MAX as u64) as i32;
        let id =
            scope().set_timeout_with_callback_and_timeout_and_arguments_0(callback.as_ref().unchecked_ref(), wait).ok();
        self.shared.armed.set(id);
        self.fires_at.set(now + wait as u64);
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // The callback must not run once its closure is gone.
        if let Some(id) = self.shared.armed.take() {
            scope().clear_timeout_with_handle(id);
        }
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
            return Poll::Ready(());
        }
        *self.timer.shared.waker.borrow_mut() = Some(cx.waker().clone());
        self.timer.arm(now, deadline);
        Poll::Pending
    }
}
