//! The parts of a workload object the gate reads, and nothing else.
//!
//! A review carries the whole object twice (`object` and `oldObject`,
//! status included). The gate needs their name, labels and pod template (a
//! Pod's containers) only, so [`Workload`] is the object type of the
//! webhook's kube [`AdmissionRequest`]: the parser skips every other field
//! without building it, and keeps each pod template as its raw JSON text,
//! which [`super::change::diff`] reads with borrowing, narrow types.
//!
//! [`AdmissionRequest`]: kube::core::admission::AdmissionRequest

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ApiResource, DynamicResourceScope, Resource};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::WorkloadKind;

/// A gated object (workload, CronJob or Pod) as the gate sees it.
#[derive(Debug, Clone, Deserialize)]
pub struct Workload {
    /// Name, namespace and labels; the rest of the metadata is skipped.
    #[serde(deserialize_with = "narrow_meta")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<SpecParts>,
}

/// The parts of a spec that decide what runs, by kind: the pod template of a
/// workload (`template`) or CronJob (`jobTemplate.spec.template`), a Pod's
/// own containers. Each kept as raw JSON, read only when it differs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecParts {
    #[serde(default)]
    template: Option<Box<RawValue>>,
    #[serde(default)]
    job_template: Option<JobTemplate>,
    #[serde(default)]
    containers: Option<Box<RawValue>>,
    #[serde(default)]
    init_containers: Option<Box<RawValue>>,
    #[serde(default)]
    ephemeral_containers: Option<Box<RawValue>>,
}

#[derive(Debug, Clone, Deserialize)]
struct JobTemplate {
    #[serde(default)]
    spec: Option<JobSpec>,
}

#[derive(Debug, Clone, Deserialize)]
struct JobSpec {
    #[serde(default)]
    template: Option<Box<RawValue>>,
}

/// A Pod's container lists as sent (each `None` when absent or `null`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PodContainers<'a> {
    pub containers: Option<&'a RawValue>,
    pub init_containers: Option<&'a RawValue>,
    pub ephemeral_containers: Option<&'a RawValue>,
}

impl Workload {
    /// The pod template of a `kind` object as sent, if there is one (`null`
    /// counts as none): `spec.template`, or a CronJob's
    /// `spec.jobTemplate.spec.template`; a Pod has none.
    pub fn template(&self, kind: WorkloadKind) -> Option<&RawValue> {
        let spec = self.spec.as_ref()?;
        match kind {
            WorkloadKind::Pod => None,
            WorkloadKind::CronJob => spec
                .job_template
                .as_ref()?
                .spec
                .as_ref()?
                .template
                .as_deref(),
            _ => spec.template.as_deref(),
        }
    }

    /// A Pod's containers, init containers and ephemeral containers.
    pub fn pod_containers(&self) -> PodContainers<'_> {
        match &self.spec {
            None => PodContainers::default(),
            Some(spec) => PodContainers {
                containers: spec.containers.as_deref(),
                init_containers: spec.init_containers.as_deref(),
                ephemeral_containers: spec.ephemeral_containers.as_deref(),
            },
        }
    }
}

/// The metadata fields rollgate reads (`managedFields`, often the largest
/// part of an object, is never built).
#[derive(Deserialize)]
struct MetaParts {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

fn narrow_meta<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let parts = MetaParts::deserialize(deserializer)?;
    Ok(ObjectMeta {
        name: parts.name,
        namespace: parts.namespace,
        labels: parts.labels,
        ..ObjectMeta::default()
    })
}

/// kube's admission types need their object type to be a [`Resource`]. A
/// `Workload` is one of several kinds, so, like kube's `DynamicObject`, it
/// learns its kind at runtime.
impl Resource for Workload {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The annotations of a pod template, borrowed from its JSON.
#[derive(Debug, Default, Deserialize)]
pub(super) struct TemplateParts<'a> {
    #[serde(borrow, default)]
    pub metadata: Option<TemplateMeta<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct TemplateMeta<'a> {
    #[serde(borrow, default)]
    pub annotations: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
}

impl<'a> TemplateParts<'a> {
    pub fn parse(template: &'a RawValue) -> Option<Self> {
        serde_json::from_str(template.get()).ok()
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get(key)
            .map(|v| v.as_ref())
    }
}
