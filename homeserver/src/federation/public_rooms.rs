//! Asking another server for its public room directory, for the client
//! API's `server` parameter of `GET`/`POST /publicRooms`: the
//! federation's `POST /publicRooms` (which carries the filter and the
//! network; Synapse falls back to `GET` only for servers that lack it, we
//! do when there is no filter). A server we cannot reach is a 502, one
//! that does not exist a 404, as for the other queries.

use ruma::ServerName;
use ruma::UInt;
use ruma::api::federation::directory::{get_public_rooms, get_public_rooms_filtered};
use ruma::directory::{Filter, PublicRoomsChunk, RoomNetwork};

use super::query::remote_error;
use crate::api::error::ApiError;
use crate::state::AppState;

/// Largest directory answer read (a page of a big directory, with room
/// to spare).
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// One page of a remote server's directory.
#[derive(Debug, Default)]
pub struct RemotePage {
    pub chunk: Vec<PublicRoomsChunk>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    pub total_room_count_estimate: Option<UInt>,
}

/// What to ask a server's directory for.
pub struct Query<'a> {
    pub limit: Option<UInt>,
    pub since: Option<String>,
    /// `None` for the unfiltered `GET`.
    pub filter: Option<&'a Filter>,
    pub room_network: RoomNetwork,
}

/// `server`'s public rooms, one page.
pub async fn remote_public_rooms(
    state: &AppState,
    server: &ServerName,
    query: Query<'_>,
) -> Result<RemotePage, ApiError> {
    let client = state.federation().client();
    let fail = |e| {
        remote_error(
            &e,
            format!("Server {server} not found"),
            "Failed to fetch the room directory",
        )
    };
    match query.filter {
        None => {
            let mut request = get_public_rooms::v1::Request::new();
            request.limit = query.limit;
            request.since = query.since;
            request.room_network = query.room_network;
            let r = client
                .send_with_limit(server, request, MAX_RESPONSE)
                .await
                .map_err(fail)?;
            Ok(RemotePage {
                chunk: r.chunk,
                next_batch: r.next_batch,
                prev_batch: r.prev_batch,
                total_room_count_estimate: r.total_room_count_estimate,
            })
        }
        Some(filter) => {
            let mut request = get_public_rooms_filtered::v1::Request::new();
            request.limit = query.limit;
            request.since = query.since;
            request.filter = filter.clone();
            request.room_network = query.room_network;
            let r = client
                .send_with_limit(server, request, MAX_RESPONSE)
                .await
                .map_err(fail)?;
            Ok(RemotePage {
                chunk: r.chunk,
                next_batch: r.next_batch,
                prev_batch: r.prev_batch,
                total_room_count_estimate: r.total_room_count_estimate,
            })
        }
    }
}
