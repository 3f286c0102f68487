#!/usr/bin/env python3
"""Static checks of charts/rollgate and webhook-config/ (run by scripts/check-manifests, which installs
what this needs into a venv first).

Rendering uses Helm's own engine: the PyPI package helm-python-sdk binds libhelm_c, a C ABI over Helm's Go
SDK (v4), so templates are rendered exactly as `helm template` would render them, offline (`lookup`
answers nothing, as in `helm template`).

    check_manifests.py OUTDIR            run every check, renders and rule files under OUTDIR
    check_manifests.py OUTDIR --write    regenerate webhook-config/ from the chart's default render first

Each check prints one line; the script exits 1 when any fails and prints "N passed, N failed".
"""

import base64
import copy
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import celpy
import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "rollgate"
PLAIN = ROOT / "webhook-config"
RELEASE, NAMESPACE = "rollgate", "rollgate"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest kubernetes-validate knows.
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]

# DESIGN.md "Alert rules", the contract: name -> (expression, for, severity).
DESIGN_ALERTS = {
    "TooManyRedeployTokens": ("app_redeploy_token_active_count > 15", "5m", "warning"),
    "RedeployFailureRate": ('rate(app_redeploy_operations_total{result="failed"}[10m]) > 0.2', "3m", "critical"),
    "RedeployDurationTooLong": (
        "histogram_quantile(0.95, rate(app_redeploy_duration_seconds_bucket[10m])) > 600",
        "5m",
        "warning",
    ),
    "TokenProcessingFailure": ('rate(app_redeploy_token_created_total{result="failed"}[10m]) > 0.05', "3m", "warning"),
    "FrequentRedeployOperations": ("rate(app_redeploy_operations_total[1h]) > 10", "10m", "info"),
}

# Values combinations rendered besides the defaults: (name, release, namespace, values).
CASES = [
    (
        "everything-on",
        "rollgate",
        "rollgate",
        {
            "certs": {"mode": "certManager", "extraDnsNames": ["rollgate.example.com"]},
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
            "redis": {
                "mode": "external",
                "external": {
                    "url": "redis+sentinel://sentinel-0.redis:26379,sentinel-1.redis:26379/rollgate",
                    "passwordSecret": {"name": "redis-auth", "key": "password"},
                    "sentinelPasswordSecret": {"name": "sentinel-auth", "key": "password"},
                },
            },
            "networkPolicy": {
                "podCIDRs": ["10.244.0.0/16", "fd00:10:244::/56"],
                "apiFrom": [{"namespaceSelector": {}}],
                "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            },
            "podAntiAffinity": "hard",
            "replicaCount": 3,
            "publicApiUrl": "https://rollgate.example.com",
            "labelGuard": {"users": ["admin@example.com"], "groups": ["platform-leads"]},
            "config": {
                "policy": {
                    "protectedNamespaces": ["production", "payments"],
                    "protectedLabel": "rollgate.io/protected",
                    "gatedKinds": ["Deployment", "StatefulSet", "DaemonSet"],
                    "exemptUsers": ["system:serviceaccount:argocd:argocd-application-controller"],
                },
                "roles": {"approvers": {"*": {"groups": ["platform-leads"]}}, "requiredApprovals": {"production": 2}},
                "notifications": [{"name": "chat", "urlFile": "/etc/rollgate/slack/url", "format": "slack"}],
            },
            "extraVolumes": [{"name": "slack", "secret": {"secretName": "rollgate-slack"}}],
            "extraVolumeMounts": [{"name": "slack", "mountPath": "/etc/rollgate/slack", "readOnly": True}],
            "priorityClassName": "system-cluster-critical",
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "platform", "effect": "NoSchedule"}],
        },
    ),
    (
        "existing-secrets-minimal",
        "gate",
        "platform",
        {
            "certs": {"mode": "secret", "existingSecret": "gate-serving", "caBundle": "Q0E="},
            "signingKey": {"existingSecret": "gate-signing"},
            "redis": {"mode": "external", "external": {"url": "rediss://redis.platform.svc:6380/0"}},
            "networkPolicy": {"enabled": False, "apiServerCIDRs": ["172.18.0.0/16"]},
            "podDisruptionBudget": {"enabled": False},
            "labelGuard": {"enabled": False},
            "rbac": {"redeploy": False},
            "webhook": {"failurePolicy": "Ignore", "timeoutSeconds": 5, "excludedNamespaces": ["monitoring"]},
            "config": {
                "policy": {
                    "protectedNamespaces": [],
                    "protectedLabel": "example.com/frozen",
                    "gatedKinds": ["Deployment"],
                }
            },
            "preStopSleepSeconds": 0,
            "metrics": {"podAnnotations": False},
        },
    ),
    (
        "cert-manager-cluster-issuer",
        "rollgate",
        "rollgate",
        {
            "certs": {"mode": "certManager", "certManager": {"issuerRef": {"kind": "ClusterIssuer", "name": "internal-ca"}}},
            "networkPolicy": {"apiServerCIDRs": ["172.18.0.2/32", "172.18.0.3/32"]},
        },
    ),
]

# Values that must be refused (by values.schema.json or a `required`), with a word the error must name.
BAD_VALUES = [
    ("unknown top-level key", {"replicas": 3}, "replicas"),
    ("unknown config key", {"config": {"polcy": {}}}, "polcy"),
    ("external Redis without a URL", {"redis": {"mode": "external"}}, "url"),
    ("secret mode without a Secret", {"certs": {"mode": "secret"}}, "existingSecret"),
    ("bad failure policy", {"webhook": {"failurePolicy": "Deny"}}, "failurePolicy"),
    ("webhook timeout over 30 s", {"webhook": {"timeoutSeconds": 60}}, "timeoutSeconds"),
    ("bad protected namespace", {"config": {"policy": {"protectedNamespaces": ["Prod_1"]}}}, "protectedNamespaces"),
    ("bad duration", {"config": {"grants": {"ttl": "2 hours"}}}, "ttl"),
    ("unknown gated kind", {"config": {"policy": {"gatedKinds": ["Job"]}}}, "gatedKinds"),
    ("a gated kind twice", {"config": {"policy": {"gatedKinds": ["Pod", "Pod"]}}}, "gatedKinds"),
]

# What webhook-config/ leaves out of the chart's default render, and why (webhook-config/README.md):
# generated secrets are made by certs/generate.sh, the caBundle is patched in by it, Helm's own labels
# and annotations mean nothing without Helm.
GENERATED_SECRETS = {"rollgate-tls", "rollgate-signing-key", "rollgate-redis"}
HELM_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by"}
HELM_ANNOTATIONS = {"helm.sh/resource-policy"}
# Plain manifests that the chart has no counterpart of.
PLAIN_EXTRAS = {"namespace.yaml", "kustomization.yaml"}


class Checks:
    def __init__(self):
        self.passed, self.failed = 0, 0

    def ok(self, name, detail=""):
        self.passed += 1
        print(f"ok   {name}{': ' + detail if detail else ''}")

    def fail(self, name, detail):
        self.failed += 1
        print(f"FAIL {name}: {detail}")

    def check(self, name, problems, detail=""):
        problems = [p for p in problems if p]
        if problems:
            self.fail(name, "\n       ".join(problems))
        else:
            self.ok(name, detail)


# === rendering ===


def render(values, release=RELEASE, namespace=NAMESPACE):
    """The chart's manifests as {template path: [documents]}, as `helm template` makes them."""
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        out = chart.render(values, name=release, namespace=namespace, is_install=True)
    docs = {}
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        loaded = [d for d in yaml.safe_load_all(text) if d]
        if loaded:
            docs[path.split("/templates/", 1)[1]] = loaded
    return docs


def all_docs(rendered):
    return [d for docs in rendered.values() for d in docs]


def find(docs, kind, name=None):
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    if len(hits) != 1:
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(hits)}")
    return hits[0]


# === schema validation ===


def crd_schemas():
    """Hand-written schemas of the custom resources the chart may render (kubernetes-validate has only the
    built-in kinds): the fields the chart uses, unknown ones refused."""
    schemas = {}
    for path in sorted((CHART / "tests" / "crd-schemas").glob("*.json")):
        schema = json.loads(path.read_text())
        schemas[(schema["x-apiVersion"], schema["x-kind"])] = schema
    return schemas


def validate_docs(docs, crds):
    problems = []
    for doc in docs:
        kn = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in crds:
            errors = sorted(jsonschema.Draft202012Validator(crds[key]).iter_errors(doc), key=str)
            problems += [f"{kn}: {e.json_path}: {e.message}" for e in errors]
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.utils.SchemaNotFoundError:
                problems.append(f"{kn}: no schema for {key} in Kubernetes {version} and no CRD schema")
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{kn} (Kubernetes {version}): {'.'.join(map(str, e.path))}: {e.message}")
    return problems


# === values paths ===


def leaf_paths(value, prefix=""):
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from leaf_paths(child, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def has_path(values, path):
    node = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def template_value_paths():
    refs = set()
    for path in sorted((CHART / "templates").glob("*")):
        for match in re.finditer(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", path.read_text()):
            refs.add((path.name, match.group(1)[1:]))
    return refs


# === alerts ===


def alert_rules(docs):
    rule = find(docs, "PrometheusRule")
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}


# === plain manifests ===


def plain_form(rendered):
    """The default render as webhook-config/ holds it: {file name: [documents]}."""
    files = {}
    for template, docs in rendered.items():
        kept = []
        for doc in docs:
            doc = copy.deepcopy(doc)
            if doc["kind"] == "Secret" and doc["metadata"]["name"] in GENERATED_SECRETS:
                continue
            meta = doc["metadata"]
            for label in HELM_LABELS:
                meta.get("labels", {}).pop(label, None)
            for note in HELM_ANNOTATIONS:
                meta.get("annotations", {}).pop(note, None)
            if "annotations" in meta and not meta["annotations"]:
                del meta["annotations"]
            if doc["kind"] == "ValidatingWebhookConfiguration":
                for hook in doc["webhooks"]:
                    hook["clientConfig"].pop("caBundle", None)
            kept.append(doc)
        if kept:
            name = "validating-webhook.yaml" if template == "webhook.yaml" else template
            files[name] = kept
    return files


PLAIN_HEADER = """# Generated from charts/rollgate with its default values (release "rollgate", namespace "rollgate") by
# `scripts/check-manifests --write`; scripts/test fails when this file and the chart disagree. Do not edit:
# change the chart and regenerate. See webhook-config/README.md for what differs from `helm install`.
"""


def write_plain(files):
    for name, docs in files.items():
        text = PLAIN_HEADER + "---\n".join(yaml.safe_dump(d, sort_keys=False, width=120) for d in docs)
        (PLAIN / name).write_text(text)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["namespace.yaml"] + sorted(files),
    }
    (PLAIN / "kustomization.yaml").write_text(
        "# kubectl apply -k webhook-config/ (after certs/generate.sh has made the Secrets: webhook-config/README.md)\n"
        + yaml.safe_dump(kustomization, sort_keys=False)
    )


def read_plain():
    files = {}
    for path in sorted(PLAIN.glob("*.yaml")):
        files[path.name] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return files


def by_identity(docs):
    return {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}


def diff_docs(want, got):
    problems = []
    want, got = by_identity(want), by_identity(got)
    for key in sorted(set(want) | set(got), key=str):
        if key not in got:
            problems.append(f"{key}: in the chart's default render, missing from webhook-config/")
        elif key not in want:
            problems.append(f"{key}: in webhook-config/, not in the chart's default render")
        elif want[key] != got[key]:
            problems.append(f"{key}: differs from the chart's default render")
    return problems


# === the real server on the chart's files ===


def serve_smoke(rendered, binary, workdir):
    """Starts the real rollgate with the ConfigMap, TLS Secret and signing key the chart generated (paths
    moved into workdir, the embedded store instead of Redis, loopback ports) and checks that /readyz
    answers and that the webhook's certificate verifies against the caBundle for the Service's name."""
    docs = all_docs(rendered)
    tls = find(docs, "Secret", "rollgate-tls")["data"]
    key = find(docs, "Secret", "rollgate-signing-key")["data"]
    config = find(docs, "ConfigMap", "rollgate")["data"]["config.yaml"]
    vwc = find(docs, "ValidatingWebhookConfiguration")
    ca_bundle = base64.b64decode(vwc["webhooks"][0]["clientConfig"]["caBundle"])
    for sub in ("tls", "keys", "secrets/redis", "etc"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    for name in ("tls.crt", "tls.key"):
        (workdir / "tls" / name).write_bytes(base64.b64decode(tls[name]))
    (workdir / "keys" / "signing-key.pem").write_bytes(base64.b64decode(key["signing-key.pem"]))
    (workdir / "secrets/redis/password").write_text("unused")
    for prefix in ("/tls/", "/keys/", "/secrets/"):
        config = config.replace(" " + prefix, " " + str(workdir) + prefix)
    (workdir / "etc" / "config.yaml").write_text(config)
    (workdir / "ca.crt").write_bytes(ca_bundle)
    # Outside a cluster rollgate needs some way to authenticate API callers: one static user.
    (workdir / "users.json").write_text(json.dumps({"users": [{"name": "smoke", "token": "smoke-token", "groups": []}]}))

    ports = []
    for _ in range(3):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s)
    # rollgate binds port 0 itself in its own tests; here the ports must be known before it starts, so they
    # are held until just before start (a race only with other processes on this machine).
    webhook, api, admin = (s.getsockname()[1] for s in ports)
    for s in ports:
        s.close()
    cmd = [
        str(binary), "serve", "--config", str(workdir / "etc" / "config.yaml"),
        "--webhook-addr", f"127.0.0.1:{webhook}", "--api-addr", f"127.0.0.1:{api}",
        "--admin-addr", f"127.0.0.1:{admin}", "--store", f"sqlite://{workdir / 'rollgate.db'}",
        "--users-file", str(workdir / "users.json"),
    ]
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    log = open(workdir / "serve.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 20
        body = None
        while time.time() < deadline and proc.poll() is None:
            try:
                body = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=2).read())
                break
            except OSError:
                time.sleep(0.2)
        if body is None:
            return [f"rollgate did not become ready; its log:\n{(workdir / 'serve.log').read_text()}"]
        problems = [] if body.get("ready") is True else [f"/readyz answered {body}"]
        context = ssl.create_default_context(cafile=str(workdir / "ca.crt"))
        host = f"rollgate-webhook.{NAMESPACE}.svc"
        with socket.create_connection(("127.0.0.1", webhook), timeout=5) as sock:
            with context.wrap_socket(sock, server_hostname=host) as tls_sock:
                tls_sock.sendall(f"POST /validate HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}".encode())
                status = tls_sock.recv(64).decode(errors="replace").split("\r\n", 1)[0]
        if " 400 " not in status + " ":
            problems.append(f"an empty review over verified TLS to {host} answered {status!r}, want 400")
        # The generated signing key is loaded: the JWKS publishes one Ed25519 key, over the API's name.
        api_host = f"rollgate-api.{NAMESPACE}.svc"
        with socket.create_connection(("127.0.0.1", api), timeout=5) as sock:
            with context.wrap_socket(sock, server_hostname=api_host) as tls_sock:
                tls_sock.sendall(f"GET /.well-known/jwks.json HTTP/1.1\r\nHost: {api_host}\r\nConnection: close\r\n\r\n".encode())
                reply = b""
                while chunk := tls_sock.recv(65536):
                    reply += chunk
        head, _, body = reply.decode(errors="replace").partition("\r\n\r\n")
        keys = json.loads(body).get("keys", []) if " 200 " in head.split("\r\n", 1)[0] + " " else []
        if not (len(keys) == 1 and keys[0].get("crv") == "Ed25519"):
            problems.append(f"JWKS over verified TLS to {api_host}: {head.splitlines()[:1]} {body[:200]!r}")
        return problems
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# === what the API server sends rollgate ===
#
# The API server calls a webhook entry for a request when one of its rules matches the request's group,
# version, resource (with its subresource), operation and scope, its namespaceSelector (and objectSelector)
# matches, and every matchCondition is true (k8s.io/apiserver admission/plugin/webhook: rules.Matcher,
# namespace.Matcher, matchconditions). The functions below do the same on the rendered objects, with the
# CEL of the conditions evaluated by cel-python: called_entries() answers for one request. A CEL error is a
# failure of the check: the API server would apply failurePolicy (Fail: refuse) to every such request.

# A namespace's labels as the API server sees them: it adds kubernetes.io/metadata.name to every one.
# production is protected by name only (config.policy.protectedNamespaces), payments by label only;
# kube-system and the release namespace carry the label and must still never be sent.
TABLE_NAMESPACES = {
    "production": {},
    "payments": {"rollgate.io/protected": "true"},
    "staging": {},
    "kube-system": {"rollgate.io/protected": "true"},
    NAMESPACE: {"rollgate.io/protected": "true"},
}
PROTECTED = ["production", "payments"]


class CelFailure(Exception):
    """A matchCondition that does not evaluate to a bool (the API server would apply failurePolicy)."""


_cel_programs = {}


def cel_eval(expression, activation):
    """Evaluates a CEL expression with cel-python on JSON-shaped variables; raises CelFailure on any error
    or a non-bool result."""
    # cel-python answers has(a.b.c) with false when a.b is missing; cel-go (the API server) errors (no
    # such key). Refuse it here so the table is as strict as the API server.
    for path in re.findall(r"\bhas\(\s*([A-Za-z_][\w.]*)\s*\)", expression):
        node, parts = activation, path.split(".")
        for part in parts[:-1]:
            if not isinstance(node, dict) or part not in node:
                raise CelFailure(f"has({path}): {'.'.join(parts[:-1])} is missing (cel-go: no such key)")
            node = node[part]
    try:
        if expression not in _cel_programs:
            env = celpy.Environment()
            _cel_programs[expression] = env.program(env.compile(expression))
        result = _cel_programs[expression].evaluate({k: celpy.json_to_cel(v) for k, v in activation.items()})
    except Exception as e:  # celpy's parse and evaluation errors, and its bugs alike: all fail the check
        message = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
        raise CelFailure(f"{type(e).__name__}: {message[:200]}") from None
    if not isinstance(result, celpy.celtypes.BoolType):
        raise CelFailure(f"evaluated to {type(result).__name__} {result!r}, not a bool")
    return bool(result)


def selector_matches(selector, labels):
    """A metav1.LabelSelector against labels; an absent or empty selector matches everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }.get(op)
        if ok is None:
            raise AssertionError(f"unknown selector operator {op}")
        if not ok:
            return False
    return True


def rule_matches(rule, req):
    """One RuleWithOperations against a request (rules.Matcher): "*" in a field matches anything, a
    resource "pods" matches only the main resource, "pods/ephemeralcontainers" only that subresource,
    "pods/*" the main resource and every subresource, "*" every main resource; a scope Namespaced
    rule never matches a namespace itself."""

    def listed(values, value):
        return "*" in values or value in values

    if not (
        listed(rule.get("operations", []), req["operation"])
        and listed(rule.get("apiGroups", []), req["group"])
        and listed(rule.get("apiVersions", []), req["version"])
    ):
        return False
    resource_ok = False
    for entry in rule.get("resources", []):
        res, _, sub = entry.partition("/")
        if res in ("*", req["resource"]) and sub in ("*", req["subresource"]):
            resource_ok = True
    scope = rule.get("scope", "*")
    is_namespace = req["group"] == "" and req["resource"] == "namespaces"
    scope_ok = (
        scope == "*"
        or (scope == "Namespaced" and not is_namespace and req["namespace"] != "")
        or (scope == "Cluster" and (is_namespace or req["namespace"] == ""))
    )
    return resource_ok and scope_ok


def admission_request(req, empty_subresource):
    """The `request` variable as the API server builds it (an AdmissionRequest through the unstructured
    converter: subResource is omitempty, so absent on a main-resource request). empty_subresource=True
    gives it as "" instead: the condition must answer the same both ways."""
    request = {
        "uid": "0c9e5b4a-6a43-4a43-9a4e-4d5b7a3d2f10",
        "kind": dict(req["kind"]),
        "resource": {"group": req["group"], "version": req["version"], "resource": req["resource"]},
        "requestKind": dict(req["kind"]),
        "requestResource": {"group": req["group"], "version": req["version"], "resource": req["resource"]},
        "name": (req["new"] or req["old"])["metadata"]["name"],
        "operation": req["operation"],
        "userInfo": {"username": "dev@example.com", "groups": ["developers", "system:authenticated"]},
        "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": f"{req['operation'].title()}Options"},
    }
    if req["namespace"]:
        request["namespace"] = req["namespace"]
    if req["subresource"] or empty_subresource:
        request["subResource"] = request["requestSubResource"] = req["subresource"]
    return request


def conditions_hold(conditions, req):
    """Every matchCondition true (raises CelFailure on an error or when the two forms of request disagree)."""
    for cond in conditions:
        answers = set()
        for empty_subresource in (False, True):
            activation = {
                "object": req["new"],
                "oldObject": req["old"],
                "request": admission_request(req, empty_subresource),
            }
            try:
                answers.add(cel_eval(cond["expression"], activation))
            except CelFailure as e:
                form = 'subResource ""' if empty_subresource else "subResource absent"
                raise CelFailure(f"matchCondition {cond['name']} ({form}): {e}") from None
        if len(answers) != 1:
            raise CelFailure(f"matchCondition {cond['name']} answers differently with subResource absent and \"\"")
        if not answers.pop():
            return False
    return True


def called_entries(vwc, req, namespaces):
    """Names of the webhook entries the API server calls for req."""
    labels = dict(namespaces[req["namespace"]], **{"kubernetes.io/metadata.name": req["namespace"]})
    called = []
    for hook in vwc["webhooks"]:
        if not any(rule_matches(rule, req) for rule in hook.get("rules", [])):
            continue
        if not selector_matches(hook.get("namespaceSelector"), labels):
            continue
        objects = [o for o in (req["new"], req["old"]) if o]
        if not any(selector_matches(hook.get("objectSelector"), o["metadata"].get("labels", {})) for o in objects):
            continue
        if conditions_hold(hook.get("matchConditions", []), req):
            called.append(hook["name"])
    return called


# --- the objects: what the API server holds, with and without labels and initContainers ---


def mk_pod_spec(app, init=True):
    spec = {
        "containers": [
            {
                "name": "api",
                "image": f"registry.example.com/{app}:1.42.0",
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "DB_HOST", "value": "checkout-db"}],
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 10},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
            },
            {
                "name": "envoy",
                "image": "docker.io/envoyproxy/envoy:v1.31.2",
                "imagePullPolicy": "IfNotPresent",
                "env": [{"name": "ENVOY_UID", "value": "101"}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
            },
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": app,
        "securityContext": {"runAsNonRoot": True},
        "schedulerName": "default-scheduler",
    }
    if init:
        spec["initContainers"] = [{
            "name": "migrate", "image": f"registry.example.com/{app}-migrate:1.42.0", "args": ["up"],
            "imagePullPolicy": "IfNotPresent",
        }]
    return spec


def mk_template(labels, app, init=True, annotations=True):
    meta = {"labels": dict(labels)}
    if annotations:
        meta["annotations"] = {"prometheus.io/scrape": "true", "prometheus.io/port": "9102"}
    return {"metadata": meta, "spec": mk_pod_spec(app, init)}


def mk_meta(name, labels, **extra):
    meta = {
        "name": name,
        "namespace": "production",
        "uid": "5f1d2c3b-8e1a-4f0e-b1a2-%012d" % (sum(map(ord, name)) * 7919),
        "resourceVersion": "48213",
        "generation": 7,
        "creationTimestamp": "2025-03-02T09:14:00Z",
    }
    if labels is not None:
        meta["labels"] = dict(labels)
    meta.update(extra)
    return meta


def mk_workload(kind, name, labels, init=True):
    """A Deployment, StatefulSet or DaemonSet; labels None: no metadata.labels at all."""
    selector = {"app.kubernetes.io/name": name}
    spec = {
        "selector": {"matchLabels": selector},
        "template": mk_template(dict(labels or {}, **selector), name, init),
        "revisionHistoryLimit": 10,
    }
    if kind != "DaemonSet":
        spec["replicas"] = 3
    if kind == "Deployment":
        spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
        spec["progressDeadlineSeconds"] = 600
    if kind == "StatefulSet":
        spec["serviceName"] = name
    extra = {"annotations": {"deployment.kubernetes.io/revision": "7"}} if kind == "Deployment" else {}
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": mk_meta(name, labels, **extra),
        "spec": spec,
        "status": {"observedGeneration": 7, "replicas": 3, "readyReplicas": 3},
    }


APP = {"app.kubernetes.io/name": "checkout-api", "app.kubernetes.io/part-of": "shop", "team": "payments"}
DEPLOYMENT = mk_workload("Deployment", "checkout-api", APP)
UNLABELLED_DEPLOYMENT = mk_workload("Deployment", "legacy-worker", None, init=False)
STATEFULSET = mk_workload("StatefulSet", "ledger", None, init=False)
DAEMONSET = mk_workload("DaemonSet", "node-agent", {"app": "node-agent"})


def mk_replicaset():
    rs = copy.deepcopy(DEPLOYMENT)
    rs["kind"] = "ReplicaSet"
    rs["metadata"] = mk_meta(
        "checkout-api-7d9f8b6c4d",
        dict(APP, **{"pod-template-hash": "7d9f8b6c4d"}),
        annotations={
            "deployment.kubernetes.io/desired-replicas": "3",
            "deployment.kubernetes.io/max-replicas": "4",
            "deployment.kubernetes.io/revision": "7",
        },
        ownerReferences=[{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout-api",
            "uid": DEPLOYMENT["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True,
        }],
    )
    rs["spec"] = {
        "replicas": 3,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "checkout-api", "pod-template-hash": "7d9f8b6c4d"}},
        "template": copy.deepcopy(DEPLOYMENT["spec"]["template"]),
    }
    rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = "7d9f8b6c4d"
    rs["status"] = {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3, "observedGeneration": 1}
    return rs


REPLICASET = mk_replicaset()
CRONJOB = {
    "apiVersion": "batch/v1",
    "kind": "CronJob",
    "metadata": mk_meta("nightly-report", {"app": "nightly-report"}),
    "spec": {
        "schedule": "30 2 * * *",
        "concurrencyPolicy": "Forbid",
        "suspend": False,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 1,
        "jobTemplate": {
            "spec": {
                "backoffLimit": 2,
                "template": {
                    "metadata": {"labels": {"app": "nightly-report"}},
                    "spec": dict(mk_pod_spec("nightly-report", init=False), restartPolicy="OnFailure"),
                },
            }
        },
    },
    "status": {"lastScheduleTime": "2025-03-02T02:30:00Z"},
}


def mk_pod(name, labels, init=True):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": mk_meta(name, labels, generation=1, ownerReferences=[{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-api-7d9f8b6c4d",
            "uid": REPLICASET["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True,
        }], annotations={"prometheus.io/scrape": "true"}),
        "spec": dict(mk_pod_spec("checkout-api", init), nodeName="node-3", enableServiceLinks=True),
        "status": {
            "phase": "Running",
            "podIP": "10.244.3.17",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2025-03-02T09:15:02Z"}],
        },
    }


POD = mk_pod("checkout-api-7d9f8b6c4d-x2x9q", dict(APP, **{"pod-template-hash": "7d9f8b6c4d"}))
UNLABELLED_POD = mk_pod("scratch", None, init=False)
SCALE = {
    "apiVersion": "autoscaling/v1",
    "kind": "Scale",
    "metadata": mk_meta("checkout-api", None),
    "spec": {"replicas": 3},
    "status": {"replicas": 3, "selector": "app.kubernetes.io/name=checkout-api"},
}


def changed(obj, change):
    """(old, new): obj, and a copy of it with change applied."""
    new = copy.deepcopy(obj)
    change(new)
    return obj, new


def _set(path, value):
    """A change that sets path (keys and list indices) to value, making missing maps on the way."""

    def apply(obj):
        node = obj
        for part in path[:-1]:
            node = node[part] if isinstance(node, list) else node.setdefault(part, {})
        node[path[-1]] = value

    return apply


def _all(*changes):
    def apply(obj):
        for c in changes:
            c(obj)
    return apply


def _swap_containers(obj):
    obj["spec"]["template"]["spec"]["containers"].reverse()


def _env(obj):
    obj["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "debug"


def _add_ephemeral(obj):
    obj["spec"]["ephemeralContainers"] = [{
        "name": "debugger-7xk2p", "image": "docker.io/library/busybox:1.36", "targetContainerName": "api",
        "stdin": True, "tty": True, "imagePullPolicy": "IfNotPresent",
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
    }]


TEMPLATE = ("spec", "template")
RESTARTED = "2025-03-02T10:41:07+01:00"
GV = {"apps": ("apps", "v1"), "batch": ("batch", "v1"), "core": ("", "v1")}


def mk_request(name, api, resource, kind, old, new, operation="UPDATE", subresource="", kind_gv=None):
    group, version = GV[api]
    kg, kv = kind_gv or (group, version)
    return {
        "name": name, "group": group, "version": version, "resource": resource, "subresource": subresource,
        "kind": {"group": kg, "version": kv, "kind": kind}, "operation": operation, "old": old, "new": new,
    }


def upd(name, obj, change, resource=None, api="apps", subresource=""):
    """An UPDATE of obj's main resource (or of subresource) that applies change."""
    old, new = changed(obj, change)
    resource = resource or obj["kind"].lower() + "s"
    return mk_request(name, api, resource, obj["kind"], old, new, subresource=subresource)


def must_send():
    """Requests that may change what runs: sent in every protected namespace, never elsewhere."""
    img = ("spec", "containers", 0, "image")
    return [
        upd("Deployment kubectl rollout restart (restartedAt annotation added)", DEPLOYMENT,
            _set(TEMPLATE + ("metadata", "annotations", "kubectl.kubernetes.io/restartedAt"), RESTARTED)),
        upd("Deployment restart under another key case (kubectl.kubernetes.io/RestartedAt)", DEPLOYMENT,
            _set(TEMPLATE + ("metadata", "annotations", "kubectl.kubernetes.io/RestartedAt"), RESTARTED)),
        upd("Deployment restart of an object without labels or initContainers", UNLABELLED_DEPLOYMENT,
            _set(TEMPLATE + ("metadata", "annotations", "kubectl.kubernetes.io/restartedAt"), RESTARTED)),
        upd("Deployment image change", DEPLOYMENT,
            _set(TEMPLATE + img, "registry.example.com/checkout-api:1.43.0")),
        upd("Deployment env change", DEPLOYMENT, _env),
        upd("Deployment pod-template annotation change", DEPLOYMENT,
            _set(TEMPLATE + ("metadata", "annotations", "prometheus.io/port"), "9103")),
        upd("Deployment imagePullPolicy change", DEPLOYMENT,
            _set(TEMPLATE + ("spec", "containers", 1, "imagePullPolicy"), "Always")),
        upd("Deployment container order swap", DEPLOYMENT, _swap_containers),
        upd("Deployment relabel in the same request (template and app.kubernetes.io/name)", DEPLOYMENT, _all(
            _set(("metadata", "labels", "app.kubernetes.io/name"), "checkout-api-v2"),
            _set(TEMPLATE + ("metadata", "labels", "app.kubernetes.io/name"), "checkout-api-v2"))),
        upd("Deployment label-only relabel (app.kubernetes.io/name, template unchanged)", DEPLOYMENT,
            _set(("metadata", "labels", "app.kubernetes.io/name"), "orders-api")),
        upd("Deployment app label added to an object without labels", UNLABELLED_DEPLOYMENT,
            _set(("metadata", "labels"), {"app": "checkout-api"})),
        upd("DaemonSet app label removed", DAEMONSET, lambda o: o["metadata"]["labels"].pop("app")),
        upd("StatefulSet image change", STATEFULSET, _set(TEMPLATE + img, "registry.example.com/ledger:1.43.0")),
        upd("DaemonSet image change", DAEMONSET, _set(TEMPLATE + img, "registry.example.com/node-agent:1.43.0")),
        upd("ReplicaSet image change", REPLICASET,
            _set(TEMPLATE + img, "registry.example.com/checkout-api:1.43.0")),
        upd("CronJob image change (spec.jobTemplate.spec.template)", CRONJOB,
            _set(("spec", "jobTemplate", "spec", "template") + img, "registry.example.com/nightly-report:1.43.0"),
            api="batch"),
        upd("Pod container image change", POD, _set(img, "registry.example.com/checkout-api:1.43.0"), api="core"),
        upd("Pod initContainer image change", POD,
            _set(("spec", "initContainers", 0, "image"), "registry.example.com/checkout-api-migrate:1.43.0"),
            api="core"),
        upd("Pod image change of a Pod without labels or initContainers", UNLABELLED_POD,
            _set(img, "docker.io/library/busybox:1.37"), api="core"),
        upd("Pod app label change", POD,
            _set(("metadata", "labels", "app.kubernetes.io/name"), "orders-api"), api="core"),
        upd("pods/ephemeralcontainers adding an ephemeral container (kubectl debug)", POD, _add_ephemeral,
            resource="pods", api="core", subresource="ephemeralcontainers"),
    ]


def must_not_send():
    """Requests that cannot change what runs: never sent."""
    return [
        upd("Pod update of a non-application label only", POD,
            _set(("metadata", "labels", "team"), "checkout"), api="core"),
        upd("Pod update of an annotation only", POD,
            _set(("metadata", "annotations", "cluster-autoscaler.kubernetes.io/safe-to-evict"), "true"), api="core"),
        upd("Pod without labels: a label added that is not an application label", UNLABELLED_POD,
            _set(("metadata", "labels"), {"quarantine": "true"}), api="core"),
        upd("Deployment spec.replicas only", DEPLOYMENT, _set(("spec", "replicas"), 5)),
        upd("Deployment without labels: spec.replicas only", UNLABELLED_DEPLOYMENT, _set(("spec", "replicas"), 0)),
        upd("Deployment metadata annotation and non-application label only", DEPLOYMENT, _all(
            _set(("metadata", "annotations", "owner"), "team-payments"),
            _set(("metadata", "labels", "team"), "checkout"))),
        upd("ReplicaSet update by the deployment controller (replicas, revision annotation)", REPLICASET, _all(
            _set(("spec", "replicas"), 0),
            _set(("metadata", "annotations", "deployment.kubernetes.io/revision"), "8"))),
        upd("CronJob spec.suspend only", CRONJOB, _set(("spec", "suspend"), True), api="batch"),
        mk_request("deployments/scale", "apps", "deployments", "Scale",
                   *changed(SCALE, _set(("spec", "replicas"), 6)), subresource="scale", kind_gv=("autoscaling", "v1")),
        upd("deployments/status", DEPLOYMENT, _set(("status", "readyReplicas"), 2),
            resource="deployments", subresource="status"),
        upd("pods/status", POD, _set(("status", "conditions", 0, "status"), "False"), resource="pods", api="core",
            subresource="status"),
        mk_request("Deployment CREATE", "apps", "deployments", "Deployment", None, DEPLOYMENT, operation="CREATE"),
        mk_request("Deployment DELETE", "apps", "deployments", "Deployment", DEPLOYMENT, None, operation="DELETE"),
    ]


def in_namespace(req, namespace):
    req = copy.deepcopy(req)
    req["namespace"] = namespace
    for obj in (req["old"], req["new"]):
        if obj:
            obj["metadata"]["namespace"] = namespace
    return req


def request_table():
    """(request, {namespace: want sent}) for every request of the table."""
    rows = [(r, {ns: ns in PROTECTED for ns in TABLE_NAMESPACES}) for r in must_send()]
    rows += [(r, {ns: False for ns in TABLE_NAMESPACES}) for r in must_not_send()]
    return rows


def table_results(vwc, rows, namespaces):
    """[(request, want, problems, seen)] over the table: problems is empty when the request went as wanted in
    every namespace, seen lists (namespace, entries called)."""
    results = []
    for req, want in rows:
        problems, seen = [], []
        for ns, want_sent in want.items():
            try:
                called = called_entries(vwc, in_namespace(req, ns), namespaces)
            except CelFailure as e:
                problems.append(f"{ns}: {e}")
                continue
            if len(called) > 1:
                problems.append(f"{ns}: called {len(called)} times ({', '.join(called)})")
            if bool(called) != want_sent:
                got_word, want_word = ("sent" if called else "not sent"), ("sent" if want_sent else "not sent")
                problems.append(f"{ns}: {got_word}, want {want_word}")
            seen.append((ns, called))
        results.append((req, want, problems, seen))
    return results


def describe(seen):
    sent = [f"{ns} ({called[0].split('.')[0]})" for ns, called in seen if called]
    not_sent = [ns for ns, called in seen if not called]
    return "; ".join(p for p in (
        f"sent in {', '.join(sent)}" if sent else "",
        f"not sent in {', '.join(not_sent)}" if not_sent else "",
    ) if p)


# Kind -> (group, version, resource) of the webhook's rules, from DESIGN.md "What is gated".
KIND_RULES = {
    "Deployment": [("apps", "v1", "deployments")],
    "StatefulSet": [("apps", "v1", "statefulsets")],
    "DaemonSet": [("apps", "v1", "daemonsets")],
    "ReplicaSet": [("apps", "v1", "replicasets")],
    "CronJob": [("batch", "v1", "cronjobs")],
    "Pod": [("", "v1", "pods"), ("", "v1", "pods/ephemeralcontainers")],
}


def rules_problems(vwc, kinds):
    """The webhook's rules against the gated kinds: exactly their resources, UPDATE only, Namespaced."""
    want = sorted(t for k in kinds for t in KIND_RULES[k])
    problems = []
    for hook in vwc["webhooks"]:
        got = []
        for rule in hook["rules"]:
            if rule.get("operations") != ["UPDATE"] or rule.get("scope") != "Namespaced":
                problems.append(f"{hook['name']}: rule {rule} is not UPDATE-only and Namespaced")
            got += [(g, v, r) for g in rule["apiGroups"] for v in rule["apiVersions"] for r in rule["resources"]]
        if sorted(got) != want:
            problems.append(f"{hook['name']}: rules cover {sorted(got)}, want {want}")
    return problems


def lose_resource(vwc, resource):
    vwc = copy.deepcopy(vwc)
    for hook in vwc["webhooks"]:
        for rule in hook["rules"]:
            rule["resources"] = [r for r in rule["resources"] if r != resource]
        hook["rules"] = [r for r in hook["rules"] if r["resources"]]
    return vwc


def lose_conditions(vwc):
    vwc = copy.deepcopy(vwc)
    for hook in vwc["webhooks"]:
        hook.pop("matchConditions", None)
    return vwc


# --- the label guard ---


def mk_namespace(name, labels):
    """A Namespace; labels None: no metadata.labels at all."""
    meta = {"name": name, "uid": "3b8e6f0a-1c2d-4e5f-8a9b-%012d" % len(name), "resourceVersion": "9120"}
    if labels is not None:
        meta["labels"] = dict(labels, **{"kubernetes.io/metadata.name": name})
    return {
        "apiVersion": "v1", "kind": "Namespace", "metadata": meta,
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"},
    }


def label_guard_table(label):
    """(name, request, want the policy applied): its matchCondition picks out removals of the label."""
    payments = mk_namespace("payments", {label: "true", "team": "payments"})
    # The API server labels every namespace with kubernetes.io/metadata.name; one without metadata.labels
    # at all still exercises the condition's missing-field path.
    bare = mk_namespace("staging", None)
    production = mk_namespace("production", {})

    def ns_upd(name, obj, change, subresource=""):
        return mk_request(name, "core", "namespaces", "Namespace", *changed(obj, change), subresource=subresource)

    def drop(obj):
        del obj["metadata"]["labels"][label]

    return [
        (ns_upd("label removed", payments, drop), True),
        (ns_upd("label set to \"false\"", payments, _set(("metadata", "labels", label), "false")), True),
        (ns_upd("every label removed (no metadata.labels left)", payments, lambda o: o["metadata"].pop("labels")),
         True),
        (ns_upd("label removed through namespaces/status", payments, drop, "status"), True),
        (ns_upd("label removed through namespaces/finalize", payments, drop, "finalize"), True),
        (ns_upd("label added", production, _set(("metadata", "labels", label), "true")), False),
        (ns_upd("label added to a namespace without labels", bare, _set(("metadata", "labels"), {label: "true"})),
         False),
        (ns_upd("unrelated label change", payments, _set(("metadata", "labels", "team"), "checkout")), False),
        (ns_upd("annotation change of a namespace without labels", bare, _set(("metadata", "annotations", "owner"), "qa")),
         False),
    ]


def check_admission(checks, rendered, values):
    """The request table against the default render's ValidatingWebhookConfiguration and label guard."""
    docs = all_docs(rendered)
    vwc = find(docs, "ValidatingWebhookConfiguration")
    policy = values["config"]["policy"]
    label = policy["protectedLabel"]
    namespaces = {
        ns: {(label if k == "rollgate.io/protected" else k): v for k, v in labels.items()}
        for ns, labels in TABLE_NAMESPACES.items()
    }
    premise = []
    if "production" not in policy["protectedNamespaces"]:
        premise.append("production is not in config.policy.protectedNamespaces (the table protects it by name)")
    if sorted(policy["gatedKinds"]) != sorted(KIND_RULES):
        premise.append(f"config.policy.gatedKinds is {policy['gatedKinds']}, the table wants all of {list(KIND_RULES)}")
    checks.check("admission table: the default values are its premise (production listed, all six kinds)", premise)

    rows = request_table()
    for req, want, problems, seen in table_results(vwc, rows, namespaces):
        wanted = "sent in " + ", ".join(ns for ns, w in want.items() if w) if any(want.values()) else "never sent"
        checks.check(f"admission: {req['name']} (want {wanted})", problems, describe(seen))

    # The table must notice a lost rule or a lost condition: each one dropped from the render makes a row fail.
    missed = []
    resources = sorted({r for hook in vwc["webhooks"] for rule in hook["rules"] for r in rule["resources"]})
    mutants = [(f"rule resource {r} dropped", lose_resource(vwc, r)) for r in resources]
    mutants.append(("matchConditions dropped", lose_conditions(vwc)))
    for what, mutant in mutants:
        if not any(problems for _, _, problems, _ in table_results(mutant, rows, namespaces)):
            missed.append(f"{what}: every row still as wanted")
    checks.check("admission table notices a lost rule or condition", missed, f"{len(mutants)} mutants, each caught")

    # Rules follow config.policy.gatedKinds.
    problems = rules_problems(vwc, policy["gatedKinds"])
    for kinds in (["Deployment"], ["CronJob", "Pod"], ["StatefulSet", "ReplicaSet"], ["Pod"]):
        variant = render({"config": {"policy": {"gatedKinds": kinds}}})
        variant = find(all_docs(variant), "ValidatingWebhookConfiguration")
        problems += [f"gatedKinds {kinds}: {p}" for p in rules_problems(variant, kinds) + validate_docs([variant], {})]
    checks.check("webhook rules follow config.policy.gatedKinds", problems, "defaults and 4 subsets")

    # The label guard: UPDATE of a namespace and of its status and finalize subresources, and a
    # matchCondition that picks out removals of the protected label.
    vap = find(docs, "ValidatingAdmissionPolicy")
    rules = vap["spec"]["matchConstraints"]["resourceRules"]
    problems = []
    for sub in ("", "status", "finalize"):
        for op, want in (("UPDATE", True), ("CREATE", False), ("DELETE", False)):
            req = {"group": "", "version": "v1", "resource": "namespaces", "subresource": sub, "operation": op,
                   "namespace": ""}
            if any(rule_matches(r, req) for r in rules) != want:
                problems.append(f"{op} namespaces{'/' + sub if sub else ''}: {'matched' if not want else 'not matched'}")
    checks.check(
        "label guard: resourceRules match UPDATE (only) of namespaces, namespaces/status, namespaces/finalize", problems
    )
    for req, want in label_guard_table(label):
        req = dict(req, namespace="")
        where = f"namespaces{'/' + req['subresource'] if req['subresource'] else ''}"
        conditions = vap["spec"].get("matchConditions", [])
        try:
            applied = any(rule_matches(r, req) for r in rules) and conditions_hold(conditions, req)
            problems = [] if applied == want else [f"policy applied: {applied}, want {want}"]
        except CelFailure as e:
            applied, problems = None, [str(e)]
        checks.check(
            f"label guard: {req['name']} ({where}; want {'applied' if want else 'not applied'})",
            problems,
            "applied" if applied else "not applied",
        )


# === main ===


def main():
    out = Path(sys.argv[1]).resolve()
    write = "--write" in sys.argv[2:]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    checks = Checks()
    crds = crd_schemas()
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    # Helm's lint, strict (warnings fail), on the defaults and each case.
    for name, _, namespace, case_values in [("default", RELEASE, NAMESPACE, None)] + CASES:
        report = helm.lint(str(CHART), case_values, strict=True, namespace=namespace, kube_version="v1.30.0")
        bad = [f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        checks.check(f"helm lint --strict ({name})", bad)

    # Render and validate the defaults and each combination.
    default = render(None)
    renders = {"default": default}
    for name, release, namespace, case_values in CASES:
        try:
            renders[name] = render(case_values, release, namespace)
        except helm.HelmError as e:
            checks.fail(f"render {name}", str(e))
    for name, rendered in renders.items():
        case_dir = out / name
        case_dir.mkdir()
        for template, docs in rendered.items():
            (case_dir / template).write_text("---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs))
        docs = all_docs(rendered)
        checks.check(
            f"kubernetes-validate --strict ({name}: {len(docs)} objects, Kubernetes {' and '.join(KUBE_VERSIONS)})",
            validate_docs(docs, crds),
        )

    # Values that must be refused.
    for name, bad_values, word in BAD_VALUES:
        try:
            render(bad_values)
            checks.fail(f"refuses {name}", "rendered without an error")
        except helm.HelmError as e:
            checks.check(f"refuses {name}", [] if word in str(e) else [f"error does not name {word}: {e}"])

    # Every .Values path the templates use exists in values.yaml, and every value is used.
    refs = template_value_paths()
    missing = sorted(f"{t}: .Values.{p}" for t, p in refs if not has_path(values, p))
    checks.check("every .Values path in the templates exists in values.yaml", missing, f"{len(refs)} references")
    used = {p for _, p in refs}
    unused = [leaf for leaf in leaf_paths(values) if not any(leaf == u or leaf.startswith(u + ".") for u in used)]
    checks.check("every value in values.yaml is used by a template", unused)

    # The chart README lists every value (its path, or its parent's for inline maps).
    readme = (CHART / "README.md").read_text()
    # Listed: the first column of a table row, `| \`path\` | default | meaning |`.
    listed = set(re.findall(r"^\| `([^`]+)` \|", readme, re.MULTILINE))
    # A leaf counts as listed when it or one of its parents is (`resources` covers `resources.limits.cpu`).
    undocumented = [
        leaf
        for leaf in leaf_paths(values)
        if not any(".".join(leaf.split(".")[:n]) in listed for n in range(1, leaf.count(".") + 2))
    ]
    checks.check("the chart README lists every value", undocumented, f"{len(list(leaf_paths(values)))} values")

    # Secure defaults of DESIGN.md "Deployment of rollgate itself", as rendered.
    checks.check("default render: DESIGN.md deployment contract", design_contract(all_docs(default)))

    # What the API server sends rollgate, and what the label guard applies to, on a table of requests.
    check_admission(checks, default, values)

    # Alert rules: DESIGN.md's alerts exactly, plus rollgate's own; promtool checks and unit-tests them.
    rules = alert_rules(all_docs(renders["everything-on"]))
    problems = []
    for alert, (expr, for_, severity) in DESIGN_ALERTS.items():
        rule = rules.get(alert)
        if rule is None:
            problems.append(f"{alert} missing")
        elif (rule["expr"], rule["for"], rule["labels"]["severity"]) != (expr, for_, severity):
            problems.append(f"{alert}: {rule['expr']!r} for {rule['for']} {rule['labels']['severity']}")
    if "RollgateStoreDown" not in rules or rules["RollgateStoreDown"]["expr"] != "rollgate_store_up == 0":
        problems.append("RollgateStoreDown on rollgate_store_up == 0 missing")
    checks.check("alerts match DESIGN.md \"Alert rules\"", problems, f"{len(rules)} alerts")
    rules_dir = out / "alerts"
    rules_dir.mkdir()
    groups = find(all_docs(renders["everything-on"]), "PrometheusRule")["spec"]
    (rules_dir / "rules.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))
    shutil.copy(CHART / "tests" / "alerts-test.yaml", rules_dir / "alerts-test.yaml")
    tested = set(re.findall(r"alertname: (\w+)", (CHART / "tests" / "alerts-test.yaml").read_text()))
    checks.check("every alert has a promtool unit test", sorted(set(rules) - tested))
    off = render({"prometheusRule": {"enabled": True, "alerts": {"RollgateStoreDown": {"enabled": False, "for": "1m", "severity": "critical"}}}})
    checks.check(
        "an alert's toggle removes it",
        ["RollgateStoreDown still rendered"] if "RollgateStoreDown" in alert_rules(all_docs(off)) else [],
    )

    # webhook-config/ equals the chart's default render (less what PLAIN leaves out).
    want = plain_form(default)
    if write:
        write_plain(want)
        print(f"wrote webhook-config/ from the chart's default render ({len(want)} files)")
    got = read_plain()
    problems = diff_docs(all_docs(want), [d for f, docs in got.items() if f not in PLAIN_EXTRAS for d in docs])
    problems += [f"{f}: not generated from the chart" for f in got if f not in want and f not in PLAIN_EXTRAS]
    kustomization = got.get("kustomization.yaml", [{}])[0]
    listed = set(kustomization.get("resources", []))
    problems += [f"kustomization.yaml does not list {f}" for f in set(got) - listed - {"kustomization.yaml"}]
    checks.check("webhook-config/ equals the chart's default render", problems)
    checks.check(
        f"kubernetes-validate --strict (webhook-config/, Kubernetes {' and '.join(KUBE_VERSIONS)})",
        validate_docs([d for docs in got.values() for d in docs if d.get("kind") != "Kustomization"], crds),
    )
    if shutil.which("kubectl"):
        built = subprocess.run(["kubectl", "kustomize", str(PLAIN)], capture_output=True, text=True, timeout=60)
        if built.returncode != 0:
            checks.fail("kubectl kustomize webhook-config/", built.stderr.strip())
        else:
            docs = [d for d in yaml.safe_load_all(built.stdout) if d and d["kind"] != "Namespace"]
            checks.check("kubectl kustomize webhook-config/ equals the chart's default render", diff_docs(all_docs(want), docs))
    else:
        print("skip kubectl kustomize webhook-config/: kubectl is not installed")

    # The real server runs on what the chart generates.
    binary = Path(os.environ.get("ROLLGATE_BIN", ROOT / "target" / "debug" / "rollgate"))
    if binary.exists():
        with tempfile.TemporaryDirectory() as tmp:
            checks.check(
                "rollgate serves with the chart's generated certificate, signing key and config",
                serve_smoke(default, binary, Path(tmp)),
            )
    else:
        print(f"skip serving the chart's files: {binary} is not built (cargo build)")

    print(f"manifests: {checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


def design_contract(docs):
    problems = []
    deploy = find(docs, "Deployment", "rollgate")
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    sc, psc = container["securityContext"], pod["securityContext"]
    expect = {
        "replicas >= 2": deploy["spec"]["replicas"] >= 2,
        "runAsNonRoot": psc.get("runAsNonRoot") is True,
        "seccomp RuntimeDefault": psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
        "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
        "no privilege escalation": sc.get("allowPrivilegeEscalation") is False,
        "all capabilities dropped": sc.get("capabilities", {}).get("drop") == ["ALL"],
        "pod anti-affinity": "podAntiAffinity" in pod.get("affinity", {}),
        "probes on the admin port": all(
            container[p]["httpGet"]["port"] == "admin" for p in ("livenessProbe", "readinessProbe")
        ),
        "readiness on /readyz": container["readinessProbe"]["httpGet"]["path"] == "/readyz",
        "resource requests and limits": {"requests", "limits"} <= set(container.get("resources", {})),
        "PodDisruptionBudget": any(d["kind"] == "PodDisruptionBudget" for d in docs),
        "NetworkPolicy": any(d["kind"] == "NetworkPolicy" for d in docs),
        "prometheus scrape annotations on port 9090": deploy["spec"]["template"]["metadata"]["annotations"].get(
            "prometheus.io/port"
        ) == "9090",
        "Services rollgate-webhook and rollgate-api": {"rollgate-webhook", "rollgate-api"}
        <= {d["metadata"]["name"] for d in docs if d["kind"] == "Service"},
        "label guard policy": any(d["kind"] == "ValidatingAdmissionPolicy" for d in docs),
    }
    problems += [name for name, ok in expect.items() if not ok]
    rbac = find(docs, "ClusterRole", "rollgate")
    verbs = {v for r in rbac["rules"] for v in r["verbs"]}
    if "impersonate" in verbs or any("secrets" in r["resources"] for r in rbac["rules"]):
        problems.append("ClusterRole grants impersonation or Secrets")
    vwc = find(docs, "ValidatingWebhookConfiguration")
    hooks = vwc["webhooks"]
    for hook in hooks:
        exprs = {e["key"]: e for e in hook["namespaceSelector"]["matchExpressions"]}
        want = {
            "sideEffects": hook["sideEffects"] == "NoneOnDryRun",
            "timeoutSeconds 3": hook["timeoutSeconds"] == 3,
            "failurePolicy Fail": hook["failurePolicy"] == "Fail",
            # One condition (the API server ANDs them); what it lets through is the admission table's job.
            "one matchCondition changes-what-runs": [c["name"] for c in hook.get("matchConditions", [])]
            == ["changes-what-runs"],
            "only UPDATE": all(rule["operations"] == ["UPDATE"] for rule in hook["rules"]),
        }
        problems += [f"{hook['name']}: {name}" for name, ok in want.items() if not ok]
        names = exprs["kubernetes.io/metadata.name"]
        if names["operator"] == "NotIn" and not {"kube-system", NAMESPACE} <= set(names["values"]):
            problems.append(f"{hook['name']}: kube-system and {NAMESPACE} not excluded")
        if names["operator"] == "In" and {"kube-system", NAMESPACE} & set(names["values"]):
            problems.append(f"{hook['name']}: selects kube-system or {NAMESPACE}")
    label = [h for h in hooks if h["name"].startswith("protected-by-label")]
    by_name = [h for h in hooks if h["name"].startswith("protected-by-name")]
    if len(label) != 1 or len(by_name) != 1:
        problems.append("want one label-selected and one name-selected webhook entry")
    else:
        label_expr = {e["key"]: e for e in label[0]["namespaceSelector"]["matchExpressions"]}
        name_expr = {e["key"]: e for e in by_name[0]["namespaceSelector"]["matchExpressions"]}
        key = "rollgate.io/protected"
        if not (label_expr[key]["operator"] == "In" and name_expr.get(key, {}).get("operator") == "NotIn"):
            problems.append("the two webhook entries overlap (a namespace could be called twice)")
    return problems


if __name__ == "__main__":
    sys.exit(main())
