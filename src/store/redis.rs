//! The Redis store: tickets, grants and the audit chain shared by every
//! replica, through one reconnecting [`ConnectionManager`] per process.
//! Compound operations are Lua scripts (`scripts.rs`), so every
//! check-and-write is atomic on the server and costs one round trip. Start at
//! [`RedisStore::open`]; the three traits are implemented in `tickets.rs`,
//! `grants.rs` and `audit.rs`. Time budgets are the callers' (the webhook
//! wraps each call in `tokio::time::timeout`); the connection's own connect
//! and response timeouts only make sure nothing waits forever.
//!
//! # Key layout
//! Every key carries the hash tag `{rollgate}`, so in a Cluster they all share
//! one slot (the scripts touch several keys at once).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{rollgate}:ticket:seq` | string | last ticket id (`INCR`) |
//! | `{rollgate}:ticket:<id>` | hash | `status`, `rev` (revision, the compare-and-set key; absent: 0), `body` (the ticket JSON) |
//! | `{rollgate}:tickets` | zset | every ticket id, scored by id (newest first) |
//! | `{rollgate}:tickets:<STATUS>` | zset | ids of the tickets in that status |
//! | `{rollgate}:grant:<jti>` | string | the grant JSON, expiring at `expiresAt` (`EXAT`) |
//! | `{rollgate}:grants` | zset | every jti, scored by `expiresAt` |
//! | `{rollgate}:grants:ns:<namespace>` | zset | jtis of one namespace |
//! | `{rollgate}:grants:user:<user>` | zset | jtis of one user |
//! | `{rollgate}:grants:sub:<namespace>/<application>/<user>` | zset | jtis of one (user, namespace, application): the webhook's lookup |
//! | `{rollgate}:grants:expiring` | zset | unrevoked jtis by expiry, for the expiry sweep (never pruned on write) |
//! | `{rollgate}:grants:meta` | hash | jti → grant JSON without token, until the sweep takes it |
//! | `{rollgate}:audit` | stream | entry `<seq>-0` per record, fields `hash` and `record` (JSON) |
//! | `{rollgate}:audit:op:<operationId>` | zset | seqs of one operation's records |
//! | `{rollgate}:audit:ns:<namespace>` | zset | seqs of one namespace's records |
//! | `{rollgate}:audit:app:<namespace>/<application>` | zset | seqs of one application's records |
//! | `{rollgate}:audit:event:<EVENT>` | zset | seqs of one event's records, for every event but `ADMISSION` |
//! | `{rollgate}:audit:indexed:v2` | string | seq up to which every record is in the three indexes above |
//! | `{rollgate}:audit:turn` | string | replica whose append goes next (100 ms; fairness) |
//! | `{rollgate}:grant:uses:<jti>` | string | admitted changes of a grant with `maxUses`, expiring with it |
//! | `{rollgate}:rate:<namespace>/<application>` | zset | audit seqs of admitted changes scored by unix time, for the rate limit |
//! | `{rollgate}:ops:open` | zset | operation ids admitted and not yet closed by a final ROLLOUT record, scored by seq |
//! | `{rollgate}:ops:lease:<operationId>` | string | the replica following the operation, expiring with its lease |
//!
//! Grant indexes drop expired members on each write, and each index key
//! expires with its latest-expiring member, so nothing outlives its grant.
//!
//! # Round trips
//! - `find_grants` (the webhook's lookup): one script call.
//! - audit `append`: one compare-and-append script call, pipelined with
//!   `WAITAOF`. The head it links to is cached, so a replica pays a second
//!   round trip only when another replica appended since its last append
//!   (the refusal carries the new head; the first replica refused gets the
//!   next turn, so none starves). Concurrent appends of one process share
//!   it (group commit, `audit.rs`): those that queue while one is in flight
//!   go next together, up to 64 script calls in one pipeline (one round trip,
//!   one `WAITAOF` or fsync), each record linked to the one before it.
//! - `revoke_grant`: two (read the grant, then remove it from every index in
//!   one script, pipelined with `WAITAOF`).
//!
//! # Durability
//! At connect the store reads `INFO`: on Redis ≥ 7.2 with AOF on, every write
//! is pipelined with `WAITAOF 1 0 <ms>` and fails unless the local AOF fsync
//! confirmed it; on older servers durability is the server's `appendfsync`
//! (`always` is the setting to use). Without AOF a warning is logged.
//!
//! # Limits
//! Requires Redis ≥ 6.2 (`SET … EXAT`, exclusive stream ranges). `query`
//! reads newest first through the narrowest index the filter allows (the
//! operation's, the application's, the namespace's, the event's when the
//! filter names no namespace and an event other than `ADMISSION`, else the
//! whole stream) and filters the rest in memory, over at most [`MAX_SCAN`]
//! records per call; when the scan stops there, `next` is the last id
//! scanned, so paging goes on where it stopped (a page may then hold fewer
//! than `limit` items). `ADMISSION` records have no event index: they are
//! the bulk of the stream, so reading the stream is already the way to find
//! them, and their append stays as cheap as before. Records appended before
//! the indexes existed (or by an older rollgate) are indexed by the first
//! query that needs them.
//!
//! One server, Sentinel or Cluster: the URL chooses (`connection.rs`); in a
//! Cluster every key is in the slot of `{rollgate}`, so scripts that touch
//! several keys run on one node.

mod audit;
mod audit_query;
mod connection;
mod grants;
mod operations;
mod scripts;
mod tickets;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::Stream;
use redis::aio::ConnectionManagerConfig;
use redis::auth::{BasicAuth, StreamingCredentialsProvider};
use redis::{Cmd, FromRedisValue, RedisResult, Script, Value};
use tokio::sync::{Mutex, OnceCell};

use self::connection::{Connection, Settings};
pub use self::connection::{Topology, UrlError};
use crate::audit::AuditEvent;
use crate::audit::chain::GENESIS_HASH;
use crate::error::Error;

/// Most audit records one `query` call reads when filtering in memory.
pub const MAX_SCAN: usize = 10_000;
/// Records or tickets read per round trip when scanning.
const BATCH: usize = 500;
/// Most tickets a listing returns (as the SQLite store).
const MAX_TICKETS: usize = 1000;
/// Compare-and-append attempts before an append gives up.
const APPEND_ATTEMPTS: u32 = 64;
/// How often the password file is re-read for a rotated password.
const PASSWORD_RELOAD: Duration = Duration::from_secs(10);

const TICKET_SEQ: &str = "{rollgate}:ticket:seq";
const TICKET_PREFIX: &str = "{rollgate}:ticket:";
const TICKETS: &str = "{rollgate}:tickets";
const GRANT_PREFIX: &str = "{rollgate}:grant:";
const GRANTS: &str = "{rollgate}:grants";
/// Every unrevoked grant's jti scored by expiry, never pruned on write: the
/// expiry sweep takes each expired jti from here exactly once.
const GRANTS_EXPIRING: &str = "{rollgate}:grants:expiring";
/// jti → the grant's JSON without its token, for the expiry sweep (the body
/// itself is gone when the grant expires).
const GRANTS_META: &str = "{rollgate}:grants:meta";
const AUDIT: &str = "{rollgate}:audit";
const AUDIT_TURN: &str = "{rollgate}:audit:turn";
const AUDIT_OP_PREFIX: &str = "{rollgate}:audit:op:";
/// Seqs of one namespace's records.
const AUDIT_NS_PREFIX: &str = "{rollgate}:audit:ns:";
/// Seqs of one application's records: `<namespace>/<application>`.
const AUDIT_APP_PREFIX: &str = "{rollgate}:audit:app:";
/// Seqs of one event's records (`<EVENT>`, as the record spells it), for
/// every event but ADMISSION: see [`event_index`].
const AUDIT_EVENT_PREFIX: &str = "{rollgate}:audit:event:";
/// The highest seq up to which every record is in the namespace, application
/// and event indexes.
///
/// Not the `{rollgate}:audit:indexed` of older rollgates: that one promises
/// only the namespace and application indexes, so on a trail they wrote it
/// may stand at the head while no event is indexed. A new key starts at 0
/// there, and the first indexed query catches all three indexes up once
/// (adding a seq an index already holds changes nothing). One marker for
/// all three, rather than a second one for events, keeps the append at one
/// marker check, as before. Older rollgates still running next to this one
/// (a rolling upgrade) only move their own marker, so this one falls behind
/// and the next query catches up what they appended.
const AUDIT_INDEXED: &str = "{rollgate}:audit:indexed:v2";
/// Use counter of a grant with `maxUses`, expiring with the grant.
const USES_PREFIX: &str = "{rollgate}:grant:uses:";
/// Unix times of an application's admitted changes in the rate window.
const RATE_PREFIX: &str = "{rollgate}:rate:";
/// Operations admitted and not yet closed, scored by the seq that opened them.
const OPEN_OPERATIONS: &str = "{rollgate}:ops:open";
/// The replica following an operation, expiring with its lease.
const OPERATION_LEASE_PREFIX: &str = "{rollgate}:ops:lease:";

/// The index of `event`'s records, if it has one: every event but
/// ADMISSION, the bulk of the trail, which a stream scan finds as well.
fn event_index(event: AuditEvent) -> Option<String> {
    (event != AuditEvent::Admission).then(|| format!("{AUDIT_EVENT_PREFIX}{}", event.as_str()))
}

/// Settings of the Redis backend beyond its URL.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// File holding the password (a mounted Secret); re-read when it changes.
    /// Overrides a password in the URL.
    pub password_file: Option<PathBuf>,
    /// File holding the Sentinels' own password (`redis+sentinel://` only);
    /// read each time the primary is resolved.
    pub sentinel_password_file: Option<PathBuf>,
    /// Connect and response timeout of every command, so a dead or stalled
    /// Redis fails calls instead of hanging them; also bounds `WAITAOF`.
    pub timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            password_file: None,
            sentinel_password_file: None,
            timeout: Duration::from_secs(2),
        }
    }
}

/// How writes are made durable before they are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Redis ≥ 7.2 with AOF: pipeline `WAITAOF 1 0 <timeout_ms>`.
    WaitAof { timeout_ms: u64 },
    /// AOF on an older server: as durable as its `appendfsync`.
    AppendFsync,
    /// No AOF: a crash may lose acknowledged writes.
    None,
}

/// Reads the server version and AOF state out of `INFO`'s answer.
fn durability_of(info: &str, timeout: Duration) -> Durability {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let aof = field("aof_enabled") == Some("1");
    let version: Vec<u32> = field("redis_version")
        .unwrap_or("0")
        .split('.')
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    let at_least_7_2 = (
        version.first().copied().unwrap_or(0),
        version.get(1).copied().unwrap_or(0),
    ) >= (7, 2);
    match (aof, at_least_7_2) {
        (false, _) => Durability::None,
        (true, false) => Durability::AppendFsync,
        (true, true) => Durability::WaitAof {
            timeout_ms: u64::try_from(timeout.as_millis() * 3 / 4)
                .unwrap_or(u64::MAX)
                .max(1),
        },
    }
}

/// The audit head this process last saw.
#[derive(Debug, Clone)]
struct Head {
    seq: u64,
    hash: String,
}

impl Default for Head {
    fn default() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }
}

/// What this process's audit appends cost so far ([`RedisStore::append_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendStats {
    /// Records appended (stored in the stream).
    pub records: u64,
    /// Pipelines of compare-and-append calls sent: one round trip (and one
    /// fsync) each, whatever the number of records they carry.
    pub round_trips: u64,
}

#[derive(Debug, Default)]
struct AppendCounts {
    records: AtomicU64,
    round_trips: AtomicU64,
}

/// The Redis store. Cheap to clone; clones share the connection and the
/// cached audit head.
#[derive(Clone)]
pub struct RedisStore {
    conn: Connection,
    timeout: Duration,
    durability: Arc<OnceCell<Durability>>,
    /// Held by the leader of a batch of appends for the whole batch (and by
    /// `append_after`): this process's appends never race each other.
    head: Arc<Mutex<Head>>,
    /// Appends waiting for the next batch (`audit.rs`, `append_with`).
    queue: Arc<std::sync::Mutex<Vec<audit::Queued>>>,
    /// Counts behind [`RedisStore::append_stats`].
    append_counts: Arc<AppendCounts>,
    /// Names this instance in the audit append's turn key.
    replica: Arc<str>,
}

impl RedisStore {
    /// Connects to the Redis at `url`: one server (`redis://`, `rediss://`,
    /// `redis+unix://`), a Sentinel-managed primary (`redis+sentinel://`) or
    /// a Cluster (`redis+cluster://`); see `connection.rs`. A Redis that is
    /// down does not fail this call: the store connects on first use and
    /// reconnects by itself, and each call fails within about
    /// `options.timeout` until Redis answers. An unreadable password file or
    /// a malformed URL does fail it.
    pub async fn open(url: &str, options: &RedisOptions) -> Result<Self, Error> {
        let topology = Topology::parse(url)?;
        let mut manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            // One connection attempt per reconnect, no back-off between
            // attempts: calls wait for a reconnect in progress, so with
            // retries a Redis that refuses connections held every gated
            // review for the whole back-off (over a second) instead of
            // failing it at once.
            .set_number_of_retries(0)
            .set_max_delay(Duration::from_secs(1));
        let mut password_file = None;
        if let Some(path) = &options.password_file {
            read_password(path)
                .await
                .map_err(|source| Error::PasswordFile {
                    path: path.clone(),
                    source,
                })?;
            let username = match &topology {
                Topology::Single(url) => redis::Client::open(url.as_str())?
                    .get_connection_info()
                    .redis_settings()
                    .username()
                    .map(str::to_owned),
                Topology::Sentinel(s) => s.credentials.username.clone(),
                Topology::Cluster(c) => c.credentials.username.clone(),
            };
            let provider = PasswordFile {
                path: path.clone(),
                username: username.unwrap_or_else(|| "default".to_owned()),
            };
            manager = manager.set_credentials_provider(provider.clone());
            password_file = Some(provider);
        }
        let settings = Settings {
            timeout: options.timeout,
            manager,
            sentinel_password_file: options.sentinel_password_file.clone(),
        };
        let store = Self {
            conn: Connection::open(&topology, settings, password_file)?,
            timeout: options.timeout,
            durability: Arc::default(),
            head: Arc::default(),
            queue: Arc::default(),
            append_counts: Arc::default(),
            replica: crate::names::random_id().into(),
        };
        // Learn the server's durability now, so the first write does not pay
        // for it; if Redis is down, the first write learns it instead.
        if let Err(e) = store.durability().await {
            tracing::warn!(error = %crate::error::error_chain(&e), "redis is not reachable yet");
        }
        Ok(store)
    }

    /// What this process's audit appends cost so far, over every clone of
    /// this store: how well concurrent appends share round trips.
    pub fn append_stats(&self) -> AppendStats {
        AppendStats {
            records: self.append_counts.records.load(Ordering::Relaxed),
            round_trips: self.append_counts.round_trips.load(Ordering::Relaxed),
        }
    }

    async fn durability(&self) -> Result<Durability, Error> {
        let durability = self
            .durability
            .get_or_try_init(|| async {
                let info = self.conn.info().await?;
                let durability = durability_of(&info, self.timeout);
                match durability {
                    Durability::WaitAof { timeout_ms } => {
                        tracing::info!(timeout_ms, "redis writes wait for the AOF fsync (WAITAOF)")
                    }
                    Durability::AppendFsync => tracing::info!(
                        "redis before 7.2 has no WAITAOF: writes are as durable as its appendfsync setting (use appendfsync always)"
                    ),
                    Durability::None => tracing::warn!(
                        "redis has appendonly off: acknowledged audit records and revocations can be lost in a crash"
                    ),
                }
                Ok::<_, Error>(durability)
            })
            .await?;
        Ok(*durability)
    }

    /// Sends `pipe`, loading `script` and sending it again when the server
    /// does not know the script (a restarted or new Redis).
    async fn run(&self, pipe: &redis::Pipeline, script: &Script) -> Result<Vec<Value>, Error> {
        let mut conn = self.conn.clone();
        match pipe.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                script.load_async(&mut conn).await?;
                Ok(pipe.query_async(&mut conn).await?)
            }
            other => Ok(other?),
        }
    }

    /// Calls a script that only reads: one round trip.
    async fn read<T: FromRedisValue>(&self, script: &Script, cmd: Cmd) -> Result<T, Error> {
        let mut pipe = redis::pipe();
        pipe.add_command(cmd);
        let values = self.run(&pipe, script).await?;
        parse(values.into_iter().next().unwrap_or(Value::Nil))
    }

    /// Calls a script that writes, pipelined with `WAITAOF` when the server
    /// has it: still one round trip, and durable when it returns.
    async fn write<T: FromRedisValue>(&self, script: &Script, cmd: Cmd) -> Result<T, Error> {
        let durability = self.durability().await?;
        let mut pipe = redis::pipe();
        pipe.add_command(cmd);
        if let Durability::WaitAof { timeout_ms } = durability {
            pipe.cmd("WAITAOF").arg(1).arg(0).arg(timeout_ms);
        }
        let mut values = self.run(&pipe, script).await?.into_iter();
        let answer = values.next().unwrap_or(Value::Nil);
        if let Durability::WaitAof { timeout_ms } = durability {
            let acks: Vec<i64> = parse(values.next().unwrap_or(Value::Nil))?;
            if acks.first().is_none_or(|local| *local < 1) {
                return Err(Error::NotDurable(Duration::from_millis(timeout_ms)));
            }
        }
        parse(answer)
    }

    async fn command<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
        Ok(cmd.query_async(&mut self.conn.clone()).await?)
    }
}

fn parse<T: FromRedisValue>(value: Value) -> Result<T, Error> {
    redis::from_redis_value(value).map_err(|e| Error::Redis(e.into()))
}

/// `EVALSHA` of `script` over `keys`; arguments are added by the caller.
fn eval(script: &Script, keys: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}

// === password file ===

async fn read_password(path: &Path) -> std::io::Result<String> {
    let text = tokio::fs::read_to_string(path).await?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

/// Credentials from a password file: the current password when a
/// connection opens, then the new one whenever the file changes (each live
/// connection re-authenticates), so a rotated Secret needs no restart.
#[derive(Clone)]
struct PasswordFile {
    path: PathBuf,
    username: String,
}

impl StreamingCredentialsProvider for PasswordFile {
    fn subscribe(&self) -> Pin<Box<dyn Stream<Item = RedisResult<BasicAuth>> + Send + 'static>> {
        let (path, username) = (self.path.clone(), self.username.clone());
        Box::pin(futures::stream::unfold(
            (None::<String>, true),
            move |(last, first)| {
                let (path, username) = (path.clone(), username.clone());
                async move {
                    let mut wait = !first;
                    loop {
                        if wait {
                            tokio::time::sleep(PASSWORD_RELOAD).await;
                        }
                        wait = true;
                        match read_password(&path).await {
                            Ok(p) if last.as_deref() == Some(p.as_str()) => {}
                            Ok(p) => {
                                let auth = BasicAuth::new(username, p.clone());
                                return Some((Ok(auth), (Some(p), false)));
                            }
                            Err(_) => {
                                let e = redis::RedisError::from((
                                    redis::ErrorKind::AuthenticationFailed,
                                    "cannot read the redis password file",
                                ));
                                return Some((Err(e), (last, false)));
                            }
                        }
                    }
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_follows_version_and_aof() {
        let t = Duration::from_secs(2);
        let cases = [
            (
                "aof on, 7.2",
                "# Server\r\nredis_version:7.2.4\r\n# Persistence\r\naof_enabled:1\r\n",
                Durability::WaitAof { timeout_ms: 1500 },
            ),
            (
                "aof on, 8.0",
                "redis_version:8.0.1\naof_enabled:1\n",
                Durability::WaitAof { timeout_ms: 1500 },
            ),
            (
                "aof on, 7.0",
                "redis_version:7.0.15\naof_enabled:1\n",
                Durability::AppendFsync,
            ),
            (
                "aof on, 6.2",
                "redis_version:6.2.14\naof_enabled:1\n",
                Durability::AppendFsync,
            ),
            (
                "aof off, 7.2",
                "redis_version:7.2.4\naof_enabled:0\n",
                Durability::None,
            ),
            ("nothing known", "", Durability::None),
        ];
        for (name, info, want) in cases {
            assert_eq!(durability_of(info, t), want, "{name}");
        }
    }
}
