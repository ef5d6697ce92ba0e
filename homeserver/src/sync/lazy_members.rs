//! Which lazy-loaded members each device's sync loop holds, so that an
//! incremental sync leaves out the members a device already has: what
//! `include_redundant_members: false` (the spec's default) allows, and
//! Synapse does. A sync loop is a user's device with one filter.
//!
//! # When a loop holds a member
//! What a response carried is trusted only once the loop syncs with that
//! response's `next_batch`. A lost response, a retry from an older token,
//! or a second loop on the same device and filter make a request start
//! from a token this does not know: everything is forgotten, and members
//! are sent again (redundant, harmless).
//!
//! A held member stays valid while its event is the member's current one
//! in the room. Every later change is in the state changes of a response
//! the loop has had (its `since` tokens chain over every position): sent
//! there if the member was needed, replacing the entry, or left out,
//! which forgets it ([`Change::Forget`]). A room sent whole, or left,
//! forgets all its entries. Member events a timeline carries are not
//! held, as the room's state may have resolved to another.
//!
//! Memory is bounded: [`MAX_HELD`] members per loop, [`MAX_TOTAL_HELD`]
//! in all and [`MAX_LOOPS`] loops (an entry is some 150 bytes); past
//! any, what is held starts over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::token::SyncToken;

/// Members held per loop at most.
const MAX_HELD: usize = 1_000;

/// Members held by all loops together at most.
const MAX_TOTAL_HELD: usize = 300_000;

/// Sync loops tracked at most.
const MAX_LOOPS: usize = 10_000;

/// The members a loop holds: event ID by room and user.
pub type Held = HashMap<String, HashMap<String, String>>;

/// A sync loop: a user's device with one filter (its JSON).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoopKey {
    pub user_id: String,
    pub device_id: String,
    pub filter: String,
}

/// What a response changes in what its loop holds, once it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The room was sent whole or left: nothing of it is held.
    ForgetRoom(String),
    /// The member (room, user) changed and the response left it out.
    Forget(String, String),
    /// The response sent the member's current event (room, user, event).
    Hold(String, String, String),
}

#[derive(Default)]
struct Loop {
    held: Arc<Held>,
    /// How many members `held` has.
    size: usize,
    /// The token `held` is valid from (`None`: an initial sync).
    from: Option<SyncToken>,
    /// The latest response computed from `from`.
    pending: Option<Pending>,
}

struct Pending {
    next: SyncToken,
    changes: Vec<Change>,
}

/// Every tracked loop (in memory; a restart forgets them, which costs
/// redundant members once).
#[derive(Default)]
pub struct LazyMembers {
    inner: Mutex<Loops>,
}

#[derive(Default)]
struct Loops {
    by_key: HashMap<LoopKey, Loop>,
    /// The sum of their sizes.
    total: usize,
}

impl LazyMembers {
    fn lock(&self) -> MutexGuard<'_, Loops> {
        // No critical section can panic half-way.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Members held by all loops (for tests).
    #[cfg(test)]
    fn total(&self) -> usize {
        self.lock().total
    }

    /// The members `key` holds for a request from `since`. `fresh` (an
    /// initial or `full_state` sync) starts over.
    pub fn begin(&self, key: &LoopKey, since: Option<SyncToken>, fresh: bool) -> Arc<Held> {
        let mut guard = self.lock();
        let loops = &mut *guard;
        if !loops.by_key.contains_key(key) && loops.by_key.len() >= MAX_LOOPS {
            loops.by_key.clear();
            loops.total = 0;
        }
        let state = loops.by_key.entry(key.clone()).or_default();
        let mut keep = false;
        if !fresh && since.is_some() {
            // The loop got the pending response: what it carried is held.
            if let Some(pending) = state.pending.take_if(|p| Some(p.next) == since) {
                let held = Arc::make_mut(&mut state.held);
                apply(held, pending.changes);
                let size = held.values().map(HashMap::len).sum();
                loops.total = loops.total - state.size + size;
                state.size = size;
                state.from = since;
            }
            keep = state.from == since && state.size <= MAX_HELD;
        }
        if !keep {
            loops.total -= state.size;
            *state = Loop {
                from: since,
                ..Loop::default()
            };
        }
        let held = state.held.clone();
        if loops.total > MAX_TOTAL_HELD {
            // Every loop starts over from its token.
            for other in loops.by_key.values_mut() {
                *other = Loop {
                    from: other.from,
                    ..Loop::default()
                };
            }
            loops.total = 0;
            return Arc::default();
        }
        held
    }

    /// Notes what a response computed from `since`, with `next` as its
    /// `next_batch`, changes once it arrives.
    pub fn record(
        &self,
        key: &LoopKey,
        since: Option<SyncToken>,
        next: SyncToken,
        changes: Vec<Change>,
    ) {
        let mut loops = self.lock();
        let Some(state) = loops.by_key.get_mut(key) else {
            return;
        };
        if state.from != since {
            // Another request of the loop moved it on meanwhile.
            return;
        }
        match &state.pending {
            // Two responses with one token but different members: which
            // one arrived is unknown, so neither is trusted.
            Some(p) if p.next == next && p.changes != changes => state.pending = None,
            Some(p) if p.next == next => {}
            _ => state.pending = Some(Pending { next, changes }),
        }
    }
}

fn apply(held: &mut Held, changes: Vec<Change>) {
    for change in changes {
        match change {
            Change::ForgetRoom(room) => {
                held.remove(&room);
            }
            Change::Forget(room, user) => {
                if let Some(members) = held.get_mut(&room) {
                    members.remove(&user);
                }
            }
            Change::Hold(room, user, event) => {
                held.entry(room).or_default().insert(user, event);
            }
        }
    }
}

/// Whether `held` has `user`'s member event in `room`.
pub fn holds(held: &Held, room: &str, user: &str) -> bool {
    held.get(room).is_some_and(|m| m.contains_key(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> LoopKey {
        LoopKey {
            user_id: "@a:x".into(),
            device_id: "D".into(),
            filter: "{}".into(),
        }
    }

    fn token(n: i64) -> SyncToken {
        SyncToken {
            timeline: n,
            ..SyncToken::default()
        }
    }

    fn hold(room: &str, user: &str, event: &str) -> Change {
        Change::Hold(room.into(), user.into(), event.into())
    }

    #[test]
    fn members_are_held_once_the_next_request_shows_the_response_arrived() {
        let lazy = LazyMembers::default();
        let k = key();
        assert!(lazy.begin(&k, None, true).is_empty());
        lazy.record(&k, None, token(1), vec![hold("!r", "@b", "$1")]);
        // A retry of the initial sync: nothing held yet.
        assert!(lazy.begin(&k, None, true).is_empty());
        lazy.record(&k, None, token(1), vec![hold("!r", "@b", "$1")]);
        let held = lazy.begin(&k, Some(token(1)), false);
        assert!(holds(&held, "!r", "@b"));
        assert!(!holds(&held, "!other", "@b"));
        // A long-poll computing again from the same token keeps them.
        lazy.record(&k, Some(token(1)), token(2), vec![]);
        assert!(holds(&lazy.begin(&k, Some(token(1)), false), "!r", "@b"));
    }

    #[test]
    fn a_lost_response_or_an_unknown_token_forgets_everything() {
        let lazy = LazyMembers::default();
        let k = key();
        lazy.begin(&k, None, true);
        lazy.record(&k, None, token(1), vec![hold("!r", "@b", "$1")]);
        assert!(holds(&lazy.begin(&k, Some(token(1)), false), "!r", "@b"));
        // The response at 2 is lost; the client retries from 1: what it
        // holds from 1 is still right, the lost members are not held.
        lazy.record(&k, Some(token(1)), token(2), vec![hold("!r", "@c", "$2")]);
        let retry = lazy.begin(&k, Some(token(1)), false);
        assert!(holds(&retry, "!r", "@b") && !holds(&retry, "!r", "@c"));
        // A token from elsewhere (another loop, an older one kept by the
        // client) starts over.
        assert!(lazy.begin(&k, Some(token(7)), false).is_empty());
        // So does a full-state sync.
        lazy.record(&k, Some(token(7)), token(8), vec![hold("!r", "@b", "$1")]);
        assert!(lazy.begin(&k, Some(token(8)), true).is_empty());
    }

    #[test]
    fn changes_left_out_and_rooms_sent_whole_forget_members() {
        let lazy = LazyMembers::default();
        let k = key();
        lazy.begin(&k, None, true);
        let first = vec![
            hold("!r", "@b", "$1"),
            hold("!r", "@c", "$2"),
            hold("!s", "@b", "$3"),
        ];
        lazy.record(&k, None, token(1), first);
        lazy.begin(&k, Some(token(1)), false);
        lazy.record(
            &k,
            Some(token(1)),
            token(2),
            vec![
                Change::Forget("!r".into(), "@b".into()),
                Change::ForgetRoom("!s".into()),
                Change::ForgetRoom("!t".into()),
                hold("!t", "@d", "$4"),
            ],
        );
        let held = lazy.begin(&k, Some(token(2)), false);
        assert!(!holds(&held, "!r", "@b") && holds(&held, "!r", "@c"));
        assert!(!holds(&held, "!s", "@b"));
        assert!(holds(&held, "!t", "@d"));
    }

    #[test]
    fn two_different_responses_with_one_token_are_not_trusted() {
        let lazy = LazyMembers::default();
        let k = key();
        lazy.begin(&k, None, true);
        lazy.record(&k, None, token(1), vec![]);
        lazy.begin(&k, Some(token(1)), false);
        lazy.record(&k, Some(token(1)), token(2), vec![hold("!r", "@b", "$1")]);
        lazy.record(&k, Some(token(1)), token(2), vec![hold("!r", "@c", "$2")]);
        assert!(lazy.begin(&k, Some(token(2)), false).is_empty());
        // The same response computed twice is.
        lazy.record(&k, Some(token(2)), token(3), vec![hold("!r", "@b", "$1")]);
        lazy.record(&k, Some(token(2)), token(3), vec![hold("!r", "@b", "$1")]);
        assert!(holds(&lazy.begin(&k, Some(token(3)), false), "!r", "@b"));
    }

    #[test]
    fn a_response_from_a_token_the_loop_moved_past_is_not_recorded() {
        let lazy = LazyMembers::default();
        let k = key();
        lazy.begin(&k, None, true);
        lazy.record(&k, None, token(1), vec![]);
        lazy.begin(&k, Some(token(1)), false);
        // A slow request from the initial sync's token finishes late.
        lazy.record(&k, None, token(2), vec![hold("!r", "@b", "$1")]);
        assert!(lazy.begin(&k, Some(token(2)), false).is_empty());
    }

    #[test]
    fn all_loops_start_over_when_they_hold_too_much_together() {
        let lazy = LazyMembers::default();
        let per_loop = MAX_HELD / 2;
        let loops = MAX_TOTAL_HELD / per_loop + 1;
        let key = |i: usize| LoopKey {
            device_id: format!("D{i}"),
            ..key()
        };
        for i in 0..loops {
            lazy.begin(&key(i), None, true);
            let members = (0..per_loop)
                .map(|m| hold("!r", &format!("@u{m}"), "$e"))
                .collect();
            lazy.record(&key(i), None, token(1), members);
            let held = lazy.begin(&key(i), Some(token(1)), false);
            let size: usize = held.values().map(HashMap::len).sum();
            assert_eq!(size, if i + 1 < loops { per_loop } else { 0 }, "loop {i}");
        }
        assert_eq!(lazy.total(), 0);
        // The first loop starts over from its token: what it gets next is
        // held, and nothing from before.
        lazy.record(
            &key(0),
            Some(token(1)),
            token(2),
            vec![hold("!s", "@b", "$1")],
        );
        let held = lazy.begin(&key(0), Some(token(2)), false);
        assert!(holds(&held, "!s", "@b") && !holds(&held, "!r", "@u0"));
        assert_eq!(lazy.total(), 1);
    }

    #[test]
    fn loops_holding_too_much_start_over() {
        let lazy = LazyMembers::default();
        let k = key();
        lazy.begin(&k, None, true);
        let many = (0..=MAX_HELD)
            .map(|i| hold("!r", &format!("@u{i}"), "$e"))
            .collect();
        lazy.record(&k, None, token(1), many);
        assert!(lazy.begin(&k, Some(token(1)), false).is_empty());
    }
}
