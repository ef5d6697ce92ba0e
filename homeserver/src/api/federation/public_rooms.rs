//! `GET`/`POST /_matrix/federation/v1/publicRooms`: our public room directory for the users
//! of other servers (Synapse asks it when its user explores this server's rooms). The same
//! listing, paging and filters as the client API's `/publicRooms`.

use axum::extract::State;
use ruma::UInt;
use ruma::api::federation::directory::{get_public_rooms, get_public_rooms_filtered};
use ruma::directory::{Filter, RoomNetwork};

use super::Origin;
use crate::api::client::directory::room_list::{Page, list};
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;

/// The page asked for; an empty one for a third-party network (none is bridged here).
async fn page(
    state: &AppState,
    network: &RoomNetwork,
    limit: Option<UInt>,
    since: Option<&str>,
    filter: &Filter,
) -> Result<Page, ApiError> {
    if let RoomNetwork::ThirdParty(_) = network {
        return Ok(Page {
            chunk: Vec::new(),
            next_batch: None,
            prev_batch: None,
            total: UInt::MIN,
        });
    }
    list(state, limit, since, filter).await
}

/// `GET /_matrix/federation/v1/publicRooms`
pub async fn get(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<get_public_rooms::v1::Request>,
) -> Result<RumaResponse<get_public_rooms::v1::Response>, ApiError> {
    tracing::debug!(%origin, "public rooms query");
    let since = req.since.as_deref();
    let page = page(&state, &req.room_network, req.limit, since, &Filter::new()).await?;
    let mut resp = get_public_rooms::v1::Response::new();
    resp.chunk = page.chunk;
    resp.next_batch = page.next_batch;
    resp.prev_batch = page.prev_batch;
    resp.total_room_count_estimate = Some(page.total);
    Ok(RumaResponse(resp))
}

/// `POST /_matrix/federation/v1/publicRooms`
pub async fn post(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<get_public_rooms_filtered::v1::Request>,
) -> Result<RumaResponse<get_public_rooms_filtered::v1::Response>, ApiError> {
    tracing::debug!(%origin, "filtered public rooms query");
    let since = req.since.as_deref();
    let page = page(&state, &req.room_network, req.limit, since, &req.filter).await?;
    let mut resp = get_public_rooms_filtered::v1::Response::new();
    resp.chunk = page.chunk;
    resp.next_batch = page.next_batch;
    resp.prev_batch = page.prev_batch;
    resp.total_room_count_estimate = Some(page.total);
    Ok(RumaResponse(resp))
}
