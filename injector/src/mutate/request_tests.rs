//! Tests of what a Pod's annotations ask for beyond the layout: auth overrides, the
//! containers that get the secrets, the Vault address allowlist, resources, Pods skipped or
//! denied, the agent's metrics port.

use super::*;

#[test]
fn approle_and_overrides() {
    let mut v = basic();
    let a = v["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations");
    for (k, val) in [
        ("vaultlet.io/auth", "approle"),
        ("vaultlet.io/approle-secret", "app-approle"),
        ("vaultlet.io/approle-secret-id-wrapped", "true"),
        ("vaultlet.io/cpu-request", "50m"),
        ("vaultlet.io/memory-limit", "128Mi"),
        ("vaultlet.io/secrets-volume-size", "1Mi"),
        ("vaultlet.io/secrets-dir", "/etc/app/secrets/"),
        ("vaultlet.io/refresh-interval", "5s"),
        ("vaultlet.io/init-deadline", "30s"),
        ("vaultlet.io/vault-namespace", "team-a"),
        ("vaultlet.io/file-db", "config/db.url"),
        ("vaultlet.io/perms-db", "0400"),
        (
            "vaultlet.io/secret-cert",
            "pki/issue/web common_name=web.example.com",
        ),
        ("vaultlet.io/format-cert", "json"),
    ] {
        a.insert(k.into(), json!(val));
    }
    let pod = mk_pod(v);
    let i = injected(&pod, &settings());
    check_common("approle-overrides", &pod, &i);
    assert!(matches!(
        i.config.auth,
        AuthConfig::Approle { ref mount_path, secret_id_wrapped: true, .. } if mount_path == "approle"
    ));
    let vols: Vec<_> = spec(&i.pod)
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert!(
        vols.contains(&APPROLE_VOLUME) && !vols.contains(&SA_TOKEN_VOLUME),
        "{vols:?}"
    );
    let agent = container(&i.pod, AGENT_CONTAINER);
    let res = agent.resources.clone().expect("resources");
    assert_eq!(res.requests.expect("req")["cpu"].0, "50m");
    assert_eq!(res.limits.expect("lim")["memory"].0, "128Mi");
    assert_eq!(
        post_start(agent),
        ["/vaultlet-agent", "probe", "--wait", "30s"]
    );
    let app_mount = container(&i.pod, "web")
        .volume_mounts
        .clone()
        .expect("mounts");
    assert_eq!(app_mount[0].mount_path, "/etc/app/secrets");
    assert_eq!(i.config.refresh_interval, Duration::from_secs(5));
    assert_eq!(i.config.vault.namespace.as_deref(), Some("team-a"));
    let db = i
        .config
        .secrets
        .iter()
        .find(|s| s.name == "db")
        .expect("db");
    assert_eq!((db.file.as_str(), db.mode), ("config/db.url", 0o400));
    let cert = i
        .config
        .secrets
        .iter()
        .find(|s| s.name == "cert")
        .expect("cert");
    assert_eq!(cert.params["common_name"], "web.example.com");
}

#[test]
fn containers_annotation_limits_the_mount() {
    let v = with(
        annotated("vaultlet.io/containers", "worker"),
        "/spec/containers",
        json!([{"name": "web", "image": "nginx"}, {"name": "worker", "image": "busybox"}]),
    );
    let pod = mk_pod(v);
    let i = injected(&pod, &settings());
    check_common("containers-annotation", &pod, &i);
    assert!(!mounts_secrets(container(&i.pod, "web")));
    assert!(mounts_secrets(container(&i.pod, "worker")));
}

#[test]
fn vault_addr_allowlist() {
    let pod = mk_pod(annotated(
        "vaultlet.io/vault-addr",
        "https://evil.example:8200",
    ));
    let err = mutate(&pod, &settings())
        .expect_err("not allowed")
        .to_string();
    assert!(
        err.contains("vaultlet.io/vault-addr") && err.contains("evil.example"),
        "{err}"
    );
    let mut s = settings();
    s.vault.allowed_vault_addrs = vec!["https://vault.team-a.svc:8200".into()];
    let pod = mk_pod(annotated(
        "vaultlet.io/vault-addr",
        "https://vault.team-a.svc:8200",
    ));
    assert_eq!(
        injected(&pod, &s).config.vault.address,
        "https://vault.team-a.svc:8200"
    );
}

#[test]
fn quantities_compare_by_value() {
    for (a, b) in [
        ("100m", "1"),
        ("16Mi", "64Mi"),
        ("1G", "1Gi"),
        ("500M", "1G"),
        ("1e3", "2k"),
    ] {
        let (a, b) = (
            annotations::quantity_value(a).expect(a),
            annotations::quantity_value(b).expect(b),
        );
        assert!(a < b, "{a} < {b}");
    }
    // A request equal to its limit is fine.
    let v = with(
        annotated("vaultlet.io/memory-request", "64Mi"),
        "/metadata/annotations/vaultlet.io~1cpu-limit",
        json!("10m"),
    );
    assert!(mutate(&mk_pod(v), &settings()).is_ok());
}

#[test]
fn skipped_pods() {
    let cases: &[(&str, serde_json::Value, Skip)] = &[
        (
            "no opt-in",
            with(basic(), "/metadata/labels", json!({"app": "web"})),
            Skip::NotOptedIn,
        ),
        (
            "label false",
            with(
                basic(),
                "/metadata/labels",
                json!({"vaultlet.io/inject": "false"}),
            ),
            Skip::NotOptedIn,
        ),
        (
            "running",
            with(basic(), "/status", json!({"phase": "Running"})),
            Skip::NotPending,
        ),
        (
            "injected",
            annotated("vaultlet.io/status", "injected"),
            Skip::AlreadyInjected,
        ),
    ];
    for (name, v, want) in cases {
        match mutate(&mk_pod(v.clone()), &settings()) {
            Ok(Outcome::Skipped(got)) => assert_eq!(got, *want, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn denied_pods() {
    let no_role = {
        let mut v = basic();
        v["metadata"]["annotations"]
            .as_object_mut()
            .expect("a")
            .remove("vaultlet.io/role");
        v
    };
    let no_secret = {
        let mut v = basic();
        let a = v["metadata"]["annotations"].as_object_mut().expect("a");
        a.remove("vaultlet.io/secret-db");
        a.remove("vaultlet.io/template-db");
        v
    };
    let cases: &[(&str, serde_json::Value, &str)] = &[
        ("no role", no_role, "vaultlet.io/role"),
        ("no secret", no_secret, "no secret"),
        (
            "approle without secret",
            annotated("vaultlet.io/auth", "approle"),
            "vaultlet.io/approle-secret",
        ),
        (
            "unknown container",
            annotated("vaultlet.io/containers", "nope"),
            "\"nope\"",
        ),
        (
            "typo",
            annotated("vaultlet.io/secert-db", "kv/a"),
            "vaultlet.io/secert-db",
        ),
        (
            "escaping file",
            annotated("vaultlet.io/file-db", "../../etc/shadow"),
            "vaultlet.io/file-db",
        ),
        (
            "bad inject",
            annotated("vaultlet.io/inject", "yes"),
            "vaultlet.io/inject",
        ),
        (
            "volume conflict",
            with(
                basic(),
                "/spec/volumes",
                json!([{"name": "vaultlet-secrets", "emptyDir": {}}]),
            ),
            "vaultlet-secrets",
        ),
        (
            "mount conflict",
            with(
                basic(),
                "/spec/containers",
                json!([{"name": "web", "image": "nginx",
                        "volumeMounts": [{"name": "x", "mountPath": "/vault/secrets"}]}]),
            ),
            "vaultlet.io/secrets-dir",
        ),
    ];
    for (name, v, needle) in cases {
        let err = mutate(&mk_pod(v.clone()), &settings())
            .expect_err(name)
            .to_string();
        assert!(err.contains(needle), "{name}: {err}");
    }
}

#[test]
fn metrics_port_annotation_serves_metrics_from_the_running_agent() {
    use k8s_openapi::api::core::v1::ContainerPort;
    let pod = mk_pod(annotated("vaultlet.io/metrics-port", "9102"));
    let i = injected(&pod, &settings());
    assert_eq!(i.config.metrics_addr.as_deref(), Some("0.0.0.0:9102"));
    let agent = spec(&i.pod)
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == AGENT_CONTAINER)
        .expect("native sidecar");
    assert_eq!(
        agent.ports,
        Some(vec![ContainerPort {
            name: Some("vaultlet-metrics".into()),
            container_port: 9102,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }])
    );
    emit_for_validation("metrics-port", &i.pod);

    let mut classic = settings();
    classic.agent.native_sidecars = false;
    let i = injected(&pod, &classic);
    assert_eq!(container(&i.pod, AGENT_CONTAINER).ports, agent.ports);
    let init = spec(&i.pod)
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == AGENT_INIT_CONTAINER)
        .expect("init agent");
    assert_eq!(init.ports, None, "init serves no metrics");

    let bad = mk_pod(annotated("vaultlet.io/metrics-port", "80"));
    assert_eq!(
        mutate(&bad, &settings()).expect_err("low port").to_string(),
        "annotation vaultlet.io/metrics-port: value \"80\" is invalid: expected a port number between 1024 and 65535"
    );
    let mut init_only = annotated("vaultlet.io/metrics-port", "9102");
    init_only["metadata"]["annotations"]["vaultlet.io/mode"] = json!("init-only");
    assert_eq!(
        mutate(&mk_pod(init_only), &settings())
            .expect_err("init-only")
            .to_string(),
        "annotation vaultlet.io/metrics-port: value \"9102\" is invalid: an init-only agent exits after rendering and serves no metrics; remove it or use mode sidecar"
    );
}
