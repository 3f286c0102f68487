//! A fake Kubernetes API server for tests: lists, single reads and watches
//! answered from an in-memory set of objects whose changes the test makes,
//! with every request recorded. Served to kube-rs through the `tower-test`
//! mock ([`FakeApi::client`]) or over plain HTTP on loopback
//! ([`FakeApi::serve_http`], for a kubeconfig). Shared by the follower's
//! unit tests and the integration tests (`#[path]`), so it names no crate
//! item of rollgate.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Frame;
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use tokio::sync::Notify;

pub type FakeBody = UnsyncBoxBody<Bytes, Infallible>;

const RESTARTED: &str = "2026-11-23T10:00:00Z";

#[derive(Default)]
struct ApiState {
    resource_version: u64,
    /// Collection path → name → object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    /// (resourceVersion, collection, type, object), in order.
    events: Vec<(u64, String, &'static str, Value)>,
    /// Bumped to end every open watch (a disconnect).
    disconnects: u64,
    /// Every request, as `METHOD path?query`.
    requests: Vec<String>,
    /// Answer every request 403, as without RBAC.
    forbidden: bool,
}

/// An in-memory API server for one namespace.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<ApiState>>,
    changed: Arc<Notify>,
}

fn query_params(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            (k.to_owned(), v)
        })
        .collect()
}

/// True when `object` passes the request's field and label selectors.
fn selected(object: &Value, params: &BTreeMap<String, String>) -> bool {
    let name_ok = match params.get("fieldSelector") {
        Some(f) => f
            .strip_prefix("metadata.name=")
            .is_some_and(|n| object["metadata"]["name"] == n),
        None => true,
    };
    let labels_ok = params.get("labelSelector").is_none_or(|s| {
        s.split(',')
            .filter(|kv| !kv.is_empty())
            .all(|kv| match kv.split_once('=') {
                Some((k, v)) => object["metadata"]["labels"][k] == v,
                None => false,
            })
    });
    name_ok && labels_ok
}

impl FakeApi {
    /// The collection path of an object of `kind` in `namespace`.
    fn collection_of(kind: &str, namespace: &str) -> String {
        let core = format!("/api/v1/namespaces/{namespace}");
        let apps = format!("/apis/apps/v1/namespaces/{namespace}");
        let batch = format!("/apis/batch/v1/namespaces/{namespace}");
        match kind {
            "Namespace" => "/api/v1/namespaces".to_owned(),
            "Pod" => format!("{core}/pods"),
            "Deployment" => format!("{apps}/deployments"),
            "StatefulSet" => format!("{apps}/statefulsets"),
            "DaemonSet" => format!("{apps}/daemonsets"),
            "ReplicaSet" => format!("{apps}/replicasets"),
            "ControllerRevision" => format!("{apps}/controllerrevisions"),
            "CronJob" => format!("{batch}/cronjobs"),
            other => panic!("the fake API does not serve {other}"),
        }
    }

    /// Creates or replaces `object` (ADDED or MODIFIED).
    pub fn apply(&self, mut object: Value) {
        let mut s = self.state.lock().unwrap();
        s.resource_version += 1;
        let rv = s.resource_version;
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        let collection = Self::collection_of(
            object["kind"].as_str().unwrap_or_default(),
            object["metadata"]["namespace"].as_str().unwrap_or_default(),
        );
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let existed = s
            .objects
            .entry(collection.clone())
            .or_default()
            .insert(name, object.clone())
            .is_some();
        let kind = if existed { "MODIFIED" } else { "ADDED" };
        s.events.push((rv, collection, kind, object));
        drop(s);
        self.changed.notify_waiters();
    }

    /// Creates or replaces `object` for reads only: no watch hears of it,
    /// as when a watch is behind the API server.
    pub fn apply_unwatched(&self, mut object: Value) {
        let mut s = self.state.lock().unwrap();
        s.resource_version += 1;
        object["metadata"]["resourceVersion"] = s.resource_version.to_string().into();
        let collection = Self::collection_of(
            object["kind"].as_str().unwrap_or_default(),
            object["metadata"]["namespace"].as_str().unwrap_or_default(),
        );
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        s.objects
            .entry(collection)
            .or_default()
            .insert(name, object);
    }

    /// Deletes `name` of `kind` in `namespace` (DELETED).
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let mut s = self.state.lock().unwrap();
        let collection = Self::collection_of(kind, namespace);
        let Some(mut object) = s.objects.get_mut(&collection).and_then(|c| c.remove(name)) else {
            return;
        };
        s.resource_version += 1;
        let rv = s.resource_version;
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        s.events.push((rv, collection, "DELETED", object));
        drop(s);
        self.changed.notify_waiters();
    }

    /// Ends every open watch, as a dropped connection would.
    pub fn disconnect(&self) {
        self.state.lock().unwrap().disconnects += 1;
        self.changed.notify_waiters();
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// A kube client served by this fake.
    pub fn client(&self) -> kube::Client {
        let (service, mut handle) =
            tower_test::mock::pair::<Request<kube::client::Body>, Response<FakeBody>>();
        let api = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let api = api.clone();
                tokio::spawn(async move {
                    let uri = request.uri();
                    let response = api.respond(
                        request.method().as_str(),
                        uri.path(),
                        uri.query().unwrap_or_default(),
                    );
                    send.send_response(response)
                });
            }
        });
        kube::Client::new(service, "production")
    }

    /// Answers every request 403, as the API server does without RBAC.
    pub fn forbid(&self) {
        self.state.lock().unwrap().forbidden = true;
    }

    /// Serves the fake over plain HTTP on a loopback port, for a
    /// kubeconfig's `server: http://…`; answers its address.
    pub async fn serve_http(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let api = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let api = api.clone();
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let uri = request.uri();
                        let response = api.respond(
                            request.method().as_str(),
                            uri.path(),
                            uri.query().unwrap_or_default(),
                        );
                        async move { Ok::<_, Infallible>(response) }
                    });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        addr
    }

    /// The answer to `method path?query`.
    pub fn respond(&self, method: &str, path: &str, query: &str) -> Response<FakeBody> {
        let path = path.to_owned();
        let params = query_params(query);
        let json_response = |status: u16, body: Value| {
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(
                    http_body_util::Full::new(Bytes::from(body.to_string()))
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                )
                .unwrap()
        };
        let mut s = self.state.lock().unwrap();
        s.requests.push(format!("{method} {path}?{query}"));
        if s.forbidden {
            return json_response(
                403,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                       "message": "pods is forbidden: User \"system:serviceaccount:rollgate:rollgate\" cannot list resource \"pods\""}),
            );
        }
        let single = s.objects.keys().find_map(|c| {
            let name = path.strip_prefix(c.as_str())?.strip_prefix('/')?;
            (!name.contains('/')).then(|| (c.clone(), name.to_owned()))
        });
        if let Some((collection, name)) = single {
            return match s.objects[&collection].get(&name) {
                Some(object) => json_response(200, object.clone()),
                None => json_response(
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "NotFound", "code": 404, "message": format!("{name} not found")}),
                ),
            };
        }
        if params.get("watch").map(String::as_str) != Some("true") {
            let items: Vec<Value> = s
                .objects
                .get(&path)
                .into_iter()
                .flat_map(|c| c.values())
                .filter(|o| selected(o, &params))
                .cloned()
                .collect();
            let rv = s.resource_version.to_string();
            return json_response(
                200,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": rv}, "items": items}),
            );
        }
        let since: u64 = params
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let opened_at = s.disconnects;
        drop(s);
        let api = self.clone();
        let stream = futures::stream::unfold(since, move |mut seen| {
            let (api, path, params) = (api.clone(), path.clone(), params.clone());
            async move {
                loop {
                    // Registered before the state is read, so no change is missed.
                    let notified = api.changed.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    {
                        let s = api.state.lock().unwrap();
                        if s.disconnects != opened_at {
                            return None;
                        }
                        let lines: String = s
                            .events
                            .iter()
                            .filter(|(rv, c, _, o)| {
                                *rv > seen && *c == path && selected(o, &params)
                            })
                            .map(|(_, _, kind, o)| {
                                format!("{}\n", json!({"type": kind, "object": o}))
                            })
                            .collect();
                        seen = s.resource_version;
                        if !lines.is_empty() {
                            let frame = Frame::data(Bytes::from(lines));
                            return Some((Ok::<_, Infallible>(frame), seen));
                        }
                    }
                    notified.await;
                }
            }
        });
        Response::builder()
            .header("content-type", "application/json")
            .body(http_body_util::StreamBody::new(stream).boxed_unsync())
            .unwrap()
    }
}
