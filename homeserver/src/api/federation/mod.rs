//! The server-server API, served on its own HTTPS listener: the version and key endpoints
//! (no authentication), then everything else behind [`auth::require_x_matrix`], which
//! verifies the `X-Matrix` signature before any handler runs. Errors, body limits and
//! metrics are the client API's.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use ruma::api::federation as f;

use super::error::ApiError;
use super::route;
use crate::state::AppState;

pub mod auth;
pub mod events;
pub mod keys;
pub mod membership;
pub mod public_rooms;
pub mod query;
pub mod send;
pub mod user_keys;
pub mod version;

pub use auth::Origin;

/// The federation router.
pub fn router(state: AppState) -> Router {
    let mut open: Router<AppState> = Router::new();
    open = route::<f::discovery::get_server_version::v1::Request, _, _>(open, version::get);
    open = route::<f::discovery::get_server_keys::v2::Request, _, _>(open, keys::server);
    open = route::<f::discovery::get_remote_server_keys::v2::Request, _, _>(open, keys::query);
    open = route::<f::discovery::get_remote_server_keys_batch::v2::Request, _, _>(
        open,
        keys::query_batch,
    );

    let mut signed: Router<AppState> = Router::new();
    signed = route::<f::query::get_profile_information::v1::Request, _, _>(signed, query::profile);
    signed = route::<f::query::get_room_information::v1::Request, _, _>(signed, query::directory);
    signed =
        route::<f::transactions::send_transaction_message::v1::Request, _, _>(signed, send::send);
    signed = route::<f::device::get_devices::v1::Request, _, _>(signed, user_keys::devices);
    signed = route::<f::keys::get_keys::v1::Request, _, _>(signed, user_keys::query);
    signed = route::<f::keys::claim_keys::v1::Request, _, _>(signed, user_keys::claim);
    signed = route::<f::event::get_event::v1::Request, _, _>(signed, events::event);
    signed = route::<f::event::get_room_state::v1::Request, _, _>(signed, events::state);
    signed = route::<f::event::get_room_state_ids::v1::Request, _, _>(signed, events::state_ids);
    signed = route::<f::authorization::get_event_authorization::v1::Request, _, _>(
        signed,
        events::event_auth,
    );
    signed = route::<f::backfill::get_backfill::v1::Request, _, _>(signed, events::backfill);
    signed =
        route::<f::event::get_missing_events::v1::Request, _, _>(signed, events::missing_events);
    signed = route::<f::directory::get_public_rooms::v1::Request, _, _>(signed, public_rooms::get);
    signed = route::<f::directory::get_public_rooms_filtered::v1::Request, _, _>(
        signed,
        public_rooms::post,
    );
    signed = membership::routes(signed);
    let signed = signed.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_x_matrix,
    ));

    open.merge(signed)
        .fallback(|| async { ApiError::unrecognized(http::StatusCode::NOT_FOUND).into_response() })
        .method_not_allowed_fallback(|| async {
            ApiError::unrecognized(http::StatusCode::METHOD_NOT_ALLOWED).into_response()
        })
        .layer(DefaultBodyLimit::max(
            state.config().limits.max_request_bytes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track_http,
        ))
        .with_state(state)
}
