//! Table-driven tests of the mutation.

use super::*;
use crate::testutil::{emit_for_validation, mk_pod};
use k8s_openapi::api::core::v1::Container;
use serde_json::json;
use vaultlet_agent::config::AuthConfig;

fn settings() -> Settings {
    Settings::defaults()
}

fn injected(pod: &Pod, s: &Settings) -> Injection {
    match mutate(pod, s).expect("allowed") {
        Outcome::Injected(i) => *i,
        Outcome::Skipped(skip) => panic!("expected an injection, got {skip:?}"),
    }
}

fn spec(p: &Pod) -> &PodSpec {
    p.spec.as_ref().expect("spec")
}

fn init_names(p: &Pod) -> Vec<&str> {
    spec(p)
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect()
}

fn container<'a>(p: &'a Pod, name: &str) -> &'a Container {
    spec(p)
        .init_containers
        .iter()
        .flatten()
        .chain(spec(p).containers.iter())
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// The exec command of a container's postStart hook (empty without one).
fn post_start(c: &Container) -> Vec<&str> {
    c.lifecycle
        .as_ref()
        .and_then(|l| l.post_start.as_ref())
        .and_then(|h| h.exec.as_ref())
        .and_then(|e| e.command.as_ref())
        .map(|c| c.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

fn mounts_secrets(c: &Container) -> bool {
    c.volume_mounts
        .iter()
        .flatten()
        .any(|m| m.name == SECRETS_VOLUME && m.read_only == Some(true))
}

fn config_of(c: &Container) -> AgentConfig {
    let env = c.env.as_ref().expect("env");
    let json = env
        .iter()
        .find(|e| e.name == CONFIG_ENV)
        .and_then(|e| e.value.as_deref())
        .expect("config env");
    AgentConfig::from_json(json).expect("agent accepts the config")
}

/// Checks properties every injection must have, and hands the pod to the validator.
fn check_common(name: &str, before: &Pod, i: &Injection) {
    let after = &i.pod;
    emit_for_validation(name, after);
    // Idempotent: a second pass changes nothing.
    assert!(matches!(
        mutate(after, &settings()),
        Ok(Outcome::Skipped(Skip::AlreadyInjected))
    ));
    // The patch applied to the original JSON gives the mutated pod.
    let mut doc = serde_json::to_value(before).expect("json");
    json_patch::patch(&mut doc, &patch(before, after).expect("patch")).expect("patch applies");
    assert_eq!(doc, serde_json::to_value(after).expect("json"), "{name}");
    // App containers are untouched but for volume mounts (and, for env secrets, the
    // supervisor in front of their command: see mutate/env_tests.rs).
    for (b, a) in spec(before).containers.iter().zip(&spec(after).containers) {
        let mut a = a.clone();
        a.volume_mounts = b.volume_mounts.clone();
        if i.config.secrets.iter().any(|s| s.env) {
            a.command = b.command.clone();
        }
        assert_eq!(&a, b, "{name}: container {} changed", b.name);
    }
    // Every agent container passes the restricted Pod Security Standard.
    for c in spec(after)
        .init_containers
        .iter()
        .flatten()
        .chain(&spec(after).containers)
        .filter(|c| c.name.starts_with("vaultlet-agent"))
    {
        let sc = c.security_context.as_ref().expect("securityContext");
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        let caps = sc.capabilities.as_ref().and_then(|c| c.drop.clone());
        assert_eq!(caps, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            Some("RuntimeDefault")
        );
        assert_eq!(config_of(c), i.config);
    }
    let annotations = after.metadata.annotations.as_ref().expect("annotations");
    assert_eq!(
        annotations.get(STATUS).map(String::as_str),
        Some("injected")
    );
}

fn basic() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "web", "namespace": "default",
            "labels": {"vaultlet.io/inject": "true"},
            "annotations": {
                "vaultlet.io/role": "app",
                "vaultlet.io/secret-db": "database/creds/app",
                "vaultlet.io/template-db": "postgres://{{username}}:{{password}}@db/app\n"
            }
        },
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
    })
}

fn with(mut base: serde_json::Value, pointer: &str, value: serde_json::Value) -> serde_json::Value {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    let slot = base.pointer_mut(parent).expect("parent exists");
    slot[key.replace("~1", "/")] = value;
    base
}

fn annotated(key: &str, value: &str) -> serde_json::Value {
    with(
        basic(),
        &format!("/metadata/annotations/{}", key.replace('/', "~1")),
        json!(value),
    )
}

#[test]
fn native_sidecar_by_default() {
    let pod = mk_pod(basic());
    let i = injected(&pod, &settings());
    check_common("native", &pod, &i);
    assert_eq!(i.mode, InjectMode::NativeSidecar);
    assert_eq!(init_names(&i.pod), [AGENT_CONTAINER]);
    let agent = container(&i.pod, AGENT_CONTAINER);
    assert_eq!(agent.restart_policy.as_deref(), Some("Always"));
    // Gated by the postStart hook alone: a startupProbe would cost the kubelet a probe tick.
    assert_eq!(agent.startup_probe, None);
    assert_eq!(
        post_start(agent),
        ["/vaultlet-agent", "probe", "--wait", "120s"]
    );
    assert!(mounts_secrets(container(&i.pod, "web")));
    let sc = agent.security_context.as_ref().expect("sc");
    assert_eq!(
        (sc.run_as_user, sc.run_as_group),
        (Some(65532), Some(65532))
    );
    let volumes: Vec<_> = spec(&i.pod)
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(volumes, [SECRETS_VOLUME, STATE_VOLUME, SA_TOKEN_VOLUME]);
    let secrets = &spec(&i.pod).volumes.as_ref().expect("volumes")[0];
    let dir = secrets.empty_dir.as_ref().expect("emptyDir");
    assert_eq!(dir.medium.as_deref(), Some("Memory"));
    assert_eq!(dir.size_limit.as_ref().map(|q| q.0.as_str()), Some("16Mi"));
    assert!(matches!(i.config.auth, AuthConfig::Kubernetes { ref role, .. } if role == "app"));
    assert_eq!(i.config.exit, ExitPolicy::Never);
    assert_eq!(spec(&i.pod).share_process_namespace, None);
    let req = agent
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .expect("requests");
    assert_eq!(req["cpu"].0, "10m");
    assert_eq!(req["memory"].0, "16Mi");
}

#[test]
fn modes() {
    // (name, annotations, expected mode, init containers, extra app container)
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        InjectMode,
        &'a [&'a str],
        bool,
    );
    let cases: &[Case] = &[
        (
            "classic",
            &[("vaultlet.io/native-sidecar", "false")],
            InjectMode::Classic,
            &[AGENT_INIT_CONTAINER],
            true,
        ),
        (
            "init-only",
            &[("vaultlet.io/mode", "init-only")],
            InjectMode::InitOnly,
            &[AGENT_INIT_CONTAINER],
            false,
        ),
        (
            "native-explicit",
            &[("vaultlet.io/native-sidecar", "true")],
            InjectMode::NativeSidecar,
            &[AGENT_CONTAINER],
            false,
        ),
    ];
    for (name, pairs, mode, inits, sidecar) in cases {
        let mut v = basic();
        for (k, val) in *pairs {
            v = with(
                v,
                &format!("/metadata/annotations/{}", k.replace('/', "~1")),
                json!(val),
            );
        }
        let pod = mk_pod(v);
        let i = injected(&pod, &settings());
        check_common(name, &pod, &i);
        assert_eq!(i.mode, *mode, "{name}");
        assert_eq!(init_names(&i.pod), *inits, "{name}");
        let has_sidecar = spec(&i.pod)
            .containers
            .iter()
            .any(|c| c.name == AGENT_CONTAINER);
        assert_eq!(has_sidecar, *sidecar, "{name}");
        let init = container(&i.pod, inits[0]);
        let expected_arg = if *mode == InjectMode::NativeSidecar {
            "run"
        } else {
            "init"
        };
        assert_eq!(
            init.args.as_deref(),
            Some(&[expected_arg.to_owned()][..]),
            "{name}"
        );
    }
}

#[test]
fn settings_choose_classic_and_init_only() {
    let mut s = settings();
    s.agent.native_sidecars = false;
    let i = injected(&mk_pod(basic()), &s);
    assert_eq!(i.mode, InjectMode::Classic);
    s.agent.mode = Mode::InitOnly;
    assert_eq!(injected(&mk_pod(basic()), &s).mode, InjectMode::InitOnly);
}

fn istio() -> serde_json::Value {
    with(
        basic(),
        "/spec/initContainers",
        json!([
            {"name": "istio-init", "image": "istio/proxyv2:1.24",
             "args": ["istio-iptables", "-p", "15001"],
             "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}}},
            {"name": "istio-proxy", "image": "istio/proxyv2:1.24", "restartPolicy": "Always"}
        ]),
    )
}

#[test]
fn existing_init_containers_first_and_last() {
    let pod = mk_pod(istio());
    let i = injected(&pod, &settings());
    check_common("istio-first", &pod, &i);
    assert_eq!(
        init_names(&i.pod),
        [AGENT_CONTAINER, "istio-init", "istio-proxy"]
    );
    assert!(
        mounts_secrets(container(&i.pod, "istio-init")),
        "runs after the agent"
    );
    assert!(
        !mounts_secrets(container(&i.pod, "istio-proxy")),
        "a mesh sidecar is not an app"
    );

    let pod = mk_pod(with(
        istio(),
        "/metadata/annotations/vaultlet.io~1init-position",
        json!("last"),
    ));
    let i = injected(&pod, &settings());
    check_common("istio-last", &pod, &i);
    assert_eq!(
        init_names(&i.pod),
        ["istio-init", "istio-proxy", AGENT_CONTAINER]
    );
    assert!(
        !mounts_secrets(container(&i.pod, "istio-init")),
        "runs before the agent"
    );
    assert!(mounts_secrets(container(&i.pod, "web")));

    let mut s = settings();
    s.agent.init_position = InitPosition::Last;
    let i = injected(&mk_pod(istio()), &s);
    assert_eq!(init_names(&i.pod).last(), Some(&AGENT_CONTAINER));
}

#[test]
fn pod_security_context_and_process_namespace() {
    let v = with(
        annotated("vaultlet.io/notify", "signal:SIGHUP:nginx"),
        "/spec/securityContext",
        json!({"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "runAsNonRoot": true}),
    );
    let pod = mk_pod(v);
    let i = injected(&pod, &settings());
    check_common("pod-security-context", &pod, &i);
    let sc = container(&i.pod, AGENT_CONTAINER)
        .security_context
        .clone()
        .expect("sc");
    assert_eq!((sc.run_as_user, sc.run_as_group), (Some(1000), Some(3000)));
    assert_eq!(i.config.secrets[0].group, Some(2000));
    assert_eq!(spec(&i.pod).share_process_namespace, Some(true));
    assert!(i.warnings.is_empty(), "{:?}", i.warnings);

    // A root pod user is not copied: the agent stays non-root.
    let pod = mk_pod(with(
        basic(),
        "/spec/securityContext",
        json!({"runAsUser": 0}),
    ));
    let sc = container(&injected(&pod, &settings()).pod, AGENT_CONTAINER)
        .security_context
        .clone()
        .expect("sc");
    assert_eq!(sc.run_as_user, Some(65532));

    // An existing shareProcessNamespace is kept.
    let pod = mk_pod(with(basic(), "/spec/shareProcessNamespace", json!(true)));
    let i = injected(&pod, &settings());
    check_common("share-process-namespace", &pod, &i);
    assert_eq!(spec(&i.pod).share_process_namespace, Some(true));
}

#[test]
fn signals_to_another_user_are_warned_about() {
    // No runAsUser anywhere: the app runs as its image's user, the agent as 65532.
    let i = injected(
        &mk_pod(annotated("vaultlet.io/notify", "signal:SIGHUP:nginx")),
        &settings(),
    );
    assert_eq!(i.warnings.len(), 1, "{:?}", i.warnings);
    assert!(
        i.warnings[0].contains("vaultlet.io/notify")
            && i.warnings[0].contains("\"web\"")
            && i.warnings[0].contains("image's user")
            && i.warnings[0].contains("65532"),
        "{}",
        i.warnings[0]
    );
    // The container's own user differs from the pod-level one the agent takes.
    let v = with(
        with(
            annotated("vaultlet.io/notify", "signal:SIGHUP:nginx"),
            "/spec/securityContext",
            json!({"runAsUser": 1000}),
        ),
        "/spec/containers/0/securityContext",
        json!({"runAsUser": 2000}),
    );
    let i = injected(&mk_pod(v), &settings());
    let notify: Vec<_> = i
        .warnings
        .iter()
        .filter(|w| w.starts_with("vaultlet.io/notify"))
        .collect();
    assert_eq!(notify.len(), 1, "{:?}", i.warnings);
    assert!(notify[0].contains("runs as user 2000"), "{}", notify[0]);
    // No signal: no warning.
    assert!(injected(&mk_pod(basic()), &settings()).warnings.is_empty());
}

#[test]
fn generate_name_without_name_and_no_optional_fields() {
    let mut v = basic();
    let meta = v["metadata"].as_object_mut().expect("metadata");
    meta.remove("name");
    meta.insert("generateName".into(), json!("web-"));
    let pod = mk_pod(v);
    let i = injected(&pod, &settings());
    check_common("generate-name", &pod, &i);
    assert_eq!(i.pod.metadata.generate_name.as_deref(), Some("web-"));
}

#[test]
fn the_label_is_the_only_opt_in() {
    // The webhook's objectSelector never sends an annotation-only Pod: it is not injected.
    let mut v = basic();
    v["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("labels");
    v["metadata"]["annotations"]["vaultlet.io/inject"] = json!("true");
    assert!(matches!(
        mutate(&mk_pod(v), &settings()),
        Ok(Outcome::Skipped(Skip::AnnotationOnly))
    ));
    // The annotation opts a labelled Pod out, before any other annotation is checked.
    let v = with(
        annotated("vaultlet.io/inject", "false"),
        "/metadata/annotations/vaultlet.io~1rol",
        json!("typo"),
    );
    assert!(matches!(
        mutate(&mk_pod(v), &settings()),
        Ok(Outcome::Skipped(Skip::OptedOut))
    ));
    // Label and annotation "true": injected; a malformed value is denied.
    let pod = mk_pod(annotated("vaultlet.io/inject", "true"));
    let i = injected(&pod, &settings());
    check_common("label-and-annotation", &pod, &i);
    let err =
        mutate(&mk_pod(annotated("vaultlet.io/inject", "yes")), &settings()).expect_err("denied");
    assert!(err.message().contains("vaultlet.io/inject"), "{err}");
}

#[test]
fn job_pods_in_classic_mode_exit_with_the_app() {
    let v = with(
        with(
            annotated("vaultlet.io/native-sidecar", "false"),
            "/spec/restartPolicy",
            json!("Never"),
        ),
        "/metadata/ownerReferences",
        json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "migrate", "uid": "1234", "controller": true}]),
    );
    let pod = mk_pod(v);
    let i = injected(&pod, &settings());
    check_common("job-classic", &pod, &i);
    assert_eq!(i.config.exit, ExitPolicy::AppsExited);
    assert_eq!(spec(&i.pod).share_process_namespace, Some(true));

    // Native sidecars need nothing: the kubelet stops them.
    let v = with(
        basic(),
        "/metadata/ownerReferences",
        json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "m", "uid": "1"}]),
    );
    let i = injected(&mk_pod(v), &settings());
    assert_eq!(i.config.exit, ExitPolicy::Never);
    assert_eq!(spec(&i.pod).share_process_namespace, None);
}

#[path = "mutate/request_tests.rs"]
mod requests;

#[path = "mutate/env_tests.rs"]
mod env;

#[path = "mutate/hostile_tests.rs"]
mod hostile;

/// The agent's bound on one rendered file is the secrets volume's size, and it may follow a
/// redirect only to the operator's Vault nodes of the address's own scheme.
#[test]
fn the_agent_gets_the_volume_size_and_the_operators_vault_nodes() {
    let pod = mk_pod(basic());
    let config = config_of(container(&injected(&pod, &settings()).pod, AGENT_CONTAINER));
    assert_eq!(config.paths.max_file_size, 16 * 1024 * 1024);
    assert_eq!(config.vault.redirect_addresses, Vec::<String>::new());

    let mut s = settings();
    s.vault.vault_redirect_addrs = vec![
        "https://vault-1.vault-internal:8200".into(),
        " ".into(),
        "http://vault-2.vault-internal:8200".into(),
    ];
    let pod = mk_pod(annotated("vaultlet.io/secrets-volume-size", "1Mi"));
    let config = config_of(container(&injected(&pod, &s).pod, AGENT_CONTAINER));
    assert_eq!(config.paths.max_file_size, 1024 * 1024);
    assert_eq!(
        config.vault.redirect_addresses,
        ["https://vault-1.vault-internal:8200"]
    );
}

/// `template-language: consul-template`: the agent gets the template, no path, the language.
#[test]
fn consul_template_secrets_reach_the_agent_without_a_path() {
    let t = "{{ with secret \"secret/data/app\" }}{{ .Data.data.password }}{{ end }}";
    let pod = mk_pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "p", "labels": { "vaultlet.io/inject": "true" },
                      "annotations": { "vaultlet.io/role": "app",
                                       "vaultlet.io/template-language": "consul-template",
                                       "vaultlet.io/template-pw": t,
                                       "vaultlet.io/perms-pw": "0644" } },
        "spec": { "containers": [{ "name": "app", "image": "app:1" }] }
    }));
    let config = config_of(container(&injected(&pod, &settings()).pod, AGENT_CONTAINER));
    let s = &config.secrets[0];
    assert_eq!(
        (
            s.name.as_str(),
            s.path.as_str(),
            s.template.as_deref(),
            s.mode,
            s.file.as_str()
        ),
        ("pw", "", Some(t), 0o644, "pw")
    );
    assert_eq!(
        s.language,
        vaultlet_agent::config::TemplateLanguage::ConsulTemplate
    );
}
