//! The JSON Patch of an injection, built from the known shape of the change rather than a
//! generic diff.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::Deny;

/// The JSON Patch turning `before` into `after` (an injection of `before`).
pub fn patch(before: &Pod, after: &Pod) -> Result<json_patch::Patch, Deny> {
    let bytes = Shape::of(before).patch_json(after)?;
    serde_json::from_slice(&bytes).map_err(|e| Deny::Object(e.to_string()))
}

/// What the JSON Patch needs to know about a Pod before injection; cheap to take, so the
/// Pod itself can be consumed by the mutation.
///
/// The patch is built from the known shape of an injection (annotations and volumes
/// appended, mounts appended, agent containers inserted, an app's `command` replaced by the
/// supervisor's for `env-<name>`) rather than a generic diff: it is
/// several times cheaper, and it only ever adds, so fields of the request this API version
/// does not know are never touched. Parents are created where missing.
#[derive(Debug, Clone)]
pub struct Shape {
    annotations: Option<BTreeMap<String, String>>,
    containers: Option<Vec<ContainerShape>>,
    init_containers: Option<Vec<ContainerShape>>,
    volumes: Option<usize>,
    share_process_namespace: Option<bool>,
}

/// A container before injection: its name, how many mounts it had, its command.
#[derive(Debug, Clone)]
struct ContainerShape {
    name: String,
    mounts: Option<usize>,
    command: Option<Vec<String>>,
}

fn list_shape(list: Option<&Vec<Container>>) -> Option<Vec<ContainerShape>> {
    list.map(|l| {
        l.iter()
            .map(|c| ContainerShape {
                name: c.name.clone(),
                mounts: c.volume_mounts.as_ref().map(Vec::len),
                command: c.command.clone(),
            })
            .collect()
    })
}

impl Shape {
    /// Records the shape of a Pod before injection.
    pub fn of(pod: &Pod) -> Self {
        let spec = pod.spec.as_ref();
        Self {
            annotations: pod.metadata.annotations.clone(),
            containers: list_shape(spec.map(|s| &s.containers)),
            init_containers: list_shape(spec.and_then(|s| s.init_containers.as_ref())),
            volumes: spec.and_then(|s| s.volumes.as_ref()).map(Vec::len),
            share_process_namespace: spec.and_then(|s| s.share_process_namespace),
        }
    }

    /// The JSON Patch (serialised JSON) from this shape to `after`.
    pub fn patch_json(&self, after: &Pod) -> Result<Vec<u8>, Deny> {
        let mut ops = Ops::default();
        let empty = BTreeMap::new();
        match &self.annotations {
            None => ops.add(&["metadata", "annotations"], &after.metadata.annotations)?,
            Some(old) => {
                for (k, v) in after.metadata.annotations.as_ref().unwrap_or(&empty) {
                    if old.get(k) != Some(v) {
                        ops.add(&["metadata", "annotations", k], v)?;
                    }
                }
            }
        }
        let Some(a) = &after.spec else {
            return Err(Deny::Object("the Pod has no spec".into()));
        };
        patch_list(
            &mut ops,
            "containers",
            self.containers.as_ref(),
            Some(&a.containers),
        )?;
        patch_list(
            &mut ops,
            "initContainers",
            self.init_containers.as_ref(),
            a.init_containers.as_ref(),
        )?;
        append_tail(
            &mut ops,
            &["spec", "volumes"],
            self.volumes,
            a.volumes.as_ref(),
        )?;
        if self.share_process_namespace != a.share_process_namespace {
            ops.add(
                &["spec", "shareProcessNamespace"],
                &a.share_process_namespace,
            )?;
        }
        Ok(ops.finish())
    }
}

/// `add` operations written straight to JSON (no intermediate `Value`).
#[derive(Default)]
struct Ops(Vec<u8>);

impl Ops {
    fn add<T: serde::Serialize>(&mut self, path: &[&str], value: &T) -> Result<(), Deny> {
        let pointer = json_patch::jsonptr::PointerBuf::from_tokens(path.iter().copied());
        self.0.push(if self.0.is_empty() { b'[' } else { b',' });
        self.0.extend_from_slice(br#"{"op":"add","path":"#);
        let written = serde_json::to_writer(&mut self.0, pointer.as_str()).and_then(|()| {
            self.0.extend_from_slice(br#","value":"#);
            serde_json::to_writer(&mut self.0, value)
        });
        written.map_err(|e| Deny::Object(e.to_string()))?;
        self.0.push(b'}');
        Ok(())
    }

    fn finish(mut self) -> Vec<u8> {
        if self.0.is_empty() {
            self.0.push(b'[');
        }
        self.0.push(b']');
        self.0
    }
}

/// Adds the elements `after` has beyond the first `before` ones.
fn append_tail<T: serde::Serialize>(
    ops: &mut Ops,
    path: &[&str],
    before: Option<usize>,
    after: Option<&Vec<T>>,
) -> Result<(), Deny> {
    let Some(after) = after else { return Ok(()) };
    match before {
        None => ops.add(path, after),
        Some(before) => {
            let mut p = path.to_vec();
            p.push("-");
            after
                .get(before..)
                .unwrap_or_default()
                .iter()
                .try_for_each(|v| ops.add(&p, v))
        }
    }
}

/// Containers: mounts appended to existing ones, then new containers inserted as one block.
fn patch_list(
    ops: &mut Ops,
    field: &str,
    before: Option<&Vec<ContainerShape>>,
    after: Option<&Vec<Container>>,
) -> Result<(), Deny> {
    let Some(after) = after else { return Ok(()) };
    let Some(before) = before.filter(|b| !b.is_empty()) else {
        return if after.is_empty() {
            Ok(())
        } else {
            ops.add(&["spec", field], after)
        };
    };
    // The inserted block starts where names first differ.
    let at = before
        .iter()
        .zip(after)
        .position(|(b, a)| b.name != a.name)
        .unwrap_or(before.len());
    let inserted = after.len().saturating_sub(before.len());
    for (i, b) in before.iter().enumerate() {
        let Some(new) = after.get(if i < at { i } else { i + inserted }) else {
            return Err(Deny::Object(format!(
                "{field} changed shape during injection"
            )));
        };
        let index = i.to_string();
        append_tail(
            ops,
            &["spec", field, &index, "volumeMounts"],
            b.mounts,
            new.volume_mounts.as_ref(),
        )?;
        if new.command != b.command {
            // `add` on an existing member replaces it (RFC 6902).
            ops.add(&["spec", field, &index, "command"], &new.command)?;
        }
    }
    for (n, c) in after.iter().skip(at).take(inserted).enumerate() {
        let index = if at == before.len() {
            "-".to_owned()
        } else {
            (at + n).to_string()
        };
        ops.add(&["spec", field, &index], c)?;
    }
    Ok(())
}
