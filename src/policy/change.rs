//! The pod-template diff between `oldObject` and `object`: restart, image
//! changes per container (by name, in `containers` and `initContainers`),
//! and whether anything else in the template moved. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use serde::{Deserialize, Serialize};

use super::RESTARTED_AT;

/// What kind of gated change a diff is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeKind {
    Restart,
    Image,
    Both,
    /// Some other pod-template change, gated only by `gateAnyTemplateChange`.
    Template,
}

impl ChangeKind {
    /// The ticket `action` that covers this change.
    pub fn action(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Image => "image",
            Self::Both | Self::Template => "any",
        }
    }

    /// A phrase for messages: "restart", "change the image of".
    pub fn verb(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Image => "change the image of",
            Self::Both => "restart and change the image of",
            Self::Template => "change the pod template of",
        }
    }
}

/// One container whose image differs; `None` means the container is absent on that side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageChange {
    pub container: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    pub previous_image: Option<String>,
    pub current_image: Option<String>,
}

/// The parts of a template change rollgate cares about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TemplateDiff {
    /// The `restartedAt` annotation was added, changed or removed.
    pub restarted: bool,
    /// Its new value, if any (compared as a string, never parsed).
    pub restarted_at: Option<String>,
    pub images: Vec<ImageChange>,
    /// Anything at all in `spec.template` differs.
    pub template_changed: bool,
}

impl TemplateDiff {
    /// The gated change this diff amounts to, if any (ignoring `Template`).
    pub fn kind(&self) -> Option<ChangeKind> {
        match (self.restarted, !self.images.is_empty()) {
            (true, true) => Some(ChangeKind::Both),
            (true, false) => Some(ChangeKind::Restart),
            (false, true) => Some(ChangeKind::Image),
            (false, false) => None,
        }
    }

    /// Like [`TemplateDiff::kind`], but a plain template change counts too.
    pub fn kind_or_template(&self) -> ChangeKind {
        self.kind().unwrap_or(ChangeKind::Template)
    }
}

/// Diffs the pod templates of two workload objects (`data` of a DynamicObject).
/// `None` when either side has no readable `spec.template`.
pub fn diff(old: &serde_json::Value, new: &serde_json::Value) -> Option<TemplateDiff> {
    let old_raw = old.get("spec")?.get("template")?;
    let new_raw = new.get("spec")?.get("template")?;
    if old_raw == new_raw {
        return Some(TemplateDiff::default());
    }
    let old_tpl = PodTemplateSpec::deserialize(old_raw).ok()?;
    let new_tpl = PodTemplateSpec::deserialize(new_raw).ok()?;

    let restarted_at = |t: &PodTemplateSpec| {
        t.metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(RESTARTED_AT))
            .cloned()
    };
    let (before, after) = (restarted_at(&old_tpl), restarted_at(&new_tpl));

    let empty = Vec::new();
    let spec_of = |t: &PodTemplateSpec| t.spec.clone();
    let (old_spec, new_spec) = (spec_of(&old_tpl), spec_of(&new_tpl));
    let mut images = Vec::new();
    image_changes(
        old_spec.as_ref().map_or(&empty, |s| &s.containers),
        new_spec.as_ref().map_or(&empty, |s| &s.containers),
        false,
        &mut images,
    );
    image_changes(
        old_spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .unwrap_or(&empty),
        new_spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .unwrap_or(&empty),
        true,
        &mut images,
    );

    Some(TemplateDiff {
        restarted: before != after,
        restarted_at: after,
        images,
        template_changed: true,
    })
}

fn image_changes(old: &[Container], new: &[Container], init: bool, out: &mut Vec<ImageChange>) {
    let index = |list: &[Container]| -> BTreeMap<String, Option<String>> {
        list.iter()
            .map(|c| (c.name.clone(), c.image.clone()))
            .collect()
    };
    let (old, new) = (index(old), index(new));
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for name in names {
        let before = old.get(name).cloned().flatten();
        let after = new.get(name).cloned().flatten();
        if before != after {
            out.push(ImageChange {
                container: name.clone(),
                init,
                previous_image: before,
                current_image: after,
            });
        }
    }
}

/// Reads one annotation of the pod template of a workload object.
pub fn template_annotation(obj: &serde_json::Value, key: &str) -> Option<String> {
    obj.get("spec")?
        .get("template")?
        .get("metadata")?
        .get("annotations")?
        .get(key)?
        .as_str()
        .map(str::to_owned)
}
