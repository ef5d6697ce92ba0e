//! The key server and notary: `GET /_matrix/key/v2/server` (our keys, signed by each),
//! `GET /_matrix/key/v2/query/{serverName}` and `POST /_matrix/key/v2/query` (other
//! servers' own signed documents, fetched when we hold none valid long enough, with our
//! signature added).

use std::collections::BTreeMap;

use axum::extract::State;
use myelin_federation::server_keys::countersign;
use myelin_proto::canonical_json::{Object, Value};
use ruma::api::federation::discovery::{
    ServerSigningKeys, get_remote_server_keys, get_remote_server_keys_batch, get_server_keys,
};
use ruma::serde::Raw;
use ruma::{OwnedServerName, ServerName};

use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::federation::keys::ms;
use crate::state::AppState;
use crate::time::now_ms;

/// Servers one batch query may ask about.
const MAX_SERVERS_PER_QUERY: usize = 100;

fn raw(doc: &Object) -> Result<Raw<ServerSigningKeys>, ApiError> {
    Raw::from_json_string(Value::Object(doc.clone()).to_canonical_string())
        .map_err(|e| ApiError::internal("cannot encode a key document", e))
}

/// `GET /_matrix/key/v2/server`
pub async fn server(
    State(state): State<AppState>,
    Ruma(_req): Ruma<get_server_keys::v2::Request>,
) -> Result<RumaResponse<get_server_keys::v2::Response>, ApiError> {
    let doc = state.federation().keys().own_document();
    Ok(RumaResponse(get_server_keys::v2::Response::new(raw(&doc)?)))
}

/// `server`'s documents valid until at least `minimum`, each signed by us too.
async fn notarised(
    state: &AppState,
    server: &ServerName,
    minimum: i64,
) -> Result<Vec<Raw<ServerSigningKeys>>, ApiError> {
    let docs = state
        .federation()
        .keys()
        .documents_for(server, minimum)
        .await;
    docs.iter()
        .map(|d| raw(&countersign(d, state.server_name(), state.signing_key())))
        .collect()
}

/// `GET /_matrix/key/v2/query/{serverName}`
pub async fn query(
    State(state): State<AppState>,
    Ruma(req): Ruma<get_remote_server_keys::v2::Request>,
) -> Result<RumaResponse<get_remote_server_keys::v2::Response>, ApiError> {
    let minimum = ms(Some(req.minimum_valid_until_ts));
    let keys = notarised(&state, &req.server_name, minimum).await?;
    Ok(RumaResponse(get_remote_server_keys::v2::Response::new(
        keys,
    )))
}

/// `POST /_matrix/key/v2/query`: servers are looked up concurrently.
pub async fn query_batch(
    State(state): State<AppState>,
    Ruma(req): Ruma<get_remote_server_keys_batch::v2::Request>,
) -> Result<RumaResponse<get_remote_server_keys_batch::v2::Response>, ApiError> {
    if req.server_keys.len() > MAX_SERVERS_PER_QUERY {
        return Err(ApiError::invalid_param(format!(
            "At most {MAX_SERVERS_PER_QUERY} servers per query"
        )));
    }
    // One minimum per server: the largest asked for any of its keys, else now (spec).
    let wanted: BTreeMap<OwnedServerName, i64> = req
        .server_keys
        .iter()
        .map(|(server, criteria)| {
            let minimum = criteria
                .values()
                .filter_map(|c| c.minimum_valid_until_ts)
                .map(|t| ms(Some(t)))
                .max()
                .unwrap_or_else(now_ms);
            (server.clone(), minimum)
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (server, minimum) in wanted {
        let state = state.clone();
        tasks.spawn(async move { notarised(&state, &server, minimum).await });
    }
    let mut keys = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(found) => keys.extend(found?),
            Err(e) => return Err(ApiError::internal("key query task failed", e)),
        }
    }
    Ok(RumaResponse(
        get_remote_server_keys_batch::v2::Response::new(keys),
    ))
}
