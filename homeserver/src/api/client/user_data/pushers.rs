//! `GET /pushers` and `POST /pushers/set`: where the user's notifications
//! go. Only stored here; delivering pushes to gateways is not done yet.

use axum::extract::State;
use ruma::api::client::push::set_pusher::v3::PusherAction;
use ruma::api::client::push::{Pusher, PusherKind, get_pushers, set_pusher};

use super::check_size;
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::pushers::{self, StoredPusher};

/// The spec's limits on the pusher's keys.
const MAX_APP_ID_CHARS: usize = 64;
const MAX_PUSHKEY_BYTES: usize = 512;

fn validate_ids(app_id: &str, pushkey: &str) -> Result<(), ApiError> {
    if app_id.is_empty() || app_id.chars().count() > MAX_APP_ID_CHARS {
        return Err(ApiError::invalid_param(format!(
            "app_id must be 1 to {MAX_APP_ID_CHARS} characters"
        )));
    }
    if pushkey.is_empty() || pushkey.len() > MAX_PUSHKEY_BYTES {
        return Err(ApiError::invalid_param(format!(
            "pushkey must be 1 to {MAX_PUSHKEY_BYTES} bytes"
        )));
    }
    Ok(())
}

/// `GET /_matrix/client/v3/pushers`
pub async fn list(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(_req): Ruma<get_pushers::v3::Request>,
) -> Result<RumaResponse<get_pushers::v3::Response>, ApiError> {
    let pushers = pushers::list(state.db(), auth.user_id.as_str())
        .await?
        .into_iter()
        .map(|p| {
            serde_json::from_str::<Pusher>(&p.pusher)
                .map_err(|e| ApiError::internal("corrupt stored pusher", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RumaResponse(get_pushers::v3::Response::new(pushers)))
}

/// `POST /_matrix/client/v3/pushers/set`: creates or replaces a pusher,
/// or deletes it when `kind` is `null`.
pub async fn set(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<set_pusher::v3::Request>,
) -> Result<RumaResponse<set_pusher::v3::Response>, ApiError> {
    match req.action {
        PusherAction::Post(data) => {
            let pusher = data.pusher;
            validate_ids(&pusher.ids.app_id, &pusher.ids.pushkey)?;
            match &pusher.kind {
                PusherKind::Http(http) => {
                    if http.url.is_empty() {
                        return Err(ApiError::missing_param(
                            "'url' required in data for HTTP pusher",
                        ));
                    }
                }
                PusherKind::Email(_) => {}
                _ => {
                    return Err(ApiError::invalid_param(
                        "Unknown pusher kind: use \"http\" or \"email\"",
                    ));
                }
            }
            let json = serde_json::to_string(&pusher)
                .map_err(|e| ApiError::internal("cannot encode a pusher", e))?;
            check_size(&json)?;
            let stored = StoredPusher {
                app_id: pusher.ids.app_id,
                pushkey: pusher.ids.pushkey,
                pusher: json,
            };
            pushers::set(
                state.db(),
                auth.user_id.as_str(),
                Some(auth.device_id.as_str()),
                &stored,
                data.append,
            )
            .await?;
        }
        PusherAction::Delete(ids) => {
            validate_ids(&ids.app_id, &ids.pushkey)?;
            pushers::delete(state.db(), auth.user_id.as_str(), &ids.app_id, &ids.pushkey).await?;
        }
        _ => return Err(ApiError::bad_json("Unknown pusher action")),
    }
    Ok(RumaResponse(set_pusher::v3::Response::new()))
}
