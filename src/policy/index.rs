//! Namespaces protected by label, kept in memory by a watch so the webhook
//! never calls the API server per request (linkerd's index pattern: the
//! watch calls `apply`/`delete`, lookups are plain method calls).
//!
//! Beside it, [`NamespaceLookup`] answers for a namespace the index does not
//! (yet) know as protected, when the API server calls about it anyway.

pub mod lookup;

pub use lookup::NamespaceLookup;

use std::collections::BTreeSet;
use std::sync::RwLock;

use k8s_openapi::api::core::v1::Namespace;

use super::LabelledNamespaces;

/// The set of namespaces whose protection label is `"true"`.
#[derive(Debug, Default)]
pub struct NamespaceIndex {
    label: String,
    protected: RwLock<BTreeSet<String>>,
    /// False until the first full list arrived (when a cluster is watched).
    synced: std::sync::atomic::AtomicBool,
}

impl NamespaceIndex {
    /// An index for `label`. `synced` says whether it is complete already
    /// (true without a cluster: then only config-listed namespaces exist).
    pub fn new(label: &str, synced: bool) -> Self {
        Self {
            label: label.to_owned(),
            protected: RwLock::default(),
            synced: std::sync::atomic::AtomicBool::new(synced),
        }
    }

    /// True once the index reflects the cluster; readiness waits for it, so
    /// a labelled namespace is never briefly unprotected after a restart.
    pub fn is_synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// True when `ns` carries this index's label set to `"true"`.
    pub fn protects(&self, ns: &Namespace) -> bool {
        ns.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(&self.label))
            .is_some_and(|v| v == "true")
    }

    /// Records a namespace as seen by the watch.
    pub fn apply(&self, ns: &Namespace) {
        let Some(name) = ns.metadata.name.clone() else {
            return;
        };
        let labelled = self.protects(ns);
        let mut set = self.protected.write().unwrap_or_else(|p| p.into_inner());
        if labelled {
            set.insert(name);
        } else {
            set.remove(&name);
        }
    }

    pub fn delete(&self, name: &str) {
        self.protected
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Replaces the whole set (after a watch re-list).
    pub fn reset(&self, namespaces: &[Namespace]) {
        self.protected
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        for ns in namespaces {
            self.apply(ns);
        }
        self.synced.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl LabelledNamespaces for NamespaceIndex {
    fn is_protected(&self, namespace: &str) -> bool {
        self.protected
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(namespace)
    }
}

/// Keeps `index` in step with the cluster's namespaces until the stream ends.
pub async fn watch(client: kube::Client, index: std::sync::Arc<NamespaceIndex>) {
    use futures::StreamExt;
    use kube::runtime::watcher::{self, Event};
    let api: kube::Api<Namespace> = kube::Api::all(client);
    let mut initial = Vec::new();
    let mut stream = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(ns)) => index.apply(&ns),
            Ok(Event::Delete(ns)) => index.delete(ns.metadata.name.as_deref().unwrap_or_default()),
            Ok(Event::Init) => initial.clear(),
            Ok(Event::InitApply(ns)) => initial.push(ns),
            Ok(Event::InitDone) => index.reset(&std::mem::take(&mut initial)),
            Err(error) => tracing::warn!(%error, "namespace watch failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_ns(name: &str, value: Option<&str>) -> Namespace {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.into());
        if let Some(v) = value {
            ns.metadata.labels =
                Some([("rollgate.io/protected".to_string(), v.to_string())].into());
        }
        ns
    }

    #[test]
    fn labelling_and_unlabelling_a_namespace_updates_protection() {
        let index = NamespaceIndex::new("rollgate.io/protected", false);
        assert!(!index.is_synced());
        index.reset(&[mk_ns("other", None)]);
        assert!(index.is_synced());
        index.apply(&mk_ns("payments", Some("true")));
        index.apply(&mk_ns("sandbox", Some("false")));
        assert!(index.is_protected("payments"));
        assert!(!index.is_protected("sandbox"));
        index.apply(&mk_ns("payments", None));
        assert!(!index.is_protected("payments"));
    }

    #[tokio::test]
    async fn the_watch_fills_the_index_from_the_api_server_and_follows_label_changes() {
        use http::{Request, Response};
        use kube::client::Body;
        use serde_json::json;
        use std::time::Duration;

        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let index = std::sync::Arc::new(NamespaceIndex::new("rollgate.io/protected", false));
        let task = tokio::spawn(watch(client, index.clone()));
        let ns = |name: &str, labels: serde_json::Value| {
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": name, "resourceVersion": "10", "labels": labels}})
        };

        let (list, send) = handle.next_request().await.expect("the initial list");
        assert_eq!(list.method(), http::Method::GET);
        assert_eq!(list.uri().path(), "/api/v1/namespaces");
        assert!(
            !list
                .uri()
                .query()
                .unwrap_or_default()
                .contains("watch=true"),
            "{}",
            list.uri()
        );
        let body = json!({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {"resourceVersion": "10"},
                          "items": [ns("payments", json!({"rollgate.io/protected": "true"})), ns("sandbox", json!({}))]});
        send.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );

        let (watch_req, send) = handle.next_request().await.expect("the watch");
        let query = watch_req.uri().query().unwrap_or_default().to_owned();
        assert!(
            query.contains("watch=true") && query.contains("resourceVersion=10"),
            "{query}"
        );
        assert!(index.is_synced(), "synced once the list is in");
        assert!(index.is_protected("payments"));
        assert!(!index.is_protected("sandbox"));

        let events = [
            json!({"type": "MODIFIED", "object": ns("payments", json!({}))}),
            json!({"type": "ADDED", "object": ns("ledger", json!({"rollgate.io/protected": "true"}))}),
        ];
        let stream: String = events.iter().map(|e| format!("{e}\n")).collect();
        send.send_response(
            Response::builder()
                .body(Body::from(stream.into_bytes()))
                .unwrap(),
        );

        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !index.is_protected("ledger") || index.is_protected("payments") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the watch events were not applied"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
    }
}
