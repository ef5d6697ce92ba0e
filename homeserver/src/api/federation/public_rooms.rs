//! `GET` and `POST /_matrix/federation/v1/publicRooms`: our public room
//! directory for other servers, the same listing as the client API's
//! (`limit`, `since`, the filter; `include_all_networks` lists the same
//! rooms, a third-party network none: no bridges here).

use axum::extract::State;
use ruma::UInt;
use ruma::api::federation::directory::{get_public_rooms, get_public_rooms_filtered};
use ruma::directory::{Filter, RoomNetwork};

use crate::api::client::directory::room_list;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;

/// `GET /_matrix/federation/v1/publicRooms`
pub async fn get(
    State(state): State<AppState>,
    Ruma(req): Ruma<get_public_rooms::v1::Request>,
) -> Result<RumaResponse<get_public_rooms::v1::Response>, ApiError> {
    let mut resp = get_public_rooms::v1::Response::new();
    if let RoomNetwork::ThirdParty(_) = req.room_network {
        resp.total_room_count_estimate = Some(UInt::MIN);
        return Ok(RumaResponse(resp));
    }
    let page = room_list::list(&state, req.limit, req.since.as_deref(), &Filter::new()).await?;
    resp.chunk = page.chunk;
    resp.next_batch = page.next_batch;
    resp.prev_batch = page.prev_batch;
    resp.total_room_count_estimate = Some(page.total);
    Ok(RumaResponse(resp))
}

/// `POST /_matrix/federation/v1/publicRooms`
pub async fn post(
    State(state): State<AppState>,
    Ruma(req): Ruma<get_public_rooms_filtered::v1::Request>,
) -> Result<RumaResponse<get_public_rooms_filtered::v1::Response>, ApiError> {
    let mut resp = get_public_rooms_filtered::v1::Response::new();
    if let RoomNetwork::ThirdParty(_) = req.room_network {
        resp.total_room_count_estimate = Some(UInt::MIN);
        return Ok(RumaResponse(resp));
    }
    let page = room_list::list(&state, req.limit, req.since.as_deref(), &req.filter).await?;
    resp.chunk = page.chunk;
    resp.next_batch = page.next_batch;
    resp.prev_batch = page.prev_batch;
    resp.total_room_count_estimate = Some(page.total);
    Ok(RumaResponse(resp))
}
