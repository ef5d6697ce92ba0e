//! Which servers are in each room: where our events and EDUs go.
//!
//! Computed from the joined memberships and cached per room, because every
//! local event asks (most rooms have only local members, and the answer
//! changes only with membership). The event pipeline refreshes a room's
//! entry in the transaction that changes its memberships and installs it
//! after the commit; readers outside the room lock never install an answer
//! read before a change (a generation counter tells).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ruma::{OwnedRoomId, RoomId};
use sea_orm::DbErr;

use crate::storage::{Db, Tx, memberships};

/// Rooms whose hosts are remembered; past this the cache starts over.
const MAX_ROOMS: usize = 50_000;

#[derive(Default)]
struct Cache {
    rooms: HashMap<OwnedRoomId, Arc<[String]>>,
    /// Bumped by every membership change, so a reader that queried before
    /// a change does not install its stale answer.
    generation: u64,
}

#[derive(Default)]
pub struct RoomHosts {
    cache: Mutex<Cache>,
}

impl RoomHosts {
    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The servers with joined members in `room_id` (ours included).
    pub async fn get(&self, db: &Db, room_id: &RoomId) -> Result<Arc<[String]>, DbErr> {
        let generation = {
            let cache = self.lock();
            if let Some(hosts) = cache.rooms.get(room_id) {
                return Ok(hosts.clone());
            }
            cache.generation
        };
        let hosts: Arc<[String]> = memberships::joined_servers(db, room_id.as_str())
            .await?
            .into();
        let mut cache = self.lock();
        if cache.generation == generation {
            if cache.rooms.len() >= MAX_ROOMS {
                cache.rooms.clear();
            }
            cache.rooms.insert(room_id.to_owned(), hosts.clone());
        }
        Ok(hosts)
    }

    /// The hosts as the write transaction `tx` sees them, for an event
    /// that changed memberships; [`RoomHosts::installed`] after the commit.
    pub(crate) async fn read_in(tx: &Tx, room_id: &RoomId) -> Result<Arc<[String]>, DbErr> {
        Ok(memberships::joined_servers(tx, room_id.as_str())
            .await?
            .into())
    }

    /// Forgets `room_id`'s hosts (its memberships changed), installing
    /// `fresh` when the change's own transaction computed them.
    pub(crate) fn installed(&self, room_id: &RoomId, fresh: Option<Arc<[String]>>) {
        let mut cache = self.lock();
        cache.generation = cache.generation.wrapping_add(1);
        match fresh {
            Some(hosts) => {
                cache.rooms.insert(room_id.to_owned(), hosts);
            }
            None => {
                cache.rooms.remove(room_id);
            }
        }
    }
}
