//! Kubernetes identity: [`TokenReviewer`] authenticates a bearer token with a
//! TokenReview, so the username is exactly the one the API server reports at
//! admission; [`AccessReviewer`] decides approvers and auditors with a
//! SubjectAccessReview on rollgate's virtual resources (API group
//! `rollgate.io`: `tickets` verb `approve`, `audit` verb `get`), so
//! RoleBindings choose them. Both cache answers briefly (bounded), so a busy
//! approver does not cost an API call per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};

use super::{Authenticator, Authorizer, Caller, Error, Role};

/// API group of rollgate's virtual resources in RBAC rules.
pub const RBAC_GROUP: &str = "rollgate.io";
/// Longest an answer is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Most answers kept; the cache is emptied when it fills.
const CACHE_CAPACITY: usize = 10_000;

/// A small time-bounded cache; entries older than [`CACHE_TTL`] are ignored.
#[derive(Debug)]
struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    ttl: Duration,
}

impl<K: std::hash::Hash + Eq, V: Clone> TtlCache<K, V> {
    fn new(ttl: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| v.clone())
    }

    fn put(&self, key: K, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_CAPACITY {
            entries.clear();
        }
        entries.insert(key, (value, Instant::now()));
    }
}

/// POSTs a review object and returns the API server's answer; any failure
/// to get one is `Unavailable` (never a denial).
async fn create_review<K>(client: &Client, review: &K, kind: &str) -> Result<K, Error>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let api: Api<K> = Api::all(client.clone());
    api.create(&PostParams::default(), review)
        .await
        .map_err(|e| {
            Error::Unavailable(format!("{kind} failed: {}", crate::error::error_chain(&e)))
        })
}

/// Authenticates bearer tokens with a Kubernetes TokenReview.
pub struct TokenReviewer {
    client: Client,
    /// Audiences the token must be meant for; empty means the API server's own.
    audiences: Vec<String>,
    /// Keyed by the token's SHA-256, never the token itself.
    cache: TtlCache<[u8; 32], Caller>,
}

impl TokenReviewer {
    pub fn new(client: Client, audiences: Vec<String>) -> Self {
        Self {
            client,
            audiences,
            cache: TtlCache::new(CACHE_TTL),
        }
    }
}

#[async_trait]
impl Authenticator for TokenReviewer {
    async fn authenticate(&self, token: &str) -> Result<Caller, Error> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(caller) = self.cache.get(&key) {
            return Ok(caller);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let answer = create_review(&self.client, &review, "TokenReview").await?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Err(Error::InvalidToken);
        }
        let user = status.user.unwrap_or_default();
        let username = user
            .username
            .filter(|u| !u.is_empty())
            .ok_or(Error::InvalidToken)?;
        let caller = Caller {
            username,
            groups: user.groups.unwrap_or_default(),
        };
        self.cache.put(key, caller.clone());
        Ok(caller)
    }
}

/// Decides roles with SubjectAccessReviews on rollgate's virtual resources.
pub struct AccessReviewer {
    client: Client,
    cache: TtlCache<(String, Vec<String>, Role, Option<String>), bool>,
}

impl AccessReviewer {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: TtlCache::new(CACHE_TTL),
        }
    }
}

/// The RBAC resource and verb that stand for `role`.
pub fn rbac_attributes(role: Role) -> (&'static str, &'static str) {
    match role {
        Role::Approver => ("tickets", "approve"),
        Role::Auditor => ("audit", "get"),
    }
}

#[async_trait]
impl Authorizer for AccessReviewer {
    async fn allows(
        &self,
        caller: &Caller,
        role: Role,
        namespace: Option<&str>,
    ) -> Result<bool, Error> {
        let key = (
            caller.username.clone(),
            caller.groups.clone(),
            role,
            namespace.map(str::to_owned),
        );
        if let Some(allowed) = self.cache.get(&key) {
            return Ok(allowed);
        }
        let (resource, verb) = rbac_attributes(role);
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(caller.username.clone()),
                groups: Some(caller.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(RBAC_GROUP.into()),
                    resource: Some(resource.into()),
                    verb: Some(verb.into()),
                    namespace: namespace.map(str::to_owned),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = create_review(&self.client, &review, "SubjectAccessReview").await?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        self.cache.put(key, allowed);
        Ok(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn mk_client() -> (Client, Handle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (Client::new(service, "default"), handle)
    }

    /// Answers one request after checking its method, path and body.
    async fn expect_post(
        handle: &mut Handle,
        path: &str,
        check: impl FnOnce(&Value),
        answer: Value,
    ) {
        let (request, send) = handle
            .next_request()
            .await
            .expect("a request to the API server");
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.uri().path(), path);
        let body = request.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        check(&body);
        send.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
    }

    #[tokio::test]
    async fn a_token_review_names_the_user_and_is_cached() {
        let (client, mut handle) = mk_client();
        let reviewer = TokenReviewer::new(client, Vec::new());
        let server = tokio::spawn(async move {
            expect_post(
                &mut handle,
                "/apis/authentication.k8s.io/v1/tokenreviews",
                |body| {
                    assert_eq!(body["kind"], "TokenReview");
                    assert_eq!(body["spec"]["token"], "secret-token");
                },
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {},
                       "status": {"authenticated": true, "user": {"username": "alice@example.com", "groups": ["oidc:devs"]}}}),
            )
            .await;
            handle
        });
        let caller = reviewer.authenticate("secret-token").await.unwrap();
        assert_eq!(caller.username, "alice@example.com");
        assert_eq!(caller.groups, vec!["oidc:devs".to_string()]);
        let _handle = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
        // Cached: no second request reaches the (now unanswered) mock.
        let again = tokio::time::timeout(
            Duration::from_secs(10),
            reviewer.authenticate("secret-token"),
        )
        .await;
        assert_eq!(again.unwrap().unwrap().username, "alice@example.com");
    }

    #[tokio::test]
    async fn an_unauthenticated_token_is_invalid() {
        let (client, mut handle) = mk_client();
        let reviewer = TokenReviewer::new(client, Vec::new());
        let server = tokio::spawn(async move {
            expect_post(
                &mut handle,
                "/apis/authentication.k8s.io/v1/tokenreviews",
                |_| {},
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {},
                       "status": {"authenticated": false, "error": "token expired"}}),
            )
            .await;
        });
        assert!(matches!(
            reviewer.authenticate("old").await,
            Err(Error::InvalidToken)
        ));
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn approvers_are_decided_by_a_subject_access_review_on_the_virtual_resource() {
        let (client, mut handle) = mk_client();
        let reviewer = AccessReviewer::new(client);
        let server = tokio::spawn(async move {
            expect_post(
                &mut handle,
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                |body| {
                    let spec = &body["spec"];
                    assert_eq!(spec["user"], "bob@example.com");
                    assert_eq!(spec["groups"], json!(["leads"]));
                    assert_eq!(
                        spec["resourceAttributes"],
                        json!({"group": "rollgate.io", "resource": "tickets", "verb": "approve", "namespace": "production"})
                    );
                },
                json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {},
                       "status": {"allowed": true}}),
            )
            .await;
            expect_post(
                &mut handle,
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                |body| assert_eq!(body["spec"]["resourceAttributes"]["resource"], "audit"),
                json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {},
                       "status": {"allowed": false, "reason": "no RoleBinding"}}),
            )
            .await;
        });
        let bob = Caller {
            username: "bob@example.com".into(),
            groups: vec!["leads".into()],
        };
        assert!(
            reviewer
                .allows(&bob, Role::Approver, Some("production"))
                .await
                .unwrap()
        );
        assert!(
            !reviewer
                .allows(&bob, Role::Auditor, Some("production"))
                .await
                .unwrap()
        );
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
        // Both answers are cached.
        assert!(
            reviewer
                .allows(&bob, Role::Approver, Some("production"))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn an_unreachable_api_server_is_unavailable_not_a_denial() {
        let (client, handle) = mk_client();
        drop(handle);
        let reviewer = TokenReviewer::new(client, Vec::new());
        assert!(matches!(
            reviewer.authenticate("t").await,
            Err(Error::Unavailable(_))
        ));
    }
}
