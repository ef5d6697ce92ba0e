//! Myelin's database schema as an ordered list of migrations. Each migration
//! is written once against sea-query's schema builder so the same file
//! creates the same tables on SQLite and PostgreSQL. Migrations are never
//! edited after they land; changes come as new migrations.

pub use sea_orm_migration::prelude::*;

mod m0001_accounts;
mod m0002_user_data;
mod m0003_rooms;
mod m0004_receipts;
mod m0005_room_aliases;
mod m0006_e2ee;
mod m0007_txn_id_scope;
mod m0008_server_keys;
mod m0010_dehydrated_devices;
mod m0011_federation_txns;
mod m0012_federation_outbox;
mod m0013_device_list_outbound;
mod m0014_remote_device_lists;
mod m0015_unread_counts;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_accounts::Migration),
            Box::new(m0002_user_data::Migration),
            Box::new(m0003_rooms::Migration),
            Box::new(m0004_receipts::Migration),
            Box::new(m0005_room_aliases::Migration),
            Box::new(m0006_e2ee::Migration),
            Box::new(m0007_txn_id_scope::Migration),
            Box::new(m0008_server_keys::Migration),
            Box::new(m0010_dehydrated_devices::Migration),
            Box::new(m0011_federation_txns::Migration),
            Box::new(m0012_federation_outbox::Migration),
            Box::new(m0013_device_list_outbound::Migration),
            Box::new(m0014_remote_device_lists::Migration),
            Box::new(m0015_unread_counts::Migration),
        ]
    }
}
