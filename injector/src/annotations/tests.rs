//! Unit tests of the annotation parser and its reference table.

use super::*;

fn mk(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn parse_map(pairs: &[(&str, &str)]) -> Result<PodRequest, AnnotationError> {
    parse(&mk(pairs))
}

fn err(pairs: &[(&str, &str)]) -> String {
    parse_map(pairs).expect_err("should be denied").to_string()
}

#[test]
fn every_known_example_parses() {
    for k in KNOWN {
        let mut pairs = vec![("vaultlet.io/secret-x", "secret/data/app")];
        if k.key == "template-language" {
            // A consul-template secret is declared by its template.
            pairs = vec![(
                "vaultlet.io/template-x",
                "{{ with secret \"secret/data/app\" }}{{ .Data.data.x }}{{ end }}",
            )];
        }
        let key = match k.scope {
            Scope::Pod => format!("{PREFIX}{}", k.key),
            Scope::Secret => format!("{PREFIX}{}-x", k.key),
        };
        pairs.push((&key, k.example));
        let map = mk(&pairs);
        assert!(parse(&map).is_ok(), "{key}: {:?}", parse(&map));
    }
}

#[test]
fn full_example() {
    let req = parse_map(&[
        ("vaultlet.io/role", "app"),
        ("vaultlet.io/secret-db", "database/creds/app"),
        ("vaultlet.io/template-db", "postgres://{{username}}@db\n"),
        ("vaultlet.io/file-db", "config/db.url"),
        ("vaultlet.io/perms-db", "0400"),
        (
            "vaultlet.io/secret-cert",
            "pki/issue/web common_name=a.example.com ttl=1h",
        ),
        ("vaultlet.io/params-cert", "alt_names=b.example.com\n"),
        (
            "vaultlet.io/notify",
            "signal:SIGHUP:nginx\nhttp://127.0.0.1:1/r",
        ),
        ("other.io/x", "ignored"),
    ])
    .expect("valid");
    assert_eq!(req.role.as_deref(), Some("app"));
    let db = &req.secrets["db"];
    assert_eq!(db.file.as_deref(), Some("config/db.url"));
    assert_eq!(db.mode, Some(0o400));
    let cert = &req.secrets["cert"];
    assert_eq!(cert.path, "pki/issue/web");
    assert_eq!(cert.params.len(), 3);
    assert_eq!(cert.params["ttl"], "1h");
    assert_eq!(req.notify.len(), 2);
    assert!(req.signals());
}

#[test]
fn denials_name_the_annotation_and_value() {
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            &[("vaultlet.io/rol", "app")],
            "vaultlet.io/rol",
            "not a known",
        ),
        (
            &[("vaultlet.io/mode", "daemon")],
            "vaultlet.io/mode",
            "\"daemon\"",
        ),
        (
            &[("vaultlet.io/native-sidecar", "yes")],
            "vaultlet.io/native-sidecar",
            "\"yes\"",
        ),
        (
            &[("vaultlet.io/refresh-interval", "5x")],
            "vaultlet.io/refresh-interval",
            "\"5x\"",
        ),
        (
            &[("vaultlet.io/auth", "token")],
            "vaultlet.io/auth",
            "\"token\"",
        ),
        (
            &[("vaultlet.io/template-db", "{{x}}")],
            "vaultlet.io/template-db",
            "no vaultlet.io/secret-db",
        ),
        (
            &[
                ("vaultlet.io/secret-db", "kv/a"),
                ("vaultlet.io/file-db", "../etc/passwd"),
            ],
            "vaultlet.io/file-db",
            "\"../etc/passwd\"",
        ),
        (
            &[
                ("vaultlet.io/secret-db", "kv/a"),
                ("vaultlet.io/perms-db", "0999"),
            ],
            "vaultlet.io/perms-db",
            "\"0999\"",
        ),
        (
            &[
                ("vaultlet.io/secret-db", "kv/a"),
                ("vaultlet.io/perms-db", "4755"),
            ],
            "vaultlet.io/perms-db",
            "0777",
        ),
        (
            &[("vaultlet.io/cpu-request", "-1")],
            "vaultlet.io/cpu-request",
            "\"-1\"",
        ),
        (
            &[("vaultlet.io/secret-DB", "kv/a")],
            "vaultlet.io/secret-DB",
            "secret name",
        ),
        (
            &[("vaultlet.io/secret-db", "")],
            "vaultlet.io/secret-db",
            "Vault path",
        ),
        (
            &[("vaultlet.io/secret-db", "kv/a b")],
            "vaultlet.io/secret-db",
            "key=value",
        ),
        (
            &[("vaultlet.io/notify", "signal:SIGKILL:x")],
            "vaultlet.io/notify",
            "unknown signal",
        ),
        (
            &[("vaultlet.io/vault-addr", "vault:8200")],
            "vaultlet.io/vault-addr",
            "https://",
        ),
        (
            &[("vaultlet.io/secrets-dir", "/vault/agent")],
            "vaultlet.io/secrets-dir",
            "/vault/agent is /vault/agent, where the agent keeps its state",
        ),
    ];
    for (pairs, key, needle) in cases {
        let msg = err(pairs);
        assert!(msg.contains(key), "{msg}");
        assert!(msg.contains(needle), "{needle} not in {msg}");
    }
}

#[test]
fn template_bodies_are_not_echoed() {
    let e = parse_map(&[
        ("vaultlet.io/secret-db", "kv/a"),
        ("vaultlet.io/template-db", "  "),
    ])
    .expect_err("empty template");
    assert!(e.to_string().contains("template body not shown"), "{e}");
}

#[test]
fn duplicate_files_are_denied() {
    let msg = err(&[
        ("vaultlet.io/secret-a", "kv/a"),
        ("vaultlet.io/secret-b", "kv/b"),
        ("vaultlet.io/file-b", "a"),
    ]);
    assert!(msg.contains("vaultlet.io/file-b"), "{msg}");
}

#[test]
fn quantities() {
    for good in ["10m", "1", "0.5", "16Mi", "1G", "1e3", "2E-2", ".5"] {
        assert!(parse_quantity(good).is_ok(), "{good}");
    }
    for bad in ["", "-1", "m", "10 m", "1.2.3", "16MB", "+1", "1e", "Mi"] {
        assert!(parse_quantity(bad).is_err(), "{bad}");
    }
}

#[test]
fn perms() {
    assert_eq!(parse_mode("0440"), Ok(0o440));
    assert_eq!(parse_mode("600"), Ok(0o600));
    assert_eq!(parse_mode("0o644"), Ok(0o644));
    for bad in ["", "8", "07777", "rw", "0x1"] {
        assert!(parse_mode(bad).is_err(), "{bad}");
    }
}

#[test]
fn every_pod_key_has_a_parser_arm() {
    for k in KNOWN.iter().filter(|k| k.scope == Scope::Pod) {
        let key = format!("{PREFIX}{}", k.key);
        let result = parse(&mk(&[(&key, k.example)]));
        assert!(
            !matches!(result, Err(AnnotationError::Unknown { .. })),
            "{key} is in KNOWN but the parser does not handle it"
        );
    }
}

#[test]
fn doc_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/annotations.md");
    let want = reference_markdown();
    if std::env::var_os("VAULTLET_WRITE_DOCS").is_some() {
        std::fs::write(path, &want).expect("write docs/annotations.md");
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "docs/annotations.md is stale; regenerate with VAULTLET_WRITE_DOCS=1 cargo test -p vaultlet-injector doc_is_current"
    );
}

#[test]
fn edit_distances() {
    assert_eq!(known::edit_distance("", ""), 0);
    assert_eq!(known::edit_distance("role", "rol"), 1);
    assert_eq!(known::edit_distance("secret", "secrte"), 2);
    assert_eq!(known::edit_distance("kitten", "sitting"), 3);
}

#[test]
fn unknown_annotations_suggest_the_nearest_known_one() {
    for (typo, meant) in [
        ("vaultlet.io/rol", "vaultlet.io/role"),
        ("vaultlet.io/secrt-db", "vaultlet.io/secret-db"),
        ("vaultlet.io/secrets-db", "vaultlet.io/secret-db"),
        ("vaultlet.io/secret_db", "vaultlet.io/secret-db"),
        ("vaultlet.io/templates-db", "vaultlet.io/template-db"),
        (
            "vaultlet.io/refresh-intervall",
            "vaultlet.io/refresh-interval",
        ),
        ("vaultlet.io/nativesidecar", "vaultlet.io/native-sidecar"),
    ] {
        assert_eq!(
            err(&[(typo, "x")]),
            format!(
                "annotation {typo} is not a known vaultlet.io annotation; did you mean {meant}? \
                 See docs/annotations.md for the list"
            ),
        );
    }
    assert_eq!(
        err(&[("vaultlet.io/completely-unrelated", "x")]),
        "annotation vaultlet.io/completely-unrelated is not a known vaultlet.io annotation; \
         see docs/annotations.md for the list"
    );
}

#[test]
fn the_container_list_is_bounded_by_the_containers_a_pod_can_have() {
    let limit = crate::review::bounds::MAX_CONTAINERS;
    let at_limit: Vec<String> = (0..limit).map(|i| format!("c{i}")).collect();
    let value = at_limit.join(",");
    let req = parse_map(&[
        ("vaultlet.io/secret-x", "secret/data/app"),
        ("vaultlet.io/containers", &value),
    ])
    .expect("a name per container is fine");
    assert_eq!(req.containers.as_deref(), Some(&at_limit[..]));
    let one_more = format!("{value},c{limit}");
    let message = err(&[
        ("vaultlet.io/secret-x", "secret/data/app"),
        ("vaultlet.io/containers", &one_more),
    ]);
    assert!(
        message.starts_with("annotation vaultlet.io/containers: value "),
        "{message}"
    );
    assert!(
        message.ends_with(&format!(
            " is invalid: names more than {limit} containers, more than a Pod vaultlet reviews \
             can have"
        )),
        "{message}"
    );
}

#[test]
fn consul_template_secrets_are_declared_by_their_template() {
    let t = "{{ with secret \"database/creds/app\" }}{{ .Data.username }}{{ end }}";
    let req = parse_map(&[
        ("vaultlet.io/template-language", "consul-template"),
        ("vaultlet.io/template-db", t),
        ("vaultlet.io/perms-db", "0644"),
    ])
    .expect("admitted");
    assert_eq!(req.template_language, TemplateLanguage::ConsulTemplate);
    assert_eq!(req.secrets["db"].path, "");
    assert_eq!(req.secrets["db"].template.as_deref(), Some(t));
    assert_eq!(req.secrets["db"].mode, Some(0o644));
}

#[test]
fn consul_template_denials() {
    assert_eq!(
        err(&[
            ("vaultlet.io/template-language", "consul-template"),
            ("vaultlet.io/template-db", "{{ env \"HOME\" }}"),
        ]),
        "annotation vaultlet.io/template-db: value (template body not shown) is invalid: template:1:4: function \"env\" is not supported by vaultlet (the agent's environment is not the application's; put the value in Vault); supported: and, or, not, len, index, slice, print, printf, println, eq, ne, lt, le, gt, ge, html, js, urlquery, secret, secrets, pkiCert, toJSON, toJSONPretty, toUnescapedJSON, toUnescapedJSONPretty, toYAML, toLower, toUpper, toTitle, trimSpace, trim, trimPrefix, trimSuffix, split, join, replaceAll, contains, in, base64Encode, base64Decode, base64URLEncode, base64URLDecode, parseJSON, parseBool, parseInt, parseFloat, parseUint, indent, add, subtract, multiply, divide, modulo, minimum, maximum, loop"
    );
    assert_eq!(
        err(&[
            ("vaultlet.io/template-language", "consul-template"),
            ("vaultlet.io/template-db", "{{ with secret \"a\" }}"),
        ]),
        "annotation vaultlet.io/template-db: value (template body not shown) is invalid: template:1:1: unexpected EOF: {{with}} without {{end}}; fix the template syntax"
    );
    assert_eq!(
        err(&[
            ("vaultlet.io/template-language", "consul-template"),
            ("vaultlet.io/secret-db", "secret/data/db"),
        ]),
        "annotation vaultlet.io/secret-db: value \"secret/data/db\" is invalid: with vaultlet.io/template-language: consul-template the template names the Vault paths it reads, so vaultlet.io/secret-<name> has no meaning; move the path (and its parameters) into the template's secret call and remove vaultlet.io/secret-db"
    );
    assert_eq!(
        err(&[("vaultlet.io/template-language", "go")]),
        "annotation vaultlet.io/template-language: value \"go\" is invalid: expected handlebars or consul-template"
    );
}
