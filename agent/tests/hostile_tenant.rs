//! What a tenant controls (keys in Vault data, paths, links in the volume) cannot set code
//! loading variables, escape the secrets dir, or forge a log line. Library level, no Vault.

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};

use serde_json::{Map, Value, json};
use vaultlet_agent::client::ClientError;
use vaultlet_agent::config::{OutputFormat, SecretSpec, validate_vault_path};
use vaultlet_agent::render::{Renderer, default_format};
use vaultlet_agent::write::write_atomic;

fn mk_spec(name: &str, template: Option<&str>, env: bool) -> SecretSpec {
    let mut s: SecretSpec = serde_json::from_value(json!({
        "name": name, "path": "secret/data/x", "file": name
    }))
    .expect("spec");
    s.template = template.map(String::from);
    s.env = env;
    s
}

fn mk_data(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn render(spec: &SecretSpec, data: Value) -> Result<String, String> {
    let r = Renderer::new(std::slice::from_ref(spec)).map_err(|e| e.to_string())?;
    let own = mk_data(data);
    let all = BTreeMap::from([(spec.name.clone(), own.clone())]);
    r.render(spec, &own, &all)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| e.to_string())
}

#[test]
fn vault_keys_never_become_code_loading_variables() {
    let data = json!({ "LD_PRELOAD": "/vault/secrets/evil.so", "user": "app" });
    let err = default_format("app", OutputFormat::Env, &mk_data(data.clone()))
        .expect_err("LD_PRELOAD from the data");
    assert_eq!(
        err.to_string(),
        "secret \"app\": key \"LD_PRELOAD\" of the secret's data would change how the app loads code (LD_*, PATH, NODE_OPTIONS, ...) and is never taken from Vault data; rename the key in Vault, or spell the variable out in the template (vaultlet.io/template-app) if the Pod's author means it"
    );
    assert!(!err.to_string().contains("evil.so"));

    // A template that copies every key is no way around it.
    let each = mk_spec(
        "app",
        Some("{{#each secrets.app}}{{@key}}={{this}}\n{{/each}}"),
        true,
    );
    for key in [
        "PATH",
        "NODE_OPTIONS",
        "BASH_ENV",
        "JAVA_TOOL_OPTIONS",
        "PYTHONPATH",
        "GCONV_PATH",
    ] {
        let err = render(&each, json!({ key: "x", "user": "app" })).expect_err(key);
        assert!(
            err.contains(&format!("key {key:?} of the secret's data")),
            "{err}"
        );
    }
    // Nor is a key rendered from a value.
    let indirect = mk_spec("app", Some("{{name}}={{value}}\n"), true);
    let err =
        render(&indirect, json!({ "name": "LD_PRELOAD", "value": "/x.so" })).expect_err("indirect");
    assert!(err.contains("\"LD_PRELOAD\""), "{err}");

    // The Pod's author may spell one out in the template.
    let literal = mk_spec("app", Some("NODE_OPTIONS={{opts}}\nuser={{user}}\n"), true);
    assert_eq!(
        render(
            &literal,
            json!({ "opts": "--max-old-space-size=64", "user": "app" })
        ),
        Ok("NODE_OPTIONS=--max-old-space-size=64\nuser=app\n".into())
    );
}

#[test]
fn a_link_at_the_temp_name_redirects_no_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("outside");
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "precious").expect("victim");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).expect("mkdir");
    // The temp name the agent used so far was predictable: `.<name>.tmp-<pid>`.
    symlink(
        &victim,
        secrets.join(format!(".db.tmp-{}", std::process::id())),
    )
    .expect("link");
    write_atomic(&secrets.join("db"), b"a=1\n", 0o440, None).expect("write");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious"
    );
    assert_eq!(
        std::fs::read_to_string(secrets.join("db")).expect("db"),
        "a=1\n"
    );
}

#[test]
fn a_link_at_the_final_name_is_replaced_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("outside");
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "a=1\n").expect("victim");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let db = dir.path().join("db");
    symlink(&victim, &db).expect("link");
    // The same bytes as the victim: the agent must not take the link's target for its file.
    write_atomic(&db, b"a=1\n", 0o440, None).expect("write");
    let mode = std::fs::metadata(&victim)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        mode, 0o644,
        "the victim's mode was changed through the link"
    );
    assert!(
        std::fs::symlink_metadata(&db)
            .expect("meta")
            .file_type()
            .is_file()
    );
    assert_eq!(std::fs::read_to_string(&db).expect("db"), "a=1\n");
}

#[test]
fn vault_paths_with_percent_or_backslash_are_refused() {
    assert_eq!(
        validate_vault_path("secret/data/a%2F..%2Fadmin"),
        Err("must not contain '%' or '\\': Vault would decode them into other paths; write the path plainly, as in secret/data/app".into())
    );
    assert_eq!(
        validate_vault_path("secret/data/a\\..\\admin"),
        Err("must not contain '%' or '\\': Vault would decode them into other paths; write the path plainly, as in secret/data/app".into())
    );
    assert_eq!(validate_vault_path("secret/data/app-1_x.y"), Ok(()));
}

#[test]
fn what_vault_says_cannot_forge_a_log_line() {
    let err = ClientError::Status {
        op: reqwest::Method::GET,
        path: "secret/data/app".into(),
        status: 500,
        reason: "boom\n2026-01-01T00:00:00Z  INFO vaultlet_agent: all good".into(),
    };
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert_eq!(
        text,
        "Vault answered 500 to GET \"secret/data/app\": \"boom\\n2026-01-01T00:00:00Z  INFO vaultlet_agent: all good\""
    );
}
