//! One deadline per upstream fetch, enforced by one `setTimeout` that aborts
//! the fetch when it passes.
//!
//! A fetch is awaited plainly (its head, its whole body, or each chunk of a
//! stream): nothing races each read against a timer future. Instead the
//! current deadline sits in a cell that every read moves (later, as a
//! stream makes progress); one timeout is armed for it, and when it fires
//! it either finds the deadline passed, marks the fetch timed out and aborts
//! it (the pending read then fails, and the reader reports a timeout), or
//! finds the deadline moved on and arms itself again for what is left. So a
//! stream costs one timer per idle period, not a timer, a closure and a
//! future per chunk.
//!
//! A timeout belongs to the request that set it (the runtime cancels it when
//! that request ends), so each fetch has its own.

use crate::clock::Clock;
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::AbortController;

use super::clock::WorkerClock;

#[derive(Default)]
struct Shared {
    /// The deadline now (clock ms).
    deadline: Cell<u64>,
    /// The armed timeout's handle, cleared when it fires.
    armed: Cell<Option<i32>>,
    /// When the armed timeout fires (clock ms).
    fires_at: Cell<u64>,
    /// The deadline passed and the fetch was aborted.
    timed_out: Cell<bool>,
}

pub struct Deadline {
    shared: Rc<Shared>,
    callback: Closure<dyn FnMut()>,
}

fn scope() -> web_sys::WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn arm(shared: &Shared, callback: &js_sys::Function, now: u64) {
    let wait = shared.deadline.get().saturating_sub(now).clamp(1, i32::MAX as u64) as i32;
    let id = scope().set_timeout_with_callback_and_timeout_and_arguments_0(callback, wait).ok();
    shared.armed.set(id);
    shared.fires_at.set(now + wait as u64);
}

impl Deadline {
    /// A deadline that aborts `controller` when it passes.
    pub fn new(controller: AbortController) -> Deadline {
        let shared = Rc::new(Shared::default());
        let callback = {
            let shared = shared.clone();
            // The closure re-arms itself through the global handle it is given.
            let me: Rc<Cell<Option<js_sys::Function>>> = Rc::default();
            let me2 = me.clone();
            let c = Closure::<dyn FnMut()>::new(move || {
                shared.armed.set(None);
                let now = WorkerClock.now_ms();
                if now >= shared.deadline.get() {
                    shared.timed_out.set(true);
                    controller.abort();
                } else if let Some(f) = me2.take() {
                    arm(&shared, &f, now);
                    me2.set(Some(f));
                }
            });
            me.set(Some(c.as_ref().unchecked_ref::<js_sys::Function>().clone()));
            c
        };
        Deadline { shared, callback }
    }

    /// Sets the deadline (clock ms) for what is awaited next.
    pub fn set(&self, deadline_ms: u64) {
        let s = &self.shared;
        s.deadline.set(deadline_ms);
        match s.armed.get() {
            // Armed in time: it fires no later than the deadline, and re-arms
            // then (the usual case for a stream: no clock read, no timer call).
            Some(_) if s.fires_at.get() <= deadline_ms => {}
            Some(id) => {
                scope().clear_timeout_with_handle(id);
                arm(s, self.callback.as_ref().unchecked_ref(), WorkerClock.now_ms());
            }
            None => arm(s, self.callback.as_ref().unchecked_ref(), WorkerClock.now_ms()),
        }
    }

    /// Whether the deadline passed (and the fetch was aborted for it).
    pub fn timed_out(&self) -> bool {
        self.shared.timed_out.get()
    }

    /// No more waiting: the timeout is cleared.
    pub fn disarm(&self) {
        if let Some(id) = self.shared.armed.take() {
            scope().clear_timeout_with_handle(id);
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        // The callback must not run once its closure is gone.
        self.disarm();
    }
}
