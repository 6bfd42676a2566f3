#!/usr/bin/env python3
"""Lint, render and validate the vaultlet Helm chart with every value set in charts/vaultlet/ci/.

Run with the project venv's Python (`source scripts/tools.sh` first):

    .venv/bin/python scripts/helm-lint.py [--chart charts/vaultlet] [--kube-version 1.33.0]

For each ci/*.yaml value set (plus the chart defaults):
  1. helm-sdkpy's Lint (Helm's own library) on a copy of the chart whose values.yaml has the
     value set merged in (its Lint takes no values). It reports paths and severities only.
  2. helm-python-sdk's lint (Helm v4 library; takes values, strict, kube_version) when installed:
     same checks with readable messages, warnings treated as errors.
  3. helm-python-sdk's offline render; every rendered manifest is validated with
     `kubernetes-validate --strict` for the given Kubernetes version (CRD kinds are skipped
     with a note), then checked against the chart's promises (webhook scope, TLS wiring,
     high availability, env vars the injector reads).
  4. When the injector binary exists (target/debug/vaultlet-injector or $VAULTLET_INJECTOR):
     it is started with the rendered args and env (on loopback ports) and called like the API
     server would: HTTPS to <service>.<namespace>.svc at the webhook's path, verified with the
     rendered caBundle (mode helm), expecting an injected Pod.
Then: values that must be rejected (schema and template checks), certificate reuse on upgrade
(mode helm, with `lookup` stubbed), `helm package`, and
docs/install.md's values table against values.yaml.
helm-sdkpy (0.1.32) has no dry-run, client-only or template action, so rendering needs
helm-python-sdk; without it the script fails with a message saying how to install it.
Exit status: 0 when everything passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import http.client
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
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
# Kinds whose schemas kubernetes-validate does not have (CRDs): skipped, with a note.
CRD_KINDS = {"ServiceMonitor", "Certificate", "Issuer", "ClusterIssuer"}
RELEASE = "vaultlet"
NAMESPACE = "vaultlet-system"
INSTALL_HINT = (
    "helm-python-sdk is not installed in this venv: run "
    "`.venv/bin/pip install helm-python-sdk==0.2.2` (or `source scripts/tools.sh`)"
)


class Failures:
    """Collects failures so every problem of every value set is reported in one run."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{where}: {what}")
        print(f"  FAIL {what}")

    def check(self, where: str, cond: bool, what: str) -> None:
        if cond:
            print(f"  ok   {what}")
        else:
            self.add(where, what)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm-style merge: maps merge recursively, everything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: a values file must hold a mapping")
    return data


# ---------------------------------------------------------------------------------------------
# 1. helm-sdkpy
# ---------------------------------------------------------------------------------------------


def lint_helm_sdkpy(chart: Path, values: dict[str, Any], fails: Failures, where: str) -> None:
    import helm_sdkpy

    with tempfile.TemporaryDirectory(prefix="vaultlet-lint-") as tmp:
        copy_dir = Path(tmp) / chart.name
        shutil.copytree(chart, copy_dir)
        merged = deep_merge(load_yaml(chart / "values.yaml"), values)
        (copy_dir / "values.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
        try:
            report = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(str(copy_dir)))
        except helm_sdkpy.HelmError as err:
            fails.add(where, f"helm-sdkpy Lint raised: {err}")
            return
    bad = [m for m in report.get("Messages") or [] if m.get("Severity", 0) >= 2]
    for m in bad:
        # helm-sdkpy serialises Go errors as {}: only the path and severity survive.
        print(f"       {SEVERITY.get(m['Severity'])} in {m.get('Path')}")
    fails.check(where, not bad and not report.get("Errors"), "helm-sdkpy Lint: no warning or error")


# ---------------------------------------------------------------------------------------------
# 2. helm-python-sdk lint and render
# ---------------------------------------------------------------------------------------------


def helm_python():
    try:
        import helm_python  # noqa: F401
    except ImportError:
        return None
    import helm_python

    return helm_python


def lint_helm_python(hp, chart: Path, values: dict[str, Any], kube: str, fails: Failures, where: str) -> None:
    report = hp.chart.lint(str(chart), values, strict=True, kube_version=f"v{kube}", namespace=NAMESPACE)
    for m in report.get("messages") or []:
        print(f"       {SEVERITY.get(m.get('severity'), '?')} {m.get('path')}: {m.get('error')}")
    bad = [m for m in report.get("messages") or [] if m.get("severity", 0) >= 2]
    fails.check(where, not bad and not report.get("errors"), "helm lint --strict: no warning or error")


def render(hp, chart: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Renders the chart offline and returns the manifests (NOTES.txt excluded)."""
    loaded = hp.chart.Chart.load(str(chart))
    files = loaded.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs: list[dict[str, Any]] = []
    for name, text in sorted(files.items()):
        if name.endswith("NOTES.txt") or not name.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__source__"] = name
                docs.append(doc)
    return docs


def kubernetes_validate(docs: list[dict[str, Any]], kube: str, fails: Failures, where: str) -> None:
    exe = Path(sys.executable).parent / "kubernetes-validate"
    validator = str(exe) if exe.exists() else shutil.which("kubernetes-validate")
    if validator is None:
        fails.add(where, "kubernetes-validate not found: `source scripts/tools.sh`")
        return
    with tempfile.TemporaryDirectory(prefix="vaultlet-render-") as tmp:
        paths = []
        for i, doc in enumerate(docs):
            kind = doc.get("kind")
            if kind in CRD_KINDS:
                print(f"  note {kind}/{doc['metadata']['name']}: CRD kind, not validated by kubernetes-validate")
                continue
            body = {k: v for k, v in doc.items() if k != "__source__"}
            path = Path(tmp) / f"{i:02d}-{kind}.yaml"
            path.write_text(yaml.safe_dump(body, sort_keys=False))
            paths.append(str(path))
        proc = subprocess.run(
            [validator, "--strict", "-k", kube, "--quiet", *paths], capture_output=True, text=True
        )
        if proc.returncode != 0:
            print(proc.stdout + proc.stderr)
        fails.check(where, proc.returncode == 0, f"kubernetes-validate --strict -k {kube}: {len(paths)} manifests valid")


# ---------------------------------------------------------------------------------------------
# 3. The chart's promises
# ---------------------------------------------------------------------------------------------


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def injector_env_vars() -> tuple[set[str], str]:
    """Env vars the injector reads: from its clap definitions when present, else docs/contract.md."""
    src = REPO / "injector" / "src"
    found: set[str] = set()
    for path in src.rglob("*.rs") if src.is_dir() else []:
        found |= set(re.findall(r'env\s*=\s*"(VAULTLET_[A-Z_]+)"', path.read_text()))
    if found:
        return found, "injector/src"
    text = (REPO / "docs" / "contract.md").read_text()
    return set(re.findall(r"\bVAULTLET_[A-Z_]+\b", text)), "docs/contract.md"


def check_promises(docs: list[dict[str, Any]], values: dict[str, Any], fails: Failures, where: str) -> None:
    c = lambda cond, what: fails.check(where, cond, what)  # noqa: E731
    deps = by_kind(docs, "Deployment")
    hooks = by_kind(docs, "MutatingWebhookConfiguration")
    if len(deps) != 1 or len(hooks) != 1:
        fails.add(where, f"expected one Deployment and one MutatingWebhookConfiguration, got {len(deps)}/{len(hooks)}")
        return
    dep, mwc = deps[0], hooks[0]
    replicas = values["replicaCount"]
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    c(dep["spec"]["replicas"] == replicas, f"Deployment replicas = {replicas}")
    pdbs = by_kind(docs, "PodDisruptionBudget")
    c(len(pdbs) == (1 if replicas > 1 else 0), "PodDisruptionBudget exists iff replicas > 1")
    c(bool(pod.get("topologySpreadConstraints") or pod.get("affinity")), "replicas are spread (topology spread or affinity)")
    sc = container["securityContext"]
    c(
        sc.get("runAsNonRoot") and sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
        and sc.get("capabilities", {}).get("drop") == ["ALL"] and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
        "container securityContext is restricted",
    )
    c(all(k in container for k in ("startupProbe", "livenessProbe", "readinessProbe")), "startup, liveness and readiness probes")
    c(all(p["httpGet"]["port"] == "admin" for p in (container["startupProbe"], container["livenessProbe"], container["readinessProbe"])), "probes use the admin port")
    c("resources" in container and "requests" in container["resources"], "resource requests set")
    iv = values["injector"]
    stop_s = duration_s(iv["drainDelay"]) + duration_s(iv["shutdownGrace"])
    c(
        pod.get("terminationGracePeriodSeconds", 30) >= stop_s,
        f"terminationGracePeriodSeconds covers drainDelay + shutdownGrace ({stop_s:g}s)",
    )
    c(pod.get("priorityClassName", "") == values.get("priorityClassName", ""), "priorityClassName follows the values")
    c(pod.get("automountServiceAccountToken") is False, "no API token mounted (the injector makes no API call)")
    c(not by_kind(docs, "Role") and not by_kind(docs, "ClusterRole"), "no RBAC objects")
    env = {e["name"] for e in container["env"]}
    known, source = injector_env_vars()
    unknown = env - known
    c(not unknown, f"every injector env var is read by the injector ({source}) {sorted(unknown) if unknown else ''}".rstrip())
    mounts = [m for m in container["volumeMounts"] if m["name"] == "tls"]
    c(len(mounts) == 1 and "subPath" not in mounts[0], "TLS Secret mounted as a whole volume (no subPath: rotation reloads)")
    tls_vol = next(v for v in pod["volumes"] if v["name"] == "tls")
    secret_name = tls_vol["secret"]["secretName"]

    hook = mwc["webhooks"][0]
    wv = values["webhook"]
    c(hook["clientConfig"]["service"]["path"] == "/mutate", "webhook path /mutate")
    c(hook["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}], "rules: Pod CREATE only")
    c(hook["objectSelector"].get("matchLabels") == {"vaultlet.io/inject": "true"}, "objectSelector on vaultlet.io/inject=true")
    excluded = hook["namespaceSelector"]["matchExpressions"][0]
    c(excluded["key"] == "kubernetes.io/metadata.name" and excluded["operator"] == "NotIn" and NAMESPACE in excluded["values"], "namespaceSelector excludes the release namespace")
    c(set(wv["excludedNamespaces"]) <= set(excluded["values"]), "namespaceSelector excludes webhook.excludedNamespaces")
    c(hook["failurePolicy"] == wv["failurePolicy"] and hook["timeoutSeconds"] == wv["timeoutSeconds"], "failurePolicy and timeoutSeconds follow the values")
    c(hook["sideEffects"] == "None" and hook["admissionReviewVersions"] == ["v1"], "sideEffects None, admissionReviewVersions [v1]")
    c(hook["reinvocationPolicy"] == wv["reinvocationPolicy"] and hook["matchPolicy"] == wv["matchPolicy"], "reinvocationPolicy and matchPolicy follow the values")
    svc = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"] == hook["clientConfig"]["service"]["name"])
    c(svc["spec"]["ports"][0]["port"] == hook["clientConfig"]["service"]["port"], "webhook points at the injector Service port")

    mode = values["tls"]["mode"]
    annotations = mwc["metadata"].get("annotations") or {}
    if mode == "helm":
        secrets = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"] == secret_name]
        c(len(secrets) == 1, "helm TLS: the mounted Secret is rendered")
        if secrets:
            data = secrets[0]["data"]
            c(hook["clientConfig"].get("caBundle") == data["ca.crt"], "helm TLS: caBundle is the Secret's CA")
            c(verify_chain(data, svc["metadata"]["name"]), "helm TLS: certificate verifies against the CA for the Service DNS name")
    elif mode == "cert-manager":
        certs = [d for d in by_kind(docs, "Certificate") if d["spec"]["secretName"] == secret_name]
        c(len(certs) == 1, "cert-manager: a Certificate writes the mounted Secret")
        if certs:
            want = f"{NAMESPACE}/{certs[0]['metadata']['name']}"
            c(annotations.get("cert-manager.io/inject-ca-from") == want, f"cert-manager: inject-ca-from {want}")
        c("caBundle" not in hook["clientConfig"], "cert-manager: caBundle left to the cainjector")
        c(not by_kind(docs, "Secret"), "cert-manager: the chart renders no Secret")
    else:
        c(secret_name == values["tls"]["secretName"], "existing Secret: mounted by name")
        c(hook["clientConfig"].get("caBundle") == values["tls"]["caBundle"], "existing Secret: caBundle from the values")
        c(not by_kind(docs, "Secret"), "existing Secret: the chart renders no Secret")
    metrics = values["metrics"]
    want_metrics = metrics["enabled"] or metrics["serviceMonitor"]["enabled"]
    c(any(s["metadata"]["name"].endswith("-metrics") for s in by_kind(docs, "Service")) == want_metrics, "metrics Service iff enabled")
    c(bool(by_kind(docs, "ServiceMonitor")) == metrics["serviceMonitor"]["enabled"], "ServiceMonitor iff enabled")
    for d in docs:
        labels = d["metadata"].get("labels") or {}
        if not {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"} <= labels.keys():
            fails.add(where, f"{d['kind']}/{d['metadata']['name']} lacks app.kubernetes.io labels")


def duration_s(text: str) -> float:
    """Seconds in a vaultlet duration such as 10s, 500ms or 1h30m."""
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(int(n) * unit[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h)", str(text)))


def verify_chain(data: dict[str, str], service: str) -> bool:
    """openssl verify of tls.crt against ca.crt for <service>.<namespace>.svc."""
    openssl = shutil.which("openssl")
    if openssl is None:
        print("  note openssl not found: certificate chain not verified")
        return True
    with tempfile.TemporaryDirectory() as tmp:
        ca, crt = Path(tmp, "ca.crt"), Path(tmp, "tls.crt")
        ca.write_bytes(base64.b64decode(data["ca.crt"]))
        crt.write_bytes(base64.b64decode(data["tls.crt"]))
        host = f"{service}.{NAMESPACE}.svc"
        proc = subprocess.run([openssl, "verify", "-CAfile", str(ca), "-verify_hostname", host, str(crt)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout + proc.stderr)
        return proc.returncode == 0


# ---------------------------------------------------------------------------------------------
# The injector runs with the chart's settings and answers the webhook call as configured
# ---------------------------------------------------------------------------------------------


def injector_binary() -> Path | None:
    path = Path(os.environ.get("VAULTLET_INJECTOR", REPO / "target" / "debug" / "vaultlet-injector"))
    return path if path.exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tls_files(docs: list[dict[str, Any]], secret_name: str, tmp: Path, host: str) -> tuple[Path, Path, Path]:
    """The serving cert, key and CA: the chart's own Secret in mode helm, else a fresh one."""
    crt, key, ca = tmp / "tls.crt", tmp / "tls.key", tmp / "ca.crt"
    secrets = [d for d in by_kind(docs, "Secret") if d["metadata"]["name"] == secret_name]
    if secrets:
        data = secrets[0]["data"]
        crt.write_bytes(base64.b64decode(data["tls.crt"]))
        key.write_bytes(base64.b64decode(data["tls.key"]))
        ca.write_bytes(base64.b64decode(data["ca.crt"]))
    else:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-days", "1", "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host}",
             "-keyout", str(key), "-out", str(crt)],
            check=True, capture_output=True,
        )
        ca.write_bytes(crt.read_bytes())
    return crt, key, ca


def admission_review(pod: dict[str, Any]) -> bytes:
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    return json.dumps({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0f0e0d0c-0000-4000-8000-000000000001",
            "kind": gvk, "requestKind": gvk,
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"]["name"], "namespace": pod["metadata"]["namespace"],
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod, "oldObject": None, "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }).encode()


def wait_ready(url: str, proc: subprocess.Popen, deadline_s: float = 20.0) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    return False


def check_injector_serves(docs: list[dict[str, Any]], values: dict[str, Any], fails: Failures, where: str) -> None:
    """Starts `vaultlet-injector` with the Deployment's args and env (addresses moved to loopback,
    certificate files to a temp dir) and calls it like the API server would: HTTPS to the
    Service DNS name verified with the webhook's caBundle, at the webhook's path."""
    binary = injector_binary()
    if binary is None:
        print("  note no injector binary (target/debug/vaultlet-injector or $VAULTLET_INJECTOR): webhook call skipped")
        return
    c = lambda cond, what: fails.check(where, cond, what)  # noqa: E731
    dep, mwc = by_kind(docs, "Deployment")[0], by_kind(docs, "MutatingWebhookConfiguration")[0]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    hook = mwc["webhooks"][0]
    svc = hook["clientConfig"]["service"]
    host = f"{svc['name']}.{svc['namespace']}.svc"
    secret_name = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")["secret"]["secretName"]
    listen, admin = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="vaultlet-serve-") as tmp_s:
        tmp = Path(tmp_s)
        crt, key, ca = tls_files(docs, secret_name, tmp, host)
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        env.update({
            "PATH": os.environ.get("PATH", ""),
            "VAULTLET_LISTEN_ADDR": f"127.0.0.1:{listen}", "VAULTLET_ADMIN_ADDR": f"127.0.0.1:{admin}",
            "VAULTLET_TLS_CERT_FILE": str(crt), "VAULTLET_TLS_KEY_FILE": str(key),
        })
        log = (tmp / "injector.log").open("w+")
        proc = subprocess.Popen([str(binary), *container.get("args", [])], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            ready = wait_ready(f"http://127.0.0.1:{admin}/readyz", proc)
            c(ready, "injector starts with the chart's args and env and reports ready on the admin port")
            if not ready:
                log.seek(0)
                print(log.read()[-2000:])
                return
            # Mode helm: trust exactly what the API server would, the webhook's caBundle. Other
            # modes get their CA from outside the chart (cert-manager, the operator).
            if values["tls"]["mode"] == "helm":
                ctx = ssl.create_default_context(cadata=base64.b64decode(hook["clientConfig"]["caBundle"]).decode())
                trust = "the caBundle"
            else:
                ctx = ssl.create_default_context(cafile=str(ca))
                trust = "a test CA"
            pod = yaml.safe_load((REPO / "samples" / "nginx" / "pod.yaml").read_text())
            conn = http.client.HTTPSConnection("127.0.0.1", listen, context=_sni(ctx, host), timeout=5)
            try:
                conn.request("POST", svc["path"], body=admission_review(pod), headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                body = json.loads(resp.read() or b"{}")
            except (OSError, ssl.SSLError, json.JSONDecodeError) as err:
                fails.add(where, f"webhook call over TLS (verified for {host} with {trust}) failed: {err}")
                return
            finally:
                conn.close()
            answer = body.get("response") or {}
            patch = base64.b64decode(answer.get("patch", "")).decode() if answer.get("patch") else ""
            agent_image = env.get("VAULTLET_AGENT_IMAGE", "")
            c(resp.status == 200 and answer.get("allowed") is True and answer.get("patchType") == "JSONPatch",
              f"POST {svc['path']} over TLS verified for {host} with {trust}: allowed with a JSONPatch")
            c(agent_image != "" and agent_image in patch, f"the patch injects the configured agent image {agent_image}")
        finally:
            proc.terminate()
            try:
                # The first SIGTERM starts the drain delay; a second one exits at once.
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _sni(ctx: ssl.SSLContext, host: str) -> ssl.SSLContext:
    """Connect to 127.0.0.1 but verify and send SNI for the Service DNS name, like the API server."""

    wrap = ctx.wrap_socket

    def wrap_socket(sock, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["server_hostname"] = host
        return wrap(sock, *args, **kwargs)

    ctx.wrap_socket = wrap_socket  # type: ignore[method-assign]
    return ctx


def check_keeps_certificate(hp, chart: Path, fails: Failures) -> None:
    """Mode helm keeps an existing Secret's CA and certificate on upgrade. Offline rendering
    cannot reach a cluster (lookup returns nothing), so a copy of the chart has its `lookup`
    call replaced by a value holding a Secret as the API server would return it."""
    print("== mode helm keeps the existing certificate on upgrade (lookup stubbed)")
    with tempfile.TemporaryDirectory(prefix="vaultlet-lookup-") as tmp:
        copy_dir = Path(tmp) / chart.name
        shutil.copytree(chart, copy_dir)
        (copy_dir / "values.schema.json").unlink()
        webhook = copy_dir / "templates" / "webhook.yaml"
        text = webhook.read_text()
        call = 'lookup "v1" "Secret" .Release.Namespace $secretName'
        if call not in text:
            fails.add("lookup", f"templates/webhook.yaml no longer contains `{call}`: update this check")
            return
        webhook.write_text(text.replace(call, "(.Values.stubLookup | default dict)"))
        existing = {"ca.crt": "Q0E=", "tls.crt": "Q1JU", "tls.key": "S0VZ"}
        stub = {"apiVersion": "v1", "kind": "Secret", "data": existing}

        def rendered(values: dict[str, Any]) -> tuple[dict[str, str], str]:
            docs = render(hp, copy_dir, values)
            secret = by_kind(docs, "Secret")[0]["data"]
            return secret, by_kind(docs, "MutatingWebhookConfiguration")[0]["webhooks"][0]["clientConfig"]["caBundle"]

        kept, bundle = rendered({"stubLookup": stub})
        fails.check("lookup", kept == existing and bundle == existing["ca.crt"], "existing Secret: same CA, certificate and key; caBundle is its CA")
        fresh, bundle = rendered({"stubLookup": stub, "tls": {"helm": {"regenerate": True}}})
        fails.check("lookup", fresh["ca.crt"] != existing["ca.crt"] and bundle == fresh["ca.crt"], "tls.helm.regenerate=true: a new CA, and the caBundle follows it")
        partial, _ = rendered({"stubLookup": {"data": {"ca.crt": "Q0E="}}})
        fails.check("lookup", partial["ca.crt"] != "Q0E=", "an incomplete existing Secret is replaced by a new CA and certificate")


def check_package(chart: Path, fails: Failures) -> None:
    """helm package (helm-sdkpy) produces vaultlet-<version>.tgz."""
    import helm_sdkpy

    print("== helm package")
    version = load_yaml(chart / "Chart.yaml")["version"]
    with tempfile.TemporaryDirectory(prefix="vaultlet-package-") as tmp:
        try:
            archive = asyncio.run(helm_sdkpy.Package(helm_sdkpy.Configuration()).run(str(chart), tmp))
        except helm_sdkpy.HelmError as err:
            fails.add("package", f"helm package failed: {err}")
            return
        fails.check("package", Path(archive).name == f"vaultlet-{version}.tgz" and Path(archive).stat().st_size > 0,
                    f"helm package -> {Path(archive).name}")


# ---------------------------------------------------------------------------------------------
# docs/install.md agrees with the chart
# ---------------------------------------------------------------------------------------------

MISSING = object()


def lookup(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def check_install_doc(defaults: dict[str, Any], fails: Failures) -> None:
    """Every value named in docs/install.md's table exists, single-token defaults match, and
    every injector setting is documented."""
    print("== docs/install.md values table")
    doc = REPO / "docs" / "install.md"
    if not doc.exists():
        fails.add("docs", "docs/install.md is missing")
        return
    text = doc.read_text()
    checked = 0
    for row in (line for line in text.splitlines() if line.startswith("| `")):
        cells = [c.strip() for c in row.strip("|").split("|")]
        paths: list[str] = []
        for token in re.findall(r"`([^`]+)`", cells[0]):
            paths.append(paths[-1].rsplit(".", 1)[0] + token if token.startswith(".") else token)
        parts = [p.strip() for p in cells[1].split(" / ")]
        for i, path in enumerate(paths):
            value = lookup(defaults, path[:-2] if path.endswith(".*") else path)
            if value is MISSING:
                fails.add("docs", f"docs/install.md names `{path}`, which values.yaml does not have")
                continue
            checked += 1
            if len(parts) == len(paths) and re.fullmatch(r"`[^`]*`", parts[i]):
                documented = yaml.safe_load(parts[i][1:-1])
                if documented != value:
                    fails.add("docs", f"docs/install.md says `{path}` defaults to {parts[i]}, values.yaml has {value!r}")
    for key in defaults["injector"]:
        if f"injector.{key}" not in text:
            fails.add("docs", f"injector.{key} is not documented in docs/install.md")
    fails.check("docs", checked > 0, f"docs/install.md: {checked} values checked against values.yaml")


# ---------------------------------------------------------------------------------------------
# 4. Values that must be rejected
# ---------------------------------------------------------------------------------------------

NEGATIVE: list[tuple[str, dict[str, Any]]] = [
    ("unknown tls.mode", {"tls": {"mode": "self-signed"}}),
    ("tls.mode=secret without caBundle", {"tls": {"mode": "secret", "secretName": "x"}}),
    ("tls.mode=secret without secretName", {"tls": {"mode": "secret", "caBundle": "Zm9v"}}),
    ("misspelt top-level key", {"replicas": 3}),
    ("timeoutSeconds above 30", {"webhook": {"timeoutSeconds": 31}}),
    ("failurePolicy typo", {"webhook": {"failurePolicy": "fail"}}),
    ("replicaCount 0", {"replicaCount": 0}),
]


def check_negative(hp, chart: Path, fails: Failures) -> None:
    print("== values that must be rejected")
    for what, values in NEGATIVE:
        try:
            render(hp, chart, values)
        except Exception as err:  # helm_python raises HelmValuesError / HelmRenderError
            print(f"  ok   rejected {what}: {str(err).splitlines()[0][:160]}")
            continue
        fails.add("negative", f"accepted {what}")


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chart", default=str(REPO / "charts" / "vaultlet"))
    parser.add_argument("--kube-version", default="1.33.0")
    args = parser.parse_args()
    chart = Path(args.chart).resolve()
    defaults = load_yaml(chart / "values.yaml")
    sets = [("defaults (values.yaml)", {})] + [(f"ci/{p.name}", load_yaml(p)) for p in sorted((chart / "ci").glob("*.yaml"))]
    fails = Failures()
    hp = helm_python()
    if hp is None:
        fails.add("setup", INSTALL_HINT)
    for where, values in sets:
        print(f"== {where}")
        lint_helm_sdkpy(chart, values, fails, where)
        if hp is None:
            continue
        lint_helm_python(hp, chart, values, args.kube_version, fails, where)
        try:
            docs = render(hp, chart, values)
        except Exception as err:
            fails.add(where, f"render failed: {err}")
            continue
        print(f"  ok   rendered {len(docs)} manifests: " + ", ".join(sorted({d['kind'] for d in docs})))
        kubernetes_validate(docs, args.kube_version, fails, where)
        check_promises(docs, deep_merge(defaults, values), fails, where)
        check_injector_serves(docs, deep_merge(defaults, values), fails, where)
    if hp is not None:
        check_negative(hp, chart, fails)
        check_keeps_certificate(hp, chart, fails)
    check_package(chart, fails)
    check_install_doc(defaults, fails)
    if fails.items:
        print(f"\nhelm-lint: {len(fails.items)} failure(s):")
        for item in fails.items:
            print(f"  - {item}")
        return 1
    print(f"\nhelm-lint: chart OK with {len(sets)} value sets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
