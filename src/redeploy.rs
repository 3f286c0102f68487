//! The redeploy API's cluster side (DESIGN.md flow step 7): find the workload
//! of an application and restart it as rollgate's own service account,
//! stamping the pod template with the grant and operation it acts under, so
//! the webhook's own check admits it through that grant and attributes it to
//! the grant's user. rollgate needs no impersonation rights for this.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::json;

use crate::policy::{self, GRANT_ANNOTATION, OPERATION_ANNOTATION, RESTARTED_AT, WorkloadKind};

/// Why a redeploy could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no Deployment, StatefulSet or DaemonSet of application {application} in namespace {namespace}"
    )]
    NotFound {
        namespace: String,
        application: String,
    },
    #[error(
        "several workloads belong to application {application}: {candidates}; name one with {{\"kind\":…,\"name\":…}} in the body"
    )]
    Ambiguous {
        application: String,
        candidates: String,
    },
    #[error("a {0} cannot be restarted by rollgate: name a Deployment, StatefulSet or DaemonSet")]
    NotRestartable(WorkloadKind),
    #[error("the API server refused the restart: {0}")]
    Refused(String),
    #[error("the Kubernetes API is unavailable")]
    Kube(#[source] kube::Error),
}

/// A workload of the application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
}

/// Which workload to restart when an application has several.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub kind: Option<WorkloadKind>,
    pub name: Option<String>,
}

/// The workloads in `namespace` whose application (labels as the webhook
/// reads them) is `application`.
pub async fn find(
    client: &Client,
    namespace: &str,
    application: &str,
) -> Result<Vec<Workload>, Error> {
    let mut found = Vec::new();
    let params = ListParams::default();
    let mut collect = |kind, metas: Vec<ObjectMeta>| {
        for meta in metas {
            if policy::application_of(&meta) == application {
                found.push(Workload {
                    kind,
                    name: meta.name.unwrap_or_default(),
                });
            }
        }
    };
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace)
        .list_metadata(&params)
        .await;
    collect(
        WorkloadKind::Deployment,
        deployments
            .map_err(Error::Kube)?
            .items
            .into_iter()
            .map(|m| m.metadata)
            .collect(),
    );
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), namespace)
        .list_metadata(&params)
        .await;
    collect(
        WorkloadKind::StatefulSet,
        statefulsets
            .map_err(Error::Kube)?
            .items
            .into_iter()
            .map(|m| m.metadata)
            .collect(),
    );
    let daemonsets = Api::<DaemonSet>::namespaced(client.clone(), namespace)
        .list_metadata(&params)
        .await;
    collect(
        WorkloadKind::DaemonSet,
        daemonsets
            .map_err(Error::Kube)?
            .items
            .into_iter()
            .map(|m| m.metadata)
            .collect(),
    );
    Ok(found)
}

/// Picks the one workload to restart.
pub fn choose(
    namespace: &str,
    application: &str,
    found: Vec<Workload>,
    selector: &Selector,
) -> Result<Workload, Error> {
    let matching: Vec<Workload> = found
        .into_iter()
        .filter(|w| {
            selector.kind.is_none_or(|k| k == w.kind)
                && selector.name.as_ref().is_none_or(|n| *n == w.name)
        })
        .collect();
    match matching.len() {
        0 => Err(Error::NotFound {
            namespace: namespace.into(),
            application: application.into(),
        }),
        1 => Ok(matching
            .into_iter()
            .next()
            .expect("one element, checked above")),
        _ => Err(Error::Ambiguous {
            application: application.into(),
            candidates: matching
                .iter()
                .map(|w| format!("{}/{}", w.kind, w.name))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The merge patch of a restart under grant `jti` as operation `operation_id`.
pub fn restart_patch(restarted_at: &str, jti: &str, operation_id: &str) -> serde_json::Value {
    json!({"spec": {"template": {"metadata": {"annotations": {
        RESTARTED_AT: restarted_at,
        GRANT_ANNOTATION: jti,
        OPERATION_ANNOTATION: operation_id,
    }}}}})
}

/// Restarts `workload` as rollgate. The API server sends the change through
/// the webhook, which admits it only through grant `jti`.
pub async fn restart(
    client: &Client,
    namespace: &str,
    workload: &Workload,
    jti: &str,
    operation_id: &str,
) -> Result<(), Error> {
    let patch = restart_patch(&jiff::Timestamp::now().to_string(), jti, operation_id);
    let result = match workload.kind {
        WorkloadKind::Deployment => {
            patch_as_rollgate::<Deployment>(client, namespace, &workload.name, &patch).await
        }
        WorkloadKind::StatefulSet => {
            patch_as_rollgate::<StatefulSet>(client, namespace, &workload.name, &patch).await
        }
        WorkloadKind::DaemonSet => {
            patch_as_rollgate::<DaemonSet>(client, namespace, &workload.name, &patch).await
        }
        other @ (WorkloadKind::ReplicaSet | WorkloadKind::CronJob | WorkloadKind::Pod) => {
            return Err(Error::NotRestartable(other));
        }
    };
    result.map_err(|e| match e {
        // The webhook (or another admission check) said no: pass its words on.
        kube::Error::Api(status) if status.code == 403 || status.code == 422 => {
            Error::Refused(status.message)
        }
        other => Error::Kube(other),
    })
}

async fn patch_as_rollgate<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    patch: &serde_json::Value,
) -> Result<(), kube::Error>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let params = PatchParams {
        field_manager: Some("rollgate".into()),
        ..PatchParams::default()
    };
    Api::<K>::namespaced(client.clone(), namespace)
        .patch(name, &params, &Patch::Merge(patch))
        .await
        .map(drop)
}

#[cfg(test)]
mod tests;
