//! The E2EE story with matrix-sdk, the SDK behind Element X: two clients
//! with their own crypto stores chat in an encrypted room, verify each
//! other's devices with SAS emoji over to-device messages, alice enables
//! recovery (key backup and secret storage), and a freshly logged-in
//! device of alice's restores the backup with the recovery key and reads
//! the old messages.

// Proving matrix-sdk's deeply nested sync future `Send` (for `tokio::spawn`)
// takes more than the default recursion limit of 128.
#![recursion_limit = "256"]

mod support;

use matrix_sdk::config::SyncSettings;
use matrix_sdk::encryption::recovery::RecoveryState;
use matrix_sdk::encryption::verification::Verification;
use matrix_sdk::encryption::{BackupDownloadStrategy, EncryptionSettings};
use matrix_sdk::ruma::api::client::account::register;
use matrix_sdk::ruma::api::client::room::create_room;
use matrix_sdk::ruma::api::client::uiaa::{AuthData, Dummy};
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::events::{AnySyncMessageLikeEvent, AnySyncTimelineEvent, InitialStateEvent};
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, UserId};
use matrix_sdk::{Client, Room, RoomState};
use support::{Backend, Server, bounded, store_dir};
use tempfile::TempDir;

const PASSWORD: &str = "correct horse battery staple";

/// A logged-in client with its stores and its sync loop.
struct Device {
    client: Client,
    _store: TempDir,
    sync: Option<tokio::task::JoinHandle<()>>,
}

impl Device {
    /// Logs `localpart` in on a new device with an empty store, as a
    /// fresh Element X install does.
    async fn login(server: &Server, localpart: &str, name: &str) -> Self {
        let store = store_dir();
        let client = Client::builder()
            .homeserver_url(server.url())
            .sqlite_store(store.path(), None)
            .with_encryption_settings(EncryptionSettings {
                // Element X's settings: cross-signing is set up at first
                // login (allowed without UIA while the user has no master
                // key); backups only when the user enables recovery.
                auto_enable_cross_signing: true,
                backup_download_strategy: BackupDownloadStrategy::AfterDecryptionFailure,
                auto_enable_backups: false,
            })
            .build()
            .await
            .expect("build client");
        bounded(
            "login",
            client
                .matrix_auth()
                .login_username(localpart, PASSWORD)
                .initial_device_display_name(name)
                .send(),
        )
        .await
        .expect("login");
        bounded(
            "E2EE initialisation (device keys, cross-signing)",
            client.encryption().wait_for_e2ee_initialization_tasks(),
        )
        .await;
        Self {
            client,
            _store: store,
            sync: None,
        }
    }

    /// Keeps syncing in the background, as an app in the foreground does.
    fn start_syncing(&mut self) {
        let client = self.client.clone();
        self.sync = Some(tokio::spawn(async move {
            if let Err(e) = client
                .sync(SyncSettings::default().timeout(std::time::Duration::from_secs(5)))
                .await
            {
                eprintln!("sync loop ended: {e}");
            }
        }));
    }

    async fn sync_once(&self) {
        bounded(
            "sync",
            self.client
                .sync_once(SyncSettings::default().timeout(std::time::Duration::ZERO)),
        )
        .await
        .expect("sync");
    }

    fn user_id(&self) -> &UserId {
        self.client.user_id().expect("logged in")
    }

    fn room(&self, room_id: &OwnedRoomId) -> Option<Room> {
        self.client.get_room(room_id)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Some(sync) = self.sync.take() {
            sync.abort();
        }
    }
}

async fn register(server: &Server, localpart: &str) {
    let client = Client::builder()
        .homeserver_url(server.url())
        .build()
        .await
        .expect("build client");
    let mut request = register::v3::Request::new();
    request.username = Some(localpart.to_owned());
    request.password = Some(PASSWORD.to_owned());
    request.auth = Some(AuthData::Dummy(Dummy::new()));
    request.inhibit_login = true;
    bounded("register", client.matrix_auth().register(request))
        .await
        .unwrap_or_else(|e| panic!("register {localpart}: {e}"));
}

/// The plaintext body of a text message as `device` sees it, `None` while
/// it cannot decrypt it.
async fn decrypted_body(room: &Room, event_id: &OwnedEventId) -> Option<String> {
    let event = room.event(event_id, None).await.ok()?;
    event.encryption_info()?;
    match event.raw().deserialize().ok()? {
        AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomMessage(m)) => {
            Some(m.as_original()?.content.body().to_owned())
        }
        _ => None,
    }
}

async fn send_text(room: &Room, body: &str) -> OwnedEventId {
    bounded(
        "send a message",
        room.send(RoomMessageEventContent::text_plain(body)),
    )
    .await
    .expect("send")
    .response
    .event_id
}

async fn story(backend: Backend) {
    let server = Server::start(backend).await;
    register(&server, "alice").await;
    register(&server, "bob").await;
    let mut alice = Device::login(&server, "alice", "alice's phone").await;
    let mut bob = Device::login(&server, "bob", "bob's phone").await;
    alice.start_syncing();
    bob.start_syncing();

    // Alice creates an encrypted room and invites bob, as Element X does.
    let bob_id = bob.user_id().to_owned();
    let alice_id = alice.user_id().to_owned();
    let mut create = create_room::v3::Request::new();
    create.invite = vec![bob_id.clone()];
    create.preset = Some(create_room::v3::RoomPreset::PrivateChat);
    create.initial_state = vec![
        InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any(),
    ];
    let room_id = bounded("create room", alice.client.create_room(create))
        .await
        .expect("create room")
        .room_id()
        .to_owned();

    wait_for!(
        "bob to see the invite",
        bob.room(&room_id)
            .filter(|r| r.state() == RoomState::Invited)
    );
    bounded("bob joins", bob.client.join_room_by_id(&room_id))
        .await
        .expect("join");
    let alice_room = wait_for!(
        "alice to see bob join",
        alice
            .room(&room_id)
            .filter(|r| r.joined_members_count() == 2)
    );
    let bob_room = wait_for!(
        "bob's room to be joined and encrypted",
        async {
            let room = bob.room(&room_id)?;
            let joined = room.state() == RoomState::Joined;
            let encrypted = room.latest_encryption_state().await.ok()?.is_encrypted();
            (joined && encrypted).then_some(room)
        }
        .await
    );
    assert!(
        alice_room
            .latest_encryption_state()
            .await
            .expect("encryption state")
            .is_encrypted()
    );

    // Messages both ways, each decrypted by the other side.
    let hello = send_text(&alice_room, "hello bob").await;
    let seen = wait_for!(
        "bob to decrypt alice's message",
        decrypted_body(&bob_room, &hello).await
    );
    assert_eq!(seen, "hello bob");
    let hi = send_text(&bob_room, "hi alice").await;
    let seen = wait_for!(
        "alice to decrypt bob's message",
        decrypted_body(&alice_room, &hi).await
    );
    assert_eq!(seen, "hi alice");

    // SAS emoji verification of each other's devices over to-device
    // messages: request, accept, start SAS, accept, compare, confirm.
    let bob_device_id = bob.client.device_id().expect("device").to_owned();
    let alice_device_id = alice.client.device_id().expect("device").to_owned();
    let bobs_device = wait_for!(
        "alice to know bob's device",
        async {
            alice
                .client
                .encryption()
                .get_device(&bob_id, &bob_device_id)
                .await
                .ok()
                .flatten()
        }
        .await
    );
    assert!(!bobs_device.is_verified(), "verified before verification");
    let alice_request = bounded("request verification", bobs_device.request_verification())
        .await
        .expect("request verification");
    let flow_id = alice_request.flow_id().to_owned();
    let bob_request = wait_for!(
        "bob to receive the verification request",
        async {
            bob.client
                .encryption()
                .get_verification_request(&alice_id, &flow_id)
                .await
        }
        .await
    );
    bounded("bob accepts the request", bob_request.accept())
        .await
        .expect("accept request");
    wait_for!(
        "alice to see the request accepted",
        alice_request.is_ready().then_some(())
    );
    let alice_sas = bounded("alice starts SAS", alice_request.start_sas())
        .await
        .expect("start SAS")
        .expect("SAS supported by both");
    let bob_sas = wait_for!(
        "bob to receive the SAS start",
        async {
            match bob
                .client
                .encryption()
                .get_verification(&alice_id, &flow_id)
                .await
            {
                Some(Verification::SasV1(sas)) => Some(sas),
                _ => None,
            }
        }
        .await
    );
    bounded("bob accepts SAS", bob_sas.accept())
        .await
        .expect("accept SAS");
    let alice_emoji = wait_for!("alice's emoji", alice_sas.emoji());
    let bob_emoji = wait_for!("bob's emoji", bob_sas.emoji());
    let show = |e: &[matrix_sdk::encryption::verification::Emoji; 7]| {
        e.iter().map(|e| e.description).collect::<Vec<_>>()
    };
    assert_eq!(show(&alice_emoji), show(&bob_emoji), "the emoji differ");
    bounded("alice confirms", alice_sas.confirm())
        .await
        .expect("confirm");
    bounded("bob confirms", bob_sas.confirm())
        .await
        .expect("confirm");
    wait_for!(
        "both sides to finish SAS",
        (alice_sas.is_done() && bob_sas.is_done()).then_some(())
    );
    assert!(!alice_sas.is_cancelled() && !bob_sas.is_cancelled());
    wait_for!(
        "bob's device verified for alice",
        async {
            let device = alice
                .client
                .encryption()
                .get_device(&bob_id, &bob_device_id)
                .await
                .ok()??;
            device.is_verified().then_some(())
        }
        .await
    );
    wait_for!(
        "alice's device verified for bob",
        async {
            let device = bob
                .client
                .encryption()
                .get_device(&alice_id, &alice_device_id)
                .await
                .ok()??;
            device.is_verified().then_some(())
        }
        .await
    );

    // Alice enables recovery: a key backup with every room key she has,
    // and secret storage holding the backup and cross-signing keys.
    let recovery_key = bounded(
        "enable recovery",
        alice
            .client
            .encryption()
            .recovery()
            .enable()
            .wait_for_backups_to_upload(),
    )
    .await
    .expect("enable recovery");
    assert_eq!(
        alice.client.encryption().recovery().state(),
        RecoveryState::Enabled
    );
    let later = vec![
        send_text(&alice_room, "after backup 1").await,
        send_text(&bob_room, "after backup 2").await,
    ];
    for id in &later {
        wait_for!(
            "alice to decrypt the later messages",
            decrypted_body(&alice_room, id).await
        );
    }
    bounded(
        "backup upload",
        alice.client.encryption().backups().wait_for_steady_state(),
    )
    .await
    .expect("backup upload");

    // A new device of alice's with an empty store: it cannot read the
    // history until it recovers with the recovery key.
    let fresh = Device::login(&server, "alice", "alice's laptop").await;
    fresh.sync_once().await;
    let fresh_room = fresh.room(&room_id).expect("the room after sync");
    assert_eq!(decrypted_body(&fresh_room, &hello).await, None);
    bounded(
        "recover",
        fresh.client.encryption().recovery().recover(&recovery_key),
    )
    .await
    .expect("recover with the recovery key");
    assert_eq!(
        fresh.client.encryption().recovery().state(),
        RecoveryState::Enabled
    );
    assert!(fresh.client.encryption().backups().are_enabled().await);
    // Recovery imported the self-signing key, which signed the new device.
    let own = fresh
        .client
        .encryption()
        .get_own_device()
        .await
        .expect("store")
        .expect("own device");
    assert!(
        own.is_cross_signed_by_owner(),
        "new device not cross-signed"
    );
    bounded(
        "download the room's keys",
        fresh
            .client
            .encryption()
            .backups()
            .download_room_keys_for_room(&room_id),
    )
    .await
    .expect("download keys");
    for (id, body) in [
        (&hello, "hello bob"),
        (&hi, "hi alice"),
        (&later[0], "after backup 1"),
        (&later[1], "after backup 2"),
    ] {
        assert_eq!(
            decrypted_body(&fresh_room, id).await.as_deref(),
            Some(body),
            "the fresh device cannot read {body:?}"
        );
    }

    // The SDK retries or shrugs off some failures; the server must have
    // had none: no 5xx, and no request for an endpoint it does not serve.
    let failures: Vec<String> = server
        .request_counts()
        .await
        .into_iter()
        .filter(|l| l.contains("status=\"5") || l.contains("endpoint=\"unmatched\""))
        .collect();
    assert!(failures.is_empty(), "failed requests: {failures:#?}");
}

backend_tests!(story);
