//! Unit tests of the config contract.

use super::*;

fn mk_secret(name: &str, file: &str) -> SecretSpec {
    SecretSpec {
        name: name.into(),
        path: "secret/data/app".into(),
        params: BTreeMap::new(),
        version: None,
        template: None,
        language: TemplateLanguage::Handlebars,
        format: OutputFormat::Env,
        file: file.into(),
        mode: DEFAULT_FILE_MODE,
        group: None,
        notify: vec![],
        env: false,
    }
}

fn mk_config() -> AgentConfig {
    AgentConfig {
        version: CONFIG_VERSION,
        vault: VaultConfig {
            address: "http://127.0.0.1:8200".into(),
            namespace: None,
            ca_cert: None,
            tls_server_name: None,
            client_cert: None,
            client_key: None,
            tls_origin: TlsOrigin::default(),
            redirect_addresses: Vec::new(),
        },
        auth: AuthConfig::Kubernetes {
            role: "app".into(),
            mount_path: "kubernetes".into(),
            token_path: DEFAULT_SA_TOKEN_PATH.into(),
        },
        secrets: vec![mk_secret("db", "db")],
        notify: vec![],
        paths: Paths::default(),
        refresh_interval: Duration::from_secs(60),
        init_deadline: Duration::from_secs(120),
        revoke_on_shutdown: false,
        exit: ExitPolicy::Never,
        log: LogConfig::default(),
        metrics_addr: None,
        handoff: false,
    }
}

#[test]
fn json_round_trip() {
    let mut cfg = mk_config();
    cfg.secrets[0].notify = vec!["signal:HUP:nginx".parse().expect("notify")];
    cfg.refresh_interval = Duration::from_millis(1500);
    let json = cfg.to_json();
    assert!(json.contains(r#""refreshInterval":"1500ms""#), "{json}");
    assert_eq!(AgentConfig::from_json(&json), Ok(cfg));
}

#[test]
fn defaults_fill_in_a_minimal_config() {
    let cfg = AgentConfig::from_json(
        r#"{"version":1,"vault":{"address":"https://vault:8200"},
            "auth":{"method":"approle","roleIdFile":"/r","secretIdFile":"/s"},
            "secrets":[{"name":"db","path":"database/creds/app","file":"db"}]}"#,
    )
    .expect("valid");
    assert_eq!(cfg.paths.secrets_dir, PathBuf::from(DEFAULT_SECRETS_DIR));
    assert_eq!(cfg.secrets[0].mode, 0o440);
    assert_eq!(cfg.refresh_interval, Duration::from_secs(60));
    assert!(
        matches!(cfg.auth, AuthConfig::Approle { ref mount_path, secret_id_wrapped: false, .. } if mount_path == "approle")
    );
}

#[test]
fn rejects_wrong_version_and_unknown_fields() {
    let mut cfg = mk_config();
    cfg.version = 2;
    assert!(matches!(
        cfg.validate(),
        Err(ConfigError::Version { found: 2 })
    ));
    let err = AgentConfig::from_json(r#"{"version":1,"bogus":true}"#).unwrap_err();
    assert!(err.to_string().contains("bogus"), "{err}");
}

#[test]
fn rejects_escaping_files_and_duplicates() {
    for bad in ["../x", "/etc/passwd", "a/../b", "a//b", "..data/x", ""] {
        let mut cfg = mk_config();
        cfg.secrets[0].file = bad.into();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.starts_with("secrets[db].file"), "{bad}: {err}");
    }
    let mut cfg = mk_config();
    cfg.secrets.push(mk_secret("other", "db"));
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("same file")
    );
    let mut cfg = mk_config();
    cfg.secrets.push(mk_secret("db", "db2"));
    assert!(cfg.validate().unwrap_err().to_string().contains("twice"));
}

#[test]
fn modes_as_numbers_or_octal_strings() {
    let json = |mode: &str| {
        format!(
            r#"{{"version":1,"vault":{{"address":"http://v:8200"}},
                "auth":{{"method":"token","tokenFile":"/t"}},
                "secrets":[{{"name":"a","path":"kv/a","file":"a","mode":{mode}}}]}}"#
        )
    };
    for (mode, want) in [("288", 0o440), (r#""0440""#, 0o440), (r#""0o600""#, 0o600)] {
        let cfg = AgentConfig::from_json(&json(mode)).expect(mode);
        assert_eq!(cfg.secrets[0].mode, want, "{mode}");
    }
    for bad in [r#""0999""#, r#""rw""#, r#""""#, r#""01777""#, "512"] {
        assert!(AgentConfig::from_json(&json(bad)).is_err(), "{bad}");
    }
}

#[test]
fn names() {
    for good in ["db", "a", "web-cert", "x1"] {
        assert!(validate_name(good).is_ok(), "{good}");
    }
    for bad in ["", "DB", "-a", "a-", "a_b", "a.b", &"x".repeat(64)] {
        assert!(validate_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn intervals_out_of_bounds_are_config_errors() {
    let mut cfg = mk_config();
    cfg.refresh_interval = Duration::from_secs(100 * 365 * 24 * 3600);
    assert_eq!(
        cfg.validate().unwrap_err().to_string(),
        ConfigError::invalid("refreshInterval", "must be between 100ms and 24h").to_string()
    );
    let mut cfg = mk_config();
    cfg.init_deadline = Duration::MAX;
    assert_eq!(
        cfg.validate().unwrap_err().to_string(),
        ConfigError::invalid("initDeadline", "must be at most 24h").to_string()
    );
    let mut cfg = mk_config();
    cfg.refresh_interval = Duration::from_secs(24 * 3600);
    assert!(cfg.validate().is_ok());
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration(" 2s "), Ok(Duration::from_secs(2)));
    for bad in ["", "5", "s", "5x", "-1s", "1.5s", "99999999999999999999s"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
    for d in [0, 1, 999, 1000, 60_000, 90_000, 3_600_000, 5_400_000] {
        let d = Duration::from_millis(d);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
}

#[test]
fn notify_specs() {
    assert_eq!(
        "signal:SIGHUP:nginx".parse(),
        Ok(NotifySpec::Signal {
            signal: "SIGHUP".into(),
            process: "nginx".into()
        })
    );
    assert_eq!(
        "http://127.0.0.1:8080/-/reload".parse(),
        Ok(NotifySpec::Http {
            url: "http://127.0.0.1:8080/-/reload".into(),
            method: "POST".into()
        })
    );
    assert_eq!(
        "PUT https://app/reload".parse(),
        Ok(NotifySpec::Http {
            url: "https://app/reload".into(),
            method: "PUT".into()
        })
    );
    assert_eq!(
        "exec:/bin/kill -HUP 1".parse(),
        Ok(NotifySpec::Exec {
            command: vec!["/bin/kill".into(), "-HUP".into(), "1".into()]
        })
    );
    for bad in [
        "signal:SIGKILL:x",
        "signal:HUP",
        "signal:HUP:",
        "exec:",
        "ftp://x",
        "DELETE http://x/y",
        "",
    ] {
        assert!(bad.parse::<NotifySpec>().is_err(), "{bad}");
    }
}

#[test]
fn vault_addresses() {
    for good in [
        "http://127.0.0.1:8200",
        "https://vault.svc:8200/",
        "https://v",
    ] {
        assert!(validate_vault_address(good).is_ok(), "{good}");
    }
    for bad in [
        "vault:8200",
        "https://",
        "https://u@v",
        "https://v/x",
        "http://a b",
    ] {
        assert!(validate_vault_address(bad).is_err(), "{bad}");
    }
}

#[test]
fn jwt_and_cert_auth_round_trip_with_their_defaults() {
    let cfg = AgentConfig::from_json(
        r#"{"version":1,"vault":{"address":"https://v:8200"},
            "auth":{"method":"jwt","role":"app"},
            "secrets":[{"name":"db","path":"kv/db","file":"db"}]}"#,
    )
    .expect("jwt config");
    assert_eq!(
        cfg.auth,
        AuthConfig::Jwt {
            role: "app".into(),
            mount_path: "jwt".into(),
            token_path: DEFAULT_SA_TOKEN_PATH.into(),
        }
    );
    let mut cfg = mk_config();
    cfg.vault.address = "https://v:8200".into();
    cfg.vault.client_cert = Some(tls_client_cert_file());
    cfg.vault.client_key = Some(tls_client_key_file());
    cfg.vault.tls_origin.client_cert = Some("annotation vaultlet.io/tls-client-secret".into());
    cfg.auth = AuthConfig::Cert {
        role: None,
        mount_path: "cert".into(),
    };
    let json = cfg.to_json();
    assert!(
        json.contains(r#""auth":{"method":"cert","mountPath":"cert"}"#),
        "{json}"
    );
    assert_eq!(AgentConfig::from_json(&json), Ok(cfg));
}

#[test]
fn cert_auth_needs_a_client_certificate_and_https() {
    let mut cfg = mk_config();
    cfg.auth = AuthConfig::Cert {
        role: Some("web".into()),
        mount_path: "cert".into(),
    };
    assert_eq!(
        cfg.validate().unwrap_err().to_string(),
        "auth.method: cert auth logs in with the TLS client certificate; set vault.clientCert and vault.clientKey"
    );
    cfg.vault.client_cert = Some("/c".into());
    cfg.vault.client_key = Some("/k".into());
    assert_eq!(
        cfg.validate().unwrap_err().to_string(),
        "vault.address: cert auth needs mutual TLS, so an https:// address"
    );
    cfg.vault.address = "https://v:8200".into();
    assert_eq!(cfg.validate(), Ok(()));
    cfg.auth = AuthConfig::Jwt {
        role: " ".into(),
        mount_path: "jwt".into(),
        token_path: "/t".into(),
    };
    assert_eq!(
        cfg.validate().unwrap_err().to_string(),
        "auth.role: jwt auth needs a Vault role"
    );
}

#[test]
fn redirect_addresses_share_the_scheme_and_default_to_empty() {
    let mut cfg = mk_config();
    assert!(cfg.vault.redirect_addresses.is_empty());
    assert!(!cfg.to_json().contains("redirectAddresses"));
    cfg.vault.address = "https://vault.vault.svc:8200".into();
    cfg.vault.redirect_addresses = vec!["https://vault-1.vault-internal:8200".into()];
    assert_eq!(cfg.validate(), Ok(()));
    assert_eq!(AgentConfig::from_json(&cfg.to_json()), Ok(cfg.clone()));
    cfg.vault.redirect_addresses = vec!["http://vault-1.vault-internal:8200".into()];
    assert_eq!(
        cfg.validate().map_err(|e| e.to_string()),
        Err("vault.redirectAddresses: \"http://vault-1.vault-internal:8200\" must use the scheme of vault.address (https); a redirect never downgrades https to http".into())
    );
    cfg.vault.redirect_addresses = vec!["https://vault-1/v1/x".into()];
    assert!(cfg.validate().is_err());
}

#[test]
fn vault_paths_with_escapes_are_refused() {
    let msg = "must not contain '%' or '\\': Vault would decode them into other paths; write the path plainly, as in secret/data/app";
    for p in [
        "secret/data/a%2F..%2Fb",
        "secret/data/a%20b",
        "secret\\data\\app",
    ] {
        assert_eq!(validate_vault_path(p), Err(msg.to_owned()), "{p}");
    }
    let mut cfg = mk_config();
    cfg.secrets[0].path = "secret/data/%2e%2e/admin".into();
    assert_eq!(
        cfg.validate().map_err(|e| e.to_string()),
        Err(format!("secrets[{}].path: {msg}", cfg.secrets[0].name))
    );
}

#[test]
fn a_consul_template_secret_needs_its_template_not_a_path() {
    let mut c = mk_config();
    c.secrets = vec![mk_secret("web", "web.conf")];
    c.secrets[0].language = TemplateLanguage::ConsulTemplate;
    c.secrets[0].path = String::new();
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("secrets[web].template"), "{err}");
    c.secrets[0].template =
        Some("{{ with secret \"secret/app\" }}{{ .Data.data.password }}{{ end }}".into());
    c.validate().expect("no path needed");
    let json = serde_json::to_value(&c.secrets[0]).expect("json");
    assert_eq!(json["language"], "consul-template");
    assert_eq!(json["path"], "");
    // Handlebars stays the default, left out of the serialised config.
    let json = serde_json::to_value(mk_secret("db", "db")).expect("json");
    assert!(json.get("language").is_none());
    assert_eq!(
        "consul-template".parse(),
        Ok(TemplateLanguage::ConsulTemplate)
    );
}
