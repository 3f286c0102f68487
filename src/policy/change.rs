//! What a request changes, pure: the diff between `oldObject` and `object`
//! that decides the change class (DESIGN.md "What is gated"). A restart,
//! image changes per container (by name, in `containers`, `initContainers`
//! and, for `kubectl debug`, `ephemeralContainers`), every other pod-template
//! change named for people ("env of container main", "annotation team"),
//! and the labels that name the application.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::RESTARTED_AT;
use super::workload::{PodContainers, TemplateParts};

/// The labels that name an application, most specific first.
pub const APPLICATION_LABELS: [&str; 2] = ["app.kubernetes.io/name", "app"];

/// The change class of a gated request (DESIGN.md "What is gated").
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
    /// An ephemeral container (`kubectl debug`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
    pub previous_image: Option<String>,
    pub current_image: Option<String>,
}

impl ImageChange {
    fn describe(&self) -> String {
        let noun = if self.ephemeral {
            "debug container"
        } else if self.init {
            "init container"
        } else {
            "container"
        };
        let name = &self.container;
        match (&self.previous_image, &self.current_image) {
            (None, Some(new)) => format!("{noun} {name} added ({new})"),
            (Some(_), None) => format!("{noun} {name} removed"),
            (Some(old), Some(new)) => format!("image of {noun} {name} ({old} → {new})"),
            (None, None) => format!("image of {noun} {name}"),
        }
    }
}

/// Everything a request changes that the gate weighs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TemplateDiff {
    /// The `restartedAt` annotation was added, changed or removed.
    pub restarted: bool,
    /// Its new value, if any (compared as a string, never parsed).
    pub restarted_at: Option<String>,
    /// Image changes, ephemeral containers included.
    pub images: Vec<ImageChange>,
    /// Every other pod-template change, named for people.
    pub other: Vec<String>,
    /// The labels that name the application, where they changed
    /// ("label app (web → payments)").
    pub relabelled: Vec<String>,
}

impl TemplateDiff {
    /// An ephemeral container was added or changed.
    pub fn debugs(&self) -> bool {
        self.images.iter().any(|i| i.ephemeral)
    }

    /// The change class, or `None` when nothing gated changed. With
    /// `gate_any_template_change` off, other template changes are ignored
    /// (never an excuse: a restart that comes with them is still RESTART).
    pub fn class(&self, gate_any_template_change: bool) -> Option<ChangeKind> {
        if !self.relabelled.is_empty() {
            return Some(ChangeKind::Relabel);
        }
        if self.debugs() {
            return Some(ChangeKind::Debug);
        }
        if gate_any_template_change && !self.other.is_empty() {
            return Some(ChangeKind::Template);
        }
        let images = self.images.iter().any(|i| !i.ephemeral);
        match (self.restarted, images) {
            (true, true) => Some(ChangeKind::Both),
            (true, false) => Some(ChangeKind::Restart),
            (false, true) => Some(ChangeKind::Image),
            (false, false) => None,
        }
    }

    /// What changed, for people, most telling first.
    pub fn described(&self) -> Vec<String> {
        let mut parts = self.relabelled.clone();
        if self.restarted {
            parts.push(format!("annotation {RESTARTED_AT}"));
        }
        parts.extend(self.images.iter().map(ImageChange::describe));
        parts.extend(self.other.iter().cloned());
        parts
    }

    /// Containers the change removes (not ephemeral ones, which cannot be).
    pub fn removed_containers(&self) -> impl Iterator<Item = &str> {
        self.images
            .iter()
            .filter(|i| i.current_image.is_none() && i.previous_image.is_some())
            .map(|i| i.container.as_str())
    }
}

/// Diffs two pod templates (`spec.template` of the old and new object).
/// Annotations named in `ignored` do not count (rollgate's own redeploy
/// marks). `None` when either side has none or it cannot be read.
pub fn diff(
    old: Option<&RawValue>,
    new: Option<&RawValue>,
    ignored: &[&str],
) -> Option<TemplateDiff> {
    let (old_raw, new_raw) = (old?, new?);
    if old_raw.get() == new_raw.get() {
        return Some(TemplateDiff::default());
    }
    let old: Value = serde_json::from_str(old_raw.get()).ok()?;
    let new: Value = serde_json::from_str(new_raw.get()).ok()?;
    let (old, new) = (old.as_object()?, new.as_object()?);

    let annotation = |tpl: &Map<String, Value>| {
        tpl.get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(RESTARTED_AT))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let (before, after) = (annotation(old), annotation(new));
    let mut diff = TemplateDiff {
        restarted: before != after,
        restarted_at: after,
        ..TemplateDiff::default()
    };
    let (old_spec, new_spec) = (field(old, "spec"), field(new, "spec"));
    for (list, init) in [("containers", false), ("initContainers", true)] {
        let noun = if init { "init container" } else { "container" };
        let (a, b) = (list_field(old_spec, list), list_field(new_spec, list));
        image_changes(a, b, init, false, &mut diff.images);
        container_changes(a, b, noun, &mut diff.other);
    }
    for key in union_keys(old, new) {
        let (a, b) = (old.get(key), new.get(key));
        match key {
            "metadata" => metadata_changes(a, b, ignored, &mut diff.other),
            "spec" => spec_changes(a, b, &mut diff.other),
            _ if present(a) != present(b) => diff.other.push(format!("{key} of the pod template")),
            _ => {}
        }
    }
    Some(diff)
}

/// Diffs a Pod's containers: image changes (`containers`,
/// `initContainers`) and ephemeral containers added or changed. Nothing
/// else of a Pod can change what runs. `None` when a list cannot be read.
pub fn diff_pod(old: PodContainers<'_>, new: PodContainers<'_>) -> Option<TemplateDiff> {
    let mut diff = TemplateDiff::default();
    let lists = [
        (old.containers, new.containers, false, false),
        (old.init_containers, new.init_containers, true, false),
        (
            old.ephemeral_containers,
            new.ephemeral_containers,
            false,
            true,
        ),
    ];
    for (a, b, init, ephemeral) in lists {
        if a.map(RawValue::get) == b.map(RawValue::get) {
            continue;
        }
        let (a, b) = (parse_list(a)?, parse_list(b)?);
        if ephemeral {
            ephemeral_changes(&a, &b, &mut diff.images);
        } else {
            image_changes(&a, &b, init, false, &mut diff.images);
        }
    }
    Some(diff)
}

/// The application labels that differ between two label maps, described.
pub fn relabelled(
    old: Option<&BTreeMap<String, String>>,
    new: Option<&BTreeMap<String, String>>,
) -> Vec<String> {
    fn get<'a>(labels: Option<&'a BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
        labels.and_then(|l| l.get(key)).map(String::as_str)
    }
    APPLICATION_LABELS
        .iter()
        .filter_map(|key| {
            let (a, b) = (get(old, key), get(new, key));
            (a != b).then(|| {
                format!(
                    "label {key} ({} → {})",
                    a.unwrap_or("none"),
                    b.unwrap_or("none")
                )
            })
        })
        .collect()
}

/// Reads one annotation of a pod template.
pub fn template_annotation(template: Option<&RawValue>, key: &str) -> Option<String> {
    TemplateParts::parse(template?)?
        .annotation(key)
        .map(str::to_owned)
}

// === the parts of a diff ===

fn parse_list(raw: Option<&RawValue>) -> Option<Vec<Value>> {
    match raw {
        None => Some(Vec::new()),
        Some(raw) => serde_json::from_str(raw.get()).ok(),
    }
}

fn image_of(container: &Value) -> String {
    container
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Ephemeral containers added or changed in any way (the API allows only
/// adding them; anything else about one is a debug change all the same).
fn ephemeral_changes(old: &[Value], new: &[Value], out: &mut Vec<ImageChange>) {
    let old = by_name(old);
    for (name, container) in by_name(new) {
        let before = old.get(name);
        if before != Some(&container) {
            out.push(ImageChange {
                container: name.to_owned(),
                init: false,
                ephemeral: true,
                previous_image: before.map(|c| image_of(c)),
                current_image: Some(image_of(container)),
            });
        }
    }
}

/// `null` and absent are the same to the API server.
fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    obj.get(key).and_then(Value::as_object)
}

fn list_field<'a>(obj: Option<&'a Map<String, Value>>, key: &str) -> &'a [Value] {
    obj.and_then(|o| o.get(key))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn union_keys<'a>(a: &'a Map<String, Value>, b: &'a Map<String, Value>) -> BTreeSet<&'a str> {
    a.keys().chain(b.keys()).map(String::as_str).collect()
}

fn as_map(v: Option<&Value>) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    v.and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

fn metadata_changes(
    old: Option<&Value>,
    new: Option<&Value>,
    ignored: &[&str],
    out: &mut Vec<String>,
) {
    let (old, new) = (as_map(old), as_map(new));
    for key in union_keys(old, new) {
        let (a, b) = (old.get(key), new.get(key));
        match key {
            "annotations" | "labels" => {
                let noun = if key == "labels" {
                    "label"
                } else {
                    "annotation"
                };
                let (a, b) = (as_map(a), as_map(b));
                for name in union_keys(a, b) {
                    let skip =
                        noun == "annotation" && (name == RESTARTED_AT || ignored.contains(&name));
                    if !skip && present(a.get(name)) != present(b.get(name)) {
                        out.push(format!("{noun} {name}"));
                    }
                }
            }
            _ if present(a) != present(b) => {
                out.push(format!("metadata.{key} of the pod template"))
            }
            _ => {}
        }
    }
}

fn spec_changes(old: Option<&Value>, new: Option<&Value>, out: &mut Vec<String>) {
    let (old, new) = (as_map(old), as_map(new));
    for key in union_keys(old, new) {
        // Containers were compared one by one already.
        if key == "containers" || key == "initContainers" {
            continue;
        }
        if present(old.get(key)) != present(new.get(key)) {
            out.push(format!("{key} of the pod"));
        }
    }
}

/// The images of `old` and `new` compared by container name; a container
/// added or removed counts.
fn image_changes(
    old: &[Value],
    new: &[Value],
    init: bool,
    ephemeral: bool,
    out: &mut Vec<ImageChange>,
) {
    let (old, new) = (by_name(old), by_name(new));
    for name in old.keys().chain(new.keys()).collect::<BTreeSet<_>>() {
        let image = |side: &BTreeMap<&str, &Value>| side.get(name).map(|c| image_of(c));
        let (before, after) = (image(&old), image(&new));
        if before != after {
            out.push(ImageChange {
                container: (*name).to_owned(),
                init,
                ephemeral,
                previous_image: before,
                current_image: after,
            });
        }
    }
}

/// Every change to a container present on both sides other than its image,
/// and a change of order.
fn container_changes(old: &[Value], new: &[Value], noun: &str, out: &mut Vec<String>) {
    let (old_by, new_by) = (by_name(old), by_name(new));
    for (name, a) in &old_by {
        let Some(b) = new_by.get(name) else { continue };
        let (a, b) = (as_map(Some(a)), as_map(Some(b)));
        for key in union_keys(a, b) {
            if key != "name" && key != "image" && present(a.get(key)) != present(b.get(key)) {
                out.push(format!("{key} of {noun} {name}"));
            }
        }
    }
    let order = |list: &[Value], other: &BTreeMap<&str, &Value>| -> Vec<String> {
        list.iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .filter(|n| other.contains_key(n))
            .map(str::to_owned)
            .collect()
    };
    if order(old, &new_by) != order(new, &old_by) {
        out.push(format!("order of {noun}s"));
    }
}

fn by_name(list: &[Value]) -> BTreeMap<&str, &Value> {
    list.iter()
        .filter_map(|c| Some((c.get("name")?.as_str()?, c)))
        .collect()
}
