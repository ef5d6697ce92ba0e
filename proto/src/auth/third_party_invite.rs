//! Rule 4.4.1: an invite that redeems a third-party (identity server)
//! invite. The identity server signed `{mxid, token, ...}` with a key the
//! inviter published earlier in an `m.room.third_party_invite` event.

use super::AuthError;
use super::rule::Rule;
use super::state::{Membership, State};
use crate::base64;
use crate::canonical_json::{Object, Value, object_bytes_without};
use crate::pdu::Pdu;
use crate::room_version::RoomVersionRules;
use crate::signing::PublicKey;

/// Rule 4.4.1 for an invite whose content has `third_party_invite`. Note
/// that the inviter need not be joined: the rule allows on a verified
/// signature alone, before rules 4.4.2 to 4.4.5.
pub(super) fn check(
    rules: &RoomVersionRules,
    event: &Pdu,
    target: &str,
    state: &State<'_, '_>,
) -> Result<(), AuthError> {
    // 4.4.1.1
    if state.membership(target) == Membership::Ban {
        return Err(Rule::TpiTargetBanned.reject(rules, format!("{target} is banned")));
    }
    // 4.4.1.2: a `third_party_invite` that is not an object has no `signed`.
    let Some(signed) = event
        .content()
        .get("third_party_invite")
        .and_then(Value::as_object)
        .and_then(|t| t.get("signed"))
        .and_then(Value::as_object)
    else {
        return Err(Rule::TpiNoSigned.reject(rules, "third_party_invite has no signed object"));
    };
    // 4.4.1.3
    let (Some(mxid), Some(token)) = (
        signed.get("mxid").and_then(Value::as_str),
        signed.get("token").and_then(Value::as_str),
    ) else {
        return Err(Rule::TpiNoMxidOrToken.reject(rules, "signed lacks a string mxid and token"));
    };
    // 4.4.1.4
    if mxid != target {
        return Err(Rule::TpiMxidMismatch.reject(
            rules,
            format!("signed mxid {mxid} is not the invitee {target}"),
        ));
    }
    // 4.4.1.5
    let Some(invite) = state.get("m.room.third_party_invite", token) else {
        return Err(Rule::TpiNoInviteEvent.reject(
            rules,
            format!("no m.room.third_party_invite with token {token:?}"),
        ));
    };
    // 4.4.1.6
    if invite.sender() != event.sender() {
        return Err(Rule::TpiSenderMismatch.reject(
            rules,
            format!(
                "the third-party invite was made by {}, not {}",
                invite.sender(),
                event.sender()
            ),
        ));
    }
    // 4.4.1.7
    if signed_by_any_key(signed, invite.content()) {
        return Ok(());
    }
    // 4.4.1.8
    Err(Rule::TpiNoValidSignature.reject(
        rules,
        "no signature in signed verifies with a key of the third-party invite",
    ))
}

/// Whether any ed25519 signature of any entity in `signed.signatures`
/// verifies, over `signed` without `signatures` and `unsigned`, with any
/// key published in the `m.room.third_party_invite` content: `public_key`
/// and each `public_keys[].public_key`. Keys or signatures that do not
/// decode are skipped rather than failing the whole check, since another
/// one may still verify.
pub fn signed_by_any_key(signed: &Object, invite_content: &Object) -> bool {
    let Some(signatures) = signed.get("signatures").and_then(Value::as_object) else {
        return false;
    };
    let keys: Vec<PublicKey> = invite_content
        .get("public_key")
        .into_iter()
        .chain(
            invite_content
                .get("public_keys")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|k| k.as_object().and_then(|k| k.get("public_key"))),
        )
        .filter_map(Value::as_str)
        .filter_map(decode_public_key)
        .collect();
    if keys.is_empty() {
        return false;
    }
    let message = object_bytes_without(signed, &["signatures", "unsigned"]);
    signatures
        .values()
        .filter_map(Value::as_object)
        .flat_map(|by_key| by_key.iter())
        .filter(|(key_id, _)| key_id.starts_with("ed25519:"))
        .filter_map(|(_, sig)| sig.as_str())
        .any(|sig| keys.iter().any(|k| k.verify(&message, sig).is_ok()))
}

/// Identity servers publish keys in unpadded standard base64; some use the
/// URL-safe alphabet, which other implementations accept too.
fn decode_public_key(s: &str) -> Option<PublicKey> {
    PublicKey::from_base64(s).ok().or_else(|| {
        let bytes: [u8; 32] = base64::decode_url_safe(s).ok()?.try_into().ok()?;
        PublicKey::from_bytes(&bytes).ok()
    })
}
