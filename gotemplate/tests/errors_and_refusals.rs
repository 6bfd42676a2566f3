//! Templates that Vault Agent fails to execute fail here too, with Go's message inside ours;
//! `pkiCert` output matches `bao agent`'s; refused functions are refused by name.

#![recursion_limit = "512"]

mod support;

use std::path::Path;

use vaultlet_gotemplate::{Error, Limits, Pos, SecretRequest, SecretSource, Template};
use vaultlet_testkit::TempDir;

use support::{
    Live, bao_agent_error, corpus, render_with_bao_agent, render_with_bao_agent_options, seeded_bao,
};

#[test]
fn failing_templates_fail_in_both_with_gos_message() {
    let bao = seeded_bao();
    let dir = TempDir::with_prefix("vaultlet-gotemplate-err-").expect("temp dir");
    let templates = corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/errors"));
    let mut failures = Vec::new();
    for (name, path) in &templates {
        let src = std::fs::read_to_string(path).expect("read template");
        let go = bao_agent_error(&bao, path, &dir, "");
        match Template::parse(&src)
            .and_then(|t| t.render(&mut Live { bao: &bao }, Limits::default()))
        {
            Ok(out) => failures.push(format!(
                "{name}: vaultlet rendered {out:?}; bao agent: {go}"
            )),
            Err(e) if e.to_string().contains(&go) => {}
            Err(e) => failures.push(format!(
                "{name}: messages differ\n  bao agent: {go}\n  vaultlet:  {e}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn error_on_missing_key_matches_vault_agents_option() {
    let bao = seeded_bao();
    let dir = TempDir::with_prefix("vaultlet-gotemplate-mk-").expect("temp dir");
    let option = "error_on_missing_key = true";
    // Templates without missing keys render the same bytes with the option on.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let clean: Vec<(String, std::path::PathBuf)> = corpus(&root)
        .into_iter()
        .filter(|(n, _)| {
            [
                "01-env-file",
                "03-json-config",
                "08-kv1-index",
                "31-nginx",
                "44-vault-k8s-examples",
            ]
            .contains(&n.as_str())
        })
        .collect();
    assert_eq!(clean.len(), 5);
    let out = render_with_bao_agent_options(&bao, &clean, &dir, option);
    for (name, path) in &clean {
        let src = std::fs::read_to_string(path).expect("read template");
        let got = Template::parse(&src)
            .map(|t| t.error_on_missing_key(true))
            .and_then(|t| t.render(&mut Live { bao: &bao }, Limits::default()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            got.as_bytes(),
            std::fs::read(out.join(name)).expect("output"),
            "{name}"
        );
    }
    // A missing key fails both, with Go's message.
    let missing = dir.path().join("missing.tmpl");
    let src = "{{ with secret \"secret/app\" }}{{ .Data.data.nope }}{{ end }}\n";
    std::fs::write(&missing, src).expect("write");
    let go = bao_agent_error(&bao, &missing, &dir, option);
    let err = Template::parse(src)
        .map(|t| t.error_on_missing_key(true))
        .and_then(|t| t.render(&mut Live { bao: &bao }, Limits::default()))
        .expect_err("missing key");
    assert!(
        err.to_string().contains(&go),
        "bao agent: {go}\nvaultlet: {err}"
    );
}

/// Answers `pkiCert` with the certificate `bao agent` was issued, as Vault sent it.
struct Replay(String);

impl SecretSource for Replay {
    fn fetch(&mut self, _req: &SecretRequest) -> Result<String, String> {
        Ok(self.0.clone())
    }
}

#[test]
fn pki_cert_fields_match_bao_agent() {
    let bao = seeded_bao();
    bao.enable_pki("web", "example.test");
    let dir = TempDir::with_prefix("vaultlet-gotemplate-pki-").expect("temp dir");
    let tmpl = dir.path().join("pki.tmpl");
    let src = "{{ with pkiCert \"pki/issue/web\" \"common_name=app.example.test\" \"ttl=1h\" }}{{ .Cert }}{{ .Data.Key }}{{ .CA }}{{ end }}\n";
    std::fs::write(&tmpl, src).expect("write template");
    let out = render_with_bao_agent(&bao, &[("pki".to_string(), tmpl)], &dir);
    let want = std::fs::read_to_string(out.join("pki")).expect("bao agent output");

    // Rebuild the issue answer from the three PEMs (Vault sends them without a final newline).
    let pems: Vec<String> = want
        .split_inclusive("-----\n")
        .collect::<String>()
        .split("-----BEGIN ")
        .filter(|p| !p.trim().is_empty())
        .map(|p| format!("-----BEGIN {}", p.trim_end()))
        .collect();
    assert_eq!(pems.len(), 3, "cert, key, CA in {want}");
    let answer = serde_json::json!({
        "data": {
            "certificate": pems[0], "private_key": pems[1], "issuing_ca": pems[2],
            "ca_chain": [pems[2]], "private_key_type": "rsa", "serial_number": "01:02",
        }
    });
    let got = Template::parse(src)
        .and_then(|t| t.render(&mut Replay(answer.to_string()), Limits::default()))
        .expect("renders");
    assert_eq!(got, want);
    // OpenBao's agent has no `.CAChain`: refused the same way at render time.
    let err = Template::parse("{{ with pkiCert \"pki/issue/web\" \"common_name=a.example.test\" }}{{ .CAChain }}{{ end }}")
        .and_then(|t| t.render(&mut Replay(answer.to_string()), Limits::default()))
        .expect_err("no CAChain");
    assert!(
        err.to_string()
            .contains("can't evaluate field CAChain in type dependency.PemEncoded"),
        "{err}"
    );
}

const SUPPORTED: &str = "and, or, not, len, index, slice, print, printf, println, eq, ne, lt, le, gt, ge, html, js, urlquery, secret, secrets, pkiCert, toJSON, toJSONPretty, toUnescapedJSON, toUnescapedJSONPretty, toYAML, toLower, toUpper, toTitle, trimSpace, trim, trimPrefix, trimSuffix, split, join, replaceAll, contains, in, base64Encode, base64Decode, base64URLEncode, base64URLDecode, parseJSON, parseBool, parseInt, parseFloat, parseUint, indent, add, subtract, multiply, divide, modulo, minimum, maximum, loop";

#[test]
fn unsupported_functions_are_refused_by_name_at_parse_time() {
    for (src, name, why, pos) in [
        (
            "{{ env \"HOME\" }}",
            "env",
            " (the agent's environment is not the application's; put the value in Vault)",
            (1, 4),
        ),
        (
            "x\n  {{ with secret \"a\" }}{{ .Data.x | sprig_upper }}{{ end }}",
            "sprig_upper",
            " (Sprig functions are not reproduced)",
            (2, 37),
        ),
        (
            "{{ timestamp }}",
            "timestamp",
            " (time-dependent output re-renders on every refresh)",
            (1, 4),
        ),
        (
            "{{ key \"consul/k\" }}",
            "key",
            " (it reads Consul or Nomad, not Vault)",
            (1, 4),
        ),
        (
            "{{ file \"/etc/passwd\" }}",
            "file",
            " (templates may not read the agent's files)",
            (1, 4),
        ),
        (
            "{{ if true }}{{ (foo) }}{{ end }}",
            "foo",
            " (nor by consul-template)",
            (1, 18),
        ),
    ] {
        let err = Template::parse(src).expect_err(src);
        assert_eq!(
            err.to_string(),
            format!(
                "template:{}:{}: function {name:?} is not supported by vaultlet{why}; supported: {SUPPORTED}",
                pos.0, pos.1
            ),
            "{src}"
        );
        assert_eq!(
            err.pos(),
            Pos {
                line: pos.0,
                col: pos.1
            }
        );
        assert!(matches!(err, Error::Unsupported { .. }));
    }
}

#[test]
fn secret_calls_are_listed_before_rendering() {
    let t = Template::parse(concat!(
        "{{ with secret \"secret/data/app\" }}{{ end }}\n",
        "{{ range secrets \"secret/list/\" }}{{ with secret (printf \"secret/list/%s\" .) }}{{ end }}{{ end }}\n",
        "{{ with secret \"pki/issue/web\" \"common_name=a.b\" \"ttl=1h\" }}{{ end }}",
    ))
    .expect("parses");
    let calls = t.secret_calls();
    let shown: Vec<String> = calls
        .iter()
        .map(|c| {
            format!(
                "{}:{} {:?}",
                c.pos.line,
                c.pos.col,
                c.request
                    .as_ref()
                    .map(|r| (r.kind, r.path.as_str(), r.data.len()))
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            "1:9 Some((Read, \"secret/data/app\", 0))",
            "2:10 Some((List, \"secret/list\", 0))",
            "2:43 None",
            "3:9 Some((Write, \"pki/issue/web\", 2))",
        ]
    );
}
