//! The accounts part of the client-server API: registration, login and
//! sessions, devices, password and deactivation, profiles, capabilities,
//! and Synapse's shared-secret registration for admin tools.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use ruma::api::client as c;

use crate::api::error::ApiError;
use crate::api::route;
use crate::state::AppState;
use crate::storage::accounts::SessionRequest;

pub mod capabilities;
pub mod client_ip;
pub mod credentials;
pub mod deactivate;
pub mod devices;
pub mod login;
pub mod login_token;
pub mod password;
pub mod profile;
pub mod refresh;
pub mod register;
pub mod session;
pub mod uiaa;
pub mod username;

use client_ip::ClientIp;

/// Every accounts endpoint.
pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<c::account::register::v3::Request, _, _>(r, register::register);
    let r =
        route::<c::account::get_username_availability::v3::Request, _, _>(r, register::available);
    let r = route::<c::session::get_login_types::v3::Request, _, _>(r, login::login_types);
    let r = route::<c::session::login::v3::Request, _, _>(r, login::login);
    let r = route::<c::session::get_login_token::v1::Request, _, _>(r, login_token::get_token);
    let r = route::<c::session::refresh_token::v3::Request, _, _>(r, refresh::refresh);
    let r = route::<c::session::logout::v3::Request, _, _>(r, session::logout);
    let r = route::<c::session::logout_all::v3::Request, _, _>(r, session::logout_all);
    let r = route::<c::account::whoami::v3::Request, _, _>(r, session::whoami);
    let r = route::<c::device::get_devices::v3::Request, _, _>(r, devices::list);
    let r = route::<c::device::get_device::v3::Request, _, _>(r, devices::get);
    let r = route::<c::device::update_device::v3::Request, _, _>(r, devices::update);
    let r = route::<c::device::delete_device::v3::Request, _, _>(r, devices::delete);
    let r = route::<c::device::delete_devices::v3::Request, _, _>(r, devices::delete_many);
    let r = route::<c::account::change_password::v3::Request, _, _>(r, password::change);
    let r = route::<c::account::deactivate::v3::Request, _, _>(r, deactivate::deactivate);
    let r = route::<c::profile::get_profile::v3::Request, _, _>(r, profile::get);
    let r = route::<c::profile::get_display_name::v3::Request, _, _>(r, profile::get_displayname);
    let r = route::<c::profile::set_display_name::v3::Request, _, _>(r, profile::set_displayname);
    let r = route::<c::profile::get_avatar_url::v3::Request, _, _>(r, profile::get_avatar);
    let r = route::<c::profile::set_avatar_url::v3::Request, _, _>(r, profile::set_avatar);
    let r =
        route::<c::discovery::get_capabilities::v3::Request, _, _>(r, capabilities::capabilities);
    r.route(
        "/_synapse/admin/v1/register",
        get(crate::api::synapse_admin::nonce).post(crate::api::synapse_admin::register),
    )
}

/// The longest device ID accepted from a client.
const MAX_DEVICE_ID_LEN: usize = 255;

/// Device IDs are opaque, but they are stored, listed and put in keys:
/// bound their size.
fn validate_device_id(device_id: &str) -> Result<(), ApiError> {
    if device_id.is_empty() || device_id.len() > MAX_DEVICE_ID_LEN {
        return Err(ApiError::invalid_param(format!(
            "device_id must be 1 to {MAX_DEVICE_ID_LEN} bytes"
        )));
    }
    Ok(())
}

/// A session on the client's chosen device, or a new one.
fn session_request(
    device_id: Option<String>,
    display_name: Option<String>,
    ip: ClientIp,
    refreshable: Option<Duration>,
) -> SessionRequest {
    SessionRequest {
        device_id: device_id.unwrap_or_else(crate::random::device_id),
        display_name,
        ip: ip.0.map(|ip| ip.to_string()),
        refreshable,
    }
}
