//! Backfilling a room's history from the other servers in it, when a
//! client pages `/messages` backwards past the oldest event we have (as
//! Synapse does: it backfills on demand from `/messages`).
//!
//! The room's backward extremities (prev events of its oldest timeline
//! events that are not timeline events here) are sent to one server after
//! another as `GET /backfill?v=...&limit=100` ([`BACKFILL_LIMIT`]), each
//! within [`REQUEST_TIMEOUT`], at most [`MAX_SERVERS`] servers; the first
//! server that answers with events is used, its answer checked and stored
//! by [`crate::rooms::RoomGuard::ingest_backfill`]. A server that fails,
//! times out or answers with nothing makes us try the next (Synapse does
//! the same and gives up after the candidates).
//!
//! A room whose history is complete still has backward extremities: the
//! events before the oldest message are the room's state events, which we
//! hold as outliers since the join. Asking again would only bring those
//! back, so an attempt that stores nothing new is remembered for
//! [`QUIET_PERIOD`] per room and extremities, and not repeated within it.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ruma::api::federation::backfill::get_backfill;
use ruma::{OwnedEventId, OwnedRoomId, OwnedServerName, RoomId, UInt};

use super::remote_events::{FederationRemote, GrowingKeyRing, needed_keys};
use crate::api::error::ApiError;
use crate::rooms::ingest::MAX_BACKFILL_PDUS;
use crate::state::AppState;
use crate::storage::events;

/// Events asked for per request (Synapse asks for 100 too).
pub const BACKFILL_LIMIT: u32 = MAX_BACKFILL_PDUS as u32;
/// How long one server may take to answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Most servers asked per attempt.
pub const MAX_SERVERS: usize = 5;
/// Most backward extremities sent per request (servers cap the starting
/// events they accept; ours at 20).
const MAX_EXTREMITIES: usize = 20;
/// Oldest timeline events looked at for backward extremities.
const OLDEST_EVENTS: u64 = 20;
/// Largest answer accepted: [`BACKFILL_LIMIT`] events of at most 64 KiB.
const MAX_RESPONSE: usize = BACKFILL_LIMIT as usize * 70 * 1024;
/// How long an attempt that brought nothing new is not repeated.
const QUIET_PERIOD: Duration = Duration::from_secs(60);

/// Attempts that stored nothing: by room, the extremities asked from and
/// when.
type Fruitless = Mutex<HashMap<OwnedRoomId, (Vec<String>, Instant)>>;

/// The [`Fruitless`] attempts of this process (like the room locks).
fn fruitless() -> &'static Fruitless {
    static FRUITLESS: OnceLock<Fruitless> = OnceLock::new();
    FRUITLESS.get_or_init(Mutex::default)
}

fn recently_fruitless(room_id: &RoomId, extremities: &[String]) -> bool {
    let mut map = fruitless().lock().unwrap_or_else(|e| e.into_inner());
    map.retain(|_, (_, at)| at.elapsed() < QUIET_PERIOD);
    map.get(room_id).is_some_and(|(ids, _)| ids == extremities)
}

fn remember_fruitless(room_id: &RoomId, extremities: Vec<String>) {
    fruitless()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(room_id.to_owned(), (extremities, Instant::now()));
}

/// Backfills `room_id` from its backward extremities (module docs);
/// returns how many events became new timeline events. Remote failures
/// are logged, not returned: the client's page is then just shorter. An
/// `Err` is a local (database) failure.
pub async fn backfill_room(state: &AppState, room_id: &RoomId) -> Result<usize, ApiError> {
    let db = state.db();
    let extremities = events::backward_extremities(db, room_id.as_str(), OLDEST_EVENTS).await?;
    if extremities.is_empty() || recently_fruitless(room_id, &extremities) {
        return Ok(0);
    }
    let v: Vec<OwnedEventId> = extremities
        .iter()
        .filter_map(|id| OwnedEventId::try_from(id.as_str()).ok())
        .take(MAX_EXTREMITIES)
        .collect();
    let servers: Vec<OwnedServerName> = state
        .rooms()
        .hosts()
        .get(db, room_id)
        .await?
        .iter()
        .filter(|h| h.as_str() != state.server_name().as_str())
        .filter_map(|h| OwnedServerName::try_from(h.as_str()).ok())
        .take(MAX_SERVERS)
        .collect();
    for server in servers {
        let request = get_backfill::v1::Request::new(
            room_id.to_owned(),
            v.clone(),
            UInt::from(BACKFILL_LIMIT),
        );
        let client = state.federation().client();
        let answer = tokio::time::timeout(
            REQUEST_TIMEOUT,
            client.send_with_limit(&server, request, MAX_RESPONSE),
        )
        .await;
        let pdus = match answer {
            Ok(Ok(response)) => response.pdus,
            Ok(Err(e)) => {
                tracing::info!(%room_id, %server, error = %e, "backfill failed");
                continue;
            }
            Err(_) => {
                tracing::info!(%room_id, %server, "backfill timed out");
                continue;
            }
        };
        let objects: Vec<_> = pdus
            .iter()
            .take(MAX_BACKFILL_PDUS)
            .filter_map(|raw| myelin_proto::canonical_json::parse_object(raw.get().as_bytes()).ok())
            .collect();
        if objects.is_empty() {
            continue;
        }
        let needed: Vec<_> = objects.iter().flat_map(needed_keys).collect();
        let fetcher = state.federation().keys().clone();
        let ring = fetcher.keyring_for(&needed).await;
        let keys = GrowingKeyRing::new(fetcher, ring);
        let remote = FederationRemote::new(client.clone(), server.clone());
        let stored = state
            .rooms()
            .lock(room_id)
            .await
            .ingest_backfill(state, &server, objects, &keys, &remote)
            .await?;
        tracing::info!(%room_id, %server, stored, "backfilled");
        if stored == 0 {
            remember_fruitless(room_id, extremities);
        }
        return Ok(stored);
    }
    remember_fruitless(room_id, extremities);
    Ok(0)
}
