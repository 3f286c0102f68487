//! Grants: the signed permission a ticket's approval produces.
//!
//! A grant is an EdDSA JWT ([`GrantClaims`]) signed with rollgate's key
//! ([`keys`]), stored under (user, namespace, application) with a matching
//! TTL behind the [`GrantStore`] trait. The webhook re-verifies the token on
//! every use ([`verify`]), so writing to the store alone never grants anything.

pub mod jws;
pub mod keys;
pub mod verify;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use keys::{KeyError, KeySet, SigningKey};
pub use verify::{Expected, GrantRejection, GrantVerifier};

/// Longest clock leeway DESIGN.md allows when checking a grant's `nbf`/`exp`.
pub const MAX_LEEWAY: Duration = Duration::from_secs(30);

/// Grant (JWT) settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantSettings {
    /// Lifetime of an issued grant; also the longest `exp - iat` accepted.
    pub ttl: Duration,
    /// Clock leeway for `nbf`/`exp`, at most [`MAX_LEEWAY`].
    pub leeway: Duration,
    pub issuer: String,
    pub audience: String,
}

impl Default for GrantSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(2 * 3600),
            leeway: Duration::from_secs(30),
            issuer: "rollgate".into(),
            audience: "rollgate-webhook".into(),
        }
    }
}

/// The JWT `typ` header every grant carries.
pub const GRANT_TYP: &str = "rollgate-grant+jwt";

/// The claims of a grant (DESIGN.md "Grant (JWT claims)"). Every field is
/// required when decoding, so a token missing one is rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantClaims {
    pub iss: String,
    pub aud: String,
    /// Username exactly as the API server reports it.
    pub sub: String,
    pub ns: String,
    pub app: String,
    /// Ticket id.
    pub tid: String,
    /// Ticket number, e.g. `RG-000042`.
    pub tno: String,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// What the ticket allows: `restart`, `image`, `debug` or `any`.
    #[serde(default = "default_action")]
    pub action: String,
    /// The only image references an image change may set (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// How many gated changes the grant admits (absent: unlimited until `exp`).
    #[serde(default, rename = "maxUses", skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u32>,
}

fn default_action() -> String {
    "any".into()
}

/// A grant as the store keeps it: the token plus the fields it is looked up by.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredGrant {
    pub jti: String,
    pub user: String,
    pub namespace: String,
    pub application: String,
    pub ticket_id: String,
    pub ticket_number: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// The signed JWT; never logged, returned only to the ticket's requester.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub token: String,
}

impl StoredGrant {
    /// The store row of the grant `claims` describe, signed as `token`: it is
    /// looked up by the claims' `jti`, `sub`, `ns`, `app`, `tid`, `tno` and
    /// expires at their `exp`.
    pub fn from_claims(claims: &GrantClaims, token: String) -> Self {
        Self {
            jti: claims.jti.clone(),
            user: claims.sub.clone(),
            namespace: claims.ns.clone(),
            application: claims.app.clone(),
            ticket_id: claims.tid.clone(),
            ticket_number: claims.tno.clone(),
            expires_at: claims.exp,
            token,
        }
    }
}

impl std::fmt::Debug for StoredGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredGrant")
            .field("jti", &self.jti)
            .field("user", &self.user)
            .field("namespace", &self.namespace)
            .field("application", &self.application)
            .field("ticket_number", &self.ticket_number)
            .field("expires_at", &self.expires_at)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Filters for [`GrantStore::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantFilter {
    pub namespace: Option<String>,
    pub user: Option<String>,
}

/// Where grants live. One implementation per backend (`store::sqlite`, `store::redis`).
#[async_trait]
pub trait GrantStore: Send + Sync + 'static {
    /// Stores a grant, expiring at `grant.expires_at`.
    async fn put_grant(&self, grant: &StoredGrant) -> Result<(), crate::error::Error>;
    /// The live grants of `user` for `namespace`/`application`, latest-expiring
    /// first (at most 8), in one round trip: the webhook's lookup. `now` is Unix
    /// seconds. Every one is returned, so a newer grant (say, image only)
    /// never hides an older one that covers the change.
    async fn find_grants(
        &self,
        user: &str,
        namespace: &str,
        application: &str,
        now: i64,
    ) -> Result<Vec<StoredGrant>, crate::error::Error>;
    /// The live grant with this `jti`, if any.
    async fn grant_by_jti(
        &self,
        jti: &str,
        now: i64,
    ) -> Result<Option<StoredGrant>, crate::error::Error>;
    /// Live grants matching `filter`.
    async fn list_grants(
        &self,
        filter: &GrantFilter,
        now: i64,
    ) -> Result<Vec<StoredGrant>, crate::error::Error>;
    /// Removes the grants that expired unrevoked by `now` and returns them
    /// (without tokens). Across replicas sharing a store, each expiry is
    /// returned to exactly one caller, so it is counted and recorded once.
    async fn take_expired_grants(&self, now: i64) -> Result<Vec<StoredGrant>, crate::error::Error>;
    /// Removes a grant so it stops working at once; false when there was none.
    async fn revoke_grant(&self, jti: &str) -> Result<bool, crate::error::Error>;
}
