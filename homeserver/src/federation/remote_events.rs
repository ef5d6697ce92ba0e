//! What the inbound PDU pipeline fetches from other servers, over
//! federation: [`FederationRemote`] asks one server (the origin of the
//! transaction being processed) for missing events, single events and the
//! state at an event; [`GrowingKeyRing`] is the key ring the pipeline
//! verifies with, which fetches the keys of servers that only the fetched
//! events name.
//!
//! Responses are size-capped per request: an event is at most 64 KiB
//! (spec "Size limits"), so the caps below allow what a well-behaved
//! server sends and no more.

use std::sync::RwLock;

use myelin_proto::Pdu;
use myelin_proto::canonical_json::{self, Object, Value};
use myelin_proto::signing::PublicKey;
use myelin_proto::verify::KeyRing;
use ruma::api::federation::event::{get_event, get_missing_events, get_room_state_ids};
use ruma::{EventId, OwnedEventId, OwnedServerName, RoomId, ServerName, UInt, UserId};

use super::keys::{KeyFetcher, MemoryKeyRing};
use crate::rooms::ingest::{
    BoxFuture, KeySource, MAX_STATE_IDS, RemoteError, RemoteEvents, StateIds,
};
use myelin_federation::client::FederationClient;

/// Largest `/event` answer: one event of at most 64 KiB, with room to
/// spare for the envelope.
const MAX_EVENT_RESPONSE: usize = 128 * 1024;
/// Largest `get_missing_events` answer per asked event.
const MAX_MISSING_PER_EVENT: usize = 70 * 1024;
/// Largest `/state_ids` answer: [`MAX_STATE_IDS`] IDs in each list.
const MAX_STATE_IDS_RESPONSE: usize = 2 * MAX_STATE_IDS * 64;

/// Fetches events from one server for the pipeline.
pub struct FederationRemote {
    client: FederationClient,
    destination: OwnedServerName,
}

impl FederationRemote {
    pub fn new(client: FederationClient, destination: OwnedServerName) -> Self {
        Self {
            client,
            destination,
        }
    }
}

fn remote_error(e: impl std::fmt::Display) -> RemoteError {
    RemoteError(e.to_string())
}

/// A received JSON value as a canonical JSON object (events must be
/// objects; anything else is the remote's error).
fn object_of(raw: &serde_json::value::RawValue) -> Result<Object, RemoteError> {
    canonical_json::parse_object(raw.get().as_bytes()).map_err(remote_error)
}

impl RemoteEvents for FederationRemote {
    fn missing_events<'a>(
        &'a self,
        room_id: &'a RoomId,
        earliest: &'a [OwnedEventId],
        latest: &'a [OwnedEventId],
        limit: u32,
        min_depth: i64,
    ) -> BoxFuture<'a, Result<Vec<Object>, RemoteError>> {
        Box::pin(async move {
            let mut request = get_missing_events::v1::Request::new(
                room_id.to_owned(),
                earliest.to_vec(),
                latest.to_vec(),
            );
            request.limit = UInt::from(limit);
            request.min_depth = UInt::try_from(min_depth.max(0)).unwrap_or(UInt::MAX);
            let cap = MAX_MISSING_PER_EVENT * (limit.max(1) as usize);
            let response = self
                .client
                .send_with_limit(&self.destination, request, cap)
                .await
                .map_err(remote_error)?;
            // More than asked for is cut, not trusted.
            response
                .events
                .iter()
                .take(limit as usize)
                .map(|raw| object_of(raw))
                .collect()
        })
    }

    fn event<'a>(
        &'a self,
        _room_id: &'a RoomId,
        event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<Object, RemoteError>> {
        Box::pin(async move {
            let request = get_event::v1::Request::new(event_id.to_owned());
            let response = self
                .client
                .send_with_limit(&self.destination, request, MAX_EVENT_RESPONSE)
                .await
                .map_err(remote_error)?;
            object_of(&response.pdu)
        })
    }

    fn state_ids<'a>(
        &'a self,
        room_id: &'a RoomId,
        event_id: &'a EventId,
    ) -> BoxFuture<'a, Result<StateIds, RemoteError>> {
        Box::pin(async move {
            let request =
                get_room_state_ids::v1::Request::new(event_id.to_owned(), room_id.to_owned());
            let response = self
                .client
                .send_with_limit(&self.destination, request, MAX_STATE_IDS_RESPONSE)
                .await
                .map_err(remote_error)?;
            Ok(StateIds {
                pdu_ids: response.pdu_ids,
                auth_chain_ids: response.auth_chain_ids,
            })
        })
    }
}

/// The `(server, key_id, origin_server_ts)` triples a received event needs
/// verified: the signatures of the servers that must have signed it (its
/// sender's, and the one a restricted join names). Signatures of other
/// servers are not checked, so their keys are not fetched: a PDU cannot
/// make us contact arbitrary servers.
pub fn needed_keys(obj: &Object) -> Vec<(OwnedServerName, String, i64)> {
    let Some(ts) = obj.get("origin_server_ts").and_then(Value::as_integer) else {
        return Vec::new();
    };
    let mut servers: Vec<OwnedServerName> = Vec::with_capacity(2);
    let user_server = |v: Option<&Value>| match v {
        Some(Value::String(s)) => UserId::parse(s.as_str())
            .ok()
            .map(|u| u.server_name().to_owned()),
        _ => None,
    };
    if let Some(server) = user_server(obj.get("sender")) {
        servers.push(server);
    }
    if let Some(Value::Object(content)) = obj.get("content")
        && let Some(server) = user_server(content.get("join_authorised_via_users_server"))
        && !servers.contains(&server)
    {
        servers.push(server);
    }
    let Some(Value::Object(signatures)) = obj.get("signatures") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for server in servers {
        if let Some(Value::Object(by_key)) = signatures.get(server.as_str()) {
            // A handful of keys per server at most; more is not a real
            // server's signature set.
            for key_id in by_key.keys().take(4) {
                out.push((server.clone(), key_id.clone(), ts));
            }
        }
    }
    out
}

/// A key ring that starts with the keys of a transaction's PDUs and grows
/// with those of the events the pipeline fetches on the way.
pub struct GrowingKeyRing {
    fetcher: KeyFetcher,
    ring: RwLock<MemoryKeyRing>,
}

impl GrowingKeyRing {
    pub fn new(fetcher: KeyFetcher, ring: MemoryKeyRing) -> Self {
        Self {
            fetcher,
            ring: RwLock::new(ring),
        }
    }
}

impl KeyRing for GrowingKeyRing {
    fn key(&self, server: &ServerName, key_id: &str, origin_server_ts: i64) -> Option<PublicKey> {
        self.ring
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .key(server, key_id, origin_server_ts)
    }
}

impl KeySource for GrowingKeyRing {
    fn prepare<'a>(&'a self, pdus: &'a [Pdu]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let missing: Vec<(OwnedServerName, String, i64)> = pdus
                .iter()
                .flat_map(|p| needed_keys(p.json()))
                .filter(|(server, key_id, ts)| self.key(server, key_id, *ts).is_none())
                .collect();
            if missing.is_empty() {
                return;
            }
            let found = self.fetcher.keyring_for(&missing).await;
            self.ring
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .extend(found);
        })
    }
}

#[cfg(test)]
mod tests {
    use myelin_proto::canonical_json::parse_object;
    use serde_json::json;

    use super::needed_keys;

    #[test]
    fn needed_keys_are_those_of_required_signers_only() {
        let obj = parse_object(
            json!({
                "sender": "@a:alpha.test",
                "origin_server_ts": 5,
                "content": {"join_authorised_via_users_server": "@b:beta.test"},
                "signatures": {
                    "alpha.test": {"ed25519:1": "x"},
                    "beta.test": {"ed25519:2": "y"},
                    "gamma.test": {"ed25519:3": "z"},
                },
            })
            .to_string()
            .as_bytes(),
        )
        .expect("object");
        let got: Vec<(String, String, i64)> = needed_keys(&obj)
            .into_iter()
            .map(|(s, k, t)| (s.to_string(), k, t))
            .collect();
        assert_eq!(
            got,
            vec![
                ("alpha.test".into(), "ed25519:1".into(), 5),
                ("beta.test".into(), "ed25519:2".into(), 5),
            ]
        );
        let unsigned =
            parse_object(br#"{"sender": "@a:alpha.test", "origin_server_ts": 5}"#).expect("object");
        assert!(needed_keys(&unsigned).is_empty());
    }
}
