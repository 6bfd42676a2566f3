//! Pod-level end-to-end tests: each sample Pod is mutated by the real `vaultlet-injector
//! preview`, its OpenBao set up by the sample's own `setup.sh`, and the mutated Pod run like a
//! kubelet would (real `vaultlet-agent`, stand-in apps) against real OpenBao / PostgreSQL.
//!
//! Needs the binaries built (`cargo build -p vaultlet-agent -p vaultlet-injector`), `bao` and
//! PostgreSQL (`source scripts/tools.sh`), and root for per-Pod PID namespaces.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vaultlet_e2e::podrun::{Isolation, PodRun, Role};
use vaultlet_e2e::sample::{SampleEnv, SampleOptions};
use vaultlet_testkit::free_port;

/// Deadline of any single wait.
const WAIT: Duration = Duration::from_secs(30);

/// A stand-in that reports whether `file` existed when it started, and every SIGHUP.
fn signal_app(file: &str) -> String {
    format!(
        r#"f={{{{path:{file}}}}}
if test -s "$f"; then echo "app: started with $f present"; else echo "app: started WITHOUT $f"; fi
trap 'echo "app: got SIGHUP"' HUP
while :; do sleep 0.1 & wait $!; done"#
    )
}

/// A stand-in that serves HTTP on the Pod port `port` and prints every POST.
fn http_app(port: u16, file: &str) -> String {
    format!(
        r#"f={{{{path:{file}}}}}
if test -s "$f"; then echo "app: started with $f present"; else echo "app: started WITHOUT $f"; fi
exec python3 -u -c 'import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        print("app: got POST " + self.path, flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT_{port}"])), H).serve_forever()'"#
    )
}

fn set_annotation(pod: &mut Value, key: &str, value: &str) {
    pod["metadata"]["annotations"][key] = json!(value);
}

fn agent_names(pod: &PodRun) -> Vec<(String, Role)> {
    pod.containers()
        .iter()
        .filter(|c| c.is_agent())
        .map(|c| (c.name.clone(), c.role))
        .collect()
}

fn assert_started_with_file(pod: &PodRun, app: &str) {
    let out = pod
        .wait_for_output(app, "app: started", WAIT)
        .expect("the app starts");
    assert!(
        out.contains("present"),
        "the app started before its secret file was rendered:\n{out}"
    );
}

fn file_mode(pod: &PodRun, container: &str, path: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let host = pod.host_path(container, path).expect("host path");
    std::fs::metadata(&host).expect("stat").permissions().mode() & 0o777
}

fn require_namespaces() {
    assert_eq!(
        Isolation::detect(),
        Isolation::Namespaces,
        "pod tests need `unshare --pid` (run as root) so each Pod gets its own PID namespace"
    );
}

/// nginx: kubernetes auth, KV v2 template, native sidecar, SIGHUP on change.
#[test]
fn nginx_kv_template_native_sidecar_sighup() {
    require_namespaces();
    let env = SampleEnv::start("nginx", &SampleOptions::default());
    let mut pod = env.pod();
    // The sample checks every 30 s; the test does not want to wait that long.
    set_annotation(&mut pod, "vaultlet.io/refresh-interval", "1s");
    let mutated = env.mutate(&pod, &[]);
    // The app gets the secrets read-only and never the agent's service-account token.
    let app_mounts = mutated["spec"]["containers"][0]["volumeMounts"].clone();
    let secrets_mount = app_mounts
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "vaultlet-secrets"))
        .expect("secrets volume mounted into the app");
    assert_eq!(secrets_mount["readOnly"], true);
    assert!(!app_mounts.to_string().contains("vaultlet-sa-token"));
    let run = env
        .pod_setup(mutated)
        .app("nginx", "nginx", &signal_app("/vault/secrets/site.conf"))
        .start()
        .expect("pod runs");
    assert_eq!(
        agent_names(&run),
        [("vaultlet-agent".to_string(), Role::NativeSidecar)]
    );
    assert!(
        run.read_file("nginx", "/var/run/secrets/vaultlet.io/serviceaccount/token")
            .is_err()
    );
    assert!(run.shares_process_namespace());
    assert_started_with_file(&run, "nginx");
    let site = run
        .read_file("nginx", "/vault/secrets/site.conf")
        .expect("site.conf");
    assert!(
        site.contains(r#"return 200 "hello from OpenBao\n";"#),
        "{site}"
    );
    assert_eq!(file_mode(&run, "nginx", "/vault/secrets/site.conf"), 0o440);
    // The ConfigMap that includes it is there too.
    let conf = run
        .read_file("nginx", "/etc/nginx/conf.d/default.conf")
        .expect("configmap");
    assert!(conf.contains("include /vault/secrets/site.conf;"));

    env.bao(&[
        "kv",
        "put",
        "-mount=secret",
        "nginx/site",
        "greeting=hello again",
        "api_key=k2",
    ]);
    let t = Instant::now();
    run.wait_for_file("nginx", "/vault/secrets/site.conf", WAIT, |s| {
        s.contains("hello again")
    })
    .expect("re-rendered after the KV change");
    run.wait_for_output("nginx", "app: got SIGHUP", WAIT)
        .expect("nginx got SIGHUP");
    // Refresh interval 1 s: the change is seen within it plus a little.
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );

    run.stop(Duration::from_secs(10));
    let agent = run.exit("vaultlet-agent").expect("agent stopped");
    assert!(
        agent.status.success(),
        "agent exit {}:\n{}",
        agent.status,
        run.output("vaultlet-agent")
    );
}

/// The suite can fail: the same Pod with the app's mount path altered does not see the file,
/// although the agent rendered it.
#[test]
fn broken_app_mount_path_hides_the_secret() {
    require_namespaces();
    let env = SampleEnv::start("nginx", &SampleOptions::default());
    let mut mutated = env.mutate(&env.pod(), &[]);
    let mounts = mutated["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .expect("mounts");
    let m = mounts
        .iter_mut()
        .find(|m| m["name"] == "vaultlet-secrets")
        .expect("the injector mounted the secrets volume into the app");
    m["mountPath"] = json!("/vault/secretz");
    let run = env
        .pod_setup(mutated)
        .app("nginx", "nginx", &signal_app("/vault/secrets/site.conf"))
        .start()
        .expect("pod runs");
    let out = run
        .wait_for_output("nginx", "app: started", WAIT)
        .expect("app starts");
    assert!(out.contains("WITHOUT"), "{out}");
    let agent_side = run
        .read_file("vaultlet-agent", "/vault/secrets/site.conf")
        .expect("the agent did render the file");
    assert!(!agent_side.is_empty());
    let err = run
        .wait_for_file(
            "nginx",
            "/vault/secrets/site.conf",
            Duration::from_secs(2),
            |_| true,
        )
        .expect_err("the app must not see the file through a wrong mount path");
    assert!(err.to_string().contains("timed out"), "{err}");
}

/// Without a shared PID namespace the agent cannot see the app, as in Kubernetes: a mutation
/// that forgot `shareProcessNamespace` would fail the nginx test.
#[test]
fn without_shared_pid_namespace_no_signal_arrives() {
    require_namespaces();
    let env = SampleEnv::start("nginx", &SampleOptions::default());
    let mut pod = env.pod();
    set_annotation(&mut pod, "vaultlet.io/refresh-interval", "1s");
    let mut mutated = env.mutate(&pod, &[]);
    mutated["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("shareProcessNamespace");
    let run = env
        .pod_setup(mutated)
        .app("nginx", "nginx", &signal_app("/vault/secrets/site.conf"))
        .start()
        .expect("pod runs");
    assert!(!run.shares_process_namespace());
    assert_started_with_file(&run, "nginx");
    env.bao(&[
        "kv",
        "put",
        "-mount=secret",
        "nginx/site",
        "greeting=again",
        "api_key=k3",
    ]);
    run.wait_for_file("nginx", "/vault/secrets/site.conf", WAIT, |s| {
        s.contains("again")
    })
    .expect("re-rendered");
    let err = run
        .wait_for_output("nginx", "app: got SIGHUP", Duration::from_secs(3))
        .expect_err("the agent must not reach a process in another PID namespace");
    assert!(err.to_string().contains("timed out"), "{err}");
}

/// approle: AppRole from a Kubernetes Secret, JSON format, revoke on shutdown.
#[test]
fn approle_json_and_revoke_on_shutdown() {
    require_namespaces();
    let env = SampleEnv::start("approle", &SampleOptions::default());
    let mutated = env.mutate(&env.pod(), &[]);
    let run = env
        .pod_setup(mutated)
        .app("app", "app", &signal_app("/vault/secrets/config.json"))
        .start()
        .expect("pod runs");
    assert_started_with_file(&run, "app");
    let text = run
        .read_file("app", "/vault/secrets/config.json")
        .expect("config.json");
    let cfg: Value = serde_json::from_str(&text).expect("config.json is JSON");
    assert_eq!(cfg["currency"], "EUR");
    assert!(
        cfg["invoice_api_key"]
            .as_str()
            .is_some_and(|k| k.len() == 16)
    );
    // The AppRole credentials are the agent's, not the app's.
    assert!(run.read_file("app", "/vault/approle/secret-id").is_err());
    let tokens_before = approle_tokens(&env);
    assert!(tokens_before >= 1, "the agent logged in with AppRole");

    run.stop(Duration::from_secs(10));
    let agent = run.exit("vaultlet-agent").expect("agent stopped");
    assert!(agent.status.success(), "{}", run.output("vaultlet-agent"));
    assert_eq!(
        approle_tokens(&env),
        tokens_before - 1,
        "revoke-on-shutdown: the agent's token is revoked"
    );
}

/// Live tokens issued by an AppRole login.
fn approle_tokens(env: &SampleEnv) -> usize {
    let list = env.bao.api("LIST", "auth/token/accessors", None);
    let accessors = list["data"]["keys"].as_array().cloned().unwrap_or_default();
    accessors
        .iter()
        .filter_map(Value::as_str)
        .filter(|a| {
            let t = env.bao.api(
                "POST",
                "auth/token/lookup-accessor",
                Some(json!({ "accessor": a })),
            );
            t["data"]["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("auth/approle/login"))
        })
        .count()
}

fn job_app() -> &'static str {
    r#"set -e
. {{path:/vault/secrets/report.env}}
echo "uploading the report to bucket $bucket"
test -n "$upload_token"
sleep 0.3"#
}

/// job, native sidecar: the app runs once the secret exists, and the Pod completes.
#[test]
fn job_native_sidecar_completes() {
    require_namespaces();
    let env = SampleEnv::start("job", &SampleOptions::default());
    let mutated = env.mutate(&env.pod(), &[]);
    let run = env
        .pod_setup(mutated)
        .app("report", "report", job_app())
        .start()
        .expect("pod runs");
    assert_eq!(
        agent_names(&run),
        [("vaultlet-agent".to_string(), Role::NativeSidecar)]
    );
    run.run_to_completion(WAIT)
        .expect("the Job's pod completes");
    let app = run.exit("report").expect("app exited");
    assert!(app.status.success(), "{}", run.output("report"));
    assert!(run.output("report").contains("bucket reports-2026"));
    let agent = run
        .exit("vaultlet-agent")
        .expect("agent stopped by the kubelet");
    assert!(agent.status.success(), "{}", run.output("vaultlet-agent"));
}

/// job, classic sidecars (clusters without native sidecars): init agent + sidecar agent that
/// exits by itself within 1 s of the app.
#[test]
fn job_classic_sidecar_exits_with_the_app() {
    let gap = classic_job_exit_gap(job_app(), true);
    eprintln!("classic Job: app exit -> agent exit {} ms", gap.as_millis());
}

/// The same when the app fails: the agent leaves whatever the app's exit code, so the Job
/// reports the app's failure instead of hanging.
#[test]
fn job_classic_sidecar_exits_when_the_app_fails() {
    let failing = format!("{}\nexit 3", job_app());
    let gap = classic_job_exit_gap(&failing, false);
    eprintln!(
        "classic Job, failing app: app exit -> agent exit {} ms",
        gap.as_millis()
    );
}

/// Runs the job sample in classic mode with `app` as the app; returns app exit -> agent exit.
fn classic_job_exit_gap(app: &str, app_succeeds: bool) -> Duration {
    require_namespaces();
    let env = SampleEnv::start("job", &SampleOptions::default());
    let mutated = env.mutate(&env.pod(), &["--native-sidecars=false"]);
    assert_eq!(mutated["spec"]["shareProcessNamespace"], true);
    let run = env
        .pod_setup(mutated)
        .app("report", "report", app)
        .start()
        .expect("pod runs");
    assert_eq!(
        agent_names(&run),
        [
            ("vaultlet-agent-init".to_string(), Role::Init),
            ("vaultlet-agent".to_string(), Role::Regular)
        ]
    );
    // No kubelet help: every regular container, the agent included, must exit by itself.
    run.run_to_completion(WAIT)
        .unwrap_or_else(|e| panic!("{e}\nagent output:\n{}", run.output("vaultlet-agent")));
    let app = run.exit("report").expect("app exited");
    assert_eq!(
        app.status.success(),
        app_succeeds,
        "{}",
        run.output("report")
    );
    let agent = run.exit("vaultlet-agent").expect("agent exited");
    assert!(agent.status.success(), "{}", run.output("vaultlet-agent"));
    let gap = run
        .exit_gap("report", "vaultlet-agent")
        .expect("both exited");
    assert!(
        gap <= Duration::from_secs(1),
        "agent exited {gap:?} after the app (target <= 1 s)"
    );
    gap
}

/// cronjob: a Job's pod with a nested file path.
#[test]
fn cronjob_pod_completes() {
    require_namespaces();
    let env = SampleEnv::start("cronjob", &SampleOptions::default());
    let mutated = env.mutate(&env.pod(), &[]);
    let run = env
        .pod_setup(mutated)
        .app(
            "backup",
            "backup",
            r#"set -e
f={{path:/vault/secrets/aws/credentials}}
grep -q '^aws_access_key_id = AKIA' "$f"
echo "backup uploaded""#,
        )
        .start()
        .expect("pod runs");
    run.run_to_completion(WAIT)
        .expect("the Job's pod completes");
    let app = run.exit("backup").expect("app exited");
    assert!(app.status.success(), "{}", run.output("backup"));
    assert!(run.output("backup").contains("backup uploaded"));
}

/// init-only: one init container renders once; nothing runs beside the app.
#[test]
fn init_only_renders_once_and_leaves() {
    require_namespaces();
    let env = SampleEnv::start("init-only", &SampleOptions::default());
    let mutated = env.mutate(&env.pod(), &[]);
    let run = env
        .pod_setup(mutated)
        .app("app", "app", &signal_app("/etc/legacy/secrets/config.yaml"))
        .start()
        .expect("pod runs");
    assert_eq!(
        agent_names(&run),
        [("vaultlet-agent-init".to_string(), Role::Init)]
    );
    assert_started_with_file(&run, "app");
    let yaml = run
        .read_file("app", "/etc/legacy/secrets/config.yaml")
        .expect("config.yaml");
    assert!(yaml.contains("smtp_host: smtp.example.com"), "{yaml}");
    let init = run.exit("vaultlet-agent-init").expect("init exited");
    assert!(init.status.success());
}

/// classic-sidecar (Deployment): init + sidecar agents, HTTP notification on change.
#[test]
fn classic_sidecar_http_notify() {
    require_namespaces();
    let env = SampleEnv::start("classic-sidecar", &SampleOptions::default());
    let mut pod = env.pod();
    set_annotation(&mut pod, "vaultlet.io/refresh-interval", "1s");
    let mutated = env.mutate(&pod, &[]);
    let run = env
        .pod_setup(mutated)
        .port(9090, free_port())
        .app(
            "prometheus",
            "prometheus",
            &http_app(9090, "/vault/secrets/prometheus.yml"),
        )
        .start()
        .expect("pod runs");
    assert_eq!(
        agent_names(&run),
        [
            ("vaultlet-agent-init".to_string(), Role::Init),
            ("vaultlet-agent".to_string(), Role::Regular)
        ]
    );
    assert_started_with_file(&run, "prometheus");
    let first = run
        .read_file("prometheus", "/vault/secrets/prometheus.yml")
        .expect("prometheus.yml");
    assert!(
        first.contains("url: https://metrics.example.com/api/v1/write"),
        "{first}"
    );
    env.bao(&[
        "kv",
        "patch",
        "-mount=secret",
        "prometheus/remote-write",
        "password=rotated",
    ]);
    run.wait_for_file("prometheus", "/vault/secrets/prometheus.yml", WAIT, |s| {
        s.contains("password: rotated")
    })
    .expect("re-rendered");
    run.wait_for_output("prometheus", "app: got POST /-/reload", WAIT)
        .expect("prometheus reload endpoint called");
    run.stop(Duration::from_secs(10));
}

/// pki-tls: a certificate issued by the PKI engine, key + chain in one file, mode 0400.
#[test]
fn pki_tls_certificate() {
    require_namespaces();
    let env = SampleEnv::start("pki-tls", &SampleOptions::default());
    let mutated = env.mutate(&env.pod(), &[]);
    let run = env
        .pod_setup(mutated)
        .app("nginx", "nginx", &signal_app("/vault/secrets/tls.pem"))
        .start()
        .expect("pod runs");
    assert_started_with_file(&run, "nginx");
    let pem = run
        .read_file("nginx", "/vault/secrets/tls.pem")
        .expect("tls.pem");
    assert!(pem.contains("PRIVATE KEY-----"), "no key");
    assert_eq!(
        pem.matches("-----BEGIN CERTIFICATE-----").count(),
        2,
        "cert + CA"
    );
    assert_eq!(file_mode(&run, "nginx", "/vault/secrets/tls.pem"), 0o400);
    run.stop(Duration::from_secs(10));
}

/// postgres-dynamic: database credentials that log in, replaced before their max TTL (app
/// notified over HTTP), revoked on shutdown.
#[test]
fn postgres_dynamic_credentials() {
    require_namespaces();
    let opts = SampleOptions {
        postgres: true,
        env: vec![
            ("DB_DEFAULT_TTL".into(), "4s".into()),
            ("DB_MAX_TTL".into(), "8s".into()),
        ],
        ..SampleOptions::default()
    };
    let env = SampleEnv::start("postgres-dynamic", &opts);
    let pg = env.pg.as_ref().expect("postgres");
    let mutated = env.mutate(&env.pod(), &[]);
    let run = env
        .pod_setup(mutated)
        .port(8080, free_port())
        .app("app", "app", &http_app(8080, "/vault/secrets/db.url"))
        .start()
        .expect("pod runs");
    assert_started_with_file(&run, "app");
    let url = run
        .read_file("app", "/vault/secrets/db.url")
        .expect("db.url");
    let (user, pass) = db_creds(&url);
    assert!(
        pg.can_login(&user, &pass),
        "the rendered credentials log in"
    );
    assert_eq!(file_mode(&run, "app", "/vault/secrets/db.url"), 0o400);

    // Max TTL 8 s: the agent must fetch new credentials before the old ones expire.
    let next = run
        .wait_for_file("app", "/vault/secrets/db.url", WAIT, |s| s != url)
        .expect("new credentials before max TTL");
    let (user2, pass2) = db_creds(&next);
    assert_ne!(user, user2);
    assert!(pg.can_login(&user2, &pass2), "the new credentials log in");
    run.wait_for_output("app", "app: got POST /-/reconnect", WAIT)
        .expect("the app was told to reconnect");

    run.stop(Duration::from_secs(10));
    assert!(
        !pg.can_login(&user2, &pass2),
        "revoke-on-shutdown: the credentials are revoked"
    );
}

/// `(user, password)` from `postgresql://USER:PASS@host...`.
fn db_creds(url: &str) -> (String, String) {
    let rest = url
        .trim()
        .strip_prefix("postgresql://")
        .expect("postgresql URL");
    let (userinfo, _) = rest.split_once('@').expect("userinfo");
    let (user, pass) = userinfo.split_once(':').expect("user:password");
    (user.to_string(), pass.to_string())
}
