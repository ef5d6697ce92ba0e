//! `GET /_matrix/federation/v1/version`

use ruma::api::federation::discovery::get_server_version::v1 as version;

use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};

pub async fn get(
    Ruma(_req): Ruma<version::Request>,
) -> Result<RumaResponse<version::Response>, ApiError> {
    let mut server = version::Server::new();
    server.name = Some("Myelin".to_owned());
    server.version = Some(env!("CARGO_PKG_VERSION").to_owned());
    let mut resp = version::Response::new();
    resp.server = Some(server);
    Ok(RumaResponse(resp))
}
