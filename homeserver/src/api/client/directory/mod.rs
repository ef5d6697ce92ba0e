//! Room aliases, the public room directory and the user directory.
//! Aliases of other servers, and other servers' directories, need
//! federation, which comes later: such requests get an error that says so.

pub mod aliases;
mod power;
pub(crate) mod room_list;
mod user_search;

use axum::Router;
use ruma::api::client as c;

use crate::api::error::ApiError;
use crate::api::route;
use crate::state::AppState;

/// Registers the directory endpoints.
pub fn routes(mut r: Router<AppState>) -> Router<AppState> {
    r = route::<c::alias::create_alias::v3::Request, _, _>(r, aliases::create);
    r = route::<c::alias::get_alias::v3::Request, _, _>(r, aliases::get);
    r = route::<c::alias::delete_alias::v3::Request, _, _>(r, aliases::delete);
    r = route::<c::room::aliases::v3::Request, _, _>(r, aliases::of_room);

    r = route::<c::directory::get_room_visibility::v3::Request, _, _>(r, room_list::get_visibility);
    r = route::<c::directory::set_room_visibility::v3::Request, _, _>(r, room_list::set_visibility);
    r = route::<c::directory::get_public_rooms::v3::Request, _, _>(r, room_list::public_rooms);
    r = route::<c::directory::get_public_rooms_filtered::v3::Request, _, _>(
        r,
        room_list::public_rooms_filtered,
    );

    route::<c::user_directory::search_users::v3::Request, _, _>(r, user_search::search)
}

/// What federation will do: 501 until it exists.
fn needs_federation(what: &str) -> ApiError {
    ApiError::new(
        http::StatusCode::NOT_IMPLEMENTED,
        ruma::api::error::ErrorKind::Unrecognized,
        format!("{what} needs federation, which this server does not support yet"),
    )
}
