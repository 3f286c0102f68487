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
}

if __name__ == "__main__":
    for name, make in FIXTURES.items():
        # Compact, like the API server's own encoding.
        (HERE / name).write_text(json.dumps(make(), separators=(",", ":")))
        print(f"wrote tests/data/{name}")
