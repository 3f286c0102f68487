//! The embedded store: SQLite through rusqlite (bundled), one file holding
//! tickets, grants and the audit chain, so `serve --dev` survives restarts.
//!
//! rusqlite is blocking, so every call runs on tokio's blocking pool with the
//! connection behind a mutex: one writer, which also serialises audit appends
//! so the chain never forks within a process. `synchronous=FULL` makes an
//! append durable before it returns.
//!
//! Audit appends are group-committed: each queues its record, and whichever
//! append gets the connection first commits every queued record (up to
//! [`MAX_BATCH`]) in one transaction, each in a savepoint of its own, so
//! concurrent appends share one commit and one fsync (`commit_queued`).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::audit::chain;
use crate::audit::{AdmissionLimits, LimitHit};
use crate::audit::{
    AuditEvent, AuditFilter, AuditLog, AuditPage, AuditRecord, DEFAULT_PAGE, MAX_PAGE,
};
use crate::error::Error;
use crate::grants::{GrantFilter, GrantStore, StoredGrant};
use crate::rollout::{OperationLeases, OperationMark};
use crate::tickets::{Ticket, TicketFilter, TicketStatus, TicketStore};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL,
    namespace TEXT NOT NULL,
    application TEXT NOT NULL,
    requester TEXT NOT NULL,
    body TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS grants (
    jti TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    namespace TEXT NOT NULL,
    application TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS grants_by_subject ON grants (user, namespace, application, expires_at);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    event TEXT NOT NULL,
    namespace TEXT,
    application TEXT,
    username TEXT,
    decision TEXT,
    operation_id TEXT,
    hash TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_namespace ON audit (namespace, seq);
CREATE INDEX IF NOT EXISTS audit_by_operation ON audit (operation_id);
CREATE INDEX IF NOT EXISTS audit_by_application ON audit (namespace, application, seq);
CREATE INDEX IF NOT EXISTS audit_by_event ON audit (event, seq) WHERE event <> 'ADMISSION';
CREATE TABLE IF NOT EXISTS open_operations (
    operation_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS operation_leases (
    operation_id TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS grant_uses (
    jti TEXT PRIMARY KEY,
    uses INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
";

/// Most audit appends one transaction carries.
const MAX_BATCH: usize = 64;

/// What an audit append's caller gets back.
type Answer = Result<Result<AuditRecord, LimitHit>, Error>;

/// An audit append waiting for a transaction (see `append_with`).
struct Queued {
    record: AuditRecord,
    limits: AdmissionLimits,
    done: oneshot::Sender<Answer>,
}

type Queue = Arc<Mutex<Vec<Queued>>>;

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    /// The connection that writes (and reads inside its writes). Taken
    /// asynchronously, so waiting for it holds no blocking thread.
    conn: Arc<tokio::sync::Mutex<Connection>>,
    /// A second connection for plain reads (`query_only`). In WAL mode a
    /// reader never waits for a writer, so the webhook's grant lookup and
    /// the API's listings do not queue behind a commit and its fsync.
    reader: Arc<tokio::sync::Mutex<Connection>>,
    /// Audit appends waiting for the next transaction.
    queue: Queue,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Dir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let path = path.to_owned();
        let (conn, reader) = tokio::task::spawn_blocking(move || -> Result<_, Error> {
            let mut conn = Connection::open(&path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.execute_batch(SCHEMA)?;
            migrate(&mut conn)?;
            let reader = Connection::open(&path)?;
            reader.pragma_update(None, "query_only", "ON")?;
            reader.busy_timeout(std::time::Duration::from_secs(5))?;
            Ok((conn, reader))
        })
        .await
        .map_err(|_| Error::WorkerGone)??;
        Ok(Self {
            conn: Arc::new(tokio::sync::Mutex::new(conn)),
            reader: Arc::new(tokio::sync::Mutex::new(reader)),
            queue: Queue::default(),
        })
    }

    /// Appends `record` if `limits` allow, sharing a transaction with the
    /// appends queued at the same time.
    ///
    /// The record is queued, then a job on the blocking pool commits what is
    /// queued when it gets the connection: this record, unless an earlier
    /// job took it. A job runs to its end even if the caller's future is
    /// dropped (the webhook's timeout), so it answers every record it takes;
    /// records whose callers gave up before a job took them are skipped.
    async fn append_with(&self, record: AuditRecord, limits: AdmissionLimits) -> Answer {
        let (done, answer) = oneshot::channel();
        queued(&self.queue).push(Queued {
            record,
            limits,
            done,
        });
        let mut answer = std::pin::pin!(answer);
        tokio::select! {
            biased;
            // An earlier job took the record: nothing left to do here.
            answered = &mut answer => return answered.unwrap_or(Err(Error::WorkerGone)),
            mut conn = self.conn.clone().lock_owned() => {
                let queue = self.queue.clone();
                // Not awaited: the job answers through `done`, and runs to
                // its end even if this future is dropped.
                drop(tokio::task::spawn_blocking(move || commit_queued(&mut conn, &queue)));
            }
        }
        // Dropped unanswered only if the job panicked or the runtime stopped.
        answer.await.unwrap_or(Err(Error::WorkerGone))
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        // Wait for the connection here, not on a blocking thread: callers
        // queued on a lock inside the pool each held a thread (and its
        // stack and allocator arena) for nothing, and under load the pool
        // grew to one thread per waiting request.
        let mut guard = self.conn.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || f(&mut guard))
            .await
            .map_err(|_| Error::WorkerGone)?
    }

    /// Runs `f` with the reading connection on the blocking pool: for
    /// statements that only read.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let mut guard = self.reader.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || f(&mut guard))
            .await
            .map_err(|_| Error::WorkerGone)?
    }

    /// Runs raw SQL; tests use it to tamper with the audit table directly.
    #[doc(hidden)]
    pub async fn execute_raw(&self, sql: &'static str) -> Result<usize, Error> {
        self.with(move |c| Ok(c.execute(sql, [])?)).await
    }
}

/// Brings a database made by an older rollgate up to [`SCHEMA`]: `tickets`
/// gained `revision`, the compare-and-set key of `update_ticket` (0 for the
/// tickets already there, as their JSON without it reads). Under the write
/// lock, so two processes opening one old file cannot both add the column.
fn migrate(conn: &mut Connection) -> Result<(), Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let has_revision = tx
        .prepare("SELECT 1 FROM pragma_table_info('tickets') WHERE name = 'revision'")?
        .exists([])?;
    if !has_revision {
        tx.execute(
            "ALTER TABLE tickets ADD COLUMN revision INTEGER NOT NULL DEFAULT 0",
            [],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn status_str(s: TicketStatus) -> &'static str {
    s.as_str()
}

/// A revision as SQLite stores it (revisions never come near `i64::MAX`).
fn revision_sql(revision: u64) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

#[async_trait]
impl TicketStore for SqliteStore {
    async fn create_ticket(
        &self,
        make: Box<dyn FnOnce(u64) -> Ticket + Send>,
    ) -> Result<Ticket, Error> {
        self.with(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO tickets (status, namespace, application, requester, body) VALUES ('', '', '', '', '')",
                [],
            )?;
            let rowid = tx.last_insert_rowid();
            let ticket = make(u64::try_from(rowid).unwrap_or_default());
            tx.execute(
                "UPDATE tickets SET status = ?1, namespace = ?2, application = ?3, requester = ?4, body = ?5, revision = ?6
                 WHERE id = ?7",
                params![
                    status_str(ticket.status),
                    ticket.namespace,
                    ticket.application,
                    ticket.requester,
                    serde_json::to_string(&ticket)?,
                    revision_sql(ticket.revision),
                    rowid
                ],
            )?;
            tx.commit()?;
            Ok(ticket)
        })
        .await
    }

    async fn get_ticket(&self, id: &str) -> Result<Option<Ticket>, Error> {
        let Ok(id) = id.parse::<i64>() else {
            return Ok(None);
        };
        self.read(move |c| {
            let body: Option<String> = c
                .query_row("SELECT body FROM tickets WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
        })
        .await
    }

    async fn list_tickets(&self, filter: &TicketFilter) -> Result<Vec<Ticket>, Error> {
        let filter = filter.clone();
        self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT body FROM tickets WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR namespace = ?2)
                 AND (?3 IS NULL OR application = ?3) AND (?4 IS NULL OR requester = ?4) ORDER BY id DESC LIMIT 1000",
            )?;
            let rows = stmt.query_map(
                params![
                    filter.status.map(status_str),
                    filter.namespace,
                    filter.application,
                    filter.requester
                ],
                |r| r.get::<_, String>(0),
            )?;
            let mut out = Vec::new();
            for body in rows {
                out.push(serde_json::from_str(&body?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn update_ticket(&self, ticket: &Ticket, expected_revision: u64) -> Result<bool, Error> {
        let ticket = ticket.clone();
        self.with(move |c| {
            let id: i64 = ticket.id.parse().unwrap_or(-1);
            // One statement: of two processes on one file that read the same
            // revision, only the first to take the write lock matches it.
            let changed = c.execute(
                "UPDATE tickets SET status = ?1, revision = ?2, body = ?3 WHERE id = ?4 AND revision = ?5",
                params![
                    status_str(ticket.status),
                    revision_sql(ticket.revision),
                    serde_json::to_string(&ticket)?,
                    id,
                    revision_sql(expected_revision)
                ],
            )?;
            Ok(changed == 1)
        })
        .await
    }
}

#[async_trait]
impl GrantStore for SqliteStore {
    async fn put_grant(&self, grant: &StoredGrant) -> Result<(), Error> {
        let grant = grant.clone();
        self.with(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO grants (jti, user, namespace, application, expires_at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    grant.jti,
                    grant.user,
                    grant.namespace,
                    grant.application,
                    grant.expires_at,
                    serde_json::to_string(&grant)?
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn find_grants(
        &self,
        user: &str,
        namespace: &str,
        application: &str,
        now: i64,
    ) -> Result<Vec<StoredGrant>, Error> {
        let (user, namespace, application) = (
            user.to_owned(),
            namespace.to_owned(),
            application.to_owned(),
        );
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT body FROM grants WHERE user = ?1 AND namespace = ?2 AND application = ?3 AND expires_at > ?4
                 ORDER BY expires_at DESC LIMIT 8",
            )?;
            let rows = stmt.query_map(params![user, namespace, application, now], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for body in rows {
                out.push(serde_json::from_str(&body?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn grant_by_jti(&self, jti: &str, now: i64) -> Result<Option<StoredGrant>, Error> {
        let jti = jti.to_owned();
        self.read(move |c| {
            let body: Option<String> = c
                .query_row(
                    "SELECT body FROM grants WHERE jti = ?1 AND expires_at > ?2",
                    params![jti, now],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
        })
        .await
    }

    async fn list_grants(&self, filter: &GrantFilter, now: i64) -> Result<Vec<StoredGrant>, Error> {
        let filter = filter.clone();
        self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT body FROM grants WHERE expires_at > ?1 AND (?2 IS NULL OR namespace = ?2) AND (?3 IS NULL OR user = ?3)
                 ORDER BY expires_at DESC",
            )?;
            let rows = stmt.query_map(params![now, filter.namespace, filter.user], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for body in rows {
                out.push(serde_json::from_str(&body?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn take_expired_grants(&self, now: i64) -> Result<Vec<StoredGrant>, Error> {
        self.with(move |c| {
            // DELETE … RETURNING is one statement: two processes on one file
            // cannot both take the same row.
            let mut stmt =
                c.prepare_cached("DELETE FROM grants WHERE expires_at <= ?1 RETURNING body")?;
            let rows = stmt.query_map([now], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for body in rows {
                let grant: StoredGrant = serde_json::from_str(&body?)?;
                out.push(StoredGrant {
                    token: String::new(),
                    ..grant
                });
            }
            Ok(out)
        })
        .await
    }

    async fn revoke_grant(&self, jti: &str) -> Result<bool, Error> {
        let jti = jti.to_owned();
        self.with(move |c| Ok(c.execute("DELETE FROM grants WHERE jti = ?1", [jti])? == 1))
            .await
    }
}

fn queued(queue: &Mutex<Vec<Queued>>) -> std::sync::MutexGuard<'_, Vec<Queued>> {
    // Nothing panics while holding it; a poisoned queue is still whole.
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Commits up to [`MAX_BATCH`] queued appends in one transaction and answers
/// each. Each record is checked and appended in a savepoint of its own, so
/// one that fails (or is refused by a limit) leaves no trace and the others
/// still go in; a failed commit fails every record of the batch.
fn commit_queued(c: &mut Connection, queue: &Mutex<Vec<Queued>>) {
    let batch: Vec<Queued> = {
        let mut queue = queued(queue);
        // Callers that gave up (their future was dropped) are not appended.
        queue.retain(|q| !q.done.is_closed());
        let take = queue.len().min(MAX_BATCH);
        queue.drain(..take).collect()
    };
    if batch.is_empty() {
        return;
    }
    // IMMEDIATE takes the write lock first, so two processes on one file
    // cannot both read the same head and fork the chain.
    let mut tx = match c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            for q in batch {
                let _ = q.done.send(Err(each_caller(&e)));
            }
            return;
        }
    };
    let mut answered = Vec::with_capacity(batch.len());
    for q in batch {
        let answer = tx.savepoint().map_err(Error::from).and_then(|mut sp| {
            let answer = admit(&sp, q.record, &q.limits)?;
            if answer.is_ok() {
                sp.commit()?;
            } else {
                // A refusal writes nothing; undo the savepoint anyway.
                sp.set_drop_behavior(rusqlite::DropBehavior::Rollback);
            }
            Ok(answer)
        });
        answered.push((q.done, answer));
    }
    let committed = tx.commit();
    for (done, answer) in answered {
        let answer = match (&committed, answer) {
            (Err(e), Ok(_)) => Err(each_caller(e)),
            (_, answer) => answer,
        };
        // A caller that gave up meanwhile has no receiver left.
        let _ = done.send(answer);
    }
}

/// Appends `record` after the current head unless `limits` refuse it, and
/// counts the grant use, inside `conn`'s open transaction or savepoint.
fn admit(
    conn: &Connection,
    record: AuditRecord,
    limits: &AdmissionLimits,
) -> Result<Result<AuditRecord, LimitHit>, Error> {
    let (namespace, application) = (&record.namespace, &record.application_name);
    if let Some(hit) = limit_hit(conn, namespace.as_deref(), application.as_deref(), limits)? {
        return Ok(Err(hit));
    }
    let record = append_in(conn, record)?;
    if let Some(uses) = &limits.grant_uses {
        conn.execute(
            "INSERT INTO grant_uses (jti, uses, expires_at) VALUES (?1, 1, ?2)
             ON CONFLICT (jti) DO UPDATE SET uses = uses + 1",
            params![uses.jti, uses.expires_at],
        )?;
    }
    Ok(Ok(record))
}

/// A copy of `e` for one more caller (`rusqlite::Error` is not `Clone`).
fn each_caller(e: &rusqlite::Error) -> Error {
    Error::Sqlite(match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    })
}

/// Chains `record` after the current head and inserts it, inside `tx` (an
/// open transaction or savepoint).
fn append_in(tx: &Connection, mut record: AuditRecord) -> Result<AuditRecord, Error> {
    let head: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (seq, prev) = match head {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, chain::GENESIS_HASH.to_owned()),
    };
    record.id = seq.to_string();
    chain::link(&mut record, &prev);
    tx.execute(
        "INSERT INTO audit (seq, ts, event, namespace, application, username, decision, operation_id, hash, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            seq,
            record.timestamp,
            record.event.map(|e| e.as_str()),
            record.namespace,
            record.application_name,
            record.username,
            record.decision.map(|d| d.as_str()),
            record.operation_id,
            record.hash,
            serde_json::to_string(&record)?
        ],
    )?;
    if let Some(op) = &record.operation_id {
        match OperationMark::of(&record) {
            OperationMark::Open => {
                tx.execute(
                    "INSERT OR IGNORE INTO open_operations (operation_id, seq) VALUES (?1, ?2)",
                    params![op, seq],
                )?;
            }
            OperationMark::Close => {
                tx.execute("DELETE FROM open_operations WHERE operation_id = ?1", [op])?;
                tx.execute("DELETE FROM operation_leases WHERE operation_id = ?1", [op])?;
            }
            OperationMark::None => {}
        }
    }
    Ok(record)
}

/// The SQL and parameters of one page of `filter`, newest first. Only the
/// filters given become conditions, so SQLite can walk the index that fits
/// (namespace and application, namespace, operation, event) instead of the
/// table.
fn query_sql(filter: &AuditFilter, limit: usize) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut conditions: Vec<&str> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let mut text = |condition, value: Option<String>| {
        if let Some(value) = value {
            conditions.push(condition);
            values.push(Value::Text(value));
        }
    };
    text("namespace = ?", filter.namespace.clone());
    text("application = ?", filter.application.clone());
    text("username = ?", filter.user.clone());
    text("event = ?", filter.event.map(|e| e.as_str().to_owned()));
    text(
        "decision = ?",
        filter.decision.map(|d| d.as_str().to_owned()),
    );
    text("ts >= ?", filter.since.map(crate::audit::timestamp_text));
    text("ts < ?", filter.until.map(crate::audit::timestamp_text));
    text("operation_id = ?", filter.operation_id.clone());
    // `audit_by_event` leaves ADMISSION out, as the Redis store does: it is
    // the bulk of the trail, which a walk of the table (or of the namespace's
    // index) finds as well. SQLite uses a partial index only when the query
    // spells out the index's condition (`event = ?` does not, whatever value
    // is bound), so it is spelled out exactly where the Redis store reads its
    // event index: an event other than ADMISSION, no operation, no namespace.
    // An index of every event, SQLite walked for `namespace = ? AND event = ?`
    // instead of the namespace's, whatever the event.
    if filter.event.is_some_and(|e| e != AuditEvent::Admission)
        && filter.operation_id.is_none()
        && filter.namespace.is_none()
    {
        conditions.push("event <> 'ADMISSION'");
    }
    if let Some(after) = filter.after.as_deref().and_then(|a| a.parse::<i64>().ok()) {
        conditions.push("seq < ?");
        values.push(Value::Integer(after));
    }
    let mut sql = "SELECT body FROM audit".to_owned();
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(" ORDER BY seq DESC LIMIT ?");
    values.push(Value::Integer(i64::try_from(limit + 1).unwrap_or(i64::MAX)));
    (sql, values)
}

/// The record a stored body holds; one that does not parse is a record with
/// only its seq as id and an unreadable hash, so a chain walk fails there.
fn readable(seq: u64, body: &str) -> AuditRecord {
    serde_json::from_str(body).unwrap_or_else(|_| AuditRecord {
        id: seq.to_string(),
        hash: chain::UNREADABLE.into(),
        ..AuditRecord::default()
    })
}

/// The limit an admission of `namespace`/`application` would exceed, if
/// any. The rate limit counts the ALLOWED admissions of the application
/// already in the trail. Only reads: the append and the dry run's check
/// share it, so they answer alike.
fn limit_hit(
    tx: &Connection,
    namespace: Option<&str>,
    application: Option<&str>,
    limits: &AdmissionLimits,
) -> Result<Option<LimitHit>, Error> {
    if let Some(uses) = &limits.grant_uses {
        let used: i64 = tx
            .query_row(
                "SELECT uses FROM grant_uses WHERE jti = ?1",
                [&uses.jti],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        if used >= i64::from(uses.max) {
            return Ok(Some(LimitHit::UsedUp { max: uses.max }));
        }
    }
    if let Some(rate) = limits.rate.filter(|r| r.limit > 0) {
        let since = jiff::Timestamp::from_second(rate.now - rate.window_secs)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        // The limit-th most recent admission in the window, if there are that many.
        let nth: Option<String> = tx
            .query_row(
                "SELECT ts FROM audit WHERE namespace = ?1 AND application = ?2 AND event = 'ADMISSION'
                 AND decision = 'ALLOWED' AND ts > ?3 ORDER BY seq DESC LIMIT 1 OFFSET ?4",
                params![namespace, application, crate::audit::timestamp_text(since), rate.limit - 1],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(ts) = nth {
            let at = ts
                .parse::<jiff::Timestamp>()
                .map(|t| t.as_second())
                .unwrap_or(rate.now);
            return Ok(Some(LimitHit::RateLimited {
                limit: rate.limit,
                window_secs: rate.window_secs,
                next_at: at + rate.window_secs,
            }));
        }
    }
    Ok(None)
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn append_admission(
        &self,
        record: AuditRecord,
        limits: &AdmissionLimits,
    ) -> Result<Result<AuditRecord, LimitHit>, Error> {
        self.append_with(record, limits.clone()).await
    }

    async fn check_admission_limits(
        &self,
        namespace: &str,
        application: &str,
        limits: &AdmissionLimits,
    ) -> Result<Option<LimitHit>, Error> {
        let (namespace, application) = (namespace.to_owned(), application.to_owned());
        let limits = limits.clone();
        self.read(move |c| {
            // One snapshot for both reads, as the append's transaction has.
            let tx = c.transaction()?;
            limit_hit(&tx, Some(&namespace), Some(&application), &limits)
        })
        .await
    }

    async fn query(&self, filter: &AuditFilter) -> Result<AuditPage, Error> {
        let filter = filter.clone();
        self.read(move |c| {
            let limit = filter.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
            let (sql, values) = query_sql(&filter, limit);
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
                r.get::<_, String>(0)
            })?;
            // Grown as records match, not sized for `limit`: an AuditRecord is
            // about a kilobyte, and the follower asks for a full page of each of
            // the operations it scans, which hold a handful of records.
            let mut items: Vec<AuditRecord> = Vec::new();
            for body in rows {
                items.push(serde_json::from_str(&body?)?);
            }
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|r| r.id.clone())
            } else {
                None
            };
            Ok(AuditPage { items, next })
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<AuditRecord>, Error> {
        let Ok(seq) = id.parse::<i64>() else {
            return Ok(None);
        };
        self.with(move |c| {
            let body: Option<String> = c
                .query_row("SELECT body FROM audit WHERE seq = ?1", [seq], |r| r.get(0))
                .optional()?;
            Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
        })
        .await
    }

    async fn read_from(&self, after: u64, limit: usize) -> Result<Vec<(u64, AuditRecord)>, Error> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, body FROM audit WHERE seq > ?1 ORDER BY seq ASC LIMIT ?2",
            )?;
            let mut rows = stmt.query(params![after, limit])?;
            let mut records = Vec::new();
            while let Some(row) = rows.next()? {
                let seq: i64 = row.get(0)?;
                let body: String = row.get(1)?;
                let seq = u64::try_from(seq).unwrap_or_default();
                records.push((seq, readable(seq, &body)));
            }
            Ok(records)
        })
        .await
    }

    async fn head(&self) -> Result<Option<AuditRecord>, Error> {
        self.with(|c| {
            let row: Option<(i64, String)> = c
                .query_row(
                    "SELECT seq, body FROM audit ORDER BY seq DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            Ok(row.map(|(seq, body)| readable(u64::try_from(seq).unwrap_or_default(), &body)))
        })
        .await
    }

    async fn append_after(
        &self,
        record: AuditRecord,
        head: Option<&AuditRecord>,
    ) -> Result<Option<AuditRecord>, Error> {
        let expected = head.map(|h| (h.id.clone(), h.hash.clone()));
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current: Option<(i64, String)> = tx
                .query_row(
                    "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if current.map(|(seq, hash)| (seq.to_string(), hash)) != expected {
                return Ok(None);
            }
            let record = append_in(&tx, record)?;
            tx.commit()?;
            Ok(Some(record))
        })
        .await
    }
}

fn unix_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[async_trait]
impl OperationLeases for SqliteStore {
    async fn open_operations(&self, limit: usize) -> Result<Vec<String>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |c| {
            let mut stmt =
                c.prepare("SELECT operation_id FROM open_operations ORDER BY seq LIMIT ?1")?;
            let ids = stmt
                .query_map([limit], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(ids)
        })
        .await
    }

    async fn lease_operation(
        &self,
        operation_id: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, Error> {
        let (op, holder) = (operation_id.to_owned(), holder.to_owned());
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.with(move |c| {
            let now = unix_ms();
            // Taken when free, expired, or already this holder's.
            let changed = c.execute(
                "INSERT INTO operation_leases (operation_id, holder, until_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (operation_id) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
                 WHERE operation_leases.holder = excluded.holder OR operation_leases.until_ms < ?4",
                params![op, holder, now.saturating_add(ttl), now],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn release_operation(&self, operation_id: &str, holder: &str) -> Result<(), Error> {
        let (op, holder) = (operation_id.to_owned(), holder.to_owned());
        self.with(move |c| {
            c.execute(
                "DELETE FROM operation_leases WHERE operation_id = ?1 AND holder = ?2",
                params![op, holder],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite's plan for `filter` walks.
    fn plan(filter: &AuditFilter) -> String {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let (sql, values) = query_sql(filter, 10);
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(values), |r| {
                r.get::<_, String>(3)
            })
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    }

    #[test]
    fn audit_queries_walk_the_index_that_fits() {
        let since = Some(jiff::Timestamp::now());
        let cases = [
            (
                "a rare event since a day ago",
                AuditFilter {
                    event: Some(AuditEvent::Rollout),
                    since,
                    ..Default::default()
                },
                "audit_by_event",
            ),
            (
                "ADMISSION is the table's bulk",
                AuditFilter {
                    event: Some(AuditEvent::Admission),
                    since,
                    ..Default::default()
                },
                "SCAN audit",
            ),
            (
                "operation and event",
                AuditFilter {
                    operation_id: Some("op-1".into()),
                    event: Some(AuditEvent::Rollout),
                    ..Default::default()
                },
                "audit_by_operation",
            ),
            (
                "namespace and event",
                AuditFilter {
                    namespace: Some("production".into()),
                    event: Some(AuditEvent::Rollout),
                    ..Default::default()
                },
                "audit_by_namespace",
            ),
            (
                "application and event",
                AuditFilter {
                    namespace: Some("production".into()),
                    application: Some("web".into()),
                    event: Some(AuditEvent::Rollout),
                    since,
                    ..Default::default()
                },
                "audit_by_application",
            ),
        ];
        for (name, filter, want) in cases {
            let plan = plan(&filter);
            assert!(plan.contains(want), "{name}: {plan}");
        }
    }
}
