//! Server discovery and capabilities: `/versions` and `.well-known`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use ruma::api::client::discovery::get_supported_versions;

use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;

/// The spec versions whose client-server API we implement.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
];

/// Unstable features (MSCs) whose endpoints we serve.
pub const UNSTABLE_FEATURES: &[&str] = &[
    // Dehydrated devices, under /_matrix/client/unstable/org.matrix.msc3814.v1/.
    "org.matrix.msc3814",
];

/// `GET /_matrix/client/versions`
pub async fn versions(
    Ruma(_): Ruma<get_supported_versions::Request>,
) -> RumaResponse<get_supported_versions::Response> {
    let mut resp = get_supported_versions::Response::new(
        SUPPORTED_VERSIONS.iter().map(|v| (*v).to_owned()).collect(),
    );
    // Clients only use an unstable endpoint the server announces here.
    resp.unstable_features = UNSTABLE_FEATURES
        .iter()
        .map(|f| ((*f).to_owned(), true))
        .collect::<BTreeMap<_, _>>();
    RumaResponse(resp)
}

/// `GET /.well-known/matrix/client`: served only when a public base URL is
/// configured, since a wrong one breaks every client that trusts it.
pub async fn well_known_client(State(state): State<AppState>) -> Response {
    let base = &state.config().server.public_baseurl;
    if base.is_empty() {
        return ApiError::not_found("No client discovery information is configured")
            .into_response();
    }
    Json(serde_json::json!({ "m.homeserver": { "base_url": base } })).into_response()
}
