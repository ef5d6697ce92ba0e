//! `federation_txns`: the transactions other servers sent us with
//! `PUT /_matrix/federation/v1/send/{txnId}` and our answer to each, so a
//! retransmitted transaction (same origin, same ID) gets the same answer
//! and is not processed again. Rows are kept for a day
//! (`created_ts`, indexed for pruning).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum FederationTxns {
    Table,
    Origin,
    TxnId,
    Response,
    CreatedTs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(FederationTxns::Table)
                    .col(ColumnDef::new(FederationTxns::Origin).text().not_null())
                    .col(ColumnDef::new(FederationTxns::TxnId).text().not_null())
                    .col(ColumnDef::new(FederationTxns::Response).text().not_null())
                    .col(
                        ColumnDef::new(FederationTxns::CreatedTs)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(FederationTxns::Origin)
                            .col(FederationTxns::TxnId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("federation_txns_created")
                    .table(FederationTxns::Table)
                    .col(FederationTxns::CreatedTs)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(FederationTxns::Table).to_owned())
            .await
    }
}
