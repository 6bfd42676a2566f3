//! The README and the install guide say what the project promises about its peers and its
//! TLS modes: checked here so that an edit cannot silently drop a source or a caveat.

fn read(path: &str) -> String {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// The rows of the README's vault-k8s comparison table: (topic, vault-k8s cell).
fn comparison_rows(readme: &str) -> Vec<(String, String)> {
    let start = readme
        .find("| | vault-k8s | vaultlet |")
        .expect("README has the vault-k8s comparison table");
    readme[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
            (cells[0].trim().to_owned(), cells[1].trim().to_owned())
        })
        .collect()
}

#[test]
fn every_vault_k8s_fact_in_the_readme_names_its_source() {
    let readme = read("README.md");
    let rows = comparison_rows(&readme);
    assert!(rows.len() >= 6, "{rows:?}");
    let legend = &readme[..readme.find("| | vault-k8s | vaultlet |").unwrap_or(0)];
    for (topic, cell) in &rows {
        let refs: Vec<&str> = cell
            .match_indices('[')
            .filter_map(|(i, _)| cell[i + 1..].split_once(']').map(|(r, _)| r))
            .collect();
        assert!(!refs.is_empty(), "row {topic:?} names no source: {cell}");
        for r in refs.iter().flat_map(|r| r.split(", ")) {
            assert!(
                legend.contains(&format!("[{r}] ")),
                "row {topic:?} cites [{r}], which the legend above the table does not define"
            );
        }
    }
    // What vault-k8s does have, for Jobs and for telling the app.
    let all: String = rows.iter().map(|(_, c)| c.as_str()).collect();
    for feature in [
        "agent-pre-populate-only",
        "agent-enable-quit",
        "agent-inject-command",
        "agent-set-security-context",
    ] {
        assert!(all.contains(feature), "the comparison omits {feature}");
    }
    assert!(
        !all.contains("never complete") && !all.contains("agent fails later"),
        "outdated claims are back: {all}"
    );
}

#[test]
fn helm_tls_under_gitops_renderers_is_documented() {
    let install = read("docs/install.md");
    let readme = read("README.md");
    for (name, text) in [("docs/install.md", &install), ("README.md", &readme)] {
        let at = text
            .find("GitOps")
            .unwrap_or_else(|| panic!("{name} does not mention GitOps renderers"));
        let section = &text[at..(at + 800).min(text.len())];
        assert!(
            section.contains("helm template") && section.contains("cert-manager"),
            "{name}: the GitOps note must say why (helm template, no lookup) and what to use (cert-manager)"
        );
    }
}
