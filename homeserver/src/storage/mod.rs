//! The database: one sea-orm connection pool over SQLite (embedded default)
//! or PostgreSQL, chosen by URL. Each table has one owner module under
//! `storage/`; nothing else writes it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use myelin_migrations::MigratorTrait;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, QueryResult, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
    Value,
};

pub mod account_data;
pub mod accounts;
pub mod aliases;
mod cache;
pub mod cross_signing;
pub mod dehydrated_devices;
pub mod device_keys;
pub mod device_list_outbox;
pub mod device_lists;
pub mod directory;
pub mod events;
pub mod federation_outbox;
pub mod federation_txns;
pub mod filters;
pub mod key_backup;
pub mod memberships;
pub mod one_time_keys;
mod placeholders;
pub mod push_actions;
pub mod push_rules;
pub mod pushers;
pub mod receipts;
pub mod remote_devices;
pub mod rooms;
pub mod server_keys;
pub mod state;
pub mod streams;
pub mod to_device;
pub mod txn_ids;

/// The server's database handle. Cheap to clone.
///
/// A handle from [`Db::read_snapshot`] runs its reads on one connection, in
/// one read transaction: each statement on the pool costs a connection
/// checkout and return (a round trip to the connection of its own), which
/// for a request reading a dozen times was a third of its cost.
#[derive(Clone, Debug)]
pub struct Db {
    conn: DbConn,
    memory: Arc<InMemory>,
    /// Read snapshots may hold all connections but one: code holding one
    /// that reads or writes on the pool besides (a bug, but a quiet one)
    /// then still gets a connection instead of waiting for ever.
    snapshot_permits: Arc<Semaphore>,
}

impl Db {
    /// Connects to `url`. SQLite runs in WAL mode with `synchronous = FULL`
    /// so that a committed transaction, and so every request answered with
    /// 200, survives a crash of the process or the machine.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbErr> {
        Self::connect_pool(url, max_connections, 1).await
    }

    /// [`Self::connect`], keeping `min_connections` open even when idle.
    pub async fn connect_pool(
        url: &str,
        max_connections: u32,
        min_connections: u32,
    ) -> Result<Self, DbErr> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.max_connections(max_connections)
            .min_connections(min_connections.clamp(1, max_connections.max(1)))
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(30))
            .test_before_acquire(false)
            // Every statement with its time, at `sqlx::query=info`: for
            // finding what a request costs, never on by default.
            .sqlx_logging(std::env::var_os("MYELIN_SQL_LOG").is_some())
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    // Statement journals (kept while a statement inside a
                    // transaction may need undoing) stay in memory rather
                    // than spilling to a temporary file on every big write.
                    .pragma("temp_store", "memory")
                    .create_if_missing(true)
            });
        Ok(Self {
            conn: DbConn {
                pool: Database::connect(opts).await?,
                snapshot: None,
                stands_in_for_snapshot: false,
            },
            memory: Arc::default(),
            snapshot_permits: Arc::new(Semaphore::new(
                usize::try_from(max_connections.saturating_sub(1)).unwrap_or(0),
            )),
        })
    }

    /// A handle whose reads share one connection and one read transaction
    /// until the last clone of it is dropped: on SQLite they see one
    /// snapshot, taken at its first read (so positions kept in memory must
    /// be read before that, or the snapshot could predate them); on
    /// PostgreSQL each statement sees what is committed when it runs, as on
    /// the pool. When snapshots hold all the connections they may, this is
    /// a handle on the pool. Code holding one must read through it alone,
    /// and not write: write transactions take a connection of their own.
    pub async fn read_snapshot(&self) -> Result<Db, DbErr> {
        if self.conn.snapshot.is_some() {
            return Ok(self.clone());
        }
        let Ok(permit) = self.snapshot_permits.clone().try_acquire_owned() else {
            let mut pool = self.clone();
            pool.conn.stands_in_for_snapshot = true;
            return Ok(pool);
        };
        Ok(Db {
            conn: DbConn {
                pool: self.conn.pool.clone(),
                stands_in_for_snapshot: false,
                snapshot: Some(Arc::new(Snapshot {
                    tx: self.conn.pool.begin().await?,
                    _permit: permit,
                })),
            },
            memory: self.memory.clone(),
            snapshot_permits: self.snapshot_permits.clone(),
        })
    }

    /// Brings the schema up to date.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        myelin_migrations::Migrator::up(&self.conn.pool, None).await
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn.pool
    }

    /// The committed stream positions (see `streams`).
    pub(crate) fn committed_positions(&self) -> &streams::Committed {
        &self.memory.positions
    }

    /// The sessions of recently used access tokens (see `accounts`).
    pub(crate) fn tokens(&self) -> &accounts::TokenCache {
        &self.memory.tokens
    }

    /// Global account data (see `account_data`).
    pub(crate) fn account_data(&self) -> &account_data::Cache {
        &self.memory.account_data
    }

    /// Devices' key counts as sync reads them (see `one_time_keys`).
    pub(crate) fn key_counts(&self) -> &one_time_keys::Cache {
        &self.memory.key_counts
    }

    /// Users' memberships as sync reads them (see `memberships`).
    pub(crate) fn memberships(&self) -> &memberships::Cache {
        &self.memory.memberships
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.pool.get_database_backend()
    }

    /// Open and idle connections of the pool.
    pub fn pool_usage(&self) -> (u32, usize) {
        match self.backend() {
            DbBackend::Sqlite => {
                let pool = self.conn.pool.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            DbBackend::Postgres => {
                let pool = self.conn.pool.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => (0, 0),
        }
    }
}

/// A write transaction running the same `$N` SQL as [`Db`]. Dropped without
/// [`Tx::commit`], it rolls back: nothing is half-written.
pub struct Tx {
    inner: DatabaseTransaction,
    backend: DbBackend,
    memory: Arc<InMemory>,
    /// What the copies in `memory` must follow once this commits.
    changes: std::sync::Mutex<Changes>,
}

/// What the database keeps copies of in memory, shared by every handle:
/// each has one owner module, and transactions keep them in step
/// ([`Changes`]).
#[derive(Debug, Default)]
struct InMemory {
    tokens: accounts::TokenCache,
    positions: streams::Committed,
    memberships: memberships::Cache,
    account_data: account_data::Cache,
    key_counts: one_time_keys::Cache,
}

/// What a write transaction changed of what is kept in memory.
#[derive(Debug, Default)]
struct Changes {
    revokes_tokens: bool,
    /// Stream positions taken.
    positions: Vec<(streams::Stream, i64)>,
    /// Users whose memberships changed.
    memberships: Vec<String>,
    /// Devices whose one-time or fallback keys changed.
    key_counts: Vec<(String, String)>,
    /// Global account data changed, by user and type.
    account_data: Vec<(String, String)>,
}

impl Db {
    /// Starts a write transaction. On SQLite it is `BEGIN IMMEDIATE`: the
    /// write lock is taken up front (waiting out the busy timeout), so the
    /// transaction can never fail half-way with `SQLITE_BUSY` when another
    /// writer committed between its first read and its first write.
    pub async fn begin_write(&self) -> Result<Tx, DbErr> {
        Ok(Tx {
            inner: self.begin_immediate().await?,
            backend: self.backend(),
            memory: self.memory.clone(),
            changes: std::sync::Mutex::default(),
        })
    }

    /// A sea-orm transaction for writing, taking SQLite's write lock up
    /// front like [`Db::begin_write`]. Every transaction that writes starts
    /// here: a deferred one that reads first fails at once with
    /// `SQLITE_BUSY` (the busy timeout does not apply) when another writer
    /// commits between its read and its write.
    pub async fn begin_immediate(&self) -> Result<DatabaseTransaction, DbErr> {
        debug_assert!(
            self.conn.snapshot.is_none() && HOLDING_SNAPSHOT.try_with(|()| ()).is_err(),
            "a write transaction begun while holding a read snapshot"
        );
        self.conn
            .pool
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await
    }
}

impl Tx {
    /// Commits durably: on SQLite (`synchronous = FULL`) and PostgreSQL
    /// (default `synchronous_commit`) the data is on disk when this returns.
    pub async fn commit(self) -> Result<(), DbErr> {
        self.inner.commit().await?;
        let changes = self
            .changes
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if changes.revokes_tokens {
            self.memory.tokens.invalidate();
        }
        // Memberships before positions: a reader that sees a position
        // finds the memberships that came with it.
        for user_id in &changes.memberships {
            self.memory.memberships.invalidate(user_id);
        }
        for (user_id, device_id) in &changes.key_counts {
            self.memory.key_counts.invalidate(user_id, device_id);
        }
        for (user_id, event_type) in &changes.account_data {
            self.memory.account_data.invalidate(user_id, event_type);
        }
        for (stream, position) in changes.positions {
            self.memory.positions.publish(stream, position);
        }
        Ok(())
    }

    fn changes(&self) -> std::sync::MutexGuard<'_, Changes> {
        // No critical section can panic half-way.
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a stream position this transaction took, for readers to
    /// see once it commits.
    pub(crate) fn publishes_position(&self, stream: streams::Stream, position: i64) {
        self.changes().positions.push((stream, position));
    }

    /// Records that this transaction changes a device's one-time or
    /// fallback keys: its cached counts are dropped now and once it commits.
    pub(crate) fn changes_key_counts(&self, user_id: &str, device_id: &str) {
        self.memory.key_counts.invalidate(user_id, device_id);
        self.changes()
            .key_counts
            .push((user_id.to_owned(), device_id.to_owned()));
    }

    /// Records that this transaction changes a piece of global account
    /// data: its cached content is dropped now and once it commits.
    pub(crate) fn changes_global_account_data(&self, user_id: &str, event_type: &str) {
        self.memory.account_data.invalidate(user_id, event_type);
        self.changes()
            .account_data
            .push((user_id.to_owned(), event_type.to_owned()));
    }

    /// Records that this transaction changes `user_id`'s memberships: the
    /// cached ones are dropped now and again once it commits (a read
    /// meanwhile still finds the old ones in the database).
    pub(crate) fn changes_memberships(&self, user_id: &str) {
        self.memory.memberships.invalidate(user_id);
        self.changes().memberships.push(user_id.to_owned());
    }

    /// Marks this transaction as revoking access tokens: cached sessions
    /// are dropped now and again once it commits (a lookup running
    /// meanwhile still reads them as valid from the database).
    pub(crate) fn revokes_tokens(&self) {
        self.memory.tokens.invalidate();
        self.changes().revokes_tokens = true;
    }
}

/// Runs SQL written with PostgreSQL's `$1, $2, ...` placeholders, rewritten
/// for SQLite (see [`placeholders`]), so hand-written queries
/// serve both backends; the same methods on the pool ([`Db`]) and inside a
/// write transaction ([`Tx`]).
pub trait Sql {
    type Conn: ConnectionTrait + Sync;

    fn sql_connection(&self) -> &Self::Conn;

    fn sql_backend(&self) -> DbBackend;

    fn stmt(&self, sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
        let backend = self.sql_backend();
        if backend != DbBackend::Sqlite {
            return Statement::from_sql_and_values(backend, sql, values);
        }
        let (sql, values) = placeholders::anonymous(sql, values.into_iter().collect());
        Statement::from_sql_and_values(backend, sql, values)
    }

    fn query_one(
        &self,
        sql: &str,
        values: impl IntoIterator<Item = Value>,
    ) -> impl Future<Output = Result<Option<QueryResult>, DbErr>> + Send {
        let stmt = self.stmt(sql, values);
        let conn = self.sql_connection();
        async move { conn.query_one_raw(stmt).await }
    }

    fn query_all(
        &self,
        sql: &str,
        values: impl IntoIterator<Item = Value>,
    ) -> impl Future<Output = Result<Vec<QueryResult>, DbErr>> + Send {
        let stmt = self.stmt(sql, values);
        let conn = self.sql_connection();
        async move { conn.query_all_raw(stmt).await }
    }

    fn execute(
        &self,
        sql: &str,
        values: impl IntoIterator<Item = Value>,
    ) -> impl Future<Output = Result<u64, DbErr>> + Send {
        let stmt = self.stmt(sql, values);
        let conn = self.sql_connection();
        async move { Ok(conn.execute_raw(stmt).await?.rows_affected()) }
    }
}

impl Sql for Db {
    type Conn = DbConn;

    fn sql_connection(&self) -> &DbConn {
        &self.conn
    }

    fn sql_backend(&self) -> DbBackend {
        self.backend()
    }
}

/// Where a [`Db`]'s statements run: the pool, or its read snapshot.
#[derive(Clone, Debug)]
pub struct DbConn {
    pool: DatabaseConnection,
    snapshot: Option<Arc<Snapshot>>,
    /// A handle on the pool given out for a snapshot (none was free).
    stands_in_for_snapshot: bool,
}

impl DbConn {
    /// The pool, for one statement.
    fn pool(&self) -> &DatabaseConnection {
        debug_assert!(
            self.stands_in_for_snapshot || HOLDING_SNAPSHOT.try_with(|()| ()).is_err(),
            "a statement on the pool from code holding a read snapshot"
        );
        &self.pool
    }
}

tokio::task_local! {
    /// Set while a task holds a read snapshot: debug builds check that it
    /// does not use the pool besides.
    static HOLDING_SNAPSHOT: ();
}

/// Runs `f`, which holds a read snapshot throughout (see
/// [`Db::read_snapshot`]); in debug builds, a statement it sends to the
/// pool instead (through another handle) panics.
pub async fn holding_snapshot<F: Future>(f: F) -> F::Output {
    HOLDING_SNAPSHOT.scope((), f).await
}

/// A read transaction, and the permit it holds until it ends (fields drop
/// in order: the transaction first).
#[derive(Debug)]
struct Snapshot {
    tx: DatabaseTransaction,
    _permit: OwnedSemaphorePermit,
}

#[async_trait::async_trait]
impl ConnectionTrait for DbConn {
    fn get_database_backend(&self) -> DbBackend {
        self.pool.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<sea_orm::ExecResult, DbErr> {
        match &self.snapshot {
            Some(snapshot) => snapshot.tx.execute_raw(stmt).await,
            None => self.pool().execute_raw(stmt).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<sea_orm::ExecResult, DbErr> {
        match &self.snapshot {
            Some(snapshot) => snapshot.tx.execute_unprepared(sql).await,
            None => self.pool().execute_unprepared(sql).await,
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match &self.snapshot {
            Some(snapshot) => snapshot.tx.query_one_raw(stmt).await,
            None => self.pool().query_one_raw(stmt).await,
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match &self.snapshot {
            Some(snapshot) => snapshot.tx.query_all_raw(stmt).await,
            None => self.pool().query_all_raw(stmt).await,
        }
    }
}

impl Sql for Tx {
    type Conn = DatabaseTransaction;

    fn sql_connection(&self) -> &DatabaseTransaction {
        &self.inner
    }

    fn sql_backend(&self) -> DbBackend {
        self.backend
    }
}

/// `$first, $first+1, ...` for `count` values: the placeholders of an `IN`
/// list that follows `first - 1` other bound values.
pub fn in_list(first: usize, count: usize) -> String {
    let mut out = String::with_capacity(count * 4);
    for i in 0..count {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('$');
        out.push_str(&(first + i).to_string());
    }
    out
}

/// `LIMIT n`, written into the statement rather than bound. SQLite (3.51
/// here) plans a bound limit with its value, and so marks the statement to
/// be prepared again whenever that parameter is bound: on every execution,
/// which cost the sync timeline read a tenth of its time. A handful of
/// distinct limits make a handful of cached statements instead.
pub fn limit(n: impl TryInto<i64>) -> String {
    format!("LIMIT {}", n.try_into().unwrap_or(i64::MAX).max(0))
}

/// Most values bound in one `IN` list; longer lists are queried in chunks
/// (PostgreSQL allows 65,535 parameters, SQLite 32,766).
pub const IN_CHUNK: usize = 500;

/// Most rows in one multi-row `INSERT` of [`insert_rows`].
const MAX_ROWS_PER_INSERT: usize = 256;

/// How many rows the next multi-row `INSERT` of `left` rows carries: a
/// power of two, at most [`MAX_ROWS_PER_INSERT`]. So any count takes few
/// statements, and few distinct ones, as each is prepared and cached per
/// connection.
pub fn rows_per_insert(left: usize) -> usize {
    MAX_ROWS_PER_INSERT.min(1 << left.max(1).ilog2())
}

/// `{head} VALUES (...), (...) {tail}` for `rows` rows of `width`
/// placeholders each.
pub fn multi_row_insert(head: &str, tail: &str, width: usize, rows: usize) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * width * 6);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        sql.push_str(&in_list(1 + row * width, width));
        sql.push(')');
    }
    if !tail.is_empty() {
        sql.push(' ');
        sql.push_str(tail);
    }
    sql
}

/// Inserts rows of `width` values each (`values`, row after row, in the
/// columns' order) as `{head} VALUES (...), (...) {tail}`, where `head` is
/// `INSERT INTO table (columns)` and `tail` may be an `ON CONFLICT` clause,
/// in statements of [`rows_per_insert`] rows.
pub async fn insert_rows(
    tx: &Tx,
    head: &str,
    tail: &str,
    width: usize,
    values: Vec<Value>,
) -> Result<(), DbErr> {
    debug_assert!(width > 0 && values.len().is_multiple_of(width));
    let mut left = values.len() / width.max(1);
    let mut values = values.into_iter();
    while left > 0 {
        let rows = rows_per_insert(left);
        let sql = multi_row_insert(head, tail, width, rows);
        tx.execute(&sql, values.by_ref().take(rows * width)).await?;
        left -= rows;
    }
    Ok(())
}

/// Runs `delete` (a `DELETE` whose `$1` is `key` and which ends with
/// `IN (`) for `ids`, [`IN_CHUNK`] at a time: how the outboxes forget
/// what a destination received.
pub async fn delete_in_chunks(db: &Db, delete: &str, key: &str, ids: &[i64]) -> Result<(), DbErr> {
    for chunk in ids.chunks(IN_CHUNK) {
        let mut values: Vec<Value> = vec![key.into()];
        values.extend(chunk.iter().map(|id| Value::from(*id)));
        db.execute(&format!("{delete}{})", in_list(2, chunk.len())), values)
            .await?;
    }
    Ok(())
}

/// A fresh, migrated SQLite database in a temporary file, for unit tests
/// of the storage modules.
#[cfg(test)]
pub(crate) async fn test_db() -> Db {
    test_db_with_url().await.0
}

/// [`test_db`], and the URL of its file (for a second handle on it).
#[cfg(test)]
pub(crate) async fn test_db_with_url() -> (Db, String) {
    use std::sync::Once;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static SWEEP: Once = Once::new();
    // A `Db` has no owner to delete its file when the last clone goes, so
    // each test process instead removes what earlier runs left behind (an
    // hour old: no run still uses it), keeping a reused machine's temp
    // directory bounded.
    SWEEP.call_once(|| remove_stale_test_files(std::time::Duration::from_secs(3600)));
    let path = std::env::temp_dir().join(format!(
        "myelin_unit_{}_{}_{}.db",
        std::process::id(),
        crate::time::now_ms(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let db = Db::connect(&url, 4).await.expect("connect");
    db.migrate().await.expect("migrate");
    (db, url)
}

/// Deletes `myelin_unit_*` database files (and their WAL and shared-memory
/// files) older than `age` from the temp directory.
#[cfg(test)]
fn remove_stale_test_files(age: Duration) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let is_test_db = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("myelin_unit_"));
        let is_old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|elapsed| elapsed > age);
        if is_test_db && is_old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn limits_are_written_in() {
        assert_eq!(super::limit(11u64), "LIMIT 11");
        assert_eq!(super::limit(u64::MAX), format!("LIMIT {}", i64::MAX));
        assert_eq!(super::limit(-3i64), "LIMIT 0");
    }

    /// Every statement writes its limit in ([`super::limit`]): a bound one
    /// makes SQLite prepare the statement again on each execution.
    #[test]
    fn no_statement_binds_its_limit() {
        fn check(dir: &Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir)
                .expect("read source directory")
                .flatten()
            {
                let path = entry.path();
                if path.is_dir() {
                    check(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("read source file");
                    for (n, line) in text.lines().enumerate() {
                        // A keyword, a space, a placeholder (spelt so as not
                        // to match this line).
                        let bound = ["LIMIT", "OFFSET"].iter().any(|kw| {
                            line.match_indices(kw).any(|(i, _)| {
                                let rest = &line[i + kw.len()..];
                                rest.starts_with(" $") || rest.starts_with(" ?")
                            })
                        });
                        if bound {
                            found.push(format!("{}:{}", path.display(), n + 1));
                        }
                    }
                }
            }
        }
        let mut found = Vec::new();
        check(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert!(found.is_empty(), "bound limits at {found:?}");
    }
}
