//! Positions in the server-wide timeline stream (`events.stream_ordering`).
//!
//! Writers to different rooms commit in parallel, so positions can commit
//! out of order: 7 may be visible before 6 is. A reader (sync) that took
//! "everything up to 7" and later asked for "everything after 7" would miss
//! 6 for good. So positions are handed out here, in memory, and
//! [`StreamPositions::current`] is the highest position below which every
//! handed-out position is finished (committed or abandoned): readers read
//! up to it, never past it. This assumes one process writes the stream.
//!
//! It also knows the latest position handed to a state event: state (and
//! so membership) cannot have changed in a range that ends before it, and
//! sync skips reading it then.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct Inner {
    next: i64,
    in_flight: BTreeSet<i64>,
    /// The highest position handed to a state event, committed or not (or
    /// at start-up, the highest position used).
    last_state: i64,
}

#[derive(Debug, Clone)]
pub struct StreamPositions(Arc<Mutex<Inner>>);

/// A position being written. Dropping it (after commit, or on failure)
/// lets [`StreamPositions::current`] move past it.
#[derive(Debug)]
pub struct Reservation {
    pub position: i64,
    owner: StreamPositions,
}

impl StreamPositions {
    /// Continues after `max_used`, the highest position in the database.
    pub fn new(max_used: i64) -> Self {
        Self(Arc::new(Mutex::new(Inner {
            next: max_used + 1,
            in_flight: BTreeSet::new(),
            last_state: max_used,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The critical sections cannot panic; a poisoned lock still holds
        // consistent data.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next position, for a state event or another.
    pub fn reserve(&self, state_event: bool) -> Reservation {
        let mut inner = self.lock();
        let position = inner.next;
        inner.next += 1;
        if state_event {
            inner.last_state = position;
        }
        inner.in_flight.insert(position);
        Reservation {
            position,
            owner: self.clone(),
        }
    }

    /// No state event has a position above this one.
    pub fn last_state(&self) -> i64 {
        self.lock().last_state
    }

    /// Every position up to this one is committed or abandoned.
    pub fn current(&self) -> i64 {
        let inner = self.lock();
        match inner.in_flight.first() {
            Some(first) => first - 1,
            None => inner.next - 1,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.owner.lock().in_flight.remove(&self.position);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_waits_for_the_oldest_writer() {
        let s = StreamPositions::new(10);
        assert_eq!(s.current(), 10);
        let a = s.reserve(false);
        let b = s.reserve(false);
        assert_eq!((a.position, b.position), (11, 12));
        assert_eq!(s.current(), 10);
        drop(b);
        assert_eq!(s.current(), 10, "12 finished but 11 has not");
        drop(a);
        assert_eq!(s.current(), 12);
    }

    #[test]
    fn the_last_state_position_moves_with_state_events_only() {
        let s = StreamPositions::new(10);
        assert_eq!(s.last_state(), 10, "unknown before: all of the past");
        let state = s.reserve(true);
        let message = s.reserve(false);
        assert_eq!((state.position, message.position), (11, 12));
        assert_eq!(s.last_state(), 11);
        drop((state, message));
        assert_eq!(s.last_state(), 11);
    }
}
