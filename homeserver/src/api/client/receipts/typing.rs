//! `PUT /rooms/{roomId}/typing/{userId}`.

use axum::extract::State;
use ruma::api::client::typing::create_typing_event::v3 as create_typing_event;

use super::require_joined;
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;

pub async fn set_typing(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<create_typing_event::Request>,
) -> Result<RumaResponse<create_typing_event::Response>, ApiError> {
    if req.user_id != auth.user_id {
        return Err(ApiError::forbidden(
            "Cannot set another user's typing state",
        ));
    }
    require_joined(&state, &req.room_id, &auth.user_id).await?;
    let typing = match req.state {
        // The timeout is capped (at two minutes, as Synapse does) inside.
        create_typing_event::Typing::Yes(info) => {
            state
                .typing()
                .start(&req.room_id, &auth.user_id, info.timeout);
            true
        }
        create_typing_event::Typing::No => {
            state.typing().stop(&req.room_id, &auth.user_id);
            false
        }
    };
    crate::federation::announce::typing(&state, &req.room_id, &auth.user_id, typing).await;
    Ok(RumaResponse(create_typing_event::Response::new()))
}
