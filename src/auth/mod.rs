//! Who is calling the API, and what they may do.
//!
//! [`Caller`] is an axum extractor that reads the Bearer token and asks the
//! configured [`Authenticator`]: [`DevUsers`] (the demo tokens of
//! `users.json`), a Kubernetes TokenReview ([`cluster::TokenReviewer`]), or
//! both in turn ([`FirstOf`]), so a ticket's user is exactly the username the
//! API server reports at admission. Roles (approver, auditor) are decided by
//! an [`Authorizer`]: the config ([`roles::Roles`]), a
//! SubjectAccessReview ([`cluster::AccessReviewer`]), or either ([`AnyOf`]).

pub mod cluster;
pub mod roles;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::FromRequestParts;
use http::request::Parts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::ApiError;
use crate::state::AppState;

/// Group the demo approver (bob) belongs to; dev mode makes it approver everywhere.
pub const DEMO_APPROVER_GROUP: &str = "rollgate:approvers";
/// Group the demo auditor (carol) belongs to; dev mode makes it auditor everywhere.
pub const DEMO_AUDITOR_GROUP: &str = "rollgate:auditors";

/// An authenticated API caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub username: String,
    pub groups: Vec<String>,
}

/// Authentication failed for a reason the caller can fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no bearer token: send `Authorization: Bearer <token>`")]
    MissingToken,
    #[error("the bearer token is not valid")]
    InvalidToken,
    #[error("token authentication is unavailable: {0}")]
    Unavailable(String),
    #[error("cannot read users file {path}")]
    UsersFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("users file {path} is not valid")]
    UsersFormat {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Turns a bearer token into a [`Caller`].
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    async fn authenticate(&self, token: &str) -> Result<Caller, Error>;
}

/// One entry of `users.json`.
#[derive(Clone, Serialize, Deserialize)]
pub struct DevUser {
    pub name: String,
    pub token: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl std::fmt::Debug for DevUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevUser")
            .field("name", &self.name)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// The `users.json` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevUsersFile {
    pub users: Vec<DevUser>,
}

/// Demo users keyed by the SHA-256 of their token, so lookups do not compare
/// secrets byte by byte.
#[derive(Debug, Clone, Default)]
pub struct DevUsers {
    by_token_hash: HashMap<[u8; 32], Caller>,
}

impl DevUsers {
    pub fn new(file: &DevUsersFile) -> Self {
        let by_token_hash = file
            .users
            .iter()
            .map(|u| {
                (
                    Sha256::digest(u.token.as_bytes()).into(),
                    Caller {
                        username: u.name.clone(),
                        groups: u.groups.clone(),
                    },
                )
            })
            .collect();
        Self { by_token_hash }
    }

    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read(path).map_err(|source| Error::UsersFile {
            path: path.to_owned(),
            source,
        })?;
        let file: DevUsersFile =
            serde_json::from_slice(&text).map_err(|source| Error::UsersFormat {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self::new(&file))
    }
}

#[async_trait]
impl Authenticator for DevUsers {
    async fn authenticate(&self, token: &str) -> Result<Caller, Error> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_token_hash
            .get(&hash)
            .cloned()
            .ok_or(Error::InvalidToken)
    }
}

/// The demo users of DESIGN.md with fresh random tokens.
pub fn demo_users() -> DevUsersFile {
    let mk = |name: &str, groups: &[&str]| DevUser {
        name: name.into(),
        token: format!("rg-dev-{name}-{}", crate::names::random_id()),
        groups: groups
            .iter()
            .map(|g| g.to_string())
            .chain(["system:authenticated".into()])
            .collect(),
    };
    DevUsersFile {
        users: vec![
            mk("alice", &["developers"]),
            mk("bob", &[DEMO_APPROVER_GROUP]),
            mk("carol", &[DEMO_AUDITOR_GROUP]),
        ],
    }
}

/// Reads the bearer token from the `Authorization` header.
pub fn bearer(headers: &http::HeaderMap) -> Result<&str, Error> {
    let header = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(Error::MissingToken)?;
    let value = header.to_str().map_err(|_| Error::InvalidToken)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(Error::MissingToken)?
        .trim();
    if token.is_empty() {
        Err(Error::MissingToken)
    } else {
        Ok(token)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)?;
        Ok(state.authenticator.authenticate(token).await?)
    }
}

/// Shared handle to the authenticator.
pub type SharedAuthenticator = Arc<dyn Authenticator>;

/// Tries each authenticator in turn; the first that knows the token wins.
/// Dev mode with a cluster: demo tokens first, then TokenReview.
pub struct FirstOf(pub Vec<Arc<dyn Authenticator>>);

#[async_trait]
impl Authenticator for FirstOf {
    async fn authenticate(&self, token: &str) -> Result<Caller, Error> {
        let mut last = Error::InvalidToken;
        for authenticator in &self.0 {
            match authenticator.authenticate(token).await {
                Ok(caller) => return Ok(caller),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// A role rollgate grants beyond "authenticated".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Approves and rejects tickets, revokes grants, reads the audit.
    Approver,
    /// Reads the audit and lists grants.
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approver => "approver",
            Self::Auditor => "auditor",
        }
    }
}

/// Decides whether a caller holds a role in a namespace (`None`: in every namespace).
#[async_trait]
pub trait Authorizer: Send + Sync + 'static {
    async fn allows(
        &self,
        caller: &Caller,
        role: Role,
        namespace: Option<&str>,
    ) -> Result<bool, Error>;
}

/// Roles from the config file. An approver may also audit.
#[async_trait]
impl Authorizer for roles::Roles {
    async fn allows(
        &self,
        caller: &Caller,
        role: Role,
        namespace: Option<&str>,
    ) -> Result<bool, Error> {
        let (user, groups) = (caller.username.as_str(), caller.groups.as_slice());
        Ok(match (role, namespace) {
            (Role::Approver, Some(ns)) => self.is_approver(ns, user, groups),
            (Role::Approver, None) => self.is_approver("*", user, groups),
            (Role::Auditor, Some(ns)) => self.is_auditor(ns, user, groups),
            (Role::Auditor, None) => self.is_global_auditor(user, groups),
        })
    }
}

/// Holds a role if any authorizer says so (config, then RBAC).
pub struct AnyOf(pub Vec<Arc<dyn Authorizer>>);

#[async_trait]
impl Authorizer for AnyOf {
    async fn allows(
        &self,
        caller: &Caller,
        role: Role,
        namespace: Option<&str>,
    ) -> Result<bool, Error> {
        for authorizer in &self.0 {
            if authorizer.allows(caller, role, namespace).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Shared handle to the authorizer.
pub type SharedAuthorizer = Arc<dyn Authorizer>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn demo_tokens_authenticate_their_user_only() {
        let file = demo_users();
        let users = DevUsers::new(&file);
        let bob = &file.users[1];
        let caller = users.authenticate(&bob.token).await.unwrap();
        assert_eq!(caller.username, "bob");
        assert!(caller.groups.contains(&DEMO_APPROVER_GROUP.to_string()));
        assert!(matches!(
            users.authenticate("rg-dev-bob-guess").await,
            Err(Error::InvalidToken)
        ));
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let file = demo_users();
        let shown = format!("{:?}", file);
        assert!(!shown.contains(&file.users[0].token), "{shown}");
    }
}
