//! The ports' error and the one helper every module uses to print an error.
//!
//! Which error to use where:
//! - Each module has its own `thiserror` enum called `Error` at its edge
//!   (`grants::Error`, `api::Error`, `server::Error`, …), with variants named
//!   for what happened and the cause attached with `#[source]`/`#[from]`.
//! - Every port ([`TicketStore`](crate::tickets::TicketStore),
//!   [`GrantStore`](crate::grants::GrantStore),
//!   [`AuditLog`](crate::audit::AuditLog),
//!   [`OperationLeases`](crate::rollout::OperationLeases)) returns this
//!   module's [`Error`], whichever backend serves it; callers wrap it in their
//!   own enum (`Store(#[from] error::Error)`).
//! - `anyhow` appears only in `main.rs`.
//! - To log or show an error with its causes on one line, use
//!   [`error_chain`]; never turn a cause into text inside an error.
//!
//! This is a leaf: it imports nothing else of the crate.

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
    #[error("redis error")]
    Redis(#[from] ::redis::RedisError),
    #[error(transparent)]
    RedisUrl(#[from] UrlError),
    #[error("cannot read the redis password file {path}")]
    PasswordFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("redis did not confirm the write durable (AOF fsync) within {0:?}")]
    NotDurable(std::time::Duration),
    #[error("the audit chain kept moving under concurrent appends: gave up after {0} attempts")]
    ChainContention(u32),
    #[error("cannot create the store directory {path}")]
    Dir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A store URL that cannot be used, and why (made by
/// `store::redis::Topology::parse`).
#[derive(Debug, thiserror::Error)]
#[error("invalid redis URL: {0}")]
pub struct UrlError(pub(crate) String);

/// An error and its causes on one line, for messages and logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
