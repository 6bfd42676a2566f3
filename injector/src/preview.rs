//! `vaultlet-injector preview`: mutates a Pod or a workload's pod template offline.

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::mutate::{self, Deny, Outcome, Skip};
use crate::settings::Settings;

/// Why a preview failed.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// The input holds no object at all.
    #[error(
        "the input is empty; give one Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob as YAML or JSON (-f FILE, or on stdin)"
    )]
    Empty,
    /// The input is neither YAML nor JSON.
    #[error("input is not a YAML or JSON Kubernetes object: {0}")]
    Parse(String),
    /// The object kind has no pod template.
    #[error(
        "kind {0:?} has no pod template; give a Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob"
    )]
    Kind(String),
    /// The pod template is malformed.
    #[error("the pod template at {path} is not a valid Pod spec: {reason}")]
    Template {
        /// JSON pointer of the template.
        path: &'static str,
        /// Deserialisation error.
        reason: String,
    },
    /// The webhook would deny this object (same message, printed once: no error source).
    #[error("{}", .0.message())]
    Denied(Deny),
    /// Output could not be written as YAML.
    #[error("cannot write YAML: {0}")]
    Output(String),
}

impl From<Deny> for PreviewError {
    fn from(d: Deny) -> Self {
        Self::Denied(d)
    }
}

/// What to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The mutated object as YAML.
    Yaml,
    /// The webhook's JSON Patch (paths rebased onto the whole object) as JSON.
    Patch,
}

/// Parses YAML or JSON (JSON is YAML) into a JSON value.
pub fn parse_object(input: &str) -> Result<Value, PreviewError> {
    let blank = input
        .lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#') || l == "---" || l == "...");
    if blank {
        return Err(PreviewError::Empty);
    }
    let trimmed = input.trim_start();
    if trimmed.starts_with('{') {
        return serde_json::from_str(trimmed).map_err(|e| PreviewError::Parse(e.to_string()));
    }
    serde_saphyr::from_str(input).map_err(|e| PreviewError::Parse(e.to_string()))
}

/// JSON pointer of the pod template for a kind, and whether its pods run under a Job.
fn template_path(kind: &str) -> Result<(&'static str, bool), PreviewError> {
    match kind {
        "Pod" => Ok(("", false)),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => Ok(("/spec/template", false)),
        "Job" => Ok(("/spec/template", true)),
        "CronJob" => Ok(("/spec/jobTemplate/spec/template", true)),
        other => Err(PreviewError::Kind(other.to_owned())),
    }
}

/// One previewed object.
#[derive(Debug, Clone, PartialEq)]
pub struct Previewed {
    /// The object as the webhook would leave it (unchanged when it would skip it).
    pub object: Value,
    /// The webhook's own JSON Patch, with paths rebased onto the workload's pod template.
    pub patch: Value,
    /// Admission warnings the webhook would send.
    pub warnings: Vec<String>,
    /// Why the object was left unchanged, when it was.
    pub skipped: Option<Skip>,
}

/// Mutates `object` through the webhook's code path.
pub fn mutate_object(object: &Value, settings: &Settings) -> Result<Previewed, PreviewError> {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (path, job) = template_path(kind)?;
    let template = object.pointer(path).cloned().unwrap_or(Value::Null);
    let pod: Pod = serde_json::from_value(template).map_err(|e| PreviewError::Template {
        path: if path.is_empty() { "/" } else { path },
        reason: e.to_string(),
    })?;
    let job = job || mutate::owned_by_job(&pod);
    let shape = mutate::Shape::of(&pod);
    let injection = match mutate::mutate_pod(&pod, settings, job)? {
        Outcome::Skipped(skip) => {
            return Ok(Previewed {
                object: object.clone(),
                patch: Value::Array(Vec::new()),
                warnings: Vec::new(),
                skipped: Some(skip),
            });
        }
        Outcome::Injected(injection) => injection,
    };
    let patch = rebase_patch(&shape.patch_json(&injection.pod)?, path)?;
    let mut mutated =
        serde_json::to_value(&injection.pod).map_err(|e| PreviewError::Output(e.to_string()))?;
    let mut out = object.clone();
    if path.is_empty() {
        out = mutated;
    } else {
        if let Value::Object(m) = &mut mutated {
            // A pod template has only metadata and spec.
            m.retain(|k, _| k == "metadata" || k == "spec");
        }
        if let Some(slot) = out.pointer_mut(path) {
            *slot = mutated;
        }
    }
    Ok(Previewed {
        object: out,
        patch,
        warnings: injection.warnings,
        skipped: None,
    })
}

/// Prefixes every operation's path with the pod template's JSON pointer.
fn rebase_patch(patch: &[u8], prefix: &str) -> Result<Value, PreviewError> {
    let mut ops: Value =
        serde_json::from_slice(patch).map_err(|e| PreviewError::Output(e.to_string()))?;
    if let Value::Array(ops) = &mut ops {
        for op in ops {
            if let Some(Value::String(p)) = op.get_mut("path") {
                p.insert_str(0, prefix);
            }
        }
    }
    Ok(ops)
}

/// A preview ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The chosen output.
    pub text: String,
    /// Admission warnings the webhook would send.
    pub warnings: Vec<String>,
    /// Why the object was left unchanged, when it was.
    pub skipped: Option<Skip>,
}

/// Runs a preview on the text of one object.
pub fn preview(input: &str, settings: &Settings, output: Output) -> Result<Rendered, PreviewError> {
    let object = parse_object(input)?;
    let previewed = mutate_object(&object, settings)?;
    let text = match output {
        Output::Yaml => serde_saphyr::to_string(&previewed.object)
            .map_err(|e| PreviewError::Output(e.to_string()))?,
        Output::Patch => serde_json::to_string_pretty(&previewed.patch)
            .map(|s| s + "\n")
            .map_err(|e| PreviewError::Output(e.to_string()))?,
    };
    Ok(Rendered {
        text,
        warnings: previewed.warnings,
        skipped: previewed.skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::emit_for_validation;

    const TEMPLATE: &str = r#"
    metadata:
      labels:
        app: web
        vaultlet.io/inject: "true"
      annotations:
        vaultlet.io/role: app
        vaultlet.io/secret-config: secret/data/web
    spec:
      restartPolicy: RESTART
      containers:
        - name: web
          image: nginx:1.27
"#;

    fn indent(text: &str, n: usize) -> String {
        let pad = " ".repeat(n);
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("{pad}{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect()
    }

    fn workload(kind: &str) -> String {
        let restart = if matches!(kind, "Job" | "CronJob") {
            "Never"
        } else {
            "Always"
        };
        let template = TEMPLATE.replace("RESTART", restart);
        let selector = "  selector:\n    matchLabels:\n      app: web\n";
        match kind {
            "Pod" => format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n{}",
                indent(&template, 0).replacen("metadata:\n", "", 1)
            ),
            "Job" => format!(
                "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: web\nspec:\n  template:\n{}",
                indent(&template, 4)
            ),
            "CronJob" => format!(
                "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: web\nspec:\n  schedule: \"*/5 * * * *\"\n  jobTemplate:\n    spec:\n      template:\n{}",
                indent(&template, 8)
            ),
            "StatefulSet" => format!(
                "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\nspec:\n  serviceName: web\n{selector}  template:\n{}",
                indent(&template, 4)
            ),
            _ => format!(
                "apiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: web\nspec:\n{selector}  template:\n{}",
                indent(&template, 4)
            ),
        }
    }

    fn pod_spec_of(v: &Value) -> &Value {
        let kind = v["kind"].as_str().expect("kind");
        let (path, _) = template_path(kind).expect("kind");
        &v.pointer(path).expect("template")["spec"]
    }

    #[test]
    fn every_workload_kind() {
        let settings = Settings::defaults();
        for kind in [
            "Pod",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "Job",
            "CronJob",
        ] {
            let input = workload(kind);
            let object = parse_object(&input).unwrap_or_else(|e| panic!("{kind}: {e}\n{input}"));
            let out = mutate_object(&object, &settings)
                .unwrap_or_else(|e| panic!("{kind}: {e}"))
                .object;
            emit_for_validation(&format!("preview-{}", kind.to_lowercase()), &out);
            let spec = pod_spec_of(&out);
            assert_eq!(
                spec["initContainers"][0]["name"], "vaultlet-agent",
                "{kind}"
            );
            assert_eq!(out["kind"], kind);
            assert!(out.pointer("/spec/template/apiVersion").is_none(), "{kind}");
            // The YAML output reads back to the same object.
            let rendered = preview(&input, &settings, Output::Yaml).expect("yaml");
            assert!(
                rendered.warnings.is_empty(),
                "{kind}: {:?}",
                rendered.warnings
            );
            assert_eq!(rendered.skipped, None, "{kind}");
            assert_eq!(
                parse_object(&rendered.text).expect("reparse"),
                out,
                "{kind}"
            );
            // The patch applied to the input gives the same object.
            let patch: json_patch::Patch = serde_json::from_str(
                &preview(&input, &settings, Output::Patch)
                    .expect("patch")
                    .text,
            )
            .expect("patch json");
            let mut doc = object.clone();
            json_patch::patch(&mut doc, &patch).expect("applies");
            assert_eq!(doc, out, "{kind}");
            // Idempotent.
            let again = mutate_object(&out, &settings).expect("again");
            assert_eq!(again.object, out, "{kind}");
            assert_eq!(again.patch, Value::Array(Vec::new()), "{kind}");
        }
    }

    #[test]
    fn json_input_and_denials() {
        let settings = Settings::defaults();
        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x","labels":{"vaultlet.io/inject":"true"},
            "annotations":{"vaultlet.io/role":"app","vaultlet.io/secret-a":"kv/a","vaultlet.io/perms-a":"999"}},
            "spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
        let err = preview(json, &settings, Output::Yaml)
            .expect_err("denied")
            .to_string();
        assert!(
            err.contains("vaultlet.io/perms-a") && err.contains("\"999\""),
            "{err}"
        );
        let err = preview("kind: Service\n", &settings, Output::Yaml).expect_err("kind");
        assert!(err.to_string().contains("Service"), "{err}");
        assert!(preview("{not json", &settings, Output::Yaml).is_err());
        for empty in ["", "\n  \n", "---\n# nothing\n"] {
            let err = preview(empty, &settings, Output::Yaml).expect_err("empty");
            assert!(matches!(err, PreviewError::Empty), "{empty:?}: {err}");
        }
    }
}
