//! Presence: whether users are online, unavailable (idle) or offline, with
//! an optional status message, for our users and for the users of other
//! servers who share a room with ours.
//!
//! Kept in memory only: after a restart everyone is offline until their
//! client syncs (or sets a presence) again, and remote users until their
//! server tells us again. Synapse persists presence; losing it on a restart
//! costs a few wrong "offline" dots for a minute, which is not worth a
//! table written on every sync.
//!
//! The rules follow Synapse's:
//! - `PUT /presence/{userId}/status` sets the state and status message
//!   (an absent message clears it); setting `online` counts as activity.
//! - A `/sync` with `set_presence` `online` (the default) brings an
//!   offline user online, one with `unavailable` makes them unavailable;
//!   `offline` leaves presence alone. While a sync is in progress the user
//!   counts as syncing.
//! - Sending a message or a read receipt is activity ([`active`]): it
//!   makes the user online and currently active.
//! - An online user with no activity for the idle timeout (5 minutes)
//!   becomes unavailable; `currently_active` holds for at most a minute
//!   after the last activity.
//! - A user who is not syncing becomes offline once their last sync (or
//!   presence update) is older than the offline timeout (30 seconds).
//! - A remote user becomes offline if their server says nothing for
//!   [`REMOTE_TIMEOUT`]; we re-announce our online users to other servers
//!   every [`REANNOUNCE_INTERVAL`] for the same reason.
//!
//! Every change others should see advances [`Presence::position`] (the
//! sync token's presence field): a new state, status message or
//! `currently_active`, or a last activity moved by more than
//! [`CURRENTLY_ACTIVE_FOR_MS`] (so activity while already active sends
//! nothing, as in Synapse). It wakes the syncs of users sharing a room with the user, and, for
//! our users, is sent to the other servers in their rooms as `m.presence`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ruma::presence::PresenceState;
use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::{Value as Json, json};

use crate::api::error::ApiError;
use crate::config::PresenceConfig;
use crate::state::AppState;
use crate::storage::{device_lists, memberships};

/// How long `currently_active` holds after the last activity (Synapse's
/// `LAST_ACTIVE_GRANULARITY`).
pub const CURRENTLY_ACTIVE_FOR_MS: i64 = 60_000;
/// A remote user whose server said nothing for this long is offline
/// (Synapse's `FEDERATION_TIMEOUT`).
pub const REMOTE_TIMEOUT_MS: i64 = 30 * 60_000;
/// How often our online users' presence is sent again to other servers, so
/// they do not time it out (Synapse's `FEDERATION_PING_INTERVAL`).
pub const REANNOUNCE_INTERVAL_MS: i64 = 25 * 60_000;
/// Longest status message kept (longer ones are cut).
pub const MAX_STATUS_MSG_CHARS: usize = 1_000;

/// What is known of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    presence: PresenceState,
    status_msg: Option<String>,
    /// When the user was last active (ms since the epoch).
    last_active_ms: i64,
    currently_active: bool,
    /// Our users: syncs in progress.
    syncing: u32,
    /// Our users: when the last sync ended or presence was set. Remote
    /// users: when their server last told us.
    last_seen_ms: i64,
    /// Our users: when presence was last sent to other servers.
    announced_ms: i64,
    /// The position of the latest change.
    changed_at: u64,
}

/// Whether `after` differs from `before` in a way others should hear of.
fn notable(before: &Snapshot, after: &Snapshot) -> bool {
    before.presence != after.presence
        || before.status_msg != after.status_msg
        || before.currently_active != after.currently_active
        || (after.last_active_ms - before.last_active_ms).abs() > CURRENTLY_ACTIVE_FOR_MS
}

/// One user's presence, as clients and other servers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub user_id: OwnedUserId,
    pub presence: PresenceState,
    pub status_msg: Option<String>,
    pub last_active_ms: i64,
    pub currently_active: bool,
}

impl Snapshot {
    fn of(user_id: &UserId, e: &Entry) -> Self {
        Self {
            user_id: user_id.to_owned(),
            presence: e.presence.clone(),
            status_msg: e.status_msg.clone(),
            last_active_ms: e.last_active_ms,
            currently_active: e.currently_active,
        }
    }

    /// The `m.presence` event for `/sync` at `now_ms`.
    pub fn event(&self, now_ms: i64) -> Json {
        let mut content = json!({
            "presence": self.presence.as_str(),
            "last_active_ago": (now_ms - self.last_active_ms).max(0),
        });
        if self.presence == PresenceState::Online {
            content["currently_active"] = json!(self.currently_active);
        }
        if let Some(msg) = &self.status_msg {
            content["status_msg"] = json!(msg);
        }
        json!({ "type": "m.presence", "sender": self.user_id, "content": content })
    }
}

#[derive(Default)]
struct State {
    position: u64,
    users: HashMap<OwnedUserId, Entry>,
}

/// Everyone's presence, with a position that advances on every change.
pub struct Presence {
    enabled: bool,
    idle_timeout_ms: i64,
    offline_timeout_ms: i64,
    state: Mutex<State>,
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Presence {
    pub fn new(config: &PresenceConfig) -> Self {
        Self {
            enabled: config.enabled,
            idle_timeout_ms: ms(config.idle_timeout_ms),
            offline_timeout_ms: ms(config.offline_timeout_ms),
            state: Mutex::new(State::default()),
        }
    }

    /// Whether presence is tracked at all (`[presence] enabled`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No critical section can panic half-way; a poisoned state is
        // still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How often the timeouts are checked: often enough that a timeout is
    /// seen within a quarter of the shortest one.
    pub fn tick(&self) -> Duration {
        let shortest = self.idle_timeout_ms.min(self.offline_timeout_ms);
        Duration::from_millis(u64::try_from(shortest / 4).unwrap_or(0).clamp(50, 5_000))
    }

    /// The position of the latest change (0 after a restart, before any).
    pub fn position(&self) -> u64 {
        self.lock().position
    }

    /// `user`'s presence, if anything is known (else they are offline).
    pub fn get(&self, user: &UserId) -> Option<Snapshot> {
        self.lock().users.get(user).map(|e| Snapshot::of(user, e))
    }

    /// The users whose presence changed after position `since` and up to
    /// `until` (a later change is for the sync whose token covers it), or,
    /// when `since` is 0 or ahead of [`Self::position`] (an initial sync, a
    /// restart), everyone who is not offline.
    pub fn changed_since(&self, since: u64, until: u64) -> Vec<Snapshot> {
        let state = self.lock();
        let full = since == 0 || since > state.position;
        state
            .users
            .iter()
            .filter(|(_, e)| {
                if full {
                    e.presence != PresenceState::Offline
                } else {
                    e.changed_at > since && e.changed_at <= until
                }
            })
            .map(|(u, e)| Snapshot::of(u, e))
            .collect()
    }

    /// Applies `update` to `user`'s entry (a new offline one if unknown);
    /// returns whether anything others see changed.
    fn update(&self, user: &UserId, now_ms: i64, update: impl FnOnce(&mut Entry)) -> bool {
        let mut state = self.lock();
        let position = state.position + 1;
        let entry = state.users.entry(user.to_owned()).or_insert_with(|| Entry {
            presence: PresenceState::Offline,
            status_msg: None,
            last_active_ms: now_ms,
            currently_active: false,
            syncing: 0,
            last_seen_ms: now_ms,
            announced_ms: now_ms,
            changed_at: 0,
        });
        let before = Snapshot::of(user, entry);
        update(entry);
        let changed = notable(&before, &Snapshot::of(user, entry));
        if changed {
            entry.changed_at = position;
            state.position = position;
        }
        changed
    }

    /// Our user set their presence (`PUT /presence/{userId}/status`).
    pub fn set(
        &self,
        user: &UserId,
        presence: PresenceState,
        status_msg: Option<String>,
        now_ms: i64,
    ) -> bool {
        let status_msg = status_msg.map(|m| m.chars().take(MAX_STATUS_MSG_CHARS).collect());
        self.update(user, now_ms, |e| {
            if presence == PresenceState::Online {
                e.last_active_ms = now_ms;
            }
            e.currently_active = presence == PresenceState::Online;
            e.presence = presence;
            e.status_msg = status_msg;
            e.last_seen_ms = now_ms;
        })
    }

    /// One of our user's syncs starts, asking for `set_presence`; returns
    /// whether the user's presence changed, and whether the sync counts
    /// (then [`Self::sync_ended`] must follow).
    pub fn sync_started(
        &self,
        user: &UserId,
        set_presence: &PresenceState,
        now_ms: i64,
    ) -> (bool, bool) {
        let to = match set_presence {
            PresenceState::Online => PresenceState::Online,
            PresenceState::Unavailable => PresenceState::Unavailable,
            // `offline`: the client does not want to look online.
            _ => return (false, false),
        };
        let changed = self.update(user, now_ms, |e| {
            e.syncing += 1;
            e.last_seen_ms = now_ms;
            if to == PresenceState::Unavailable {
                e.presence = to;
                e.currently_active = false;
            } else if e.presence == PresenceState::Offline {
                e.last_active_ms = now_ms;
                e.currently_active = true;
                e.presence = to;
            }
        });
        (changed, true)
    }

    /// Our user did something (sent a message, a receipt): online and
    /// currently active. Returns whether others should hear of it.
    pub fn active(&self, user: &UserId, now_ms: i64) -> bool {
        self.update(user, now_ms, |e| {
            e.presence = PresenceState::Online;
            e.currently_active = true;
            e.last_active_ms = now_ms;
            e.last_seen_ms = e.last_seen_ms.max(now_ms);
        })
    }

    /// One of our user's syncs that counted ended.
    pub fn sync_ended(&self, user: &UserId, now_ms: i64) {
        let mut state = self.lock();
        if let Some(e) = state.users.get_mut(user) {
            e.syncing = e.syncing.saturating_sub(1);
            e.last_seen_ms = now_ms;
        }
    }

    /// A remote user's presence, as their server told it; returns whether
    /// it changed.
    pub fn remote(
        &self,
        user: &UserId,
        presence: PresenceState,
        status_msg: Option<String>,
        last_active_ago_ms: i64,
        currently_active: bool,
        now_ms: i64,
    ) -> bool {
        let status_msg = status_msg.map(|m| m.chars().take(MAX_STATUS_MSG_CHARS).collect());
        self.update(user, now_ms, |e| {
            e.currently_active = currently_active && presence == PresenceState::Online;
            e.presence = presence;
            e.status_msg = status_msg;
            e.last_active_ms = now_ms - last_active_ago_ms.max(0);
            e.last_seen_ms = now_ms;
        })
    }

    /// Applies the timeouts at `now_ms`: returns the users whose presence
    /// changed, and our online users due to be announced again.
    pub fn expire(
        &self,
        now_ms: i64,
        local: &ruma::ServerName,
    ) -> (Vec<OwnedUserId>, Vec<Snapshot>) {
        let mut state = self.lock();
        let mut position = state.position;
        let mut changed = Vec::new();
        let mut reannounce = Vec::new();
        for (user, e) in state.users.iter_mut() {
            let before = Snapshot::of(user, e);
            let ours = user.server_name() == local;
            if ours {
                if e.presence == PresenceState::Online
                    && now_ms - e.last_active_ms >= self.idle_timeout_ms
                {
                    e.presence = PresenceState::Unavailable;
                }
                if e.syncing == 0
                    && e.presence != PresenceState::Offline
                    && now_ms - e.last_seen_ms >= self.offline_timeout_ms
                {
                    e.presence = PresenceState::Offline;
                }
            } else if e.presence != PresenceState::Offline
                && now_ms - e.last_seen_ms >= REMOTE_TIMEOUT_MS
            {
                e.presence = PresenceState::Offline;
            }
            let active_for = CURRENTLY_ACTIVE_FOR_MS.min(self.idle_timeout_ms);
            if e.presence != PresenceState::Online || now_ms - e.last_active_ms >= active_for {
                e.currently_active = false;
            }
            if notable(&before, &Snapshot::of(user, e)) {
                position += 1;
                e.changed_at = position;
                changed.push(user.clone());
            } else if ours
                && e.presence != PresenceState::Offline
                && now_ms - e.announced_ms >= REANNOUNCE_INTERVAL_MS
            {
                reannounce.push(Snapshot::of(user, e));
            }
        }
        state.position = position;
        (changed, reannounce)
    }

    /// Notes that `user`'s presence was sent to other servers at `now_ms`.
    fn announced(&self, user: &UserId, now_ms: i64) {
        if let Some(e) = self.lock().users.get_mut(user) {
            e.announced_ms = now_ms;
        }
    }
}

/// Tells everyone who should know that `users`' presence changed: wakes
/// the syncs of users sharing a room with each, and sends our users'
/// presence to the other servers in their rooms.
pub async fn changed(state: &AppState, users: &[OwnedUserId]) {
    for user in users {
        let rooms = match memberships::rooms_of_user(state.db(), user.as_str(), "join").await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(%user, error = %e, "cannot read the rooms of a user");
                continue;
            }
        };
        state.notifier().wake_user(user);
        let room_ids: Vec<&RoomId> = rooms
            .iter()
            .filter_map(|m| <&RoomId>::try_from(m.room_id.as_str()).ok())
            .collect();
        for room in &room_ids {
            state.notifier().wake_room(room);
        }
        if user.server_name() == state.server_name()
            && let Some(snapshot) = state.presence().get(user)
        {
            announce(state, &room_ids, &snapshot).await;
        }
    }
}

/// Our user did something others see (a message, a receipt): they are
/// online and currently active.
pub async fn active(state: &AppState, user: &UserId) {
    if state.presence().enabled() && state.presence().active(user, crate::time::now_ms()) {
        changed(state, &[user.to_owned()]).await;
    }
}

/// Sends our user's presence to the other servers in `rooms`.
async fn announce(state: &AppState, rooms: &[&RoomId], snapshot: &Snapshot) {
    let now = crate::time::now_ms();
    crate::federation::announce::presence(state, rooms, snapshot, now).await;
    state.presence().announced(&snapshot.user_id, now);
}

/// Applies the timeouts every [`Presence::tick`] for as long as the server
/// runs (nothing to do when presence is off).
pub fn spawn_timeouts(state: AppState) {
    if !state.presence().enabled() {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(state.presence().tick()).await;
            let now = crate::time::now_ms();
            let (changed_users, reannounce) = state.presence().expire(now, state.server_name());
            changed(&state, &changed_users).await;
            for snapshot in reannounce {
                match memberships::rooms_of_user(state.db(), snapshot.user_id.as_str(), "join")
                    .await
                {
                    Ok(rows) => {
                        let rooms: Vec<&RoomId> = rows
                            .iter()
                            .filter_map(|m| <&RoomId>::try_from(m.room_id.as_str()).ok())
                            .collect();
                        announce(&state, &rooms, &snapshot).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the rooms of a user"),
                }
            }
        }
    });
}

/// Marks one `/sync` of our user as in progress for as long as it lives.
pub struct Syncing {
    state: Option<AppState>,
    user: OwnedUserId,
}

impl Drop for Syncing {
    fn drop(&mut self) {
        if let Some(state) = &self.state {
            state
                .presence()
                .sync_ended(&self.user, crate::time::now_ms());
        }
    }
}

/// A `/sync` of `user` starts with `set_presence`: brings them online (or
/// unavailable) if they were offline, and counts them as syncing until the
/// returned guard is dropped.
pub async fn sync_started(
    state: &AppState,
    user: &UserId,
    set_presence: &PresenceState,
) -> Syncing {
    let mut guard = Syncing {
        state: None,
        user: user.to_owned(),
    };
    if !state.presence().enabled() {
        return guard;
    }
    let (changed_now, counts) =
        state
            .presence()
            .sync_started(user, set_presence, crate::time::now_ms());
    if counts {
        guard.state = Some(state.clone());
    }
    if changed_now {
        changed(state, &[user.to_owned()]).await;
    }
    guard
}

/// Fills `/sync`'s `presence` section for `user`: the presence of users
/// sharing a room with them (and their own) that changed after `since`
/// (the token's presence position), or everyone not offline in an initial
/// sync, as the presence filter allows. Reads from `db` (the response's
/// snapshot).
pub async fn fill_sync(
    state: &AppState,
    db: &crate::storage::Db,
    user: &UserId,
    since: Option<i64>,
    until: i64,
    filter: &ruma::api::client::filter::Filter,
    presence: &mut ruma::api::client::sync::sync_events::v3::Presence,
) -> Result<(), ApiError> {
    if !state.presence().enabled() {
        return Ok(());
    }
    let since = since.map_or(0, |s| u64::try_from(s).unwrap_or(0));
    let until = u64::try_from(until).unwrap_or(0);
    let mut changed = state.presence().changed_since(since, until);
    changed.retain(|s| {
        crate::sync::filter::matches(
            filter.types.as_deref(),
            &filter.not_types,
            filter.senders.as_deref(),
            &filter.not_senders,
            "m.presence",
            Some(s.user_id.as_str()),
        )
    });
    if changed.is_empty() {
        return Ok(());
    }
    let sharing = device_lists::users_sharing_a_room(db, user.as_str()).await?;
    changed.retain(|s| sharing.contains(s.user_id.as_str()));
    changed.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    if let Some(limit) = filter.limit {
        changed.truncate(usize::try_from(u64::from(limit)).unwrap_or(usize::MAX));
    }
    let now = crate::time::now_ms();
    presence.events = changed
        .iter()
        .map(|s| crate::rooms::format::raw(&s.event(now)))
        .collect::<Result<_, _>>()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use ruma::{server_name, user_id};

    use super::*;

    fn presence() -> Presence {
        Presence::new(&PresenceConfig {
            enabled: true,
            idle_timeout_ms: 300_000,
            offline_timeout_ms: 30_000,
        })
    }

    fn state_of(p: &Presence, user: &UserId) -> PresenceState {
        p.get(user).map_or(PresenceState::Offline, |s| s.presence)
    }

    #[test]
    fn a_sync_brings_a_user_online_and_its_end_lets_them_go_offline() {
        let p = presence();
        let here = server_name!("here");
        let alice = user_id!("@alice:here");
        assert_eq!(p.position(), 0);
        assert_eq!(
            p.sync_started(alice, &PresenceState::Online, 1_000),
            (true, true)
        );
        assert_eq!(state_of(&p, alice), PresenceState::Online);
        let p1 = p.position();
        assert_eq!(p.changed_since(0, p1).len(), 1);
        // A second concurrent sync changes nothing.
        assert_eq!(
            p.sync_started(alice, &PresenceState::Online, 2_000),
            (false, true)
        );
        assert_eq!(p.position(), p1);
        // While syncing, never offline; idle makes unavailable.
        let (changed, _) = p.expire(400_000, here);
        assert_eq!(changed, vec![alice.to_owned()]);
        assert_eq!(state_of(&p, alice), PresenceState::Unavailable);
        p.sync_ended(alice, 400_000);
        p.sync_ended(alice, 400_000);
        assert!(p.expire(429_000, here).0.is_empty());
        assert_eq!(p.expire(430_000, here).0, vec![alice.to_owned()]);
        assert_eq!(state_of(&p, alice), PresenceState::Offline);
        // An incremental sync sees the change; a restart's sync sees nobody.
        assert_eq!(p.changed_since(p1, p.position()).len(), 1);
        assert!(
            p.changed_since(p1, p1).is_empty(),
            "changed after the token"
        );
        assert!(p.changed_since(p.position() + 1, u64::MAX).is_empty());
        // `set_presence=offline` does not count as syncing.
        assert_eq!(
            p.sync_started(alice, &PresenceState::Offline, 500_000),
            (false, false)
        );
        assert_eq!(state_of(&p, alice), PresenceState::Offline);
    }

    #[test]
    fn set_presence_keeps_a_status_and_currently_active_lapses() {
        let p = presence();
        let here = server_name!("here");
        let alice = user_id!("@alice:here");
        assert!(p.set(alice, PresenceState::Online, Some("lunch".into()), 0));
        let s = p.get(alice).expect("known");
        assert!(s.currently_active);
        assert_eq!(s.status_msg.as_deref(), Some("lunch"));
        assert!(!p.set(alice, PresenceState::Online, Some("lunch".into()), 0));
        p.sync_started(alice, &PresenceState::Online, 0);
        assert_eq!(p.expire(CURRENTLY_ACTIVE_FOR_MS, here).0.len(), 1);
        let s = p.get(alice).expect("known");
        assert_eq!(
            (s.presence, s.currently_active),
            (PresenceState::Online, false)
        );
        // A sync does not override an explicit unavailable.
        assert!(p.set(alice, PresenceState::Unavailable, None, 1));
        p.sync_started(alice, &PresenceState::Online, 2);
        assert_eq!(state_of(&p, alice), PresenceState::Unavailable);
        assert_eq!(p.get(alice).expect("known").status_msg, None);
    }

    #[test]
    fn activity_is_news_only_when_it_changes_what_others_see() {
        let p = presence();
        let here = server_name!("here");
        let alice = user_id!("@alice:here");
        assert_eq!(
            p.sync_started(alice, &PresenceState::Online, 0),
            (true, true)
        );
        // Still currently active: nothing to tell.
        assert!(!p.active(alice, 30_000));
        let position = p.position();
        // The activity at 30 s keeps her currently active until 90 s.
        assert!(p.expire(89_000, here).0.is_empty());
        assert_eq!(p.expire(90_000, here).0.len(), 1);
        assert!(p.position() > position);
        // Idle (unavailable) and active again: online.
        assert_eq!(p.expire(330_000, here).0.len(), 1);
        assert_eq!(state_of(&p, alice), PresenceState::Unavailable);
        assert!(p.active(alice, 331_000));
        assert_eq!(state_of(&p, alice), PresenceState::Online);
        // A sync asking for unavailable makes her so.
        assert_eq!(
            p.sync_started(alice, &PresenceState::Unavailable, 332_000),
            (true, true)
        );
        assert_eq!(state_of(&p, alice), PresenceState::Unavailable);
    }

    #[test]
    fn remote_users_time_out_and_ours_are_announced_again() {
        let p = presence();
        let here = server_name!("here");
        let bob = user_id!("@bob:there");
        let alice = user_id!("@alice:here");
        assert!(p.remote(bob, PresenceState::Online, None, 500, true, 10_000));
        assert_eq!(p.get(bob).expect("known").last_active_ms, 9_500);
        // The same news again, a little later: no change.
        assert!(!p.remote(bob, PresenceState::Online, None, 700, true, 10_200));
        p.sync_started(alice, &PresenceState::Online, 10_000);
        let t = 10_000 + REANNOUNCE_INTERVAL_MS;
        // Idle by then: that change is announced anyway (and Bob is no
        // longer currently active).
        let (changed, again) = p.expire(t, here);
        assert!(changed.contains(&alice.to_owned()) && again.is_empty());
        assert!(!p.get(bob).expect("known").currently_active);
        let (_, again) = p.expire(t + 1, here);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].user_id, alice);
        let (changed, _) = p.expire(10_200 + REMOTE_TIMEOUT_MS, here);
        assert!(changed.contains(&bob.to_owned()));
        assert_eq!(state_of(&p, bob), PresenceState::Offline);
    }
}
