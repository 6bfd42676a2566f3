//! The README demo: inject the agent into a Pod and run that Pod locally against OpenBao.
//!
//! `scripts/demo.sh` builds and runs this. Steps: start OpenBao (dev) on loopback, configure
//! kubernetes auth (with the TokenReview stand-in) and write `secret/app`, mutate a sample Pod
//! with `vaultlet-injector preview`, run the mutated Pod like a kubelet (the real agent, a tiny
//! stand-in app), show the rendered file, rotate the secret and show the re-render and the
//! app's SIGHUP, then clean up. Every wait has a deadline; Ctrl-C cleans up too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use vaultlet_agent::config::{AgentConfig, CONFIG_ENV};
use vaultlet_e2e::podrun::{PodRun, PodSetup, Role, TokenRequest};
use vaultlet_e2e::tokenreview_standin::TokenReviewServer;
use vaultlet_e2e::{bins, injector};
use vaultlet_testkit::OpenBao;

const STEPS: usize = 7;

/// The Pod the demo runs unless `--pod FILE` is given.
const DEFAULT_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: demo
  namespace: default
  labels:
    vaultlet.io/inject: "true"          # opt in
  annotations:
    vaultlet.io/role: demo              # OpenBao kubernetes-auth role
    vaultlet.io/secret-app: secret/data/app
    vaultlet.io/template-app: |
      DB_USER={{username}}
      DB_PASSWORD={{password}}
    vaultlet.io/file-app: app.env       # -> /vault/secrets/app.env
    vaultlet.io/notify: signal:SIGHUP:demo-app
    vaultlet.io/refresh-interval: 1s
spec:
  serviceAccountName: demo-app
  securityContext:                      # the agent runs as this user too, so it may signal the app
    runAsUser: 10001
    runAsGroup: 10001
    fsGroup: 10001
  containers:
    - name: app
      image: registry.example/demo-app:1.0
      command: ["/demo-app"]
"#;

/// The stand-in app: reports start and every SIGHUP, idles otherwise.
const APP_SCRIPT: &str = r#"echo "demo-app: started as pid $$, config in $SECRETS_DIR"
trap 'echo "demo-app: got SIGHUP at $(date +%T.%N | cut -c1-12), re-reading its config"' HUP
while :; do sleep 0.2 & wait $!; done"#;

/// How long any single wait may take.
const WAIT: Duration = Duration::from_secs(30);

struct Args {
    pod: Option<PathBuf>,
    work_dir: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        pod: None,
        work_dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--pod" => args.pod = Some(it.next().context("--pod needs a file")?.into()),
            "--work-dir" => {
                args.work_dir = Some(it.next().context("--work-dir needs a directory")?.into())
            }
            "-h" | "--help" => {
                println!(
                    "usage: vaultlet-demo [--pod FILE] [--work-dir DIR]\n\n\
                     FILE: a Pod with vaultlet.io annotations reading secret/data/app (keys username, password)"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; see --help"),
        }
    }
    Ok(args)
}

fn main() {
    let cancel = Arc::new(AtomicBool::new(false));
    if let Err(e) = watch_signals(Arc::clone(&cancel)) {
        eprintln!("demo: cannot watch for Ctrl-C: {e}");
    }
    let code = match parse_args().and_then(|args| demo(&args, &cancel)) {
        Ok(()) => {
            println!("\ndemo finished: everything stopped and cleaned up.");
            0
        }
        Err(_) if cancel.load(Ordering::SeqCst) => {
            eprintln!("\ndemo interrupted: stopped everything and cleaned up.");
            130
        }
        Err(e) => {
            eprintln!("\ndemo FAILED: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// Turns SIGINT/SIGTERM into the cancel flag, so that every wait stops and destructors run.
///
/// Handlers (not a blocked mask + sigwait): a blocked mask would be inherited by the Pod's
/// processes, which then could not be stopped with SIGTERM.
fn watch_signals(cancel: Arc<AtomicBool>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut int, mut term) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    std::thread::spawn(move || {
        rt.block_on(async {
            loop {
                let name = tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                };
                eprintln!("\ndemo: {name} received, cleaning up...");
                cancel.store(true, Ordering::SeqCst);
            }
        });
    });
    Ok(())
}

fn step(n: usize, what: &str) {
    println!("\n[{n}/{STEPS}] {what}");
}

fn detail(line: impl AsRef<str>) {
    println!("      {}", line.as_ref());
}

fn demo(args: &Args, cancel: &Arc<AtomicBool>) -> anyhow::Result<()> {
    let temp;
    let work: PathBuf = match &args.work_dir {
        Some(d) => d.clone(),
        None => {
            temp = vaultlet_testkit::TempDir::with_prefix("vaultlet-demo-")?;
            temp.path().to_path_buf()
        }
    };
    let pod_yaml = match &args.pod {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        None => DEFAULT_POD.to_string(),
    };
    let pod_in = injector::pod_of(
        &injector::parse_yaml(&pod_yaml)
            .map_err(|e| anyhow::anyhow!("the Pod is not YAML: {e}"))?,
    );
    let injector_bin = bins::injector_bin()?;
    let agent_bin = bins::agent_bin()?;
    println!(
        "vaultlet demo: a Pod opts in, the injector adds the agent, the agent keeps a secret file fresh"
    );
    detail(format!("work dir {}", work.display()));

    step(1, "Starting OpenBao (dev server) on loopback");
    let t = Instant::now();
    let bao = OpenBao::dev();
    check(cancel)?;
    detail(format!(
        "{} is up ({} ms), `bao` from {}",
        bao.addr(),
        t.elapsed().as_millis(),
        vaultlet_testkit::bao_bin().display()
    ));

    step(
        2,
        "Configuring OpenBao: kubernetes auth, a policy, and secret/app",
    );
    let k8s = TokenReviewServer::start();
    let (role, sa, ns) = identity(&pod_in);
    bao.policy(
        &role,
        r#"path "secret/data/app" { capabilities = ["read"] }
path "secret/metadata/app" { capabilities = ["read"] }"#,
    );
    k8s.enable_in(&bao, &role, &sa, &ns, &[&role]);
    detail(format!(
        "auth/kubernetes -> TokenReview stand-in at {} (the demo runs without a cluster; the tests use the real API server of scripts/cluster.sh)",
        k8s.url()
    ));
    detail(format!(
        "role {role}: service account {ns}/{sa}, policy {role} (read secret/data/app)"
    ));
    bao_cli(
        &bao,
        &[
            "kv",
            "put",
            "-mount=secret",
            "app",
            "username=demo",
            "password=first-password",
        ],
    )?;
    detail("$ bao kv put -mount=secret app username=demo password=first-password   (version 1)");

    step(
        3,
        "Mutating the Pod with `vaultlet-injector preview` (the webhook's own code path)",
    );
    let flags = vec!["--vault-addr".to_string(), bao.addr()];
    let pod_text = serde_json::to_string(&pod_in)?;
    let mutated = injector::mutate(&injector_bin, &pod_text, &flags)?;
    let patch = injector::patch(&injector_bin, &pod_text, &flags)?;
    print_summary(&pod_in, &mutated);
    check_demo_secrets(&mutated)?;
    detail(format!(
        "JSON Patch ({} operations) sent back to the API server:",
        patch.as_array().map_or(0, Vec::len)
    ));
    for line in serde_json::to_string_pretty(&patch)?.lines() {
        detail(format!("  {line}"));
    }
    check(cancel)?;

    step(4, "Running the mutated Pod locally, in kubelet order");
    let app_name = notify_process(&mutated).unwrap_or_else(|| "demo-app".into());
    let mut setup = PodSetup::new(mutated.clone(), work.join("pod"))
        .agent_bin(&agent_bin)
        .cancel_flag(Arc::clone(cancel))
        .init_timeout(WAIT)
        .token_minter(|r: &TokenRequest| {
            k8s.sa_token(
                &r.namespace,
                &r.service_account,
                "uid-demo",
                &r.audience,
                r.expiration_secs,
            )
        });
    for c in vaultlet_e2e::podrun::containers(&mutated)? {
        if !c.is_agent() {
            setup = setup.app(&c.name, &app_name, APP_SCRIPT);
        }
    }
    let t = Instant::now();
    let pod = setup.start()?;
    describe_start(&pod, t);

    let app = first_app(&pod).context("the Pod has no app container")?;
    let files = secret_files(&mutated);
    let (file, _) = files
        .first()
        .cloned()
        .context("the agent config renders no file")?;
    step(5, &format!("The app container reads {file}"));
    let first = pod.wait_for_file(&app, &file, WAIT, |s| !s.is_empty())?;
    show_file(&first);
    detail(format!(
        "(host path {})",
        pod.host_path(&app, &file)?.display()
    ));
    pod.wait_for_output(&app, "started", WAIT)?;

    step(
        6,
        "Rotating the secret in OpenBao; the agent notices, re-renders, and signals the app",
    );
    bao_cli(
        &bao,
        &[
            "kv",
            "put",
            "-mount=secret",
            "app",
            "username=demo",
            "password=rotated-password",
        ],
    )?;
    let rotated_at = Instant::now();
    detail("$ bao kv put -mount=secret app username=demo password=rotated-password   (version 2)");
    let second = pod.wait_for_file(&app, &file, WAIT, |s| s != first)?;
    let rendered_after = rotated_at.elapsed();
    detail(format!(
        "{file} re-rendered {} ms after the write:",
        rendered_after.as_millis()
    ));
    show_file(&second);
    let out = pod.wait_for_output(&app, "got SIGHUP", WAIT)?;
    detail(format!(
        "app notified {} ms after the write:",
        rotated_at.elapsed().as_millis()
    ));
    for line in out.lines().filter(|l| l.contains("got SIGHUP")) {
        detail(format!("  {line}"));
    }
    if !second.contains("rotated-password") {
        bail!("the re-rendered file does not hold the new secret version");
    }

    step(
        7,
        "Stopping the Pod like the kubelet (SIGTERM), then OpenBao; removing the work dir",
    );
    pod.stop(Duration::from_secs(10));
    for c in pod.containers() {
        if let Some(exit) = pod.exit(&c.name) {
            detail(format!("{:<16} exited: {}", c.name, exit.status));
        }
    }
    let agent = pod
        .containers()
        .iter()
        .find(|c| c.is_agent() && c.role != Role::Init);
    if let Some(agent) = agent {
        detail(format!("last lines of the {} log:", agent.name));
        let log = pod.output(&agent.name);
        let lines: Vec<&str> = log.lines().collect();
        for line in &lines[lines.len().saturating_sub(6)..] {
            detail(format!("  {line}"));
        }
    }
    drop(pod);
    drop(k8s);
    drop(bao);
    Ok(())
}

/// Runs the `bao` CLI against the demo server, in its own process group (Ctrl-C is ours).
fn bao_cli(bao: &OpenBao, args: &[&str]) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(vaultlet_testkit::bao_bin())
        .args(args)
        .env("BAO_ADDR", bao.addr())
        .env("BAO_TOKEN", bao.root_token())
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .output()
        .context("running bao")?;
    if !out.status.success() {
        bail!(
            "bao {} failed ({}): {}",
            args.first().copied().unwrap_or_default(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn check(cancel: &AtomicBool) -> anyhow::Result<()> {
    if cancel.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// The demo writes only `secret/app`: a `--pod` reading anything else would wait in vain.
fn check_demo_secrets(pod: &Value) -> anyhow::Result<()> {
    let cfg = agent_config(pod).context(
        "the injector added no agent: is the Pod opted in (label vaultlet.io/inject: \"true\")?",
    )?;
    if let Some(s) = cfg.secrets.iter().find(|s| s.path != "secret/data/app") {
        bail!(
            "secret {} reads {}; the demo only writes secret/app (keys username, password)",
            s.name,
            s.path
        );
    }
    Ok(())
}

/// The kubernetes-auth role, service account and namespace of the Pod.
fn identity(pod: &Value) -> (String, String, String) {
    let role = pod["metadata"]["annotations"]["vaultlet.io/role"]
        .as_str()
        .unwrap_or("demo")
        .to_string();
    (
        role,
        vaultlet_e2e::podrun::service_account(pod),
        vaultlet_e2e::podrun::pod_namespace(pod),
    )
}

/// The agent config of the first agent container.
fn agent_config(pod: &Value) -> Option<AgentConfig> {
    let spec = &pod["spec"];
    let all = [&spec["initContainers"], &spec["containers"]];
    all.iter()
        .filter_map(|l| l.as_array())
        .flatten()
        .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
        .find(|e| e["name"] == CONFIG_ENV)
        .and_then(|e| serde_json::from_str(e["value"].as_str()?).ok())
}

/// `(container path, secret name)` of every rendered file.
fn secret_files(pod: &Value) -> Vec<(String, String)> {
    agent_config(pod)
        .map(|cfg| {
            cfg.secrets
                .iter()
                .map(|s| {
                    let path = cfg.paths.secrets_dir.join(&s.file);
                    (path.display().to_string(), s.name.clone())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The process name of a `signal:` notification, for the stand-in app's argv[0].
fn notify_process(pod: &Value) -> Option<String> {
    let cfg = agent_config(pod)?;
    let all = cfg
        .notify
        .iter()
        .chain(cfg.secrets.iter().flat_map(|s| s.notify.iter()));
    all.filter_map(|n| match n {
        vaultlet_agent::config::NotifySpec::Signal { process, .. } => Some(process.clone()),
        _ => None,
    })
    .next()
}

fn first_app(pod: &PodRun) -> Option<String> {
    pod.containers()
        .iter()
        .find(|c| c.role == Role::Regular && !c.is_agent())
        .map(|c| c.name.clone())
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|l| {
            l.iter()
                .filter_map(|c| c["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn added(before: &Value, after: &Value) -> Vec<String> {
    let old = names(before);
    names(after)
        .into_iter()
        .filter(|n| !old.contains(n))
        .collect()
}

/// A readable account of what the injector changed.
fn print_summary(before: &Value, after: &Value) {
    let (b, a) = (&before["spec"], &after["spec"]);
    for name in added(&b["initContainers"], &a["initContainers"]) {
        let c = find(&a["initContainers"], &name);
        let kind = if c["restartPolicy"] == "Always" {
            "native sidecar (init container, restartPolicy: Always)"
        } else {
            "init container (renders once, then exits)"
        };
        detail(format!("+ {name}: {kind}, runs {}", argv(c)));
        if let Some(p) = c["lifecycle"]["postStart"]["exec"]["command"].as_array() {
            let p: Vec<&str> = p.iter().filter_map(Value::as_str).collect();
            detail(format!(
                "    postStart hook: {} (the app starts only once secrets are rendered)",
                p.join(" ")
            ));
        }
    }
    for name in added(&b["containers"], &a["containers"]) {
        let c = find(&a["containers"], &name);
        detail(format!(
            "+ {name}: classic sidecar container, runs {}",
            argv(c)
        ));
    }
    for name in added(&b["volumes"], &a["volumes"]) {
        let v = find(&a["volumes"], &name);
        let kind = v
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "name").cloned())
            .unwrap_or_default();
        detail(format!("+ volume {name} ({kind})"));
    }
    for c in a["containers"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or_default();
        let old = find(&b["containers"], name);
        for m in added(&old["volumeMounts"], &c["volumeMounts"]) {
            let mount = find(&c["volumeMounts"], &m);
            let ro = if mount["readOnly"] == true {
                ", read-only"
            } else {
                ""
            };
            detail(format!(
                "+ container {name} mounts {m} at {}{ro}",
                mount["mountPath"].as_str().unwrap_or_default()
            ));
        }
    }
    if a["shareProcessNamespace"] == true && b["shareProcessNamespace"] != true {
        detail("+ shareProcessNamespace: true (so the agent can signal the app)");
    }
    if let Some(cfg) = agent_config(after) {
        detail(format!(
            "agent config ({CONFIG_ENV}): {} auth{}, Vault {}, refresh every {}",
            cfg.auth.method(),
            match &cfg.auth {
                vaultlet_agent::config::AuthConfig::Kubernetes { role, .. } =>
                    format!(" as role {role}"),
                _ => String::new(),
            },
            cfg.vault.address,
            vaultlet_agent::config::format_duration(cfg.refresh_interval),
        ));
        for s in &cfg.secrets {
            detail(format!(
                "    secret {}: {} -> {} (mode {:o})",
                s.name,
                s.path,
                cfg.paths.secrets_dir.join(&s.file).display(),
                s.mode
            ));
        }
        for n in cfg
            .notify
            .iter()
            .chain(cfg.secrets.iter().flat_map(|s| s.notify.iter()))
        {
            detail(format!(
                "    notify: {}",
                serde_json::to_string(n).unwrap_or_default()
            ));
        }
    }
}

fn find<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

fn argv(c: &Value) -> String {
    let mut v: Vec<&str> = Vec::new();
    for key in ["command", "args"] {
        v.extend(
            c[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str),
        );
    }
    v.join(" ")
}

fn describe_start(pod: &PodRun, t: Instant) {
    for c in pod.containers() {
        let Some(started) = pod.started_at(&c.name) else {
            continue;
        };
        let at = started.saturating_duration_since(t).as_millis();
        let what = match c.role {
            Role::Init => "init container, ran to completion",
            Role::NativeSidecar => {
                "native sidecar, postStart hook returned before the next container"
            }
            Role::Regular if c.is_agent() => "classic sidecar",
            Role::Regular => "app (a stand-in shell script under the app's process name)",
        };
        let exe = if c.is_agent() {
            "the real vaultlet-agent"
        } else {
            "stand-in"
        };
        let user = c
            .identity
            .as_ref()
            .filter(|_| pod.runs_as_users())
            .map(|i| format!(", uid {}", i.uid))
            .unwrap_or_default();
        detail(format!("+{at:>5} ms  {:<16} {what} [{exe}{user}]", c.name));
    }
    let ns = if pod.isolation() == vaultlet_e2e::podrun::Isolation::Namespaces {
        if pod.shares_process_namespace() {
            "one PID namespace for the whole Pod (shareProcessNamespace)"
        } else {
            "one PID namespace per container"
        }
    } else {
        "host PID namespace (run as root for per-Pod namespaces)"
    };
    detail(format!(
        "processes: {ns}; volumes are directories under {}",
        volumes_root(pod).display()
    ));
}

fn volumes_root(pod: &PodRun) -> PathBuf {
    pod.volume_dir("vaultlet-secrets")
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn show_file(content: &str) {
    for line in content.lines() {
        detail(format!("  | {line}"));
    }
}
