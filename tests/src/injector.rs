//! Mutates a Pod with the real `vaultlet-injector preview`, exactly as a user would.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Errors running or reading `vaultlet-injector preview`.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// The binary could not be started.
    #[error("cannot run {bin}: {source}")]
    Spawn {
        /// The injector binary.
        bin: String,
        /// Why.
        source: std::io::Error,
    },
    /// The injector refused the Pod (or a flag); its message says why.
    #[error("vaultlet-injector preview failed ({status}): {stderr}")]
    Failed {
        /// Exit status.
        status: String,
        /// What the injector printed on stderr.
        stderr: String,
    },
    /// The output is not the YAML/JSON document expected.
    #[error("vaultlet-injector preview printed something that is not {what}: {reason}")]
    Output {
        /// What was expected.
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
}

/// Runs `vaultlet-injector preview -f - [flags...]` with `input` on stdin; returns stdout.
pub fn preview_text(bin: &Path, input: &str, flags: &[String]) -> Result<String, PreviewError> {
    let spawn_err = |source| PreviewError::Spawn {
        bin: bin.display().to_string(),
        source,
    };
    let mut child = Command::new(bin)
        .arg("preview")
        .args(["-f", "-"])
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error means the injector exited early; its status and stderr tell why.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(PreviewError::Failed {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The mutated object (YAML output parsed into JSON values).
pub fn mutate(bin: &Path, input: &str, flags: &[String]) -> Result<Value, PreviewError> {
    let text = preview_text(bin, input, flags)?;
    parse_yaml(&text).map_err(|reason| PreviewError::Output {
        what: "a YAML object",
        reason,
    })
}

/// The JSON Patch (`--patch`) as a JSON array.
pub fn patch(bin: &Path, input: &str, flags: &[String]) -> Result<Value, PreviewError> {
    let mut all = flags.to_vec();
    all.push("--patch".into());
    let text = preview_text(bin, input, &all)?;
    let value: Value = serde_json::from_str(text.trim()).map_err(|e| PreviewError::Output {
        what: "a JSON Patch",
        reason: e.to_string(),
    })?;
    if value.is_array() {
        Ok(value)
    } else {
        Err(PreviewError::Output {
            what: "a JSON Patch",
            reason: "not a JSON array".into(),
        })
    }
}

/// Parses YAML (or JSON) into a JSON value.
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return serde_json::from_str(trimmed).map_err(|e| e.to_string());
    }
    serde_saphyr::from_str(text).map_err(|e| e.to_string())
}

/// The Pod a workload would create: the object itself for a Pod, its pod template otherwise
/// (for a Job, with the `ownerReferences` a Job controller sets).
pub fn pod_of(object: &Value) -> Value {
    let kind = object["kind"].as_str().unwrap_or("Pod");
    if kind == "Pod" {
        return object.clone();
    }
    let template = match kind {
        "CronJob" => &object["spec"]["jobTemplate"]["spec"]["template"],
        _ => &object["spec"]["template"],
    };
    let mut pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({})),
        "spec": template["spec"].clone(),
    });
    if let Some(ns) = object["metadata"].get("namespace") {
        pod["metadata"]["namespace"] = ns.clone();
    }
    if matches!(kind, "Job" | "CronJob") {
        let name = object["metadata"]["name"].as_str().unwrap_or("job");
        pod["metadata"]["ownerReferences"] = serde_json::json!([{
            "apiVersion": "batch/v1", "kind": "Job", "name": name,
            "uid": "00000000-0000-0000-0000-000000000001", "controller": true,
        }]);
    }
    pod
}
