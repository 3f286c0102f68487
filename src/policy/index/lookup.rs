//! The webhook's second opinion on a namespace its [`NamespaceIndex`] does
//! not know as protected (DESIGN.md "What is gated": a namespace labelled a
//! moment ago is never open).
//!
//! The API server calls rollgate only for namespaces its own selector
//! matched, so a call about a namespace the index holds unprotected means
//! the watch may be behind. [`NamespaceLookup::is_protected`] then reads the
//! namespace from the API server (`GET /api/v1/namespaces/{name}`, under a
//! time budget): labelled, it goes into the index, so the next call is a
//! plain index read; unlabelled, that is remembered for [`UNLABELLED_TTL`]
//! in a bounded map, so a flood of calls about an unprotected namespace
//! costs one API call per namespace per TTL. Failures are not remembered.
//! Concurrent lookups of one namespace are not coalesced: each may ask.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;

use super::NamespaceIndex;
use crate::policy::LabelledNamespaces;

/// Longest a lookup may take, whatever the store's budget.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a namespace found unlabelled is taken as unprotected without
/// asking again.
pub const UNLABELLED_TTL: Duration = Duration::from_secs(10);
/// Most namespaces remembered as unlabelled.
pub const MAX_UNLABELLED: usize = 1024;

/// Why a lookup has no answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the namespace from the API server")]
    Api(#[source] kube::Error),
    #[error("the API server did not answer within {0:?}")]
    Timeout(Duration),
}

/// Reads namespaces the index does not know as protected from the API
/// server. Only with a cluster; without one, the index (and the config's
/// list) are the whole truth.
pub struct NamespaceLookup {
    api: kube::Api<Namespace>,
    index: Arc<NamespaceIndex>,
    timeout: Duration,
    unlabelled: Mutex<Unlabelled>,
}

impl NamespaceLookup {
    /// A lookup through `client` that feeds `index`; each API call gets
    /// `timeout` (at most [`MAX_TIMEOUT`]).
    pub fn new(client: kube::Client, index: Arc<NamespaceIndex>, timeout: Duration) -> Self {
        Self {
            api: kube::Api::all(client),
            index,
            timeout: timeout.min(MAX_TIMEOUT),
            unlabelled: Mutex::new(Unlabelled::new(UNLABELLED_TTL, MAX_UNLABELLED)),
        }
    }

    /// Whether `namespace` carries the protection label, asking the API
    /// server unless the index knows it as protected or a lookup found it
    /// unlabelled within [`UNLABELLED_TTL`]. A labelled namespace is applied
    /// to the index. `Err` when the API server did not answer (an error
    /// status, no namespace of that name, or no answer within the budget):
    /// the caller cannot tell, and fails closed.
    pub async fn is_protected(&self, namespace: &str) -> Result<bool, Error> {
        if self.index.is_protected(namespace) {
            return Ok(true);
        }
        if self.remembered().remembers(namespace, Instant::now()) {
            return Ok(false);
        }
        let ns = match tokio::time::timeout(self.timeout, self.api.get(namespace)).await {
            Ok(Ok(ns)) => ns,
            Ok(Err(e)) => return Err(Error::Api(e)),
            Err(_) => return Err(Error::Timeout(self.timeout)),
        };
        if self.index.protects(&ns) {
            // Only protection is applied: an unlabelled answer may be older
            // than a watch event that labelled the namespace since.
            self.index.apply(&ns);
            return Ok(true);
        }
        self.remembered().remember(namespace, Instant::now());
        Ok(false)
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, Unlabelled> {
        // Nothing panics while holding it; a poisoned map is still whole.
        self.unlabelled.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Namespaces found unlabelled and when, each for `ttl`, at most `capacity`
/// of them: when full, the expired go first, then the oldest.
#[derive(Debug)]
struct Unlabelled {
    seen: HashMap<String, Instant>,
    ttl: Duration,
    capacity: usize,
}

impl Unlabelled {
    fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            seen: HashMap::new(),
            ttl,
            capacity,
        }
    }

    fn remembers(&self, namespace: &str, now: Instant) -> bool {
        self.seen
            .get(namespace)
            .is_some_and(|at| now.saturating_duration_since(*at) < self.ttl)
    }

    fn remember(&mut self, namespace: &str, now: Instant) {
        if self.seen.len() >= self.capacity && !self.seen.contains_key(namespace) {
            let ttl = self.ttl;
            self.seen
                .retain(|_, at| now.saturating_duration_since(*at) < ttl);
            if self.seen.len() >= self.capacity {
                let oldest = self
                    .seen
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(name, _)| name.clone());
                if let Some(oldest) = oldest {
                    self.seen.remove(&oldest);
                }
            }
        }
        self.seen.insert(namespace.to_owned(), now);
    }
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock::Handle;

    use super::*;

    type ApiHandle = Handle<Request<Body>, Response<Body>>;

    fn mk_lookup(timeout: Duration) -> (NamespaceLookup, Arc<NamespaceIndex>, ApiHandle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let index = Arc::new(NamespaceIndex::new("rollgate.io/protected", true));
        let lookup = NamespaceLookup::new(
            kube::Client::new(service, "default"),
            index.clone(),
            timeout,
        );
        (lookup, index, handle)
    }

    fn mk_namespace(name: &str, labels: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": name, "resourceVersion": "7", "labels": labels}})
    }

    fn respond(status: u16, body: &Value) -> Response<Body> {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap()
    }

    /// Expects exactly one request, the GET of `namespace`, and answers it.
    async fn serve_get(handle: &mut ApiHandle, namespace: &str, answer: Response<Body>) {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .expect("a request within 5 s")
            .expect("a request");
        assert_eq!(request.method(), http::Method::GET);
        assert_eq!(
            request.uri().path(),
            format!("/api/v1/namespaces/{namespace}")
        );
        assert_eq!(request.uri().query(), None, "{}", request.uri());
        send.send_response(answer);
    }

    async fn assert_no_request(handle: &mut ApiHandle) {
        let next = tokio::time::timeout(Duration::from_millis(50), handle.next_request()).await;
        assert!(
            next.is_err(),
            "no request expected: {:?}",
            next.ok().flatten().map(|(r, _)| r.uri().clone())
        );
    }

    #[tokio::test]
    async fn a_labelled_namespace_is_protected_and_then_read_from_the_index() {
        let (lookup, index, mut handle) = mk_lookup(Duration::from_secs(10));
        let labelled = mk_namespace("payments", json!({"rollgate.io/protected": "true"}));

        let (answer, ()) = tokio::join!(
            lookup.is_protected("payments"),
            serve_get(&mut handle, "payments", respond(200, &labelled))
        );

        assert!(answer.unwrap());
        assert!(index.is_protected("payments"), "the index learnt it");
        assert!(lookup.is_protected("payments").await.unwrap());
        assert_no_request(&mut handle).await;
    }

    #[tokio::test]
    async fn an_unlabelled_namespace_is_not_protected_and_not_asked_again_within_the_ttl() {
        let (lookup, index, mut handle) = mk_lookup(Duration::from_secs(10));
        let unlabelled = mk_namespace("sandbox", json!({"rollgate.io/protected": "false"}));

        let (answer, ()) = tokio::join!(
            lookup.is_protected("sandbox"),
            serve_get(&mut handle, "sandbox", respond(200, &unlabelled))
        );

        assert!(!answer.unwrap());
        assert!(!index.is_protected("sandbox"));
        for _ in 0..3 {
            assert!(!lookup.is_protected("sandbox").await.unwrap());
        }
        assert_no_request(&mut handle).await;
    }

    #[tokio::test]
    async fn an_api_error_is_an_error_and_not_remembered() {
        let (lookup, _index, mut handle) = mk_lookup(Duration::from_secs(10));
        let forbidden = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "Forbidden", "code": 403,
                               "message": "namespaces \"ledger\" is forbidden"});

        let (answer, ()) = tokio::join!(
            lookup.is_protected("ledger"),
            serve_get(&mut handle, "ledger", respond(403, &forbidden))
        );

        let error = answer.unwrap_err();
        assert!(matches!(error, Error::Api(_)), "{error:?}");
        let cause = crate::error::error_chain(&error);
        assert!(cause.contains("forbidden"), "{cause}");
        let unlabelled = mk_namespace("ledger", json!({}));
        let (again, ()) = tokio::join!(
            lookup.is_protected("ledger"),
            serve_get(&mut handle, "ledger", respond(200, &unlabelled))
        );
        assert!(!again.unwrap(), "asked again after the failure");
    }

    #[tokio::test]
    async fn an_api_server_that_does_not_answer_in_time_is_an_error() {
        let (lookup, _index, mut handle) = mk_lookup(Duration::from_millis(100));

        let (answer, held) = tokio::join!(lookup.is_protected("ledger"), async {
            let (request, send) = handle.next_request().await.expect("the lookup");
            // Held unanswered until the lookup has given up.
            (request.uri().path().to_owned(), send)
        });

        assert_eq!(held.0, "/api/v1/namespaces/ledger");
        let error = answer.unwrap_err();
        assert!(
            matches!(error, Error::Timeout(t) if t == Duration::from_millis(100)),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn the_lookup_budget_is_at_most_two_seconds() {
        let (lookup, _index, _handle) = mk_lookup(Duration::from_secs(10));
        assert_eq!(lookup.timeout, MAX_TIMEOUT);
    }

    #[test]
    fn an_unlabelled_namespace_is_remembered_for_the_ttl_only() {
        let start = Instant::now();
        let mut unlabelled = Unlabelled::new(Duration::from_secs(10), 4);
        unlabelled.remember("sandbox", start);
        assert!(unlabelled.remembers("sandbox", start + Duration::from_secs(9)));
        assert!(!unlabelled.remembers("sandbox", start + Duration::from_secs(10)));
        assert!(!unlabelled.remembers("other", start));
    }

    #[test]
    fn the_memory_of_unlabelled_namespaces_stays_bounded() {
        let start = Instant::now();
        let mut unlabelled = Unlabelled::new(Duration::from_secs(10), 4);
        for i in 0..4 {
            unlabelled.remember(&format!("ns-{i}"), start + Duration::from_millis(i));
        }
        unlabelled.remember("ns-4", start + Duration::from_millis(4));
        assert_eq!(unlabelled.seen.len(), 4, "full: the oldest made way");
        assert!(!unlabelled.remembers("ns-0", start + Duration::from_millis(5)));
        assert!(unlabelled.remembers("ns-4", start + Duration::from_millis(5)));

        // Expired entries go before any live one.
        let later = start + Duration::from_secs(10) + Duration::from_millis(2);
        unlabelled.remember("ns-5", later);
        assert_eq!(unlabelled.seen.len(), 3, "{:?}", unlabelled.seen);
        assert!(unlabelled.remembers("ns-4", later));
        assert!(unlabelled.remembers("ns-5", later));

        let mut flood = Unlabelled::new(UNLABELLED_TTL, MAX_UNLABELLED);
        for i in 0..3 * MAX_UNLABELLED {
            flood.remember(&format!("flood-{i}"), start);
        }
        assert_eq!(flood.seen.len(), MAX_UNLABELLED);
    }
}
