//! The harness itself: kubelet order, volumes, PID namespaces, stopping. No Vault needed.

use std::time::Duration;

use serde_json::{Value, json};
use vaultlet_e2e::podrun::{Isolation, PodError, PodSetup, Role};
use vaultlet_testkit::TempDir;

const WAIT: Duration = Duration::from_secs(20);

fn mk_pod(share: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "h", "namespace": "default"},
        "spec": {
            "shareProcessNamespace": share,
            "initContainers": [
                {"name": "init", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
            ],
            "containers": [
                {"name": "app", "image": "busybox", "env": [{"name": "GREETING", "value": "hi"}],
                 "volumeMounts": [{"name": "data", "mountPath": "/srv/data", "readOnly": true},
                                  {"name": "creds", "mountPath": "/creds"}]},
            ],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "creds", "secret": {"secretName": "creds", "items": [{"key": "user", "path": "u"}]}},
            ],
        }
    })
}

fn temp() -> TempDir {
    TempDir::with_prefix("vaultlet-harness-").expect("temp dir")
}

#[test]
fn init_runs_first_and_volumes_are_shared_by_mount_path() {
    let dir = temp();
    let pod = PodSetup::new(mk_pod(false), dir.path())
        .agent_bin("/bin/false")
        .secret("creds", [("user", "alice"), ("other", "x")])
        .app("init", "init", "echo made-by-init > {{path:/data/f}}")
        .app("app", "myapp", r#"echo "$GREETING $(cat {{path:/srv/data/f}}) $(cat {{path:/creds/u}})"; exec sleep 60"#)
        .start()
        .expect("pod starts");
    let init = pod
        .exit("init")
        .expect("init container has exited before the app starts");
    assert!(init.status.success());
    assert!(init.at <= pod.started_at("app").expect("app started"));
    pod.wait_for_output("app", "hi made-by-init alice", WAIT)
        .expect("the app sees the init container's file and the Secret item");
    assert_eq!(
        pod.read_file("app", "/srv/data/f").expect("read"),
        "made-by-init\n"
    );
    // Only the listed item of the Secret is projected.
    assert!(pod.read_file("app", "/creds/other").is_err());
    // A path outside every mount is the container's own filesystem, not a volume.
    assert!(pod.read_file("app", "/data/f").is_err());
    pod.stop(Duration::from_secs(5));
    let exit = pod.exit("app").expect("app stopped");
    assert!(!exit.status.success());
}

#[test]
fn failing_init_container_fails_the_pod_with_its_output() {
    let dir = temp();
    let err = PodSetup::new(mk_pod(false), dir.path())
        .agent_bin("/bin/false")
        .secret("creds", [("user", "alice")])
        .app("init", "init", "echo cannot render >&2; exit 3")
        .app("app", "myapp", "sleep 60")
        .start()
        .expect_err("pod must fail");
    let msg = err.to_string();
    assert!(matches!(err, PodError::InitFailed { .. }), "{msg}");
    assert!(
        msg.contains("cannot render") && msg.contains("init"),
        "{msg}"
    );
}

#[test]
fn missing_secret_is_reported() {
    let dir = temp();
    let err = PodSetup::new(mk_pod(false), dir.path())
        .agent_bin("/bin/false")
        .app("init", "init", "true")
        .app("app", "myapp", "true")
        .start()
        .expect_err("secret creds is missing");
    assert!(err.to_string().contains("creds"), "{err}");
}

#[test]
fn shared_process_namespace_is_one_pid_namespace() {
    if Isolation::detect() != Isolation::Namespaces {
        panic!("these tests need root (unshare --pid); run them as root or in a container");
    }
    let dir = temp();
    let pod = PodSetup::new(mk_pod(true), dir.path())
        .agent_bin("/bin/false")
        .secret("creds", [("user", "alice")])
        .app("init", "init", "true")
        .app(
            "app",
            "myapp",
            "ls /proc | grep -c '^[0-9]' ; cat /proc/1/comm; exec sleep 60",
        )
        .start()
        .expect("pod starts");
    let out = pod
        .wait_for_output("app", "sleep", WAIT)
        .expect("app output");
    // PID 1 is the pause process; the host's processes are invisible.
    let count: usize = out
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("count");
    assert!(
        count < 10,
        "the app sees {count} processes: not a Pod-sized PID namespace\n{out}"
    );
    let t = std::time::Instant::now();
    pod.stop(Duration::from_secs(5));
    assert!(pod.exit("app").is_some());
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "SIGTERM did not stop the app"
    );
    assert_eq!(pod.containers()[0].role, Role::Init);
}

#[test]
fn projected_token_is_minted_for_the_pods_service_account() {
    let dir = temp();
    let mut pod = mk_pod(false);
    pod["metadata"]["namespace"] = json!("shop");
    pod["spec"]["serviceAccountName"] = json!("billing");
    pod["spec"]["volumes"] = json!([
        {"name": "data", "emptyDir": {}},
        {"name": "creds", "projected": {"sources": [
            {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 600, "path": "token"}},
        ]}},
    ]);
    let run = PodSetup::new(pod, dir.path())
        .agent_bin("/bin/false")
        .token_minter(|r| {
            format!(
                "{}/{}/{}/{}",
                r.namespace, r.service_account, r.audience, r.expiration_secs
            )
        })
        .app("init", "init", "true")
        .app("app", "myapp", "exec sleep 60")
        .start()
        .expect("pod starts");
    assert_eq!(
        run.read_file("app", "/creds/token").expect("token"),
        "shop/billing/vault/600"
    );
}

#[test]
fn containers_run_as_their_security_context_users() {
    let dir = temp();
    let mut pod = mk_pod(false);
    pod["spec"]["securityContext"] =
        json!({"runAsUser": 1234, "runAsGroup": 2345, "fsGroup": 3456});
    pod["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 4567});
    let run = PodSetup::new(pod, dir.path())
        .agent_bin("/bin/false")
        .secret("creds", [("user", "alice")])
        .app("init", "init", "id -u > {{path:/data/init-uid}}")
        .app(
            "app",
            "myapp",
            r#"echo "ids $(id -u) $(id -g) $(id -G)"; cat {{path:/creds/u}}; exec sleep 60"#,
        )
        .start()
        .expect("pod starts");
    let out = run
        .wait_for_output("app", "alice", WAIT)
        .expect("app output");
    assert!(out.contains("ids 4567 2345 2345 3456"), "{out}");
    assert_eq!(
        run.read_file("app", "/srv/data/init-uid").expect("uid"),
        "1234\n"
    );
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::metadata(run.host_path("app", "/srv/data/init-uid").expect("path")).expect("stat");
    assert_eq!(
        (meta.uid(), meta.gid()),
        (1234, 3456),
        "fsGroup owns files in the emptyDir"
    );
}
