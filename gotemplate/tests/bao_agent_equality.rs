//! The corpus under `tests/corpus/` rendered by `bao agent` (consul-template, the engine of
//! Vault Agent) and by this crate against the same OpenBao must be byte-identical.

#![recursion_limit = "512"]

mod support;

use std::path::Path;

use vaultlet_gotemplate::{Limits, Template};
use vaultlet_testkit::TempDir;

use support::{Live, corpus, render_with_bao_agent, seeded_bao};

#[test]
fn corpus_renders_the_same_bytes_as_bao_agent() {
    let bao = seeded_bao();
    let dir = TempDir::with_prefix("vaultlet-gotemplate-").expect("temp dir");
    let templates = corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus"));
    assert!(
        templates.len() >= 30,
        "corpus has {} templates",
        templates.len()
    );
    let reference = render_with_bao_agent(&bao, &templates, &dir);

    let mut failures = Vec::new();
    let mut bytes = 0;
    for (name, path) in &templates {
        let src = std::fs::read_to_string(path).expect("read template");
        let want = std::fs::read(reference.join(name)).expect("bao agent output");
        bytes += want.len();
        let got = Template::parse(&src)
            .and_then(|t| t.render(&mut Live { bao: &bao }, Limits::default()));
        match got {
            Ok(got) if got.as_bytes() == want.as_slice() => {}
            Ok(got) => failures.push(format!(
                "{name}: differs\n--- bao agent ---\n{}\n--- vaultlet ---\n{got}\n",
                String::from_utf8_lossy(&want)
            )),
            Err(e) => failures.push(format!("{name}: vaultlet failed: {e}")),
        }
    }
    eprintln!(
        "{} of {} templates byte-identical ({bytes} bytes from bao agent)",
        templates.len() - failures.len(),
        templates.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
