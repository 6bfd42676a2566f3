//! `vaultlet-injector convert`: rewrites vault-k8s-annotated workloads for vaultlet.

use std::collections::BTreeMap;

use serde_json::Value;

mod map;
mod rules;

pub use map::{SOURCE_PREFIXES, pod_template};

/// What became of one source annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The vault-k8s annotation key (or a marker like `(consul-template default)`).
    pub from: String,
    /// What it became.
    pub to: String,
}

/// Why a workload is not converted: the annotation, the construct, what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The vault-k8s annotation key.
    pub key: String,
    /// Its value (quoted in messages).
    pub value: String,
    /// What cannot be converted faithfully.
    pub construct: String,
    /// What to do.
    pub todo: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {} cannot be converted faithfully; {}",
            crate::annotations::shown_key(&self.key),
            rules::quoted(&self.value),
            self.construct,
            self.todo
        )
    }
}

/// A converted pod template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// The template's new annotations (vault-k8s keys replaced by vaultlet ones).
    pub annotations: BTreeMap<String, String>,
    /// The template's new labels (with `vaultlet.io/inject: "true"`).
    pub labels: BTreeMap<String, String>,
    /// `spec.shareProcessNamespace: true` is needed (signal notifications).
    pub share_process_namespace: bool,
    /// What each annotation became.
    pub report: Vec<Line>,
}

/// The result of converting one pod template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No vault-k8s annotation at all.
    Untouched,
    /// vault-k8s annotations, but no `agent-inject: "true"`: vault-k8s would not inject it.
    NotOptedIn,
    /// Converted.
    Converted(Converted),
    /// Refused; the workload stays unchanged.
    Refused(Vec<Refusal>),
}

/// Why the input could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Not YAML or JSON.
    #[error(
        "input is not YAML or JSON Kubernetes objects: {0}; give manifests as `kubectl get -o yaml` or `helm template` print them"
    )]
    Parse(String),
    /// Output could not be written as YAML.
    #[error("cannot write YAML: {0}")]
    Output(String),
}

/// Everything `convert` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Converting {
    /// The manifests (every object, converted or unchanged), as YAML documents.
    pub manifests: String,
    /// The report, one line each.
    pub report: Vec<String>,
    /// Number of workloads refused.
    pub refused: usize,
    /// Number of workloads converted.
    pub converted: usize,
    defaults: Defaults,
}

/// Parses YAML (one or more documents) or JSON into objects.
pub fn parse_documents(input: &str) -> Result<Vec<Value>, ConvertError> {
    let trimmed = input.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut out = Vec::new();
        let stream = serde_json::Deserializer::from_str(trimmed).into_iter::<Value>();
        for v in stream {
            out.push(v.map_err(|e| ConvertError::Parse(e.to_string()))?);
        }
        return Ok(out);
    }
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(input).map_err(|e| ConvertError::Parse(e.to_string()))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Injector-wide vault-k8s settings that change what a workload means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Defaults {
    /// vault-helm's `injector.agentDefaults.template` was `json`: secrets without a
    /// template and without `agent-inject-default-template` use the json default template.
    pub json_template: bool,
}

/// Converts every object of `input`.
pub fn convert(input: &str, defaults: Defaults) -> Result<Converting, ConvertError> {
    let mut out = Converting {
        defaults,
        ..Converting::default()
    };
    let mut docs = Vec::new();
    for mut doc in parse_documents(input)? {
        object(&mut doc, &mut out);
        docs.push(serde_saphyr::to_string(&doc).map_err(|e| ConvertError::Output(e.to_string()))?);
    }
    out.manifests = docs.iter().map(|d| format!("---\n{d}")).collect::<String>();
    Ok(out)
}

/// JSON pointer of a kind's pod template.
fn template_path(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController"
        | "PodTemplate" => Some(if kind == "PodTemplate" {
            "/template"
        } else {
            "/spec/template"
        }),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

fn object(obj: &mut Value, out: &mut Converting) {
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if kind.ends_with("List") {
        if let Some(Value::Array(items)) = obj.get_mut("items") {
            for item in items {
                object(item, out);
            }
        }
        return;
    }
    let Some(path) = template_path(&kind) else {
        return;
    };
    let name = workload_name(obj, &kind);
    let owner = owner(obj);
    let Some(template) = obj.pointer_mut(path) else {
        return;
    };
    let mut annotations = string_map(template.pointer("/metadata/annotations"));
    if out.defaults.json_template {
        default_template_json(&mut annotations);
    }
    let labels = string_map(template.pointer("/metadata/labels"));
    let spec = template.get("spec").cloned().unwrap_or(Value::Null);
    match pod_template(&annotations, &labels, &spec) {
        Outcome::Untouched => {}
        // A live Pod of a controller (`kubectl get pods -o yaml`): its workload is converted.
        _ if owner.is_some() => out.report.push(format!(
            "{name}: left unchanged: a Pod of {}; convert that workload instead",
            owner.unwrap_or_default()
        )),
        Outcome::NotOptedIn => out.report.push(format!(
            "{name}: left unchanged: it has vault-k8s annotations but no agent-inject: \"true\", so vault-k8s does not inject it"
        )),
        Outcome::Refused(refusals) => {
            out.refused += 1;
            for r in refusals {
                out.report.push(format!("{name}: refused, left unchanged: {r}"));
            }
        }
        Outcome::Converted(c) => {
            out.converted += 1;
            out.report.push(format!("{name}: converted"));
            for l in &c.report {
                out.report.push(format!(
                    "  {} -> {}",
                    crate::annotations::printable(&l.from),
                    crate::annotations::printable(&l.to)
                ));
            }
            apply(template, c);
        }
    }
}

fn apply(template: &mut Value, c: Converted) {
    if !template.is_object() {
        return;
    }
    let meta = &mut template["metadata"];
    if !meta.is_object() {
        *meta = Value::Object(Default::default());
    }
    meta["annotations"] = serde_json::to_value(&c.annotations).unwrap_or(Value::Null);
    meta["labels"] = serde_json::to_value(&c.labels).unwrap_or(Value::Null);
    if c.share_process_namespace && template["spec"].is_object() {
        template["spec"]["shareProcessNamespace"] = Value::Bool(true);
    }
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k.clone(), s)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The injector-wide `json` default template, as the annotation vault-k8s would have used,
/// under the prefix the workload uses (nothing for a workload of neither prefix).
fn default_template_json(annotations: &mut BTreeMap<String, String>) {
    let Some(prefix) = SOURCE_PREFIXES
        .iter()
        .find(|p| annotations.contains_key(&format!("{p}agent-inject")))
    else {
        return;
    };
    if !SOURCE_PREFIXES
        .iter()
        .any(|p| annotations.contains_key(&format!("{p}agent-inject-default-template")))
    {
        annotations.insert(
            format!("{prefix}agent-inject-default-template"),
            "json".to_owned(),
        );
    }
}

/// `Kind/name` of a Pod's controller, from its `ownerReferences`.
fn owner(obj: &Value) -> Option<String> {
    let refs = obj.pointer("/metadata/ownerReferences")?.as_array()?;
    let r = refs
        .iter()
        .find(|r| r.get("controller") == Some(&Value::Bool(true)))
        .or_else(|| refs.first())?;
    let get = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("?");
    Some(format!(
        "{}/{}",
        crate::annotations::printable(get("kind")),
        crate::annotations::printable(get("name"))
    ))
}

fn workload_name(obj: &Value, kind: &str) -> String {
    let get = |k: &str| obj.pointer(k).and_then(Value::as_str).unwrap_or_default();
    let ns = get("/metadata/namespace");
    let name = get("/metadata/name");
    let name = if name.is_empty() { "(no name)" } else { name };
    let shown = crate::annotations::printable(name);
    if ns.is_empty() {
        format!("{kind}/{shown}")
    } else {
        format!("{kind}/{}/{shown}", crate::annotations::printable(ns))
    }
}

#[cfg(test)]
mod tests;
