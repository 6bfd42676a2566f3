//! End-to-end: the default `env` output is safe to source in `sh` (nothing expands or runs)
//! and python-dotenv reads the same values; keys that are no variable names are refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Harness, config, kv_policy, read};
use serde_json::{Map, Value, json};
use vaultlet_testkit::OpenBao;

/// Values a shell or a dotenv parser could misread, by key (keys sorted, as the file is).
fn tricky(canary: &Path) -> Vec<(String, String)> {
    let c = canary.display();
    let values = [
        "plain".to_owned(),
        "pa$word".to_owned(),
        "${HOME} and $HOME".to_owned(),
        format!("$(touch {c}.1)"),
        format!("`touch {c}.2`"),
        "say \"hi\"".to_owned(),
        "it's".to_owned(),
        "C:\\temp\\new".to_owned(),
        "two\\\\backslashes and a trailing one\\".to_owned(),
        "line one\nline two\n".to_owned(),
        "grüße 😀 €".to_owned(),
        "  spaces # not a comment  ".to_owned(),
        String::new(),
        "'\"'\"".to_owned(),
        format!("it's $(touch {c}.3) `touch {c}.4` \\"),
    ];
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (format!("v{i:02}"), v))
        .collect()
}

/// The values `sh` sees after sourcing `file`, in the order of `keys`.
fn sourced_by_sh(file: &Path, keys: &[&str]) -> Vec<String> {
    let vars: String = keys.iter().map(|k| format!(" \"${k}\"")).collect();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(". \"$1\" && printf '%s\\0'{vars}"))
        .arg("sh")
        .arg(file)
        .output()
        .expect("run sh");
    assert!(out.status.success(), "sh failed: {out:?}");
    let text = String::from_utf8(out.stdout).expect("utf8");
    let mut parts: Vec<String> = text.split('\0').map(String::from).collect();
    assert_eq!(parts.pop().as_deref(), Some(""));
    parts
}

fn python() -> PathBuf {
    let venv = std::env::var_os("VAULTLET_VENV").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"),
        PathBuf::from,
    );
    venv.join("bin/python")
}

/// What python-dotenv reads from `file`.
fn read_by_dotenv(file: &Path, interpolate: bool) -> Map<String, Value> {
    let script = "import json, sys\n\
                  from dotenv import dotenv_values\n\
                  print(json.dumps(dotenv_values(sys.argv[1], interpolate=sys.argv[2] == '1')))";
    let out = Command::new(python())
        .args(["-c", script])
        .arg(file)
        .arg(if interpolate { "1" } else { "0" })
        .output()
        .expect("run python (source scripts/tools.sh to install python-dotenv)");
    assert!(
        out.status.success(),
        "python-dotenv failed (source scripts/tools.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("dotenv json")
}

#[test]
fn env_files_source_safely_in_sh_and_read_the_same_in_dotenv() {
    let bao = OpenBao::dev();
    let h = Harness::new();
    let canary = h.dir.path().join("canary");
    let pairs = tricky(&canary);
    let data: Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    bao.write_kv_json("secret/app", Value::Object(data));
    kv_policy(&bao, "app", &["app"]);
    let token = bao.create_token(&["app"], None);
    let cfg = config(
        &bao.addr(),
        h.token_auth(&token),
        json!([{ "name": "app", "path": "secret/data/app", "file": "app.env" }]),
    );
    let (status, log, _) = h.init(&cfg, Duration::from_secs(20));
    assert!(status.success(), "{log}");
    let file = h.file("app.env");

    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    let want: Vec<String> = pairs.iter().map(|(_, v)| v.clone()).collect();
    assert_eq!(sourced_by_sh(&file, &keys), want, "file:\n{}", read(&file));
    for n in 1..=4 {
        let c = PathBuf::from(format!("{}.{n}", canary.display()));
        assert!(!c.exists(), "sourcing the file ran a command ({n})");
    }

    // python-dotenv: every value the same, except the one form it does not know (values
    // mixing a quote or backslash escape with `$` or a backtick, v14; see the envfile
    // module docs): it skips that line with a warning and reads every other one.
    let readable: Map<String, Value> = pairs[..14]
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    assert_eq!(read_by_dotenv(&file, false), readable);
    // With its default interpolation python-dotenv expands `${NAME}` in any value, quoted
    // or not (v02); every other value still reads the same.
    let mut interpolated = read_by_dotenv(&file, true);
    assert_ne!(interpolated.remove("v02"), readable.get("v02").cloned());
    let mut rest = readable.clone();
    rest.remove("v02");
    assert_eq!(interpolated, rest);
}

#[test]
fn keys_that_are_no_variable_names_fail_naming_the_secret_and_key() {
    let bao = OpenBao::dev();
    let h = Harness::new();
    let (_, mut cfg) = common::app_env(&bao, &h, &[("user", "u"), ("api-key", "k3y")]);
    cfg["initDeadline"] = json!("1s");
    let (status, log, _) = h.init(&cfg, Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(
            "secret \"app\": key \"api-key\" is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
        ),
        "{log}"
    );
    assert!(!h.file("app.env").exists());
    common::assert_no_leak(&log, &["k3y"]);
}
