//! Templates cannot exhaust the agent: no partials (so no mutual inclusion), bounded
//! nesting, bounded output. Each ends in an error for that secret, not a crash or an OOM.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use vaultlet_agent::config::SecretSpec;
use vaultlet_agent::render::Renderer;

fn mk_spec(name: &str, template: &str) -> SecretSpec {
    serde_json::from_value(json!({
        "name": name, "path": "secret/data/x", "file": name, "template": template
    }))
    .expect("spec")
}

fn data(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[test]
fn templates_that_include_each_other_are_refused() {
    let specs = [mk_spec("a", "A{{> b}}"), mk_spec("b", "B{{> a}}")];
    // Before: both compiled, and rendering `a` recursed until the stack overflowed.
    let err = match Renderer::new(&specs) {
        Ok(r) => {
            let all = BTreeMap::new();
            let rendered = r.render(&specs[0], &Map::new(), &all);
            panic!(
                "mutual partials compiled; rendering gave {:?}",
                rendered.map(|_| ())
            );
        }
        Err(e) => e.to_string(),
    };
    assert_eq!(
        err,
        "secret \"a\": template does not parse: partials and decorators ({{> ...}}, {{#> ...}}, {{#*inline ...}}) are not supported; write the text out, or refer to other secrets as secrets.<name>.<key>; fix the template annotation"
    );
    for t in [
        "{{#*inline \"x\"}}{{> x}}{{/inline}}{{> x}}",
        "{{#> layout}}x{{/layout}}",
        "{{#if a}}{{> b}}{{/if}}",
    ] {
        assert!(Renderer::new(&[mk_spec("a", t)]).is_err(), "{t}");
    }
}

#[test]
fn deep_nesting_is_refused() {
    let deep = format!("{}x{}", "{{#if a}}".repeat(5000), "{{/if}}".repeat(5000));
    let err = Renderer::new(&[mk_spec("a", &deep)])
        .map(|_| ())
        .expect_err("deep");
    assert_eq!(
        err.to_string(),
        "secret \"a\": template does not parse: blocks or (sub expressions) nest deeper than 16; flatten the template; fix the template annotation"
    );
    let parens = format!(
        "{{{{default {}x{} \"d\"}}}}",
        "(default ".repeat(500),
        " \"y\")".repeat(500)
    );
    assert!(Renderer::new(&[mk_spec("a", &parens)]).is_err());
    let ok = format!("{}x{}", "{{#if a}}".repeat(16), "{{/if}}".repeat(16));
    assert!(Renderer::new(&[mk_spec("a", &ok)]).is_ok());
    // Each nested {{#each}} multiplies the work by the data's size: at most three.
    let each = |n: usize| {
        format!(
            "{}x{}",
            "{{#each secrets}}".repeat(n),
            "{{/each}}".repeat(n)
        )
    };
    assert!(Renderer::new(&[mk_spec("a", &each(3))]).is_ok());
    let err = Renderer::new(&[mk_spec("a", &each(4))])
        .map(|_| ())
        .expect_err("four eaches");
    assert_eq!(
        err.to_string(),
        "secret \"a\": template does not parse: {{#each}} nests deeper than 3; iterate over less; fix the template annotation"
    );
}

#[test]
fn output_larger_than_the_volume_is_an_error() {
    let spec = mk_spec("big", &"{{v}}".repeat(20));
    let r = Renderer::new(std::slice::from_ref(&spec)).expect("compiles");
    let own = data(json!({ "v": "x".repeat(1 << 20) }));
    let err = r
        .render(&spec, &own, &BTreeMap::new())
        .map(|b| b.len())
        .expect_err("20 MiB of output");
    assert_eq!(
        err.to_string(),
        "secret \"big\": the rendered file would be larger than 16777216 bytes (paths.maxFileSize, the secrets volume's size); render less, or raise the secrets volume size"
    );
}
