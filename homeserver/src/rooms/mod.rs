//! Rooms on this server: the event persistence pipeline and what reads it.
//!
//! Every local event goes through [`RoomGuard::append`]: writes to one room
//! are serialised by an in-process async mutex per room (many rooms run in
//! parallel), the event is built on the room's current state and forward
//! extremities, authorised by the room version's auth rules, signed, and
//! stored with everything it changes in one database transaction. A
//! successful return means the event is durable.
//!
//! After each commit a [`TimelineUpdate`] is broadcast: the hook where sync
//! (long-polling `/sync`) will be woken, keyed by room and, for member
//! events, by the user whose membership changed.

pub mod create;
pub mod format;
pub mod membership;
pub mod pipeline;
pub mod profile;
pub mod stream;
pub mod visibility;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId};
use tokio::sync::{OnceCell, broadcast};

use crate::storage::Db;
use stream::StreamPositions;

pub use pipeline::{EventSpec, RoomGuard, TxnKey};

/// What sync needs to know about a newly persisted event to wake waiters.
#[derive(Debug, Clone)]
pub struct TimelineUpdate {
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    pub stream_ordering: i64,
    /// For member events: whose membership changed.
    pub membership_of: Option<OwnedUserId>,
}

/// Per-room write locks, the timeline stream and the notifier.
pub struct RoomService {
    locks: Mutex<HashMap<OwnedRoomId, Arc<tokio::sync::Mutex<()>>>>,
    streams: OnceCell<StreamPositions>,
    updates: broadcast::Sender<TimelineUpdate>,
}

impl Default for RoomService {
    fn default() -> Self {
        Self::new()
    }
}

impl RoomService {
    pub fn new() -> Self {
        let (updates, _) = broadcast::channel(1024);
        Self {
            locks: Mutex::new(HashMap::new()),
            streams: OnceCell::new(),
            updates,
        }
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

    /// Subscribes to persisted events (for sync).
    pub fn subscribe(&self) -> broadcast::Receiver<TimelineUpdate> {
        self.updates.subscribe()
    }

    fn notify(&self, update: TimelineUpdate) {
        // No subscriber is not an error: nobody is waiting.
        let _ = self.updates.send(update);
    }
}
