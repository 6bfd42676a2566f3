#!/usr/bin/env python3
"""Side-by-side benchmark: vaultlet-agent vs `bao agent`, same OpenBao, same 3 templates.

Measures, for each agent: start -> all 3 files written, steady RSS, CPU seconds over an idle
window at a 1 s refresh interval, and change in OpenBao -> file rewritten. Uses only the Python
standard library; talks to a dev OpenBao it starts on loopback and stops at the end.

    scripts/bench-agent.sh            # builds release, installs tools, runs this
    python3 scripts/bench-agent.py --agent target/release/vaultlet-agent --bao .venv/bin/bao

    # Did a change cost start-up time or idle CPU? Two vaultlet-agent builds, start-ups
    # interleaved (so the machine's drift hits both alike), idle CPU over a long window:
    scripts/bench-agent.sh --baseline /path/to/older/vaultlet-agent --runs 40 --idle 120
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

TEMPLATES = {
    "db": "postgres://{{username}}:{{password}}@db:5432/app",
    "api": "API_KEY={{key}}\nAPI_URL={{url}}\n",
    "tls": "{{cert}}\n",
}
BAO_TEMPLATES = {
    "db": '{{ with secret "secret/data/db" }}postgres://{{ .Data.data.username }}:{{ .Data.data.password }}@db:5432/app{{ end }}',
    "api": '{{ with secret "secret/data/api" }}API_KEY={{ .Data.data.key }}\nAPI_URL={{ .Data.data.url }}\n{{ end }}',
    "tls": '{{ with secret "secret/data/tls" }}{{ .Data.data.cert }}\n{{ end }}',
}
DATA = {
    "db": {"username": "app", "password": "s3cr3t-db"},
    "api": {"key": "k-123", "url": "https://api.example"},
    "tls": {"cert": "-----BEGIN CERTIFICATE-----\nMIIB" + "A" * 600 + "\n-----END CERTIFICATE-----"},
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bao:
    def __init__(self, bao, work):
        self.port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.token = "bench-root"
        self.log = open(os.path.join(work, "bao-server.log"), "w")
        self.proc = subprocess.Popen(
            [bao, "server", "-dev", f"-dev-root-token-id={self.token}",
             f"-dev-listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                self.api("GET", "sys/health")
                return
            except Exception:
                time.sleep(0.05)
        raise SystemExit("OpenBao did not start; see bao-server.log")

    def api(self, method, path, body=None):
        req = urllib.request.Request(
            f"{self.addr}/v1/{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"X-Vault-Token": self.token})
        with urllib.request.urlopen(req, timeout=5) as r:
            raw = r.read()
            return json.loads(raw) if raw else {}

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)


def setup(b):
    for name, data in DATA.items():
        b.api("POST", f"secret/data/{name}", {"data": data})
    b.api("POST", "sys/auth/approle", {"type": "approle"})
    b.api("PUT", "sys/policies/acl/bench",
          {"policy": 'path "secret/data/*" { capabilities = ["read"] }\n'
                     'path "secret/metadata/*" { capabilities = ["read"] }'})
    b.api("POST", "auth/approle/role/bench", {"token_policies": "bench", "token_ttl": "1h"})
    role_id = b.api("GET", "auth/approle/role/bench/role-id")["data"]["role_id"]
    return role_id


def new_secret_id(b):
    return b.api("POST", "auth/approle/role/bench/secret-id")["data"]["secret_id"]


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick  # utime + stime


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_files(paths, deadline_s=30, pred=None):
    end = time.perf_counter() + deadline_s
    while time.perf_counter() < end:
        if all(os.path.exists(p) and (pred is None or pred(p)) for p in paths):
            return time.perf_counter()
        time.sleep(0.0005)
    raise SystemExit(f"timed out waiting for {paths}")


def vaultlet_cmd(agent, work, addr, role_file, secret_file, out):
    cfg = {
        "version": 1,
        "vault": {"address": addr},
        "auth": {"method": "approle", "roleIdFile": role_file, "secretIdFile": secret_file},
        "secrets": [{"name": n, "path": f"secret/data/{n}", "template": t, "file": n}
                    for n, t in TEMPLATES.items()],
        "paths": {"secretsDir": out, "stateDir": os.path.join(work, "vl-state")},
        "refreshInterval": "1s",
        "log": {"level": "warn"},
    }
    path = os.path.join(work, "vaultlet.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return [agent, "run", "--config", path]


def bao_cmd(bao, work, addr, role_file, secret_file, out):
    tpl = "\n".join(
        f'template {{\n  contents = {json.dumps(t)}\n  destination = "{out}/{n}"\n}}'
        for n, t in BAO_TEMPLATES.items())
    hcl = f"""
vault {{ address = "{addr}" }}
auto_auth {{
  method "approle" {{
    config = {{
      role_id_file_path = "{role_file}"
      secret_id_file_path = "{secret_file}"
      remove_secret_id_file_after_reading = false
    }}
  }}
}}
template_config {{ static_secret_render_interval = "1s" }}
{tpl}
"""
    path = os.path.join(work, "bao-agent.hcl")
    with open(path, "w") as f:
        f.write(hcl)
    return [bao, "agent", "-config", path, "-log-level", "warn"]


def measure(name, cmd, out, b, idle_s, work):
    files = [os.path.join(out, n) for n in TEMPLATES]
    log = open(os.path.join(work, f"{name}.log"), "w")
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t1 = wait_files(files, pred=lambda f: os.path.getsize(f) > 0)
        start_ms = (t1 - t0) * 1000
        time.sleep(3)  # settle
        cpu0 = proc_stat(p.pid)
        time.sleep(idle_s)
        cpu = proc_stat(p.pid) - cpu0
        rss = rss_kib(p.pid)
        # change -> file rewritten
        changes = []
        for i in range(5):
            new = f"rotated-{name}-{i}"
            tc = time.perf_counter()
            b.api("POST", "secret/data/db", {"data": {"username": "app", "password": new}})
            target = files[0]
            tw = wait_files([target], deadline_s=20, pred=lambda f: new in open(f).read())
            changes.append((tw - tc) * 1000)
        return {"start_ms": start_ms, "rss_mib": rss / 1024, "idle_cpu_s": cpu * 30 / idle_s,
                "change_ms_max": max(changes), "change_ms_avg": sum(changes) / len(changes)}
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def start_once(agent, b, role_id, run_dir, idle_s=0.0):
    """One start-up of vaultlet-agent: ms until its 3 files exist, and (idle_s > 0) its CPU
    seconds over idle_s after settling, scaled to 30 s."""
    out = os.path.join(run_dir, "out")
    os.makedirs(out)
    role_file, secret_file = os.path.join(run_dir, "role-id"), os.path.join(run_dir, "secret-id")
    open(role_file, "w").write(role_id)
    open(secret_file, "w").write(new_secret_id(b))
    cmd = vaultlet_cmd(agent, run_dir, b.addr, role_file, secret_file, out)
    files = [os.path.join(out, n) for n in TEMPLATES]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        start_ms = (wait_files(files, pred=lambda f: os.path.getsize(f) > 0) - t0) * 1000
        cpu = None
        if idle_s > 0:
            time.sleep(3)
            cpu0 = proc_stat(p.pid)
            time.sleep(idle_s)
            cpu = (proc_stat(p.pid) - cpu0) * 30 / idle_s
        return start_ms, cpu
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(5)


def compare(args, b, role_id, work):
    """--baseline: start-ups of both builds interleaved, then idle CPU of each."""
    agents = {"baseline": args.baseline, "candidate": args.agent}
    starts = {k: [] for k in agents}
    for r in range(args.runs):
        for k, a in agents.items():
            starts[k].append(start_once(a, b, role_id, os.path.join(work, f"{k}-{r}"))[0])
    idle = {k: start_once(a, b, role_id, os.path.join(work, f"{k}-idle"), args.idle)[1]
            for k, a in agents.items()}
    print(f"\n{'':12}{'start->files ms: median':>24}{'p10':>8}{'p90':>8}{'idle CPU-s/30s':>16}")
    for k in agents:
        v = sorted(starts[k])
        q = lambda f: v[min(len(v) - 1, int(f * len(v)))]
        print(f"{k:12}{statistics.median(v):>24.1f}{q(0.1):>8.1f}{q(0.9):>8.1f}{idle[k]:>16.3f}")
    print(f"\n{args.runs} interleaved start-ups each; idle CPU over {args.idle:.0f} s at a 1 s refresh "
          f"interval (clock ticks of 10 ms: use a long window)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", default="target/release/vaultlet-agent")
    ap.add_argument("--bao", default=os.environ.get("VAULTLET_BAO", ".venv/bin/bao"))
    ap.add_argument("--idle", type=float, default=30.0, help="idle window in seconds")
    ap.add_argument("--runs", type=int, default=3, help="start-up runs per agent (best and worst shown)")
    ap.add_argument("--baseline", help="another vaultlet-agent build to compare --agent with "
                    "(instead of bao agent)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="vaultlet-bench-")
    b = Bao(args.bao, work)
    try:
        role_id = setup(b)
        if args.baseline:
            return compare(args, b, role_id, work)
        results = {}
        for name, mk in (("vaultlet-agent", lambda *a: vaultlet_cmd(args.agent, *a)),
                         ("bao agent", lambda *a: bao_cmd(args.bao, *a))):
            runs = []
            for r in range(args.runs):
                for n, d in DATA.items():
                    b.api("POST", f"secret/data/{n}", {"data": d})
                run_dir = os.path.join(work, f"{name.replace(' ', '-')}-{r}")
                out = os.path.join(run_dir, "out")
                os.makedirs(out)
                role_file = os.path.join(run_dir, "role-id")
                secret_file = os.path.join(run_dir, "secret-id")
                open(role_file, "w").write(role_id)
                open(secret_file, "w").write(new_secret_id(b))
                cmd = mk(run_dir, b.addr, role_file, secret_file, out)
                idle = args.idle if r == 0 else 2.0
                runs.append(measure(name.replace(" ", "-"), cmd, out, b, idle, run_dir))
            results[name] = runs
        print(f"\n{'':16}{'start->files ms':>18}{'RSS MiB':>10}{'idle CPU-s/30s':>16}{'change->file ms':>18}")
        for name, runs in results.items():
            starts = sorted(r["start_ms"] for r in runs)
            first = runs[0]
            print(f"{name:16}{starts[0]:>9.1f}-{starts[-1]:<8.1f}{first['rss_mib']:>10.1f}"
                  f"{first['idle_cpu_s']:>16.3f}{first['change_ms_avg']:>9.0f} (max {first['change_ms_max']:.0f})")
        print(f"\nidle window {args.idle:.0f}s at a 1s refresh interval, {args.runs} start-up runs each; "
              f"change->file is over 5 rotations of one KV v2 secret")
        json.dump(results, open(os.path.join(work, "results.json"), "w"), indent=1)
    finally:
        b.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
