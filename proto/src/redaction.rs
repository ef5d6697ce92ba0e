//! The redaction algorithm of each room version: which top-level keys and
//! which content keys survive. Redaction decides what is hashed for the
//! event ID and what is signed, so it must match other servers to the byte.

use crate::canonical_json::{Object, Value};
use crate::room_version::RedactionRules;

const TOP_LEVEL_V11: &[&str] = &[
    "event_id",
    "type",
    "room_id",
    "sender",
    "state_key",
    "content",
    "hashes",
    "signatures",
    "depth",
    "prev_events",
    "auth_events",
    "origin_server_ts",
];

const TOP_LEVEL_V9_EXTRA: &[&str] = &["prev_state", "origin", "membership"];

/// Content keys kept for an event type, or `None` when all are kept.
fn content_keys(rules: RedactionRules, event_type: &str) -> Option<&'static [&'static str]> {
    use RedactionRules::*;
    Some(match (event_type, rules) {
        ("m.room.member", _) => &["membership", "join_authorised_via_users_server"],
        ("m.room.create", V9) => &["creator"],
        ("m.room.create", V11) => return None,
        ("m.room.join_rules", _) => &["join_rule", "allow"],
        ("m.room.power_levels", V9) => &[
            "ban",
            "events",
            "events_default",
            "kick",
            "redact",
            "state_default",
            "users",
            "users_default",
        ],
        ("m.room.power_levels", V11) => &[
            "ban",
            "events",
            "events_default",
            "invite",
            "kick",
            "redact",
            "state_default",
            "users",
            "users_default",
        ],
        ("m.room.history_visibility", _) => &["history_visibility"],
        ("m.room.redaction", V11) => &["redacts"],
        _ => &[],
    })
}

fn keeps_top_level(rules: RedactionRules, key: &str) -> bool {
    TOP_LEVEL_V11.contains(&key)
        || (rules == RedactionRules::V9 && TOP_LEVEL_V9_EXTRA.contains(&key))
}

/// The redacted form of an event's `content`. A content that is not an object
/// is left as it is; the event fails format checks elsewhere.
fn redacted_content(rules: RedactionRules, event_type: &str, content: &Value) -> Value {
    let (Value::Object(c), Some(keep)) = (content, content_keys(rules, event_type)) else {
        return content.clone();
    };
    let mut kept: Object = c
        .iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // v11: the `signed` part of a member event's `third_party_invite`
    // survives. The spec leaves open what happens to a `third_party_invite`
    // without `signed`; like Synapse we keep an object as `{}` (plus
    // `signed` when present) and drop anything that is not an object.
    if rules == RedactionRules::V11
        && event_type == "m.room.member"
        && let Some(Value::Object(tpi)) = c.get("third_party_invite")
    {
        let mut kept_tpi = Object::new();
        if let Some(signed) = tpi.get("signed") {
            kept_tpi.insert("signed".to_owned(), signed.clone());
        }
        kept.insert("third_party_invite".to_owned(), Value::Object(kept_tpi));
    }
    Value::Object(kept)
}

fn event_type(event: &Object) -> &str {
    event.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Returns the redacted form of an event. Copies only what survives rather
/// than cloning the whole event: content is usually the large part.
pub fn redact(rules: RedactionRules, event: &Object) -> Object {
    let mut out: Object = event
        .iter()
        .filter(|(k, _)| *k != "content" && keeps_top_level(rules, k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(content) = event.get("content") {
        out.insert(
            "content".to_owned(),
            redacted_content(rules, event_type(event), content),
        );
    }
    out
}

/// Redacts an event in place.
pub fn redact_in_place(rules: RedactionRules, event: &mut Object) {
    event.retain(|k, _| keeps_top_level(rules, k));
    let event_type = event_type(event).to_owned();
    if let Some(content) = event.get_mut("content") {
        *content = redacted_content(rules, &event_type, content);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical_json::parse_object;

    fn redacted(rules: RedactionRules, json: &str) -> String {
        let obj = parse_object(json.as_bytes()).expect("json");
        let a = Value::Object(redact(rules, &obj)).to_canonical_string();
        let mut b = obj;
        redact_in_place(rules, &mut b);
        assert_eq!(
            a,
            Value::Object(b).to_canonical_string(),
            "both forms agree"
        );
        a
    }

    #[test]
    fn v11_keeps_create_content_and_drops_origin() {
        let ev = r#"{"type":"m.room.create","content":{"creator":"@a:x","m.federate":false,"room_version":"11"},"origin":"x","membership":"join","prev_state":[],"unsigned":{"a":1},"sender":"@a:x"}"#;
        assert_eq!(
            redacted(RedactionRules::V11, ev),
            r#"{"content":{"creator":"@a:x","m.federate":false,"room_version":"11"},"sender":"@a:x","type":"m.room.create"}"#
        );
        assert_eq!(
            redacted(RedactionRules::V9, ev),
            r#"{"content":{"creator":"@a:x"},"membership":"join","origin":"x","prev_state":[],"sender":"@a:x","type":"m.room.create"}"#
        );
    }

    #[test]
    fn member_third_party_invite_keeps_only_signed_in_v11() {
        let ev = r#"{"type":"m.room.member","content":{"membership":"invite","displayname":"A","third_party_invite":{"display_name":"a","signed":{"mxid":"@a:x","token":"t"}}}}"#;
        assert_eq!(
            redacted(RedactionRules::V11, ev),
            r#"{"content":{"membership":"invite","third_party_invite":{"signed":{"mxid":"@a:x","token":"t"}}},"type":"m.room.member"}"#
        );
        assert_eq!(
            redacted(RedactionRules::V9, ev),
            r#"{"content":{"membership":"invite"},"type":"m.room.member"}"#
        );
    }

    #[test]
    fn third_party_invite_without_signed_is_kept_as_an_empty_object() {
        let ev = r#"{"type":"m.room.member","content":{"membership":"invite","third_party_invite":{"display_name":"a"}}}"#;
        assert_eq!(
            redacted(RedactionRules::V11, ev),
            r#"{"content":{"membership":"invite","third_party_invite":{}},"type":"m.room.member"}"#
        );
        let not_object = r#"{"type":"m.room.member","content":{"membership":"invite","third_party_invite":null}}"#;
        assert_eq!(
            redacted(RedactionRules::V11, not_object),
            r#"{"content":{"membership":"invite"},"type":"m.room.member"}"#
        );
    }

    #[test]
    fn power_levels_invite_and_redaction_redacts() {
        let pl = r#"{"type":"m.room.power_levels","content":{"invite":50,"ban":50,"notifications":{"room":50}}}"#;
        assert_eq!(
            redacted(RedactionRules::V11, pl),
            r#"{"content":{"ban":50,"invite":50},"type":"m.room.power_levels"}"#
        );
        assert_eq!(
            redacted(RedactionRules::V9, pl),
            r#"{"content":{"ban":50},"type":"m.room.power_levels"}"#
        );
        let red = r#"{"type":"m.room.redaction","redacts":"$a","content":{"redacts":"$a","reason":"spam"}}"#;
        assert_eq!(
            redacted(RedactionRules::V11, red),
            r#"{"content":{"redacts":"$a"},"type":"m.room.redaction"}"#
        );
        assert_eq!(
            redacted(RedactionRules::V9, red),
            r#"{"content":{},"type":"m.room.redaction"}"#
        );
    }

    #[test]
    fn non_object_content_is_left_alone() {
        assert_eq!(
            redacted(
                RedactionRules::V11,
                r#"{"type":"m.room.message","content":5}"#
            ),
            r#"{"content":5,"type":"m.room.message"}"#
        );
    }
}
