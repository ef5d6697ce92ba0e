//! `PUT /_matrix/federation/v1/send/{txnId}`: see
//! [`crate::federation::transaction`].

use axum::extract::State;
use ruma::api::federation::transactions::send_transaction_message;

use super::Origin;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::federation::transaction::{self, MAX_EDUS, MAX_PDUS, Transaction};
use crate::state::AppState;

/// Receives a transaction. Over [`MAX_PDUS`] PDUs or [`MAX_EDUS`] EDUs is
/// refused whole with a 400 before anything is looked at, as Synapse does
/// (it answers `{}`; we give the spec's error shape, `M_BAD_JSON`). The
/// origin is the server that signed the request, whatever the body says.
pub async fn send(
    State(state): State<AppState>,
    Origin(origin): Origin,
    Ruma(req): Ruma<send_transaction_message::v1::Request>,
) -> Result<RumaResponse<send_transaction_message::v1::Response>, ApiError> {
    if req.pdus.len() > MAX_PDUS || req.edus.len() > MAX_EDUS {
        return Err(ApiError::bad_json(format!(
            "a transaction carries at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs"
        )));
    }
    if req.origin != origin {
        tracing::info!(%origin, claimed = %req.origin, "transaction origin differs from its signer");
    }
    let edus = req
        .edus
        .iter()
        // An EDU that is not even JSON is skipped like any malformed one.
        .filter_map(|e| e.deserialize_as::<serde_json::Value>().ok())
        .collect();
    let txn = Transaction {
        origin,
        txn_id: req.transaction_id.to_string(),
        pdus: req.pdus,
        edus,
    };
    let results = transaction::receive(&state, txn).await?;
    Ok(RumaResponse(send_transaction_message::v1::Response::new(
        results,
    )))
}
