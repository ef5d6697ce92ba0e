//! Scopes event transaction IDs by endpoint path, as the spec says: a
//! retransmission is the same transaction ID on the same path, so one
//! device may reuse a transaction ID in another room or for another event
//! type. `event_txn_ids` gains `scope` (the request path without the
//! transaction ID, e.g. `rooms/!r:x/send/m.room.message`) in its key.
//!
//! The key of a table cannot be changed in place on SQLite, so the table
//! is rebuilt. Existing rows get the scope of the endpoint that sent them,
//! derived from the stored event, so a retry across the upgrade is still
//! recognised.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EventTxnIds {
    Table,
    UserId,
    DeviceId,
    Scope,
    TxnId,
    EventId,
    CreatedTs,
}

#[derive(DeriveIden)]
enum EventTxnIdsScoped {
    Table,
}

fn create(table: impl IntoIden) -> TableCreateStatement {
    Table::create()
        .table(table)
        .col(ColumnDef::new(EventTxnIds::UserId).text().not_null())
        .col(ColumnDef::new(EventTxnIds::DeviceId).text().not_null())
        .col(ColumnDef::new(EventTxnIds::Scope).text().not_null())
        .col(ColumnDef::new(EventTxnIds::TxnId).text().not_null())
        .col(ColumnDef::new(EventTxnIds::EventId).text().not_null())
        .col(
            ColumnDef::new(EventTxnIds::CreatedTs)
                .big_integer()
                .not_null(),
        )
        .primary_key(
            Index::create()
                .col(EventTxnIds::UserId)
                .col(EventTxnIds::DeviceId)
                .col(EventTxnIds::Scope)
                .col(EventTxnIds::TxnId),
        )
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(create(EventTxnIdsScoped::Table))
            .await?;
        // One batch on one connection: run as separate statements, SQLite
        // pool connections could see the old table at the rename. The SQL
        // is portable: `||` concatenates on both SQLite and PostgreSQL. A
        // redaction with a transaction ID came from the redact endpoint,
        // anything else from send.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO event_txn_ids_scoped \
                 (user_id, device_id, scope, txn_id, event_id, created_ts) \
                 SELECT t.user_id, t.device_id, \
                 CASE WHEN e.event_type = 'm.room.redaction' AND e.redacts IS NOT NULL \
                 THEN 'rooms/' || e.room_id || '/redact/' || e.redacts \
                 ELSE 'rooms/' || e.room_id || '/send/' || e.event_type END, \
                 t.txn_id, t.event_id, t.created_ts \
                 FROM event_txn_ids t JOIN events e ON e.event_id = t.event_id; \
                 DROP TABLE event_txn_ids; \
                 ALTER TABLE event_txn_ids_scoped RENAME TO event_txn_ids; \
                 CREATE INDEX event_txn_ids_event ON event_txn_ids (event_id);",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Going back to the unscoped key would merge rows that now differ
        // only by scope; the schema goes back, the transaction IDs (only
        // useful for retries within minutes) do not.
        manager
            .drop_table(Table::drop().table(EventTxnIds::Table).to_owned())
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EventTxnIds::Table)
                    .col(ColumnDef::new(EventTxnIds::UserId).text().not_null())
                    .col(ColumnDef::new(EventTxnIds::DeviceId).text().not_null())
                    .col(ColumnDef::new(EventTxnIds::TxnId).text().not_null())
                    .col(ColumnDef::new(EventTxnIds::EventId).text().not_null())
                    .col(
                        ColumnDef::new(EventTxnIds::CreatedTs)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(EventTxnIds::UserId)
                            .col(EventTxnIds::DeviceId)
                            .col(EventTxnIds::TxnId),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
