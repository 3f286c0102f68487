//! The role model: who approves and who audits in which namespaces
//! ([`Roles`], filled from the config's `roles` section), and how many
//! approvals a ticket needs ([`RequiredApprovals`]). Pure: no I/O. The
//! [`Authorizer`](super::Authorizer) built on it lives in [`super`].

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// Users and groups holding a role (approver or auditor) in some namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Members {
    #[serde(default)]
    pub users: BTreeSet<String>,
    #[serde(default)]
    pub groups: BTreeSet<String>,
}

impl Members {
    /// True when `user` or one of `groups` is a member.
    pub fn contains(&self, user: &str, groups: &[String]) -> bool {
        self.users.contains(user) || groups.iter().any(|g| self.groups.contains(g))
    }
}

/// Approvers and auditors per namespace, and how many distinct approvers a
/// ticket needs; the key `"*"` applies to every namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Roles {
    #[serde(default)]
    pub approvers: BTreeMap<String, Members>,
    #[serde(default)]
    pub auditors: BTreeMap<String, Members>,
    #[serde(default)]
    pub required_approvals: RequiredApprovals,
}

/// Most approvals `roles.requiredApprovals` may require.
pub const MAX_REQUIRED_APPROVALS: u32 = 10;

/// How many distinct approvers (never the requester) a ticket needs before it
/// is approved, per namespace (`roles.requiredApprovals`, e.g.
/// `{"*": 1, production: 2}`): the namespace's own key, else `"*"`, else 1.
/// A ticket keeps the number it was filed with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct RequiredApprovals(BTreeMap<String, u32>);

impl RequiredApprovals {
    /// `counts` keyed by namespace or `"*"`; config validates them (`roles.requiredApprovals`).
    pub fn new(counts: BTreeMap<String, u32>) -> Self {
        Self(counts)
    }

    /// The approvals a ticket filed in `namespace` needs (at least 1).
    pub fn for_namespace(&self, namespace: &str) -> u32 {
        self.0
            .get(namespace)
            .or_else(|| self.0.get("*"))
            .copied()
            .unwrap_or(1)
            .max(1)
    }

    /// The counts as configured, keyed by namespace or `"*"`.
    pub fn counts(&self) -> &BTreeMap<String, u32> {
        &self.0
    }
}

impl Roles {
    /// May `user` approve or reject tickets for `namespace`?
    pub fn is_approver(&self, namespace: &str, user: &str, groups: &[String]) -> bool {
        Self::holds(&self.approvers, namespace, user, groups)
    }

    /// May `user` read the audit trail of `namespace`? Approvers may too.
    pub fn is_auditor(&self, namespace: &str, user: &str, groups: &[String]) -> bool {
        Self::holds(&self.auditors, namespace, user, groups)
            || self.is_approver(namespace, user, groups)
    }

    /// May `user` read the audit trail of every namespace (unfiltered queries)?
    pub fn is_global_auditor(&self, user: &str, groups: &[String]) -> bool {
        [&self.auditors, &self.approvers]
            .iter()
            .any(|map| map.get("*").is_some_and(|m| m.contains(user, groups)))
    }

    fn holds(map: &BTreeMap<String, Members>, ns: &str, user: &str, groups: &[String]) -> bool {
        [ns, "*"]
            .iter()
            .any(|key| map.get(*key).is_some_and(|m| m.contains(user, groups)))
    }
}
