//! One contract for every store backend. Each behaviour is an async fn over
//! the trait objects ([`Stores`]) of a [`Backend`], run against SQLite in a
//! temporary directory (`on_sqlite::…`) and against a real `redis-server`
//! that the test starts on a unix socket (`on_redis::…`), a Redis Cluster
//! (`on_redis_cluster::…`) and a Sentinel-managed primary
//! (`on_redis_sentinel::…`). Faults that only a
//! network store has (Redis killed, paused, password) are in `redis_faults`.
//!
//! [`RedisServer`] is the harness other tests may reuse: a throw-away
//! `redis-server` with AOF on, restartable on the same socket and data.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rollgate::audit::{AuditDecision, AuditEvent, AuditFilter, AuditRecord, GENESIS_HASH};
use rollgate::grants::{GrantFilter, StoredGrant};
use rollgate::store::StoreConfig;
use rollgate::store::sqlite::SqliteStore;
use rollgate::store::{RedisOptions, Stores};
use rollgate::tickets::{NewTicket, Ticket, TicketApproval, TicketFilter, TicketStatus};
use tempfile::TempDir;

use crate::redis_topologies::{RedisCluster, RedisSentinel};

// === harness ===

/// A `redis-server` of its own: unix socket only (no TCP port, so nothing
/// races for one), AOF on, no RDB snapshots. Killed on drop.
pub struct RedisServer {
    dir: TempDir,
    child: Option<Child>,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server; `extra` are more `redis-server` arguments
    /// (e.g. `--requirepass`). Panics, never skips, when `redis-server` is
    /// missing: `scripts/test` installs it.
    pub fn start(extra: &[&str]) -> Self {
        let mut server = Self {
            dir: tempfile::tempdir().unwrap(),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.launch();
        server
    }

    /// The socket's path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// `redis+unix://` URL of the server.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))
            .unwrap();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly", "yes"])
            // As the README asks of Redis before 7.2 (no WAITAOF): a write is on disk
            // before it is acknowledged, so a SIGKILL right after loses nothing.
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): the Redis half of the store contract needs it on PATH \
                     (scripts/test installs it: apt-get install redis-server)"
                )
            });
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until the server answers on its socket (`-NOAUTH` counts).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = UnixStream::connect(self.socket()) {
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).unwrap_or(0) > 0 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        panic!(
            "redis-server did not come up on {}:\n{log}",
            self.socket().display()
        );
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new server on the same socket and data directory (it
    /// reloads the AOF).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused server must be resumed to die of SIGKILL promptly.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
        }
        self.kill();
    }
}

/// A database the contract runs against; [`Backend::open`] opens one more
/// store instance on it (for Redis: one more replica).
pub enum Backend {
    Sqlite(TempDir),
    Redis(RedisServer),
    Cluster(RedisCluster),
    Sentinel(RedisSentinel),
}

impl Backend {
    pub(crate) fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().unwrap())
    }

    pub(crate) fn redis() -> Self {
        Self::Redis(RedisServer::start(&[]))
    }

    pub(crate) async fn redis_cluster() -> Self {
        Self::Cluster(
            tokio::task::spawn_blocking(RedisCluster::start)
                .await
                .unwrap(),
        )
    }

    pub(crate) async fn redis_sentinel() -> Self {
        let set_up = tokio::task::spawn_blocking(|| RedisSentinel::start(false));
        Self::Sentinel(set_up.await.unwrap())
    }

    fn config(&self) -> StoreConfig {
        match self {
            Self::Sqlite(dir) => StoreConfig::Sqlite(dir.path().join("rollgate.db")),
            Self::Redis(server) => StoreConfig::Redis(server.url()),
            Self::Cluster(cluster) => StoreConfig::Redis(cluster.url()),
            Self::Sentinel(set_up) => StoreConfig::Redis(set_up.url()),
        }
    }

    /// A plain URL of the Redis node holding rollgate's keys.
    fn redis_data_url(&self) -> Option<String> {
        match self {
            Self::Sqlite(_) => None,
            Self::Redis(server) => Some(server.url()),
            Self::Cluster(cluster) => Some(cluster.data_url()),
            Self::Sentinel(set_up) => Some(set_up.data_url()),
        }
    }

    pub(crate) async fn open(&self) -> Stores {
        rollgate::store::open(&self.config()).await.unwrap()
    }

    /// Changes the `username` of audit record `id` behind the store's back:
    /// SQL on the table, or a rewrite of the Redis stream with raw commands.
    async fn tamper_audit_record_3(&self) {
        match self {
            Self::Sqlite(dir) => {
                let raw = SqliteStore::open(&dir.path().join("rollgate.db"))
                    .await
                    .unwrap();
                let changed = raw
                    .execute_raw(
                        "UPDATE audit SET body = json_set(body, '$.username', 'mallory') WHERE seq = 3",
                    )
                    .await
                    .unwrap();
                assert_eq!(changed, 1);
            }
            redis => {
                let url = redis.redis_data_url().unwrap();
                let client = redis::Client::open(url).unwrap();
                let mut conn = client.get_multiplexed_async_connection().await.unwrap();
                let key = "{rollgate}:audit";
                let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
                    .arg(key)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let _: () = redis::cmd("DEL")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                for (id, mut fields) in entries {
                    if id == "3-0" {
                        let at = fields.iter().position(|f| f == "record").unwrap() + 1;
                        let mut record: serde_json::Value =
                            serde_json::from_str(&fields[at]).unwrap();
                        record["username"] = "mallory".into();
                        fields[at] = record.to_string();
                    }
                    let _: String = redis::cmd("XADD")
                        .arg(key)
                        .arg(&id)
                        .arg(&fields)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                }
            }
        }
    }
}

/// Runs each behaviour against every backend: `on_sqlite::NAME`, `on_redis::NAME`,
/// and Redis as a Cluster and behind Sentinel (`on_redis_cluster`, `on_redis_sentinel`).
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&super::Backend::sqlite()).await
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&super::Backend::redis()).await
                }
            )*
        }
        mod on_redis_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&super::Backend::redis_cluster().await).await
                }
            )*
        }
        mod on_redis_sentinel {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&super::Backend::redis_sentinel().await).await
                }
            )*
        }
    };
}

pub(crate) use contract;

contract!(
    tickets_get_sequential_ids_and_list_newest_first_with_each_filter,
    a_stale_revision_is_refused,
    racing_updates_on_two_instances_have_exactly_one_winner_per_revision,
    racing_read_modify_writes_on_two_instances_each_count_once,
    find_grants_returns_every_live_grant_latest_expiring_first,
    list_grants_returns_live_grants_latest_expiring_first,
    revoking_a_grant_removes_it_everywhere_at_once,
    each_expired_grant_is_taken_once_across_instances,
    admission_limits_hold_across_instances,
    audit_appends_are_chained_and_verify,
    audit_query_filters_pages_and_cursor,
    audit_query_by_operation_finds_every_record_of_it,
    concurrent_appends_from_two_instances_keep_one_chain,
    concurrent_appends_from_one_instance_share_round_trips,
    appends_given_up_by_their_callers_leave_the_others_answered,
    tampering_with_a_stored_record_names_the_first_bad_id,
);

mod checkpoints;
mod indexes;
mod limit_checks;

// === builders ===

fn mk_ticket(id: u64, namespace: &str, application: &str, requester: &str) -> Ticket {
    let new = NewTicket {
        namespace: namespace.into(),
        application: application.into(),
        reason: "hotfix".into(),
        action: Default::default(),
        images: Vec::new(),
        max_uses: None,
    };
    Ticket::file(id, new, requester, Timestamp::now())
}

/// `ticket` changed by `change`, at the next revision.
fn next(ticket: &Ticket, change: impl FnOnce(&mut Ticket)) -> Ticket {
    let mut next = ticket.clone();
    change(&mut next);
    next.revision = ticket.revision + 1;
    next
}

async fn file(stores: &Stores, namespace: &str, application: &str, requester: &str) -> Ticket {
    let (ns, app, who) = (
        namespace.to_owned(),
        application.to_owned(),
        requester.to_owned(),
    );
    stores
        .tickets
        .create_ticket(Box::new(move |id| mk_ticket(id, &ns, &app, &who)))
        .await
        .unwrap()
}

fn mk_grant(
    jti: &str,
    user: &str,
    namespace: &str,
    application: &str,
    expires_at: i64,
) -> StoredGrant {
    StoredGrant {
        jti: jti.into(),
        user: user.into(),
        namespace: namespace.into(),
        application: application.into(),
        ticket_id: "1".into(),
        ticket_number: "RG-000001".into(),
        expires_at,
        token: format!("token-of-{jti}"),
    }
}

fn ids(tickets: &[Ticket]) -> Vec<&str> {
    tickets.iter().map(|t| t.id.as_str()).collect()
}

fn jtis(grants: &[StoredGrant]) -> Vec<&str> {
    grants.iter().map(|g| g.jti.as_str()).collect()
}

fn record_ids(records: &[AuditRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

fn now() -> i64 {
    Timestamp::now().as_second()
}

// === tickets ===

async fn tickets_get_sequential_ids_and_list_newest_first_with_each_filter(b: &Backend) {
    let s = b.open().await;
    let filed = [
        file(&s, "production", "web", "alice").await,
        file(&s, "production", "api", "bob").await,
        file(&s, "staging", "web", "alice").await,
        file(&s, "production", "web", "carol").await,
    ];
    assert_eq!(ids(&filed), ["1", "2", "3", "4"], "ids are sequential");
    assert_eq!(filed[1].number, "RG-000002");

    let approved = next(&filed[1], |t| t.status = TicketStatus::Approved);
    assert!(s.tickets.update_ticket(&approved, 0).await.unwrap());

    let cases = [
        (
            "no filter",
            TicketFilter::default(),
            vec!["4", "3", "2", "1"],
        ),
        (
            "namespace",
            TicketFilter {
                namespace: Some("production".into()),
                ..Default::default()
            },
            vec!["4", "2", "1"],
        ),
        (
            "application",
            TicketFilter {
                application: Some("web".into()),
                ..Default::default()
            },
            vec!["4", "3", "1"],
        ),
        (
            "requester",
            TicketFilter {
                requester: Some("alice".into()),
                ..Default::default()
            },
            vec!["3", "1"],
        ),
        (
            "status PENDING",
            TicketFilter {
                status: Some(TicketStatus::Pending),
                ..Default::default()
            },
            vec!["4", "3", "1"],
        ),
        (
            "status APPROVED",
            TicketFilter {
                status: Some(TicketStatus::Approved),
                ..Default::default()
            },
            vec!["2"],
        ),
        (
            "status REJECTED",
            TicketFilter {
                status: Some(TicketStatus::Rejected),
                ..Default::default()
            },
            vec![],
        ),
        (
            "namespace and application and status",
            TicketFilter {
                namespace: Some("production".into()),
                application: Some("web".into()),
                status: Some(TicketStatus::Pending),
                ..Default::default()
            },
            vec!["4", "1"],
        ),
    ];
    for (name, filter, want) in cases {
        let got = s.tickets.list_tickets(&filter).await.unwrap();
        assert_eq!(ids(&got), want, "{name}");
    }

    assert_eq!(
        s.tickets.get_ticket("3").await.unwrap(),
        Some(filed[2].clone())
    );
    assert_eq!(s.tickets.get_ticket("2").await.unwrap(), Some(approved));
    for missing in ["99", "0", "x", "", "seq"] {
        assert_eq!(
            s.tickets.get_ticket(missing).await.unwrap(),
            None,
            "{missing:?}"
        );
    }

    // Another instance continues the same sequence.
    let other = b.open().await;
    assert_eq!(file(&other, "production", "web", "dave").await.id, "5");
}

async fn a_stale_revision_is_refused(b: &Backend) {
    let s = b.open().await;
    let ticket = file(&s, "production", "web", "alice").await;
    assert_eq!(ticket.revision, 0, "a new ticket is at revision 0");
    let partly = next(&ticket, |t| {
        t.approvals.push(TicketApproval {
            by: "bob".into(),
            at: Timestamp::now(),
            comment: None,
        })
    });
    let approved = next(&ticket, |t| {
        t.status = TicketStatus::Approved;
        t.decided_by = Some("erin".into());
    });

    assert!(s.tickets.update_ticket(&partly, 0).await.unwrap());
    assert!(
        !s.tickets.update_ticket(&approved, 0).await.unwrap(),
        "a write based on revision 0 is refused once revision 1 is stored"
    );
    assert_eq!(
        s.tickets.get_ticket(&ticket.id).await.unwrap(),
        Some(partly.clone())
    );

    // Based on the revision it really has, the change is stored, and the
    // status indexes follow the new status.
    let approved = next(&partly, |t| t.status = TicketStatus::Approved);
    assert!(s.tickets.update_ticket(&approved, 1).await.unwrap());
    assert_eq!(
        s.tickets.get_ticket(&ticket.id).await.unwrap(),
        Some(approved.clone())
    );
    let listed = |status| {
        let tickets = s.tickets.clone();
        async move {
            let filter = TicketFilter {
                status: Some(status),
                ..Default::default()
            };
            ids(&tickets.list_tickets(&filter).await.unwrap())
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(TicketStatus::Approved).await, [ticket.id.as_str()]);
    assert!(listed(TicketStatus::Pending).await.is_empty());

    // A write at the same status but a stale or future revision is refused.
    let noted = next(&approved, |t| t.comment = Some("noted".into()));
    for expected in [1, 0, 3] {
        assert!(
            !s.tickets.update_ticket(&noted, expected).await.unwrap(),
            "expected revision {expected} is refused at revision 2"
        );
    }
    assert!(s.tickets.update_ticket(&noted, 2).await.unwrap());
    assert_eq!(
        s.tickets
            .get_ticket(&ticket.id)
            .await
            .unwrap()
            .map(|t| t.revision),
        Some(3)
    );

    let ghost = mk_ticket(77, "production", "web", "alice");
    assert!(
        !s.tickets.update_ticket(&ghost, 0).await.unwrap(),
        "a ticket that does not exist is not updated"
    );
    assert_eq!(s.tickets.get_ticket("77").await.unwrap(), None);
}

async fn racing_updates_on_two_instances_have_exactly_one_winner_per_revision(b: &Backend) {
    let (a, c) = (b.open().await, b.open().await);
    for round in 0..10 {
        let ticket = file(&a, "production", "web", "alice").await;
        let mut stored = ticket.clone();
        // Three revisions in a row, each raced by both instances.
        for step in 0..3 {
            let mine = next(&stored, |t| t.comment = Some(format!("a{step}")));
            let theirs = next(&stored, |t| t.comment = Some(format!("c{step}")));
            let (ta, tc) = (a.tickets.clone(), c.tickets.clone());
            let (m, t, rev) = (mine.clone(), theirs.clone(), stored.revision);
            let first = tokio::spawn(async move { ta.update_ticket(&m, rev).await });
            let second = tokio::spawn(async move { tc.update_ticket(&t, rev).await });
            let (won_a, won_c) = (
                first.await.unwrap().unwrap(),
                second.await.unwrap().unwrap(),
            );
            assert!(
                won_a ^ won_c,
                "round {round} step {step}: exactly one write wins ({won_a}, {won_c})"
            );
            stored = c.tickets.get_ticket(&ticket.id).await.unwrap().unwrap();
            let winner = if won_a { mine } else { theirs };
            assert_eq!(
                stored, winner,
                "round {round} step {step}: the winner is stored"
            );
        }
        assert_eq!(stored.revision, 3, "round {round}");
    }
}

async fn racing_read_modify_writes_on_two_instances_each_count_once(b: &Backend) {
    let replicas = [b.open().await, b.open().await];
    let ticket = file(&replicas[0], "production", "web", "alice").await;
    let mut tasks = Vec::new();
    for (n, stores) in replicas.iter().enumerate() {
        for task in 0..2 {
            let (tickets, id) = (stores.tickets.clone(), ticket.id.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..5 {
                    // Read, add one approval, write at the revision read; on
                    // a lost race read again: no approval may be lost or doubled.
                    loop {
                        let read = tickets.get_ticket(&id).await.unwrap().unwrap();
                        let with = next(&read, |t| {
                            t.approvals.push(TicketApproval {
                                by: format!("replica{n}-task{task}-{i}"),
                                at: Timestamp::now(),
                                comment: None,
                            })
                        });
                        if tickets.update_ticket(&with, read.revision).await.unwrap() {
                            break;
                        }
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stored = replicas[1]
        .tickets
        .get_ticket(&ticket.id)
        .await
        .unwrap()
        .unwrap();
    let mut by = stored.approvers();
    by.sort();
    by.dedup();
    assert_eq!(
        (by.len(), stored.approvals.len(), stored.revision),
        (20, 20, 20),
        "every write counted exactly once"
    );
}

/// A database made before tickets had a revision: the store adds the column
/// on open, old tickets read as revision 0 and update from there.
#[tokio::test]
async fn an_old_sqlite_database_gains_the_revision_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollgate.db");
    let mut old = serde_json::to_value(mk_ticket(1, "production", "web", "alice")).unwrap();
    for key in ["approvals", "requiredApprovals", "revision"] {
        old.as_object_mut().unwrap().remove(key);
    }
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE tickets (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                status TEXT NOT NULL,
                namespace TEXT NOT NULL,
                application TEXT NOT NULL,
                requester TEXT NOT NULL,
                body TEXT NOT NULL
            );",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO tickets (id, status, namespace, application, requester, body)
             VALUES (1, 'PENDING', 'production', 'web', 'alice', ?1)",
            [old.to_string()],
        )
        .unwrap();
    }

    let stores = rollgate::store::open(&StoreConfig::Sqlite(path.clone()))
        .await
        .unwrap();
    // A second process opening the migrated file finds the column there.
    let again = rollgate::store::open(&StoreConfig::Sqlite(path.clone()))
        .await
        .unwrap();
    let ticket = stores.tickets.get_ticket("1").await.unwrap().unwrap();
    assert_eq!(
        (
            ticket.revision,
            ticket.required_approvals,
            ticket.approvals.len()
        ),
        (0, 1, 0),
        "an old ticket reads with the defaults"
    );
    let approved = next(&ticket, |t| t.status = TicketStatus::Approved);
    assert!(stores.tickets.update_ticket(&approved, 0).await.unwrap());
    assert!(!stores.tickets.update_ticket(&approved, 0).await.unwrap());
    assert_eq!(
        again
            .tickets
            .get_ticket("1")
            .await
            .unwrap()
            .map(|t| t.revision),
        Some(1)
    );
    assert_eq!(file(&stores, "staging", "api", "bob").await.id, "2");

    let conn = rusqlite::Connection::open(&path).unwrap();
    let revision: i64 = conn
        .query_row("SELECT revision FROM tickets WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(revision, 1, "the column holds the revision");
}

/// A ticket hash written before tickets had a revision has no `rev` field:
/// the compare-and-set treats it as revision 0.
#[tokio::test]
async fn a_redis_ticket_without_rev_is_at_revision_0() {
    let server = RedisServer::start(&[]);
    let stores = rollgate::store::open(&StoreConfig::Redis(server.url()))
        .await
        .unwrap();
    let ticket = file(&stores, "production", "web", "alice").await;
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{{rollgate}}:ticket:{}", ticket.id);
    let removed: i64 = redis::cmd("HDEL")
        .arg(&key)
        .arg("rev")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(removed, 1, "the store writes rev");

    let approved = next(&ticket, |t| t.status = TicketStatus::Approved);
    assert!(!stores.tickets.update_ticket(&approved, 1).await.unwrap());
    assert!(stores.tickets.update_ticket(&approved, 0).await.unwrap());
    let rev: String = redis::cmd("HGET")
        .arg(&key)
        .arg("rev")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(rev, "1");
    assert!(!stores.tickets.update_ticket(&approved, 0).await.unwrap());
}

// === grants ===

async fn find_grants_returns_every_live_grant_latest_expiring_first(b: &Backend) {
    let s = b.open().await;
    let t = now();
    for g in [
        mk_grant("g-early", "alice", "production", "web", t + 600),
        mk_grant("g-late", "alice", "production", "web", t + 1200),
        mk_grant("g-other-app", "alice", "production", "api", t + 3000),
        mk_grant("g-other-ns", "alice", "staging", "web", t + 3000),
        mk_grant("g-other-user", "bob", "production", "web", t + 3000),
        mk_grant("g-expired", "carol", "production", "web", t - 10),
    ] {
        s.grants.put_grant(&g).await.unwrap();
    }

    let find = |now: i64, user: &'static str| {
        let grants = s.grants.clone();
        async move {
            grants
                .find_grants(user, "production", "web", now)
                .await
                .unwrap()
                .into_iter()
                .map(|g| g.jti)
                .collect::<Vec<_>>()
        }
    };
    let found = s
        .grants
        .find_grants("alice", "production", "web", t)
        .await
        .unwrap();
    assert_eq!(
        found,
        vec![
            mk_grant("g-late", "alice", "production", "web", t + 1200),
            mk_grant("g-early", "alice", "production", "web", t + 600),
        ],
        "both of alice's grants, the latest-expiring first"
    );
    assert_eq!(found[0].token, "token-of-g-late", "the token is kept");
    assert_eq!(
        find(t + 900, "alice").await,
        vec!["g-late"],
        "g-early expired at its expiresAt"
    );
    assert!(
        find(t + 1200, "alice").await.is_empty(),
        "expired at expiresAt"
    );
    assert!(
        find(t, "carol").await.is_empty(),
        "an expired grant is not found"
    );
    assert!(
        find(t, "dave").await.is_empty(),
        "nobody else's grant is found"
    );

    assert_eq!(
        s.grants
            .grant_by_jti("g-early", t)
            .await
            .unwrap()
            .map(|g| g.jti),
        Some("g-early".into())
    );
    assert_eq!(
        s.grants.grant_by_jti("g-early", t + 600).await.unwrap(),
        None
    );
    assert_eq!(s.grants.grant_by_jti("g-expired", t).await.unwrap(), None);
    assert_eq!(s.grants.grant_by_jti("g-nope", t).await.unwrap(), None);

    // Another instance (replica) sees the same grants.
    let other = b.open().await;
    let seen = other
        .grants
        .find_grants("alice", "production", "web", t)
        .await
        .unwrap();
    assert_eq!(
        seen.iter().map(|g| g.jti.as_str()).collect::<Vec<_>>(),
        vec!["g-late", "g-early"]
    );
}

async fn each_expired_grant_is_taken_once_across_instances(b: &Backend) {
    let s = b.open().await;
    let replica = b.open().await;
    let t = now();
    for g in [
        mk_grant("g-expired", "alice", "production", "web", t - 5),
        mk_grant("g-revoked", "alice", "production", "web", t + 300),
        mk_grant("g-live", "alice", "production", "web", t + 600),
    ] {
        s.grants.put_grant(&g).await.unwrap();
    }
    assert!(s.grants.revoke_grant("g-revoked").await.unwrap());

    let (mine, theirs) = tokio::join!(
        s.grants.take_expired_grants(t),
        replica.grants.take_expired_grants(t)
    );
    let mut taken: Vec<StoredGrant> = mine.unwrap().into_iter().chain(theirs.unwrap()).collect();
    assert_eq!(taken.len(), 1, "one expiry, taken once: {taken:?}");
    let grant = taken.remove(0);
    assert_eq!(
        (
            grant.jti.as_str(),
            grant.user.as_str(),
            grant.application.as_str()
        ),
        ("g-expired", "alice", "web")
    );
    assert!(grant.token.is_empty(), "the sweep never hands out a token");
    assert!(
        s.grants.take_expired_grants(t).await.unwrap().is_empty(),
        "nothing left to take"
    );
    assert_eq!(
        s.grants
            .find_grants("alice", "production", "web", t)
            .await
            .unwrap()
            .len(),
        1,
        "the live grant is untouched"
    );
    let later = replica.grants.take_expired_grants(t + 601).await.unwrap();
    assert_eq!(
        later.iter().map(|g| g.jti.as_str()).collect::<Vec<_>>(),
        vec!["g-live"],
        "a revoked grant never counts as expired"
    );
}

async fn admission_limits_hold_across_instances(b: &Backend) {
    use rollgate::audit::{AdmissionLimits, GrantUses, LimitHit, RateCheck};
    let s = b.open().await;
    let replica = b.open().await;
    let t = now();

    // A single-use grant: of two racing admissions exactly one is appended.
    let single = AdmissionLimits {
        grant_uses: Some(GrantUses {
            jti: "g-once".into(),
            max: 1,
            expires_at: t + 600,
        }),
        rate: None,
    };
    let (one, two) = tokio::join!(
        s.audit
            .append_admission(mk_admission("web", Timestamp::now()), &single),
        replica
            .audit
            .append_admission(mk_admission("web", Timestamp::now()), &single),
    );
    let outcomes = [one.unwrap(), two.unwrap()];
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&Err(LimitHit::UsedUp { max: 1 })),
        "{outcomes:?}"
    );

    // Rate: 2 per hour for `api`; the third is refused until the first leaves the window.
    let rate = AdmissionLimits {
        grant_uses: None,
        rate: Some(RateCheck {
            limit: 2,
            window_secs: 3600,
            now: t,
        }),
    };
    let first = s
        .audit
        .append_admission(mk_admission("api", Timestamp::now()), &rate)
        .await
        .unwrap()
        .unwrap();
    replica
        .audit
        .append_admission(mk_admission("api", Timestamp::now()), &rate)
        .await
        .unwrap()
        .unwrap();
    let third = s
        .audit
        .append_admission(mk_admission("api", Timestamp::now()), &rate)
        .await
        .unwrap();
    let first_at: Timestamp = first.timestamp.parse().unwrap();
    match third {
        Err(LimitHit::RateLimited {
            limit: 2,
            window_secs: 3600,
            next_at,
        }) => {
            assert!(
                (next_at - (first_at.as_second() + 3600)).abs() <= 1,
                "next allowed when the first leaves: {next_at}"
            );
        }
        other => panic!("the third admission must be rate limited: {other:?}"),
    }
    let other_app = s
        .audit
        .append_admission(mk_admission("web", Timestamp::now()), &rate)
        .await
        .unwrap();
    assert!(
        other_app.is_ok(),
        "limits are per application: {other_app:?}"
    );
    let later = RateCheck {
        now: t + 3601,
        ..rate.rate.unwrap()
    };
    let after_window = s
        .audit
        .append_admission(
            mk_admission("api", Timestamp::now()),
            &AdmissionLimits {
                grant_uses: None,
                rate: Some(later),
            },
        )
        .await
        .unwrap();
    assert!(after_window.is_ok(), "{after_window:?}");
    assert!(
        s.audit.verify().await.unwrap().ok,
        "refusals append nothing; the chain stays whole"
    );
}

async fn list_grants_returns_live_grants_latest_expiring_first(b: &Backend) {
    let s = b.open().await;
    let t = now();
    for g in [
        mk_grant("a1", "alice", "production", "web", t + 100),
        mk_grant("a2", "alice", "staging", "web", t + 300),
        mk_grant("b1", "bob", "production", "api", t + 200),
        mk_grant("old", "bob", "production", "api", t - 5),
    ] {
        s.grants.put_grant(&g).await.unwrap();
    }
    let cases = [
        ("all", GrantFilter::default(), t, vec!["a2", "b1", "a1"]),
        (
            "namespace",
            GrantFilter {
                namespace: Some("production".into()),
                ..Default::default()
            },
            t,
            vec!["b1", "a1"],
        ),
        (
            "user",
            GrantFilter {
                user: Some("alice".into()),
                ..Default::default()
            },
            t,
            vec!["a2", "a1"],
        ),
        (
            "namespace and user",
            GrantFilter {
                namespace: Some("production".into()),
                user: Some("alice".into()),
            },
            t,
            vec!["a1"],
        ),
        (
            "later, a1 has expired",
            GrantFilter::default(),
            t + 150,
            vec!["a2", "b1"],
        ),
    ];
    for (name, filter, at, want) in cases {
        let got = s.grants.list_grants(&filter, at).await.unwrap();
        assert_eq!(jtis(&got), want, "{name}");
    }
}

async fn revoking_a_grant_removes_it_everywhere_at_once(b: &Backend) {
    let (s, replica) = (b.open().await, b.open().await);
    let t = now();
    s.grants
        .put_grant(&mk_grant("keep", "alice", "production", "web", t + 600))
        .await
        .unwrap();
    s.grants
        .put_grant(&mk_grant("drop", "alice", "production", "web", t + 1200))
        .await
        .unwrap();
    assert_eq!(
        replica
            .grants
            .find_grants("alice", "production", "web", t)
            .await
            .unwrap()
            .into_iter()
            .next()
            .map(|g| g.jti),
        Some("drop".into())
    );

    assert!(s.grants.revoke_grant("drop").await.unwrap(), "revoked");

    for (name, stores) in [("same instance", &s), ("replica", &replica)] {
        let found = stores
            .grants
            .find_grants("alice", "production", "web", t)
            .await
            .unwrap();
        assert_eq!(
            found.into_iter().map(|g| g.jti).collect::<Vec<_>>(),
            vec!["keep".to_string()],
            "{name}: find"
        );
        assert_eq!(
            stores.grants.grant_by_jti("drop", t).await.unwrap(),
            None,
            "{name}: by jti"
        );
        let listed = stores
            .grants
            .list_grants(&GrantFilter::default(), t)
            .await
            .unwrap();
        assert_eq!(jtis(&listed), ["keep"], "{name}: list");
        let by_user = GrantFilter {
            user: Some("alice".into()),
            ..Default::default()
        };
        let listed = stores.grants.list_grants(&by_user, t).await.unwrap();
        assert_eq!(jtis(&listed), ["keep"], "{name}: list by user");
        let by_ns = GrantFilter {
            namespace: Some("production".into()),
            ..Default::default()
        };
        let listed = stores.grants.list_grants(&by_ns, t).await.unwrap();
        assert_eq!(jtis(&listed), ["keep"], "{name}: list by namespace");
    }
    assert!(
        !s.grants.revoke_grant("drop").await.unwrap(),
        "a second revocation finds nothing"
    );
    assert!(!s.grants.revoke_grant("never-was").await.unwrap());

    assert!(replica.grants.revoke_grant("keep").await.unwrap());
    assert_eq!(
        s.grants
            .find_grants("alice", "production", "web", t)
            .await
            .unwrap(),
        vec![]
    );
}

// === audit ===

fn mk_admission(application: &str, at: Timestamp) -> AuditRecord {
    let mut r = AuditRecord::new(AuditEvent::Admission, at);
    r.namespace = Some("production".into());
    r.application_name = Some(application.into());
    r.decision = Some(AuditDecision::Allowed);
    r
}

fn mk_record(i: i64, base: Timestamp) -> AuditRecord {
    let at = base + jiff::SignedDuration::from_secs(i);
    let event = if i % 3 == 0 {
        AuditEvent::TicketCreated
    } else {
        AuditEvent::Admission
    };
    let mut r = AuditRecord::new(event, at);
    r.namespace = Some(if i % 2 == 0 { "production" } else { "staging" }.into());
    r.application_name = Some("web".into());
    r.username = Some(if i <= 6 { "alice" } else { "bob" }.into());
    if event == AuditEvent::Admission {
        r.decision = Some(if i % 4 == 1 {
            AuditDecision::Denied
        } else {
            AuditDecision::Allowed
        });
    }
    r
}

async fn audit_appends_are_chained_and_verify(b: &Backend) {
    let s = b.open().await;
    let empty = s.audit.verify().await.unwrap();
    assert!(
        empty.ok && empty.records == 0 && empty.head == GENESIS_HASH,
        "{empty:?}"
    );

    let base = Timestamp::now();
    let mut stored = Vec::new();
    for i in 1..=5 {
        stored.push(s.audit.append(mk_record(i, base)).await.unwrap());
    }
    assert_eq!(record_ids(&stored), ["1", "2", "3", "4", "5"]);
    assert_eq!(stored[0].prev_hash, GENESIS_HASH);
    for pair in stored.windows(2) {
        assert_eq!(
            pair[1].prev_hash, pair[0].hash,
            "record {} links to {}",
            pair[1].id, pair[0].id
        );
    }
    let report = s.audit.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.records, 5);
    assert_eq!(report.head, stored[4].hash);
    assert_eq!(report.first_bad_id, None);

    assert_eq!(s.audit.get("3").await.unwrap(), Some(stored[2].clone()));
    for missing in ["99", "0", "x", ""] {
        assert_eq!(s.audit.get(missing).await.unwrap(), None, "{missing:?}");
    }

    // A new instance continues the chain from the stored head.
    let other = b.open().await;
    let sixth = other.audit.append(mk_record(6, base)).await.unwrap();
    assert_eq!(
        (sixth.id.as_str(), sixth.prev_hash.as_str()),
        ("6", stored[4].hash.as_str())
    );
    // And the first instance, whose cached head is now stale, relinks.
    let seventh = s.audit.append(mk_record(7, base)).await.unwrap();
    assert_eq!(
        (seventh.id.as_str(), seventh.prev_hash.as_str()),
        ("7", sixth.hash.as_str())
    );
    assert!(s.audit.verify().await.unwrap().ok);
}

async fn audit_query_filters_pages_and_cursor(b: &Backend) {
    let s = b.open().await;
    let base: Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
    for i in 1..=12 {
        s.audit.append(mk_record(i, base)).await.unwrap();
    }
    let at = |secs: i64| base + jiff::SignedDuration::from_secs(secs);
    let cases: Vec<(&str, AuditFilter, Vec<&str>)> = vec![
        (
            "no filter",
            AuditFilter::default(),
            vec![
                "12", "11", "10", "9", "8", "7", "6", "5", "4", "3", "2", "1",
            ],
        ),
        (
            "namespace",
            AuditFilter {
                namespace: Some("staging".into()),
                ..Default::default()
            },
            vec!["11", "9", "7", "5", "3", "1"],
        ),
        (
            "user",
            AuditFilter {
                user: Some("alice".into()),
                ..Default::default()
            },
            vec!["6", "5", "4", "3", "2", "1"],
        ),
        (
            "event",
            AuditFilter {
                event: Some(AuditEvent::TicketCreated),
                ..Default::default()
            },
            vec!["12", "9", "6", "3"],
        ),
        (
            "decision",
            AuditFilter {
                decision: Some(AuditDecision::Denied),
                ..Default::default()
            },
            vec!["5", "1"],
        ),
        (
            "application",
            AuditFilter {
                application: Some("api".into()),
                ..Default::default()
            },
            vec![],
        ),
        (
            "since (inclusive) and until (exclusive)",
            AuditFilter {
                since: Some(at(4)),
                until: Some(at(7)),
                ..Default::default()
            },
            vec!["6", "5", "4"],
        ),
        (
            "after",
            AuditFilter {
                after: Some("4".into()),
                ..Default::default()
            },
            vec!["3", "2", "1"],
        ),
        (
            "namespace, user and after",
            AuditFilter {
                namespace: Some("production".into()),
                user: Some("bob".into()),
                after: Some("12".into()),
                ..Default::default()
            },
            vec!["10", "8"],
        ),
    ];
    for (name, filter, want) in cases {
        let page = s.audit.query(&filter).await.unwrap();
        assert_eq!(record_ids(&page.items), want, "{name}");
        assert_eq!(page.next, None, "{name}: one page holds it all");
    }

    // Paging: limit + next cursor, until next is null.
    let mut filter = AuditFilter {
        limit: Some(5),
        ..Default::default()
    };
    let mut pages = Vec::new();
    loop {
        let page = s.audit.query(&filter).await.unwrap();
        pages.push((record_ids(&page.items).join(","), page.next.clone()));
        match page.next {
            Some(next) => filter.after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        pages,
        [
            ("12,11,10,9,8".to_owned(), Some("8".to_owned())),
            ("7,6,5,4,3".to_owned(), Some("3".to_owned())),
            ("2,1".to_owned(), None),
        ]
    );

    // Filtered paging: the cursor is the last item returned.
    let filter = AuditFilter {
        namespace: Some("production".into()),
        limit: Some(2),
        ..Default::default()
    };
    let page = s.audit.query(&filter).await.unwrap();
    assert_eq!(
        (record_ids(&page.items), page.next.as_deref()),
        (vec!["12", "10"], Some("10"))
    );
    let filter = AuditFilter {
        after: page.next,
        ..filter
    };
    let page = s.audit.query(&filter).await.unwrap();
    assert_eq!(
        (record_ids(&page.items), page.next.as_deref()),
        (vec!["8", "6"], Some("6"))
    );

    // An exact fit has no next page.
    let filter = AuditFilter {
        user: Some("alice".into()),
        limit: Some(6),
        ..Default::default()
    };
    assert_eq!(s.audit.query(&filter).await.unwrap().next, None);
}

async fn audit_query_by_operation_finds_every_record_of_it(b: &Backend) {
    let s = b.open().await;
    let base = Timestamp::now();
    for i in 1..=9 {
        let mut r = mk_record(i, base);
        r.operation_id = match i {
            2 | 5 | 8 => Some("op-a".into()),
            3 => Some("op-b".into()),
            _ => None,
        };
        if i == 8 {
            r.event = Some(AuditEvent::Rollout);
            r.decision = None;
        }
        s.audit.append(r).await.unwrap();
    }
    let of = |op: &str| AuditFilter {
        operation_id: Some(op.into()),
        ..Default::default()
    };
    let page = s.audit.query(&of("op-a")).await.unwrap();
    assert_eq!(
        (record_ids(&page.items), page.next),
        (vec!["8", "5", "2"], None)
    );
    let latest_rollout = AuditFilter {
        event: Some(AuditEvent::Rollout),
        limit: Some(1),
        ..of("op-a")
    };
    assert_eq!(
        record_ids(&s.audit.query(&latest_rollout).await.unwrap().items),
        ["8"]
    );
    let paged = AuditFilter {
        limit: Some(2),
        ..of("op-a")
    };
    let page = s.audit.query(&paged).await.unwrap();
    assert_eq!(
        (record_ids(&page.items), page.next.as_deref()),
        (vec!["8", "5"], Some("5"))
    );
    let page = s
        .audit
        .query(&AuditFilter {
            after: page.next,
            ..paged
        })
        .await
        .unwrap();
    assert_eq!((record_ids(&page.items), page.next), (vec!["2"], None));
    assert!(
        s.audit
            .query(&of("op-none"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn concurrent_appends_from_two_instances_keep_one_chain(b: &Backend) {
    let replicas = [b.open().await, b.open().await];
    let base = Timestamp::now();
    let mut tasks = Vec::new();
    for (n, stores) in replicas.iter().enumerate() {
        for task in 0..4 {
            let audit = stores.audit.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..10 {
                    let mut r = mk_record(i, base);
                    r.reason = Some(format!("replica {n} task {task} record {i}"));
                    ids.push(audit.append(r).await.unwrap().id);
                }
                ids
            }));
        }
    }
    let mut ids: Vec<u64> = Vec::new();
    for task in tasks {
        ids.extend(
            task.await
                .unwrap()
                .iter()
                .map(|id| id.parse::<u64>().unwrap()),
        );
    }
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=80).collect::<Vec<_>>(),
        "every append got its own id"
    );
    for stores in &replicas {
        let report = stores.audit.verify().await.unwrap();
        assert!(report.ok, "one valid chain: {report:?}");
        assert_eq!(report.records, 80);
    }
}

/// The audit log of one more instance on `b`; on Redis also the store itself,
/// for its [`append_stats`](rollgate::store::redis::RedisStore::append_stats).
async fn open_audit(
    b: &Backend,
) -> (
    std::sync::Arc<dyn rollgate::audit::AuditLog>,
    Option<rollgate::store::redis::RedisStore>,
) {
    match b.config() {
        StoreConfig::Redis(url) => {
            let store = rollgate::store::redis::RedisStore::open(&url, &RedisOptions::default())
                .await
                .unwrap();
            (std::sync::Arc::new(store.clone()), Some(store))
        }
        StoreConfig::Sqlite(_) => (b.open().await.audit, None),
    }
}

/// The webhook under load: 200 appends at once from one instance, a quarter
/// of them admissions of a grant with `maxUses` 20. Each gets its own answer,
/// the grant admits exactly 20, the chain stays one, and on Redis the appends
/// share round trips (group commit) instead of paying one each.
async fn concurrent_appends_from_one_instance_share_round_trips(b: &Backend) {
    use rollgate::audit::{AdmissionLimits, GrantUses, LimitHit};
    let (audit, redis) = open_audit(b).await;
    let limits = AdmissionLimits {
        grant_uses: Some(GrantUses {
            jti: "g-twenty".into(),
            max: 20,
            expires_at: now() + 600,
        }),
        rate: None,
    };
    let base = Timestamp::now();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (audit, limits) = (audit.clone(), limits.clone());
            tokio::spawn(async move {
                if i % 4 == 0 {
                    let r = mk_admission("web", base);
                    (true, audit.append_admission(r, &limits).await.unwrap())
                } else {
                    (false, Ok(audit.append(mk_record(i, base)).await.unwrap()))
                }
            })
        })
        .collect();
    let mut ids = Vec::new();
    let (mut admitted, mut used_up) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            (limited, Ok(record)) => {
                admitted += usize::from(limited);
                ids.push(record.id.parse::<u64>().unwrap());
            }
            (_, Err(hit)) => {
                assert_eq!(hit, LimitHit::UsedUp { max: 20 });
                used_up += 1;
            }
        }
    }
    assert_eq!(
        (admitted, used_up),
        (20, 30),
        "the grant admits exactly maxUses"
    );
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=170).collect::<Vec<_>>(),
        "every append got its own id"
    );
    let report = audit.verify().await.unwrap();
    assert!(report.ok, "one valid chain: {report:?}");
    assert_eq!(report.records, 170);
    if let Some(store) = redis {
        let stats = store.append_stats();
        assert_eq!(stats.records, 170, "{stats:?}");
        assert!(
            stats.round_trips * 5 <= stats.records,
            "concurrent appends share round trips: {stats:?}"
        );
    }
}

/// Callers that give up (the webhook's timeout drops their future) while
/// their appends wait, or lead a batch, leave every other caller answered,
/// and the chain whole.
async fn appends_given_up_by_their_callers_leave_the_others_answered(b: &Backend) {
    let (audit, _) = open_audit(b).await;
    let base = Timestamp::now();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let audit = audit.clone();
            tokio::spawn(async move {
                let append = audit.append(mk_record(i, base));
                if i % 2 == 0 {
                    let _ =
                        tokio::time::timeout(Duration::from_micros(200 * (i as u64 % 7)), append)
                            .await;
                    None
                } else {
                    Some(append.await.unwrap().id)
                }
            })
        })
        .collect();
    let answered = tokio::time::timeout(Duration::from_secs(30), async {
        let mut answered = 0;
        for task in tasks {
            answered += usize::from(task.await.unwrap().is_some());
        }
        answered
    })
    .await
    .expect("no caller waits forever");
    assert_eq!(answered, 50);
    let report = audit.verify().await.unwrap();
    assert!(report.ok, "one valid chain: {report:?}");
    assert!(
        (50..=100).contains(&report.records),
        "the answered appends, and maybe some given up: {report:?}"
    );
}

async fn tampering_with_a_stored_record_names_the_first_bad_id(b: &Backend) {
    let s = b.open().await;
    let base = Timestamp::now();
    for i in 1..=5 {
        s.audit.append(mk_record(i, base)).await.unwrap();
    }
    b.tamper_audit_record_3().await;
    let tampered = s.audit.get("3").await.unwrap().unwrap();
    assert_eq!(
        tampered.username.as_deref(),
        Some("mallory"),
        "the edit reached the store"
    );
    let report = s.audit.verify().await.unwrap();
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.first_bad_id.as_deref(), Some("3"), "{report:?}");
    assert_eq!(report.records, 5);
}

// === Redis faults ===

mod redis_faults {
    use super::*;

    const BUDGET: Duration = Duration::from_millis(500);

    async fn open_with_budget(server: &RedisServer, password_file: Option<PathBuf>) -> Stores {
        let options = RedisOptions {
            password_file,
            timeout: BUDGET,
            ..RedisOptions::default()
        };
        rollgate::store::open_with(&StoreConfig::Redis(server.url()), &options)
            .await
            .unwrap()
    }

    /// Calls the store until it answers, for at most `within`.
    async fn until_it_answers(stores: &Stores, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let call = stores
                .grants
                .find_grants("alice", "production", "web", now());
            match tokio::time::timeout(Duration::from_secs(5), call).await {
                Ok(Ok(_)) => return start.elapsed(),
                _ if start.elapsed() > within => {
                    panic!("the store did not recover within {within:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Every kind of call fails (rather than hangs) within a bound.
    async fn assert_calls_fail_fast(s: &Stores, what: &str) {
        let bound = Duration::from_secs(3);
        let t = now();
        let started = Instant::now();
        let find =
            tokio::time::timeout(bound, s.grants.find_grants("alice", "production", "web", t))
                .await;
        assert!(
            matches!(find, Ok(Err(_))),
            "{what}: find_grants errs within {bound:?}: {find:?}"
        );
        let append =
            tokio::time::timeout(bound, s.audit.append(mk_record(1, Timestamp::now()))).await;
        assert!(
            matches!(append, Ok(Err(_))),
            "{what}: append errs within {bound:?}: {append:?}"
        );
        let list =
            tokio::time::timeout(bound, s.tickets.list_tickets(&TicketFilter::default())).await;
        assert!(
            matches!(list, Ok(Err(_))),
            "{what}: list_tickets errs within {bound:?}"
        );
        assert!(
            started.elapsed() < bound * 3,
            "{what}: took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_redis_fails_calls_fast_and_the_store_recovers_when_it_is_back() {
        let mut server = RedisServer::start(&[]);
        let s = open_with_budget(&server, None).await;
        let first = s
            .audit
            .append(mk_record(1, Timestamp::now()))
            .await
            .unwrap();
        s.grants
            .put_grant(&mk_grant("g", "alice", "production", "web", now() + 600))
            .await
            .unwrap();

        server.kill();
        assert_calls_fail_fast(&s, "redis killed").await;
        assert_calls_fail_fast(&s, "redis still down").await;

        // A new server on the same socket and data: the store reconnects by
        // itself (scripts are loaded again), and the data survived in the AOF.
        server.restart();
        until_it_answers(&s, Duration::from_secs(10)).await;
        let found = s
            .grants
            .find_grants("alice", "production", "web", now())
            .await
            .unwrap();
        assert_eq!(
            found.into_iter().map(|g| g.jti).collect::<Vec<_>>(),
            vec!["g".to_string()]
        );
        let second = s
            .audit
            .append(mk_record(2, Timestamp::now()))
            .await
            .unwrap();
        assert_eq!(
            (second.id.as_str(), second.prev_hash.as_str()),
            ("2", first.hash.as_str())
        );
        let report = s.audit.verify().await.unwrap();
        assert!(report.ok && report.records == 2, "{report:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_store_opens_while_redis_is_down_and_connects_once_it_is_up() {
        let mut server = RedisServer::start(&[]);
        server.kill();
        let s = open_with_budget(&server, None).await;
        assert_calls_fail_fast(&s, "redis not started yet").await;
        server.restart();
        until_it_answers(&s, Duration::from_secs(10)).await;
        let first = s
            .audit
            .append(mk_record(1, Timestamp::now()))
            .await
            .unwrap();
        assert_eq!(first.id, "1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_paused_redis_fails_calls_within_the_budget_and_they_resume_after() {
        let server = RedisServer::start(&[]);
        let s = open_with_budget(&server, None).await;
        s.audit
            .append(mk_record(1, Timestamp::now()))
            .await
            .unwrap();

        server.signal("STOP");
        assert_calls_fail_fast(&s, "redis paused").await;
        server.signal("CONT");

        until_it_answers(&s, Duration::from_secs(10)).await;
        let next = s
            .audit
            .append(mk_record(2, Timestamp::now()))
            .await
            .unwrap();
        let report = s.audit.verify().await.unwrap();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.head, next.hash, "{report:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_password_comes_from_its_file() {
        let server = RedisServer::start(&["--requirepass", "s3cret-pass"]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret-pass\n").unwrap();

        let s = open_with_budget(&server, Some(file)).await;
        assert!(
            s.tickets
                .list_tickets(&TicketFilter::default())
                .await
                .unwrap()
                .is_empty()
        );

        let without = open_with_budget(&server, None).await;
        let err = without
            .tickets
            .list_tickets(&TicketFilter::default())
            .await
            .unwrap_err();
        let chain = format!("{err:?}");
        assert!(!chain.contains("s3cret"), "{chain}");

        let missing = RedisOptions {
            password_file: Some(dir.path().join("nope")),
            timeout: BUDGET,
            ..RedisOptions::default()
        };
        let err = rollgate::store::open_with(&StoreConfig::Redis(server.url()), &missing)
            .await
            .err()
            .expect("an unreadable password file fails at start");
        assert!(err.to_string().contains("password file"), "{err}");
    }
}
