//! The database: one sea-orm connection pool over SQLite (embedded default)
//! or PostgreSQL, chosen by URL. Each table has one owner module under
//! `storage/`; nothing else writes it.

use std::time::Duration;

use myelin_migrations::MigratorTrait;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, QueryResult,
    Statement, Value,
};

pub mod account_data;
pub mod accounts;
pub mod filters;
pub mod push_rules;
pub mod pushers;
pub mod streams;

/// The server's database handle. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    conn: DatabaseConnection,
}

impl Db {
    /// Connects to `url`. SQLite runs in WAL mode with `synchronous = FULL`
    /// so that a committed transaction, and so every request answered with
    /// 200, survives a crash of the process or the machine.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbErr> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.max_connections(max_connections)
            .min_connections(1)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(30))
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    .create_if_missing(true)
            });
        let conn = Database::connect(opts).await?;
        Ok(Self { conn })
    }

    /// Brings the schema up to date.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        myelin_migrations::Migrator::up(&self.conn, None).await
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Open and idle connections of the pool.
    pub fn pool_usage(&self) -> (u32, usize) {
        match self.backend() {
            DbBackend::Sqlite => {
                let pool = self.conn.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            DbBackend::Postgres => {
                let pool = self.conn.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => (0, 0),
        }
    }

    /// A statement from SQL written with PostgreSQL's `$1, $2, ...`
    /// placeholders, rewritten to SQLite's numbered `?1, ?2, ...` when
    /// needed, so hand-written queries serve both backends.
    pub fn stmt(&self, sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
        Statement::from_sql_and_values(self.backend(), placeholders(self.backend(), sql), values)
    }

    pub async fn query_one(
        &self,
        sql: &str,
        values: impl IntoIterator<Item = Value>,
    ) -> Result<Option<QueryResult>, DbErr> {
        self.conn.query_one_raw(self.stmt(sql, values)).await
    }

    pub async fn query_all(
        &self,
        sql: &str,
        values: impl IntoIterator<Item = Value>,
    ) -> Result<Vec<QueryResult>, DbErr> {
        self.conn.query_all_raw(self.stmt(sql, values)).await
    }

    pub async fn execute(
        &self,
        sql: &str,
        values: impl IntoIterator<Item = Value>,
    ) -> Result<u64, DbErr> {
        Ok(self
            .conn
            .execute_raw(self.stmt(sql, values))
            .await?
            .rows_affected())
    }
}

/// A fresh, migrated SQLite database in a temporary file, for unit tests
/// of the storage modules.
#[cfg(test)]
pub(crate) async fn test_db() -> Db {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "myelin_unit_{}_{}_{}.db",
        std::process::id(),
        crate::time::now_ms(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let db = Db::connect(&format!("sqlite://{}?mode=rwc", path.display()), 4)
        .await
        .expect("connect");
    db.migrate().await.expect("migrate");
    db
}

fn placeholders(backend: DbBackend, sql: &str) -> String {
    if backend != DbBackend::Sqlite {
        return sql.to_owned();
    }
    // `$` followed by a digit is a placeholder; our SQL has no `$` in
    // string literals (values are always bound).
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_placeholders_are_numbered() {
        assert_eq!(
            placeholders(DbBackend::Sqlite, "SELECT a FROM t WHERE b = $2 AND c = $1"),
            "SELECT a FROM t WHERE b = ?2 AND c = ?1"
        );
        assert_eq!(
            placeholders(DbBackend::Postgres, "WHERE b = $2"),
            "WHERE b = $2"
        );
    }
}
