//! Storage backends behind the small traits of their concepts:
//! [`TicketStore`](crate::tickets::TicketStore), [`GrantStore`](crate::grants::GrantStore)
//! and [`AuditLog`](crate::audit::AuditLog). [`sqlite`] is the embedded
//! default (`serve --dev` needs nothing else); [`redis`] is the production
//! store shared by all replicas (issue #4).

pub mod redis;
pub mod sqlite;

use std::sync::Arc;

use crate::audit::AuditLog;
use crate::config::StoreConfig;
use crate::error::Error;
use crate::grants::GrantStore;
use crate::rollout::OperationLeases;
use crate::tickets::TicketStore;

pub use self::redis::RedisOptions;

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
