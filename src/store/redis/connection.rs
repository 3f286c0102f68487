//! How the store reaches Redis. Three set-ups, chosen by the URL:
//!
//! | URL | set-up |
//! |---|---|
//! | `redis://`, `rediss://`, `redis+unix://` | one server (or an address that follows the primary) |
//! | `redis+sentinel://[USER:PASS@]HOST[:PORT][,HOST[:PORT]…]/SERVICE[/DB]` | the primary the Sentinels name for `SERVICE` (default port 26379) |
//! | `redis+cluster://[USER:PASS@]HOST[:PORT][,HOST[:PORT]…]` | a Redis Cluster, discovered from these seed nodes (default port 6379) |
//!
//! `rediss+sentinel://` and `rediss+cluster://` use TLS to every node. The
//! user and password in the URL authenticate to the data nodes (as with
//! `redis://`); Sentinels themselves are authenticated only with their own
//! password file. [`Connection`] hides which set-up it is: it is a
//! [`ConnectionLike`], so scripts and pipelines run on it unchanged.
//!
//! Behind Sentinel, the primary is resolved when first needed and again
//! after any error that suggests a failover (connection refused, dropped or
//! timed out, or `READONLY` from a demoted primary), so the store follows a
//! failover by itself. In a Cluster, every key of rollgate is in the one
//! slot of the hash tag `{rollgate}`, so each script runs on one node; the
//! crate's cluster client follows `MOVED` and slot migrations.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use crate::error::UrlError;
use percent_encoding::percent_decode_str;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{
    Cmd, ConnectionAddr, IntoConnectionInfo, RedisError, RedisFuture, RedisResult, TlsMode, Value,
};

/// The key whose slot holds all of rollgate's data in a Cluster.
const SLOT_KEY: &str = "{rollgate}";
const SENTINEL_PORT: u16 = 26379;
const REDIS_PORT: u16 = 6379;

/// Where rollgate's Redis data lives, as the store URL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server, by a URL the redis crate reads itself.
    Single(String),
    Sentinel(SentinelTopology),
    Cluster(ClusterTopology),
}

/// Sentinels to ask for the primary of `service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelTopology {
    pub sentinels: Vec<(String, u16)>,
    pub service: String,
    pub db: i64,
    pub tls: bool,
    pub credentials: Credentials,
}

/// Seed nodes of a Cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTopology {
    pub nodes: Vec<(String, u16)>,
    pub tls: bool,
    pub credentials: Credentials,
}

/// User and password from a URL's user info, for the data nodes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Topology {
    /// Reads a store URL. Single-server URLs are checked by the redis crate;
    /// Sentinel and Cluster URLs here, each error naming the part at fault.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(UrlError("expected SCHEME://…".into()));
        };
        let (tls, kind) = match scheme {
            "redis" | "rediss" | "redis+unix" | "unix" => {
                redis::Client::open(url).map_err(|e| UrlError(e.to_string()))?;
                return Ok(Self::Single(url.to_owned()));
            }
            "redis+sentinel" => (false, Kind::Sentinel),
            "rediss+sentinel" => (true, Kind::Sentinel),
            "redis+cluster" => (false, Kind::Cluster),
            "rediss+cluster" => (true, Kind::Cluster),
            other => {
                return Err(UrlError(format!(
                    "unknown scheme {other:?}: use redis://, rediss://, redis+unix://, \
                     redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://"
                )));
            }
        };
        if rest.contains(['?', '#']) {
            return Err(UrlError(
                "query parameters are not supported in sentinel or cluster URLs".into(),
            ));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (credentials(userinfo)?, hosts),
            None => (Credentials::default(), authority),
        };
        let default_port = match kind {
            Kind::Sentinel => SENTINEL_PORT,
            Kind::Cluster => REDIS_PORT,
        };
        let addresses = hosts
            .split(',')
            .map(|host| address(host, default_port))
            .collect::<Result<Vec<_>, _>>()?;
        match kind {
            Kind::Sentinel => {
                let (service, db) = path.split_once('/').unwrap_or((path, ""));
                if service.is_empty() {
                    return Err(UrlError(
                        "a sentinel URL names the service after the hosts: \
                         redis+sentinel://HOST:26379/SERVICE"
                            .into(),
                    ));
                }
                let service = decode(service)?;
                let db = match db.trim_end_matches('/') {
                    "" => 0,
                    db => db
                        .parse()
                        .map_err(|_| UrlError(format!("database {db:?} is not a number")))?,
                };
                Ok(Self::Sentinel(SentinelTopology {
                    sentinels: addresses,
                    service,
                    db,
                    tls,
                    credentials,
                }))
            }
            Kind::Cluster => {
                if !matches!(path.trim_end_matches('/'), "" | "0") {
                    return Err(UrlError(format!(
                        "a Redis Cluster has only database 0, not {path:?}"
                    )));
                }
                Ok(Self::Cluster(ClusterTopology {
                    nodes: addresses,
                    tls,
                    credentials,
                }))
            }
        }
    }
}

enum Kind {
    Sentinel,
    Cluster,
}

fn decode(text: &str) -> Result<String, UrlError> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| UrlError("percent-encoded text is not UTF-8".into()))
}

fn credentials(userinfo: &str) -> Result<Credentials, UrlError> {
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    Ok(Credentials {
        username: Some(decode(user)?).filter(|u| !u.is_empty()),
        password: password.map(decode).transpose()?.filter(|p| !p.is_empty()),
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn address(text: &str, default_port: u16) -> Result<(String, u16), UrlError> {
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| UrlError(format!("unclosed '[' in host {text:?}")))?;
        (host, after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError(format!(
            "empty host in {text:?}: list hosts as HOST:PORT,HOST:PORT"
        )));
    }
    let port = match port {
        None => default_port,
        Some(port) => port
            .parse()
            .map_err(|_| UrlError(format!("port {port:?} of host {host:?} is not a number")))?,
    };
    Ok((host.to_owned(), port))
}

/// Connection settings every set-up shares.
pub struct Settings {
    /// Connect and response timeout of each command.
    pub timeout: Duration,
    /// The reconnecting connection's settings (timeouts, password file).
    pub manager: ConnectionManagerConfig,
    /// Password file of the Sentinels; read at each resolution.
    pub sentinel_password_file: Option<PathBuf>,
}

/// A connection to whichever set-up the URL named. Cheap to clone; clones
/// share the underlying connections.
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Sentinel(Arc<SentinelPrimary>),
    Cluster(ClusterConnection),
}

impl Connection {
    /// Opens a connection lazily: nothing is dialled until the first
    /// command, so a Redis that is down does not stop rollgate from starting.
    pub fn open(
        topology: &Topology,
        settings: Settings,
        password_file: Option<super::PasswordFile>,
    ) -> RedisResult<Self> {
        Ok(match topology {
            Topology::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                Self::Single(ConnectionManager::new_lazy_with_config(
                    client,
                    settings.manager,
                )?)
            }
            Topology::Sentinel(sentinel) => Self::Sentinel(Arc::new(SentinelPrimary {
                topology: sentinel.clone(),
                settings,
                current: std::sync::Mutex::new(None),
                resolving: tokio::sync::Mutex::new(()),
            })),
            Topology::Cluster(cluster) => {
                let nodes = cluster.nodes.iter().map(|(host, port)| {
                    tcp_address(host, *port, cluster.tls).into_connection_info()
                });
                let nodes = nodes.collect::<RedisResult<Vec<_>>>()?;
                let mut builder = ClusterClientBuilder::new(nodes)
                    .connection_timeout(settings.timeout)
                    .response_timeout(settings.timeout)
                    .overall_response_timeout(Some(settings.timeout))
                    .retries(2);
                if cluster.tls {
                    builder = builder.tls(TlsMode::Secure);
                }
                if let Some(username) = &cluster.credentials.username {
                    builder = builder.username(username);
                }
                if let Some(password) = &cluster.credentials.password {
                    builder = builder.password(password);
                }
                if let Some(provider) = password_file {
                    builder = builder.set_credentials_provider(provider);
                }
                let client = builder.build()?;
                Self::Cluster(client.get_pending_async_connection_with_config(Default::default()))
            }
        })
    }

    /// `INFO` of the node holding rollgate's keys (in a Cluster, the
    /// primary of the `{rollgate}` slot; elsewhere the server or primary).
    pub async fn info(&self) -> RedisResult<String> {
        let mut conn = self.clone();
        match &mut conn {
            Self::Cluster(cluster) => {
                let route = Route::with_key(SLOT_KEY, SlotAddr::Master);
                let value = cluster
                    .route_command(
                        redis::cmd("INFO"),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                redis::from_redis_value(value).map_err(Into::into)
            }
            other => redis::cmd("INFO").query_async(other).await,
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
            Self::Sentinel(primary) => Box::pin(async move {
                primary
                    .run(async |mut conn| conn.req_packed_command(cmd).await)
                    .await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(primary) => Box::pin(async move {
                primary
                    .run(async |mut conn| conn.req_packed_commands(pipeline, offset, count).await)
                    .await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(_) => 0,
            Self::Sentinel(primary) => primary.topology.db,
        }
    }
}

fn tcp_address(host: &str, port: u16, tls: bool) -> ConnectionAddr {
    if tls {
        ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host.to_owned(), port)
    }
}

/// The primary of a Sentinel-managed service: a reconnecting connection to
/// the address the Sentinels last named, dropped and resolved again after an
/// error that suggests a failover.
pub struct SentinelPrimary {
    topology: SentinelTopology,
    settings: Settings,
    /// The current primary's connection, with a number telling resolutions
    /// apart (so a late error does not drop a newer connection).
    current: std::sync::Mutex<Option<(u64, ConnectionManager)>>,
    /// Held while resolving: concurrent callers wait for one resolution.
    resolving: tokio::sync::Mutex<()>,
}

impl SentinelPrimary {
    async fn run<T>(
        &self,
        command: impl AsyncFnOnce(ConnectionManager) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let (generation, conn) = self.primary().await?;
        let result = command(conn).await;
        if let Err(e) = &result
            && suggests_failover(e)
        {
            self.forget(generation);
        }
        result
    }

    fn current(&self) -> Option<(u64, ConnectionManager)> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn forget(&self, generation: u64) {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            *current = None;
        }
    }

    async fn primary(&self) -> RedisResult<(u64, ConnectionManager)> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let _resolving = self.resolving.lock().await;
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let client = tokio::time::timeout(self.settings.timeout, self.resolve())
            .await
            .map_err(|_| {
                RedisError::from((
                    redis::ErrorKind::Io,
                    "no sentinel named the primary in time",
                    format!("service {}", self.topology.service),
                ))
            })??;
        let addr = client.get_connection_info().addr().to_string();
        let conn = ConnectionManager::new_lazy_with_config(client, self.settings.manager.clone())?;
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let generation = current.as_ref().map_or(0, |(g, _)| g + 1);
        *current = Some((generation, conn.clone()));
        tracing::info!(service = %self.topology.service, primary = %addr, "redis sentinel named the primary");
        Ok((generation, conn))
    }

    /// Asks the Sentinels for the primary's address, with a freshly built
    /// client (so a rotated Sentinel password file is read again).
    async fn resolve(&self) -> RedisResult<redis::Client> {
        let topology = &self.topology;
        let tls = topology.tls.then_some(TlsMode::Secure);
        let sentinels = topology
            .sentinels
            .iter()
            .map(|(host, port)| tcp_address(host, *port, topology.tls));
        let mut builder =
            SentinelClientBuilder::new(sentinels, &topology.service, SentinelServerType::Master)?
                .set_client_to_redis_db(topology.db);
        if let Some(tls) = tls {
            builder = builder
                .set_client_to_redis_tls_mode(tls)
                .set_client_to_sentinel_tls_mode(tls);
        }
        if let Some(username) = &topology.credentials.username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = &topology.credentials.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(path) = &self.settings.sentinel_password_file {
            let password = super::read_password(path).await.map_err(|e| {
                RedisError::from((
                    redis::ErrorKind::AuthenticationFailed,
                    "cannot read the sentinel password file",
                    e.to_string(),
                ))
            })?;
            builder = builder.set_client_to_sentinel_password(password);
        }
        builder.build()?.async_get_client().await
    }
}

/// Errors after which the primary may have moved: ask the Sentinels again.
fn suggests_failover(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(url: &str) -> SentinelTopology {
        match Topology::parse(url) {
            Ok(Topology::Sentinel(s)) => s,
            other => panic!("{url}: {other:?}"),
        }
    }

    fn cluster(url: &str) -> ClusterTopology {
        match Topology::parse(url) {
            Ok(Topology::Cluster(c)) => c,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn sentinel_urls_name_hosts_service_and_database() {
        let s = sentinel("redis+sentinel://s1:26380,s2,[::1]:26381/mymaster/2");
        assert_eq!(
            s.sentinels,
            [
                ("s1".to_owned(), 26380),
                ("s2".to_owned(), SENTINEL_PORT),
                ("::1".to_owned(), 26381)
            ]
        );
        assert_eq!((s.service.as_str(), s.db, s.tls), ("mymaster", 2, false));
        assert_eq!(s.credentials, Credentials::default());

        let s = sentinel("rediss+sentinel://app:p%40ss@s1/main");
        assert!(s.tls);
        assert_eq!(s.db, 0);
        assert_eq!(s.credentials.username.as_deref(), Some("app"));
        assert_eq!(s.credentials.password.as_deref(), Some("p@ss"));
    }

    #[test]
    fn cluster_urls_name_seed_nodes() {
        let c = cluster("redis+cluster://:secret@n1:7000,n2:7001,n3");
        assert_eq!(
            c.nodes,
            [
                ("n1".to_owned(), 7000),
                ("n2".to_owned(), 7001),
                ("n3".to_owned(), REDIS_PORT)
            ]
        );
        assert_eq!(c.credentials.username, None);
        assert_eq!(c.credentials.password.as_deref(), Some("secret"));
        assert!(cluster("rediss+cluster://n1/").tls);
    }

    #[test]
    fn single_server_urls_pass_through() {
        for url in [
            "redis://h:6379/0",
            "rediss://u:p@h",
            "redis+unix:///run/r.sock",
        ] {
            assert_eq!(
                Topology::parse(url).ok(),
                Some(Topology::Single(url.into()))
            );
        }
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let cases = [
            ("redis+sentinel://s1:26379", "names the service"),
            ("redis+sentinel://s1/m/x", "\"x\" is not a number"),
            ("redis+sentinel://s1:port/m", "port \"port\""),
            ("redis+sentinel://s1,,s2/m", "empty host"),
            ("redis+cluster://n1/3", "only database 0"),
            ("redis+cluster://n1?tls=1", "query parameters"),
            ("memcached://x", "unknown scheme"),
            ("redis+cluster://[::1/", "unclosed"),
        ];
        for (url, want) in cases {
            let err = Topology::parse(url).expect_err(url).to_string();
            assert!(err.contains(want), "{url}: {err}");
        }
    }

    #[test]
    fn passwords_stay_out_of_debug_output() {
        let s = sentinel("redis+sentinel://u:hunter2@s1/m");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn failover_errors_are_told_apart_from_answers() {
        let readonly = RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
            "READONLY",
        ));
        let refused: RedisError =
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
        let script = RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::NoScript),
            "NOSCRIPT",
        ));
        assert!(suggests_failover(&readonly));
        assert!(suggests_failover(&refused));
        assert!(!suggests_failover(&script));
    }
}
