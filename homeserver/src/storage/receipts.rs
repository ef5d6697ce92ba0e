//! Owner of read receipts (`m.read`, `m.read.private`) and their stream.
//!
//! INTERFACE STUB: the receipts work fills this in; sync calls exactly this
//! function. Receipt changes take positions in [`super::streams::Stream::Receipts`].

use sea_orm::DbErr;

use super::Db;

/// The content of the `m.receipt` event sync shows for each of `rooms`
/// whose receipts changed at a position in `(since, until]` (with `since`
/// 0: every room with receipts), as `viewer` may see them: other users'
/// `m.read.private` receipts are never shown. The content is the spec's
/// `{event_id: {receipt_type: {user_id: {ts, thread_id?}}}}` object,
/// holding only the changed receipts in an incremental sync.
pub async fn for_sync(
    db: &Db,
    viewer: &str,
    rooms: &[&str],
    since: i64,
    until: i64,
) -> Result<Vec<(String, serde_json::Value)>, DbErr> {
    let _ = (db, viewer, rooms, since, until);
    Ok(Vec::new())
}
