//! The state every listener shares: one `Clone` struct of `Arc`s, so the
//! clone axum makes per request copies pointers, never keys or maps
//! (axum `examples/dependency-injection`, trait objects).

use std::sync::Arc;
use std::time::Duration;

use crate::audit::AuditTrail;
use crate::auth::{SharedAuthenticator, SharedAuthorizer};
use crate::grants::{GrantVerifier, KeySet};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::policy::index::{NamespaceIndex, NamespaceLookup};
use crate::store::Stores;
use crate::tickets::TicketDesk;

#[derive(Clone)]
pub struct AppState {
    pub policy: Arc<Policy>,
    pub namespaces: Arc<NamespaceIndex>,
    /// Asks the cluster about a namespace the index does not know as
    /// protected (with a cluster only; without one the index is the truth).
    pub namespace_lookup: Option<Arc<NamespaceLookup>>,
    pub stores: Stores,
    pub verifier: Arc<GrantVerifier>,
    pub keys: Arc<KeySet>,
    pub metrics: Arc<Metrics>,
    pub authenticator: SharedAuthenticator,
    /// Decides approver and auditor roles (config, SubjectAccessReview).
    pub authorizer: SharedAuthorizer,
    pub desk: Arc<TicketDesk>,
    /// Budget of one store round trip on the webhook path.
    pub store_timeout: Duration,
    /// Base URL of the ticket API, printed in denials.
    pub public_api_url: Arc<str>,
    /// The cluster, when one is configured (redeploy API).
    pub kube: Option<kube::Client>,
    /// Set once certificates and listeners are up.
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    /// Wakes the rollout follower for a newly admitted operation (with a cluster).
    pub rollouts: Option<tokio::sync::mpsc::Sender<String>>,
    /// The store's health as last seen: `None` when fine, else why not.
    pub store_health: Arc<std::sync::RwLock<Option<String>>>,
    /// The audit log with its signed checkpoints (verify, export).
    pub trail: Arc<AuditTrail>,
}
