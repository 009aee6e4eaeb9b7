//! How many requests the server holds at once (running plus queued): past the capacity a new
//! request is refused with 429 at once instead of waiting without bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The server's capacity count: requests held (running plus queued) against a fixed cap.
pub struct Gate {
    held: AtomicUsize,
    /// Most requests held at once (`max_batch + queue`); past it requests get 429.
    pub capacity: usize,
}

/// One request's place; given back when dropped (answered, failed or abandoned).
pub struct Admission(Arc<Gate>);

impl Gate {
    /// A gate with room for `capacity` requests, none held yet.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self { held: AtomicUsize::new(0), capacity })
    }

    /// A place, or `None` when the server is full.
    pub fn try_admit(self: &Arc<Self>) -> Option<Admission> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < self.capacity).then_some(held + 1)
            })
            .ok()
            .map(|_| Admission(Arc::clone(self)))
    }

    /// How many requests hold a place now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_and_given_back() {
        let gate = Gate::new(2);
        let a = gate.try_admit().unwrap();
        let _b = gate.try_admit().unwrap();
        assert!(gate.try_admit().is_none());
        drop(a);
        assert_eq!(gate.held(), 1);
        assert!(gate.try_admit().is_some());
    }
}
