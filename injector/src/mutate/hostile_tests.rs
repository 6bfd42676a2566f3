//! A hostile Pod author: Vault reached through the Pod's own name resolution or trust, the
//! injected volumes mounted by app containers, agent paths under `secrets-dir`, and control
//! characters in what the Pod names. Each case is denied with the exact message asserted.

use super::*;

/// The message a Pod is denied with (as the API client sees it).
fn denial(v: serde_json::Value, s: &Settings) -> String {
    match mutate(&mk_pod(v), s) {
        Err(d) => d.message(),
        Ok(o) => panic!("expected a denial, got {o:?}"),
    }
}

fn admitted(v: serde_json::Value, s: &Settings) -> Injection {
    injected(&mk_pod(v), s)
}

/// `basic()` with extra annotations.
fn annotations(pairs: &[(&str, &str)]) -> serde_json::Value {
    let mut v = basic();
    for (k, val) in pairs {
        v["metadata"]["annotations"][*k] = json!(val);
    }
    v
}

fn team_a() -> Settings {
    let mut s = settings();
    s.vault.allowed_vault_addrs = vec![
        "https://vault.team-a.svc:8200".into(),
        "http://vault-dev.team-a.svc:8200".into(),
        "http://10.0.0.7:8200".into(),
    ];
    s
}

#[test]
fn host_aliases_never_name_the_vault_host() {
    let aliases = json!([
        {"ip": "10.1.1.1", "hostnames": ["cache.local"]},
        {"ip": "10.6.6.6", "hostnames": ["db.local", "Vault.Vault.svc."]}
    ]);
    assert_eq!(
        denial(
            with(basic(), "/spec/hostAliases", aliases.clone()),
            &settings()
        ),
        "vaultlet: spec.hostAliases[1].hostnames[1] is \"Vault.Vault.svc.\", the host of the \
         Vault address https://vault.vault.svc:8200: the Pod must not choose where its agent \
         finds Vault; remove \"Vault.Vault.svc.\" from spec.hostAliases"
    );
    // The same for an allowlisted address the Pod picks, even over https with the
    // operator's trust.
    let picked = annotations(&[("vaultlet.io/vault-addr", "https://vault.team-a.svc:8200")]);
    let aliases = json!([{"ip": "10.6.6.6", "hostnames": ["vault.team-a.svc"]}]);
    let err = mutate(
        &mk_pod(with(picked, "/spec/hostAliases", aliases)),
        &team_a(),
    )
    .expect_err("denied");
    assert_eq!(err.reason(), "vault_reach");
    assert_eq!(
        err.message(),
        "vaultlet: spec.hostAliases[0].hostnames[0] is \"vault.team-a.svc\", the host of the \
         Vault address https://vault.team-a.svc:8200: the Pod must not choose where its agent \
         finds Vault; remove \"vault.team-a.svc\" from spec.hostAliases"
    );
    // Aliases for other hosts are the Pod's business.
    let other = json!([{"ip": "10.1.1.1", "hostnames": ["cache.local"]}]);
    admitted(with(basic(), "/spec/hostAliases", other), &settings());
}

#[test]
fn own_resolvers_with_plain_http_are_denied() {
    let http = annotations(&[("vaultlet.io/vault-addr", "http://vault-dev.team-a.svc:8200")]);
    let none = with(
        with(http.clone(), "/spec/dnsPolicy", json!("None")),
        "/spec/dnsConfig",
        json!({"nameservers": ["10.6.6.6"]}),
    );
    assert_eq!(
        denial(none, &team_a()),
        "vaultlet: spec.dnsPolicy: None lets the Pod choose where \"vault-dev.team-a.svc\", the \
         host of the Vault address http://vault-dev.team-a.svc:8200, resolves, and the address \
         is plain HTTP, so the agent cannot tell Vault from another server; remove \
         spec.dnsPolicy: None or use an https:// Vault address"
    );
    for (dns, field) in [
        (
            json!({"nameservers": ["10.6.6.6"]}),
            "spec.dnsConfig.nameservers",
        ),
        (
            json!({"searches": ["evil.example"]}),
            "spec.dnsConfig.searches",
        ),
        (
            json!({"options": [{"name": "ndots", "value": "1"}]}),
            "spec.dnsConfig.options ndots",
        ),
    ] {
        assert_eq!(
            denial(with(http.clone(), "/spec/dnsConfig", dns), &team_a()),
            format!(
                "vaultlet: {field} lets the Pod choose where \"vault-dev.team-a.svc\", the host \
                 of the Vault address http://vault-dev.team-a.svc:8200, resolves, and the \
                 address is plain HTTP, so the agent cannot tell Vault from another server; \
                 remove {field} or use an https:// Vault address"
            )
        );
    }
    // Options that do not change which name is asked for are fine; so is an IP address.
    let edns = json!({"options": [{"name": "edns0"}]});
    admitted(with(http, "/spec/dnsConfig", edns), &team_a());
    let ip = annotations(&[("vaultlet.io/vault-addr", "http://10.0.0.7:8200")]);
    let none = with(
        with(ip, "/spec/dnsPolicy", json!("None")),
        "/spec/dnsConfig",
        json!({"nameservers": ["10.6.6.6"]}),
    );
    admitted(none, &team_a());
}

#[test]
fn own_resolvers_with_the_operators_trust_are_fine() {
    // https verified against the operator's CA or the system roots: a server elsewhere fails
    // the handshake, so the Pod's DNS settings cannot hand it the token.
    let dns = json!({"options": [{"name": "ndots", "value": "2"}], "searches": ["corp.example"]});
    admitted(with(basic(), "/spec/dnsConfig", dns), &settings());
}

#[test]
fn own_resolvers_with_the_pods_own_ca_are_denied() {
    let v = annotations(&[("vaultlet.io/tls-ca-secret", "my-ca")]);
    let v = with(v, "/spec/dnsConfig", json!({"nameservers": ["10.6.6.6"]}));
    assert_eq!(
        denial(v, &settings()),
        "vaultlet: spec.dnsConfig.nameservers lets the Pod choose where \"vault.vault.svc\", the \
         host of the Vault address https://vault.vault.svc:8200, resolves, and the agent \
         verifies Vault with the Pod's own vaultlet.io/tls-ca-secret; remove \
         spec.dnsConfig.nameservers or remove vaultlet.io/tls-ca-secret"
    );
    // An absolute name never goes through the search list.
    let mut s = settings();
    s.vault.vault_addr = "https://vault.vault.svc.cluster.local.:8200".into();
    let v = annotations(&[("vaultlet.io/tls-server-name", "vault.internal")]);
    admitted(
        with(v, "/spec/dnsConfig", json!({"searches": ["corp.example"]})),
        &s,
    );
}

#[test]
fn pod_chosen_trust_for_an_allowlisted_address_needs_the_operator() {
    for (key, value) in [
        ("vaultlet.io/tls-ca-secret", "my-ca"),
        ("vaultlet.io/tls-ca-configmap", "my-ca"),
        ("vaultlet.io/tls-server-name", "vault.evil.example"),
    ] {
        let v = annotations(&[
            ("vaultlet.io/vault-addr", "https://vault.team-a.svc:8200"),
            (key, value),
        ]);
        assert_eq!(
            denial(v.clone(), &team_a()),
            format!(
                "vaultlet: annotation {key}: value \"{value}\" is invalid: the operator does not \
                 let Pods choose how the agent verifies the Vault address \
                 https://vault.team-a.svc:8200 (it is not in --pod-tls-vault-addrs, chart value \
                 injector.podTlsVaultAddrs); remove the annotation (the agent then trusts the \
                 injector's --vault-ca-configmap or the system roots), or ask the platform team \
                 to allow it for this address"
            )
        );
        let mut s = team_a();
        s.vault.pod_tls_vault_addrs = vec!["https://VAULT.team-a.svc:8200/".into()];
        admitted(v, &s);
    }
    // The default address: allowed unless the operator turns it off.
    let v = annotations(&[("vaultlet.io/tls-ca-secret", "my-ca")]);
    admitted(v.clone(), &settings());
    let mut s = settings();
    s.vault.pod_tls_default_addr = false;
    assert_eq!(
        denial(v, &s),
        "vaultlet: annotation vaultlet.io/tls-ca-secret: value \"my-ca\" is invalid: the \
         operator does not let Pods choose how the agent verifies the Vault address \
         https://vault.vault.svc:8200 (--pod-tls-default-addr=false, chart value \
         injector.podTlsDefaultAddr); remove the annotation (the agent then trusts the \
         injector's --vault-ca-configmap or the system roots), or ask the platform team to \
         allow it for this address"
    );
}

#[test]
fn a_server_name_on_plain_http_is_denied() {
    let v = annotations(&[
        ("vaultlet.io/vault-addr", "http://vault-dev.team-a.svc:8200"),
        ("vaultlet.io/tls-server-name", "vault.team-a.svc"),
    ]);
    assert_eq!(
        denial(v, &team_a()),
        "vaultlet: annotation vaultlet.io/tls-server-name: value \"vault.team-a.svc\" is \
         invalid: the Vault address http://vault-dev.team-a.svc:8200 is plain HTTP, so no TLS \
         setting applies; use an https:// address (vaultlet.io/vault-addr) or remove the \
         annotation"
    );
}

#[test]
fn pod_tls_settings_must_name_allowed_https_addresses() {
    let mut s = team_a();
    s.vault.pod_tls_vault_addrs = vec!["https://vault.team-b.svc:8200".into()];
    assert_eq!(
        s.validate().expect_err("not allowlisted").to_string(),
        "--pod-tls-vault-addrs: https://vault.team-b.svc:8200 is neither --vault-addr nor in \
         --allowed-vault-addrs; add it there first"
    );
    s.vault.pod_tls_vault_addrs = vec!["http://vault-dev.team-a.svc:8200".into()];
    assert_eq!(
        s.validate().expect_err("http").to_string(),
        "--pod-tls-vault-addrs: http://vault-dev.team-a.svc:8200 is plain HTTP, where no CA or \
         server name applies; list https:// addresses only"
    );
    s.vault.pod_tls_vault_addrs = vec![String::new(), "https://vault.team-a.svc:8200".into()];
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn app_containers_cannot_mount_the_injected_volumes() {
    let app = |mounts: serde_json::Value| json!([{"name": "web", "image": "nginx", "volumeMounts": mounts}]);
    for volume in [
        STATE_VOLUME,
        SA_TOKEN_VOLUME,
        BIN_VOLUME,
        "vaultlet-tls-ca",
        "vaultlet-tls-client",
        APPROLE_VOLUME,
        CA_VOLUME,
        SECRETS_VOLUME,
    ] {
        let mounts = json!([{"name": volume, "mountPath": "/steal"}]);
        assert_eq!(
            denial(with(basic(), "/spec/containers", app(mounts)), &settings()),
            format!(
                "vaultlet: container \"web\" lists volume \"{volume}\" in volumeMounts: volumes \
                 named vaultlet-* are the injector's, and app containers get only \
                 vaultlet-secrets, read-only at the secrets directory, from the injector itself; \
                 remove it from volumeMounts (to give this container the secrets, name it in \
                 vaultlet.io/containers)"
            )
        );
    }
    // Init containers (before or after the agent), devices and ephemeral containers too.
    let init = json!([{"name": "setup", "image": "busybox",
                       "volumeMounts": [{"name": "vaultlet-state", "mountPath": "/s"}]}]);
    assert_eq!(
        denial(with(basic(), "/spec/initContainers", init), &settings()),
        "vaultlet: init container \"setup\" lists volume \"vaultlet-state\" in volumeMounts: \
         volumes named vaultlet-* are the injector's, and app containers get only \
         vaultlet-secrets, read-only at the secrets directory, from the injector itself; remove \
         it from volumeMounts (to give this container the secrets, name it in \
         vaultlet.io/containers)"
    );
    let device = app(json!([]));
    let mut device = with(basic(), "/spec/containers", device);
    device["spec"]["containers"][0]["volumeDevices"] =
        json!([{"name": "vaultlet-sa-token", "devicePath": "/dev/t"}]);
    assert!(denial(device, &settings()).starts_with(
        "vaultlet: container \"web\" lists volume \"vaultlet-sa-token\" in volumeDevices:"
    ));
    let debug = json!([{"name": "debug", "image": "busybox",
                        "volumeMounts": [{"name": "vaultlet-sa-token", "mountPath": "/t"}]}]);
    assert!(
        denial(
            with(basic(), "/spec/ephemeralContainers", debug),
            &settings()
        )
        .starts_with(
            "vaultlet: ephemeral container \"debug\" lists volume \"vaultlet-sa-token\" in \
             volumeMounts:"
        )
    );
    assert_eq!(
        denial(
            with(
                basic(),
                "/spec/volumes",
                json!([{"name": "vaultlet-state", "emptyDir": {}}])
            ),
            &settings()
        ),
        "vaultlet: the Pod already declares a volume named \"vaultlet-state\"; names starting \
         with vaultlet- are reserved for the volumes the injector adds: rename it"
    );
}

#[test]
fn after_injection_apps_hold_only_the_secrets_and_the_supervisor_read_only() {
    let mut v = annotations(&[
        ("vaultlet.io/env-db", "true"),
        ("vaultlet.io/tls-ca-secret", "ca"),
        ("vaultlet.io/tls-client-secret", "client"),
        ("vaultlet.io/native-sidecar", "false"),
    ]);
    v["metadata"]["annotations"]["vaultlet.io/template-db"] = json!("A={{a}}\n");
    v["spec"]["containers"][0]["command"] = json!(["nginx"]);
    v["spec"]["initContainers"] = json!([{"name": "migrate", "image": "m", "command": ["m"]}]);
    let i = admitted(v, &settings());
    let spec = spec(&i.pod);
    let apps = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .filter(|c| c.name != AGENT_CONTAINER && c.name != AGENT_INIT_CONTAINER);
    for c in apps {
        for m in c.volume_mounts.iter().flatten() {
            assert!(
                [SECRETS_VOLUME, BIN_VOLUME].contains(&m.name.as_str())
                    && m.read_only == Some(true),
                "{}: {m:?}",
                c.name
            );
        }
    }
}

#[test]
fn secrets_dir_never_overlaps_an_agent_path() {
    let all = "/vault/agent, /var/run/secrets, /vault/approle, /vault/ca, /vault/tls, \
               /vaultlet/bin, /vaultlet-agent";
    for (dir, relation, path, what) in [
        (
            "/vault",
            "contains",
            "/vault/agent",
            "where the agent keeps its state and token hand-off",
        ),
        (
            "/vault/agent/",
            "is",
            "/vault/agent",
            "where the agent keeps its state and token hand-off",
        ),
        (
            "/vault/agent/x",
            "lies inside",
            "/vault/agent",
            "where the agent keeps its state and token hand-off",
        ),
        (
            "/var/run",
            "contains",
            "/var/run/secrets",
            "where the service-account tokens are mounted",
        ),
        (
            "/var/run/secrets/vaultlet.io",
            "lies inside",
            "/var/run/secrets",
            "where the service-account tokens are mounted",
        ),
        (
            "/vault/approle/x",
            "lies inside",
            "/vault/approle",
            "where the AppRole credentials are mounted",
        ),
        (
            "/vault/ca/x",
            "lies inside",
            "/vault/ca",
            "where the injector's Vault CA is mounted",
        ),
        (
            "/vault/tls/x",
            "lies inside",
            "/vault/tls",
            "where the Pod's Vault CA and client certificate are mounted",
        ),
        (
            "/vaultlet",
            "contains",
            "/vaultlet/bin",
            "where the agent copies itself for the env supervisor",
        ),
        (
            "/vaultlet-agent",
            "is",
            "/vaultlet-agent",
            "the agent binary",
        ),
    ] {
        assert_eq!(
            denial(
                annotations(&[("vaultlet.io/secrets-dir", dir)]),
                &settings()
            ),
            format!(
                "vaultlet: annotation vaultlet.io/secrets-dir: value \"{dir}\" is invalid: {} \
                 {relation} {path}, {what}; the secrets directory must neither be, contain nor \
                 lie inside an agent path ({all}): choose another, e.g. /vault/secrets",
                dir.trim_end_matches('/')
            )
        );
    }
    for dir in [
        "/vault/secrets",
        "/etc/app/secrets",
        "/var/run/secrets-app",
        "/vaultlet-data",
    ] {
        admitted(
            annotations(&[("vaultlet.io/secrets-dir", dir)]),
            &settings(),
        );
    }
}

#[test]
fn control_characters_never_reach_a_message() {
    let mut v = basic();
    v["metadata"]["annotations"]["vaultlet.io/secret-db\nINFO forged"] = json!("kv/x");
    assert_eq!(
        denial(v, &settings()),
        "vaultlet: annotation \"vaultlet.io/secret-db\\nINFO forged\": value \"kv/x\" is \
         invalid: secret name \"db\\nINFO forged\" must be 1-63 lowercase letters, digits or \
         '-', not starting or ending with '-'"
    );
    let mut v = basic();
    v["metadata"]["annotations"]["vaultlet.io/rol\u{1b}[2Ke"] = json!("x");
    assert_eq!(
        denial(v, &settings()),
        "vaultlet: annotation \"vaultlet.io/rol\\u{1b}[2Ke\" is not a known vaultlet.io \
         annotation; see docs/annotations.md for the list"
    );
    let mut v = basic();
    v["metadata"]["annotations"]["vaultlet.io/perms-api\r\nx"] = json!("0400");
    assert!(!denial(v, &settings()).contains(['\r', '\n']));
    // Container and volume names are quoted.
    let c = json!([{"name": "web\nINFO forged", "image": "nginx",
                    "volumeMounts": [{"name": "vaultlet-state\n", "mountPath": "/s"}]}]);
    assert_eq!(
        denial(with(basic(), "/spec/containers", c), &settings()),
        "vaultlet: container \"web\\nINFO forged\" lists volume \"vaultlet-state\\n\" in \
         volumeMounts: volumes named vaultlet-* are the injector's, and app containers get only \
         vaultlet-secrets, read-only at the secrets directory, from the injector itself; remove \
         it from volumeMounts (to give this container the secrets, name it in \
         vaultlet.io/containers)"
    );
    // A file name with an escape sequence is refused.
    assert_eq!(
        denial(
            annotations(&[("vaultlet.io/file-db", "db\u{1b}[31m")]),
            &settings()
        ),
        "vaultlet: annotation vaultlet.io/file-db: value \"db\\u{1b}[31m\" is invalid: must not \
         contain control characters"
    );
}

mod arbitrary {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

        /// Whatever a Pod names, a denial is one line of printable text.
        #[test]
        fn denials_hold_no_control_characters(
            key in "vaultlet\\.io/(secret-|file-|perms-|notify-|containers|)[\\PC\\n\\r\\t\\x1b\\u{2028}]{0,12}",
            value in "[\\PC\\n\\r\\x1b]{0,20}",
            container in "[a-z\\n\\x1b]{1,8}",
        ) {
            let mut v = basic();
            v["metadata"]["annotations"][key.as_str()] = json!(value);
            v["spec"]["containers"][0]["name"] = json!(container);
            if let Err(d) = mutate(&mk_pod(v), &settings()) {
                let m = d.message();
                prop_assert!(
                    !m.contains(|c: char| c.is_control() || c == '\u{2028}'),
                    "{m:?}"
                );
            }
        }
    }
}

#[test]
fn the_pods_own_hostname_never_names_the_vault_host() {
    let mut s = team_a();
    s.vault.vault_addr = "http://vault:8200".into();
    let named = with(basic(), "/metadata/name", json!("Vault"));
    assert_eq!(
        denial(named, &s),
        "vaultlet: the Pod's metadata.name \"Vault\" names the host of the Vault address \
         http://vault:8200, and the kubelet maps it to the Pod's own address in /etc/hosts, so \
         the agent would talk to the Pod instead of Vault; give the Pod another hostname"
    );
    let mut s = team_a();
    let fqdn = "https://vault.db.default.svc.cluster.local:8200";
    s.vault.allowed_vault_addrs.push(fqdn.into());
    let v = annotations(&[("vaultlet.io/vault-addr", fqdn)]);
    let v = with(
        with(v, "/spec/hostname", json!("vault")),
        "/spec/subdomain",
        json!("db"),
    );
    assert_eq!(
        denial(v.clone(), &s),
        "vaultlet: the Pod's spec.hostname \"vault\" with spec.subdomain \"db\" names the host \
         of the Vault address https://vault.db.default.svc.cluster.local:8200, and the kubelet \
         maps it to the Pod's own address in /etc/hosts, so the agent would talk to the Pod \
         instead of Vault; change spec.hostname or spec.subdomain"
    );
    // In another namespace the same hostname and subdomain are another name.
    admitted(with(v, "/metadata/namespace", json!("shop")), &s);
    // A hostname that is not the Vault host is the Pod's business.
    admitted(with(basic(), "/spec/hostname", json!("vault")), &settings());
}
