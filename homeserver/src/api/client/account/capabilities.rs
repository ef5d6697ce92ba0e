//! `GET /capabilities`: what this server lets the user do.

use axum::Json;
use axum::extract::State;
use ruma::api::client::discovery::get_capabilities;
use serde_json::{Value, json};

use crate::api::auth::Authed;
use crate::api::ruma_wrapper::Ruma;
use crate::state::AppState;

/// The room version new rooms get, and every version rooms can have.
pub const DEFAULT_ROOM_VERSION: &str = "12";
pub const ROOM_VERSIONS: &[&str] = &["10", "11", "12"];

/// `GET /_matrix/client/v3/capabilities`. Written as JSON rather than with
/// ruma's `Capabilities`, which leaves out every capability equal to its
/// default (`m.change_password: true`, ...): clients read defaults for
/// missing ones, but test suites and some clients look for them.
pub async fn capabilities(
    State(_state): State<AppState>,
    _auth: Authed,
    Ruma(_): Ruma<get_capabilities::v3::Request>,
) -> Json<Value> {
    let available: serde_json::Map<String, Value> = ROOM_VERSIONS
        .iter()
        .map(|v| ((*v).to_owned(), json!("stable")))
        .collect();
    Json(json!({
        "capabilities": {
            "m.change_password": { "enabled": true },
            "m.room_versions": { "default": DEFAULT_ROOM_VERSION, "available": available },
            "m.set_displayname": { "enabled": true },
            "m.set_avatar_url": { "enabled": true },
            "m.3pid_changes": { "enabled": false },
            "m.get_login_token": { "enabled": true },
        }
    }))
}
