//! Shared by the equality tests: a real OpenBao with awkward secrets, a [`SecretSource`] over
//! its HTTP API, and `bao agent` as the reference renderer.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vaultlet_gotemplate::{SecretKind, SecretRequest, SecretSource, kv2_data_path, kv2_list_path};
use vaultlet_testkit::{OpenBao, TempDir, bao_agent_render, bao_bin, http};

/// Starts OpenBao and writes the secrets the corpus reads.
pub fn seeded_bao() -> OpenBao {
    let bao = OpenBao::dev();
    bao.enable_kv("kv1", 1);
    bao.write_kv_json(
        "secret/app",
        json!({
            "username": "app-user",
            "password": "p@ss<w0rd>&\"quoted\"'single'",
            "host": "db.internal",
            "port": "5432",
            "url": "postgres://u:p@h:5432/db?sslmode=require&x=<y>",
            "unicode": "héllo wörld ☃ 日本",
            "multiline": "line1\nline2\n  indented\n",
            "empty": "",
            "spaces": "  padded  ",
            "tab": "a\tb",
            "html": "<script>alert('x')</script>",
            "ls": "\u{2028}sep\u{2029}",
            "dollar": "$HOME ${VAR} `cmd`",
            "yamlish": "yes",
            "numstr": "0123",
            "colon": "key: value",
            "hash": "a #comment",
            "jsonblob": "{\"name\":\"svc\",\"count\":3,\"ratio\":0.25,\"big\":1000000}",
        }),
    );
    bao.write_kv_json(
        "secret/json",
        json!({
            "int": 42, "float": 2.5e-3, "big": 12345678901234567890u64, "neg": -7, "zero": 0,
            "exp": 1e21,
            "bool_t": true, "bool_f": false, "null": null,
            "list": ["a", 1, true, null, {"k": "v"}],
            "nested": {"b": {"c": [1, 2]}, "a": "x"},
            "empty_map": {}, "empty_list": [],
            "strs": ["x", "y", "z"],
        }),
    );
    bao.write_kv_json(
        "secret/b64",
        json!({ "encoded": "aGVsbG8Kd29ybGQ=", "urlenc": "Pz8-Pg==" }),
    );
    bao.write_kv_json(
        "secret/yaml",
        json!({
            "ls": "\u{2028}sep\u{2029}", "a": "x\u{2028}y", "b": "\u{85}x", "c": "x\u{a0}y", "d": "\u{2028}",
            "e": "a\u{2028}b\nc", "f": "é\ttab", "g": "x\u{7}y", "h": "- x", "i": "-x", "j": "? x", "k": "x:",
            "l": "[x", "m": "x, y", "n": "@x", "o": "x\u{a0}", "p": "~", "q": "1.5", "r": "0x1F", "s": "1_000",
            "t": "2001-12-14", "u": "12:30", "v": ".5", "w": "+1", "x": "1e3", "y": "Y", "z": "null", "aa": "NaN",
            "ab": "-", "ac": "1.2.3", "ad": "abc\n", "ae": "abc\n\n", "af": " lead\nx", "ag": "x\n y", "ah": "\n",
            "ai": "trail \nx", "aj": "0b101", "ak": "0o17", "al": "--- x", "am": "...", "an": "1:2:3",
            "ao": "10.0.0.1", "ap": "emoji 😀", "aq": "cr\r\nlf", "ar": "2024-01-01 backup", "as": "08",
            "at": "a'b", "au": "it's: here", "av": "x #y", "aw": "x# y", "ax": "%x", "ay": "a\\b",
            "az": "\"quoted\"", "ba": "012", "bb": "-.inf", "bc": "1e999", "bd": "true ", "be": "\ttab",
            "list": ["a\nb", "yes", "", {"k": "v\nw"}, [1, "x"]],
            "nested": {"deep": {"x": "multi\nline\n", "y": ["z"]}, "10": "ten", "9": "nine", "a2": 1, "a10": 2, "B": 3},
        }),
    );
    for (k, v) in [("one", "1"), ("two", "2"), ("three", "3")] {
        bao.write_kv(&format!("secret/list/{k}"), &[("value", v)]);
    }
    bao.write_kv_json(
        "kv1/legacy",
        json!({ "user": "legacy", "pass": "old&pass", "api-key": "abc-123" }),
    );
    bao
}

/// Reads Vault the way consul-template does (KV v2 detected through the mounts endpoint).
pub struct Live<'a> {
    /// The server.
    pub bao: &'a OpenBao,
}

impl Live<'_> {
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<String, String> {
        let host = format!("127.0.0.1:{}", self.bao.port());
        let headers = [("X-Vault-Token", self.bao.root_token())];
        let resp = http::request(
            &host,
            method,
            &format!("/v1/{path}"),
            &headers,
            body.map(str::as_bytes),
        )
        .map_err(|e| e.to_string())?;
        if resp.status != 200 {
            return Err(format!("{method} {path}: status {}", resp.status));
        }
        Ok(resp.text())
    }

    /// The KV v2 mount of `path`, when it is on one.
    fn kv2_mount(&self, path: &str) -> Option<String> {
        let info: Value = serde_json::from_str(
            &self
                .call("GET", &format!("sys/internal/ui/mounts/{path}"), None)
                .ok()?,
        )
        .ok()?;
        let v2 = info
            .pointer("/data/options/version")
            .and_then(Value::as_str)
            == Some("2")
            && info.pointer("/data/type").and_then(Value::as_str) == Some("kv");
        v2.then(|| {
            info.pointer("/data/path")
                .and_then(Value::as_str)
                .map(str::to_string)
        })?
    }
}

impl SecretSource for Live<'_> {
    fn fetch(&mut self, req: &SecretRequest) -> Result<String, String> {
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        match req.kind {
            SecretKind::Read => {
                let p = match self.kv2_mount(path) {
                    Some(mount) => kv2_data_path(path, &mount),
                    None => path.to_string(),
                };
                self.call("GET", &format!("{p}{query}"), None)
            }
            SecretKind::List => {
                let p = match self.kv2_mount(path) {
                    Some(mount) => kv2_list_path(path, &mount),
                    None => path.to_string(),
                };
                self.call("LIST", &p, None)
            }
            SecretKind::Write | SecretKind::PkiCert => {
                let body = serde_json::to_string(&req.data).map_err(|e| e.to_string())?;
                self.call("PUT", path, Some(&body))
            }
        }
    }
}

/// Renders every template in `templates` (name, source file) with one `bao agent` run
/// (`exit_after_auth`) and returns the rendered files' directory.
pub fn render_with_bao_agent(
    bao: &OpenBao,
    templates: &[(String, PathBuf)],
    dir: &TempDir,
) -> PathBuf {
    render_with_bao_agent_options(bao, templates, dir, "")
}

/// [`render_with_bao_agent`] with `extra` lines in every `template` stanza.
pub fn render_with_bao_agent_options(
    bao: &OpenBao,
    templates: &[(String, PathBuf)],
    dir: &TempDir,
    extra: &str,
) -> PathBuf {
    // A template that fails to execute makes the agent retry forever: bound the wait.
    let run = bao_agent_render(bao, templates, dir.path(), extra, Duration::from_secs(60));
    let errors: Vec<&str> = run
        .log
        .lines()
        .filter(|l| l.contains("[ERROR]"))
        .take(5)
        .collect();
    assert!(
        run.rendered(),
        "bao agent did not render every template ({:?}):\n{}",
        run.status,
        errors.join("\n")
    );
    run.out
}

/// The `.tmpl` files of `dir`, sorted, as (name, path).
pub fn corpus(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .expect("corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tmpl"))
        .map(|p| {
            (
                p.file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                p,
            )
        })
        .collect();
    files.sort();
    files
}

/// Runs `bao agent` on one template that must fail to execute and returns consul-template's
/// message (the text after `executing "" at <...>: `), read from the agent's log.
pub fn bao_agent_error(bao: &OpenBao, template: &Path, dir: &TempDir, extra: &str) -> String {
    let name = template
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let work = dir.path().join(&name);
    std::fs::create_dir_all(&work).expect("mkdir");
    let token = work.join("token");
    std::fs::write(&token, bao.root_token()).expect("write token");
    let hcl = format!(
        "vault {{ address = \"{}\" }}\nauto_auth {{\n  method \"token_file\" {{ config {{ token_file_path = \"{}\" }} }}\n}}\nexit_after_auth = true\ntemplate {{\n  source = \"{}\"\n  destination = \"{}\"\n  {extra}\n}}\n",
        bao.addr(),
        token.display(),
        template.display(),
        work.join("out").display()
    );
    let config = work.join("agent.hcl");
    std::fs::write(&config, hcl).expect("write agent config");
    let log = work.join("agent.log");
    let log_file = std::fs::File::create(&log).expect("agent log");
    let mut child = Command::new(bao_bin())
        .arg("agent")
        .arg(format!("-config={}", config.display()))
        .stdout(log_file.try_clone().expect("log fd"))
        .stderr(log_file)
        .spawn()
        .expect("run bao agent");
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = text
            .lines()
            .find(|l| l.contains("[ERROR]") && l.contains("execute:"))
        {
            break Some(l.to_string());
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    let line = line.unwrap_or_else(|| {
        panic!(
            "{name}: bao agent rendered it or timed out: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let msg = line.split_once(">: ").map_or(line.as_str(), |(_, m)| m);
    msg.split("\" backoff=")
        .next()
        .unwrap_or(msg)
        .replace("\\\"", "\"")
}
