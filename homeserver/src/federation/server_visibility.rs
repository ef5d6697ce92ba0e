//! What another server may read of a room: the server-server API's
//! "Authorization of events for servers" (history visibility applied to a
//! whole server), as Synapse applies it.
//!
//! - A server may use the read endpoints of a room (`/state`,
//!   `/state_ids`, `/event_auth`, `/backfill`, `/get_missing_events`) when
//!   one of its users is joined to it now, or when the room is
//!   `world_readable`.
//! - An event is visible to a server when the history visibility in the
//!   state before it is `world_readable` or `shared` (the default), or,
//!   for `invited`, when one of the server's users was invited or joined
//!   then, and for `joined` when one was joined then.

use std::collections::HashMap;

use myelin_proto::canonical_json;
use ruma::{ServerName, UserId};

use crate::api::error::ApiError;
use crate::rooms::visibility::current_history_visibility;
use crate::state::AppState;
use crate::storage::{events, memberships, state as state_store};

/// A user of `server`?
fn is_of(user_id: &str, server: &ServerName) -> bool {
    UserId::parse(user_id).is_ok_and(|u| u.server_name() == server)
}

/// Whether `server` has a user joined to the room now.
pub async fn server_joined(
    state: &AppState,
    room_id: &str,
    server: &ServerName,
) -> Result<bool, ApiError> {
    Ok(memberships::members(state.db(), room_id)
        .await?
        .iter()
        .any(|m| m.membership == "join" && is_of(&m.user_id, server)))
}

/// `403 M_FORBIDDEN` unless `server` may read the room (see the module
/// docs).
pub async fn require_in_room(
    state: &AppState,
    room_id: &str,
    server: &ServerName,
) -> Result<(), ApiError> {
    if server_joined(state, room_id, server).await?
        || current_history_visibility(state.db(), room_id).await? == "world_readable"
    {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "Server {server} is not in room {room_id}"
        )))
    }
}

fn content_str(json: &str, field: &str) -> Option<String> {
    let obj = canonical_json::parse_object(json.as_bytes()).ok()?;
    obj.get("content")?
        .as_object()?
        .get(field)?
        .as_str()
        .map(str::to_owned)
}

/// Decides per event whether a server may see it, remembering the answer
/// per state snapshot (consecutive events mostly share one).
pub struct ServerView<'a> {
    state: &'a AppState,
    server: &'a ServerName,
    by_snapshot: HashMap<i64, bool>,
}

impl<'a> ServerView<'a> {
    pub fn new(state: &'a AppState, server: &'a ServerName) -> Self {
        Self {
            state,
            server,
            by_snapshot: HashMap::new(),
        }
    }

    /// Whether the server may see an event whose state before it is
    /// `snapshot`. An event without a state (an outlier) is judged by the
    /// room's current state: nothing better is known.
    pub async fn may_see(
        &mut self,
        room_id: &str,
        snapshot: Option<i64>,
    ) -> Result<bool, ApiError> {
        let Some(snapshot) = snapshot else {
            return Ok(
                current_history_visibility(self.state.db(), room_id).await? != "joined"
                    || server_joined(self.state, room_id, self.server).await?,
            );
        };
        if let Some(v) = self.by_snapshot.get(&snapshot) {
            return Ok(*v);
        }
        let v = self.decide(snapshot).await?;
        self.by_snapshot.insert(snapshot, v);
        Ok(v)
    }

    async fn decide(&self, snapshot: i64) -> Result<bool, ApiError> {
        let db = self.state.db();
        let entries = state_store::load_snapshot(db, snapshot, None).await?;
        let wanted: Vec<&str> = entries
            .iter()
            .filter(|e| {
                (e.event_type == "m.room.history_visibility" && e.state_key.is_empty())
                    || (e.event_type == "m.room.member" && is_of(&e.state_key, self.server))
            })
            .map(|e| e.event_id.as_str())
            .collect();
        let rows = events::get_many(db, &wanted).await?;
        let visibility = rows
            .iter()
            .find(|r| r.event_type == "m.room.history_visibility")
            .and_then(|r| content_str(&r.json, "history_visibility"))
            .unwrap_or_else(|| "shared".to_owned());
        let memberships: Vec<String> = rows
            .iter()
            .filter(|r| r.event_type == "m.room.member")
            .filter_map(|r| content_str(&r.json, "membership"))
            .collect();
        let has = |m: &str| memberships.iter().any(|x| x == m);
        Ok(match visibility.as_str() {
            "world_readable" | "shared" => true,
            "invited" => has("join") || has("invite"),
            // `joined`, and unknown values read as the strictest.
            _ => has("join"),
        })
    }
}
