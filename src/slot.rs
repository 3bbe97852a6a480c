//! A single-threaded one-value slot that many tasks can wait on: the mirror
//! puts its answer here while the primary path and the comparison wait.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

struct Inner<T> {
    value: Option<T>,
    wakers: Vec<Waker>,
}

/// Cloning gives another handle to the same slot.
pub struct Slot<T>(Rc<RefCell<Inner<T>>>);

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Slot(self.0.clone())
    }
}

impl<T: Clone> Default for Slot<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> Slot<T> {
    pub fn new() -> Self {
        Slot(Rc::new(RefCell::new(Inner { value: None, wakers: Vec::new() })))
    }

    /// Fills the slot (once; later values are ignored) and wakes the waiters.
    pub fn set(&self, value: T) {
        let wakers = {
            let mut inner = self.0.borrow_mut();
            if inner.value.is_some() {
                return;
            }
            inner.value = Some(value);
            std::mem::take(&mut inner.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    pub fn get(&self) -> Option<T> {
        self.0.borrow().value.clone()
    }

    /// Resolves with the value once the slot is filled.
    pub fn wait(&self) -> Wait<T> {
        Wait(self.clone())
    }
}

pub struct Wait<T>(Slot<T>);

impl<T: Clone> Future for Wait<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut inner = (self.0).0.borrow_mut();
        match &inner.value {
            Some(v) => Poll::Ready(v.clone()),
            None => {
                inner.wakers.push(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_executor::LocalPool;
    use futures_util::task::LocalSpawnExt;

    #[test]
    fn waiters_get_the_value_once_it_is_set() {
        let mut pool = LocalPool::new();
        let slot: Slot<u32> = Slot::new();
        let seen = Rc::new(RefCell::new(Vec::new()));
        for _ in 0..2 {
            let (slot, seen) = (slot.clone(), seen.clone());
            pool.spawner()
                .spawn_local(async move {
                    let v = slot.wait().await;
                    seen.borrow_mut().push(v);
                })
                .unwrap();
        }
        pool.run_until_stalled();
        assert!(seen.borrow().is_empty());
        slot.set(7);
        slot.set(8);
        pool.run_until_stalled();
        assert_eq!(*seen.borrow(), vec![7, 7]);
        assert_eq!(slot.get(), Some(7));
    }
}
