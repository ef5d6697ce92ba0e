//! Typing notifications: in memory only, as in every homeserver (they
//! expire within seconds, so losing them on a restart loses nothing).
//!
//! Every change advances [`Typing::position`] and wakes the room through
//! the [`Notifier`]: a user starting or stopping, and a typing timeout
//! running out. Timeouts are run by one background task that sleeps until
//! the earliest expiry (and is woken when an earlier one is set), so an
//! expiry is seen by sync within the same instant, with no polling.
//!
//! Memory: a room entry holds the users typing now (each for at most
//! [`MAX_TIMEOUT`]). A room whose last typer stopped keeps its entry, with
//! no users, so that incremental syncs see the stop; at most
//! [`MAX_IDLE_ROOMS`] such entries are kept, the oldest forgotten first.
//! A sync from before a forgotten change gets an empty typing list for
//! every room without typers, which is always correct to send.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::notify::Notifier;

/// The longest a typing notification lasts without being renewed
/// (Synapse caps client timeouts at two minutes).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(120);

/// Rooms without typers whose last change is remembered.
pub const MAX_IDLE_ROOMS: usize = 10_000;

struct RoomTyping {
    /// Who is typing, with when their typing runs out.
    users: HashMap<OwnedUserId, Instant>,
    /// The position of the room's latest change.
    changed_at: u64,
}

#[derive(Default)]
struct State {
    position: u64,
    rooms: HashMap<OwnedRoomId, RoomTyping>,
    /// Rooms without typers, in `rooms`.
    idle: usize,
    /// The latest position of an idle room entry that was forgotten.
    forgotten_up_to: u64,
    /// Whether the expiry task runs.
    sweeper_running: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the expiry task when an earlier expiry is set.
    reschedule: Notify,
}

/// Who is typing where, with a position that advances on every change.
pub struct Typing {
    shared: Arc<Shared>,
    notifier: Notifier,
}

impl Typing {
    pub fn new(notifier: Notifier) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                reschedule: Notify::new(),
            }),
            notifier,
        }
    }

    /// The position of the latest change (0 after a restart, before any).
    pub fn position(&self) -> u64 {
        self.shared.lock().position
    }

    /// For each of `rooms` whose typing set changed after position `since`
    /// (every room with someone typing when `since` is 0 or ahead of
    /// [`Self::position`], as after a restart): the users typing now.
    pub fn changed_since(
        &self,
        since: u64,
        rooms: &[&RoomId],
    ) -> Vec<(OwnedRoomId, Vec<OwnedUserId>)> {
        let state = self.shared.lock();
        let full = since == 0 || since > state.position;
        let mut out = Vec::new();
        for room in rooms {
            let (changed, users) = match state.rooms.get(*room) {
                Some(entry) => {
                    let changed = if full {
                        !entry.users.is_empty()
                    } else {
                        entry.changed_at > since
                    };
                    (changed, sorted(&entry.users))
                }
                // A forgotten stop may be after `since`.
                None => (!full && since < state.forgotten_up_to, Vec::new()),
            };
            if changed {
                out.push(((*room).to_owned(), users));
            }
        }
        out
    }

    /// Marks `user` as typing in `room` for `timeout` (capped at
    /// [`MAX_TIMEOUT`]). Renewing a user who is already typing only moves
    /// the expiry: others see no change. Spawns the expiry task on first
    /// use, so it needs a Tokio runtime.
    pub fn start(&self, room: &RoomId, user: &UserId, timeout: Duration) {
        let expires = Instant::now() + timeout.min(MAX_TIMEOUT);
        let mut state = self.shared.lock();
        let position = state.position + 1;
        let was_idle = state.rooms.get(room).is_some_and(|e| e.users.is_empty());
        let entry = state
            .rooms
            .entry(room.to_owned())
            .or_insert_with(|| RoomTyping {
                users: HashMap::new(),
                changed_at: position,
            });
        let is_new = entry.users.insert(user.to_owned(), expires).is_none();
        if is_new {
            entry.changed_at = position;
            state.position = position;
            if was_idle {
                state.idle -= 1;
            }
        }
        let spawn = !state.sweeper_running;
        state.sweeper_running = true;
        drop(state);
        if spawn {
            tokio::spawn(sweep(Arc::downgrade(&self.shared), self.notifier.clone()));
        } else {
            self.shared.reschedule.notify_one();
        }
        if is_new {
            self.notifier.wake_room(room);
        }
    }

    /// Marks `user` as no longer typing in `room` (nothing changes if they
    /// were not typing).
    pub fn stop(&self, room: &RoomId, user: &UserId) {
        let mut state = self.shared.lock();
        let stopped = remove_typer(&mut state, room, user);
        drop(state);
        if stopped {
            self.notifier.wake_room(room);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No critical section can panic half-way; a poisoned state is
        // still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn sorted(users: &HashMap<OwnedUserId, Instant>) -> Vec<OwnedUserId> {
    let set: BTreeSet<&OwnedUserId> = users.keys().collect();
    set.into_iter().cloned().collect()
}

/// Removes a typer, advancing the position; returns whether they typed.
fn remove_typer(state: &mut State, room: &RoomId, user: &UserId) -> bool {
    let position = state.position + 1;
    let Some(entry) = state.rooms.get_mut(room) else {
        return false;
    };
    if entry.users.remove(user).is_none() {
        return false;
    }
    entry.changed_at = position;
    state.position = position;
    if entry.users.is_empty() {
        state.idle += 1;
        forget_idle_rooms(state);
    }
    true
}

/// Keeps at most [`MAX_IDLE_ROOMS`] rooms without typers, forgetting the
/// ones that changed longest ago (half of them at once, so the scan is
/// rare).
fn forget_idle_rooms(state: &mut State) {
    if state.idle <= MAX_IDLE_ROOMS {
        return;
    }
    let mut idle: Vec<u64> = state
        .rooms
        .values()
        .filter(|r| r.users.is_empty())
        .map(|r| r.changed_at)
        .collect();
    if idle.len() <= MAX_IDLE_ROOMS {
        state.idle = idle.len();
        return;
    }
    idle.sort_unstable();
    let cut = idle[idle.len() - MAX_IDLE_ROOMS / 2 - 1];
    state
        .rooms
        .retain(|_, r| !(r.users.is_empty() && r.changed_at <= cut));
    state.forgotten_up_to = state.forgotten_up_to.max(cut);
    state.idle = state.rooms.values().filter(|r| r.users.is_empty()).count();
}

/// The expiry task: sleeps until the earliest typing timeout, removes what
/// expired (advancing the position and waking each room), and sleeps
/// again; with nobody typing it waits to be woken. Ends when the
/// [`Typing`] it serves is dropped.
async fn sweep(shared: Weak<Shared>, notifier: Notifier) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut expired: Vec<OwnedRoomId> = Vec::new();
        let next = {
            let mut state = strong.lock();
            let mut due: Vec<(OwnedRoomId, OwnedUserId)> = Vec::new();
            let mut next: Option<Instant> = None;
            for (room, entry) in &state.rooms {
                for (user, expires) in &entry.users {
                    if *expires <= now {
                        due.push((room.clone(), user.clone()));
                    } else {
                        next = Some(next.map_or(*expires, |n| n.min(*expires)));
                    }
                }
            }
            for (room, user) in due {
                if remove_typer(&mut state, &room, &user) && !expired.contains(&room) {
                    expired.push(room);
                }
            }
            next
        };
        for room in &expired {
            notifier.wake_room(room);
        }
        // Wait without keeping the state alive, so dropping it ends us.
        let reschedule = async {
            strong.reschedule.notified().await;
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = reschedule => {}
                }
            }
            None => reschedule.await,
        }
        drop(strong);
    }
}

#[cfg(test)]
mod tests {
    use ruma::{room_id, user_id};

    use super::*;

    fn typers(t: &Typing, since: u64, room: &RoomId) -> Option<Vec<OwnedUserId>> {
        t.changed_since(since, &[room])
            .into_iter()
            .next()
            .map(|(_, users)| users)
    }

    #[tokio::test(start_paused = true)]
    async fn start_stop_and_expiry_advance_the_position() {
        let notifier = Notifier::new();
        let t = Typing::new(notifier.clone());
        let room = room_id!("!r:x");
        let other = room_id!("!o:x");
        let alice = user_id!("@alice:x");
        let bob = user_id!("@bob:x");
        assert_eq!(t.position(), 0);
        assert!(t.changed_since(0, &[room]).is_empty());

        let listener = notifier.listen(user_id!("@carol:x"), [room]);
        t.start(room, alice, Duration::from_secs(10));
        let p1 = t.position();
        assert_eq!(p1, 1);
        assert_eq!(typers(&t, 0, room), Some(vec![alice.to_owned()]));
        assert!(t.changed_since(0, &[other]).is_empty());
        tokio::time::timeout(Duration::from_millis(1), listener.woken())
            .await
            .expect("the room is woken");

        // Renewing moves the expiry only.
        tokio::time::advance(Duration::from_secs(5)).await;
        t.start(room, alice, Duration::from_secs(10));
        assert_eq!(t.position(), p1);
        assert_eq!(typers(&t, p1, room), None);

        t.start(room, bob, Duration::from_secs(60));
        let p2 = t.position();
        assert_eq!(
            typers(&t, p1, room),
            Some(vec![alice.to_owned(), bob.to_owned()])
        );

        // Alice's renewed timeout runs out 10 s after the renewal.
        tokio::time::sleep(Duration::from_millis(9_900)).await;
        assert_eq!(t.position(), p2);
        tokio::time::timeout(Duration::from_millis(1), listener.woken())
            .await
            .expect("bob's start woke the room");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let p3 = t.position();
        assert_eq!(p3, p2 + 1, "the expiry is a change");
        assert_eq!(typers(&t, p2, room), Some(vec![bob.to_owned()]));
        tokio::time::timeout(Duration::from_millis(1), listener.woken())
            .await
            .expect("the expiry woke the room");

        t.stop(room, bob);
        let p4 = t.position();
        assert_eq!(p4, p3 + 1);
        assert_eq!(typers(&t, p3, room), Some(vec![]));
        // Stopping again, or someone who never typed: no change.
        t.stop(room, bob);
        t.stop(other, alice);
        assert_eq!(t.position(), p4);
        assert_eq!(typers(&t, p4, room), None);
        // A restart (or a full sync) only lists rooms with typers.
        assert!(t.changed_since(0, &[room]).is_empty());
        assert!(t.changed_since(p4 + 5, &[room]).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_are_capped() {
        let t = Typing::new(Notifier::new());
        let room = room_id!("!r:x");
        t.start(room, user_id!("@a:x"), Duration::from_secs(3600));
        tokio::time::sleep(MAX_TIMEOUT + Duration::from_millis(10)).await;
        assert_eq!(t.position(), 2);
        assert_eq!(typers(&t, 1, room), Some(vec![]));
    }

    #[tokio::test(start_paused = true)]
    async fn forgotten_idle_rooms_still_report_a_stop() {
        let t = Typing::new(Notifier::new());
        let alice = user_id!("@a:x");
        let rooms: Vec<OwnedRoomId> = (0..=MAX_IDLE_ROOMS)
            .map(|i| OwnedRoomId::try_from(format!("!r{i}:x")).expect("room ID"))
            .collect();
        for room in &rooms {
            t.start(room, alice, Duration::from_secs(30));
            t.stop(room, alice);
        }
        let state = t.shared.lock();
        assert!(state.rooms.len() <= MAX_IDLE_ROOMS);
        assert_eq!(state.idle, state.rooms.len());
        drop(state);
        // The first room was forgotten: a sync from before its stop still
        // gets an (empty) typing list for it; one from now does not.
        assert_eq!(typers(&t, 1, &rooms[0]), Some(vec![]));
        assert_eq!(typers(&t, t.position(), &rooms[0]), None);
    }
}
