//! End-to-end encryption: the server only stores and relays what clients
//! encrypted or signed. Device keys, one-time and fallback keys, to-device
//! inboxes (with their transaction IDs and the outbox for remote users),
//! the device-list change log, cross-signing keys and the signatures on
//! them, and encrypted room-key backups. The storage modules
//! `homeserver/src/storage/{device_keys,one_time_keys,to_device,
//! device_lists,cross_signing,key_backup}.rs` document each table.
//!
//! The tables are not tied to `devices` by foreign keys: deleting a device
//! must also record a device-list change, which the E2EE code does when it
//! removes the device's keys (`e2ee::on_devices_deleted`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Clone, Copy)]
enum Col {
    Text,
    BigInt,
    Bool,
}

struct T {
    name: &'static str,
    cols: &'static [(&'static str, Col)],
    primary_key: &'static [&'static str],
    /// Extra indexes: (name, columns).
    indexes: &'static [(&'static str, &'static [&'static str])],
}

const TABLES: &[T] = &[
    T {
        name: "e2e_device_keys",
        cols: &[
            ("user_id", Col::Text),
            ("device_id", Col::Text),
            ("key_json", Col::Text),
        ],
        primary_key: &["user_id", "device_id"],
        indexes: &[],
    },
    T {
        name: "e2e_one_time_keys",
        cols: &[
            ("user_id", Col::Text),
            ("device_id", Col::Text),
            ("algorithm", Col::Text),
            ("key_id", Col::Text),
            ("key_json", Col::Text),
        ],
        primary_key: &["user_id", "device_id", "algorithm", "key_id"],
        indexes: &[],
    },
    T {
        name: "e2e_fallback_keys",
        cols: &[
            ("user_id", Col::Text),
            ("device_id", Col::Text),
            ("algorithm", Col::Text),
            ("key_id", Col::Text),
            ("key_json", Col::Text),
            ("used", Col::Bool),
        ],
        primary_key: &["user_id", "device_id", "algorithm"],
        indexes: &[],
    },
    T {
        name: "to_device_inbox",
        cols: &[
            ("stream_position", Col::BigInt),
            ("user_id", Col::Text),
            ("device_id", Col::Text),
            ("sender", Col::Text),
            ("event_type", Col::Text),
            ("content", Col::Text),
        ],
        primary_key: &["user_id", "device_id", "stream_position"],
        indexes: &[],
    },
    T {
        name: "to_device_outbox",
        cols: &[
            ("stream_position", Col::BigInt),
            ("destination", Col::Text),
            ("sender", Col::Text),
            ("event_type", Col::Text),
            ("message_id", Col::Text),
            ("messages", Col::Text),
        ],
        primary_key: &["stream_position"],
        indexes: &[(
            "to_device_outbox_destination",
            &["destination", "stream_position"],
        )],
    },
    T {
        name: "to_device_txns",
        cols: &[
            ("user_id", Col::Text),
            ("device_id", Col::Text),
            ("txn_id", Col::Text),
            ("created_ts", Col::BigInt),
        ],
        primary_key: &["user_id", "device_id", "txn_id"],
        indexes: &[],
    },
    T {
        name: "device_list_changes",
        cols: &[("stream_position", Col::BigInt), ("user_id", Col::Text)],
        primary_key: &["stream_position"],
        indexes: &[("device_list_changes_user", &["user_id", "stream_position"])],
    },
    T {
        name: "e2e_cross_signing_keys",
        cols: &[
            ("user_id", Col::Text),
            ("key_type", Col::Text),
            ("public_key", Col::Text),
            ("key_json", Col::Text),
        ],
        primary_key: &["user_id", "key_type"],
        indexes: &[],
    },
    T {
        name: "e2e_signatures",
        cols: &[
            ("target_user_id", Col::Text),
            ("target_key_id", Col::Text),
            ("signer_user_id", Col::Text),
            ("signer_key_id", Col::Text),
            ("signature", Col::Text),
        ],
        primary_key: &[
            "target_user_id",
            "target_key_id",
            "signer_user_id",
            "signer_key_id",
        ],
        indexes: &[],
    },
    T {
        name: "key_backup_versions",
        cols: &[
            ("user_id", Col::Text),
            ("version", Col::BigInt),
            ("algorithm", Col::Text),
            ("auth_data", Col::Text),
            ("etag", Col::BigInt),
            ("deleted", Col::Bool),
        ],
        primary_key: &["user_id", "version"],
        indexes: &[],
    },
    T {
        name: "key_backup_sessions",
        cols: &[
            ("user_id", Col::Text),
            ("version", Col::BigInt),
            ("room_id", Col::Text),
            ("session_id", Col::Text),
            ("first_message_index", Col::BigInt),
            ("forwarded_count", Col::BigInt),
            ("is_verified", Col::Bool),
            ("session_data", Col::Text),
        ],
        primary_key: &["user_id", "version", "room_id", "session_id"],
        indexes: &[],
    },
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in TABLES {
            let mut create = Table::create();
            create.table(Alias::new(t.name));
            for (name, col) in t.cols {
                let mut def = ColumnDef::new(Alias::new(*name));
                match col {
                    Col::Text => def.text(),
                    Col::BigInt => def.big_integer(),
                    Col::Bool => def.boolean(),
                };
                create.col(def.not_null());
            }
            let mut pk = Index::create();
            for c in t.primary_key {
                pk.col(Alias::new(*c));
            }
            create.primary_key(&mut pk);
            manager.create_table(create.to_owned()).await?;
            for (index, cols) in t.indexes {
                let mut idx = Index::create();
                idx.name(*index).table(Alias::new(t.name));
                for c in *cols {
                    idx.col(Alias::new(*c));
                }
                manager.create_index(idx.to_owned()).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in TABLES.iter().rev() {
            manager
                .drop_table(Table::drop().table(Alias::new(t.name)).to_owned())
                .await?;
        }
        Ok(())
    }
}
