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
