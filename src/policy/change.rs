//! The pod-template diff between `oldObject` and `object`: restart, image
//! changes per container (by name, in `containers` and `initContainers`),
//! and whether anything else in the template moved. Pure.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::RESTARTED_AT;
use super::workload::{ContainerParts, TemplateParts};

/// What kind of gated change a diff is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeKind {
    Restart,
    Image,
    Both,
    /// Any other pod-template change, alone or with the above (gated unless
    /// `gateAnyTemplateChange` is off).
    Template,
    /// The labels that name the application changed.
    Relabel,
    /// An ephemeral container added or changed (`kubectl debug`).
    Debug,
}

impl ChangeKind {
    /// The ticket `action` that covers this change.
    pub fn action(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Image => "image",
            Self::Debug => "debug",
            Self::Both | Self::Template | Self::Relabel => "any",
        }
    }

    /// A phrase for messages: "restart", "change the image of".
    pub fn verb(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Image => "change the image of",
            Self::Both => "restart and change the image of",
            Self::Template => "change the pod template of",
            Self::Relabel => "change the application labels of",
            Self::Debug => "add a debug container to",
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

/// Diffs two pod templates (`spec.template` of the old and new object).
/// `None` when either side has none or it cannot be read.
pub fn diff(old: Option<&RawValue>, new: Option<&RawValue>) -> Option<TemplateDiff> {
    let (old_raw, new_raw) = (old?, new?);
    if old_raw.get() == new_raw.get() {
        return Some(TemplateDiff::default());
    }
    let old_tpl = TemplateParts::parse(old_raw)?;
    let new_tpl = TemplateParts::parse(new_raw)?;

    let (before, after) = (
        old_tpl.annotation(RESTARTED_AT),
        new_tpl.annotation(RESTARTED_AT),
    );
    let mut images = Vec::new();
    image_changes(
        old_tpl.containers(),
        new_tpl.containers(),
        false,
        &mut images,
    );
    image_changes(
        old_tpl.init_containers(),
        new_tpl.init_containers(),
        true,
        &mut images,
    );
    let restarted = before != after;
    // The API server writes both objects alike, so different text almost
    // always means a different template; only when nothing gated moved
    // (and `gateAnyTemplateChange` may ask) is it worth comparing values,
    // so that key order or spacing never counts as a change.
    let template_changed = restarted || !images.is_empty() || !same_json(old_raw, new_raw);
    Some(TemplateDiff {
        restarted,
        restarted_at: after.map(str::to_owned),
        images,
        template_changed,
    })
}

fn same_json(a: &RawValue, b: &RawValue) -> bool {
    let value = |raw: &RawValue| serde_json::from_str::<serde_json::Value>(raw.get()).ok();
    matches!((value(a), value(b)), (Some(a), Some(b)) if a == b)
}

fn image_changes(
    old: &[ContainerParts<'_>],
    new: &[ContainerParts<'_>],
    init: bool,
    out: &mut Vec<ImageChange>,
) {
    let (old, new) = (images_by_name(old), images_by_name(new));
    let names: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    for name in names {
        let before = old.get(name).copied().flatten();
        let after = new.get(name).copied().flatten();
        if before != after {
            out.push(ImageChange {
                container: name.to_owned(),
                init,
                previous_image: before.map(str::to_owned),
                current_image: after.map(str::to_owned),
            });
        }
    }
}

fn images_by_name<'a>(list: &'a [ContainerParts<'_>]) -> BTreeMap<&'a str, Option<&'a str>> {
    list.iter()
        .map(|c| (c.name.as_ref(), c.image.as_deref()))
        .collect()
}

/// Reads one annotation of a pod template.
pub fn template_annotation(template: Option<&RawValue>, key: &str) -> Option<String> {
    TemplateParts::parse(template?)?
        .annotation(key)
        .map(str::to_owned)
}
