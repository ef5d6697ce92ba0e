//! Other servers' signing keys, as fetched from them or from a notary:
//!
//! - `server_signing_keys`: one row per `(server_name, key_id)` with the public key and the
//!   last instant it may verify something: `valid_until_ts` of the document it came from for
//!   a current key (room versions 5+ only use it for events sent up to then), `expired_ts`
//!   for a key the server lists under `old_verify_keys`. `key_json` is the whole signed
//!   document the key was last seen in, which our notary endpoints pass on unchanged.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ServerSigningKeys {
    Table,
    ServerName,
    KeyId,
    PublicKey,
    ValidUntilTs,
    ExpiredTs,
    FetchedTs,
    KeyJson,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ServerSigningKeys::Table)
                    .col(
                        ColumnDef::new(ServerSigningKeys::ServerName)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ServerSigningKeys::KeyId).text().not_null())
                    .col(
                        ColumnDef::new(ServerSigningKeys::PublicKey)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ServerSigningKeys::ValidUntilTs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ServerSigningKeys::ExpiredTs)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ServerSigningKeys::FetchedTs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ServerSigningKeys::KeyJson).text().not_null())
                    .primary_key(
                        Index::create()
                            .col(ServerSigningKeys::ServerName)
                            .col(ServerSigningKeys::KeyId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ServerSigningKeys::Table).to_owned())
            .await
    }
}
