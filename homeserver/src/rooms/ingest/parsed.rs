//! Stored events parsed once. Reading a stored event back as a [`Pdu`]
//! recomputes its event ID (redaction, canonical JSON, SHA-256), and every
//! received event of a room reads the same few ones again: the create
//! event, the power levels, the join rules, its sender's membership, in
//! steps 4, 5 and 6. The cache is keyed by the stored JSON itself, so an
//! entry can never be stale: an event redacted since is different JSON.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use myelin_proto::{Pdu, RoomVersion};

use crate::api::error::ApiError;
use crate::rooms::pipeline::stored_pdu;

/// Entries kept; when full the cache starts over (the hot events of the
/// rooms being received are back after one event each).
const CAPACITY: usize = 1024;

static PARSED: LazyLock<Mutex<HashMap<(RoomVersion, String), Pdu>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The stored event `json` of a room of `version`, parsed.
pub(super) fn stored(version: RoomVersion, json: &str) -> Result<Pdu, ApiError> {
    let key = (version, json.to_owned());
    if let Some(pdu) = cache().get(&key) {
        return Ok(pdu.clone());
    }
    let pdu = stored_pdu(version, json)?;
    let mut cache = cache();
    if cache.len() >= CAPACITY {
        cache.clear();
    }
    cache.insert(key, pdu.clone());
    Ok(pdu)
}

fn cache() -> std::sync::MutexGuard<'static, HashMap<(RoomVersion, String), Pdu>> {
    PARSED.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_event_is_the_event_its_json_says() {
        let json = r#"{"auth_events":[],"content":{"body":"x"},"depth":3,"hashes":{"sha256":"abc"},"origin_server_ts":1,"prev_events":[],"room_id":"!r:example.org","sender":"@a:example.org","signatures":{},"type":"m.room.message"}"#;
        let first = stored(RoomVersion::V11, json).expect("parses");
        let again = stored(RoomVersion::V11, json).expect("cached");
        assert_eq!(first, again);
        assert_eq!(first, stored_pdu(RoomVersion::V11, json).expect("parses"));
        // Other JSON (as after a redaction) is another entry.
        let other = json.replace(r#"{"body":"x"}"#, "{}");
        let redacted = stored(RoomVersion::V11, &other).expect("parses");
        assert_eq!(redacted.event_id(), first.event_id());
        assert_ne!(redacted.content(), first.content());
        assert!(stored(RoomVersion::V11, "not json").is_err());
    }
}
