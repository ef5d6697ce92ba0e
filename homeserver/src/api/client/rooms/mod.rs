//! Client-server endpoints for rooms on this server: creation, membership,
//! sending, state, redaction and history. Handlers validate and translate;
//! the work is in [`crate::rooms`].

mod create;
mod membership;
mod read;
mod redact;
mod send;
mod state;

use axum::Router;
use axum::routing::{get, put};
use myelin_proto::canonical_json::{self, Object};
use ruma::api::client as c;

use crate::api::error::ApiError;
use crate::api::route;
use crate::state::AppState;

/// Registers every room endpoint.
pub fn routes(mut r: Router<AppState>) -> Router<AppState> {
    r = route::<c::room::create_room::v3::Request, _, _>(r, create::create_room);

    r = route::<c::membership::join_room_by_id::v3::Request, _, _>(r, membership::join_by_id);
    r = route::<c::membership::join_room_by_id_or_alias::v3::Request, _, _>(
        r,
        membership::join_by_id_or_alias,
    );
    r = route::<c::membership::invite_user::v3::Request, _, _>(r, membership::invite);
    r = route::<c::membership::leave_room::v3::Request, _, _>(r, membership::leave);
    r = route::<c::membership::forget_room::v3::Request, _, _>(r, membership::forget);
    r = route::<c::membership::kick_user::v3::Request, _, _>(r, membership::kick);
    r = route::<c::membership::ban_user::v3::Request, _, _>(r, membership::ban);
    r = route::<c::membership::unban_user::v3::Request, _, _>(r, membership::unban);
    r = route::<c::knock::knock_room::v3::Request, _, _>(r, membership::knock);

    r = route::<c::message::send_message_event::v3::Request, _, _>(r, send::send_message);
    r = route::<c::redact::redact_event::v3::Request, _, _>(r, redact::redact);

    r = route::<c::state::get_state_events::v3::Request, _, _>(r, state::get_state);
    r = route::<c::state::get_state_event_for_key::v3::Request, _, _>(r, state::get_state_key);
    r = route::<c::state::send_state_event::v3::Request, _, _>(r, state::put_state);
    // The same endpoints with an empty state key, which the path template
    // with `{state_key}` does not match.
    for prefix in ["/_matrix/client/r0", "/_matrix/client/v3"] {
        for suffix in ["", "/"] {
            r = r.route(
                &format!("{prefix}/rooms/{{room_id}}/state/{{event_type}}{suffix}"),
                get(state::get_state_key).merge(put(state::put_state)),
            );
        }
    }

    r = route::<c::room::get_room_event::v3::Request, _, _>(r, read::get_event);
    r = route::<c::message::get_message_events::v3::Request, _, _>(r, read::messages);
    r = route::<c::context::get_context::v3::Request, _, _>(r, read::context);
    r = route::<c::membership::get_member_events::v3::Request, _, _>(r, read::members);
    r = route::<c::membership::joined_members::v3::Request, _, _>(r, read::joined_members);
    r = route::<c::membership::joined_rooms::v3::Request, _, _>(r, read::joined_rooms);
    r
}

/// Client JSON (event content and the like) parsed strictly as canonical
/// JSON: floats, out-of-range integers and duplicate keys are `M_BAD_JSON`.
fn strict_object(raw: &serde_json::value::RawValue) -> Result<Object, ApiError> {
    canonical_json::parse_object(raw.get().as_bytes()).map_err(|e| match e {
        canonical_json::Error::Syntax(_) => ApiError::not_json(e.to_string()),
        other => ApiError::bad_json(other.to_string()),
    })
}
