//! Tests of `vaultlet.io/env-<name>`: the wrapped command, the binary volume, the denials.

use super::*;
use vaultlet_agent::config::supervise::{OnChange, OnExit, SuperviseArgs};

fn env_pod() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "web", "namespace": "default",
            "labels": {"vaultlet.io/inject": "true"},
            "annotations": {
                "vaultlet.io/role": "app",
                "vaultlet.io/secret-db": "secret/data/db",
                "vaultlet.io/env-db": "true",
                "vaultlet.io/secret-tls": "secret/data/tls",
                "vaultlet.io/format-tls": "json"
            }
        },
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {"name": "web", "image": "app:1", "command": ["/app", "serve"], "args": ["--port", "8080"]},
                {"name": "side", "image": "side:1", "command": ["/side"]}
            ]
        }
    })
}

/// The supervisor's settings read back from a container's command.
fn supervised(c: &Container) -> SuperviseArgs {
    let cmd = c.command.clone().expect("command");
    assert_eq!(cmd[..2], ["/vaultlet/bin/vaultlet-agent", "supervise"]);
    SuperviseArgs::parse(cmd.into_iter().skip(2)).expect("the supervisor reads its flags")
}

fn mounts(c: &Container) -> Vec<(&str, &str, Option<bool>)> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
        .collect()
}

#[test]
fn native_sidecar_wraps_the_command_and_shares_the_binary() {
    let pod = mk_pod(env_pod());
    let i = injected(&pod, &settings());
    check_common("env-native", &pod, &i);
    let web = container(&i.pod, "web");
    assert_eq!(
        supervised(web),
        SuperviseArgs {
            env_files: vec!["/vault/secrets/db".into()],
            on_change: OnChange::Restart,
            on_exit: OnExit::Restart,
            grace: Duration::from_secs(5),
            wait: Duration::from_secs(120),
            command: vec!["/app".into(), "serve".into()],
            ..SuperviseArgs::default()
        }
    );
    assert_eq!(web.args, Some(vec!["--port".into(), "8080".into()]));
    assert_eq!(
        mounts(web),
        [
            ("vaultlet-secrets", "/vault/secrets", Some(true)),
            ("vaultlet-bin", "/vaultlet/bin", Some(true))
        ]
    );
    let agent = container(&i.pod, AGENT_CONTAINER);
    assert!(mounts(agent).contains(&("vaultlet-bin", "/vaultlet/bin", None)));
    assert_eq!(i.config.paths.bin_dir, Some("/vaultlet/bin".into()));
    let env: Vec<(&str, bool)> = i
        .config
        .secrets
        .iter()
        .map(|s| (s.name.as_str(), s.env))
        .collect();
    assert_eq!(env, [("db", true), ("tls", false)]);
    let bin = spec(&i.pod)
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == BIN_VOLUME)
        .expect("bin volume");
    let dir = bin.empty_dir.as_ref().expect("emptyDir");
    assert_eq!(dir.medium, None);
}

#[test]
fn pods_without_env_secrets_get_no_supervisor() {
    let pod = mk_pod(basic());
    let i = injected(&pod, &settings());
    assert!(
        !spec(&i.pod)
            .volumes
            .iter()
            .flatten()
            .any(|v| v.name == BIN_VOLUME)
    );
    assert_eq!(i.config.paths.bin_dir, None);
}

#[test]
fn jobs_exit_with_the_app_and_init_only_reads_once() {
    let job = with(env_pod(), "/spec/restartPolicy", json!("Never"));
    let i = injected(&mk_pod(job), &settings());
    assert_eq!(supervised(container(&i.pod, "web")).on_exit, OnExit::Exit);

    let init_only = with(
        env_pod(),
        "/metadata/annotations/vaultlet.io~1mode",
        json!("init-only"),
    );
    let pod = mk_pod(init_only.clone());
    let i = injected(&pod, &settings());
    check_common("env-init-only", &pod, &i);
    let args = supervised(container(&i.pod, "web"));
    assert!(args.once);
    assert_eq!(args.on_change, OnChange::Nothing);
    let init = container(&i.pod, AGENT_INIT_CONTAINER);
    assert!(mounts(init).contains(&("vaultlet-bin", "/vaultlet/bin", None)));

    let err = mutate(
        &mk_pod(with(
            init_only,
            "/metadata/annotations/vaultlet.io~1on-env-change",
            json!("restart"),
        )),
        &settings(),
    )
    .expect_err("denied")
    .to_string();
    assert_eq!(
        err,
        "annotation vaultlet.io/on-env-change: value \"restart\" is invalid: an init-only Pod reads its env files once and never sees a change; remove it or use mode sidecar"
    );
}

#[test]
fn classic_mode_and_a_chosen_signal() {
    let v = with(
        with(
            env_pod(),
            "/metadata/annotations/vaultlet.io~1native-sidecar",
            json!("false"),
        ),
        "/metadata/annotations/vaultlet.io~1on-env-change",
        json!("signal:SIGHUP"),
    );
    let pod = mk_pod(v);
    let i = injected(&pod, &settings());
    check_common("env-classic", &pod, &i);
    assert_eq!(
        supervised(container(&i.pod, "web")).on_change,
        OnChange::Signal("SIGHUP".into())
    );
    for agent in [AGENT_INIT_CONTAINER, AGENT_CONTAINER] {
        assert!(mounts(container(&i.pod, agent)).contains(&(
            "vaultlet-bin",
            "/vaultlet/bin",
            None
        )));
    }
}

#[test]
fn containers_annotation_narrows_the_wrapping() {
    let v = with(
        env_pod(),
        "/metadata/annotations/vaultlet.io~1containers",
        json!("web"),
    );
    let i = injected(&mk_pod(v), &settings());
    assert_eq!(
        container(&i.pod, "side").command,
        Some(vec!["/side".to_owned()])
    );
    assert!(
        container(&i.pod, "web")
            .command
            .as_ref()
            .is_some_and(|c| c[1] == "supervise")
    );
}

#[test]
fn a_container_without_command_is_denied_with_what_to_do() {
    let v = with(
        env_pod(),
        "/spec/containers",
        json!([{"name": "web", "image": "app:1", "args": ["serve"]}]),
    );
    let err = mutate(&mk_pod(v), &settings()).expect_err("denied");
    assert_eq!(err.reason(), "env");
    assert_eq!(
        err.message(),
        "vaultlet: container \"web\" has no command: vaultlet.io/env-db loads secrets into its environment by starting its command through the agent's supervisor, and vaultlet never looks up an image's entrypoint in a registry; set command to the image's entrypoint (args stay as they are), or narrow vaultlet.io/containers"
    );
}

#[test]
fn env_output_is_checked_at_admission() {
    let json_env = with(
        env_pod(),
        "/metadata/annotations/vaultlet.io~1format-db",
        json!("json"),
    );
    assert_eq!(
        mutate(&mk_pod(json_env), &settings())
            .expect_err("denied")
            .to_string(),
        "annotation vaultlet.io/env-db: value \"true\" is invalid: secret \"db\" is rendered as json (vaultlet.io/format-db), but the environment needs KEY=value lines; remove the format annotation or write a template"
    );
    let bad_key = with(
        env_pod(),
        "/metadata/annotations/vaultlet.io~1template-db",
        json!("DB_USER={{username}}\ndb-pass='{{password}}'\n"),
    );
    assert_eq!(
        mutate(&mk_pod(bad_key), &settings())
            .expect_err("denied")
            .to_string(),
        "annotation vaultlet.io/template-db: value (template body not shown) is invalid: secret \"db\" is loaded into the environment (vaultlet.io/env-db), but template line 2 sets \"db-pass\", which is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*); rename it"
    );
    let by_expression = with(
        env_pod(),
        "/metadata/annotations/vaultlet.io~1template-db",
        json!("{{#each this}}{{@key}}='{{this}}'\n{{/each}}"),
    );
    assert!(mutate(&mk_pod(by_expression), &settings()).is_ok());
    let mount_taken = with(
        env_pod(),
        "/spec/containers",
        json!([{"name": "web", "image": "app:1", "command": ["/app"],
                "volumeMounts": [{"name": "x", "mountPath": "/vaultlet/bin"}]}]),
    );
    let err = mutate(&mk_pod(mount_taken), &settings())
        .expect_err("denied")
        .to_string();
    assert!(err.contains("/vaultlet/bin"), "{err}");
}
