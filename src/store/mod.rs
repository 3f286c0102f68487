//! Storage backends behind the small traits of their concepts:
//! [`TicketStore`](crate::tickets::TicketStore), [`GrantStore`](crate::grants::GrantStore)
//! and [`AuditLog`](crate::audit::AuditLog). [`sqlite`] is the embedded
//! default (`serve --dev` needs nothing else); Redis is the production store
//! shared by all replicas (issue #4).

pub mod sqlite;

use std::sync::Arc;

use crate::audit::AuditLog;
use crate::config::StoreConfig;
use crate::grants::GrantStore;
use crate::tickets::TicketStore;

/// A store operation failed. The webhook turns these into fail-closed
/// denials; the API into 503s.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("embedded database error")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data is corrupt")]
    Corrupt(#[from] serde_json::Error),
    #[error("the store did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("the store worker stopped")]
    WorkerGone,
    #[error("store backend {0} is not available in this build yet")]
    Unsupported(String),
    #[error("cannot create the store directory {path}")]
    Dir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The three stores a running rollgate uses; one backend serves all three.
#[derive(Clone)]
pub struct Stores {
    pub tickets: Arc<dyn TicketStore>,
    pub grants: Arc<dyn GrantStore>,
    pub audit: Arc<dyn AuditLog>,
}

/// Opens the backend `config` names.
pub async fn open(config: &StoreConfig) -> Result<Stores, Error> {
    match config {
        StoreConfig::Sqlite(path) => {
            let store = Arc::new(sqlite::SqliteStore::open(path).await?);
            Ok(Stores {
                tickets: store.clone(),
                grants: store.clone(),
                audit: store,
            })
        }
        StoreConfig::Redis(_) => Err(Error::Unsupported(config.redacted())),
    }
}
