#!/usr/bin/env python3
"""Pod-creation latency on the local cluster, with and without the webhook.

    scripts/cluster.sh install && python3 scripts/bench-cluster.py [--pods 300]

Creates Pods through the API server (one keep-alive HTTPS connection with the admin client
certificate, so no kubectl start-up is measured), alternating a Pod labelled
vaultlet.io/inject=true (the API server calls the injector) and the same Pod unlabelled (no
webhook call), in a namespace of its own that it deletes at the end. Prints p50/p90/p99/max of
each kind and of the difference. The Pods are never scheduled to run: only admission and
storage are measured.
"""

import argparse
import http.client
import json
import os
import ssl
import statistics
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pods", type=int, default=300, help="Pods of each kind (default 300)")
    p.add_argument("--cluster-dir", default=os.environ.get("VAULTLET_CLUSTER_DIR", os.path.join(REPO, ".cluster")))
    args = p.parse_args()
    endpoints = load_cluster(args.cluster_dir)
    conn = connect(args.cluster_dir, endpoints["API_SERVER"])
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
    times = {True: [], False: []}
    try:
        # Warm-up: connections to the webhook, caches.
        for i in range(10):
            for labelled in (True, False):
                request(conn, "POST", f"/api/v1/namespaces/{ns}/pods", pod(f"warm-{i}-{int(labelled)}", labelled))
        for i in range(args.pods):
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
    finally:
        request(conn, "DELETE", f"/api/v1/namespaces/{ns}")
    print(f"Pod creation latency, {args.pods} of each kind, milliseconds:")
    print("| Pod | n | p50 | p90 | p99 | max |")
    print("|---|---|---|---|---|---|")
    print(summary("labelled (webhook called)", times[True]))
    print(summary("unlabelled (no webhook)", times[False]))
    for q in (50, 99):
        print(f"added by the webhook at p{q}: {percentile(times[True], q) - percentile(times[False], q):.2f} ms")


if __name__ == "__main__":
    main()
