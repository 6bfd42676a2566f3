//! Tenant-written templates and any Vault data: every input gives Ok or Err, never a panic,
//! and the limits stop runaway templates with an error naming the limit.

use proptest::prelude::*;
use vaultlet_gotemplate::{Error, Limits, SecretRequest, SecretSource, Template};

/// Answers every call with the same body.
struct Body(String);

impl SecretSource for Body {
    fn fetch(&mut self, _req: &SecretRequest) -> Result<String, String> {
        Ok(self.0.clone())
    }
}

const DATA: &str = r#"{"data":{"data":{"a":"x<y","n":12,"l":[1,"b",null,{"k":[]}],"m":{"z":true}},"metadata":{"version":3}}}"#;

fn small() -> Limits {
    Limits {
        max_output: 64 << 10,
        max_steps: 20_000,
        max_depth: 16,
    }
}

fn run(src: &str, body: &str) -> Result<String, Error> {
    Template::parse(src)?.render(&mut Body(body.to_string()), small())
}

/// Pieces real templates are made of, glued at random.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{{".to_string()),
        Just("}}".to_string()),
        Just("{{- ".to_string()),
        Just(" -}}".to_string()),
        Just("{{/* c */}}".to_string()),
        Just(" with secret \"p\" ".to_string()),
        Just(" range $k, $v := ".to_string()),
        Just(" if ".to_string()),
        Just(" else ".to_string()),
        Just(" end ".to_string()),
        Just(" break ".to_string()),
        Just(".Data.data".to_string()),
        Just(".a".to_string()),
        Just(" $ ".to_string()),
        Just(" $k ".to_string()),
        Just(" | ".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(" toJSON ".to_string()),
        Just(" toYAML ".to_string()),
        Just(" printf \"%5.2q|%x|%d|%v|%\" ".to_string()),
        Just(" index ".to_string()),
        Just(" slice ".to_string()),
        Just(" len ".to_string()),
        Just(" eq ".to_string()),
        Just(" lt ".to_string()),
        Just(" and ".to_string()),
        Just(" split \",\" ".to_string()),
        Just(" base64Decode ".to_string()),
        Just(" 1 ".to_string()),
        Just(" -2.5e3 ".to_string()),
        Just(" 'x' ".to_string()),
        Just(" nil ".to_string()),
        Just(" \"s\\u00e9\" ".to_string()),
        Just(" `raw` ".to_string()),
        Just("é".to_string()),
        "[ -~]{0,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn template_soup_never_panics(parts in proptest::collection::vec(fragment(), 0..24)) {
        let _ = run(&parts.concat(), DATA);
    }

    #[test]
    fn any_text_never_panics(src in "\\PC{0,80}") {
        let _ = run(&src, DATA);
    }

    #[test]
    fn any_vault_answer_never_panics(body in "\\PC{0,60}", json in any_json(3)) {
        let t = concat!(
            "{{ with secret \"p\" }}{{ . | printf \"%v\" }}{{ .Data }}{{ .Data | toJSON }}",
            "{{ .Data | toYAML }}{{ range $k, $v := .Data }}{{ $k }}{{ $v }}{{ end }}{{ end }}",
        );
        let _ = run(t, &body);
        let _ = run(t, &format!("{{\"data\":{json}}}"));
    }
}

/// Random JSON text (numbers, awkward strings, nesting).
fn any_json(depth: u32) -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("-0".to_string()),
        Just("1e400".to_string()),
        Just("12345678901234567890".to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        "\\PC{0,12}".prop_map(|s| format!("{s:?}").replace("\\u{", "\\u").replace('}', "")),
        "[ -~\u{2028}\u{85}\n\t]{0,12}".prop_map(|s| serde_json::Value::String(s).to_string()),
    ];
    leaf.prop_recursive(depth, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec(("[a-z0-9 :#-]{0,5}", inner), 0..4).prop_map(|kv| {
                let body: Vec<String> = kv
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::Value::String(k)))
                    .collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

fn limit_of(r: Result<String, Error>) -> &'static str {
    match r {
        Err(Error::Limit { what, .. }) => what,
        other => panic!("expected a limit error, got {other:?}"),
    }
}

#[test]
fn limits_stop_runaway_templates() {
    let loops = "{{ range loop 100000 }}{{ range loop 100000 }}x{{ end }}{{ end }}";
    assert!(limit_of(run(loops, DATA)).contains("work"));
    let big = "{{ range loop 10000 }}{{ printf \"%1000s\" \"x\" }}{{ end }}";
    assert_eq!(limit_of(run(big, DATA)), "output size in bytes");
    let recursive = "{{ define \"a\" }}{{ template \"a\" . }}{{ end }}{{ template \"a\" }}";
    assert_eq!(limit_of(run(recursive, DATA)), "template call depth");
    let parens = format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
    assert_eq!(limit_of(run(&parens, DATA)), "nesting depth");
    let ifs = format!("{}{}", "{{ if 1 }}".repeat(5000), "{{ end }}".repeat(5000));
    assert_eq!(limit_of(run(&ifs, DATA)), "nesting depth");
    let chain = format!(
        "{{{{ if 0 }}}}{}{{{{ end }}}}",
        "{{ else if 0 }}".repeat(5000)
    );
    assert_eq!(limit_of(run(&chain, DATA)), "nesting depth");
    let text = format!(
        "{}{{{{ printf \"%s\" \"{}\" }}}}",
        "(".repeat(500),
        "(".repeat(500)
    );
    assert_eq!(
        run(&text, DATA).expect("parentheses in text"),
        "(".repeat(1000)
    );
    let many = "{{ if 0 }}{{ else if 0 }}{{ end }}".repeat(500);
    assert_eq!(run(&many, DATA).expect("sequential chains are shallow"), "");
    let wide = "{{ range 100000000 }}{{ end }}";
    assert_eq!(limit_of(run(wide, DATA)), "loop iterations");
    let err = run(loops, DATA).expect_err("limit");
    assert!(err.to_string().starts_with("template:1:"), "{err}");
}
