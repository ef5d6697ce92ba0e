//! Rooms on this server: the event persistence pipeline and what reads it.
//!
//! Every local event goes through [`RoomGuard::append`]: writes to one room
//! are serialised by an in-process async mutex per room (many rooms run in
//! parallel), the event is built on the room's current state and forward
//! extremities, authorised by the room version's auth rules, signed, and
//! stored with everything it changes in one database transaction. A
//! successful return means the event is durable. Clients' messages to a
//! busy room are built and stored in batches that share one commit
//! ([`message_batch`]).
//!
//! After each commit the [`Notifier`] wakes long-polling `/sync` requests
//! of the room's members and, for member events, of the user whose
//! membership changed (an invitee is not in the room yet).

pub mod create;
pub mod format;
pub mod hosts;
pub mod ingest;
pub mod membership;
pub mod message_batch;
pub mod pipeline;
pub mod profile;
pub mod stream;
pub mod visibility;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ruma::{OwnedRoomId, RoomId, UserId};
use tokio::sync::OnceCell;

use crate::notify::Notifier;
use crate::storage::Db;
use stream::StreamPositions;

pub use pipeline::{EventSpec, RoomGuard, TxnKey};

/// Per-room write locks, the timeline stream, the notifier and the servers
/// in each room.
pub struct RoomService {
    locks: Mutex<HashMap<OwnedRoomId, Arc<tokio::sync::Mutex<()>>>>,
    streams: OnceCell<StreamPositions>,
    notifier: Notifier,
    hosts: hosts::RoomHosts,
    queues: message_batch::Queues,
}

impl RoomService {
    pub fn new(notifier: Notifier) -> Self {
        Self {
            locks: Mutex::new(HashMap::new()),
            streams: OnceCell::new(),
            notifier,
            hosts: hosts::RoomHosts::default(),
            queues: message_batch::Queues::default(),
        }
    }

    /// Which servers are in each room (where events and EDUs go).
    pub fn hosts(&self) -> &hosts::RoomHosts {
        &self.hosts
    }

    /// Takes the write lock of a room; held until the guard drops.
    pub async fn lock(&self, room_id: &RoomId) -> RoomGuard<'_> {
        let mutex = {
            let mut locks = self
                .locks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            locks.entry(room_id.to_owned()).or_default().clone()
        };
        let guard = mutex.lock_owned().await;
        RoomGuard::new(self, room_id.to_owned(), guard)
    }

    /// Forgets the lock of a room nobody holds or waits for.
    fn release(&self, room_id: &RoomId) {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if locks
            .get(room_id)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            locks.remove(room_id);
        }
    }

    /// The timeline stream, numbered on from the database on first use.
    pub async fn streams(&self, db: &Db) -> Result<&StreamPositions, sea_orm::DbErr> {
        self.streams
            .get_or_try_init(|| async {
                Ok(StreamPositions::new(
                    crate::storage::events::max_stream(db).await?,
                ))
            })
            .await
    }

    /// Wakes sync requests waiting for a new event in `room_id` and, for
    /// a member event, those of the member `membership_of`.
    fn notify(&self, room_id: &RoomId, membership_of: Option<&UserId>) {
        self.notifier.wake_room(room_id);
        if let Some(user) = membership_of {
            self.notifier.wake_user(user);
        }
    }
}
