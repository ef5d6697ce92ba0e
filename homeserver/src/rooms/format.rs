//! Events as clients see them (the spec's "ClientEvent" format): the PDU
//! without its federation fields, plus `event_id`, `room_id` and
//! `unsigned` (`age`, `transaction_id` for the sending device,
//! `redacted_because`, `prev_content` / `replaces_state` of state events).
//! Redactions of v11+ rooms also get a top-level `redacts`, which older
//! clients read.

use std::collections::HashMap;

use myelin_proto::canonical_json;
use ruma::serde::Raw;
use serde_json::{Map, Value as Json};

use crate::api::error::ApiError;
use crate::storage::{Db, events, events::EventRow, txn_ids};

/// Top-level keys only servers need.
const FEDERATION_ONLY: &[&str] = &[
    "auth_events",
    "prev_events",
    "hashes",
    "signatures",
    "depth",
    "origin",
    "membership",
    "prev_state",
];

/// Who is asking: their own device's transaction IDs are echoed.
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
}

fn parse(row: &EventRow) -> Result<Map<String, Json>, ApiError> {
    let obj = canonical_json::parse_object(row.json.as_bytes())
        .map_err(|e| ApiError::internal("stored event unreadable", e))?;
    match Json::from(canonical_json::Value::Object(obj)) {
        Json::Object(map) => Ok(map),
        _ => Err(ApiError::internal("stored event", "not an object")),
    }
}

/// One event in client format, without lookups (`unsigned` gets `age`).
pub fn bare(row: &EventRow, now: i64) -> Result<Map<String, Json>, ApiError> {
    let mut ev = parse(row)?;
    for key in FEDERATION_ONLY {
        ev.remove(*key);
    }
    ev.insert("event_id".into(), Json::String(row.event_id.clone()));
    // v12 create events have no room_id; clients always get one.
    ev.entry("room_id")
        .or_insert_with(|| Json::String(row.room_id.clone()));
    if row.event_type == "m.room.redaction"
        && !ev.contains_key("redacts")
        && let Some(r) = ev.get("content").and_then(|c| c.get("redacts")).cloned()
    {
        ev.insert("redacts".into(), r);
    }
    let unsigned = ev
        .entry("unsigned")
        .or_insert_with(|| Json::Object(Map::new()));
    if let Json::Object(u) = unsigned {
        u.insert(
            "age".into(),
            Json::from(now.saturating_sub(row.origin_server_ts)),
        );
    }
    Ok(ev)
}

/// Events in client format, in the order given, with one lookup per kind
/// of related data for the whole batch.
pub async fn client_events(
    db: &Db,
    viewer: Option<Viewer<'_>>,
    rows: &[EventRow],
) -> Result<Vec<Json>, ApiError> {
    let now = crate::time::now_ms();
    // Only the viewer's own events can carry their transaction IDs.
    let txns = match viewer {
        Some(v) => {
            let own: Vec<&str> = rows
                .iter()
                .filter(|r| r.sender == v.user_id)
                .map(|r| r.event_id.as_str())
                .collect();
            if own.is_empty() {
                HashMap::new()
            } else {
                txn_ids::for_events(db, v.user_id, v.device_id, &own).await?
            }
        }
        None => HashMap::new(),
    };
    let related: Vec<&str> = rows
        .iter()
        .flat_map(|r| [r.redacted_by.as_deref(), r.replaces_state.as_deref()])
        .flatten()
        .collect();
    let related: HashMap<String, EventRow> = events::get_many(db, &related)
        .await?
        .into_iter()
        .map(|r| (r.event_id.clone(), r))
        .collect();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut ev = bare(row, now)?;
        let mut extra = Map::new();
        if let Some(txn) = txns.get(&row.event_id) {
            extra.insert("transaction_id".into(), Json::String(txn.clone()));
        }
        if let Some(redaction) = row.redacted_by.as_ref().and_then(|id| related.get(id)) {
            extra.insert(
                "redacted_because".into(),
                Json::Object(bare(redaction, now)?),
            );
        }
        if let Some(prev) = row.replaces_state.as_ref().and_then(|id| related.get(id)) {
            extra.insert("replaces_state".into(), Json::String(prev.event_id.clone()));
            if let Some(content) = parse(prev)?.remove("content") {
                extra.insert("prev_content".into(), content);
            }
        }
        if let Some(Json::Object(u)) = ev.get_mut("unsigned") {
            u.extend(extra);
        }
        out.push(Json::Object(ev));
    }
    Ok(out)
}

/// A JSON value as a ruma `Raw` of any event type.
pub fn raw<T>(v: &Json) -> Result<Raw<T>, ApiError> {
    serde_json::value::to_raw_value(v)
        .map(Raw::from_json)
        .map_err(|e| ApiError::internal("cannot serialise an event", e))
}

/// Events in client format as ruma `Raw`s.
pub async fn raw_events<T>(
    db: &Db,
    viewer: Option<Viewer<'_>>,
    rows: &[EventRow],
) -> Result<Vec<Raw<T>>, ApiError> {
    client_events(db, viewer, rows)
        .await?
        .iter()
        .map(raw)
        .collect()
}
