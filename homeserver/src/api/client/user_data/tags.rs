//! `/user/{userId}/rooms/{roomId}/tags[/{tag}]`: room tags (favourites,
//! low priority, the user's own), stored as the room's `m.tag` account
//! data `{"tags": {name: {"order": n}}}` so sync delivers them.

use axum::extract::State;
use ruma::api::client::tag::{create_tag, delete_tag, get_tags};
use ruma::events::tag::Tags;
use serde_json::{Map, Value};

use super::{MAX_KEY_BYTES, check_size, own_data_only};
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::account_data;

const TAG_TYPE: &str = "m.tag";
const WHAT: &str = "tags";

/// The `tags` object of stored `m.tag` content. Content a client wrote
/// through the account data API may have any shape: what is not a tags
/// object counts as no tags rather than an error.
fn tags_object(content: Option<&str>) -> Map<String, Value> {
    content
        .and_then(|c| serde_json::from_str::<Map<String, Value>>(c).ok())
        .and_then(|mut c| match c.remove("tags") {
            Some(Value::Object(tags)) => Some(tags),
            _ => None,
        })
        .unwrap_or_default()
}

fn encode(tags: Map<String, Value>) -> Result<String, ApiError> {
    let content = serde_json::json!({ "tags": tags }).to_string();
    check_size(&content)?;
    Ok(content)
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags`
pub async fn list(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_tags::v3::Request>,
) -> Result<RumaResponse<get_tags::v3::Response>, ApiError> {
    own_data_only(&auth, &req.user_id, WHAT)?;
    let content = account_data::get(
        state.db(),
        auth.user_id.as_str(),
        Some(req.room_id.as_str()),
        TAG_TYPE,
    )
    .await?;
    // Tags whose info does not parse are listed without an order.
    let tags: Tags = tags_object(content.as_deref())
        .into_iter()
        .map(|(name, info)| {
            let info = serde_json::from_value(info).unwrap_or_default();
            (name.into(), info)
        })
        .collect();
    Ok(RumaResponse(get_tags::v3::Response::new(tags)))
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
pub async fn add(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<create_tag::v3::Request>,
) -> Result<RumaResponse<create_tag::v3::Response>, ApiError> {
    own_data_only(&auth, &req.user_id, WHAT)?;
    if req.tag.is_empty() || req.tag.len() > MAX_KEY_BYTES {
        return Err(ApiError::invalid_param(format!(
            "A tag name must be 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    if let Some(order) = req.tag_info.order
        && !(0.0..=1.0).contains(&order)
    {
        return Err(ApiError::invalid_param(
            "order must be a number between 0 and 1",
        ));
    }
    let info = serde_json::to_value(&req.tag_info)
        .map_err(|e| ApiError::internal("cannot encode a tag", e))?;
    account_data::update(
        state.db(),
        auth.user_id.as_str(),
        Some(req.room_id.as_str()),
        TAG_TYPE,
        |current| {
            let mut tags = tags_object(current.as_deref());
            tags.insert(req.tag.clone(), info);
            encode(tags)
        },
    )
    .await?;
    // Long-polling syncs of the user deliver the change at once.
    state.notifier().wake_user(&auth.user_id);
    Ok(RumaResponse(create_tag::v3::Response::new()))
}

/// `DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
///
/// Removing a tag the room does not have succeeds, as in Synapse: the
/// result the client asked for holds.
pub async fn remove(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<delete_tag::v3::Request>,
) -> Result<RumaResponse<delete_tag::v3::Response>, ApiError> {
    own_data_only(&auth, &req.user_id, WHAT)?;
    account_data::update(
        state.db(),
        auth.user_id.as_str(),
        Some(req.room_id.as_str()),
        TAG_TYPE,
        |current| {
            let mut tags = tags_object(current.as_deref());
            tags.remove(&req.tag);
            encode(tags)
        },
    )
    .await?;
    // Long-polling syncs of the user deliver the change at once.
    state.notifier().wake_user(&auth.user_id);
    Ok(RumaResponse(delete_tag::v3::Response::new()))
}
