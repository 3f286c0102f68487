//! The parts of a workload object the gate reads, and nothing else.
//!
//! A review carries the whole Deployment, StatefulSet or DaemonSet twice
//! (`object` and `oldObject`, status included). The gate needs their name,
//! labels and pod template only, so [`Workload`] is the object type of the
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

/// A Deployment, StatefulSet or DaemonSet as the gate sees it.
#[derive(Debug, Clone, Deserialize)]
pub struct Workload {
    /// Name, namespace and labels; the rest of the metadata is skipped.
    #[serde(deserialize_with = "narrow_meta")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<WorkloadSpec>,
}

#[derive(Debug, Clone, Deserialize)]
struct WorkloadSpec {
    #[serde(default)]
    template: Option<Box<RawValue>>,
}

impl Workload {
    /// `spec.template` as sent, if there is one (`null` counts as none).
    pub fn template(&self) -> Option<&RawValue> {
        self.spec.as_ref()?.template.as_deref()
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
/// `Workload` is one of three kinds, so, like kube's `DynamicObject`, it
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

/// The parts of a pod template the diff reads, borrowed from its JSON.
#[derive(Debug, Default, Deserialize)]
pub(super) struct TemplateParts<'a> {
    #[serde(borrow, default)]
    pub metadata: Option<TemplateMeta<'a>>,
    #[serde(borrow, default)]
    pub spec: Option<PodParts<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct TemplateMeta<'a> {
    #[serde(borrow, default)]
    pub annotations: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PodParts<'a> {
    #[serde(borrow, default)]
    pub containers: Option<Vec<ContainerParts<'a>>>,
    #[serde(borrow, default)]
    pub init_containers: Option<Vec<ContainerParts<'a>>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ContainerParts<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub image: Option<Cow<'a, str>>,
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

    pub fn containers(&self) -> &[ContainerParts<'a>] {
        self.spec
            .as_ref()
            .and_then(|s| s.containers.as_deref())
            .unwrap_or_default()
    }

    pub fn init_containers(&self) -> &[ContainerParts<'a>] {
        self.spec
            .as_ref()
            .and_then(|s| s.init_containers.as_deref())
            .unwrap_or_default()
    }
}
