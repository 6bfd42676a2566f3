#!/usr/bin/env python3
"""Pod-creation latency on the local cluster, with and without the webhook, and how soon
the app of a running Pod reads its secret.

    scripts/cluster.sh install && python3 scripts/bench-cluster.py [--pods 300] [--startup 20]

Admission (--pods N, 0 skips it): creates Pods through the API server (one keep-alive HTTPS
connection with the admin client certificate, so no kubectl start-up is measured), alternating
a Pod labelled vaultlet.io/inject=true (the API server calls the injector) and the same Pod
unlabelled (no webhook call), in a namespace of its own that it deletes at the end. Prints
p50/p90/p99/max of each kind and of the difference, and how many reviews the injector answered
per labelled Pod, by outcome (its metrics, read through the API server's Pod proxy: a second
call per Pod is the API server's reinvocation). These Pods are never scheduled.

Start-up (--startup N, 0 skips it): a dev OpenBao (`bao` from PATH or $VAULTLET_VENV/bin)
listens on the node's bridge address, port 8200 (the Vault address the installed injector
allows), with AppRole auth and one KV v2 secret; N Pods of each kind run on the node one at a
time: native sidecar (the default), classic sidecar, init-only, and plain Pods (no label, no
agent) as the baselines: one with no volume, one with an emptyDir (as any app with a
service-account token or a config volume: the kubelet then waits for its mount). Per Pod, from the moment before the create call: the agent's log line
`file written` (the container runtime's timestamp), the app's first line (it reads its file
at start), and the agent's own start -> file written where its log has a `starting` line.
Prints p50/p90 per kind. The machine's load average is printed beside the figures.
"""

import argparse
import datetime
import http.client
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_cluster(cluster_dir):
    env = {}
    with open(os.path.join(cluster_dir, "endpoints.env")) as f:
        for line in f:
            if "=" in line:
                k, v = line.strip().split("=", 1)
                env[k] = v
    return env


def connect(cluster_dir, api):
    pki = os.path.join(cluster_dir, "pki")
    context = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
    context.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
    host, port = api.removeprefix("https://").split(":")
    return http.client.HTTPSConnection(host, int(port), context=context)


def request(conn, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    return response.status, payload


def pod(name, labelled):
    labels = {"app": "bench"}
    if labelled:
        labels["vaultlet.io/inject"] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                "vaultlet.io/role": "app",
                "vaultlet.io/secret-db": "database/creds/app",
                "vaultlet.io/template-db": "postgres://{{username}}:{{password}}@db:5432/app",
                "vaultlet.io/secret-api": "secret/data/api",
            },
        },
        "spec": {
            "automountServiceAccountToken": False,
            "nodeSelector": {"vaultlet.io/bench": "never-scheduled"},
            "containers": [
                {
                    "name": "app",
                    "image": "vaultlet/testapp:0.1.0",
                    "command": ["/usr/local/bin/app", "watch", "/vault/secrets/db"],
                }
            ],
        },
    }


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(name, ms):
    return (
        f"| {name} | {len(ms)} | {percentile(ms, 50):.2f} | {percentile(ms, 90):.2f} | "
        f"{percentile(ms, 99):.2f} | {max(ms):.2f} |"
    )


def namespace(conn):
    """A fresh namespace whose default ServiceAccount exists."""
    ns = "bench-" + uuid.uuid4().hex[:6]
    status, body = request(conn, "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    if status != 201:
        sys.exit(f"cannot create namespace {ns}: {status} {body[:200]!r}")
    # The namespace's default ServiceAccount must exist before Pods can be created.
    deadline = time.time() + 30
    while request(conn, "GET", f"/api/v1/namespaces/{ns}/serviceaccounts/default")[0] != 200:
        if time.time() > deadline:
            sys.exit("the default ServiceAccount never appeared")
        time.sleep(0.1)
    return ns


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pods", type=int, default=300, help="admission: Pods of each kind (default 300; 0 skips)")
    p.add_argument("--startup", type=int, default=0, help="start-up: running Pods of each kind (default 0: skipped)")
    p.add_argument("--cluster-dir", default=os.environ.get("VAULTLET_CLUSTER_DIR", os.path.join(REPO, ".cluster")))
    args = p.parse_args()
    endpoints = load_cluster(args.cluster_dir)
    conn = connect(args.cluster_dir, endpoints["API_SERVER"])
    print(f"load average before: {load()}")
    if args.pods > 0:
        admission(conn, args.pods)
    if args.startup > 0:
        startup(conn, endpoints, args.startup)
    print(f"load average after: {load()}")


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


INJECTOR_NS = "vaultlet-system"


def injector_reviews(conn):
    """Reviews answered by the installed injector's Pods so far, by outcome."""
    status, body = request(conn, "GET", f"/api/v1/namespaces/{INJECTOR_NS}/pods?labelSelector=app.kubernetes.io/name%3Dvaultlet")
    if status != 200:
        return {}
    totals = {}
    for item in json.loads(body)["items"]:
        name = item["metadata"]["name"]
        status, page = request(conn, "GET", f"/api/v1/namespaces/{INJECTOR_NS}/pods/{name}:9090/proxy/metrics")
        if status != 200:
            continue
        for line in page.decode().splitlines():
            if line.startswith('vaultlet_injector_reviews_total{outcome="'):
                outcome = line.split('"')[1]
                totals[outcome] = totals.get(outcome, 0) + float(line.rsplit(" ", 1)[1])
    return totals


def admission(conn, pods):
    ns = namespace(conn)
    times = {True: [], False: []}
    reviews_before = reviews_after = {}
    try:
        # Warm-up: connections to the webhook, caches.
        for i in range(10):
            for labelled in (True, False):
                request(conn, "POST", f"/api/v1/namespaces/{ns}/pods", pod(f"warm-{i}-{int(labelled)}", labelled))
        reviews_before = injector_reviews(conn)
        for i in range(pods):
            for labelled in (True, False) if i % 2 == 0 else (False, True):
                name = f"p-{i}-{int(labelled)}"
                t0 = time.perf_counter()
                status, body = request(conn, "POST", f"/api/v1/namespaces/{ns}/pods", pod(name, labelled))
                elapsed = (time.perf_counter() - t0) * 1000
                if status != 201:
                    sys.exit(f"creating {name} failed: {status} {body[:300]!r}")
                created = json.loads(body)
                injected = any(c["name"].startswith("vaultlet-agent") for c in created["spec"].get("initContainers", []))
                if injected != labelled:
                    sys.exit(f"{name}: injected={injected}, expected {labelled}")
                times[labelled].append(elapsed)
        reviews_after = injector_reviews(conn)
    finally:
        request(conn, "DELETE", f"/api/v1/namespaces/{ns}")
    print(f"Pod creation latency, {pods} of each kind, milliseconds:")
    print("| Pod | n | p50 | p90 | p99 | max |")
    print("|---|---|---|---|---|---|")
    print(summary("labelled (webhook called)", times[True]))
    print(summary("unlabelled (no webhook)", times[False]))
    for q in (50, 99):
        print(f"added by the webhook at p{q}: {percentile(times[True], q) - percentile(times[False], q):.2f} ms")
    if reviews_after:
        per_pod = {k: (reviews_after.get(k, 0) - reviews_before.get(k, 0)) / pods for k in reviews_after}
        calls = sum(per_pod.values())
        detail = ", ".join(f"{k} {v:.2f}" for k, v in sorted(per_pod.items()) if v)
        print(f"injector reviews per labelled Pod: {calls:.2f} ({detail})")


VAULT_PORT_FOR_PODS = 8200
ROOT_TOKEN = "bench-root"
KINDS = {
    # kind: (labelled, extra annotations)
    "native sidecar": (True, {}),
    "classic sidecar": (True, {"vaultlet.io/native-sidecar": "false"}),
    "init-only": (True, {"vaultlet.io/mode": "init-only"}),
    "plain Pod (no agent)": (False, {}),
    # The fair baseline: any volume (an app's service-account token, a config volume) makes the
    # kubelet wait for its mount, polled every 300 ms (volumemanager WaitForAttachAndMount).
    "plain Pod with an emptyDir": (False, {"volume": True}),
}


def bao_binary():
    found = shutil.which("bao")
    if found:
        return found
    venv = os.environ.get("VAULTLET_VENV", os.path.join(REPO, ".venv"))
    path = os.path.join(venv, "bin", "bao")
    if not os.access(path, os.X_OK):
        sys.exit("no bao on PATH nor in $VAULTLET_VENV/bin: source scripts/tools.sh")
    return path


class OpenBao:
    """A dev OpenBao on the node's bridge address, with AppRole auth and one KV v2 secret."""

    def __init__(self, host):
        self.bin = bao_binary()
        self.addr = f"http://{host}:{VAULT_PORT_FOR_PODS}"
        self.env = dict(os.environ, BAO_ADDR=self.addr, BAO_TOKEN=ROOT_TOKEN)
        self.proc = subprocess.Popen(
            [self.bin, "server", "-dev", f"-dev-root-token-id={ROOT_TOKEN}", f"-dev-listen-address={host}:{VAULT_PORT_FOR_PODS}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while subprocess.run([self.bin, "status"], env=self.env, capture_output=True).returncode != 0:
            if time.time() > deadline or self.proc.poll() is not None:
                self.stop()
                sys.exit(f"OpenBao did not start on {self.addr} (is the port taken?)")
            time.sleep(0.2)

    def __call__(self, *args):
        out = subprocess.run([self.bin, *args], env=self.env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"bao {' '.join(args[:3])}: {out.stderr.strip()}")
        return out.stdout.strip()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def approle_setup(bao):
    bao("auth", "enable", "approle")
    policy = 'path "secret/data/bench" { capabilities = ["read"] }\npath "secret/metadata/bench" { capabilities = ["read"] }\n'
    with subprocess.Popen([bao.bin, "policy", "write", "bench", "-"], env=bao.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as w:
        w.communicate(policy.encode())
    bao("write", "auth/approle/role/bench", "token_policies=bench", "token_ttl=1h")
    bao("kv", "put", "-mount=secret", "bench", "password=bench-value")
    role_id = bao("read", "-field=role_id", "auth/approle/role/bench/role-id")
    secret_id = bao("write", "-f", "-field=secret_id", "auth/approle/role/bench/secret-id")
    return role_id, secret_id


def running_pod(name, kind, vault_addr):
    labelled, extra = KINDS[kind]
    extra = dict(extra)
    volume = extra.pop("volume", False)
    file = "/vault/secrets/db" if labelled else "/etc/hostname"
    annotations = {
        "vaultlet.io/auth": "approle",
        "vaultlet.io/approle-secret": "bench-approle",
        "vaultlet.io/vault-addr": vault_addr,
        "vaultlet.io/secret-db": "secret/data/bench",
        **extra,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "bench", **({"vaultlet.io/inject": "true"} if labelled else {})},
            "annotations": annotations if labelled else {},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "app",
                    "image": "vaultlet/testapp:0.1.0",
                    "imagePullPolicy": "Never",
                    "command": ["/usr/local/bin/app", "watch", file],
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    **({"volumeMounts": [{"name": "data", "mountPath": "/data"}]} if volume else {}),
                }
            ],
            **({"volumes": [{"name": "data", "emptyDir": {}}]} if volume else {}),
        },
    }


def stamped_lines(conn, ns, name, container):
    """(unix seconds, text) of each line of the container's log; [] until it has one."""
    status, body = request(conn, "GET", f"/api/v1/namespaces/{ns}/pods/{name}/log?container={container}&timestamps=true")
    if status != 200:
        return []
    out = []
    for line in body.decode(errors="replace").splitlines():
        stamp, _, text = line.partition(" ")
        at = unix_seconds(stamp)
        if at is not None:
            out.append((at, text))
    return out


def unix_seconds(stamp):
    """RFC 3339 with nanoseconds (the runtime's log timestamps) as unix seconds."""
    try:
        head, frac = stamp.rstrip("Z").split(".") if "." in stamp else (stamp.rstrip("Z"), "0")
        whole = datetime.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
        return whole.timestamp() + float("0." + frac)
    except ValueError:
        return None


def one_start(conn, ns, name, kind, vault_addr):
    """Seconds from the create call to: the app's first line, the agent's `file written`,
    and the agent's start -> `file written` (None where not seen)."""
    labelled = KINDS[kind][0]
    t0 = time.time()
    status, body = request(conn, "POST", f"/api/v1/namespaces/{ns}/pods", running_pod(name, kind, vault_addr))
    if status != 201:
        sys.exit(f"creating {name} failed: {status} {body[:300]!r}")
    agent = None
    if labelled:
        spec = json.loads(body)["spec"]
        agents = [c["name"] for c in spec.get("initContainers", []) + spec["containers"] if c["name"].startswith("vaultlet-agent")]
        agent = agents[0]  # the one that renders first: init agent or native sidecar
    deadline = time.time() + 60
    app = None
    while app is None:
        if time.time() > deadline:
            sys.exit(f"{name}: the app printed nothing within 60 s")
        time.sleep(0.05)
        lines = stamped_lines(conn, ns, name, "app")
        app = next((at for at, text in lines if text.startswith("app: started with")), None)
        if any("WITHOUT" in text for _, text in lines):
            sys.exit(f"{name}: the app started before its file existed")
    written = started = None
    if agent:
        lines = stamped_lines(conn, ns, name, agent)
        written = max((at for at, text in lines if "file written" in text), default=None)
        started = next((at for at, text in lines if "starting" in text), None)
    request(conn, "DELETE", f"/api/v1/namespaces/{ns}/pods/{name}?gracePeriodSeconds=0")
    rel = lambda at: None if at is None else at - t0
    render = None if written is None or started is None else written - started
    return rel(app), rel(written), render


def startup(conn, endpoints, n):
    host = endpoints["HOST_FOR_PODS"]
    bao = OpenBao(host)
    ns = namespace(conn)
    try:
        role_id, secret_id = approle_setup(bao)
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bench-approle"}, "stringData": {"role-id": role_id, "secret-id": secret_id}}
        status, body = request(conn, "POST", f"/api/v1/namespaces/{ns}/secrets", secret)
        if status != 201:
            sys.exit(f"cannot create the AppRole Secret: {status} {body[:200]!r}")
        results = {kind: [] for kind in KINDS}
        # One warm-up round, then the kinds interleaved so drift of the machine hits all alike.
        for i in range(n + 1):
            for j, kind in enumerate(KINDS):
                r = one_start(conn, ns, f"s-{i}-{j}", kind, bao.addr)
                if i > 0:
                    results[kind].append(r)
    finally:
        request(conn, "DELETE", f"/api/v1/namespaces/{ns}")
        bao.stop()
    ms = lambda v: "-" if v is None else f"{v * 1000:.0f}"
    q = lambda values, p: percentile(values, p) if values else None
    print(f"Start-up on the node, {n} Pods of each kind, one at a time, milliseconds from the create call:")
    print("| Pod | create -> app reads its secret p50 / p90 | create -> agent wrote the file p50 / p90 | agent start -> file written p50 |")
    print("|---|---|---|---|")
    for kind, rs in results.items():
        app = [r[0] for r in rs]
        written = [r[1] for r in rs if r[1] is not None]
        render = [r[2] for r in rs if r[2] is not None]
        print(f"| {kind} | {ms(q(app, 50))} / {ms(q(app, 90))} | {ms(q(written, 50))} / {ms(q(written, 90))} | {ms(q(render, 50))} |")


if __name__ == "__main__":
    main()
