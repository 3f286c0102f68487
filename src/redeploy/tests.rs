use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

use super::*;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn mk_client() -> (Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

fn mk_meta_list(items: &[(&str, Value)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(name, labels)| {
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                   "metadata": {"name": name, "namespace": "production", "labels": labels}})
        })
        .collect();
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {}, "items": items})
}

/// Answers one request after checking method and path (and returns the request).
async fn answer(
    handle: &mut Handle,
    method: http::Method,
    path: &str,
    status: u16,
    body: Value,
) -> (http::request::Parts, Value) {
    let (request, send) = handle
        .next_request()
        .await
        .expect("a request to the API server");
    let (parts, body_in) = request.into_parts();
    assert_eq!(parts.method, method, "method of {path}");
    assert_eq!(parts.uri.path(), path);
    let bytes = body_in.collect_bytes().await.unwrap();
    let sent = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
    (parts, sent)
}

#[tokio::test]
async fn workloads_are_found_by_the_application_label_the_webhook_reads() {
    let (client, mut handle) = mk_client();
    let server = tokio::spawn(async move {
        let (parts, _) = answer(
            &mut handle,
            http::Method::GET,
            "/apis/apps/v1/namespaces/production/deployments",
            200,
            mk_meta_list(&[
                (
                    "checkout-api",
                    json!({"app.kubernetes.io/name": "checkout-api"}),
                ),
                (
                    "checkout-worker",
                    json!({"app.kubernetes.io/name": "checkout-worker", "app": "checkout-api"}),
                ),
            ]),
        )
        .await;
        let accept = parts
            .headers
            .get(http::header::ACCEPT)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(
            accept.contains("PartialObjectMetadataList"),
            "metadata only: {accept}"
        );
        answer(
            &mut handle,
            http::Method::GET,
            "/apis/apps/v1/namespaces/production/statefulsets",
            200,
            mk_meta_list(&[]),
        )
        .await;
        answer(
            &mut handle,
            http::Method::GET,
            "/apis/apps/v1/namespaces/production/daemonsets",
            200,
            mk_meta_list(&[("checkout-api", json!({}))]),
        )
        .await;
    });
    let found = find(&client, "production", "checkout-api").await.unwrap();
    assert_eq!(
        found,
        vec![
            Workload {
                kind: WorkloadKind::Deployment,
                name: "checkout-api".into()
            },
            Workload {
                kind: WorkloadKind::DaemonSet,
                name: "checkout-api".into()
            },
        ],
        "app.kubernetes.io/name wins over app; a workload without labels is its own application"
    );
    tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_restart_patches_the_pod_template_with_grant_and_operation_as_rollgate() {
    let (client, mut handle) = mk_client();
    let server = tokio::spawn(async move {
        let (parts, sent) = answer(
            &mut handle,
            http::Method::PATCH,
            "/apis/apps/v1/namespaces/production/deployments/checkout-api",
            200,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "checkout-api"}}),
        )
        .await;
        assert!(
            parts
                .uri
                .query()
                .unwrap_or_default()
                .contains("fieldManager=rollgate"),
            "{:?}",
            parts.uri
        );
        assert_eq!(
            parts.headers.get(http::header::CONTENT_TYPE).unwrap(),
            "application/merge-patch+json"
        );
        let annotations = &sent["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["rollgate.io/grant"], "jti-1");
        assert_eq!(annotations["rollgate.io/operation"], "op-1");
        let restarted: jiff::Timestamp = annotations["kubectl.kubernetes.io/restartedAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((jiff::Timestamp::now().as_second() - restarted.as_second()).abs() < 60);
    });
    let workload = Workload {
        kind: WorkloadKind::Deployment,
        name: "checkout-api".into(),
    };
    restart(&client, "production", &workload, "jti-1", "op-1")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_webhook_denial_of_the_patch_is_passed_on() {
    let (client, mut handle) = mk_client();
    let server = tokio::spawn(async move {
        answer(
            &mut handle,
            http::Method::PATCH,
            "/apis/apps/v1/namespaces/production/statefulsets/db",
            403,
            json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 403, "reason": "Forbidden",
                   "message": "admission webhook \"rollgate.io\" denied the request: the grant was revoked"}),
        )
        .await;
    });
    let workload = Workload {
        kind: WorkloadKind::StatefulSet,
        name: "db".into(),
    };
    let err = restart(&client, "production", &workload, "jti-1", "op-1")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Refused(m) if m.contains("the grant was revoked")),
        "{err}"
    );
    tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn one_workload_is_chosen_or_the_caller_must_name_it() {
    let found = vec![
        Workload {
            kind: WorkloadKind::Deployment,
            name: "web".into(),
        },
        Workload {
            kind: WorkloadKind::StatefulSet,
            name: "web-cache".into(),
        },
    ];
    let none = Selector::default();
    let err = choose("production", "web", found.clone(), &none).unwrap_err();
    assert!(
        err.to_string()
            .contains("Deployment/web, StatefulSet/web-cache"),
        "{err}"
    );
    let by_kind = Selector {
        kind: Some(WorkloadKind::StatefulSet),
        name: None,
    };
    assert_eq!(
        choose("production", "web", found.clone(), &by_kind)
            .unwrap()
            .name,
        "web-cache"
    );
    let by_name = Selector {
        kind: None,
        name: Some("web".into()),
    };
    assert_eq!(
        choose("production", "web", found.clone(), &by_name)
            .unwrap()
            .kind,
        WorkloadKind::Deployment
    );
    assert!(matches!(
        choose("production", "web", vec![], &none),
        Err(Error::NotFound { .. })
    ));
}
