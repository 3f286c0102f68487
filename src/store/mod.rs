//! Storage backends behind the small traits of their concepts:
//! [`TicketStore`](crate::tickets::TicketStore), [`GrantStore`](crate::grants::GrantStore)
//! and [`AuditLog`](crate::audit::AuditLog). [`sqlite`] is the embedded
//! default (`serve --dev` needs nothing else); [`redis`] is the production
//! store shared by all replicas (issue #4).

pub mod redis;
pub mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;

use crate::audit::AuditLog;
use crate::error::Error;
use crate::grants::GrantStore;
use crate::rollout::OperationLeases;
use crate::tickets::TicketStore;

pub use self::redis::RedisOptions;

/// A store value (`store`, `--store`) that names no usable backend, and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidStore(String);

/// Where tickets, grants and the audit log live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded SQLite database at this path.
    Sqlite(PathBuf),
    /// A Redis URL (`redis://`, `rediss://`, `redis+unix://`,
    /// `redis+sentinel://`, `redis+cluster://`); served by the Redis backend.
    Redis(String),
}

impl StoreConfig {
    /// Parses `sqlite:///path`, a bare path, or a Redis URL (one server,
    /// Sentinel or Cluster; checked here so a typo fails at start).
    pub fn parse(value: &str) -> Result<Self, InvalidStore> {
        if value.starts_with("redis") {
            self::redis::Topology::parse(value).map_err(|e| InvalidStore(e.to_string()))?;
            Ok(Self::Redis(value.to_owned()))
        } else if let Some(path) = value.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(InvalidStore("sqlite:// needs a file path".into()));
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else if value.contains("://") {
            Err(InvalidStore(format!(
                "unsupported scheme in {value:?}: use sqlite://PATH, redis://, rediss://, redis+unix://, redis+sentinel:// or redis+cluster://"
            )))
        } else {
            Ok(Self::Sqlite(PathBuf::from(value)))
        }
    }

    /// A description safe to log: a Redis URL loses its credentials (the
    /// user info of `redis://`, the query of `redis+unix://…?pass=`).
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Redis(url) => {
                let url = match url.split_once('?') {
                    Some((base, _)) => format!("{base}?***"),
                    None => url.clone(),
                };
                match url.split_once('@') {
                    Some((scheme_user, host)) => {
                        let scheme = scheme_user.split("://").next().unwrap_or("redis");
                        format!("{scheme}://***@{host}")
                    }
                    None => url,
                }
            }
        }
    }
}

/// The three stores a running rollgate uses; one backend serves all three.
#[derive(Clone)]
pub struct Stores {
    pub tickets: Arc<dyn TicketStore>,
    pub grants: Arc<dyn GrantStore>,
    pub audit: Arc<dyn AuditLog>,
    /// Open operations and who follows each (the rollout follower).
    pub operations: Arc<dyn OperationLeases>,
}

/// Opens the backend `config` names, Redis with default [`RedisOptions`].
pub async fn open(config: &StoreConfig) -> Result<Stores, Error> {
    open_with(config, &RedisOptions::default()).await
}

/// Opens the backend `config` names; `redis` applies to a Redis backend only.
pub async fn open_with(config: &StoreConfig, redis: &RedisOptions) -> Result<Stores, Error> {
    match config {
        StoreConfig::Sqlite(path) => {
            let store = Arc::new(sqlite::SqliteStore::open(path).await?);
            Ok(Stores {
                tickets: store.clone(),
                grants: store.clone(),
                audit: store.clone(),
                operations: store,
            })
        }
        StoreConfig::Redis(url) => {
            let store = Arc::new(self::redis::RedisStore::open(url, redis).await?);
            Ok(Stores {
                tickets: store.clone(),
                grants: store.clone(),
                audit: store.clone(),
                operations: store,
            })
        }
    }
}
