//! The end-to-end encryption parts of a sync response: the syncing
//! device's to-device messages, `device_lists`, and its one-time and
//! fallback key counts.
//!
//! # Choices where the spec is silent (following Synapse)
//! - At most [`TO_DEVICE_LIMIT`] to-device messages per response. When the
//!   limit cuts the batch, the next token's to-device position is the last
//!   message delivered, so the client's next sync gets the rest; a response
//!   carrying messages never long-polls, so that sync comes at once.
//! - A device's messages are deleted only when it syncs with a token past
//!   them ([`acknowledge_to_device`]): a client that lost a response and
//!   retries with its old token gets the same messages again.
//! - `device_lists` only in incremental syncs: an initial sync has no
//!   earlier state to compare with, and clients query every user they
//!   track after it anyway. Unlike Synapse a token's device-list position
//!   of 0 still counts as a position (ours start at 1, so 0 is "before
//!   any change", not "unknown").
//! - `device_one_time_keys_count` (always with `signed_curve25519`, 0 when
//!   none are left) and `device_unused_fallback_key_types` (possibly empty)
//!   in every response, initial and incremental, so clients always know
//!   whether to upload more keys.

use std::collections::BTreeMap;

use ruma::api::client::sync::sync_events::v3 as sync_events;
use ruma::{DeviceId, OneTimeKeyAlgorithm, OwnedUserId, UInt, UserId};

use super::token::SyncToken;
use crate::api::error::ApiError;
use crate::e2ee;
use crate::rooms::format;
use crate::storage::Db;

/// The most to-device messages one response carries (as Synapse).
pub const TO_DEVICE_LIMIT: usize = 100;

/// Deletes the device's to-device messages the request's token proves it
/// received: those up to the token's to-device position.
pub async fn acknowledge_to_device(
    db: &Db,
    user_id: &UserId,
    device_id: &DeviceId,
    since: &SyncToken,
) -> Result<(), ApiError> {
    if since.to_device > 0 {
        e2ee::acknowledge(db, user_id.as_str(), device_id.as_str(), since.to_device).await?;
    }
    Ok(())
}

/// Fills the E2EE sections of `resp` for the device, between the request's
/// token and `now` (no state event came after `state_until`, so no
/// membership changed after it). Returns the to-device position of the next token:
/// `now`'s, or the last message delivered when the limit cut the batch.
pub async fn fill(
    db: &Db,
    user_id: &UserId,
    device_id: &DeviceId,
    since: Option<&SyncToken>,
    now: &SyncToken,
    state_until: i64,
    resp: &mut sync_events::Response,
) -> Result<i64, ApiError> {
    let user = user_id.as_str();
    let device = device_id.as_str();

    let since_to_device = since.map_or(0, |s| s.to_device);
    let mut next_to_device = now.to_device;
    if since_to_device < now.to_device {
        let (events, next) = e2ee::to_device_for_sync(
            db,
            user,
            device,
            since_to_device,
            now.to_device,
            TO_DEVICE_LIMIT,
        )
        .await?;
        resp.to_device.events = events.iter().map(format::raw).collect::<Result<_, _>>()?;
        next_to_device = next;
    }

    if let Some(since) = since {
        let mut until = now.device_list_positions();
        // Memberships change with state events, none after `state_until`.
        until.timeline = until.timeline.min(state_until);
        let (changed, left) =
            e2ee::changes_for_sync(db, user, since.device_list_positions(), until).await?;
        resp.device_lists.changed = user_ids(changed);
        resp.device_lists.left = user_ids(left);
    }

    let counts = e2ee::cached_sync_key_counts(db, user, device).await?;
    let (counts, fallback) = &*counts;
    resp.device_one_time_keys_count = one_time_key_counts(counts.clone());
    resp.device_unused_fallback_key_types = Some(
        fallback
            .iter()
            .map(|a| OneTimeKeyAlgorithm::from(a.as_str()))
            .collect(),
    );
    Ok(next_to_device)
}

/// User IDs as stored, parsed; a stored ID that does not parse (which no
/// write path lets in) is left out rather than failing the sync.
fn user_ids(ids: Vec<String>) -> Vec<OwnedUserId> {
    ids.into_iter()
        .filter_map(|u| OwnedUserId::try_from(u).ok())
        .collect()
}

/// `device_one_time_keys_count` from the stored counts by algorithm.
fn one_time_key_counts(counts: BTreeMap<String, u64>) -> BTreeMap<OneTimeKeyAlgorithm, UInt> {
    counts
        .into_iter()
        .map(|(algorithm, n)| (algorithm.into(), UInt::new_saturating(n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_counts_keep_every_algorithm() {
        let counts = BTreeMap::from([
            ("signed_curve25519".to_owned(), 0),
            ("org.example.other".to_owned(), 3),
        ]);
        let out = one_time_key_counts(counts);
        assert_eq!(
            out.get(&OneTimeKeyAlgorithm::SignedCurve25519),
            Some(&UInt::MIN)
        );
        assert_eq!(
            out.get(&OneTimeKeyAlgorithm::from("org.example.other")),
            Some(&UInt::from(3u32))
        );
        let json = serde_json::to_value(&out).expect("serialise");
        assert_eq!(
            json,
            serde_json::json!({"signed_curve25519": 0, "org.example.other": 3})
        );
    }

    #[test]
    fn unparsable_user_ids_are_left_out() {
        let ids = user_ids(vec!["@a:x".to_owned(), "nope".to_owned()]);
        assert_eq!(ids, vec![OwnedUserId::try_from("@a:x").expect("id")]);
    }
}
