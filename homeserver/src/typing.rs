//! Typing notifications: in memory only, as in every homeserver (they
//! expire within seconds, so losing them on a restart loses nothing).
//!
//! INTERFACE STUB: the typing work fills this in; sync calls exactly these
//! functions. Every change advances [`Typing::position`] and wakes the
//! room through the [`Notifier`].

use ruma::{OwnedRoomId, OwnedUserId, RoomId};

use crate::notify::Notifier;

/// Who is typing where, with a position that advances on every change.
pub struct Typing {
    #[allow(dead_code)]
    notifier: Notifier,
}

impl Typing {
    pub fn new(notifier: Notifier) -> Self {
        Self { notifier }
    }

    /// The position of the latest change (0 after a restart, before any).
    pub fn position(&self) -> u64 {
        0
    }

    /// For each of `rooms` whose typing set changed after position `since`
    /// (every room with someone typing when `since` is 0 or ahead of
    /// [`Self::position`], as after a restart): the users typing now.
    pub fn changed_since(
        &self,
        since: u64,
        rooms: &[&RoomId],
    ) -> Vec<(OwnedRoomId, Vec<OwnedUserId>)> {
        let _ = (since, rooms);
        Vec::new()
    }
}
