//! An inbound transaction (`PUT /_matrix/federation/v1/send/{txnId}`):
//! its PDUs go through the inbound pipeline room by room, its EDUs to
//! [`super::edus`], and the answer is remembered per origin and
//! transaction ID so a retransmission is answered without being processed
//! again.
//!
//! - PDUs are grouped by the room they name. Each room's PDUs are ingested
//!   under its lock (one room at a time, in order), different rooms
//!   concurrently, at most [`ROOM_CONCURRENCY`] at once. A PDU for a room
//!   we do not know, or for a room whose ACL denies the origin, is an
//!   error in the answer and is not stored.
//! - The origin may relay other servers' events: what counts is that each
//!   event is signed by its sender's server (checked by the pipeline), not
//!   who delivered it. A server with no member in a room cannot get its
//!   own users' events accepted: the auth rules reject them.
//! - The keys every PDU needs are looked up once, before any room is
//!   processed; events fetched while processing add theirs
//!   ([`GrowingKeyRing`]).
//! - The answer's `pdus` maps each PDU's event ID to `{}`, or to
//!   `{"error": reason}` when it was dropped or rejected. Soft-failed
//!   events are not errors: the sender did nothing wrong.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use myelin_proto::canonical_json::{self, Object, Value};
use myelin_proto::room_version::RedactionRules;
use ruma::{OwnedEventId, OwnedRoomId, OwnedServerName, ServerName};
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use super::remote_events::{FederationRemote, GrowingKeyRing, needed_keys};
use super::{acl, edus};
use crate::api::error::ApiError;
use crate::rooms::ingest::Outcome;
use crate::state::AppState;
use crate::storage::{federation_txns, rooms};

/// Most PDUs in one transaction (spec "Transactions").
pub const MAX_PDUS: usize = 50;
/// Most EDUs in one transaction.
pub const MAX_EDUS: usize = 100;
/// Most rooms of one transaction processed at once.
pub const ROOM_CONCURRENCY: usize = 4;

/// Each PDU's outcome as the answer carries it.
pub type PduResults = BTreeMap<OwnedEventId, Result<(), String>>;

/// A received transaction, as parsed from the request.
pub struct Transaction {
    pub origin: OwnedServerName,
    pub txn_id: String,
    pub pdus: Vec<Box<RawValue>>,
    pub edus: Vec<serde_json::Value>,
}

/// Processes a transaction, or answers a retransmission with the answer
/// stored for it. Errors are local failures (the origin will retry).
pub async fn receive(state: &AppState, txn: Transaction) -> Result<PduResults, ApiError> {
    let now = crate::time::now_ms();
    if let Some(stored) =
        federation_txns::get(state.db(), txn.origin.as_str(), &txn.txn_id, now).await?
    {
        tracing::debug!(origin = %txn.origin, txn_id = %txn.txn_id, "retransmitted transaction");
        return Ok(decode(&stored));
    }
    let (results, edus) = tokio::join!(
        pdus(state, &txn.origin, &txn.pdus),
        edus::handle(state, &txn.origin, &txn.edus),
    );
    let results = results?;
    edus?;
    federation_txns::store(
        state.db(),
        txn.origin.as_str(),
        &txn.txn_id,
        &encode(&results),
        now,
    )
    .await?;
    Ok(results)
}

/// The stored form of an answer: `{event_id: null | reason}`.
fn encode(results: &PduResults) -> String {
    let map: serde_json::Map<String, serde_json::Value> = results
        .iter()
        .map(|(id, r)| {
            let v = match r {
                Ok(()) => serde_json::Value::Null,
                Err(e) => serde_json::Value::String(e.clone()),
            };
            (id.to_string(), v)
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

fn decode(stored: &str) -> PduResults {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str(stored) else {
        return PduResults::new();
    };
    map.into_iter()
        .filter_map(|(id, v)| {
            let id = OwnedEventId::try_from(id).ok()?;
            Some(match v {
                serde_json::Value::String(e) => (id, Err(e)),
                _ => (id, Ok(())),
            })
        })
        .collect()
}

/// The event ID of a PDU of a room we cannot read the version of: its
/// `event_id` field, else its reference hash under the current redaction
/// rules (room versions 11 and 12; best effort, for the answer only).
fn guessed_id(obj: &Object) -> Option<OwnedEventId> {
    if let Some(Value::String(s)) = obj.get("event_id") {
        return OwnedEventId::try_from(s.as_str()).ok();
    }
    if !obj.contains_key("hashes") {
        return None;
    }
    OwnedEventId::try_from(myelin_proto::hashes::event_id(RedactionRules::V11, obj)).ok()
}

async fn pdus(
    state: &AppState,
    origin: &ServerName,
    raw: &[Box<RawValue>],
) -> Result<PduResults, ApiError> {
    let mut results = PduResults::new();
    // Grouped by room, in the order received.
    let mut by_room: Vec<(OwnedRoomId, Vec<Object>)> = Vec::new();
    let mut index: HashMap<OwnedRoomId, usize> = HashMap::new();
    for pdu in raw {
        let Ok(obj) = canonical_json::parse_object(pdu.get().as_bytes()) else {
            tracing::info!(%origin, "PDU that is not a JSON object ignored");
            continue;
        };
        let room_id = match obj.get("room_id") {
            Some(Value::String(s)) => OwnedRoomId::try_from(s.as_str()).ok(),
            _ => None,
        };
        let Some(room_id) = room_id else {
            if let Some(id) = guessed_id(&obj) {
                results.insert(id, Err("PDU without a valid room_id".to_owned()));
            }
            continue;
        };
        let i = *index.entry(room_id.clone()).or_insert_with(|| {
            by_room.push((room_id, Vec::new()));
            by_room.len() - 1
        });
        by_room[i].1.push(obj);
    }
    // Rooms we do not know, or whose ACL denies the origin, are refused
    // before anything else is done for their PDUs (no key is fetched).
    let mut accepted = Vec::with_capacity(by_room.len());
    for (room_id, pdus) in by_room {
        let refusal = if rooms::get(state.db(), room_id.as_str()).await?.is_none() {
            Some(format!("unknown room {room_id}"))
        } else if !acl::allows(state, room_id.as_str(), origin).await? {
            Some(format!(
                "server {origin} is denied by the room's server ACL"
            ))
        } else {
            None
        };
        match refusal {
            Some(reason) => results.extend(
                pdus.iter()
                    .filter_map(guessed_id)
                    .map(|id| (id, Err(reason.clone()))),
            ),
            None => accepted.push((room_id, pdus)),
        }
    }
    if accepted.is_empty() {
        return Ok(results);
    }
    let needed: Vec<_> = accepted
        .iter()
        .flat_map(|(_, pdus)| pdus.iter().flat_map(needed_keys))
        .collect();

    let fetcher = state.federation().keys().clone();
    let ring = fetcher.keyring_for(&needed).await;
    let keys = Arc::new(GrowingKeyRing::new(fetcher, ring));
    let remote = Arc::new(FederationRemote::new(
        state.federation().client().clone(),
        origin.to_owned(),
    ));
    let permits = Arc::new(Semaphore::new(ROOM_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for (room_id, pdus) in accepted {
        let state = state.clone();
        let origin = origin.to_owned();
        let keys = keys.clone();
        let remote = remote.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            room_pdus(&state, &origin, &room_id, pdus, &keys, &remote).await
        });
    }
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(room_results)) => results.extend(room_results),
            Ok(Err(e)) => failure = Some(e),
            Err(e) => failure = Some(ApiError::internal("transaction task failed", e)),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

/// One room's PDUs, ingested under the room's lock.
async fn room_pdus(
    state: &AppState,
    origin: &ServerName,
    room_id: &OwnedRoomId,
    pdus: Vec<Object>,
    keys: &GrowingKeyRing,
    remote: &FederationRemote,
) -> Result<Vec<(OwnedEventId, Result<(), String>)>, ApiError> {
    let outcomes = state
        .rooms()
        .lock(room_id)
        .await
        .ingest(state, origin, pdus, keys, remote)
        .await?;
    Ok(outcomes
        .into_iter()
        .filter_map(|(id, outcome)| {
            let id = OwnedEventId::try_from(id).ok()?;
            Some(match outcome {
                Outcome::Accepted | Outcome::SoftFailed => (id, Ok(())),
                Outcome::Rejected(reason) | Outcome::Dropped(reason) => (id, Err(reason)),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_answers_round_trip() {
        let mut results = PduResults::new();
        results.insert(
            OwnedEventId::try_from("$a").expect("id"),
            Err("no".to_owned()),
        );
        results.insert(OwnedEventId::try_from("$b").expect("id"), Ok(()));
        assert_eq!(decode(&encode(&results)), results);
        assert!(decode("not json").is_empty());
    }
}
