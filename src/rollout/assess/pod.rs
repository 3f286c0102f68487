//! A Pod changed in place. An IMAGE change: the kubelet kills each changed
//! container and starts it again, in the same pod, with the new image. A
//! DEBUG change (`kubectl debug`, the `pods/ephemeralcontainers`
//! subresource): the kubelet starts the new ephemeral container once. The
//! outcome is read from the pod's container statuses:
//!
//! - COMPLETED when every changed container runs the new image and is ready
//!   (the kubelet reports a container without a readiness probe ready once it
//!   runs); an ephemeral container once it runs or has run; a plain init
//!   container once it has run to completion with the new image, or at once
//!   if it had already run (it does not run again in this pod: the note says
//!   so). `new_pods` names the pod, which now runs what the change brought.
//! - FAILED when the pod fails, has already ended, or a changed container
//!   waits for a reason it does not get out of by itself (`STUCK_REASONS`:
//!   image pull errors, crash loop…).
//! - TIMEOUT at the deadline, naming the first container still awaited.

use jiff::SignedDuration;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodSpec, PodStatus};

use super::{Assessment, Operation, pod_failed, stuck};
use crate::audit::RolloutStatus;
use crate::policy::ChangeKind;

/// How the kubelet runs a container the change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// An app container: restarted with the new image.
    App,
    /// An init container with `restartPolicy: Always` (a sidecar): restarted
    /// like an app container.
    Sidecar,
    /// A plain init container: runs to completion once, as the pod starts.
    InitOnce,
    /// An ephemeral container: started once, never restarted.
    Ephemeral,
}

/// A container the change touched.
struct Changed<'a> {
    name: &'a str,
    /// The image it should run (not checked for an ephemeral container,
    /// which cannot be changed once added).
    image: Option<&'a str>,
    role: Role,
}

/// Where one changed container stands.
enum Standing {
    Done,
    /// A plain init container that had run before the change.
    RanBefore,
    Failed(String),
    /// Not there yet: what it is doing.
    Awaited(String),
}

/// The rest of [`super::assess`] for a Pod that shows the change.
pub(super) fn assess(
    op: &Operation,
    pod: &Pod,
    past_deadline: bool,
    deadline: SignedDuration,
    mut a: Assessment,
) -> Assessment {
    let name = op.name.as_str();
    let no_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&no_spec);
    let status = pod.status.as_ref();
    let ended = status.and_then(|s| pod_failed(name, s)).or_else(|| {
        (status.and_then(|s| s.phase.as_deref()) == Some("Succeeded")).then(|| {
            format!(
                "pod {name} has already run to completion (phase Succeeded): \
                     its containers do not start again"
            )
        })
    });
    if let Some(error) = ended {
        a.status = RolloutStatus::Failed;
        a.error = Some(error);
        return a;
    }

    let acted = kubelet_acted(pod);
    let mut awaited = None;
    let mut ran_before = Vec::new();
    for c in changed(op, spec) {
        match standing(name, &c, status, acted) {
            Standing::Done => {}
            Standing::RanBefore => ran_before.push(c.name),
            Standing::Failed(error) => {
                a.status = RolloutStatus::Failed;
                a.error = Some(error);
                return a;
            }
            Standing::Awaited(doing) => {
                awaited.get_or_insert((c, doing));
            }
        }
    }
    match awaited {
        None => {
            a.status = RolloutStatus::Completed;
            a.new_pods = vec![name.to_owned()];
            if !ran_before.is_empty() {
                a.note = Some(format!(
                    "init container {} had already run with the old image and does not run again in pod {name}: \
                     the new image runs when the pod is re-created",
                    ran_before.join(", ")
                ));
            }
        }
        Some((c, doing)) if past_deadline => {
            let what = match (c.role, c.image) {
                (Role::Ephemeral, _) | (_, None) => "did not start".to_owned(),
                (_, Some(image)) => format!("did not come up with image {image}"),
            };
            a.status = RolloutStatus::Timeout;
            a.error = Some(format!(
                "{}container {} of pod {name} {what} within {}s (counted from admission): {doing}",
                if c.role == Role::Ephemeral {
                    "ephemeral "
                } else {
                    ""
                },
                c.name,
                deadline.as_secs()
            ));
        }
        Some(_) => a.status = RolloutStatus::Progressing,
    }
    a
}

/// The containers `op` changed in `spec`, by name (unique across a pod's
/// containers, init containers and ephemeral containers).
fn changed<'a>(op: &'a Operation, spec: &'a PodSpec) -> Vec<Changed<'a>> {
    let mut out: Vec<Changed<'a>> = op
        .images
        .iter()
        .filter_map(|change| {
            let image = change.current_image.as_deref()?;
            let name = change.container.as_str();
            let role = if change.init {
                let mut init = spec.init_containers.iter().flatten();
                let c = init.find(|c| c.name == name)?;
                if c.restart_policy.as_deref() == Some("Always") {
                    Role::Sidecar
                } else {
                    Role::InitOnce
                }
            } else if spec.containers.iter().any(|c| c.name == name) {
                Role::App
            } else if spec
                .ephemeral_containers
                .iter()
                .flatten()
                .any(|c| c.name == name)
            {
                Role::Ephemeral
            } else {
                return None;
            };
            let image = (role != Role::Ephemeral).then_some(image);
            Some(Changed { name, image, role })
        })
        .collect();
    if out.is_empty() && op.change == Some(ChangeKind::Debug) {
        // The admission did not name its ephemeral container: every one the
        // pod has is awaited.
        out.extend(spec.ephemeral_containers.iter().flatten().map(|c| Changed {
            name: &c.name,
            image: None,
            role: Role::Ephemeral,
        }));
    }
    out
}

/// True when the kubelet reports having acted on the pod's current spec
/// (`status.observedGeneration`, Kubernetes 1.33 and later).
fn kubelet_acted(pod: &Pod) -> bool {
    let observed = pod.status.as_ref().and_then(|s| s.observed_generation);
    matches!((pod.metadata.generation, observed), (Some(g), Some(o)) if o >= g)
}

/// Where container `c` of pod `pod` stands, from its status.
fn standing(pod: &str, c: &Changed<'_>, status: Option<&PodStatus>, acted: bool) -> Standing {
    let statuses = status.and_then(|s| match c.role {
        Role::App => s.container_statuses.as_ref(),
        Role::Sidecar | Role::InitOnce => s.init_container_statuses.as_ref(),
        Role::Ephemeral => s.ephemeral_container_statuses.as_ref(),
    });
    let Some(cs) = statuses.into_iter().flatten().find(|s| s.name == c.name) else {
        return Standing::Awaited("no status yet".to_owned());
    };
    let new_image = c
        .image
        .is_none_or(|image| same_image(image, &cs.image, &cs.image_id));
    if let Some(error) = stuck(pod, cs) {
        // A container that cannot start keeps the image of its last run in
        // its status (the kubelet only replaces the state), so a stuck
        // container is the change's when the kubelet has acted on the new
        // spec or the waiting message names the new image; otherwise it may
        // be the old image stuck, which the change is meant to fix.
        let ours = new_image || acted || c.image.is_some_and(|image| names(cs, image));
        return if ours {
            Standing::Failed(error)
        } else {
            Standing::Awaited(state_of(cs))
        };
    }
    let state = cs.state.as_ref();
    let running = state.is_some_and(|s| s.running.is_some());
    let terminated = state.and_then(|s| s.terminated.as_ref());
    match c.role {
        Role::Ephemeral if running || terminated.is_some() => Standing::Done,
        Role::App | Role::Sidecar if new_image && running && cs.ready => Standing::Done,
        Role::InitOnce if new_image && terminated.is_some_and(|t| t.exit_code == 0) => {
            Standing::Done
        }
        Role::InitOnce if !new_image && terminated.is_some() && initialized(status) => {
            Standing::RanBefore
        }
        _ if !new_image => Standing::Awaited(format!("it still runs {}", cs.image)),
        _ => Standing::Awaited(state_of(cs)),
    }
}

/// True when the pod's init containers have all completed.
fn initialized(status: Option<&PodStatus>) -> bool {
    status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Initialized" && c.status == "True")
}

/// True when the container's waiting message names `image`, as the
/// kubelet's pull errors do (`Back-off pulling image "web:2"`).
fn names(cs: &ContainerStatus, image: &str) -> bool {
    let message = cs
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.as_deref())
        .unwrap_or_default();
    [image.to_owned(), normalized(image)]
        .iter()
        .any(|i| message.contains(&format!("\"{i}\"")))
}

/// A container's state, for a TIMEOUT's message.
fn state_of(cs: &ContainerStatus) -> String {
    let state = cs.state.as_ref();
    if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
        return format!(
            "waiting: {}",
            w.reason.as_deref().unwrap_or("no reason given")
        );
    }
    if state.is_some_and(|s| s.running.is_some()) {
        return "running, not ready".to_owned();
    }
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        return format!(
            "terminated: {} (exit code {})",
            t.reason.as_deref().unwrap_or("no reason given"),
            t.exit_code
        );
    }
    "no state reported".to_owned()
}

/// True when the image a container status reports is `wanted`, as the pod
/// spec names it. Runtimes report the name in full (containerd says
/// `docker.io/library/nginx:1.27` for `nginx:1.27`), and an image pinned by
/// digest shows its digest in `imageID`.
fn same_image(wanted: &str, image: &str, image_id: &str) -> bool {
    if wanted == image {
        return true;
    }
    if let Some((_, digest)) = wanted.split_once('@') {
        return image.ends_with(digest) || image_id.ends_with(digest);
    }
    normalized(wanted) == normalized(image)
}

/// `image` as a full reference: the registry (`docker.io` when none is
/// named), `library/` for a Docker Hub image without a namespace, the tag
/// (`latest` when none is named).
fn normalized(image: &str) -> String {
    let (name, tag) = match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    };
    let (registry, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        _ => ("docker.io", name),
    };
    let registry = if registry == "index.docker.io" {
        "docker.io"
    } else {
        registry
    };
    if registry == "docker.io" && !path.contains('/') {
        format!("{registry}/library/{path}:{tag}")
    } else {
        format!("{registry}/{path}:{tag}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_reported_in_full_or_by_digest_is_the_image_the_spec_names() {
        let digest = "sha256:4c0fdaa8b6341bfdeca5f18f7837462c80cff90527ee35ef185571e1c327beac";
        for (wanted, image, image_id, same) in [
            ("nginx:1.27", "nginx:1.27", "", true),
            ("nginx:1.27", "docker.io/library/nginx:1.27", "", true),
            ("nginx", "docker.io/library/nginx:latest", "", true),
            ("team/web:2", "docker.io/team/web:2", "", true),
            (
                "index.docker.io/team/web:2",
                "docker.io/team/web:2",
                "",
                true,
            ),
            (
                "registry.local:5000/web:2",
                "registry.local:5000/web:2",
                "",
                true,
            ),
            (
                "registry.local:5000/web",
                "registry.local:5000/web:latest",
                "",
                true,
            ),
            ("web:1", "docker.io/library/web:10", "", false),
            ("nginx:1.27", "docker.io/library/nginx:1.26", "", false),
            ("ghcr.io/team/web:2", "docker.io/team/web:2", "", false),
            (
                &format!("web@{digest}"),
                "docker.io/library/web:2",
                &format!("docker.io/library/web@{digest}"),
                true,
            ),
            (
                &format!("web@{digest}"),
                "docker.io/library/web:2",
                "",
                false,
            ),
        ] {
            assert_eq!(
                same_image(wanted, image, image_id),
                same,
                "{wanted} vs {image} ({image_id})"
            );
        }
    }
}
