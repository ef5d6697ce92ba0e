//! Wakes long-polling `/sync` requests the moment something arrives for
//! them, without polling the database.
//!
//! A sync request that found nothing new registers a [`Listener`] under its
//! user and every room it is joined to, then re-checks for changes, then
//! waits. Writers wake a topic after their change commits: a room (events,
//! typing, receipts) or a user (account data, invites, to-device
//! messages). Waking stores a permit in each listener, so a wake between
//! registering and waiting is not lost: registering before the re-check is
//! what makes long-polling race-free.
//!
//! The registry holds only live listeners: dropping a listener removes it,
//! so memory follows the number of waiting requests, not users or rooms.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Topic {
    User(OwnedUserId),
    Room(OwnedRoomId),
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    by_topic: HashMap<Topic, HashMap<u64, Arc<Notify>>>,
}

/// The in-process wake-up registry. Cheap to share (`Arc` inside).
#[derive(Clone, Default)]
pub struct Notifier(Arc<Mutex<Registry>>);

/// A registration for wake-ups; unregisters itself on drop.
pub struct Listener {
    registry: Notifier,
    id: u64,
    topics: Vec<Topic>,
    notify: Arc<Notify>,
}

impl Notifier {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // No critical section can panic half-way; a poisoned registry is
        // still consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers for wake-ups of `user` and of each of `rooms`.
    pub fn listen<'a>(
        &self,
        user: &UserId,
        rooms: impl IntoIterator<Item = &'a RoomId>,
    ) -> Listener {
        let mut topics = vec![Topic::User(user.to_owned())];
        topics.extend(rooms.into_iter().map(|r| Topic::Room(r.to_owned())));
        let notify = Arc::new(Notify::new());
        let mut registry = self.lock();
        let id = registry.next_id;
        registry.next_id += 1;
        for topic in &topics {
            registry
                .by_topic
                .entry(topic.clone())
                .or_default()
                .insert(id, notify.clone());
        }
        drop(registry);
        Listener {
            registry: self.clone(),
            id,
            topics,
            notify,
        }
    }

    /// Wakes every listener of `user`.
    pub fn wake_user(&self, user: &UserId) {
        self.wake(&Topic::User(user.to_owned()));
    }

    /// Wakes every listener of `room`.
    pub fn wake_room(&self, room: &RoomId) {
        self.wake(&Topic::Room(room.to_owned()));
    }

    fn wake(&self, topic: &Topic) {
        let registry = self.lock();
        if let Some(listeners) = registry.by_topic.get(topic) {
            for notify in listeners.values() {
                // Stores a permit when the listener is not waiting yet.
                notify.notify_one();
            }
        }
    }

    /// Listeners registered now (for tests and metrics).
    pub fn listener_count(&self) -> usize {
        let registry = self.lock();
        let mut ids: Vec<u64> = registry
            .by_topic
            .values()
            .flat_map(|m| m.keys().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }
}

impl Listener {
    /// Resolves once any of the listener's topics was woken after it was
    /// registered (at once if that already happened).
    pub async fn woken(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let mut registry = self.registry.lock();
        for topic in &self.topics {
            if let Some(listeners) = registry.by_topic.get_mut(topic) {
                listeners.remove(&self.id);
                if listeners.is_empty() {
                    registry.by_topic.remove(topic);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ruma::{room_id, user_id};

    use super::*;

    async fn is_woken(listener: &Listener) -> bool {
        tokio::time::timeout(Duration::from_millis(50), listener.woken())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn wakes_listeners_of_the_topic_only() {
        let n = Notifier::new();
        let alice = n.listen(user_id!("@alice:x"), [room_id!("!a:x")]);
        let bob = n.listen(user_id!("@bob:x"), [room_id!("!b:x")]);
        n.wake_room(room_id!("!a:x"));
        assert!(is_woken(&alice).await);
        assert!(!is_woken(&bob).await);
        n.wake_user(user_id!("@bob:x"));
        assert!(is_woken(&bob).await);
        assert!(!is_woken(&alice).await, "a permit wakes once");
    }

    #[tokio::test]
    async fn a_wake_before_waiting_is_not_lost() {
        let n = Notifier::new();
        let listener = n.listen(user_id!("@alice:x"), []);
        n.wake_user(user_id!("@alice:x"));
        assert!(is_woken(&listener).await);
    }

    #[tokio::test]
    async fn wakes_a_waiting_task() {
        let n = Notifier::new();
        let listener = n.listen(user_id!("@alice:x"), [room_id!("!a:x")]);
        let waiter = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(10), listener.woken())
                .await
                .is_ok()
        });
        tokio::task::yield_now().await;
        n.wake_room(room_id!("!a:x"));
        assert!(waiter.await.unwrap_or(false));
    }

    #[tokio::test]
    async fn dropped_listeners_unregister() {
        let n = Notifier::new();
        let a = n.listen(user_id!("@alice:x"), [room_id!("!a:x"), room_id!("!b:x")]);
        let b = n.listen(user_id!("@alice:x"), [room_id!("!a:x")]);
        assert_eq!(n.listener_count(), 2);
        drop(a);
        assert_eq!(n.listener_count(), 1);
        drop(b);
        assert_eq!(n.listener_count(), 0);
        assert!(n.lock().by_topic.is_empty());
    }
}
