//! The webhook's first pass over a review: the fields [`policy::screen`]
//! reads, borrowed from the body. The two objects are skipped by the parser,
//! never built, so a request that is not gated costs a scan of its bytes and
//! no allocation beyond its answer.
//!
//! Only when the screen says the request may be gated does the webhook parse
//! the whole review into kube's [`AdmissionRequest`].
//!
//! [`AdmissionRequest`]: kube::core::admission::AdmissionRequest

use std::borrow::Cow;

use kube::core::admission::{AdmissionResponse, Operation};
use kube::core::{Status, TypeMeta};
use serde::Deserialize;

use crate::policy::{self, LabelledNamespaces, Policy, Target, UngatedReason};

/// An AdmissionReview's envelope and the request's target. Fields are
/// required where kube's types require them, so a body this pass accepts is
/// one whose envelope the full parse would accept too.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewHead<'a> {
    #[serde(borrow)]
    api_version: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    request: RequestHead<'a>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestHead<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(borrow)]
    kind: KindHead<'a>,
    #[serde(borrow, default)]
    sub_resource: Option<Cow<'a, str>>,
    operation: Operation,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct KindHead<'a> {
    #[serde(borrow)]
    group: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

impl<'a> ReviewHead<'a> {
    /// The head of `body`, or `None` when it is not a review this pass can
    /// read (the full parse then says what is wrong with it).
    pub fn parse(body: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }

    pub fn kind(&self) -> &str {
        &self.request.kind.kind
    }

    pub fn operation(&self) -> &Operation {
        &self.request.operation
    }

    /// The request's namespace; empty for a cluster-scoped object.
    pub fn namespace(&self) -> &str {
        self.request.namespace.as_deref().unwrap_or_default()
    }

    /// Why the request is not gated, when its target alone says so.
    pub fn ungated(
        &self,
        policy: &Policy,
        labelled: &dyn LabelledNamespaces,
    ) -> Option<UngatedReason> {
        let request = &self.request;
        let target = Target {
            group: &request.kind.group,
            kind: &request.kind.kind,
            sub_resource: request.sub_resource.as_deref(),
            operation: &request.operation,
            namespace: request.namespace.as_deref().unwrap_or_default(),
        };
        policy::screen(&target, policy, labelled).err()
    }

    /// The answer that lets the request through, as
    /// `AdmissionResponse::from(&request)` would give it.
    pub fn allow(&self) -> AdmissionResponse {
        // kube's response is non-exhaustive and built from a full request;
        // `invalid` is its one constructor that needs none, then made allowed.
        let mut response = AdmissionResponse::invalid("");
        response.types = TypeMeta {
            api_version: self.api_version.clone().into_owned(),
            kind: self.kind.clone().into_owned(),
        };
        response.uid = self.request.uid.clone().into_owned();
        response.allowed = true;
        response.result = Status::default();
        response
    }
}

#[cfg(test)]
mod tests {
    use kube::core::DynamicObject;
    use kube::core::admission::{AdmissionRequest, AdmissionReview};

    use super::*;

    const FIXTURE: &str = include_str!("../../tests/data/restart-review.json");

    fn full_parse(body: &str) -> AdmissionRequest<DynamicObject> {
        let review: AdmissionReview<DynamicObject> = serde_json::from_str(body).unwrap();
        review.try_into().unwrap()
    }

    fn in_namespace(namespace: &str) -> String {
        FIXTURE.replace(
            "\"namespace\":\"production\"",
            &format!("\"namespace\":\"{namespace}\""),
        )
    }

    #[test]
    fn the_allowed_answer_is_the_one_kube_builds_from_the_full_request() {
        let body = in_namespace("staging");
        let head = ReviewHead::parse(body.as_bytes()).unwrap();
        let expected = AdmissionResponse::from(&full_parse(&body)).into_review();
        assert_eq!(
            serde_json::to_value(head.allow().into_review()).unwrap(),
            serde_json::to_value(expected).unwrap()
        );
    }

    #[test]
    fn the_screen_on_the_head_agrees_with_the_full_classification() {
        let mut policy = Policy::default();
        policy.protected_namespaces.insert("production".into());
        let labelled = std::collections::BTreeSet::from(["payments".to_owned()]);
        for namespace in ["production", "payments", "staging"] {
            let body = in_namespace(namespace);
            let head = ReviewHead::parse(body.as_bytes()).unwrap();
            let req = crate::admission::parse_review(body.as_bytes()).unwrap();
            let full = policy::classify(&req, &policy, &labelled);
            match head.ungated(&policy, &labelled) {
                Some(reason) => assert_eq!(full, policy::Gate::Ungated(reason), "{namespace}"),
                None => assert!(matches!(full, policy::Gate::Gated(_)), "{namespace}"),
            }
        }
        assert_eq!(
            ReviewHead::parse(in_namespace("staging").as_bytes())
                .unwrap()
                .ungated(&policy, &labelled),
            Some(UngatedReason::NamespaceNotProtected)
        );
    }

    #[test]
    fn the_webhook_reads_a_request_as_kube_reads_it() {
        for body in [FIXTURE.to_owned(), in_namespace("staging")] {
            let ours = crate::admission::parse_review(body.as_bytes()).unwrap();
            let kubes = full_parse(&body);
            assert_eq!(
                serde_json::to_value(AdmissionResponse::from(&ours).into_review()).unwrap(),
                serde_json::to_value(AdmissionResponse::from(&kubes).into_review()).unwrap()
            );
            assert_eq!(
                (&ours.name, &ours.namespace, &ours.user_info, ours.dry_run),
                (
                    &kubes.name,
                    &kubes.namespace,
                    &kubes.user_info,
                    kubes.dry_run
                )
            );
            let (new, kube_new) = (ours.object.unwrap(), kubes.object.unwrap());
            assert_eq!(new.metadata.labels, kube_new.metadata.labels);
            let template: serde_json::Value = serde_json::from_str(
                new.template(policy::WorkloadKind::Deployment)
                    .unwrap()
                    .get(),
            )
            .unwrap();
            assert_eq!(template, kube_new.data["spec"]["template"]);
        }
        assert_eq!(
            crate::admission::parse_review(
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#
            )
            .unwrap_err(),
            "AdmissionReview has no request"
        );
    }

    #[test]
    fn escaped_strings_are_read_as_the_full_parse_reads_them() {
        // An escaped namespace cannot be borrowed; it must still be compared unescaped.
        let body = FIXTURE.replace(
            "\"namespace\":\"production\"",
            "\"namespace\":\"pro\\u0064uction\"",
        );
        let mut policy = Policy::default();
        policy.protected_namespaces.insert("production".into());
        let head = ReviewHead::parse(body.as_bytes()).unwrap();
        assert_eq!(
            head.ungated(&policy, &std::collections::BTreeSet::new()),
            None
        );
    }

    #[test]
    fn a_body_without_the_envelope_kube_requires_is_left_to_the_full_parse() {
        for body in [
            r#"{"request":{"uid":"u","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"UPDATE","namespace":"staging"}}"#,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"UPDATE"}}"#,
            "not json",
        ] {
            assert!(ReviewHead::parse(body.as_bytes()).is_none(), "{body}");
        }
    }
}
