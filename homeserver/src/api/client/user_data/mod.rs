//! The user-data part of the client-server API: account data (global and
//! per room), room tags, stored filters, push rules and pushers. All of it
//! is private to its user: another user's data is `403 M_FORBIDDEN`.

use axum::Router;
use ruma::UserId;
use ruma::api::client as c;

use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::route;
use crate::state::AppState;

pub mod account_data;
pub mod filters;
pub mod push_rules;
pub mod pushers;
pub mod tags;

/// The largest JSON content of one piece of account data (tags and push
/// rules included): it is stored and sent in every initial sync.
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;

/// Event types and tag names are keys, not data: bound them like Synapse
/// bounds event types.
pub const MAX_KEY_BYTES: usize = 255;

/// Every user-data endpoint.
pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r =
        route::<c::config::set_global_account_data::v3::Request, _, _>(r, account_data::set_global);
    let r =
        route::<c::config::get_global_account_data::v3::Request, _, _>(r, account_data::get_global);
    let r = route::<c::config::set_room_account_data::v3::Request, _, _>(r, account_data::set_room);
    let r = route::<c::config::get_room_account_data::v3::Request, _, _>(r, account_data::get_room);
    let r = route::<c::tag::get_tags::v3::Request, _, _>(r, tags::list);
    let r = route::<c::tag::create_tag::v3::Request, _, _>(r, tags::add);
    let r = route::<c::tag::delete_tag::v3::Request, _, _>(r, tags::remove);
    let r = route::<c::filter::create_filter::v3::Request, _, _>(r, filters::create);
    let r = route::<c::filter::get_filter::v3::Request, _, _>(r, filters::get);
    let r = route::<c::push::get_pushrules_all::v3::Request, _, _>(r, push_rules::get_all);
    let r =
        route::<c::push::get_pushrules_global_scope::v3::Request, _, _>(r, push_rules::get_global);
    let r = route::<c::push::get_pushrule::v3::Request, _, _>(r, push_rules::get_rule);
    let r = route::<c::push::set_pushrule::v3::Request, _, _>(r, push_rules::set_rule);
    let r = route::<c::push::delete_pushrule::v3::Request, _, _>(r, push_rules::delete_rule);
    let r = route::<c::push::get_pushrule_enabled::v3::Request, _, _>(r, push_rules::get_enabled);
    let r = route::<c::push::set_pushrule_enabled::v3::Request, _, _>(r, push_rules::set_enabled);
    let r = route::<c::push::get_pushrule_actions::v3::Request, _, _>(r, push_rules::get_actions);
    let r = route::<c::push::set_pushrule_actions::v3::Request, _, _>(r, push_rules::set_actions);
    let r = route::<c::push::get_pushers::v3::Request, _, _>(r, pushers::list);
    route::<c::push::set_pusher::v3::Request, _, _>(r, pushers::set)
}

/// Only the owner of user data may read or change it.
fn own_data_only(auth: &Authed, user_id: &UserId, what: &str) -> Result<(), ApiError> {
    if auth.user_id != user_id {
        return Err(ApiError::forbidden(format!(
            "Cannot access {what} of other users"
        )));
    }
    Ok(())
}

/// Rejects content that would be too large to store.
fn check_size(content: &str) -> Result<(), ApiError> {
    if content.len() > MAX_CONTENT_BYTES {
        return Err(ApiError::too_large(format!(
            "Content is too large (max {MAX_CONTENT_BYTES} bytes)"
        )));
    }
    Ok(())
}
