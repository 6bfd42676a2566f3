//! The pure mapping of one pod template's vault-k8s annotations to vaultlet's.

use std::collections::BTreeMap;

use serde_json::Value;
use vaultlet_agent::config::parse_mode;

use super::rules::{self, Rule, parse_go_bool};
use super::{Converted, Line, Outcome, Refusal};
use crate::annotations::{self, PREFIX, shown_key};

/// Annotation prefixes of vault-k8s and of OpenBao's fork of it.
pub const SOURCE_PREFIXES: &[&str] = &["vault.hashicorp.com/", "openbao.org/"];

/// vault-k8s's default template without `agent-inject-default-template` (`map`), `%s` the path.
const MAP_TEMPLATE: (&str, &str) = (
    "{{ with secret \"",
    "\" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\n{{ end }}{{ end }}",
);
/// vault-k8s's `json` default template.
const JSON_TEMPLATE: (&str, &str) = ("{{ with secret \"", "\" }}{{ .Data | toJSON }}\n{{ end }}");
/// Where vault-k8s mounts the secrets volume by default (vaultlet's default too).
const DEFAULT_VOLUME_PATH: &str = "/vault/secrets";
/// consul-template's mode for a new file when `perms` is not set.
const DEFAULT_PERMS: &str = "0644";

/// The source annotations of one pod template, keyed by the part after the prefix.
struct Source<'a> {
    keys: BTreeMap<&'a str, (&'a str, &'a str)>,
    used: BTreeMap<&'a str, ()>,
}

impl<'a> Source<'a> {
    fn get(&mut self, rest: &str) -> Option<(&'a str, &'a str)> {
        let (k, found) = self.keys.get_key_value(rest)?;
        self.used.insert(k, ());
        Some(*found)
    }
}

/// Converts one pod template (`annotations`, `labels`, `spec`): pure, no I/O.
pub fn pod_template(
    annotations: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    spec: &Value,
) -> Outcome {
    let mut keys = BTreeMap::new();
    let mut twice = Vec::new();
    for (k, v) in annotations {
        if let Some(rest) = SOURCE_PREFIXES.iter().find_map(|p| k.strip_prefix(p))
            && keys.insert(rest, (k.as_str(), v.as_str())).is_some()
        {
            twice.push(k.as_str());
        }
    }
    if keys.is_empty() {
        return Outcome::Untouched;
    }
    let mut src = Source {
        keys,
        used: BTreeMap::new(),
    };
    match src.get("agent-inject") {
        Some((_, v)) if parse_go_bool(v) == Some(true) => {}
        _ => return Outcome::NotOptedIn,
    }
    let mut out = Builder::default();
    for k in twice {
        out.refuse(
            k,
            "",
            "the same annotation under both vault.hashicorp.com/ and openbao.org/",
            "keep one of the two",
        );
    }
    if let Some(k) = annotations.keys().find(|k| k.starts_with(PREFIX)) {
        out.refuse(
            k,
            "",
            "a vaultlet.io annotation next to vault-k8s's",
            "convert the workload from its vault-k8s annotations only: remove the vaultlet.io annotations (or the vault-k8s ones if it is already converted)",
        );
    }
    out.line(
        src.keys["agent-inject"].0,
        "label vaultlet.io/inject: \"true\"".into(),
    );
    if let Some((k, v)) = src.get("agent-inject-status") {
        out.refuse(
            k,
            v,
            "a Pod vault-k8s already injected",
            "convert the workload's manifest (its pod template), not a running Pod",
        );
    }
    secrets(&mut src, &mut out, spec);
    pod_wide(&mut src, &mut out, spec);
    for (rest, (k, v)) in &src.keys {
        if !src.used.contains_key(rest) {
            out.lines.push(Line {
                from: (*k).to_owned(),
                to: format!(
                    "ignored: vault-k8s does not use {} (unknown key, or no such secret); kept as is",
                    shown_key(k)
                ),
            });
            out.keep.insert((*k).to_owned(), (*v).to_owned());
        }
    }
    out.finish(annotations, labels, &src)
}

#[derive(Default)]
struct Builder {
    /// vaultlet annotations written, with the source key each came from.
    set: BTreeMap<String, (String, String)>,
    /// Source annotations kept in the output (unknown to vault-k8s).
    keep: BTreeMap<String, String>,
    lines: Vec<Line>,
    refusals: Vec<Refusal>,
    share_process_namespace: bool,
}

impl Builder {
    fn line(&mut self, from: &str, to: String) {
        self.lines.push(Line {
            from: from.to_owned(),
            to,
        });
    }

    fn set(&mut self, from: &str, key: &str, value: String) {
        self.line(from, format!("{PREFIX}{key}: {value:?}"));
        self.set
            .insert(format!("{PREFIX}{key}"), (value, from.to_owned()));
    }

    fn refuse(&mut self, key: &str, value: &str, construct: &str, todo: &str) {
        self.refusals.push(Refusal {
            key: key.to_owned(),
            value: value.to_owned(),
            construct: construct.to_owned(),
            todo: todo.to_owned(),
        });
    }

    fn finish(
        self,
        annotations: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
        src: &Source<'_>,
    ) -> Outcome {
        let mut refusals = self.refusals;
        let mut new: BTreeMap<String, String> = annotations
            .iter()
            .filter(|(k, _)| !SOURCE_PREFIXES.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        new.extend(self.keep);
        for (k, (v, _)) in &self.set {
            new.insert(k.clone(), v.clone());
        }
        if refusals.is_empty() {
            // Whatever convert writes must pass vaultlet's own admission parser.
            if let Err(e) = annotations::parse(new.iter()) {
                let (key, value) = self
                    .set
                    .get(e.key())
                    .map(|(_, from)| {
                        let v = src
                            .keys
                            .values()
                            .find(|(k, _)| k == from)
                            .map_or("", |(_, v)| v);
                        (from.clone(), v.to_owned())
                    })
                    .unwrap_or_else(|| (e.key().to_owned(), String::new()));
                refusals.push(Refusal {
                    key,
                    value,
                    construct: format!("a value vaultlet does not accept ({e})"),
                    todo: "fix the value in the vault-k8s annotation and convert again".into(),
                });
            }
        }
        if !refusals.is_empty() {
            return Outcome::Refused(refusals);
        }
        let mut labels = labels.clone();
        labels.insert(annotations::INJECT.to_owned(), "true".to_owned());
        Outcome::Converted(Converted {
            annotations: new,
            labels,
            share_process_namespace: self.share_process_namespace,
            report: self.lines,
        })
    }
}

/// One vault-k8s secret, by its raw name (the key suffix as written).
struct Secret<'a> {
    raw: &'a str,
}

/// Raw secret names, as vault-k8s finds them: `agent-inject-secret-`, `-template-file-`,
/// `-template-` (in that order, so `template-file-x` is the template file of `x`).
fn secret_names<'a>(src: &Source<'a>) -> Vec<Secret<'a>> {
    let mut raws: Vec<&str> = Vec::new();
    for (rest, (_, v)) in &src.keys {
        if v.trim().is_empty() {
            continue;
        }
        let raw = [
            "agent-inject-secret-",
            "agent-inject-template-file-",
            "agent-inject-template-",
        ]
        .iter()
        .find_map(|p| rest.strip_prefix(p));
        if let Some(raw) = raw.filter(|r| !r.is_empty())
            && !raws.contains(&raw)
        {
            raws.push(raw);
        }
    }
    raws.into_iter().map(|raw| Secret { raw }).collect()
}

fn secrets(src: &mut Source<'_>, out: &mut Builder, spec: &Value) {
    let _ = spec;
    let names = secret_names(src);
    let default_kind = match src.get("agent-inject-default-template") {
        None => MAP_TEMPLATE,
        Some((_, v)) if v.trim().is_empty() || v == "map" => MAP_TEMPLATE,
        Some((k, "json")) => {
            out.line(
                k,
                "the default template of each secret without one (json)".into(),
            );
            JSON_TEMPLATE
        }
        Some((k, v)) => {
            out.refuse(k, v, "an unknown default template", "use map or json");
            MAP_TEMPLATE
        }
    };
    let pod_case = src.get("preserve-secret-case");
    let volume = src
        .get("secret-volume-path")
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let mut mount: Option<(String, String)> = None;
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    if !names.is_empty() {
        out.set(
            "(every template)",
            "template-language",
            "consul-template".into(),
        );
    }
    for s in &names {
        let raw = s.raw;
        let per = |stem: &str| format!("{stem}-{raw}");
        let preserve = src
            .get(&per("preserve-secret-case"))
            .or(pod_case)
            .and_then(|(_, v)| parse_go_bool(v))
            .unwrap_or(false);
        let file_name = if preserve {
            raw.to_owned()
        } else {
            raw.to_lowercase()
        };
        let name = rules::vaultlet_name(&file_name);
        let secret = src.get(&per("agent-inject-secret"));
        let template = src
            .get(&per("agent-inject-template"))
            .filter(|(_, v)| !v.trim().is_empty());
        let template_file = src.get(&per("agent-inject-template-file"));
        let origin = template.or(secret).or(template_file).map_or("", |(k, _)| k);
        if let Some(other) = seen.insert(name.clone(), origin.to_owned()) {
            out.refuse(
                origin,
                raw,
                &format!("a secret whose vaultlet name {name:?} is also the name of {other}"),
                "rename one of the two secrets",
            );
            continue;
        }
        let body = match (template, template_file, secret) {
            (Some((_, t)), _, _) => t.to_owned(),
            (None, Some((k, v)), _) => {
                out.refuse(
                    k,
                    v,
                    "a template read from a file of the agent container",
                    "put the template's text into agent-inject-template-<name> and convert again",
                );
                continue;
            }
            (None, None, Some((k, path))) => {
                if path.contains(['"', '\\', '\n']) {
                    out.refuse(
                        k,
                        path,
                        "a secret path with a quote, backslash or newline",
                        "write the template yourself (agent-inject-template-<name>)",
                    );
                    continue;
                }
                format!("{}{}{}", default_kind.0, path.trim(), default_kind.1)
            }
            (None, None, None) => continue,
        };
        if let (Some(_), Some((k, _))) = (template, secret) {
            out.line(
                k,
                format!("nothing: the template of {name:?} names what it reads"),
            );
        }
        out.set(origin, &format!("template-{name}"), body);
        // The mount path: one secrets dir for all.
        let this_mount = src
            .get(&per("secret-volume-path"))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .or_else(|| volume.clone())
            .unwrap_or_else(|| (String::new(), DEFAULT_VOLUME_PATH.to_owned()));
        match &mount {
            None => mount = Some(this_mount.clone()),
            Some((_, m)) if rules::clean(m) != rules::clean(&this_mount.1) => {
                out.refuse(
                    &this_mount.0,
                    &this_mount.1,
                    &format!("a second mount path for secrets (another secret uses {m:?})"),
                    "vaultlet mounts all secrets in one directory: use agent-inject-file-<name> with subdirectories under one secret-volume-path",
                );
                continue;
            }
            Some(_) => {}
        }
        let file_key = src.get(&per("agent-inject-file"));
        let rel = match file_key {
            Some((k, f)) => match rules::relative_file(f) {
                Some(rel) => {
                    if rel != name {
                        out.set(k, &format!("file-{name}"), rel);
                    }
                    None
                }
                None => {
                    out.refuse(
                        k,
                        f,
                        "a file outside the secrets volume",
                        "give a path inside the secret-volume-path",
                    );
                    continue;
                }
            },
            None => Some(file_name.clone()),
        };
        if let Some(rel) = rel.filter(|r| *r != name) {
            out.set(origin, &format!("file-{name}"), rel);
        }
        match src.get(&per("agent-inject-perms")) {
            Some((k, p)) => match parse_mode(p.trim()) {
                Ok(m) => out.set(k, &format!("perms-{name}"), format!("{m:04o}")),
                Err(e) => out.refuse(k, p, "a file mode vaultlet cannot set", &e),
            },
            None => out.set(
                "(consul-template default)",
                &format!("perms-{name}"),
                DEFAULT_PERMS.into(),
            ),
        }
        if let Some((k, c)) = src.get(&per("agent-inject-command")) {
            match rules::signal_command(c) {
                Some(notify) => {
                    out.set(k, &format!("notify-{name}"), notify);
                    out.share_process_namespace = true;
                }
                None => out.refuse(
                    k,
                    c,
                    "a shell command run after rendering",
                    "vaultlet converts only `kill -<SIGNAL> $(pidof <process>)`, `pkill -<SIGNAL> <process>` and `killall -<SIGNAL> <process>`; use vaultlet.io/notify-<name> with signal:, http:// or exec: (exec needs --allow-exec-notify and an agent image holding the command)",
                ),
            }
        }
        if let Some((k, v)) = src.get(&per("error-on-missing-key")) {
            match parse_go_bool(v) {
                Some(false) => out.line(k, "nothing (false is the default)".into()),
                _ => out.refuse(
                    k,
                    v,
                    "error_on_missing_key",
                    "vaultlet has no annotation for it yet: guard the keys in the template (`{{ with .Data.data.x }}`) and remove the annotation",
                ),
            }
        }
    }
    if let Some((k, m)) = mount.filter(|(_, m)| rules::clean(m) != DEFAULT_VOLUME_PATH) {
        let from = if k.is_empty() {
            "(secret-volume-path)"
        } else {
            &k
        };
        out.set(from, "secrets-dir", rules::clean(&m));
    } else if let Some((k, _)) = volume {
        out.line(&k, "nothing (/vault/secrets is vaultlet's default)".into());
    }
}

fn pod_wide(src: &mut Source<'_>, out: &mut Builder, spec: &Value) {
    let init_containers = spec
        .get("initContainers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let first = src.get("agent-init-first");
    match first.map(|(k, v)| (k, parse_go_bool(v))) {
        Some((k, Some(true))) => out.set(k, "init-position", "first".into()),
        _ if init_containers => {
            let from = first.map_or("(vault-k8s default: init container last)", |(k, _)| k);
            out.set(from, "init-position", "last".into());
        }
        Some((k, _)) => out.line(k, "nothing (the Pod has no other init containers)".into()),
        None => {}
    }
    let only = src.get("agent-pre-populate-only");
    let pre = src.get("agent-pre-populate");
    match (
        only.map(|(k, v)| (k, parse_go_bool(v))),
        pre.map(|(k, v)| (k, parse_go_bool(v))),
    ) {
        (Some((k, Some(true))), Some((_, Some(false)))) => out.refuse(
            k,
            "true",
            "pre-populate-only together with agent-pre-populate: false (no agent at all)",
            "remove one of the two",
        ),
        (Some((k, Some(true))), _) => out.set(k, "mode", "init-only".into()),
        (_, Some((k, Some(false)))) => {
            out.set(k, "mode", "sidecar".into());
            out.line(
                k,
                "note: the app now starts only after the first render (vaultlet always renders before the app)".into(),
            );
        }
        _ => {}
    }
    for (k, _) in [only, pre].into_iter().flatten() {
        if !out.lines.iter().any(|l| l.from == k) {
            out.line(k, "nothing (the default)".into());
        }
    }
    if let Some((k, v)) = src.get("agent-share-process-namespace")
        && parse_go_bool(v) == Some(true)
    {
        out.share_process_namespace = true;
        out.line(k, "spec.shareProcessNamespace: true".into());
    }
    tls(src, out);
    let rest: Vec<&str> = src
        .keys
        .keys()
        .copied()
        .filter(|r| !src.used.contains_key(r))
        .collect();
    for rest_key in rest {
        let Some(rule) = rules::rule(rest_key) else {
            continue;
        };
        let Some((k, v)) = src.get(rest_key) else {
            continue;
        };
        match rule {
            Rule::To(key, conv) => match conv(v.trim()) {
                Ok(Some(value)) => out.set(k, key, value),
                Ok(None) => out.line(k, "nothing (the default)".into()),
                Err(todo) => out.refuse(k, v, "a value vaultlet cannot express", &todo),
            },
            Rule::Drop(why) => out.line(k, format!("dropped: {why}")),
            Rule::RefuseUnless(ok, construct, todo) => {
                if ok(v.trim()) {
                    out.line(k, "nothing (the default)".into());
                } else {
                    out.refuse(k, v, construct, todo);
                }
            }
        }
    }
}

/// `tls-secret` with `ca-cert` / `client-cert` / `client-key` under `/vault/tls/`.
fn tls(src: &mut Source<'_>, out: &mut Builder) {
    let secret = src.get("tls-secret").filter(|(_, v)| !v.trim().is_empty());
    let ca = src.get("ca-cert").filter(|(_, v)| !v.trim().is_empty());
    let cert = src.get("client-cert").filter(|(_, v)| !v.trim().is_empty());
    let key = src.get("client-key").filter(|(_, v)| !v.trim().is_empty());
    let in_secret = |f: Option<(&str, &str)>, want: &str| {
        f.is_some_and(|(_, v)| rules::clean(v) == format!("/vault/tls/{want}"))
    };
    let Some((sk, sv)) = secret else {
        for (k, v) in [ca, cert, key].into_iter().flatten() {
            out.refuse(
                k,
                v,
                "a file of the agent container image",
                "put the certificate in a Secret: vaultlet.io/tls-ca-secret (key ca.crt) or tls-client-secret (a kubernetes.io/tls Secret)",
            );
        }
        return;
    };
    let sv = sv.trim();
    let mut used = false;
    if let Some((k, v)) = ca {
        if in_secret(ca, "ca.crt") {
            out.set(k, "tls-ca-secret", sv.to_owned());
            used = true;
        } else {
            out.refuse(
                k,
                v,
                "a CA file other than /vault/tls/ca.crt",
                "store the CA under the key ca.crt of the tls-secret",
            );
        }
    }
    match (cert, key) {
        (None, None) => {}
        _ if in_secret(cert, "tls.crt") && in_secret(key, "tls.key") => {
            if let Some((k, _)) = cert {
                out.set(k, "tls-client-secret", sv.to_owned());
            }
            if let Some((k, _)) = key {
                out.line(k, "vaultlet.io/tls-client-secret (key tls.key)".into());
            }
            used = true;
        }
        _ => {
            for (k, v) in [cert, key].into_iter().flatten() {
                out.refuse(
                    k,
                    v,
                    "a client certificate not at /vault/tls/tls.crt and /vault/tls/tls.key",
                    "make the tls-secret a kubernetes.io/tls Secret (keys tls.crt, tls.key) and point client-cert/client-key there",
                );
            }
        }
    }
    if used {
        out.line(
            sk,
            "the Secret named by the vaultlet.io/tls-* annotations".into(),
        );
    } else {
        out.refuse(
            sk,
            sv,
            "a Secret mounted for files no annotation names",
            "set ca-cert to /vault/tls/ca.crt or client-cert/client-key to /vault/tls/tls.crt and /vault/tls/tls.key",
        );
    }
}
