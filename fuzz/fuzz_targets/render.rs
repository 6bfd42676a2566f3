//! Rendering: any template (before the first NUL byte) over any JSON object (after it), and
//! the default formats; env output must parse back to the same pairs.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use vaultlet_agent::config::{OutputFormat, SecretSpec};
use vaultlet_agent::envfile;
use vaultlet_agent::render::{Renderer, default_format};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (template, json_data) = text.split_once('\0').unwrap_or((text, "{}"));
    let Ok(Value::Object(own)) = serde_json::from_str::<Value>(json_data) else {
        return;
    };
    let Ok(mut spec) = serde_json::from_value::<SecretSpec>(json!({
        "name": "fuzz", "path": "secret/data/fuzz", "file": "fuzz"
    })) else {
        return;
    };
    spec.template = Some(template.to_owned());
    if let Ok(r) = Renderer::new(std::slice::from_ref(&spec)) {
        let all = BTreeMap::from([("fuzz".to_owned(), own.clone())]);
        let _ = r.render(&spec, &own, &all);
    }
    let _ = default_format("fuzz", OutputFormat::Json, &own);
    let _ = default_format("fuzz", OutputFormat::Yaml, &own);
    if let Ok(env) = default_format("fuzz", OutputFormat::Env, &own) {
        let text = String::from_utf8(env).expect("env output is UTF-8");
        let parsed = envfile::parse(&text).expect("env output parses");
        let keys: Vec<&String> = parsed.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, own.keys().collect::<Vec<_>>());
    }
    // The reader alone, on arbitrary text.
    let _ = envfile::parse(text);
});
