//! What is gated: the pure classification of an admission request.
//!
//! Start at [`classify`]: it takes the request, the [`Policy`] and the set of
//! namespaces labelled `rollgate.io/protected=true` (kept by a watch, read
//! synchronously) and says whether the change is ungated, exempt or gated.
//! It does no I/O. The template diff itself lives in [`change`].
//! The rules are DESIGN.md "What is gated".

pub mod change;
pub mod index;
pub mod workload;

use std::collections::BTreeSet;

use kube::core::admission::{AdmissionRequest, Operation};
use serde::{Deserialize, Serialize};

pub use change::{APPLICATION_LABELS, ChangeKind, ImageChange, TemplateDiff};
pub use workload::Workload;

/// What rollgate does with a gated change when the grant store or the audit
/// log cannot be reached within its time budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Deny the gated change, saying which dependency is unavailable.
    #[default]
    Closed,
    /// Allow it with a warning (and log loudly).
    Open,
}

/// Label that protects a namespace when set to `"true"`.
pub const PROTECTED_LABEL: &str = "rollgate.io/protected";
/// Pod-template annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// Pod-template annotation naming the grant of a redeploy rollgate performed itself.
pub const GRANT_ANNOTATION: &str = "rollgate.io/grant";
/// Pod-template annotation carrying the operation id of such a redeploy.
pub const OPERATION_ANNOTATION: &str = "rollgate.io/operation";

/// The Pod subresource `kubectl debug` writes ephemeral containers through.
pub const EPHEMERAL_CONTAINERS: &str = "ephemeralcontainers";

/// rollgate's service account when the config does not name another.
pub const DEFAULT_ROLLGATE_USERNAME: &str = "system:serviceaccount:rollgate:rollgate";

/// The kinds rollgate can gate: apps/v1 workloads, batch/v1 CronJob and v1
/// Pod (DESIGN.md "What is gated").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    CronJob,
    Pod,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 6] = [
        Self::Deployment,
        Self::StatefulSet,
        Self::DaemonSet,
        Self::ReplicaSet,
        Self::CronJob,
        Self::Pod,
    ];

    /// The kinds `rollgate redeploy` can restart (a restart annotation on
    /// their pod template rolls their pods).
    pub const RESTARTABLE: [WorkloadKind; 3] =
        [Self::Deployment, Self::StatefulSet, Self::DaemonSet];

    /// The kind for a `kind` name, if it is one rollgate knows.
    pub fn from_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// The kind for an API group and `kind` name, as a review's `kind` names
    /// them: `Deployment` only in `apps`, `Pod` only in the core group.
    pub fn from_group_kind(group: &str, kind: &str) -> Option<Self> {
        Self::from_kind(kind).filter(|k| k.group() == group)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::ReplicaSet => "ReplicaSet",
            Self::CronJob => "CronJob",
            Self::Pod => "Pod",
        }
    }

    /// The kind's API group (`""` is the core group).
    pub fn group(self) -> &'static str {
        match self {
            Self::Deployment | Self::StatefulSet | Self::DaemonSet | Self::ReplicaSet => "apps",
            Self::CronJob => "batch",
            Self::Pod => "",
        }
    }

    /// The `kubectl` resource name, for messages (`deploy/web`).
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Deployment => "deployment",
            Self::StatefulSet => "statefulset",
            Self::DaemonSet => "daemonset",
            Self::ReplicaSet => "replicaset",
            Self::CronJob => "cronjob",
            Self::Pod => "pod",
        }
    }

    /// Whether `rollgate redeploy` can restart this kind.
    pub fn is_restartable(self) -> bool {
        Self::RESTARTABLE.contains(&self)
    }
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policy half of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Namespaces protected by name (besides those carrying [`Policy::protected_label`]).
    pub protected_namespaces: BTreeSet<String>,
    /// Namespace label that protects a namespace when `"true"`.
    pub protected_label: String,
    pub gated_kinds: Vec<WorkloadKind>,
    pub exempt_users: BTreeSet<String>,
    pub exempt_groups: BTreeSet<String>,
    /// Gate every pod-template change, not only restarts and image changes.
    pub gate_any_template_change: bool,
    pub failure_mode: FailureMode,
    /// Namespaces whose gated changes are allowed (with a warning) when the
    /// store is unavailable, even though `failure_mode` is closed.
    pub fail_open_namespaces: BTreeSet<String>,
    /// Most admitted gated changes per (namespace, application) per window;
    /// `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// rollgate's own username in the cluster: its redeploy patches are
    /// admitted only through the grant they name (DESIGN.md flow step 7).
    pub rollgate_username: String,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            protected_namespaces: BTreeSet::new(),
            protected_label: PROTECTED_LABEL.into(),
            gated_kinds: WorkloadKind::ALL.to_vec(),
            exempt_users: BTreeSet::new(),
            exempt_groups: BTreeSet::new(),
            gate_any_template_change: true,
            failure_mode: FailureMode::Closed,
            fail_open_namespaces: BTreeSet::new(),
            rate_limit: Some(RateLimit::default()),
            rollgate_username: DEFAULT_ROLLGATE_USERNAME.into(),
        }
    }
}

/// At most `limit` events per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u32,
    pub window: std::time::Duration,
}

impl Default for RateLimit {
    /// DESIGN.md's default for redeploys: 6 per hour per application.
    fn default() -> Self {
        Self {
            limit: 6,
            window: std::time::Duration::from_secs(3600),
        }
    }
}

impl Policy {
    /// The failure mode that applies to gated changes in `namespace`.
    pub fn failure_mode_for(&self, namespace: &str) -> FailureMode {
        if self.fail_open_namespaces.contains(namespace) {
            FailureMode::Open
        } else {
            self.failure_mode
        }
    }
}

/// Namespaces whose labels protect them, as far as the caller knows.
pub trait LabelledNamespaces {
    fn is_protected(&self, namespace: &str) -> bool;
}

impl LabelledNamespaces for BTreeSet<String> {
    fn is_protected(&self, namespace: &str) -> bool {
        self.contains(namespace)
    }
}

/// Who asks for the change, as the API server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requester {
    pub username: String,
    pub groups: Vec<String>,
}

/// A change rollgate gates: a change of what runs (DESIGN.md's change
/// classes) of a workload, CronJob or Pod in a protected namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatedChange {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    /// The application the object belonged to *before* the request.
    pub application: String,
    /// The change class, which decides the grant action that covers it.
    pub class: ChangeKind,
    pub requester: Requester,
    pub diff: TemplateDiff,
    /// Set when rollgate itself made the change through the redeploy API:
    /// the grant and operation its patch names. Read only for rollgate's own
    /// username, since anyone may write annotations.
    pub redeploy: Option<Redeploy>,
}

/// A change rollgate's redeploy API made on behalf of a grant's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeploy {
    /// `jti` of the grant the change must be admitted through.
    pub grant_jti: String,
    /// Operation id the API returned to the user.
    pub operation_id: Option<String>,
}

/// Why a request passes without a grant check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UngatedReason {
    NotAWorkload,
    KindNotGated,
    Subresource,
    NotAnUpdate,
    NamespaceNotProtected,
    NoGatedChange,
    /// An object is missing or its pod template cannot be read; the API server
    /// validates the schema itself, so rollgate does not block on it.
    Unreadable,
}

/// The outcome of [`classify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Ungated(UngatedReason),
    /// Gated, but the requester is exempt: allowed without a grant, recorded.
    Exempt(GatedChange),
    Gated(GatedChange),
}

/// What a request targets: the part of it [`screen`] reads, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// API group of the object's kind (`apps`).
    pub group: &'a str,
    pub kind: &'a str,
    pub sub_resource: Option<&'a str>,
    pub operation: &'a Operation,
    /// Empty for cluster-scoped objects.
    pub namespace: &'a str,
}

impl<'a> Target<'a> {
    pub fn of(req: &'a AdmissionRequest<Workload>) -> Self {
        Self {
            group: &req.kind.group,
            kind: &req.kind.kind,
            sub_resource: req.sub_resource.as_deref(),
            operation: &req.operation,
            namespace: req.namespace.as_deref().unwrap_or_default(),
        }
    }
}

/// The checks of [`classify`] that need neither object: the workload kind
/// when the target may be gated, else why it is not.
///
/// The webhook runs it on a first, borrowing parse of the review, so that
/// the requests that are not gated (most of them) never pay for parsing the
/// two objects. [`classify`] runs it too: one set of rules for both.
pub fn screen(
    target: &Target<'_>,
    policy: &Policy,
    labelled: &dyn LabelledNamespaces,
) -> Result<WorkloadKind, UngatedReason> {
    let kind = WorkloadKind::from_group_kind(target.group, target.kind)
        .ok_or(UngatedReason::NotAWorkload)?;
    if !policy.gated_kinds.contains(&kind) {
        return Err(UngatedReason::KindNotGated);
    }
    match target.sub_resource.filter(|s| !s.is_empty()) {
        None => {}
        // `kubectl debug`: the one subresource that changes what runs.
        Some(EPHEMERAL_CONTAINERS) if kind == WorkloadKind::Pod => {}
        Some(_) => return Err(UngatedReason::Subresource),
    }
    if !matches!(target.operation, Operation::Update) {
        return Err(UngatedReason::NotAnUpdate);
    }
    let namespace = target.namespace;
    if !(policy.protected_namespaces.contains(namespace) || labelled.is_protected(namespace)) {
        return Err(UngatedReason::NamespaceNotProtected);
    }
    Ok(kind)
}

/// Decides whether `req` is a gated change under `policy`.
///
/// Pure: reads only its arguments. `labelled` answers for namespaces
/// protected by label rather than by name.
pub fn classify(
    req: &AdmissionRequest<Workload>,
    policy: &Policy,
    labelled: &dyn LabelledNamespaces,
) -> Gate {
    let kind = match screen(&Target::of(req), policy, labelled) {
        Ok(kind) => kind,
        Err(reason) => return Gate::Ungated(reason),
    };
    let namespace = req.namespace.as_deref().unwrap_or_default();
    let (Some(old), Some(new)) = (&req.old_object, &req.object) else {
        return Gate::Ungated(UngatedReason::Unreadable);
    };
    let username = req.user_info.username.as_deref().unwrap_or_default();
    let by_rollgate = username == policy.rollgate_username;
    // Only rollgate's own redeploy may carry its marks without them counting
    // as a template change: from anyone else they are annotations like any other.
    let ignored: &[&str] = if by_rollgate {
        &[GRANT_ANNOTATION, OPERATION_ANNOTATION]
    } else {
        &[]
    };
    let diff = match kind {
        WorkloadKind::Pod => change::diff_pod(old.pod_containers(), new.pod_containers()),
        _ => change::diff(old.template(kind), new.template(kind), ignored),
    };
    let Some(mut diff) = diff else {
        return Gate::Ungated(UngatedReason::Unreadable);
    };
    diff.relabelled =
        change::relabelled(old.metadata.labels.as_ref(), new.metadata.labels.as_ref());
    let Some(class) = diff.class(policy.gate_any_template_change) else {
        return Gate::Ungated(UngatedReason::NoGatedChange);
    };

    let requester = Requester {
        username: username.to_owned(),
        groups: req.user_info.groups.clone().unwrap_or_default(),
    };
    // rollgate's own patches are never exempt, whichever list would name
    // them: they pass only through the grant they name.
    let exempt = !by_rollgate
        && (policy.exempt_users.contains(&requester.username)
            || requester
                .groups
                .iter()
                .any(|g| policy.exempt_groups.contains(g)));
    let redeploy = by_rollgate
        .then(|| change::template_annotation(new.template(kind), GRANT_ANNOTATION))
        .flatten()
        .map(|grant_jti| Redeploy {
            grant_jti,
            operation_id: change::template_annotation(new.template(kind), OPERATION_ANNOTATION),
        });
    let gated = GatedChange {
        kind,
        namespace: namespace.to_owned(),
        name: req.name.clone(),
        // The object as it was: a grant for one application never admits a
        // change to an object that was another before this request.
        application: application_of(&old.metadata),
        class,
        redeploy,
        requester,
        diff,
    };
    if exempt {
        Gate::Exempt(gated)
    } else {
        Gate::Gated(gated)
    }
}

/// The application an object (workload, CronJob, Pod) belongs to: its
/// `app.kubernetes.io/name` label, else its `app` label, else its name.
pub fn application_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    let label = |key: &str| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(key))
            .filter(|v| !v.is_empty())
    };
    label(APPLICATION_LABELS[0])
        .or_else(|| label(APPLICATION_LABELS[1]))
        .cloned()
        .or_else(|| meta.name.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod failure_mode_tests {
    use super::*;

    #[test]
    fn fail_open_is_off_by_default_and_set_per_namespace() {
        let mut policy = Policy::default();
        assert_eq!(policy.failure_mode_for("production"), FailureMode::Closed);
        policy
            .fail_open_namespaces
            .insert("staging-protected".into());
        assert_eq!(
            policy.failure_mode_for("staging-protected"),
            FailureMode::Open
        );
        assert_eq!(policy.failure_mode_for("production"), FailureMode::Closed);
        policy.failure_mode = FailureMode::Open;
        assert_eq!(policy.failure_mode_for("production"), FailureMode::Open);
    }
}
