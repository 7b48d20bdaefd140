//! A one-shot answer from a service's own thread to a D-Bus method waiting for it: the method
//! awaits the [`Pending`] without blocking the bus's executor (other callers are served
//! meanwhile), and a thread that drops its [`Answer`] unanswered ends the wait with an error.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    value: Option<T>,
    /// The answerer is gone (answered or dropped).
    closed: bool,
    waker: Option<Waker>,
}

/// The answering side; send it to the thread that does the work.
pub struct Answer<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

/// The waiting side: resolves to the answer, or `None` when the answerer was dropped
/// without answering.
pub struct Pending<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

/// A new answer/wait pair.
pub fn oneshot<T>() -> (Answer<T>, Pending<T>) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        closed: false,
        waker: None,
    }));
    (Answer { slot: slot.clone() }, Pending { slot })
}

fn lock<T>(slot: &Mutex<Slot<T>>) -> std::sync::MutexGuard<'_, Slot<T>> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T> Answer<T> {
    pub fn send(self, value: T) {
        lock(&self.slot).value = Some(value);
        // Drop closes the slot and wakes the waiter.
    }
}

impl<T> Drop for Answer<T> {
    fn drop(&mut self) {
        let mut s = lock(&self.slot);
        s.closed = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

impl<T> Future for Pending<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = lock(&self.slot);
        if let Some(v) = s.value.take() {
            return Poll::Ready(Some(v));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_arrives_from_another_thread() {
        let (answer, pending) = oneshot();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            answer.send(42u32);
        });
        assert_eq!(zbus::block_on(pending), Some(42));
        t.join().expect("thread");
    }

    #[test]
    fn a_dropped_answerer_ends_the_wait() {
        let (answer, pending) = oneshot::<u32>();
        std::thread::spawn(move || drop(answer));
        assert_eq!(zbus::block_on(pending), None);
    }
}
