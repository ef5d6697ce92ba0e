//! Group commit of clients' messages: messages sent to one room while
//! another write to it is in progress are built and stored together, in
//! one transaction, so they share one disk flush.
//!
//! Every write to a room holds its lock, and a durable commit waits for the
//! disk, so one room takes a few hundred commits a second at most: a busy
//! room queued its senders behind each other's flushes. Now a send queues
//! its message and a task takes the room lock for it; whichever task gets
//! the lock first takes every message queued by then. The messages are
//! built in the order they arrived, each following the one before it
//! (its only `prev_event`), on the room's state as it is: messages are not
//! state events, so they do not change what authorises the next one. A
//! message the auth rules refuse is answered with its error and the batch
//! goes on without it; a database error fails the whole batch, which is
//! stored whole or not at all. Each sender is answered after the commit.
//!
//! The work runs in its own task: a client that goes away while its message
//! is being stored changes nothing for the others, and cannot leave a
//! batch half done.

use std::collections::HashMap;
use std::time::Instant;

use http::StatusCode;
use myelin_proto::Pdu;
use ruma::{OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId};
use tokio::sync::oneshot;

use super::RoomService;
use super::pipeline::{EventSpec, EventWrite, RoomGuard, Status, TxnKey};
use crate::api::error::ApiError;
use crate::state::AppState;
use crate::storage::txn_ids::{self, Scope};

/// One client's message waiting for its room's lock.
pub struct QueuedMessage {
    pub sender: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub txn_id: String,
    /// A non-state event, not a redaction.
    pub spec: EventSpec,
    reply: oneshot::Sender<Result<OwnedEventId, ApiError>>,
}

/// The messages waiting, per room.
#[derive(Default)]
pub(super) struct Queues(std::sync::Mutex<HashMap<OwnedRoomId, Vec<QueuedMessage>>>);

impl Queues {
    fn push(&self, room_id: &RoomId, message: QueuedMessage) {
        self.lock()
            .entry(room_id.to_owned())
            .or_default()
            .push(message);
    }

    fn take(&self, room_id: &RoomId) -> Vec<QueuedMessage> {
        self.lock().remove(room_id).unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedRoomId, Vec<QueuedMessage>>> {
        // No critical section can panic half-way.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RoomService {
    /// Sends a client's message (a non-state event other than a redaction)
    /// with its transaction ID; returns its event ID once it is durable.
    /// A transaction ID the device already used returns the event sent
    /// then.
    pub async fn send_message(
        state: &AppState,
        room_id: &RoomId,
        sender: OwnedUserId,
        device_id: OwnedDeviceId,
        txn_id: String,
        spec: EventSpec,
    ) -> Result<OwnedEventId, ApiError> {
        let (reply, answer) = oneshot::channel();
        state.rooms().queues.push(
            room_id,
            QueuedMessage {
                sender,
                device_id,
                txn_id,
                spec,
                reply,
            },
        );
        let state = state.clone();
        let room_id = room_id.to_owned();
        tokio::spawn(async move {
            let rooms = state.rooms();
            let guard = rooms.lock(&room_id).await;
            let batch = rooms.queues.take(&room_id);
            if !batch.is_empty() {
                guard.send_batch(&state, batch).await;
            }
        });
        answer
            .await
            .map_err(|_| ApiError::internal("message batch", "ended without an answer"))?
    }
}

/// A queued message's path, for its transaction ID.
fn scope<'a>(room_id: &'a RoomId, m: &'a QueuedMessage) -> Scope<'a> {
    Scope::Send {
        room_id: room_id.as_str(),
        event_type: &m.spec.event_type,
    }
}

impl RoomGuard<'_> {
    /// Builds, stores and answers a batch of queued messages.
    async fn send_batch(&self, state: &AppState, batch: Vec<QueuedMessage>) {
        let started = Instant::now();
        let answers = match self.store_batch(state, &batch).await {
            Ok(answers) => answers,
            Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
        };
        let elapsed = started.elapsed().as_secs_f64();
        for (message, answer) in batch.into_iter().zip(answers) {
            if answer.is_ok() {
                state
                    .metrics()
                    .event_persist_seconds
                    .with_label_values(&["local"])
                    .observe(elapsed);
            }
            // The client may have gone: its message stands all the same.
            let _ = message.reply.send(answer);
        }
    }

    /// The answer to each message of `batch`, in order, once the batch is
    /// durable.
    async fn store_batch(
        &self,
        state: &AppState,
        batch: &[QueuedMessage],
    ) -> Result<Vec<Result<OwnedEventId, ApiError>>, ApiError> {
        let db = state.db();
        let room_id = self.room_id();
        let mut answers: Vec<Option<Result<OwnedEventId, ApiError>>> =
            (0..batch.len()).map(|_| None).collect();
        // Retries of a transaction stored before, or earlier in this batch,
        // are answered with its event.
        let keys: Vec<(&str, &str, Scope<'_>, &str)> = batch
            .iter()
            .map(|m| {
                (
                    m.sender.as_str(),
                    m.device_id.as_str(),
                    scope(room_id, m),
                    m.txn_id.as_str(),
                )
            })
            .collect();
        let stored = txn_ids::get_many(db, &keys).await?;
        let mut first_of: HashMap<(String, String, String, String), usize> = HashMap::new();
        let mut repeat_of: Vec<Option<usize>> = vec![None; batch.len()];
        for (i, (user, device, scope, txn)) in keys.iter().enumerate() {
            let key = (
                (*user).to_owned(),
                (*device).to_owned(),
                scope.key(),
                (*txn).to_owned(),
            );
            if let Some(&first) = first_of.get(&key) {
                repeat_of[i] = Some(first);
                continue;
            }
            if let Some(id) = stored.get(&key) {
                answers[i] = Some(
                    OwnedEventId::try_from(id.as_str())
                        .map_err(|e| ApiError::internal("stored event ID", e)),
                );
            }
            first_of.insert(key, i);
        }
        let new: Vec<bool> = (0..batch.len())
            .map(|i| answers[i].is_none() && repeat_of[i].is_none())
            .collect();

        let mut ctx = match self
            .build_context(
                state,
                batch
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| new[*i])
                    .map(|(_, m)| (m.sender.as_ref(), &m.spec)),
            )
            .await
        {
            Ok(ctx) => ctx,
            // A room this server does not know has no members here.
            Err(ApiError::Matrix {
                status: StatusCode::NOT_FOUND,
                ..
            }) => return Err(ApiError::forbidden("You are not joined to this room")),
            Err(e) => return Err(e),
        };
        let mut built: Vec<(usize, Pdu)> = Vec::new();
        for i in 0..batch.len() {
            if !new[i] {
                continue;
            }
            let m = &batch[i];
            match ctx.build(state, &m.sender, m.spec.clone()) {
                Ok(pdu) => {
                    ctx.follow(&pdu);
                    built.push((i, pdu));
                }
                Err(e) => answers[i] = Some(Err(e)),
            }
        }

        let writes: Vec<EventWrite<'_>> = built
            .iter()
            .map(|(i, pdu)| {
                let m = &batch[*i];
                EventWrite {
                    pdu,
                    status: Status::Timeline,
                    state_before: ctx.current_snapshot,
                    own_state: None,
                    replaces_state: None,
                    current: None,
                    redaction: None,
                    txn: Some((
                        m.sender.as_ref(),
                        TxnKey {
                            device_id: m.device_id.as_str(),
                            scope: scope(room_id, m),
                            txn_id: &m.txn_id,
                        },
                    )),
                    new_room: None,
                    relay_from: None,
                }
            })
            .collect();
        if !writes.is_empty() {
            self.write_all(state, writes).await?;
        }
        for (i, pdu) in &built {
            answers[*i] = Some(Ok(pdu.event_id().to_owned()));
        }
        for (i, first) in repeat_of.into_iter().enumerate() {
            if let Some(first) = first {
                answers[i] = answers[first].clone();
            }
        }
        Ok(answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(ApiError::internal("message batch", "no answer"))))
            .collect())
    }
}
